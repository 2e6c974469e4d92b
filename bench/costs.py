"""Costs: AWS requests per payment by operation and table — a first-time payment, a replay, a guard
refusal, a payment handed to the queue — before (the first edition) and now.

In-process: the payment handler's `lambda_handler` with the environment the template gives it (operations
table, bill index table, event bus, retry queue: `local.gateway.environment.function_environment`), against
moto in server mode and the Codat sandbox. Every HTTP request botocore sends is counted at the wire
(`Endpoint._send`, so an SDK retry would count too), named by its operation and, for DynamoDB, its table.
The container is warm and the connection already synced (a refused payment first, which pays nothing):
the figures are those of every payment after a connection's first.

The incremental refresh re-reads every bill modified since the watermark less 5 minutes and writes each
one it returns: on a connection with k bills paid in the last few minutes, a payment costs k more
UpdateItems on the bill index (`refresh_rewrites_recently_paid_bills` below measures it).
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.writes import LambdaContext

NAME = "Costs: AWS requests per payment (before: the first edition; now: bill index, reservations, events)"
ROOT = Path(__file__).resolve().parents[1]

# The first edition's figures (bench/RESULTS.md then; docs/contract.md, Operation life cycle).
BEFORE = {
    "first_time_payment": {"PutItem (operations)": 1, "UpdateItem (operations)": 2},
    "replay": {"PutItem (operations)": 1},
    "guard_refusal": {"PutItem (operations)": 1, "DeleteItem (operations)": 1},
}
WHY = {
    "GetItem (operations)": "the v1 look-up (a key first used under an IAM role stays that operation)",
    "PutItem (operations)": "the claim",
    "UpdateItem (operations)": "mark sent, settle; + published (the event's version recorded)",
    "DeleteItem (operations)": "the release of a refused claim",
    "GetItem (bill index)": (
        "the sync state at the refresh; the bill (unless the refresh returned it); the state again for "
        "the rewind. A refusal on cached company/accounts re-reads both"
    ),
    "PutItem (bill index)": "the watermark rewound after a success (the refresh's own: once a minute)",
    "UpdateItem (bill index)": "the reservation; its apply on success; + one per bill the refresh returns",
    "PutEvents": "the terminal state's event",
    "SendMessageBatch": "the hand-off: a retry due within 15 minutes goes on a delayed message",
}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def _counting(tables: dict[str, str]) -> Iterator[list[str]]:
    """Every request botocore sends meanwhile, as `Operation (table)` or `Operation`."""
    from botocore.endpoint import Endpoint  # noqa: PLC0415

    endpoint: Any = Endpoint  # `_send` is botocore's private hook: one call per HTTP attempt
    seen: list[str] = []
    original = endpoint._send

    def send(self: Any, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]
        label = operation or "?"
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = {}
        table = tables.get(str(body.get("TableName", ""))) if isinstance(body, dict) else None
        seen.append(f"{label} ({table})" if table else label)
        return original(self, request)

    endpoint._send = send
    try:
        yield seen
    finally:
        endpoint._send = original


def _payment_event(key: str, bill: str, account: str, amount: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "create_bill_payment.json").read_text())
    event["headers"]["Idempotency-Key"] = key
    event["multiValueHeaders"]["Idempotency-Key"] = [key]
    event["pathParameters"]["billId"] = bill
    event["path"] = event["path"].replace("GBP-OPEN-01", bill)
    event["requestContext"]["path"] = event["requestContext"]["path"].replace("GBP-OPEN-01", bill)
    event["body"] = json.dumps({"amount": float(amount), "date": "2026-11-25", "accountRef": {"id": account}})
    return event


def _tally(calls: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(calls).items()))


def run() -> dict[str, Any]:
    from local.emulator import create_resources, start_emulator  # noqa: PLC0415
    from local.gateway.environment import function_environment  # noqa: PLC0415
    from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN  # noqa: PLC0415
    from local.sandbox.server import start_sandbox  # noqa: PLC0415
    from local.template import functions, load_template  # noqa: PLC0415

    emulator = start_emulator()
    # Codat's page of 100: the connection's first lookup syncs the whole (small) seed ledger at once.
    sandbox = start_sandbox("127.0.0.1", 0, api_key="local-sandbox-key", page_size=100, verbose=False)
    try:
        template = load_template()
        resources = create_resources(emulator.url, template)
        spec = next(s for s in functions(template) if s.logical_id == "CreateBillPaymentFunction")
        env = function_environment(
            template,
            spec,
            resources,
            endpoint_url=emulator.url,
            codat_base_url=sandbox.url,
            supervisor_env={"POWERTOOLS_LOG_LEVEL": "WARNING"},
        )
        tables = {
            resources.refs["OperationsTable"]: "operations",
            resources.refs["BillIndexTable"]: "bill index",
        }
        with _environment(env), _counting(tables) as seen:
            os.environ.pop("CODAT_API_KEY_SECRET_ARN", None)
            from billpay.config import reset_settings  # noqa: PLC0415

            from functions.create_bill_payment.handler import lambda_handler  # noqa: PLC0415

            reset_settings()

            def pay(bill: str, amount: str, key: str | None = None) -> tuple[int, dict[str, int]]:
                seen.clear()
                event = _payment_event(key or f"c-{uuid.uuid4()}", bill, ACCOUNT_GBP_CURRENT, amount)
                answer = lambda_handler(event, LambdaContext())  # type: ignore[arg-type]
                return int(answer["statusCode"]), _tally(seen)

            # The connection's first lookup (a full sync), on a refusal: nothing is paid, no bill changes.
            first_status, first_lookup = pay(BILLS_GBP_OPEN[0], "99999999.00")
            assert first_status == 422, first_status
            key = f"c-{uuid.uuid4()}"
            status, first_time = pay(BILLS_GBP_OPEN[1], "1.00", key)
            assert status == 201, status
            status, replay = pay(BILLS_GBP_OPEN[1], "1.00", key)
            assert status == 201, status
            status, refusal = pay(BILLS_GBP_OPEN[2], "99999999.00")
            assert status == 422, status
            # A second payment: the refresh now returns the bill paid above (modified a moment ago).
            status, after_one_paid = pay(BILLS_GBP_OPEN[3], "1.00")
            assert status == 201, status
            status, after_two_paid = pay(BILLS_GBP_OPEN[4], "1.00")
            assert status == 201, status
            httpx.post(
                f"{sandbox.url}/_sandbox/faults",
                json={"method": "POST", "path": "*/payment", "fault": "status", "status": 503, "times": 1},
            ).raise_for_status()
            status, handed_off = pay(BILLS_GBP_OPEN[5], "1.00")
            assert status == 202, status
    finally:
        sandbox.close()
        emulator.close()

    now = {
        "first_time_payment": first_time,
        "replay": replay,
        "guard_refusal": refusal,
    }
    return {
        "before": {name: sum(ops.values()) for name, ops in BEFORE.items()},
        "now": {name: sum(ops.values()) for name, ops in now.items()},
        "now_by_operation": now,
        "before_by_operation": BEFORE,
        "handed_to_queue_sync_share": handed_off,
        "refresh_rewrites_recently_paid_bills": {
            "first_time_payment_quiet_connection": sum(first_time.values()),
            "after_1_other_bill_paid": sum(after_one_paid.values()),
            "after_2_other_bills_paid": sum(after_two_paid.values()),
        },
        "connection_first_lookup_refusal": first_lookup,
        "why": WHY,
    }


def markdown(results: dict[str, Any]) -> list[str]:
    """Before and after side by side, by operation."""
    lines = [
        "| request | first-time payment (before → now) | replay | guard refusal | what for |",
        "|---|---|---|---|---|",
    ]
    cases = ("first_time_payment", "replay", "guard_refusal")
    before, now = results["before_by_operation"], results["now_by_operation"]
    names = sorted({name for table in (*before.values(), *now.values()) for name in table})
    for name in names:
        cells = [f"{before[case].get(name, 0)} → {now[case].get(name, 0)}" for case in cases]
        lines.append(f"| {name} | {' | '.join(cells)} | {results['why'].get(name, '')} |")
    totals = [f"**{results['before'][c]} → {results['now'][c]}**" for c in cases]
    lines.append(f"| total | {' | '.join(totals)} | |")
    lines.append("")
    lines.append("| figure | value |")
    lines.append("|---|---|")
    for section in ("handed_to_queue_sync_share", "refresh_rewrites_recently_paid_bills"):
        for key, value in results[section].items():
            lines.append(f"| {section}.{key} | {value} |")
    lines.append("")
    return lines


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
