"""Request bodies of the two writes, checked the way an accounting API checks them.

Wrong types, missing fields and unknown properties are 400 with `validation.errors` (one item per field),
never a 500. Unknown properties are refused rather than ignored so that a client forwarding a field Codat
does not define (our own `currency`, say) is caught in tests instead of silently dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

from local.sandbox.errors import CodatError, FieldError

BANK_ACCOUNT_TYPES = ("Unknown", "Credit", "Debit")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def parse_json(raw: bytes) -> Any:
    """The body as JSON with exact decimals; malformed JSON, NaN or Infinity is a 400."""

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number")

    try:
        return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CodatError(400, f"Error processing request - the body is not valid JSON: {exc}") from exc


@dataclasses.dataclass(frozen=True)
class PaymentRequest:
    amount: Decimal
    date: str
    reference: str | None
    account_id: str
    currency_rate: Decimal | None


@dataclasses.dataclass(frozen=True)
class BankAccountRequest:
    name: str
    account_type: str
    account_number: str
    currency: str
    sort_code: str | None
    nominal_code: str | None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    number = Decimal(value)
    return number if number.is_finite() else None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise CodatError(400, "Error processing request - the body must be a JSON object.")
    return body


def _unknown(body: dict[str, Any], allowed: tuple[str, ...]) -> list[FieldError]:
    return [
        FieldError(key, f"'{key}' is not a property of this request.", "UnknownProperty")
        for key in body
        if key not in allowed
    ]


def _optional_string(body: dict[str, Any], key: str, errors: list[FieldError]) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        errors.append(FieldError(key, f"'{key}' must be a string or null.", "Type"))
        return None
    return value


def _required_string(body: dict[str, Any], key: str, errors: list[FieldError]) -> str:
    value = body.get(key)
    if value is None:
        errors.append(FieldError(key, f"'{key}' is required.", "Required"))
        return ""
    if not isinstance(value, str):
        errors.append(FieldError(key, f"'{key}' must be a string.", "Type"))
        return ""
    if not value.strip():
        errors.append(FieldError(key, f"'{key}' must not be empty.", "NotEmpty"))
    return value


def _is_iso_date(value: str) -> bool:
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def parse_bill_payment(body: Any) -> PaymentRequest:
    body = _object(body)
    errors = _unknown(body, ("amount", "date", "reference", "accountRef", "currencyRate"))

    amount = _number(body.get("amount"))
    if "amount" not in body or body["amount"] is None:
        errors.append(FieldError("amount", "'amount' is required.", "Required"))
    elif amount is None:
        errors.append(FieldError("amount", "'amount' must be a finite number.", "Type"))
    elif amount <= 0:
        errors.append(FieldError("amount", "'amount' must be greater than zero.", "Range"))

    date = _required_string(body, "date", errors)
    if date and not _is_iso_date(date):
        errors.append(FieldError("date", "'date' must be an ISO 8601 date or date-time.", "Format"))

    reference = _optional_string(body, "reference", errors)

    account_id = ""
    account_ref = body.get("accountRef")
    if account_ref is None:
        errors.append(FieldError("accountRef", "'accountRef' is required.", "Required"))
    elif not isinstance(account_ref, dict):
        errors.append(FieldError("accountRef", "'accountRef' must be an object.", "Type"))
    else:
        inner: list[FieldError] = []
        account_id = _required_string(account_ref, "id", inner)
        errors += [dataclasses.replace(item, item_id=f"accountRef.{item.item_id}") for item in inner]

    rate: Decimal | None = None
    if body.get("currencyRate") is not None:
        rate = _number(body["currencyRate"])
        if rate is None:
            errors.append(FieldError("currencyRate", "'currencyRate' must be a finite number.", "Type"))
        elif rate <= 0:
            errors.append(FieldError("currencyRate", "'currencyRate' must be greater than zero.", "Range"))

    if errors:
        raise CodatError(400, "The bill payment is not valid.", errors=errors)
    assert amount is not None
    return PaymentRequest(amount, date, reference, account_id, rate)


def parse_bank_account(body: Any) -> BankAccountRequest:
    body = _object(body)
    errors = _unknown(body, ("name", "accountType", "accountNumber", "currency", "sortCode", "nominalCode"))
    name = _required_string(body, "name", errors)
    account_number = _required_string(body, "accountNumber", errors)

    account_type = _required_string(body, "accountType", errors)
    if account_type and account_type not in BANK_ACCOUNT_TYPES:
        errors.append(
            FieldError(
                "accountType", f"'accountType' must be one of {', '.join(BANK_ACCOUNT_TYPES)}.", "Enum"
            )
        )

    currency = _required_string(body, "currency", errors)
    if currency and not _CURRENCY.match(currency):
        errors.append(FieldError("currency", "'currency' must be an ISO 4217 code such as GBP.", "Format"))

    sort_code = _optional_string(body, "sortCode", errors)
    nominal_code = _optional_string(body, "nominalCode", errors)
    if errors:
        raise CodatError(400, "The bank account is not valid.", errors=errors)
    return BankAccountRequest(name, account_type, account_number, currency, sort_code, nominal_code)
