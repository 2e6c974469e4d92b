"""The bodies of our two writes, validated before anything else happens: shape rules → 400
(docs/contract.md, Guards).

- `BankAccountCreate`  = Codat `bankAccountPrototype` (POST …/payables/bankAccounts).
- `BillPaymentCreate`  = Codat `billPaymentPrototype` plus our optional `currency` (never forwarded).

Decisions where the contract and Codat's YAML are silent, each a "refuse rather than guess" for money:
- Unknown members are refused (400), at every level: a client that sends `curency` or `accountRef.name`
  believes it matters, and silently dropping it could record something other than what was meant.
- Amounts and rates must be JSON numbers (Codat's schema: `type: number`). Strings such as "10.00" are
  refused; so are booleans, NaN and ±Infinity. Numbers are kept as `Decimal` exactly as parsed — the
  resolver should parse JSON with `parse_float=Decimal` (`json_loads` below) so no binary float ever
  touches an amount; a float that does arrive is taken by its shortest repr (what the client most likely
  wrote), never by its binary expansion, and refused when it has more than 15 significant digits (more
  than a double keeps, so what the client wrote cannot be known).
- Magnitudes are bounded so no number can overflow a ledger, blow up a plain-notation rendering
  (`1e999999999`) or be rounded by Decimal's 28-digit context: amount < 10^15 with at most 12 decimals
  (finer precision than the bill's currency allows is the guards' 422 `amount-precision`, not this 400);
  `currencyRate` < 10^9 with at most 9 decimals, the precision Codat documents for rates — more would be
  rounded silently by the accounting software.
- `null` for an optional member means the same as leaving it out: it is neither forwarded nor hashed.
- `date` must be ISO 8601 as Codat writes it (`2024-03-01`, `2024-03-01T10:00:00`, with optional
  fraction up to 9 digits and `Z` or `±HH:MM`), a real calendar date and time; the string is kept and
  forwarded exactly as written.
- `currency` (ours) is three upper-case letters; on a new bank account `XXX` and the other ISO 4217 codes
  that name no payable currency are refused.
- Strings may not contain control characters (a reference may contain tab and line breaks) or lone
  surrogates (which cannot be encoded as UTF-8 for the upstream body).

`to_upstream_json()` gives the exact bytes to send Codat (compact, Codat's member order, amounts in plain
notation without trailing zeros); `canonical_json()` the bytes to hash for the idempotency check (sorted
keys, decimals as `format(d.normalize(), "f")`, `date` as written, `currency` included).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date as _date
from datetime import time as _time
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from billpay.domain.currencies import CURRENCY_CODE, is_payable

# ---------------------------------------------------------------------------------------------------
# Decimals


def json_loads(text: str | bytes) -> Any:
    """`json.loads` that keeps every JSON number with a fraction or exponent as an exact `Decimal`.

    The resolver's body deserializer should be this, so `10.10` reaches the model as Decimal("10.10")
    and not as the binary float 10.0999999999999996447286321199499070644378662109375.
    """
    return json.loads(text, parse_float=Decimal)


def decimal_text(value: Decimal) -> str:
    """Plain notation with trailing zeros removed: 10, 10.0, 10.00, 1E+1 → "10"; 0.50 → "0.5".

    Exact at any size: works on the digit tuple, never through Decimal's context (whose 28-digit
    precision would round). Equals `format(value.normalize(), "f")` whenever that one is exact.
    """
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return "0"
    while exponent < 0 and text.endswith("0"):
        text = text[:-1]
        exponent += 1
    if exponent >= 0:
        plain = text + "0" * exponent
    else:
        places = -exponent
        padded = text.rjust(places + 1, "0")
        plain = f"{padded[:-places]}.{padded[-places:]}"
    return ("-" if sign else "") + plain


def decimal_places(value: Decimal) -> int:
    """Decimals needed to write `value` exactly: 10.50 → 1, 10.00 → 0, 1E+3 → 0.

    Counted on the digit tuple, so a hostile exponent (`1e-999999999`) costs nothing.
    """
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= 0 or not any(digits):
        return 0
    trailing_zeros = 0
    for digit in reversed(digits):
        if digit != 0 or trailing_zeros == -exponent:
            break
        trailing_zeros += 1
    return -exponent - trailing_zeros


FLOAT_EXACT_DIGITS: Final = 15


def _json_number(value: object) -> Decimal:
    # bool is an int subclass: `true` must not become an amount of 1.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise PydanticCustomError("json_number", "Input should be a JSON number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        # Only reached when the body was parsed without `json_loads`. A double holds 15 significant
        # decimal digits faithfully; beyond that its shortest repr may not be what the client wrote.
        number = Decimal(repr(value))
        if len(decimal_text(abs(number)).replace(".", "").strip("0")) > FLOAT_EXACT_DIGITS:
            raise PydanticCustomError(
                "number_precision",
                "Input has more significant digits than can be read exactly ({digits})",
                {"digits": FLOAT_EXACT_DIGITS},
            )
        return number
    if isinstance(value, int):
        return Decimal(value)
    if not value.is_finite():
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value


def _bounded(max_integer_digits: int, max_places: int) -> AfterValidator:
    def check(value: Decimal) -> Decimal:
        if value <= 0:
            raise PydanticCustomError("greater_than", "Input should be greater than 0", {"gt": 0})
        # adjusted() is the power of ten of the leading digit: cheap at any exponent.
        if value.adjusted() >= max_integer_digits:
            raise PydanticCustomError(
                "number_too_large",
                "Input should be less than 10^{max}",
                {"max": max_integer_digits},
            )
        if decimal_places(value) > max_places:
            raise PydanticCustomError(
                "decimal_max_places",
                "Input should have no more than {max_places} decimal places",
                {"max_places": max_places},
            )
        return value

    return AfterValidator(check)


AMOUNT_MAX_INTEGER_DIGITS: Final = 15
AMOUNT_MAX_PLACES: Final = 12
RATE_MAX_INTEGER_DIGITS: Final = 9
RATE_MAX_PLACES: Final = 9

Amount = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    _bounded(AMOUNT_MAX_INTEGER_DIGITS, AMOUNT_MAX_PLACES),
    WithJsonSchema(
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 10**AMOUNT_MAX_INTEGER_DIGITS,
            "description": "Amount in the bill's currency; no more decimals than its minor unit.",
            "examples": [1329.54],
        }
    ),
]

CurrencyRate = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    _bounded(RATE_MAX_INTEGER_DIGITS, RATE_MAX_PLACES),
    WithJsonSchema(
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 10**RATE_MAX_INTEGER_DIGITS,
            "description": (
                "Base-currency units per one bill-currency unit (GBP company, USD bill: 0.781). Required "
                "when the bill's currency is not the company's base currency; otherwise absent, null or 1."
            ),
            "examples": [0.781],
        }
    ),
]

# ---------------------------------------------------------------------------------------------------
# Strings

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _encodable(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("string_unicode", "Input should be valid Unicode text") from None


def _plain_text(value: str) -> str:
    _encodable(value)
    if _CONTROL.search(value):
        raise PydanticCustomError("string_control", "Input should not contain control characters")
    return value


def _free_text(value: str) -> str:
    _encodable(value)
    if _CONTROL_EXCEPT_LINES.search(value):
        raise PydanticCustomError(
            "string_control", "Input should not contain control characters other than tab and line breaks"
        )
    return value


PlainText = AfterValidator(_plain_text)

Id = Annotated[str, Field(min_length=1, max_length=512), PlainText]
Reference = Annotated[str, Field(max_length=4000), AfterValidator(_free_text)]
AccountName = Annotated[str, Field(min_length=1, max_length=255), PlainText]
AccountNumber = Annotated[str, Field(min_length=1, max_length=64), PlainText]
NominalCode = Annotated[str, Field(min_length=1, max_length=64), PlainText]
SortCode = Annotated[str, Field(min_length=1, max_length=32), PlainText]


def _currency_code(value: str) -> str:
    if not CURRENCY_CODE.fullmatch(value):
        raise PydanticCustomError(
            "currency_code", "Input should be an ISO 4217 code: three upper-case letters"
        )
    return value


def _payable_currency(value: str) -> str:
    if not is_payable(value):
        raise PydanticCustomError(
            "currency_not_payable", "{code} names no currency an account can hold", {"code": value}
        )
    return value


CurrencyCode = Annotated[
    str,
    AfterValidator(_currency_code),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["GBP"]}),
]

# ---------------------------------------------------------------------------------------------------
# Dates: ISO 8601 as Codat writes it (Connection.created in the YAML).

ISO_DATE_PATTERN: Final = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-]([0-9]{2}):([0-9]{2}))?)?$"
)
_ISO_DATE = re.compile(ISO_DATE_PATTERN)


def _iso_8601(value: str) -> str:
    match = _ISO_DATE.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "iso_8601",
            "Input should be an ISO 8601 date or date-time, e.g. 2024-03-01 or 2024-03-01T10:00:00Z",
        )
    year, month, day, hour, minute, second, _fraction, zone, zone_hours, zone_minutes = match.groups()
    try:
        _date(int(year), int(month), int(day))
        if hour is not None:
            _time(int(hour), int(minute), int(second or 0))
        if zone_hours is not None and (int(zone_hours) > 23 or int(zone_minutes) > 59):
            raise ValueError(zone)
    except ValueError:
        raise PydanticCustomError("iso_8601", "Input should be a real calendar date and time") from None
    return value


IsoDate = Annotated[
    str,
    AfterValidator(_iso_8601),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": ISO_DATE_PATTERN,
            "description": "ISO 8601 date or date-time; forwarded to Codat exactly as written.",
            "examples": ["2024-03-01T00:00:00Z"],
        }
    ),
]

# ---------------------------------------------------------------------------------------------------
# JSON rendering with exact decimals


def _render(value: Any) -> str:
    # json.dumps cannot emit a Decimal as a number token; this writes the few types our bodies hold.
    if value is None or isinstance(value, bool | str | int):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, Mapping):
        members = (f"{json.dumps(str(k), ensure_ascii=False)}:{_render(v)}" for k, v in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_render(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def render_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON where Decimals are exact number tokens in plain notation."""
    if sort_keys:
        value = _sorted(value)
    return _render(value).encode("utf-8")


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------
# The models

