"""Reservations through the whole stack (docs/contract.md, Reservations): `amount-exceeds-due` is exact
under concurrency and across containers (the gateway's worker processes), and a recorded payment's
reservation gives way to the platform's own amountDue.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest

from local.harness import Stack
from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID

pytestmark = pytest.mark.integration

CONNECTION = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
BILL_125 = BILLS_GBP_OPEN[0]  # GBP, Open, 125.00 due


@pytest.fixture
def live(stack: Stack) -> Stack:
    stack.reset()
    return stack


def _pay(stack: Stack, amount: str, bill: str = BILL_125, key: str | None = None) -> httpx.Response:
    return stack.client.post(
        f"{CONNECTION}/bills/{bill}/payments",
        json={"amount": float(amount), "date": "2026-12-02", "accountRef": {"id": ACCOUNT_GBP_CURRENT}},
        headers={"Idempotency-Key": key or f"res-{uuid.uuid4()}"},
    )


def _recorded(stack: Stack, bill: str = BILL_125) -> list[dict[str, Any]]:
    return [p for p in stack.payments() if p["billId"] == bill]


def test_six_concurrent_payments_of_50_on_125_due_record_two_and_refuse_four(live: Stack) -> None:
    assert _pay(live, "0.01", bill=BILLS_GBP_OPEN[1]).status_code == 201  # warm the connection's index
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: _pay(live, "50"), range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 422, 422, 422, 422], [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 422):
        problem = refused.json()
        assert problem["type"].endswith("/problems/amount-exceeds-due")
        assert "operation" not in problem  # nothing recorded under that key
    assert [Decimal(str(p["amount"])) for p in _recorded(live)] == [Decimal(50), Decimal(50)]


def test_the_rest_of_the_bill_can_be_paid_once_the_first_payments_are_recorded(live: Stack) -> None:
    """An applied reservation gives way to the platform's amountDue: 50, then 50, then the 25 left."""
    assert _pay(live, "50").status_code == 201
    assert _pay(live, "50").status_code == 201
    over = _pay(live, "26")
    assert over.status_code == 422 and over.json()["type"].endswith("/problems/amount-exceeds-due")
    assert _pay(live, "25").status_code == 201
    assert sum(Decimal(str(p["amount"])) for p in _recorded(live)) == Decimal(125)


def test_a_refused_payment_leaves_no_reservation_behind(live: Stack) -> None:
    """Codat refuses (400): the operation fails and its reservation goes, so the whole bill is payable."""
    live.arm_fault(path="*/payment", fault="status", status=400, times=1)
    failed = _pay(live, "125")
    assert failed.status_code == 422 and failed.json()["operation"]["status"] == "failed"
    assert _pay(live, "125").status_code == 201
    assert len(_recorded(live)) == 1
