"""The bill index against the Codat sandbox: how many list-bills pages each lookup costs, what the
incremental refresh sees, the full scan before "not payable", the negative cache and the re-sync.

The store is the in-memory one (test_bill_index_dynamodb.py runs the same lookups on DynamoDB)."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
from billpay.adapters.bill_index_memory import InMemoryBillIndex
from billpay.adapters.codat import CodatClient
from billpay.domain import bill_index as bi
from billpay.domain.bill_index import IndexedBill
from billpay.service.lookups import BillLookup, LookupCache, connection_key

from local.sandbox.seed import (
    ACCOUNT_GBP_CURRENT,
    BILL_GBP_PARTIAL,
    BILL_GBP_XXX,
    BILLS_GBP_OPEN,
    COMPANY_GBP_ID,
    CONNECTION_GBP_ID,
    UNKNOWN_BILL_ID,
)
from tests.fixtures.sandbox import Sandbox

pytestmark = pytest.mark.integration

GBP = (COMPANY_GBP_ID, CONNECTION_GBP_ID)
KEY = connection_key(*GBP)
# The demo GBP connection lists 17 open bills, 5 a page: 4 pages; GBP-PARTIAL-01 is on page 3.
OPEN_PAGES = 4


class Clock:
    """Our wall clock, moved by hand; it starts at the real time, the sandbox's dates being real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def index() -> InMemoryBillIndex:
    return InMemoryBillIndex()


@pytest.fixture
def bills(codat: CodatClient, index: InMemoryBillIndex, clock: Clock) -> BillLookup:
    return BillLookup(codat, index, resync_seconds=3600, wall_clock=clock)


def find(bills: BillLookup, bill_id: str) -> bi.IndexedBill | None:
    return bills.find(*GBP, bill_id, bills.client.deadline(5)).bill


def bill_requests(sandbox: Sandbox) -> int:
    path = f"GET /companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/bills"
    counted: int = sandbox.requests()["byRequest"].get(path, 0)
    return counted


def pay(sandbox: Sandbox, bill_id: str, amount: str) -> None:
    path = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/bills/{bill_id}/payment"
    body = f'{{"amount":{amount},"date":"2026-12-02","accountRef":{{"id":"{ACCOUNT_GBP_CURRENT}"}}}}'
    with sandbox.client() as http:
        response = http.post(
            path,
            content=body,
            headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"},
        )
    assert response.status_code == 201, response.text


def test_the_first_lookup_pages_to_the_bill_and_later_ones_finish_the_sync(
    bills: BillLookup, index: InMemoryBillIndex, sandbox: Sandbox
) -> None:
    found = bills.find(*GBP, BILL_GBP_PARTIAL, bills.client.deadline(5))
    assert found.bill is not None and found.bill.amount_due == Decimal(250) and found.fresh
    assert found.reads == 3  # pages 1-3: stopped at the bill
    state = index.state(KEY)
    assert state is not None and state.syncing and state.sync_token

    # The next lookup knows its bill: one incremental page, then carries the sync to its end (page 4).
    again = bills.find(*GBP, BILLS_GBP_OPEN[0], bills.client.deadline(5))
    assert again.reads == 1 + 1
    state = index.state(KEY)
    assert state is not None and state.complete and not state.syncing
    assert len(index.bills(KEY)) == 17

    # From now on: one page per lookup, and the bill is fresh (the index was refreshed and is complete).
    before = bill_requests(sandbox)
    third = bills.find(*GBP, BILL_GBP_XXX, bills.client.deadline(5))
    assert (third.reads, third.fresh, bill_requests(sandbox) - before) == (1, True, 1)


