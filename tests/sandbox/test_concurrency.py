"""Many threads on one bill never overdraw it; many threads on one key record once."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx

from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID

GBP = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
BILL = BILLS_GBP_OPEN[1]  # 250.00 due
PAY = f"{GBP}/bills/{BILL}/payment"
THREADS = 16
ATTEMPTS = 64


def test_many_threads_paying_one_bill_never_overdraw_it(sandbox, validated_client) -> None:
    # 64 payments of 7.00 against 250.00 due: exactly 35 fit (245.00); the rest must be refused.
    clients: list[httpx.Client] = [validated_client() for _ in range(THREADS)]

    def pay(n: int) -> int:
        body = {"amount": 7, "date": "2026-11-25", "accountRef": {"id": ACCOUNT_GBP_CURRENT}}
        return (
            clients[n % THREADS]
            .post(PAY, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
            .status_code
        )

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = list(pool.map(pay, range(ATTEMPTS)))
    assert statuses.count(201) == 35
    assert statuses.count(400) == ATTEMPTS - 35
    records = sandbox.payments()
    assert len(records) == 35
    assert sum(Decimal(str(r["amount"])) for r in records) == Decimal(245)
    bills = validated_client().get(f"{GBP}/bills", params={"query": "status=PartiallyPaid"}).json()["results"]
    assert [(b["id"], b["amountDue"]) for b in bills if b["id"] == BILL] == [(BILL, 5)]


def test_many_threads_with_one_key_record_one_payment(sandbox, validated_client) -> None:
    key = str(uuid.uuid4())
    body = f'{{"amount": 10, "date": "2026-11-25", "accountRef": {{"id": "{ACCOUNT_GBP_CURRENT}"}}}}'.encode()
    clients: list[httpx.Client] = [validated_client() for _ in range(THREADS)]

    def pay(n: int) -> httpx.Response:
        return clients[n % THREADS].post(PAY, content=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(THREADS) as pool:
        responses = list(pool.map(pay, range(ATTEMPTS)))
    created = [r for r in responses if r.status_code == 201]
    assert {r.status_code for r in responses} <= {201, 409}
    assert created and len({r.content for r in created}) == 1  # every 201 is the one answer, replayed
    assert len(sandbox.payments()) == 1
