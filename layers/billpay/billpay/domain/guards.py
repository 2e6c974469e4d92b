"""The guards before a payment is written: pure rules over the request and the looked-up facts.

Checked in the order of docs/contract.md, Guards; the first refusal wins and is returned as a `Problem`
(never raised here, so the service can decide whether a refusal needs re-checking against fresh data first):

 1. unknown company or connection                         → 404 `not-found`
 2. `accountRef.id` not among the connection's accounts    → 422 `account-not-found`
 3. the account is not `Active`                            → 422 `account-inactive`
 4. the bill is not among the open bills (Open, PartiallyPaid) → 422 `bill-not-payable`
 5. bill, account or base currency missing, null, `XXX`    → 422 `currency-unknown`
 6. account currency A ∉ {B, C}; `currency` given and ≠ B;
    B = C with a `currencyRate` other than 1               → 422 `currency-mismatch`
 7. B ≠ C without `currencyRate`                           → 422 `currency-rate-required`
 8. more decimals than B's minor unit                      → 422 `amount-precision`
 9. `amount` > `amountDue` (a null `amountDue` skips this) → 422 `amount-exceeds-due`

B = the bill's currency, A = the paying account's, C = the company's base currency. Codat: `amount` is in
B; `currencyRate` is base units per one bill unit; a payment may involve at most one non-base currency.
Step 6's A ∈ {B, C} is exactly that rule: the only currencies in play are then B and C, so at most one of
them (B) is non-base.

Decisions where the contract was silent (now rows of its Guards table):
- An account whose status is anything but `Active` (Codat's enum is Active | Archived; a null or new
  value included) is `account-inactive`: money does not leave an account we cannot see is open.
- A bill returned with a status other than Open / PartiallyPaid is `bill-not-payable`, even though it
  was asked for with that filter: the rule is about the bill, not about trusting the filter.
- Currency codes from Codat are compared upper-cased and stripped; anything not shaped like an ISO 4217
  code, and ISO's "no currency" codes (`XXX`, metals, SDR, XTS; see `currencies.py`), are
  `currency-unknown`.
- B = C with a `currencyRate` other than 1 (say 0.78 on a GBP bill in a GBP company) is
  `currency-mismatch`: a rate claims a second currency that the payment does not have, and the ledger
  would book a base amount that is not the amount paid. A rate of exactly 1 (1, 1.0, 1.000) is accepted,
  as the contract says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from billpay.domain.currencies import is_payable, minor_units, normalize_code
from billpay.models.codat import PAYABLE_BILL_STATUSES, BankAccount, Bill
from billpay.models.requests import BillPaymentCreate, decimal_places, decimal_text
from billpay.problems import Problem

ACTIVE = "Active"

# Problem short names, in the order the guards check them.
GUARD_PROBLEMS: tuple[str, ...] = (
    "not-found",
    "account-not-found",
    "account-inactive",
    "bill-not-payable",
    "currency-unknown",
    "currency-mismatch",
    "currency-rate-required",
    "amount-precision",
    "amount-exceeds-due",
)


@dataclass(frozen=True)
class PaymentFacts:
    """What the lookups found. `account` / `bill` are None when not found (the bill: not among the open
    bills); `company_found` is False when Codat answered 404 for the company or connection."""

    company_found: bool
    account: BankAccount | None
    bill: Bill | None
    base_currency: str | None


@dataclass(frozen=True)
class Currencies:
    """The three currencies of a payment that passed step 5, upper-cased."""

    bill: str
    account: str
    base: str


def first_refusal(request: BillPaymentCreate, facts: PaymentFacts, *, bill_id: str = "") -> Problem | None:
    """The first guard that refuses `request` given `facts`, or None when the payment may be sent."""
    if not facts.company_found:
        return Problem(404, "not-found", "Not found", "No such company or connection.")

    account = facts.account
    account_id = request.account_ref.id
    if account is None:
        return _refuse(
            "account-not-found",
            "Account not found",
            f"No bank account {account_id!r} on this connection.",
            "body",
            "accountRef.id",
        )
    if account.status != ACTIVE:
        return _refuse(
            "account-inactive",
            "Account inactive",
            f"Bank account {account_id!r} is {account.status or 'without a status'}, not Active.",
            "body",
            "accountRef.id",
        )

    bill = facts.bill
    if bill is None or bill.status not in PAYABLE_BILL_STATUSES:
        state = "not among the open bills" if bill is None else f"{bill.status or 'without a status'}"
        return _refuse(
            "bill-not-payable",
            "Bill not payable",
            f"Bill {bill_id!r} is {state}: only Open and PartiallyPaid bills can be paid.",
            "path",
            "billId",
        )

    currencies = _currencies(bill, account, facts.base_currency)
    if isinstance(currencies, Problem):
        return currencies
    b, a, c = currencies.bill, currencies.account, currencies.base

    if a not in (b, c):
        return _refuse(
            "currency-mismatch",
            "Currency mismatch",
            f"Account currency {a} is neither the bill's ({b}) nor the company's base currency ({c}): "
            "a payment may involve at most one non-base currency.",
            "body",
            "accountRef.id",
        )
    if request.currency is not None and request.currency != b:
        return _refuse(
            "currency-mismatch",
            "Currency mismatch",
            f"currency {request.currency} is not the bill's currency ({b}), which the amount is in.",
            "body",
            "currency",
        )
    rate = request.currency_rate
    if b == c and rate is not None and rate != 1:
        return _refuse(
            "currency-mismatch",
            "Currency mismatch",
            f"currencyRate {decimal_text(rate)} given, but the bill is in the company's base currency "
            f"({b}): the rate must be absent, null or 1.",
            "body",
            "currencyRate",
        )

    if b != c and rate is None:
        return _refuse(
            "currency-rate-required",
            "Currency rate required",
            f"The bill is in {b} and the company's base currency is {c}: currencyRate ({c} per 1 {b}) "
            "is required.",
            "body",
            "currencyRate",
        )

    places = decimal_places(request.amount)
    allowed = minor_units(b)
    if places > allowed:
        return _refuse(
            "amount-precision",
            "Amount precision",
            f"amount {decimal_text(request.amount)} has {places} decimal places; {b} allows {allowed}.",
            "body",
            "amount",
        )

    due = bill.amount_due
    if due is not None and request.amount > due:
        return _refuse(
            "amount-exceeds-due",
            "Amount exceeds amount due",
            f"amount {decimal_text(request.amount)} {b} is more than the bill's amount due "
            f"({_amount_text(due)} {b}).",
            "body",
            "amount",
        )
    return None


def payment_currencies(facts: PaymentFacts) -> Currencies | None:
    """The currencies of a payment whose facts passed the currency-unknown step (else None)."""
    if facts.account is None or facts.bill is None:
        return None
    found = _currencies(facts.bill, facts.account, facts.base_currency)
    return None if isinstance(found, Problem) else found


def non_base_currencies(currencies: Currencies) -> frozenset[str]:
    """The currencies of the payment other than the base one (at most one for a payment that passed)."""
    return frozenset({currencies.bill, currencies.account}) - {currencies.base}


def _currencies(bill: Bill, account: BankAccount, base: str | None) -> Currencies | Problem:
    found = {
        "bill": (bill.currency, normalize_code(bill.currency)),
        "account": (account.currency, normalize_code(account.currency)),
        "company base": (base, normalize_code(base)),
    }
    unknown = [
        f"the {whose} currency is {_shown(raw)}"
        for whose, (raw, code) in found.items()
        if code is None or not is_payable(code)
    ]
    if unknown:
        return _refuse(
            "currency-unknown",
            "Currency unknown",
            "Cannot check the payment's currencies: " + "; ".join(unknown) + ".",
        )
    b, a, c = (code for _raw, code in found.values())
    assert b is not None and a is not None and c is not None
    return Currencies(bill=b, account=a, base=c)


def _shown(raw: object) -> str:
    if raw is None:
        return "missing"
    return repr(raw)


def _amount_text(value: Decimal) -> str:
    return decimal_text(value) if value.is_finite() else str(value)


def _refuse(
    name: str, title: str, detail: str, location: str | None = None, field: str | None = None
) -> Problem:
    errors: Sequence[dict[str, str]] | None = None
    if location is not None and field is not None:
        errors = [{"location": location, "field": field, "message": detail, "type": name}]
    return Problem(422, name, title, detail, errors=errors)


__all__ = [
    "GUARD_PROBLEMS",
    "Currencies",
    "PaymentFacts",
    "first_refusal",
    "non_base_currencies",
    "payment_currencies",
]