_STRICT = ConfigDict(
    extra="forbid",
    frozen=True,
    validate_by_alias=True,
    validate_by_name=False,
    serialize_by_alias=True,
)


class AccountRef(BaseModel):
    """Codat `billPaymentAccountRef`: the bank account / credit card the bill is paid from."""

    model_config = _STRICT

    id: Id


class BillPaymentCreate(BaseModel):
    """Body of POST …/bills/{billId}/payments: Codat `billPaymentPrototype` + our optional `currency`."""

    model_config = ConfigDict(
        **_STRICT,
        title="BillPaymentCreate",
        json_schema_extra={
            "examples": [
                {
                    "amount": 20,
                    "date": "2024-03-01T00:00:00Z",
                    "accountRef": {"id": "7bda9f44sr56"},
                    "reference": "Invoice 1029",
                    "currencyRate": 0.781,
                    "currency": "USD",
                }
            ]
        },
    )

    amount: Amount
    date: IsoDate
    account_ref: AccountRef = Field(alias="accountRef")
    reference: Reference | None = None
    currency_rate: CurrencyRate | None = Field(default=None, alias="currencyRate")
    currency: CurrencyCode | None = Field(
        default=None,
        description="The bill's currency as the client understands it; checked, never forwarded.",
    )

    def upstream_body(self) -> dict[str, Any]:
        """The Codat `billPaymentPrototype` to send, in Codat's member order; nulls left out."""
        body: dict[str, Any] = {"amount": self.amount, "date": self.date}
        if self.reference is not None:
            body["reference"] = self.reference
        body["accountRef"] = {"id": self.account_ref.id}
        if self.currency_rate is not None:
            body["currencyRate"] = self.currency_rate
        return body

    def to_upstream_json(self) -> bytes:
        """The exact bytes to POST to Codat's create-bill-payment (without our `currency`)."""
        return render_json(self.upstream_body())

    def canonical(self) -> dict[str, Any]:
        """Everything that makes two requests "the same payment", `currency` included; nulls left out."""
        body = self.upstream_body()
        if self.currency is not None:
            body["currency"] = self.currency
        return body

    def canonical_json(self) -> bytes:
        """Bytes to hash: sorted keys, decimals as `format(d.normalize(), "f")`, `date` as written."""
        return render_json(self.canonical(), sort_keys=True)


