"""Codat sandbox throughput: mapping-options reads and recorded payments per second.

The sandbox runs as `python -m local.sandbox` in its own process (as under `make run`), with the `large` seed
so payments never run out of amount due; a few keep-alive httpx clients in threads drive it for a fixed
time. Client and server share this machine's cores, so the figures are a floor for the server alone.
"""

from __future__ import annotations

import base64
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from local.sandbox.seed import (
    ACCOUNT_GBP_CURRENT,
    COMPANY_GBP_ID,
    CONNECTION_GBP_ID,
    LARGE_BULK_BILLS,
    bulk_bill_id,
)

NAME = "Codat sandbox throughput"
ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 4
SECONDS = 3.0
BASE = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BILLPAY_SANDBOX_PORT": str(port), "BILLPAY_SANDBOX_SEED": "large"}
    env.pop("BILLPAY_SANDBOX_VERBOSE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "local.sandbox"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the sandbox did not start")


def _drive(url: str, request: Callable[[httpx.Client, int], int], seconds: float) -> dict[str, Any]:
    headers = {"Authorization": "Basic " + base64.b64encode(b"local-sandbox-key").decode()}
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    failures = [0] * CLIENTS
    start = threading.Barrier(CLIENTS + 1)
    deadline = [0.0]

    def worker(index: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            request(client, index)  # open the keep-alive connection before timing
            start.wait()
            n = 0
            while time.monotonic() < deadline[0]:
                began = time.perf_counter()
                status = request(client, index * 1_000_000 + n)
                latencies[index].append(time.perf_counter() - began)
                if status >= 400:
                    failures[index] += 1
                n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + seconds
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    every = sorted(latency for per_client in latencies for latency in per_client)
    return {
        "requests": len(every),
        "failures": sum(failures),
        "requests_per_second": round(len(every) / elapsed),
        "p50_ms": round(statistics.median(every) * 1000, 2),
        "p99_ms": round(every[int(len(every) * 0.99) - 1] * 1000, 2),
    }


def _read(client: httpx.Client, _: int) -> int:
    return client.get(f"{BASE}/mappingOptions/payments").status_code


def _pay(client: httpx.Client, n: int) -> int:
    bill = bulk_bill_id(COMPANY_GBP_ID, 1 + n % LARGE_BULK_BILLS)
    body = {"amount": 0.01, "date": "2026-11-25", "accountRef": {"id": ACCOUNT_GBP_CURRENT}}
    response = client.post(
        f"{BASE}/bills/{bill}/payment", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    return response.status_code


def run() -> dict[str, Any]:
    port = _free_port()
    process = _start(port)
    url = f"http://127.0.0.1:{port}"
    try:
        reads = _drive(url, _read, SECONDS)
        payments = _drive(url, _pay, SECONDS)
        recorded = len(httpx.get(f"{url}/_sandbox/payments", timeout=30).json())
    finally:
        process.terminate()
        process.wait(timeout=10)
    return {
        "setup": f"sandbox process (large seed), {CLIENTS} keep-alive httpx clients, {SECONDS:g} s a phase",
        "mapping_options_reads": reads,
        "bill_payments_keyed": {**payments, "recorded": recorded},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
