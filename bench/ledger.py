"""Real ledgers, real latency: Codat requests and wall time per payment with the bill index.

`PYTHONPATH=layers/billpay .venv/bin/python -m bench.ledger` (or the `ledger` section of `make bench`).

In-process: a Codat sandbox with the `large` seed (Codat's page of 100), a latency per Codat request of
0 ms and 300 ms, the bill index on the local DynamoDB emulator (moto, the template's BillIndexTable).
A payment = the guards (`check_payment`, with the reservation it takes on the bill's index item) + the
create-bill-payment POST + the reservation applied and the watermark rewound, as a recorded payment does
(the operations table's own writes are not part of it: `bench.costs` counts them). Scenarios per latency:

- cold: the connection's first lookup (empty index, empty container caches), for a bill on the first
  page and for the last of N open bills (the first sync paged to the end), N = 1,000 and 5,000;
- warm: the next payment on the same connection (company and accounts cached, bills: one incremental page);
- after 60 s: the old lookup cache's lifetime has passed (accounts read again; company information is kept
  for the re-sync period);
- before: what the previous design paid for the same bill (list-bills paged from the first page to the
  bill on every lookup after the 60 s cache) — pages computed from the bill's position.

Codat requests are counted by the sandbox itself (`RequestCounter`), wall time around the whole payment.
Results: bench/ledger.json.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from billpay.adapters.bill_index_dynamodb import WRITE_THREADS, DynamoDBBillIndex
from billpay.adapters.codat import CodatClient, bill_payment_path
from billpay.domain import lifecycle
from billpay.domain.operations import KIND_BILL_PAYMENT, Operation, UpstreamRequest
from billpay.models.requests import BillPaymentCreate
from billpay.service.lookups import LookupCache
from billpay.service.payment_guards import check_payment
from billpay.service.reservations import PaymentHold, Reservations
from botocore.config import Config

from local.emulator import FAKE_CREDENTIALS, REGION, start_emulator
from local.sandbox.seed import (
    ACCOUNT_GBP_CURRENT,
    BILLS_GBP_OPEN,
    COMPANY_GBP_ID,
    CONNECTION_GBP_ID,
    bulk_bill_id,
)
from local.sandbox.server import start_sandbox
from local.template import load_template, tables

NAME = "Ledger: Codat requests and wall time per payment with the bill index and reservations (large seed)"
HERE = Path(__file__).parent
PAGE_SIZE = 100
LATENCIES_MS = tuple(int(v) for v in os.environ.get("BENCH_LEDGER_LATENCIES_MS", "0,300").split(","))
LEDGER_SIZES = tuple(int(v) for v in os.environ.get("BENCH_LEDGER_SIZES", "1000,5000").split(","))


class _TimedIndex:
    """The DynamoDB store, with the time and count of its bill writes (moto's UpdateItem is ~25 ms a
    request, several times DynamoDB's, so the writes are reported apart from the Codat time)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.write_seconds = 0.0
        self.bills_written = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def put_bills(self, key: Any, bills: Any) -> None:
        started = time.perf_counter()
        self._store.put_bills(key, bills)
        self.write_seconds += time.perf_counter() - started
        self.bills_written += len(bills)


def _index(endpoint: str, table: str) -> Any:
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        config=Config(max_pool_connections=WRITE_THREADS + 8),
    )
    return _TimedIndex(DynamoDBBillIndex(table, client=ddb))


class _NoOperations:
    """The operations table, as far as a reservation that fits needs it: never read (only a reservation
    that does not fit judges the others by their operations; every bench payment fits)."""

    def get(self, operation_id: str) -> Operation | None:
        raise AssertionError(f"a bench reservation did not fit ({operation_id})")


def _claimed(bill_id: str, request: BillPaymentCreate) -> Operation:
    now = time.time()
    token = str(uuid.uuid4())
    return lifecycle.claim(
        operation_id=str(uuid.uuid4()),
        kind=KIND_BILL_PAYMENT,
        request_hash="bench",
        upstream_key=str(uuid.uuid4()),
        upstream_request=UpstreamRequest(
            "POST", bill_payment_path(COMPANY_GBP_ID, CONNECTION_GBP_ID, bill_id), request.to_upstream_json()
        ),
        now=now,
        lease_until=now + 30,
        lease_token=token,
    ).ours


