"""The payment guards against the real Codat sandbox: every refusal reachable with seeded data, the caches
and the bill index with their fresh re-check, read failures and the time budget.

The bill index here is the in-memory store (same rules as DynamoDB's; that one has its own tests in
test_bill_index_dynamodb.py)."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from billpay.adapters.bill_index_memory import InMemoryBillIndex
from billpay.adapters.codat import CodatClient
from billpay.models.codat import BankAccount
from billpay.models.requests import BankAccountCreate, BillPaymentCreate
from billpay.problems import Problem
from billpay.service.payment_guards import (
    LookupCache,
    PaymentContext,
    check_bank_account,
    check_payment,
    connection_key,
)

from local.sandbox.seed import (
    ACCOUNT_GBP_ARCHIVED,
    ACCOUNT_GBP_CURRENT,
    ACCOUNT_GBP_EUR,
    ACCOUNT_GBP_NO_CURRENCY,
    ACCOUNT_GBP_USD,
    ACCOUNT_NOCCY_GBP,
    ACCOUNT_USD_CHECKING,
    BILL_GBP_DRAFT,
    BILL_GBP_JPY_OPEN,
    BILL_GBP_NODUE,
    BILL_GBP_PAID,
    BILL_GBP_PARTIAL,
    BILL_GBP_USD_OPEN,
    BILL_GBP_VOID,
    BILL_GBP_XXX,
    BILL_USD_GBP_OPEN,
    BILLS_GBP_OPEN,
    BILLS_NOCCY_OPEN,
    COMPANY_GBP_ID,
    COMPANY_NOCCY_ID,
    COMPANY_USD_ID,
    CONNECTION_GBP_ID,
    CONNECTION_NOCCY_ID,
    CONNECTION_USD_ID,
    UNKNOWN_ACCOUNT_ID,
    UNKNOWN_BILL_ID,
    UNKNOWN_COMPANY_ID,
    UNKNOWN_CONNECTION_ID,
)
from tests.fixtures.sandbox import Sandbox

pytestmark = pytest.mark.integration

GBP = (COMPANY_GBP_ID, CONNECTION_GBP_ID)
USD = (COMPANY_USD_ID, CONNECTION_USD_ID)
NOCCY = (COMPANY_NOCCY_ID, CONNECTION_NOCCY_ID)


@pytest.fixture
def cache() -> LookupCache:
    return LookupCache(ttl_seconds=60.0)


@pytest.fixture
def index() -> InMemoryBillIndex:
    return InMemoryBillIndex()


@pytest.fixture(autouse=True)
def _shared_index(index: InMemoryBillIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every check in a test shares the test's own index, as every container shares the table.
    monkeypatch.setattr("billpay.service.payment_guards.default_bill_index", lambda: index)


def pay(amount: str, account: str = ACCOUNT_GBP_CURRENT, **extra: Any) -> BillPaymentCreate:
    body = {"amount": Decimal(amount), "date": "2026-11-25", "accountRef": {"id": account}, **extra}
    return BillPaymentCreate.model_validate(body)


def check(
    codat: CodatClient,
    cache: LookupCache,
    company: tuple[str, str],
    bill_id: str,
    request: BillPaymentCreate,
    budget: float = 5.0,
) -> PaymentContext:
    return check_payment(
        codat, company[0], company[1], bill_id, request, deadline=codat.deadline(budget), cache=cache
    )


def refusal(
    codat: CodatClient, cache: LookupCache, company: tuple[str, str], bill_id: str, request: BillPaymentCreate
) -> Problem:
    with pytest.raises(Problem) as raised:
        check(codat, cache, company, bill_id, request)
    return raised.value


# ------------------------------------------------------------------------------------------- passes


def test_a_valid_payment_passes_with_its_currencies(
    codat: CodatClient, cache: LookupCache, sandbox: Sandbox
) -> None:
    context = check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("250.00"))
    assert (context.bill_currency, context.account_currency, context.base_currency) == ("GBP", "GBP", "GBP")
    assert context.bill.id == BILL_GBP_PARTIAL
    assert context.account.id == ACCOUNT_GBP_CURRENT
    assert context.upstream_reads >= 3  # company, accounts, bills (each at least one page)
    assert sandbox.payments() == []  # guards only read


@pytest.mark.parametrize(
    ("company", "bill_id", "request_"),
    [
        (GBP, BILL_GBP_USD_OPEN, pay("20.00", currencyRate=Decimal("0.781"), currency="USD")),  # GBP acct
        (GBP, BILL_GBP_USD_OPEN, pay("20.00", ACCOUNT_GBP_USD, currencyRate=Decimal("0.781"))),  # USD acct
        (GBP, BILL_GBP_JPY_OPEN, pay("4500", currencyRate=Decimal("0.0052"))),
        (GBP, BILL_GBP_NODUE, pay("5000.00")),  # amountDue null: no due check
        (GBP, BILLS_GBP_OPEN[-1], pay("1.5", currencyRate=1)),  # last page of the open bills
        (USD, BILL_USD_GBP_OPEN, pay("200", ACCOUNT_USD_CHECKING, currencyRate=Decimal("1.28"))),
    ],
)
def test_seeded_valid_payments_pass(
    codat: CodatClient,
    cache: LookupCache,
    company: tuple[str, str],
    bill_id: str,
    request_: BillPaymentCreate,
) -> None:
    assert check(codat, cache, company, bill_id, request_).bill.id == bill_id


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("company", "bill_id", "request_", "status", "expected"),
    [
        ((UNKNOWN_COMPANY_ID, CONNECTION_GBP_ID), BILL_GBP_PARTIAL, pay("1.00"), 404, "not-found"),
        ((COMPANY_GBP_ID, UNKNOWN_CONNECTION_ID), BILL_GBP_PARTIAL, pay("1.00"), 404, "not-found"),
        (GBP, BILL_GBP_PARTIAL, pay("1.00", UNKNOWN_ACCOUNT_ID), 422, "account-not-found"),
        (
            GBP,
            BILL_GBP_PARTIAL,
            pay("1.00", ACCOUNT_USD_CHECKING),
            422,
            "account-not-found",
        ),  # other company's
        (GBP, BILL_GBP_PARTIAL, pay("1.00", ACCOUNT_GBP_ARCHIVED), 422, "account-inactive"),
        (GBP, BILL_GBP_PAID, pay("1.00"), 422, "bill-not-payable"),
        (GBP, BILL_GBP_VOID, pay("1.00"), 422, "bill-not-payable"),
        (GBP, BILL_GBP_DRAFT, pay("1.00"), 422, "bill-not-payable"),
        (GBP, UNKNOWN_BILL_ID, pay("1.00"), 422, "bill-not-payable"),
        (GBP, BILL_GBP_XXX, pay("1.00"), 422, "currency-unknown"),
        (GBP, BILL_GBP_PARTIAL, pay("1.00", ACCOUNT_GBP_NO_CURRENCY), 422, "currency-unknown"),
        (NOCCY, BILLS_NOCCY_OPEN[0], pay("1.00", ACCOUNT_NOCCY_GBP), 422, "currency-unknown"),
        (
            GBP,
            BILL_GBP_USD_OPEN,
            pay("1.00", ACCOUNT_GBP_EUR, currencyRate=Decimal("0.781")),
            422,
            "currency-mismatch",
        ),
        (GBP, BILL_GBP_PARTIAL, pay("1.00", currency="USD"), 422, "currency-mismatch"),
        (GBP, BILL_GBP_PARTIAL, pay("1.00", currencyRate=Decimal("1.2")), 422, "currency-mismatch"),
        (GBP, BILL_GBP_USD_OPEN, pay("1.00"), 422, "currency-rate-required"),
        (GBP, BILL_GBP_JPY_OPEN, pay("10.5", currencyRate=Decimal("0.0052")), 422, "amount-precision"),
        (GBP, BILL_GBP_PARTIAL, pay("1.001"), 422, "amount-precision"),
        (GBP, BILL_GBP_PARTIAL, pay("250.01"), 422, "amount-exceeds-due"),
    ],
)
def test_each_guard_is_reachable_with_seeded_data(
    codat: CodatClient,
    cache: LookupCache,
    sandbox: Sandbox,
    company: tuple[str, str],
    bill_id: str,
    request_: BillPaymentCreate,
    status: int,
    expected: str,
) -> None:
    problem = refusal(codat, cache, company, bill_id, request_)
    assert (problem.status, problem.type) == (status, expected)
    assert sandbox.payments() == []


# ------------------------------------------------------------------------------- cache and re-check


def complete_index(codat: CodatClient, cache: LookupCache, company: tuple[str, str] = GBP) -> None:
    """Sync the connection's open bills to the end: a lookup of a bill that is not there pages them all."""
    assert refusal(codat, cache, company, UNKNOWN_BILL_ID, pay("1.00")).type == "bill-not-payable"


