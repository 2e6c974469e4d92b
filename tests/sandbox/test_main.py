"""`python -m local.sandbox` and the BILLPAY_SANDBOX_* settings."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from local.sandbox.seed import COMPANY_GBP_ID
from local.sandbox.server import SandboxConfig

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_runs_as_a_module_on_the_configured_port_and_stops_on_sigterm(codat_openapi) -> None:
    port = free_port()
    env = {**os.environ, "BILLPAY_SANDBOX_PORT": str(port), "BILLPAY_SANDBOX_PAGE_SIZE": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.sandbox"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        auth = {"Authorization": "Basic " + base64.b64encode(b"local-sandbox-key").decode()}
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/companies", headers=auth, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "sandbox did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        codat_openapi.validate_http(response)
        assert response.json()["results"][0]["id"] == COMPANY_GBP_ID
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert f"http://127.0.0.1:{port}" in process.stdout.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_config_from_env_with_explicit_arguments_winning() -> None:
    env = {
        "BILLPAY_SANDBOX_IDEMPOTENCY_SECONDS": "2.5",
        "BILLPAY_SANDBOX_PAGE_SIZE": "7",
        "BILLPAY_SANDBOX_SEED": "large",
        "BILLPAY_SANDBOX_API_KEY": "k",
    }
    config = SandboxConfig.from_env(env)
    assert (config.idempotency_seconds, config.page_size, config.seed, config.api_key) == (
        2.5,
        7,
        "large",
        "k",
    )
    assert SandboxConfig.from_env(env, page_size=3).page_size == 3
    assert SandboxConfig.from_env({}) == SandboxConfig()


@pytest.mark.parametrize(
    "env",
    [
        {"BILLPAY_SANDBOX_PAGE_SIZE": "0"},
        {"BILLPAY_SANDBOX_PAGE_SIZE": "many"},
        {"BILLPAY_SANDBOX_IDEMPOTENCY_SECONDS": "-1"},
        {"BILLPAY_SANDBOX_SEED": "huge"},
    ],
)
def test_bad_settings_fail_loudly(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        SandboxConfig.from_env(env)