def _pay(sandbox: Any, codat: Any, cache: Any, index: Any, bill_id: str, amount: str) -> dict[str, Any]:
    """One payment: guards and reservation, the POST, the reservation applied. Codat requests, wall time."""
    request = BillPaymentCreate.model_validate(
        {"amount": Decimal(amount), "date": "2026-12-02", "accountRef": {"id": ACCOUNT_GBP_CURRENT}}
    )
    claimed = _claimed(bill_id, request)
    hold = PaymentHold(Reservations(index, _NoOperations()))  # type: ignore[arg-type]
    before = sandbox.server.requests.total()
    index.write_seconds, index.bills_written = 0.0, 0
    started = time.perf_counter()
    context = check_payment(
        codat,
        COMPANY_GBP_ID,
        CONNECTION_GBP_ID,
        bill_id,
        request,
        deadline=codat.deadline(600),
        cache=cache,
        index=index,
        hold=hold,
        claimed=claimed,
    )
    assert hold.made, "the bench's payments always fit their bill"
    guards_seconds = time.perf_counter() - started
    response = codat.post_keyed(
        bill_payment_path(COMPANY_GBP_ID, CONNECTION_GBP_ID, bill_id),
        request.to_upstream_json(),
        str(uuid.uuid4()),
        timeout=30,
    )
    assert response.status in (200, 201), response.body
    hold.settled(claimed.with_changes(status="succeeded", phase="settled", first_attempt_at=time.time()))
    payment_seconds = time.perf_counter() - started
    return {
        "index_bills_written": index.bills_written,
        "index_write_ms_on_emulator": round(index.write_seconds * 1000, 1),
        "payment_ms_without_index_writes": round((payment_seconds - index.write_seconds) * 1000, 1),
        "codat_requests": sandbox.server.requests.total() - before,
        "guard_reads": context.upstream_reads,
        "guards_ms": round(guards_seconds * 1000, 1),
        "payment_ms": round(payment_seconds * 1000, 1),
    }


def _scenario(latency_ms: int, bulk_bills: int, endpoint: str, table: str) -> dict[str, Any]:
    now = [0.0]
    results: dict[str, Any] = {}
    with start_sandbox(
        page_size=PAGE_SIZE,
        seed="large",
        bulk_bills=bulk_bills,
        latency_ms=latency_ms,
        api_key="local-sandbox-key",
        idempotency_seconds=5400,
        verbose=False,
    ) as sandbox:
        codat = CodatClient(
            base_url=sandbox.url,
            api_key="local-sandbox-key",
            timeout_seconds=30,
            connect_timeout_seconds=5,
            budget_seconds=600,
        )
        try:
            open_bills = len(
                [
                    b
                    for b in sandbox.server.ledger._bills.values()  # the bench's own sandbox
                    if b.status in ("Open", "PartiallyPaid") and b.id.startswith(("GBP-", "BULK"))
                ]
            )
            last = bulk_bill_id(COMPANY_GBP_ID, bulk_bills)
            # cold, the bill on the first page
            index = _index(endpoint, table + f"-{latency_ms}-{bulk_bills}-a")
            cache = LookupCache(60, clock=lambda: now[0], company_ttl_seconds=21600)
            results["cold_first_page_bill"] = _pay(sandbox, codat, cache, index, BILLS_GBP_OPEN[0], "1.00")
            # cold, the last bill (the first sync pages every open bill)
            index = _index(endpoint, table + f"-{latency_ms}-{bulk_bills}-b")
            cache = LookupCache(60, clock=lambda: now[0], company_ttl_seconds=21600)
            results["cold_last_bill"] = _pay(sandbox, codat, cache, index, last, "1.00")
            # warm: another payment on the same connection, same container
            results["warm"] = _pay(sandbox, codat, cache, index, BILLS_GBP_OPEN[1], "1.00")
            results["warm_again"] = _pay(sandbox, codat, cache, index, last, "1.00")
            # past the old 60 s cache lifetime
            now[0] += 61
            results["after_60s"] = _pay(sandbox, codat, cache, index, last, "1.00")
            results["open_bills_listed"] = open_bills
            pages_to_last = math.ceil(open_bills / PAGE_SIZE)
            results["before_index_after_60s"] = {
                "codat_requests": 1 + 1 + pages_to_last + 1,  # company, accounts, bill pages, POST
                "payment_ms_estimate": round((1 + pages_to_last) * latency_ms, 1),
                "note": "previous design: lookups concurrent, list-bills paged to the bill, then the POST",
            }
        finally:
            codat.close()
    return results