def test_a_warm_container_checks_with_one_codat_request(codat: CodatClient, cache: LookupCache) -> None:
    first = check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("10.00"))
    assert first.upstream_reads >= 3  # company, accounts, and the open bills' pages up to this one
    complete_index(codat, cache)
    again = check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("20.00"))
    other_bill = check(codat, cache, GBP, BILLS_GBP_OPEN[0], pay("1.00"))
    # company and accounts cached; the bill from the index after one incremental page
    assert again.upstream_reads == other_bill.upstream_reads == 1


def test_a_refusal_on_cached_data_is_rechecked_fresh_and_can_pass(
    codat: CodatClient, cache: LookupCache, sandbox: Sandbox
) -> None:
    complete_index(codat, cache)
    # Cache a complete scan of the accounts (an unknown id pages to the end), then create an account.
    problem = refusal(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00", UNKNOWN_ACCOUNT_ID))
    assert problem.type == "account-not-found"
    created = create_account(sandbox, GBP, "GBP")

    context = check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00", created))
    assert context.account.id == created
    assert context.rechecked  # the cached listing said "unknown"; fresh data says otherwise
    # ...and the fresh listing replaced the cached one (the one request left: the bills' incremental page)
    assert check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00", created)).upstream_reads == 1


def test_a_payment_recorded_by_anyone_is_seen_by_the_next_lookup(
    codat: CodatClient, cache: LookupCache, sandbox: Sandbox
) -> None:
    check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("250.00"))  # indexed: due 250.00
    complete_index(codat, cache)
    record_payment(sandbox, GBP, BILL_GBP_PARTIAL, "200.00")  # due now 50.00, by another container

    # The incremental refresh reads the bill the payment modified: no stale pass, no extra request.
    with pytest.raises(Problem) as raised:
        check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("100.00"))
    assert raised.value.type == "amount-exceeds-due"
    assert "50" in raised.value.detail
    assert check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("50.00")).upstream_reads == 1
    # paid in full: the refresh sees it Paid, and Codat agrees it is not payable
    record_payment(sandbox, GBP, BILL_GBP_PARTIAL, "50.00")
    assert refusal(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00")).type == "bill-not-payable"


def test_no_cache_means_every_check_reads_fresh(codat: CodatClient) -> None:  # bills: see the index
    uncached = LookupCache(ttl_seconds=0)
    check(codat, uncached, GBP, BILL_GBP_PARTIAL, pay("1.00"))
    assert check(codat, uncached, GBP, BILL_GBP_PARTIAL, pay("1.00")).upstream_reads >= 3


def test_cache_entries_expire(codat: CodatClient, sandbox: Sandbox) -> None:
    now = [0.0]
    cache = LookupCache(ttl_seconds=30, clock=lambda: now[0])
    check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00"))
    complete_index(codat, cache)
    now[0] = 29.0
    assert check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00")).upstream_reads == 1
    now[0] = 31.0
    assert check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00")).upstream_reads >= 3


# --------------------------------------------------------------------------- read failures and budget


def test_lookups_that_cannot_finish_in_the_budget_are_503_and_concurrent(
    codat: CodatClient, cache: LookupCache, sandbox: Sandbox
) -> None:
    # Every lookup hangs: run one after the other they would take three budgets; concurrently, one.
    for path in (
        "/companies/*/payables/bills",
        "/companies/*/payables/info",
        "/companies/*/mappingOptions/*",
    ):
        sandbox.add_fault(method="GET", path=path, fault="timeout", holdSeconds=5, times=10)
    started = time.monotonic()
    with pytest.raises(Problem) as raised:
        check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00"), budget=1.0)
    elapsed = time.monotonic() - started
    assert (raised.value.status, raised.value.type) == (503, "upstream-unavailable")
    assert raised.value.headers.get("Retry-After")
    assert elapsed < 1.8, elapsed
    assert sandbox.payments() == []


def test_a_hanging_list_bills_is_503_within_the_budget(
    codat: CodatClient, cache: LookupCache, sandbox: Sandbox
) -> None:
    sandbox.add_fault(
        method="GET", path="/companies/*/payables/bills", fault="timeout", holdSeconds=5, times=10
    )
    started = time.monotonic()
    with pytest.raises(Problem) as raised:
        check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00"), budget=1.0)
    assert (raised.value.status, raised.value.type) == (503, "upstream-unavailable")
    assert time.monotonic() - started < 1.8


@pytest.mark.parametrize(
    ("status", "expected_status", "expected"),
    [
        (401, 502, "upstream-rejected"),
        (403, 502, "upstream-rejected"),
        (429, 503, "upstream-rate-limited"),
        (500, 502, "upstream-unavailable"),
        (503, 502, "upstream-unavailable"),
    ],
)
def test_read_failures_answer_the_read_problems(
    codat: CodatClient,
    cache: LookupCache,
    sandbox: Sandbox,
    status: int,
    expected_status: int,
    expected: str,
) -> None:
    sandbox.add_fault(
        method="GET", path="/companies/*/payables/info", fault="status", status=status, times=10
    )
    with pytest.raises(Problem) as raised:
        check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00"))
    assert (raised.value.status, raised.value.type) == (expected_status, expected)


def test_a_read_timeout_inside_the_budget_is_504(
    codat: CodatClient, cache: LookupCache, sandbox: Sandbox
) -> None:
    short = CodatClient(
        base_url=sandbox.url,
        api_key=sandbox.api_key,
        timeout_seconds=0.3,
        connect_timeout_seconds=0.3,
        budget_seconds=5.0,
    )
    try:
        sandbox.add_fault(
            method="GET", path="/companies/*/payables/info", fault="timeout", holdSeconds=3, times=10
        )
        with pytest.raises(Problem) as raised:
            check(short, cache, GBP, BILL_GBP_PARTIAL, pay("1.00"), budget=4.0)
        assert (raised.value.status, raised.value.type) == (504, "upstream-unavailable")
    finally:
        short.close()


def test_a_failure_is_never_cached(codat: CodatClient, cache: LookupCache, sandbox: Sandbox) -> None:
    sandbox.add_fault(method="GET", path="/companies/*/payables/info", fault="status", status=500, times=3)
    with pytest.raises(Problem):
        check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00"))
    assert check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00")).bill.id == BILL_GBP_PARTIAL


# ------------------------------------------------------------------------------------- bank accounts


def test_bank_account_guard_knows_the_company(codat: CodatClient, cache: LookupCache) -> None:
    body = BankAccountCreate.model_validate(
        {"name": "Ops", "accountType": "Debit", "accountNumber": "12345678", "currency": "EUR"}
    )
    context = check_bank_account(codat, *GBP, body, deadline=codat.deadline(5), cache=cache)
    assert context.base_currency == "GBP"
    with pytest.raises(Problem) as raised:
        check_bank_account(
            codat, UNKNOWN_COMPANY_ID, CONNECTION_GBP_ID, body, deadline=codat.deadline(5), cache=cache
        )
    assert (raised.value.status, raised.value.type) == (404, "not-found")


def test_a_created_account_noted_in_the_cache_can_be_paid_from_at_once(
    codat: CodatClient, cache: LookupCache, sandbox: Sandbox
) -> None:
    complete_index(codat, cache)
    refusal(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00", UNKNOWN_ACCOUNT_ID))  # complete scan cached
    created = create_account(sandbox, GBP, "GBP")
    cache.note_bank_account_created(
        connection_key(*GBP),
        BankAccount.model_validate({"id": created, "currency": "GBP", "status": "Active"}),
    )
    context = check(codat, cache, GBP, BILL_GBP_PARTIAL, pay("1.00", created))
    assert (context.upstream_reads, context.rechecked) == (1, False)


# ------------------------------------------------------------------------------------------- helpers


def create_account(sandbox: Sandbox, company: tuple[str, str], currency: str) -> str:
    path = f"/companies/{company[0]}/connections/{company[1]}/payables/bankAccounts"
    body = {
        "name": f"New {currency}",
        "accountType": "Debit",
        "accountNumber": "99887766",
        "currency": currency,
    }
    with sandbox.client() as http:
        response = http.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code in (200, 201), response.text
    account_id = response.json()["id"]
    assert isinstance(account_id, str)
    return account_id


def record_payment(sandbox: Sandbox, company: tuple[str, str], bill_id: str, amount: str) -> None:
    path = f"/companies/{company[0]}/connections/{company[1]}/payables/bills/{bill_id}/payment"
    # The amount as written (a JSON number token), never through a float.
    body = f'{{"amount":{amount},"date":"2026-11-25","accountRef":{{"id":"{ACCOUNT_GBP_CURRENT}"}}}}'
    with sandbox.client() as http:
        response = http.post(
            path,
            content=body,
            headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"},
        )
    assert response.status_code in (200, 201), response.text
