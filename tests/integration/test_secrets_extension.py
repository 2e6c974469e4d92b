"""The Codat key: from CODAT_API_KEY, or fetched once through the Parameters and Secrets extension (a
real local HTTP server stands in for it). The boto3 path against the AWS emulator is in
tests/integration/test_codat_secret.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from billpay.adapters import secrets
from billpay.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:billpay/codat-AbCdEf"


class FakeExtension:
    def __init__(self, value: str | None = "sk-from-secret", status: int = 200) -> None:
        self.value = value
        self.status = status
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                outer.requests.append(
                    {
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "token": self.headers.get("X-Aws-Parameters-Secrets-Token"),
                    }
                )
                body = json.dumps({"ARN": ARN, "SecretString": outer.value}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def extension(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeExtension]:
    fake = FakeExtension()
    monkeypatch.setenv(secrets.EXTENSION_PORT_VAR, str(fake.port))
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-1")
    secrets.reset_cache()
    yield fake
    secrets.reset_cache()
    fake.close()


def test_a_local_key_needs_no_fetch() -> None:
    assert (
        secrets.get_codat_api_key(load_settings({"CODAT_API_KEY": "local-sandbox-key"}))
        == "local-sandbox-key"
    )


def test_the_secret_is_fetched_once_through_the_extension(extension: FakeExtension) -> None:
    settings = load_settings({"CODAT_API_KEY_SECRET_ARN": ARN})
    assert secrets.get_codat_api_key(settings) == "sk-from-secret"
    assert secrets.get_codat_api_key(settings) == "sk-from-secret"
    assert len(extension.requests) == 1
    request = extension.requests[0]
    assert request["path"] == "/secretsmanager/get"
    assert request["query"] == {"secretId": [ARN]}
    assert request["token"] == "session-token-1"
    assert secrets.last_fetch_seconds is not None


def test_a_basic_header_secret_is_kept_as_stored(extension: FakeExtension) -> None:
    extension.value = "Basic c2stMTIz"
    assert secrets.get_codat_api_key(load_settings({"CODAT_API_KEY_SECRET_ARN": ARN})) == "Basic c2stMTIz"


@pytest.mark.parametrize(("status", "value"), [(500, "x"), (200, None), (200, "   ")])
def test_a_failed_or_empty_fetch_is_an_error_that_does_not_stick(
    extension: FakeExtension, status: int, value: str | None
) -> None:
    extension.status, extension.value = status, value
    settings = load_settings({"CODAT_API_KEY_SECRET_ARN": ARN})
    with pytest.raises(secrets.SecretUnavailableError):
        secrets.get_codat_api_key(settings)
    extension.status, extension.value = 200, "sk-later"
    assert secrets.get_codat_api_key(settings) == "sk-later"


def test_importing_the_module_fetches_nothing_and_loads_no_boto3() -> None:
    code = "import sys, billpay.adapters.secrets as s; print('boto3' in sys.modules, s._cache)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(ROOT / "layers/billpay"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False {}"


class _Context:
    function_name = "ListBankAccountsFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-2:123456789012:function:ListBankAccountsFunction"
    aws_request_id = "req-secret"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def test_a_key_that_cannot_be_fetched_is_a_503_service_unavailable_never_a_500(
    extension: FakeExtension, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billpay import authz  # noqa: PLC0415
    from billpay.adapters.codat import set_codat_client  # noqa: PLC0415
    from billpay.config import reset_settings  # noqa: PLC0415
    from billpay.domain.clients import parse_registry  # noqa: PLC0415

    from functions.list_bank_accounts.handler import lambda_handler  # noqa: PLC0415

    # The caller is authorised from a registry of its own (no SSM here): the key fetch is what fails.
    sample_role = "arn:aws:iam::123456789012:role/billpay-app"
    authz.use_registry_loader(
        lambda: parse_registry(
            {
                "clients": {
                    "app": {"principals": [sample_role], "permissions": ["accounts:read"], "companies": ["*"]}
                }
            }
        )
    )
    extension.status = 500
    monkeypatch.delenv("CODAT_API_KEY", raising=False)
    monkeypatch.setenv("CODAT_API_KEY_SECRET_ARN", ARN)
    monkeypatch.setenv("CODAT_BASE_URL", "http://127.0.0.1:9")  # never reached: no key, no request
    reset_settings()
    set_codat_client(None)
    try:
        event = json.loads((ROOT / "events" / "list_bank_accounts.json").read_text())
        result = lambda_handler(event, _Context())  # type: ignore[arg-type]
    finally:
        set_codat_client(None)
        reset_settings()
        authz.use_registry_loader(None)
    assert result["statusCode"] == 503, result["body"]
    assert json.loads(result["body"])["type"].endswith("/problems/service-unavailable")
    assert result["multiValueHeaders"]["Retry-After"] == ["2"]
    assert extension.requests  # the extension was asked, and failed
