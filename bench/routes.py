"""Warm latency of API routes through the local gateway, beside the same upstream call made directly.

Starts `python -m local.stack` (default settings, free ports), warms up, then alternates requests to the
list route through the gateway with the equivalent Codat call straight to the sandbox, so both see the
same machine load. The difference of the medians is what the gateway, the worker IPC and the handler add.
"""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Callable

import httpx

from local.harness import start_stack
from local.sandbox.seed import COMPANY_GBP_ID, CONNECTION_GBP_ID

NAME = "Routes through the local gateway (warm)"
WARMUP = 200
SAMPLES = 1000
LOCAL_KEY = "local-sandbox-key"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _timed(call: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    answer = call()
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:200]}")
    return elapsed


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 3),
        "p99_ms": round(_percentile(values, 0.99), 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }


def run() -> dict[str, object]:
    route = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/bankAccounts"
    upstream = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/mappingOptions/payments"
    authorization = "Basic " + base64.b64encode(LOCAL_KEY.encode()).decode()
    started = time.perf_counter()
    # Default timings (not the tests' compressed ones): the sweeper runs once a minute, as in the cloud.
    with start_stack(
        BILLPAY_SWEEP_INTERVAL_SECONDS=None,
        BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS=None,
        BILLPAY_RETRY_WINDOW_SECONDS=None,
        BILLPAY_RETRY_BASE_DELAY_SECONDS=None,
        BILLPAY_RETRY_MAX_DELAY_SECONDS=None,
        BILLPAY_UPSTREAM_TIMEOUT_SECONDS=None,
        BILLPAY_SYNC_BUDGET_SECONDS=None,
    ) as stack:
        startup_s = time.perf_counter() - started
        first_ms = _timed(lambda: stack.client.get(route))  # worker warmed by openapi.json, client cold
        with httpx.Client(base_url=stack.sandbox_url, headers={"Authorization": authorization}) as sandbox:

            def via_gateway() -> httpx.Response:
                return stack.client.get(route)

            def direct() -> httpx.Response:
                return sandbox.get(upstream, params={"statusQuery": "status=Active"})

            for _ in range(WARMUP):
                _timed(via_gateway)
                _timed(direct)
            gateway_ms: list[float] = []
            direct_ms: list[float] = []
            for _ in range(SAMPLES):
                gateway_ms.append(_timed(via_gateway))
                direct_ms.append(_timed(direct))
    gateway = _summary(gateway_ms)
    upstream_only = _summary(direct_ms)
    return {
        "samples": SAMPLES,
        "stack_startup_s": round(startup_s, 2),
        "first_list_request_ms": round(first_ms, 2),
        "list_via_gateway": gateway,
        "sandbox_direct": upstream_only,
        "overhead_p50_ms": round(gateway["p50_ms"] - upstream_only["p50_ms"], 3),
        "overhead_p99_ms": round(gateway["p99_ms"] - upstream_only["p99_ms"], 3),
        "target_overhead_p50_ms": 5.0,
    }
