"""Writes: requests per payment, and the latency a payment adds over Codat itself.

1. Requests, counted on the wire, in-process: the payment handler's `lambda_handler` against moto in
   server mode (tables from template.yaml) and the Codat sandbox. DynamoDB requests are counted with a
   botocore `before-send` hook on the store's client (so an SDK retry would count too); Codat requests
   with an httpx request hook on the one Codat client.
   - first-time payment (DESIGN §3's aim: 3 = claim, mark sent, settle), replay (aim: 1 = the claim);
   - Codat requests per payment on a warm container (aim: 1 = the write; the guards' lookups cached),
     and on a cold one (the lookups it had to make).
2. Latency through the local stack (`python -m local.stack`: gateway → handler worker process → moto →
   sandbox), warm: p50/p99 of a first-time payment beside the same POST sent straight to the sandbox with a
   fresh GUID key; the difference at p50 is our overhead (aim: ≤ 15 ms).

Imports of the project's modules happen inside the sections, once their environment is set.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

NAME = "Writes: DynamoDB and Codat requests per payment, warm latency over Codat"
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = int(os.environ.get("BILLPAY_BENCH_WRITE_SAMPLES", "200"))
WARMUP = 20


class _Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-2:000000000000:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _payment_event(key: str, bill: str, account: str, amount: str = "0.01") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "create_bill_payment.json").read_text())
    event["headers"]["Idempotency-Key"] = key
    event["multiValueHeaders"]["Idempotency-Key"] = [key]
    event["pathParameters"]["billId"] = bill
    event["path"] = event["path"].replace("GBP-OPEN-01", bill)
    event["requestContext"]["path"] = event["requestContext"]["path"].replace("GBP-OPEN-01", bill)
    event["body"] = json.dumps({"amount": float(amount), "date": "2026-11-25", "accountRef": {"id": account}})
    return event


def _target(request: Any) -> str:
    target = request.headers.get("X-Amz-Target", b"")
    return target.decode() if isinstance(target, bytes) else str(target)


def _request_counts() -> dict[str, Any]:
    from local.emulator import FAKE_CREDENTIALS, create_resources, start_emulator  # noqa: PLC0415
    from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN  # noqa: PLC0415
    from local.sandbox.server import start_sandbox  # noqa: PLC0415
    from local.template import load_template  # noqa: PLC0415

    emulator = start_emulator()
    sandbox = start_sandbox("127.0.0.1", 0, api_key="local-sandbox-key", verbose=False)
    try:
        template = load_template()
        resources = create_resources(emulator.url, template)
        env = {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": emulator.url,
            "OPERATIONS_TABLE_NAME": resources.refs["OperationsTable"],
            "RETRY_QUEUE_URL": resources.refs["RetryQueue"],
            "CODAT_BASE_URL": sandbox.url,
            "CODAT_API_KEY": "local-sandbox-key",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        with _environment(env):
            os.environ.pop("CODAT_API_KEY_SECRET_ARN", None)
            from billpay.adapters.codat import get_codat_client  # noqa: PLC0415
            from billpay.adapters.operations_dynamodb import dynamodb_client  # noqa: PLC0415
            from billpay.config import reset_settings  # noqa: PLC0415

            from functions.create_bill_payment.handler import lambda_handler  # noqa: PLC0415

            reset_settings()
            dynamo: list[str] = []
            codat: list[str] = []
            dynamodb_client().meta.events.register(
                "before-send.dynamodb", lambda request, **_: dynamo.append(_target(request))
            )
            get_codat_client()._http.event_hooks["request"].append(
                lambda request: codat.append(f"{request.method} {request.url.path}")
            )

            def run(event: dict[str, Any]) -> tuple[int, list[str], list[str]]:
                dynamo.clear()
                codat.clear()
                answer = lambda_handler(event, _Context())  # type: ignore[arg-type]
                return int(answer["statusCode"]), list(dynamo), list(codat)

            # Per-request latency of the emulated DynamoDB, from the client's side (send to parsed answer).
            timings: list[float] = []
            sent_at: list[float] = [0.0]
            client = dynamodb_client()
            client.meta.events.register(
                "before-send.dynamodb", lambda **_: sent_at.__setitem__(0, time.perf_counter())
            )
            client.meta.events.register(
                "after-call.dynamodb", lambda **_: timings.append((time.perf_counter() - sent_at[0]) * 1000)
            )

            cold = run(_payment_event(f"b-{uuid.uuid4()}", BILLS_GBP_OPEN[1], ACCOUNT_GBP_CURRENT))
            first_key = f"b-{uuid.uuid4()}"
            warm = run(_payment_event(first_key, BILLS_GBP_OPEN[2], ACCOUNT_GBP_CURRENT))
            replay = run(_payment_event(first_key, BILLS_GBP_OPEN[2], ACCOUNT_GBP_CURRENT))
            assert cold[0] == warm[0] == replay[0] == 201, (cold, warm, replay)
            handler_ms: list[float] = []
            for _ in range(WARMUP + 60):
                started = time.perf_counter()
                run(_payment_event(f"b-{uuid.uuid4()}", BILLS_GBP_OPEN[9], ACCOUNT_GBP_CURRENT))
                handler_ms.append((time.perf_counter() - started) * 1000)
            handler_ms = handler_ms[WARMUP:]
            timings = timings[-180:]

        def ops(calls: list[str]) -> list[str]:
            return [c.rsplit(".", 1)[-1] for c in calls]

        return {
            "dynamodb_requests_first_time_payment": len(warm[1]),
            "dynamodb_calls_first_time_payment": ops(warm[1]),
            "dynamodb_requests_replay": len(replay[1]),
            "dynamodb_calls_replay": ops(replay[1]),
            "codat_requests_payment_warm_container": len(warm[2]),
            "codat_requests_payment_cold_container": len(cold[2]),
            "codat_calls_cold_container": cold[2],
            "codat_requests_replay": len(replay[2]),
            "emulated_dynamodb_request_p50_ms": round(statistics.median(timings), 2),
            "handler_in_process_warm_payment_p50_ms": round(statistics.median(handler_ms), 2),
        }
    finally:
        sandbox.close()
        emulator.server.stop()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
    }


def _latency() -> dict[str, Any]:
    from local.sandbox.seed import (  # noqa: PLC0415
        ACCOUNT_GBP_CURRENT,
        BILLS_GBP_OPEN,
        COMPANY_GBP_ID,
        CONNECTION_GBP_ID,
    )
    from tests.integration.conftest import start_stack  # noqa: PLC0415

    connection = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
    bill = BILLS_GBP_OPEN[9]  # 1250.00 due: room for every 0.01 payment of the run
    body = json.dumps({"amount": 0.01, "date": "2026-11-25", "accountRef": {"id": ACCOUNT_GBP_CURRENT}})
    auth = "Basic bG9jYWwtc2FuZGJveC1rZXk="  # base64("local-sandbox-key")
    with start_stack(POWERTOOLS_LOG_LEVEL="WARNING", BILLPAY_LOCAL_CONCURRENCY="1") as stack:
        ours, direct = [], []
        with (
            httpx.Client(base_url=stack.api_url, timeout=30) as api,
            httpx.Client(base_url=stack.sandbox_url, timeout=30) as codat,
        ):
            for index in range(WARMUP + SAMPLES):
                started = time.perf_counter()
                answer = api.post(
                    f"{connection}/bills/{bill}/payments",
                    content=body,
                    headers={"Content-Type": "application/json", "Idempotency-Key": f"bench-{uuid.uuid4()}"},
                )
                elapsed = (time.perf_counter() - started) * 1000
                assert answer.status_code == 201, answer.text
                started = time.perf_counter()
                upstream = codat.post(
                    f"{connection}/bills/{bill}/payment",
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "Idempotency-Key": str(uuid.uuid4()),
                        "Authorization": auth,
                    },
                )
                straight = (time.perf_counter() - started) * 1000
                assert upstream.status_code in (200, 201), upstream.text
                if index >= WARMUP:
                    ours.append(elapsed)
                    direct.append(straight)
    through = _percentiles(ours)
    sandbox = _percentiles(direct)
    return {
        "samples": SAMPLES,
        "through_gateway": through,
        "straight_to_sandbox": sandbox,
        "overhead_p50_ms": round(through["p50_ms"] - sandbox["p50_ms"], 2),
        "overhead_p99_ms": round(through["p99_ms"] - sandbox["p99_ms"], 2),
    }


def run() -> dict[str, Any]:
    requests = _request_counts()
    latency = _latency()
    # Three DynamoDB round trips are the design (claim, mark sent, settle); on the emulator each costs what
    # moto's werkzeug server costs. What remains is our code, the gateway's process hop and Powertools.
    latency["overhead_p50_without_emulated_dynamodb_ms"] = round(
        latency["overhead_p50_ms"] - 3 * requests["emulated_dynamodb_request_p50_ms"], 2
    )
    return {"requests": requests, "latency": latency}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
