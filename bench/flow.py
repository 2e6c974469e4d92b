"""The app's flow, measured: the bills route beside Codat's own list-bills, and what an event per write costs.

    PYTHONPATH=layers/billpay .venv/bin/python -m bench.flow      # writes bench/flow.json

1. Bills: for an upstream latency of 0 and 300 ms (`BILLPAY_SANDBOX_LATENCY_MS`, a stack each, Codat's
   page size of 100), the warm p50 of `GET …/payables/bills` (open bills from the bill index after its
   incremental refresh: one list-bills read) alternated with list-bills straight to the sandbox (one page
   of the open bills), so both see the same load and the same delay.
2. Events: a payment's p50 through the API (claim, guards, mark sent, POST, settle, PutEvents, published
   write), beside the two requests publication adds, timed alone against the emulator: PutEvents of one
   operation event, and the conditional UpdateItem that records it published.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from billpay.adapters.events_eventbridge import EventBridgePublisher
from billpay.domain.events import OperationEvent

from local.emulator import client
from local.harness import start_stack
from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID

OUTPUT = Path(__file__).with_name("flow.json")
CONNECTION = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
SANDBOX_AUTH = {"Authorization": "Basic " + base64.b64encode(b"local-sandbox-key").decode()}
WARMUP = 5
SAMPLES = 40


def _p(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))], 1)


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": _p(values, 0.5), "p90_ms": _p(values, 0.9), "samples": len(values)}


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _ok(answer: httpx.Response, status: int = 200) -> httpx.Response:
    if answer.status_code != status:
        raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:200]}")
    return answer


def bills(latency_ms: int) -> dict[str, Any]:
    with start_stack(BILLPAY_SANDBOX_LATENCY_MS=str(latency_ms), BILLPAY_SANDBOX_PAGE_SIZE="100") as stack:
        ours = lambda: _ok(stack.client.get(f"{CONNECTION}/bills"))  # noqa: E731
        codat = lambda: _ok(  # noqa: E731
            stack.sandbox.get(
                f"{CONNECTION}/bills",
                params={"query": "status=Open||status=PartiallyPaid"},
                headers=SANDBOX_AUTH,
            )
        )
        first = _timed(ours)  # the connection's first listing pages the open bills into the index
        for _ in range(WARMUP):
            ours()
            codat()
        route: list[float] = []
        direct: list[float] = []
        for _ in range(SAMPLES):
            route.append(_timed(ours))
            direct.append(_timed(codat))
        listed = len(ours().json()["bills"])
    return {
        "upstream_latency_ms": latency_ms,
        "bills_listed": listed,
        "first_listing_ms": round(first, 1),
        "route": _summary(route),
        "codat_list_bills_direct": _summary(direct),
    }


def events() -> dict[str, Any]:
    with start_stack() as stack:

        def pay(n: int) -> None:
            _ok(
                stack.client.post(
                    f"{CONNECTION}/bills/{BILLS_GBP_OPEN[n % len(BILLS_GBP_OPEN)]}/payments",
                    json={"amount": 0.01, "date": "2026-12-02", "accountRef": {"id": ACCOUNT_GBP_CURRENT}},
                    headers={"Idempotency-Key": f"bench-{uuid.uuid4()}"},
                ),
                201,
            )

        for n in range(WARMUP):
            pay(n)
        payments = [_timed(lambda n=n: pay(n)) for n in range(SAMPLES)]  # type: ignore[misc]

        bus = stack.resources["EventBus"]
        publisher = EventBridgePublisher(bus, client=client("events", stack.emulator_direct_url))
        detail = {"eventId": "bench:1", "operationId": "bench", "status": "succeeded", "version": 1}
        event = OperationEvent("bench:1", "Operation Succeeded", detail, "2026-12-02T00:00:00.000Z")
        puts = [_timed(lambda: publisher.publish([event])) for _ in range(SAMPLES)]

        dynamodb = client("dynamodb", stack.emulator_direct_url)
        table = stack.operations_table_name
        key = {"operationId": {"S": f"bench-{uuid.uuid4()}"}}
        dynamodb.put_item(TableName=table, Item={**key, "version": {"N": "1"}})

        def record_published() -> None:
            dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET publishedVersion = version REMOVE dueBucket, dueAt",
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": {"N": "1"}},
            )

        updates = [_timed(record_published) for _ in range(SAMPLES)]
    put_p50, update_p50, pay_p50 = _p(puts, 0.5), _p(updates, 0.5), _p(payments, 0.5)
    return {
        "payment_through_api": _summary(payments),
        "put_events": _summary(puts),
        "published_update_item": _summary(updates),
        "publication_share_of_payment_p50": round((put_p50 + update_p50) / pay_p50, 3),
    }


def run() -> dict[str, Any]:
    return {"bills": [bills(0), bills(300)], "events": events()}


def main() -> None:
    results = run()
    OUTPUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
