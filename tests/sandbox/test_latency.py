"""The sandbox's latency model: a per-request delay on every Codat endpoint (never on /_sandbox/*), and a
`latency` fault for one path; plus the request counter benchmarks read."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from local.sandbox.seed import COMPANY_GBP_ID, CONNECTION_GBP_ID
from local.sandbox.server import SandboxConfig
from tests.fixtures.sandbox import Sandbox

GBP = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_every_codat_request_waits_the_configured_latency(
    sandbox_factory: Callable[..., Sandbox], validated_client: Callable[..., httpx.Client]
) -> None:
    slow = sandbox_factory(latency_ms=200)
    codat = validated_client(on=slow)
    for path in (f"{GBP}/bills", f"{GBP}/suppliers", f"{GBP}/info", f"{GBP}/mappingOptions/payments"):
        response, elapsed = timed(lambda path=path: codat.get(path))  # type: ignore[misc]
        assert response.status_code == 200, response.text
        assert elapsed >= 0.2, (path, elapsed)
    # refusals pay it too: the platform is asked before it can say no
    _, elapsed = timed(lambda: codat.get(f"{GBP}/bills", params={"query": "nope=1"}))
    assert elapsed >= 0.2
    # the control endpoints are not Codat's and answer at once
    started = time.monotonic()
    assert slow.requests()["total"] == 5
    assert time.monotonic() - started < 0.15


def test_a_latency_fault_slows_one_path_n_times(codat: httpx.Client, sandbox: Sandbox) -> None:
    fault = sandbox.add_fault(path="/companies/*/payables/bills", fault="latency", latencyMs=300, times=2)
    assert (fault["fault"], fault["holdSeconds"], fault["times"]) == ("latency", 0.3, 2)
    _, other = timed(lambda: codat.get(f"{GBP}/suppliers"))
    first, one = timed(lambda: codat.get(f"{GBP}/bills"))
    second, two = timed(lambda: codat.get(f"{GBP}/bills"))
    _, three = timed(lambda: codat.get(f"{GBP}/bills"))
    assert first.status_code == second.status_code == 200
    assert one >= 0.3 and two >= 0.3
    assert other < 0.25 and three < 0.25
    assert sandbox.faults() == []


def test_a_latency_fault_stacks_with_a_failure_on_the_same_request(
    codat: httpx.Client, sandbox: Sandbox
) -> None:
    sandbox.add_fault(path="/companies/*/payables/info", fault="latency", holdSeconds=0.3)
    sandbox.add_fault(path="/companies/*/payables/info", fault="status", status=503)
    response, elapsed = timed(lambda: codat.get(f"{GBP}/info"))
    assert response.status_code == 503
    assert elapsed >= 0.3


def test_requests_are_counted_by_method_and_path_and_cleared(codat: httpx.Client, sandbox: Sandbox) -> None:
    codat.get(f"{GBP}/bills")
    codat.get(f"{GBP}/bills")
    codat.get(f"{GBP}/info")
    counted = sandbox.requests()
    assert counted["total"] == 3
    assert counted["byRequest"][f"GET {GBP}/bills"] == 2
    sandbox.clear_requests()
    assert sandbox.requests() == {"total": 0, "byRequest": {}}


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "/x", "fault": "latency"},  # no delay given
        {"path": "/x", "fault": "latency", "latencyMs": -1},
        {"path": "/x", "fault": "latency", "latencyMs": "slow"},
        {"path": "/x", "fault": "latency", "latencyMs": 5, "holdSeconds": 1},
        {"path": "/x", "fault": "timeout", "latencyMs": 5},
    ],
)
def test_malformed_latency_faults_are_400(sandbox: Sandbox, spec: dict[str, object]) -> None:
    response = httpx.post(f"{sandbox.url}/_sandbox/faults", json=spec)
    assert response.status_code == 400, response.text
    assert any(e["itemId"] == "latencyMs" for e in response.json()["validation"]["errors"])


def test_latency_setting_from_env_and_its_bounds() -> None:
    assert SandboxConfig.from_env({"BILLPAY_SANDBOX_LATENCY_MS": "300"}).latency_ms == 300
    assert SandboxConfig.from_env({"BILLPAY_SANDBOX_LATENCY_MS": ""}).latency_ms == 0
    for bad in ("-1", "slow", "600000"):
        with pytest.raises(ValueError):
            SandboxConfig.from_env({"BILLPAY_SANDBOX_LATENCY_MS": bad})