def run() -> dict[str, object]:
    template = load_template()
    props = tables(template)["BillIndexTable"]
    emulator = start_emulator()
    try:
        ddb = boto3.client(
            "dynamodb",
            endpoint_url=emulator.url,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        )
        results: dict[str, object] = {"page_size": PAGE_SIZE}
        for latency in LATENCIES_MS:
            for size in LEDGER_SIZES:
                base = f"bench-bill-index-{uuid.uuid4().hex[:6]}"
                for suffix in ("a", "b"):
                    ddb.create_table(
                        TableName=f"{base}-{latency}-{size}-{suffix}",
                        KeySchema=props["KeySchema"],
                        AttributeDefinitions=props["AttributeDefinitions"],
                        BillingMode="PAY_PER_REQUEST",
                    )
                results[f"latency_{latency}ms_open_{size}"] = _scenario(latency, size, emulator.url, base)
                print(f"ledger: {latency} ms, {size} bills done", flush=True)
        return results
    finally:
        emulator.close()


SCENARIOS = ("cold_first_page_bill", "cold_last_bill", "warm", "warm_again", "after_60s")
BUDGET_REQUESTS = 3
BUDGET_LATENCIES = 4


def markdown(results: dict[str, Any]) -> list[str]:
    """Every scenario at each latency side by side: Codat requests, and wall time per payment (without the
    emulator's bill writes, which stand for DynamoDB's ~5 ms batched writes at ~25 ms each)."""
    latencies = sorted({int(k.split("_")[1].removesuffix("ms")) for k in results if k.startswith("latency_")})
    sizes = sorted({int(k.rsplit("_", 1)[1]) for k in results if k.startswith("latency_")})
    head = "| open bills | payment | " + " | ".join(
        f"{ms} ms: Codat requests | {ms} ms: wall ms (emulator's bill writes apart)" for ms in latencies
    )
    lines = [head + " |", "|---|---|" + "---|---|" * len(latencies)]
    for size in sizes:
        for scenario in (*SCENARIOS, "before_index_after_60s"):
            cells = []
            for ms in latencies:
                figures = results.get(f"latency_{ms}ms_open_{size}", {}).get(scenario, {})
                if scenario == "before_index_after_60s":
                    cells += [str(figures.get("codat_requests")), f"~{figures.get('payment_ms_estimate')}"]
                    continue
                wall = figures.get("payment_ms_without_index_writes")
                writes = figures.get("index_write_ms_on_emulator")
                cells += [str(figures.get("codat_requests")), f"{wall} (+ {writes})"]
            lines.append(f"| {size} | {scenario} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Budget for every payment after a connection's first lookup (warm, warm_again, after_60s): "
        f"≤ {BUDGET_REQUESTS} Codat requests and ≤ {BUDGET_LATENCIES} x the latency.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for ms in latencies:
        for size in sizes:
            run = results.get(f"latency_{ms}ms_open_{size}", {})
            later = [run.get(name, {}) for name in ("warm", "warm_again", "after_60s")]
            requests_ok = all(f.get("codat_requests", 99) <= BUDGET_REQUESTS for f in later)
            time_ok = all(
                f.get("payment_ms_without_index_writes", 1e9) <= max(BUDGET_LATENCIES * ms, 1) or ms == 0
                for f in later
            )
            lines.append(f"| within budget at {ms} ms, {size} open bills | {requests_ok and time_ok} |")
    lines.append("")
    return lines


if __name__ == "__main__":
    output = run()
    (HERE / "ledger.json").write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output, indent=2))