AccountType = Literal["Unknown", "Credit", "Debit"]


class BankAccountCreate(BaseModel):
    """Body of POST …/payables/bankAccounts: Codat `bankAccountPrototype`."""

    model_config = ConfigDict(
        **_STRICT,
        title="BankAccountCreate",
        json_schema_extra={
            "examples": [
                {
                    "name": "Bank of Dave current account",
                    "accountType": "Debit",
                    "accountNumber": "12345678",
                    "sortCode": "123456",
                    "nominalCode": "1234567",
                    "currency": "GBP",
                }
            ]
        },
    )

    nominal_code: NominalCode | None = Field(default=None, alias="nominalCode")
    name: AccountName
    account_type: AccountType = Field(alias="accountType")
    account_number: AccountNumber = Field(alias="accountNumber")
    sort_code: SortCode | None = Field(default=None, alias="sortCode")
    currency: Annotated[CurrencyCode, AfterValidator(_payable_currency)]

    def upstream_body(self) -> dict[str, Any]:
        """The Codat `bankAccountPrototype` to send, in Codat's member order; nulls left out."""
        body: dict[str, Any] = {}
        if self.nominal_code is not None:
            body["nominalCode"] = self.nominal_code
        body["name"] = self.name
        body["accountType"] = self.account_type
        body["accountNumber"] = self.account_number
        if self.sort_code is not None:
            body["sortCode"] = self.sort_code
        body["currency"] = self.currency
        return body

    def to_upstream_json(self) -> bytes:
        """The exact bytes to POST to Codat's create-bank-account."""
        return render_json(self.upstream_body())

    def canonical(self) -> dict[str, Any]:
        return self.upstream_body()

    def canonical_json(self) -> bytes:
        return render_json(self.canonical(), sort_keys=True)


__all__ = [
    "AccountRef",
    "AccountType",
    "BankAccountCreate",
    "BillPaymentCreate",
    "decimal_places",
    "decimal_text",
    "json_loads",
    "render_json",
]
