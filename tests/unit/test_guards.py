"""The payment guards (contract: Guards) as pure rules: each refusal, their order, what a pass guarantees."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from billpay.domain.currencies import minor_units
from billpay.domain.guards import (
    GUARD_PROBLEMS,
    PaymentFacts,
    first_refusal,
    non_base_currencies,
    payment_currencies,
)
from billpay.models.codat import BankAccount, Bill
from billpay.models.requests import BillPaymentCreate, decimal_places
from hypothesis import given, settings
from hypothesis import strategies as st

ACCOUNT_ID = "acc-1"
BILL_ID = "bill-1"


def payment(amount: Any = Decimal("10.00"), **extra: Any) -> BillPaymentCreate:
    body = {"amount": amount, "date": "2024-03-01", "accountRef": {"id": ACCOUNT_ID}, **extra}
    return BillPaymentCreate.model_validate(body)


def account(currency: str | None = "GBP", status: str | None = "Active") -> BankAccount:
    return BankAccount.model_validate({"id": ACCOUNT_ID, "currency": currency, "status": status})


def bill(
    currency: str | None = "GBP", status: str | None = "Open", due: Decimal | None = Decimal("100.00")
) -> Bill:
    return Bill.model_validate({"id": BILL_ID, "currency": currency, "status": status, "amountDue": due})


def facts(
    *,
    company_found: bool = True,
    acct: BankAccount | None = None,
    the_bill: Bill | None = None,
    base: str | None = "GBP",
    no_account: bool = False,
    no_bill: bool = False,
) -> PaymentFacts:
    return PaymentFacts(
        company_found=company_found,
        account=None if no_account else (acct or account()),
        bill=None if no_bill else (the_bill or bill()),
        base_currency=base,
    )


def refusal_type(request: BillPaymentCreate, f: PaymentFacts) -> str | None:
    problem = first_refusal(request, f, bill_id=BILL_ID)
    return None if problem is None else problem.type


# ---------------------------------------------------------------------------------------------- each


def test_a_valid_same_currency_payment_passes() -> None:
    assert first_refusal(payment(), facts()) is None


def test_unknown_company_or_connection_is_404_not_found() -> None:
    problem = first_refusal(payment(), facts(company_found=False))
    assert problem is not None
    assert (problem.status, problem.type) == (404, "not-found")


@pytest.mark.parametrize(
    ("request_", "f", "expected", "field"),
    [
        (payment(), facts(no_account=True), "account-not-found", "accountRef.id"),
        (payment(), facts(acct=account(status="Archived")), "account-inactive", "accountRef.id"),
        (payment(), facts(acct=account(status=None)), "account-inactive", "accountRef.id"),
        (payment(), facts(no_bill=True), "bill-not-payable", "billId"),
        (payment(), facts(the_bill=bill(status="Paid")), "bill-not-payable", "billId"),
        (payment(), facts(the_bill=bill(status="Void")), "bill-not-payable", "billId"),
        (payment(), facts(the_bill=bill(status="Draft")), "bill-not-payable", "billId"),
        (payment(), facts(the_bill=bill(currency="XXX")), "currency-unknown", None),
        (payment(), facts(the_bill=bill(currency=None)), "currency-unknown", None),
        (payment(), facts(acct=account(currency=None)), "currency-unknown", None),
        (payment(), facts(acct=account(currency="")), "currency-unknown", None),
        (payment(), facts(base=None), "currency-unknown", None),
        (payment(), facts(base="XXX"), "currency-unknown", None),
        (payment(), facts(the_bill=bill(currency="XAU")), "currency-unknown", None),
        (
            payment(),
            facts(acct=account(currency="EUR"), the_bill=bill(currency="USD")),
            "currency-mismatch",
            "accountRef.id",
        ),
        (payment(), facts(acct=account(currency="EUR")), "currency-mismatch", "accountRef.id"),
        (payment(currency="USD"), facts(), "currency-mismatch", "currency"),
        (payment(currencyRate=Decimal("0.78")), facts(), "currency-mismatch", "currencyRate"),
        (payment(), facts(the_bill=bill(currency="USD")), "currency-rate-required", "currencyRate"),
        (
            payment(currencyRate=None),
            facts(the_bill=bill(currency="USD")),
            "currency-rate-required",
            "currencyRate",
        ),
        (payment(Decimal("10.005")), facts(), "amount-precision", "amount"),
        (
            payment(Decimal("10.5")),
            facts(the_bill=bill(currency="JPY", due=Decimal(1000)), acct=account("JPY"), base="JPY"),
            "amount-precision",
            "amount",
        ),
        (payment(Decimal("100.01")), facts(), "amount-exceeds-due", "amount"),
        (payment(Decimal("1")), facts(the_bill=bill(due=Decimal(0))), "amount-exceeds-due", "amount"),
    ],
)
def test_each_guard_refuses_with_its_problem(
    request_: BillPaymentCreate, f: PaymentFacts, expected: str, field: str | None
) -> None:
    problem = first_refusal(request_, f, bill_id=BILL_ID)
    assert problem is not None
    assert (problem.status, problem.type) == (422, expected)
    assert problem.detail
    if field is None:
        assert problem.errors is None
    else:
        assert problem.errors is not None
        assert problem.errors[0]["field"] == field
        assert problem.errors[0]["type"] == expected


@pytest.mark.parametrize(
    ("request_", "f"),
    [
        # foreign bill paid from a base-currency account, with a rate (USD bill in a GBP company)
        (payment(currencyRate=Decimal("0.781")), facts(the_bill=bill(currency="USD"))),
        # foreign bill paid from a foreign account in the bill's currency
        (payment(currencyRate=Decimal("0.781")), facts(acct=account("USD"), the_bill=bill(currency="USD"))),
        # same currency, rate 1 in any spelling, currency given and equal
        (payment(currencyRate=Decimal("1.000"), currency="GBP"), facts()),
        (payment(currencyRate=1), facts()),
        # amount equal to amountDue, trailing zeros beyond the minor unit, unknown amountDue
        (payment(Decimal("100.00")), facts()),
        (payment(Decimal("99.99000")), facts()),
        (payment(Decimal("5000")), facts(the_bill=bill(due=None))),
        # KWD has three decimals; JPY none; lower-case or padded codes from Codat still count
        (payment(Decimal("1.234")), facts(acct=account("KWD"), the_bill=bill("KWD"), base="KWD")),
        (
            payment(Decimal("100")),
            facts(acct=account("JPY"), the_bill=bill("JPY", due=Decimal(100)), base="JPY"),
        ),
        (payment(), facts(acct=account("gbp"), the_bill=bill(" GBP "))),
        (payment(), facts(the_bill=bill(status="PartiallyPaid"))),
    ],
)
def test_valid_payments_pass(request_: BillPaymentCreate, f: PaymentFacts) -> None:
    assert first_refusal(request_, f, bill_id=BILL_ID) is None


def test_unknown_company_wins_over_everything() -> None:
    f = PaymentFacts(company_found=False, account=None, bill=None, base_currency=None)
    assert refusal_type(payment(Decimal("0.001"), currency="XXX"), f) == "not-found"


# ------------------------------------------------------------------------------------- properties

CODES = ["GBP", "USD", "EUR", "JPY", "KWD", "CHF"]
RAW_CODES = st.one_of(st.sampled_from(CODES), st.sampled_from([None, "", "XXX", "XAU", "usd", "£", "GBPX"]))
STATUS_ACCOUNT = st.sampled_from(["Active", "Active", "Active", "Archived", None, "Closed"])
STATUS_BILL = st.sampled_from(["Open", "Open", "PartiallyPaid", "Paid", "Void", "Draft", "Unknown", None])
AMOUNTS = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("100000"), places=4, allow_nan=False)
RATES = st.one_of(
    st.none(),
    st.just(Decimal(1)),
    st.just(Decimal("1.000")),
    st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1000"), places=6, allow_nan=False),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[BillPaymentCreate, PaymentFacts]:
    """Mostly-valid payments with, now and then, one or more rules broken in any combination."""

    def ok() -> bool:
        return draw(st.integers(0, 6)) > 0

    c = draw(st.sampled_from(CODES)) if ok() else draw(RAW_CODES)
    b = (c if draw(st.booleans()) else draw(st.sampled_from(CODES))) if ok() else draw(RAW_CODES)
    a = draw(st.sampled_from([b, c])) if ok() else draw(RAW_CODES)
    b_code = _code(b)
    places = minor_units(b_code) if b_code else 2
    if not ok():
        places += draw(st.integers(1, 3))
    amount = Decimal(draw(st.integers(1, 10**7))).scaleb(-places)
    extra: dict[str, Any] = {}
    if b != c:
        rate = draw(RATES.filter(lambda r: r is not None)) if ok() else None
    else:
        rate = draw(st.sampled_from([None, Decimal(1), Decimal("1.00")])) if ok() else draw(RATES)
    if rate is not None:
        extra["currencyRate"] = rate
    currency = draw(st.sampled_from([None, b_code])) if ok() else draw(st.sampled_from(CODES))
    if currency is not None:
        extra["currency"] = currency
    request = payment(amount, **extra)
    if ok():
        due: Decimal | None = amount + Decimal(draw(st.integers(0, 10**6))).scaleb(-places)
    else:
        due = draw(st.one_of(st.none(), AMOUNTS, st.just(Decimal(0))))
    acct = account(a, "Active" if ok() else draw(STATUS_ACCOUNT)) if ok() else None
    the_bill = bill(b, draw(st.sampled_from(["Open", "PartiallyPaid"])) if ok() else draw(STATUS_BILL), due)
    f = PaymentFacts(
        company_found=ok() or ok(),
        account=acct,
        bill=the_bill if ok() else None,
        base_currency=c,
    )
    return request, f


def _code(raw: str | None) -> str | None:
    if raw is None:
        return None
    code = raw.strip().upper()
    if len(code) != 3 or not code.isalpha() or not code.isascii() or code in {"XXX", "XAU"}:
        return None
    return code


def violated_rules(request: BillPaymentCreate, f: PaymentFacts) -> set[str]:
    """Every rule the scenario breaks, each judged on its own (an oracle independent of the order)."""
    broken: set[str] = set()
    if not f.company_found:
        broken.add("not-found")
    if f.account is None:
        broken.add("account-not-found")
    elif f.account.status != "Active":
        broken.add("account-inactive")
    if f.bill is None or f.bill.status not in ("Open", "PartiallyPaid"):
        broken.add("bill-not-payable")
    if f.account is None or f.bill is None:
        return broken
    a, b, c = _code(f.account.currency), _code(f.bill.currency), _code(f.base_currency)
    if a is None or b is None or c is None:
        broken.add("currency-unknown")
        return broken
    rate = request.currency_rate
    if a not in {b, c} or (request.currency not in (None, b)) or (b == c and rate not in (None, 1)):
        broken.add("currency-mismatch")
    if b != c and rate is None:
        broken.add("currency-rate-required")
    if decimal_places(request.amount) > minor_units(b):
        broken.add("amount-precision")
    if f.bill.amount_due is not None and request.amount > f.bill.amount_due:
        broken.add("amount-exceeds-due")
    return broken


@settings(max_examples=600, deadline=None)
@given(scenarios())
def test_the_first_broken_rule_in_design_order_is_the_answer(
    scenario: tuple[BillPaymentCreate, PaymentFacts],
) -> None:
    request, f = scenario
    broken = violated_rules(request, f)
    expected = next((name for name in GUARD_PROBLEMS if name in broken), None)
    problem = first_refusal(request, f, bill_id=BILL_ID)
    assert (problem.type if problem else None) == expected
    if problem is not None:
        assert problem.status == (404 if problem.type == "not-found" else 422)


@settings(max_examples=600, deadline=None)
@given(scenarios())
def test_a_payment_that_passes_involves_at_most_one_non_base_currency(
    scenario: tuple[BillPaymentCreate, PaymentFacts],
) -> None:
    request, f = scenario
    if first_refusal(request, f, bill_id=BILL_ID) is not None:
        return
    currencies = payment_currencies(f)
    assert currencies is not None
    assert len(non_base_currencies(currencies)) <= 1
    assert currencies.account in {currencies.bill, currencies.base}
    # the rate is there exactly when a conversion is needed; otherwise it is 1 or nothing
    if currencies.bill != currencies.base:
        assert request.currency_rate is not None and request.currency_rate > 0
    else:
        assert request.currency_rate in (None, 1)
    assert decimal_places(request.amount) <= minor_units(currencies.bill)
    assert f.bill is not None
    assert f.bill.amount_due is None or request.amount <= f.bill.amount_due
    assert request.currency in (None, currencies.bill)


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.integers(0, 6))
def test_trailing_zeros_never_change_the_answer(
    scenario: tuple[BillPaymentCreate, PaymentFacts], zeros: int
) -> None:
    request, f = scenario
    padded = Decimal(str(request.amount) + ("" if "." in str(request.amount) else ".") + "0" * zeros)
    assert padded == request.amount
    other = request.model_copy(update={"amount": padded})
    assert refusal_type(request, f) == refusal_type(other, f)


@settings(max_examples=300, deadline=None)
@given(
    code=st.sampled_from(["GBP", "USD", "EUR", "JPY", "KWD", "BHD", "CLF", "ISK"]),
    units=st.integers(1, 10**6),
    places=st.integers(0, 6),
)
def test_precision_follows_the_bills_minor_unit(code: str, units: int, places: int) -> None:
    amount = Decimal(units).scaleb(-places)
    if decimal_places(amount) == 0 and places > 0:
        return  # e.g. 10 x 10^-1 = 1.0: not a case of `places` decimals
    f = facts(acct=account(code), the_bill=bill(code, due=None), base=code)
    refused = refusal_type(payment(amount), f) == "amount-precision"
    assert refused == (decimal_places(amount) > minor_units(code))
