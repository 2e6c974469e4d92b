"""Reservations on a bill (docs/contract.md, Reservations): the verdict table, and the service on the
in-memory bill index with the fake operations store."""

from __future__ import annotations

from decimal import Decimal

import pytest
from billpay.adapters.bill_index_memory import InMemoryBillIndex
from billpay.domain import lifecycle
from billpay.domain.bill_index import IndexedBill
from billpay.domain.operations import KIND_BILL_PAYMENT, Operation, UpstreamRequest
from billpay.domain.reservations import Reservation, reflected, reservation_key, verdict
from billpay.service.reservations import PaymentHold, Reservations, payment_target

from tests.fixtures.fake_store import FakeClock, FakeStore

KEY = ("co", "conn")
BILL = "bill-1"
PATH = "/companies/co/connections/conn/payables/bills/bill-1/payment"


def _claimed(store: FakeStore, clock: FakeClock, n: int = 1, amount: str = "50") -> Operation:
    claiming = lifecycle.claim(
        operation_id=f"op-{n}",
        kind=KIND_BILL_PAYMENT,
        request_hash="h",
        upstream_key=f"k-{n}",
        upstream_request=UpstreamRequest("POST", PATH, f'{{"amount":{amount}}}'.encode()),
        now=clock(),
        lease_until=clock() + 25,
        lease_token=f"t-{n}",
    )
    store.process().apply(claiming)
    return claiming.ours


def _index(due: str = "125") -> InMemoryBillIndex:
    index = InMemoryBillIndex()
    bill = IndexedBill(BILL, "Open", "GBP", Decimal(due), "2026", 0.0, body={})
    index.put_bills(KEY, [bill])
    return index


def test_the_verdict_follows_the_operation_record() -> None:
    clock = FakeClock()
    store = FakeStore()
    claimed = _claimed(store, clock)
    held = Reservation(reservation_key("op-1", "t-1"), "op-1", Decimal(50), "held", clock())
    assert verdict(held, None, clock()) == "drop"
    assert verdict(held, claimed, clock()) == "keep"  # a live claim
    assert verdict(held, claimed, clock() + 60) == "drop"  # its lease lapsed, never sent
    reclaimed = claimed.with_changes(claim_token="t-2")
    assert verdict(held, reclaimed, clock()) == "drop"  # another claim's now
    sent = lifecycle.mark_sent(claimed, clock()).ours
    assert verdict(held, sent, clock() + 600) == "keep"  # pending: kept whatever the time
    assert verdict(held, sent.with_changes(status="needs_review", phase="settled"), clock()) == "keep"
    assert verdict(held, sent.with_changes(status="failed", phase="settled"), clock()) == "drop"
    assert verdict(held, sent.with_changes(status="succeeded", phase="settled"), clock()) == "apply"


def test_an_applied_reservation_gives_way_to_a_refresh_that_began_after_it() -> None:
    applied = Reservation("k", "op", Decimal(50), "applied", 0.0, applied_at=100.0)
    assert not reflected(applied, 100.0)
    assert reflected(applied, 101.0)
    assert not reflected(Reservation("k", "op", Decimal(50), "held", 0.0), 1e12)


def test_three_reservations_of_50_on_125_due_leave_the_third_out() -> None:
    clock, store, index = FakeClock(), FakeStore(), _index()
    reservations = Reservations(index, store.process(), clock)
    holds = [PaymentHold(reservations) for _ in range(3)]
    made = [h.reserve(_claimed(store, clock, n), KEY, BILL, Decimal(50)) for n, h in enumerate(holds)]
    assert made == [True, True, False]
    bill = index.bill(KEY, BILL)
    assert bill is not None and bill.available == Decimal(25)


def test_a_reservation_left_by_a_dead_claim_is_dropped_when_the_bill_is_full() -> None:
    clock, store, index = FakeClock(), FakeStore(), _index()
    reservations = Reservations(index, store.process(), clock)
    assert reservations.reserve(_claimed(store, clock, 1, "100"), KEY, BILL, Decimal(100))
    clock.advance(60)  # that claim's lease lapsed: its holder died before anything was sent
    assert reservations.reserve(_claimed(store, clock, 2, "100"), KEY, BILL, Decimal(100))
    bill = index.bill(KEY, BILL)
    assert bill is not None and [r.operation_id for r in bill.reservations] == ["op-2"]


def test_released_and_settled_give_the_amount_back_or_apply_it() -> None:
    clock, store, index = FakeClock(), FakeStore(), _index()
    reservations = Reservations(index, store.process(), clock)
    first, second = PaymentHold(reservations), PaymentHold(reservations)
    claimed_1, claimed_2 = _claimed(store, clock, 1), _claimed(store, clock, 2)
    assert first.reserve(claimed_1, KEY, BILL, Decimal(50))
    assert second.reserve(claimed_2, KEY, BILL, Decimal(50))
    first.released(claimed_1)
    sent = lifecycle.mark_sent(claimed_2, clock()).ours
    second.settled(sent.with_changes(status="succeeded", phase="settled", first_attempt_at=clock()))
    bill = index.bill(KEY, BILL)
    assert bill is not None
    assert [(r.operation_id, r.state) for r in bill.reservations] == [("op-2", "applied")]
    assert bill.available == Decimal(75)


def test_a_hold_that_never_reserved_spends_nothing() -> None:
    clock, store, index = FakeClock(), FakeStore(), _index()
    hold = PaymentHold(Reservations(index, store.process(), clock))
    before = index.writes
    hold.released(_claimed(store, clock))
    assert index.writes == before


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (PATH, b'{"amount":12.5}', (KEY, BILL, Decimal("12.5"))),
        ("/companies/CO/connections/conn/payables/bills/a%20b/payment", b'{"amount":1}', (KEY, "a b", 1)),
        (PATH, b"not json", None),
        ("/companies/co/connections/conn/payables/bankAccounts", b'{"amount":1}', None),
    ],
)
def test_the_target_of_a_payment_is_read_from_its_stored_request(
    path: str, body: bytes, expected: object
) -> None:
    op = lifecycle.claim(
        operation_id="op",
        kind=KIND_BILL_PAYMENT,
        request_hash="h",
        upstream_key="k",
        upstream_request=UpstreamRequest("POST", path, body),
        now=0.0,
        lease_until=1.0,
        lease_token="t",
    ).ours
    assert payment_target(op) == expected