def test_the_incremental_refresh_sees_payments_and_closed_bills(
    bills: BillLookup, index: InMemoryBillIndex, sandbox: Sandbox
) -> None:
    find(bills, UNKNOWN_BILL_ID)  # pages the whole sync
    pay(sandbox, BILL_GBP_PARTIAL, "200")
    refreshed = find(bills, BILL_GBP_PARTIAL)
    assert refreshed is not None and (refreshed.amount_due, refreshed.status) == (
        Decimal(50),
        "PartiallyPaid",
    )
    pay(sandbox, BILLS_GBP_OPEN[0], "125")
    paid = find(bills, BILLS_GBP_OPEN[0])
    assert paid is not None and (paid.status, paid.amount_due, paid.payable) == ("Paid", Decimal(0), False)


def test_an_unknown_bill_is_confirmed_by_a_full_scan_then_remembered(
    bills: BillLookup, sandbox: Sandbox
) -> None:
    cache = LookupCache(60)
    first = bills.find(*GBP, UNKNOWN_BILL_ID, bills.client.deadline(5))
    assert first.bill is None and not first.fresh  # the index lacks it: not proof enough
    scan = bills.scan(*GBP, UNKNOWN_BILL_ID, bills.client.deadline(5), cache)
    assert (scan.bill, scan.fresh, scan.reads) == (None, True, OPEN_PAGES)
    before = bill_requests(sandbox)
    again = bills.scan(*GBP, UNKNOWN_BILL_ID, bills.client.deadline(5), cache)
    assert (again.bill, again.reads, bill_requests(sandbox) - before) == (None, 0, 0)  # the negative cache
    assert cache.bill_missing(KEY, UNKNOWN_BILL_ID)


def test_a_bill_missing_from_the_index_is_found_by_the_scan_and_indexed(
    bills: BillLookup, index: InMemoryBillIndex
) -> None:
    find(bills, UNKNOWN_BILL_ID)
    # as if it had escaped the refreshes (no sourceModifiedDate on some platforms)
    index._bills[KEY].pop(BILL_GBP_XXX)
    assert find(bills, BILL_GBP_XXX) is None
    scanned = bills.scan(*GBP, BILL_GBP_XXX, bills.client.deadline(5), LookupCache(60))
    assert scanned.bill is not None and scanned.bill.bill_id == BILL_GBP_XXX
    assert index.bill(KEY, BILL_GBP_XXX) is not None


def test_a_resync_drops_bills_no_longer_listed_unless_reserved(
    bills: BillLookup, index: InMemoryBillIndex, clock: Clock
) -> None:
    find(bills, UNKNOWN_BILL_ID)
    # Bills the platform closed without a sourceModifiedDate: still "Open" in the index.
    ghosts = [
        IndexedBill(name, "Open", "GBP", Decimal(9), "", clock.now - 10, {"id": name})
        for name in ("GHOST", "HELD")
    ]
    index.put_bills(KEY, ghosts)
    index.hold(KEY, "HELD", "9")
    clock.now += 3600  # the re-sync period has passed
    find(bills, BILL_GBP_PARTIAL)  # starts the re-sync, carries it two pages
    find(bills, BILL_GBP_PARTIAL)  # ...to its end
    state = index.state(KEY)
    assert state is not None and state.complete and state.full_sync_at == clock.now
    listed = {b.bill_id for b in index.bills(KEY)}
    assert "GHOST" not in listed and "HELD" in listed
    assert BILL_GBP_PARTIAL in listed


def test_a_refresh_never_writes_an_older_amount_over_a_newer_one(
    bills: BillLookup, index: InMemoryBillIndex, sandbox: Sandbox
) -> None:
    find(bills, UNKNOWN_BILL_ID)
    pay(sandbox, BILL_GBP_PARTIAL, "100")
    newer = find(bills, BILL_GBP_PARTIAL)
    assert newer is not None and newer.amount_due == Decimal(150)
    # a slow refresh that read the page before the payment lands late: ignored
    stale = IndexedBill(
        BILL_GBP_PARTIAL, "PartiallyPaid", "GBP", Decimal(250), bi.modified_key("2026-11-01T09:00:00Z"), 0, {}
    )
    index.put_bills(KEY, [stale])
    kept = index.bill(KEY, BILL_GBP_PARTIAL)
    assert kept is not None and kept.amount_due == Decimal(150)
