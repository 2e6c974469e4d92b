"""Drain after an outage: how long N payments queued during a Codat outage take to land once it ends.

Starts the local stack (`python -m local.stack`, free ports) with compressed retry timings, makes Codat
answer 503 to every payment, sends N payments (each answered 202 `pending`), ends the outage, and times
until Codat has applied all N (one cheap sandbox read every 50 ms; each operation's settle is the one
DynamoDB write that follows its answer), then confirms through the API that every operation is
`succeeded` (timed too: `confirmed_seconds`). Polling every operation through the API while the drain
runs would itself load the one stack process the drain runs through (see below) and see the end only
at the end of a 200-request pass.

Beside it, two bounds:
- the ideal for the retry worker's concurrency and the sweep interval — one sweep interval, plus N
  attempts at the measured single-attempt latency spread over the worker's concurrency;
- the emulator bound: locally, moto (DynamoDB and SQS), the sandbox, the gateway and the SQS pollers
  share ONE Python process (one GIL), so the DynamoDB/SQS requests of the whole drain are served one at
  a time: one sweep interval + N x (requests per retried payment, from bench/writes' queued path) x one
  warm emulated request's latency (measured alone, before the outage). In the cloud DynamoDB and SQS
  serve those requests in parallel; locally this bound, not the worker's concurrency, is what a drain
  meets. It leaves out the sandbox's and the gateway's share of that same process, so it is a floor.
Also checks the drill's vocabulary: no payment duplicated, none lost.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID

NAME = "Retry drain after an outage (local stack, compressed timings)"

N = int(os.environ.get("BILLPAY_BENCH_DRAIN_N", "200"))
SWEEP_INTERVAL = 0.5
BASE_DELAY = 0.2
MAX_DELAY = 2.0
# Locally each function has a pool of BILLPAY_LOCAL_CONCURRENCY workers; the template's MaximumConcurrency
# (5) is bounded by it, as Lambda's reserved concurrency would bound it.
LOCAL_CONCURRENCY = 4
TEMPLATE_MAX_CONCURRENCY = 5
# Requests per retried payment (bench/writes' queued path): the sweeper's GetItem + UpdateItem, the worker's
# GetItem + 2 UpdateItem; SQS: 1/10 SendMessageBatch (10 a batch), 1/5 ReceiveMessage and 1/5
# DeleteMessageBatch (BatchSize 5).
EMULATED_REQUESTS_PER_RETRY = 2 + 3 + 1 / 10 + 2 / 5
REPO = Path(__file__).resolve().parent.parent


def _start_stack(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, Any], Path]:
    ready = Path(tempfile.mkdtemp()) / "ready.json"
    log = ready.with_name("stack.log")
    full = {
        **os.environ,
        "BILLPAY_API_PORT": "0",
        "BILLPAY_SANDBOX_PORT": "0",
        "BILLPAY_EMULATOR_PORT": "0",
        "BILLPAY_LOCAL_READY_FILE": str(ready),
        "BILLPAY_LOCAL_ACCESS_LOG": "0",
        "BILLPAY_LOCAL_EXIT_WITH_PARENT": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "local.stack"], cwd=REPO, env=full, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ready.exists() and ready.stat().st_size:
            return proc, json.loads(ready.read_text()), log
        if proc.poll() is not None:
            raise RuntimeError(f"local stack exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("local stack not ready within 120 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _pay(http: httpx.Client, api: str, i: int) -> tuple[int, str]:
    bill = BILLS_GBP_OPEN[i % len(BILLS_GBP_OPEN)]
    url = f"{api}/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/bills/{bill}/payments"
    body = {"amount": 0.01, "date": "2026-11-25", "accountRef": {"id": ACCOUNT_GBP_CURRENT}}
    answer = http.post(url, json=body, headers={"Idempotency-Key": f"drain-{uuid.uuid4()}"})
    return answer.status_code, answer.json().get("operationId") or answer.json().get("operation", {}).get(
        "operationId", ""
    )


def _emulated_request_seconds(ready: dict[str, Any]) -> float:
    """One warm DynamoDB request to the stack's emulator, in a retry's mix: a conditional PutItem, a
    conditional UpdateItem and a consistent GetItem on a scratch item (never in the index: no dueBucket);
    the median over 40 rounds of a round's mean."""
    from local.emulator import client  # noqa: PLC0415

    dynamodb = client("dynamodb", ready["emulator_url"])
    table = ready["resources"]["OperationsTable"]
    rounds: list[float] = []
    for _ in range(50):
        key = {"operationId": {"S": f"bench-scratch-{uuid.uuid4()}"}}
        started = time.perf_counter()
        dynamodb.put_item(
            TableName=table,
            Item={**key, "status": {"S": "pending"}},
            ConditionExpression="attribute_not_exists(operationId)",
        )
        dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #s = :done",
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":done": {"S": "succeeded"}, ":pending": {"S": "pending"}},
        )
        dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)
        rounds.append((time.perf_counter() - started) / 3)
    return statistics.median(rounds[10:])


