"""Drain after an outage: how long N payments queued during a Codat outage take to land once it ends.

Starts the local stack (`python -m local.stack`, free ports) with compressed retry timings, makes Codat
answer 503 to every payment, sends N payments (each answered 202 `pending`), ends the outage, and times
until Codat has applied all N (one cheap sandbox read every 50 ms; each operation's settle is the one
DynamoDB write that follows its answer), then confirms through the API that every operation is
`succeeded` (timed too: `confirmed_seconds`).

With retries when they are due, no sweep is involved: each payment's holder settles it `pending` and hands
its lease to a delayed queue message (`DelaySeconds` = the backoff, rounded up); during the outage the
workers retry, meet the 503 again and hand off again, so when the outage ends every payment is at most one
backoff (≤ `MAX_DELAY`) away from its next attempt. The sweeper only recovers lapsed leases.

Beside it, the ideal for the worker's concurrency (the template's MaximumConcurrency, 5, the local pool
sized to it): the last backoff still to wait (`MAX_DELAY`) plus N retry-worker attempts spread over 5
workers, an attempt's latency measured on the same stack before the outage (a single payment retried
alone: from the worker's lease to its settle, watched on the item, plus its GetItem and the lease write).
The target is drain ≥ 0.8 of that ideal, i.e. `ideal / drain` ≥ 0.8.

The drain runs at several Codat latencies (`BILLPAY_SANDBOX_LATENCY_MS`: 0, 300 and 1,000 ms a request),
moto in a process of its own (`BILLPAY_EMULATOR_PROCESS=1`), and reports how busy that process was during
the drain (CPU seconds / drain seconds). Locally every DynamoDB and SQS request is served by moto, pure
Python on one core (about 10 ms of CPU a request under load, five or six requests an attempt): when Codat
answers at once, 5 workers ask more of it than one core gives, the emulator is busy ~100% of the drain
and it, not the workers, is the bound. In the cloud DynamoDB and SQS serve in parallel in milliseconds; a
Codat write passes through to the accounting platform (hundreds of milliseconds to seconds), so the
worker's concurrency is the bound there. The sweep runs at the cloud's interval (60 s): with retries when
they are due no sweep is part of a drain, and a compressed sweep would only load the emulator with
queries.
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

from local.emulator import client
from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID

NAME = "Retry drain after an outage (local stack, compressed timings)"

N = int(os.environ.get("BILLPAY_BENCH_DRAIN_N", "200"))
SWEEP_INTERVAL = 60.0  # the cloud's: the drain must not depend on a sweep
BASE_DELAY = 0.2
MAX_DELAY = 2.0
# The template's MaximumConcurrency for the retry worker; the local pool is sized to it, as Lambda's
# reserved concurrency would bound it.
WORKER_CONCURRENCY = 5
ATTEMPT_SAMPLES = 7
LATENCIES_MS = (0, 300, 1000)
TARGET_FRACTION_OF_IDEAL = 0.8
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


def _worker_attempt_seconds(http: httpx.Client, ready: dict[str, Any]) -> float:
    """One retry-worker attempt on this stack, alone: a payment whose first attempt meets one 503 is
    watched on its item (moto directly, every 2 ms) from the worker's lease (`leaseHolder` worker) to its
    end; the worker's GetItem and lease write before that are added at one emulated request each."""
    dynamodb = client("dynamodb", ready["emulator_direct_url"])
    table = ready["resources"]["OperationsTable"]
    samples: list[float] = []
    single: list[float] = []
    for i in range(ATTEMPT_SAMPLES):
        http.post(
            f"{ready['sandbox_url']}/_sandbox/faults",
            json={"method": "POST", "path": "*/payment", "fault": "status", "status": 503, "times": 1},
        ).raise_for_status()
        status, op = _pay(http, ready["api_url"], 500 + i)
        assert status == 202, status
        leased_at: float | None = None
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            item = dynamodb.get_item(TableName=table, Key={"operationId": {"S": op}}, ConsistentRead=True)[
                "Item"
            ]
            single.append(time.perf_counter() - started)
            if leased_at is None and item.get("leaseHolder", {}).get("S") == "worker":
                leased_at = time.perf_counter()
            if item["status"]["S"] != "pending":
                assert item["status"]["S"] == "succeeded", item["status"]
                if leased_at is not None:
                    samples.append(time.perf_counter() - leased_at)
                break
            time.sleep(0.002)
    request = statistics.median(single)
    return statistics.median(samples) + 2 * request


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _drain(latency_ms: int) -> dict[str, Any]:
    proc, ready, _log = _start_stack(
        {
            "BILLPAY_SANDBOX_LATENCY_MS": str(latency_ms),
            "BILLPAY_SWEEP_INTERVAL_SECONDS": str(SWEEP_INTERVAL),
            "BILLPAY_RETRY_BASE_DELAY_SECONDS": str(BASE_DELAY),
            "BILLPAY_RETRY_MAX_DELAY_SECONDS": str(MAX_DELAY),
            "BILLPAY_RETRY_WINDOW_SECONDS": "600",
            "BILLPAY_LOCAL_CONCURRENCY": str(WORKER_CONCURRENCY),
            "BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS": "30",
            "BILLPAY_EMULATOR_PROCESS": "1",
        }
    )
    api, sandbox = ready["api_url"], ready["sandbox_url"]
    try:
        with httpx.Client(timeout=30) as http:
            # Warm every pool (cold starts are not part of a drain), and measure one attempt's latency.
            warm: list[float] = []
            for i in range(WORKER_CONCURRENCY * 5):
                t0 = time.perf_counter()
                status, _ = _pay(http, api, 1000 + i)
                warm.append(time.perf_counter() - t0)
                assert status == 201, status
            sync_attempt_seconds = statistics.median(warm[WORKER_CONCURRENCY:])
            attempt_seconds = _worker_attempt_seconds(http, ready)

            http.post(
                f"{sandbox}/_sandbox/faults",
                json={
                    "method": "POST",
                    "path": "*/payment",
                    "fault": "status",
                    "status": 503,
                    "times": 1_000_000,
                },
            ).raise_for_status()
            with ThreadPoolExecutor(max_workers=WORKER_CONCURRENCY) as pool:
                answers = list(pool.map(lambda i: _pay(http, api, i), range(N)))
            statuses = sorted({s for s, _ in answers})
            ids = [op for _, op in answers]
            assert statuses == [202], statuses

            applied_before = len(http.get(f"{sandbox}/_sandbox/payments").json())
            cpu_before = _cpu_seconds(ready["emulator_pid"])
            http.delete(f"{sandbox}/_sandbox/faults").raise_for_status()
            outage_end = time.perf_counter()
            deadline = outage_end + 300
            while time.perf_counter() < deadline:
                applied = len(http.get(f"{sandbox}/_sandbox/payments").json()) - applied_before
                if applied >= N:
                    break
                time.sleep(0.05)
            drained = time.perf_counter() - outage_end
            cpu_after = _cpu_seconds(ready["emulator_pid"])
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

    # Ideal for the machinery: the last backoff still to wait, then N attempts spread over the workers.
    ideal = MAX_DELAY + N * attempt_seconds / WORKER_CONCURRENCY
    busy = (
        (cpu_after - cpu_before) / drained
        if cpu_before is not None and cpu_after is not None and drained
        else None
    )
    return {
        "codat_latency_ms": latency_ms,
        "drain_seconds": round(drained, 2),
        "confirmed_seconds": round(confirmed, 2),
        "ideal_seconds": round(ideal, 2),
        "ideal_over_drain": round(ideal / drained, 2) if drained else None,
        "meets_target": bool(drained and ideal / drained >= TARGET_FRACTION_OF_IDEAL),
        "payments_per_second": round(N / drained, 1) if drained else None,
        "ideal_payments_per_second": round(WORKER_CONCURRENCY / attempt_seconds, 1),
        "worker_attempt_seconds_p50": round(attempt_seconds, 4),
        "sync_payment_seconds_p50": round(sync_attempt_seconds, 4),
        "succeeded": sum(1 for s in states.values() if s == "succeeded"),
        "lost_still_pending": len(pending),
        "duplicated": sum(1 for count in per_key.values() if count > 1),
        # One core = 1.0: near it, the emulator (moto, one Python process) is the bound, not the workers.
        "emulator_cpu_busy_during_drain": round(busy, 2) if busy is not None else None,
        # The drain is CPU work on a machine of few cores: other load on it slows the drain, not the ideal.
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


def run() -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for latency in LATENCIES_MS:
        runs[f"codat_{latency}ms"] = _drain(latency)
        print(f"drain: {latency} ms done", flush=True)
    return {
        "payments": N,
        "worker_concurrency": WORKER_CONCURRENCY,
        "retry_base_delay_seconds": BASE_DELAY,
        "retry_max_delay_seconds": MAX_DELAY,
        "sweep_interval_seconds": SWEEP_INTERVAL,
        "target": f"ideal / drain >= {TARGET_FRACTION_OF_IDEAL}",
        "runs": runs,
        "cloud_note": (
            "cloud: the same shape with a backoff of up to 600 s; DynamoDB and SQS serve in parallel, so "
            "the worker's concurrency is the bound"
        ),
    }


def markdown(results: dict[str, Any]) -> list[str]:
    """One row per Codat latency: the drain beside its ideal, and how busy the emulator was meanwhile."""
    lines = [
        f"{results['payments']} payments queued during a Codat outage, drained by "
        f"{results['worker_concurrency']} workers (backoff {results['retry_base_delay_seconds']}-"
        f"{results['retry_max_delay_seconds']} s, sweep every {results['sweep_interval_seconds']:g} s); "
        f"target {results['target']}.",
        "",
        "| Codat latency | attempt alone | drain | ideal | ideal / drain | target met | payments/s "
        "| emulator CPU busy | succeeded | lost | duplicated |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"].values():
        met = "yes" if run["meets_target"] else "no"
        cells = [
            f"{run['codat_latency_ms']} ms",
            f"{run['worker_attempt_seconds_p50']} s",
            f"{run['drain_seconds']} s",
            f"{run['ideal_seconds']} s",
            run["ideal_over_drain"],
            met,
            run["payments_per_second"],
            run["emulator_cpu_busy_during_drain"],
            run["succeeded"],
            run["lost_still_pending"],
            run["duplicated"],
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines += ["", str(results["cloud_note"]), ""]
    return lines


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