def run() -> dict[str, Any]:
    proc, ready, _log = _start_stack(
        {
            "BILLPAY_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL),
            "BILLPAY_RETRY_BASE_DELAY_SECONDS": str(BASE_DELAY),
            "BILLPAY_RETRY_MAX_DELAY_SECONDS": str(MAX_DELAY),
            "BILLPAY_RETRY_WINDOW_SECONDS": "600",
            "BILLPAY_LOCAL_CONCURRENCY": str(LOCAL_CONCURRENCY),
            "BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS": "30",
        }
    )
    api, sandbox = ready["api_url"], ready["sandbox_url"]
    try:
        with httpx.Client(timeout=30) as http:
            # Warm every pool (cold starts are not part of a drain), and measure one attempt's latency.
            warm: list[float] = []
            for i in range(LOCAL_CONCURRENCY * 5):
                t0 = time.perf_counter()
                status, _ = _pay(http, api, 1000 + i)
                warm.append(time.perf_counter() - t0)
                assert status == 201, status
            attempt_seconds = statistics.median(warm[LOCAL_CONCURRENCY:])
            emulated_request_seconds = _emulated_request_seconds(ready)

            http.post(
                f"{sandbox}/_sandbox/faults",
                json={
                    "method": "POST",
                    "path": "*/payment",
                    "fault": "status",
                    "status": 503,
                    "times": 100_000,
                },
            ).raise_for_status()
            with ThreadPoolExecutor(max_workers=LOCAL_CONCURRENCY) as pool:
                answers = list(pool.map(lambda i: _pay(http, api, i), range(N)))
            statuses = sorted({s for s, _ in answers})
            ids = [op for _, op in answers]
            assert statuses == [202], statuses

            applied_before = len(http.get(f"{sandbox}/_sandbox/payments").json())
            http.delete(f"{sandbox}/_sandbox/faults").raise_for_status()
            outage_end = time.perf_counter()
            deadline = outage_end + 300
            while time.perf_counter() < deadline:
                applied = len(http.get(f"{sandbox}/_sandbox/payments").json()) - applied_before
                if applied >= N:
                    break
                time.sleep(0.05)
            drained = time.perf_counter() - outage_end
            pending = set(ids)
            states: dict[str, str] = {}
            while pending and time.perf_counter() < deadline:
                for op in list(pending):
                    state = http.get(f"{api}/operations/{op}").json()["status"]
                    if state != "pending":
                        states[op] = state
                        pending.discard(op)
                time.sleep(0.05)
            confirmed = time.perf_counter() - outage_end

            payments = http.get(f"{sandbox}/_sandbox/payments").json()
            keys = [p["idempotencyKey"] for p in payments]
            per_key = {k: keys.count(k) for k in set(keys)}
    finally:
        _stop(proc)

    concurrency = min(LOCAL_CONCURRENCY, TEMPLATE_MAX_CONCURRENCY)
    # Ideal for the machinery: one sweep interval to pick everything up, then N attempts at one attempt's
    # latency spread over the worker's concurrency. The backoff adds at most MAX_DELAY on top (an operation
    # retried just before the outage ended waits for its nextAttemptAt): that bound is reported beside it.
    ideal = SWEEP_INTERVAL + N * attempt_seconds / concurrency
    emulator_bound = SWEEP_INTERVAL + N * EMULATED_REQUESTS_PER_RETRY * emulated_request_seconds
    return {
        "payments": N,
        "drain_seconds": round(drained, 2),
        "confirmed_seconds": round(confirmed, 2),
        "ideal_seconds": round(ideal, 2),
        "ideal_plus_backoff_bound_seconds": round(ideal + MAX_DELAY, 2),
        "ratio_to_ideal": round(drained / ideal, 2) if ideal else None,
        "emulator_bound_seconds": round(emulator_bound, 2),
        "ratio_to_emulator_bound": round(drained / emulator_bound, 2) if emulator_bound else None,
        "emulated_request_seconds_p50": round(emulated_request_seconds, 4),
        "emulated_requests_per_retry": round(EMULATED_REQUESTS_PER_RETRY, 2),
        "succeeded": sum(1 for s in states.values() if s == "succeeded"),
        "lost_still_pending": len(pending),
        "duplicated": sum(1 for count in per_key.values() if count > 1),
        "single_attempt_seconds_p50": round(attempt_seconds, 4),
        "worker_concurrency": concurrency,
        "sweep_interval_seconds": SWEEP_INTERVAL,
        "retry_base_delay_seconds": BASE_DELAY,
        "retry_max_delay_seconds": MAX_DELAY,
        "cloud_note": "cloud: sweep every 60 s, max delay 600 s; the same shape, scaled",
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
