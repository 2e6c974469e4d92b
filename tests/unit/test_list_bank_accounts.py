"""The list handler, through `lambda_handler` with REST v1 proxy events; Codat is an httpx.MockTransport.

The same route against the real sandbox and gateway is in tests/integration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from billpay import authz
from billpay.adapters.codat import CodatClient, set_codat_client
from billpay.config import reset_settings
from billpay.domain.clients import parse_registry

from functions.list_bank_accounts.handler import lambda_handler

ROOT = Path(__file__).resolve().parents[2]
COMPANY = "3c5e8a1f-6b2d-4f4a-9e7c-0a1b2c3d4e51"
CONNECTION = "7d2f9b4c-1e3a-4c5d-8b6f-0a1b2c3d4e52"
RESOURCE = "/companies/{companyId}/connections/{connectionId}/payables/bankAccounts"
PROBLEM = "application/problem+json"

ACTIVE = {
    "id": "a1",
    "name": "Current",
    "currency": "GBP",
    "status": "Active",
    "accountType": "Debit",
    "x": 1.25,
}
ARCHIVED: dict[str, Any] = {
    "id": "a2",
    "name": "Old",
    "currency": "GBP",
    "status": "Archived",
    "accountType": "Debit",
}


@dataclass
class Context:
    function_name: str = "ListBankAccountsFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-west-2:123456789012:function:ListBankAccountsFunction"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


def api_event(
    company: str = COMPANY,
    connection: str = CONNECTION,
    query: dict[str, str] | None = None,
    stage: str = "v1",
) -> dict[str, Any]:
    path = f"/companies/{company}/connections/{connection}/payables/bankAccounts"
    return {
        "resource": RESOURCE,
        "path": path,
        "httpMethod": "GET",
        "headers": {"Accept": "application/json"},
        "multiValueHeaders": {"Accept": ["application/json"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"companyId": company, "connectionId": connection},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": RESOURCE,
            "httpMethod": "GET",
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": "req-1",
            "identity": {
                "userArn": "arn:aws:sts::123456789012:assumed-role/app/s",
                "accountId": "123456789012",
            },
        },
        "body": None,
        "isBase64Encoded": False,
    }


class FakeCodat:
    """Answers like Codat's get-mapping-options-payments; `answer` overrides the next responses."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[Callable[[httpx.Request], httpx.Response]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            return self.answers.pop(0)(request)
        if COMPANY not in request.url.path:
            return error(404, "No company was found")
        query = request.url.params.get("statusQuery")
        accounts = {
            "status=Active": [ACTIVE],
            "status=Archived": [ARCHIVED],
            "status=Active||status=Archived": [ACTIVE, ARCHIVED],
        }[query or "status=Active"]
        token = request.url.params.get("continuationToken")
        if token is None and query == "status=Active||status=Archived":
            return httpx.Response(
                200, json={"bankAccounts": accounts[:1], "pagination": {"continuationToken": "p2"}}
            )
        if token == "p2":
            return httpx.Response(200, json={"bankAccounts": accounts[1:], "pagination": {}})
        return httpx.Response(200, json={"bankAccounts": accounts, "pagination": {}})


def error(status: int, message: str = "error", headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"statusCode": status, "service": "PublicApi", "error": message, "correlationId": f"corr-{status}"}
    return httpx.Response(status, json=body, headers=headers)


# The events' caller (role `app`) as a registered client that may read every company's accounts.
REGISTRY = parse_registry(
    {
        "clients": {
            "app": {
                "principals": ["arn:aws:iam::123456789012:role/app"],
                "permissions": ["accounts:read"],
                "companies": ["*"],
            }
        }
    }
)


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    authz.use_registry_loader(lambda: REGISTRY)
    yield
    authz.use_registry_loader(None)


@pytest.fixture
def codat(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCodat]:
    monkeypatch.setenv("CODAT_API_KEY", "local-sandbox-key")
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    monkeypatch.setenv("BILLPAY_PROBLEM_TYPE_BASE", "https://billpay.test")
    reset_settings()
    fake = FakeCodat()
    set_codat_client(
        CodatClient(
            base_url="https://codat.test",
            api_key="local-sandbox-key",
            timeout_seconds=2,
            connect_timeout_seconds=1,
            budget_seconds=5,
            transport=httpx.MockTransport(fake),
            sleep=lambda s: None,
        )
    )
    yield fake
    set_codat_client(None)
    reset_settings()


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, list[str]], dict[str, Any]]:
    result = lambda_handler(event, Context())  # type: ignore[arg-type]
    return result["statusCode"], dict(result["multiValueHeaders"]), json.loads(result["body"])


@pytest.mark.parametrize(
    ("query", "status_query"),
    [
        (None, "status=Active"),
        ({"status": "Active"}, "status=Active"),
        ({"status": "Archived"}, "status=Archived"),
        ({"status": "All"}, "status=Active||status=Archived"),
    ],
)
def test_status_maps_to_codats_status_query(
    codat: FakeCodat, query: dict[str, str] | None, status_query: str
) -> None:
    status, headers, _ = invoke(api_event(query=query))
    assert status == 200
    assert headers["Content-Type"] == ["application/json"]
    assert codat.requests[-1].url.params["statusQuery"] == status_query
    assert codat.requests[-1].url.path == (
        f"/companies/{COMPANY}/connections/{CONNECTION}/payables/mappingOptions/payments"
    )


def test_accounts_are_passed_on_as_codat_returns_them(codat: FakeCodat) -> None:
    status, _, body = invoke(api_event())
    assert status == 200
    assert body == {"bankAccounts": [ACTIVE], "pagination": {}}


def test_pages_follow_the_continuation_token_which_is_absent_on_the_last(codat: FakeCodat) -> None:
    _, _, first = invoke(api_event(query={"status": "All"}))
    assert first == {"bankAccounts": [ACTIVE], "pagination": {"continuationToken": "p2"}}
    _, _, second = invoke(api_event(query={"status": "All", "continuationToken": "p2"}))
    assert codat.requests[-1].url.params["continuationToken"] == "p2"
    assert second == {"bankAccounts": [ARCHIVED], "pagination": {}}


def test_upper_case_ids_are_lower_cased_upstream(codat: FakeCodat) -> None:
    status, _, _ = invoke(api_event(company=COMPANY.upper(), connection=CONNECTION.upper()))
    assert status == 200
    assert COMPANY in codat.requests[-1].url.path
    assert CONNECTION in codat.requests[-1].url.path


def test_unknown_company_is_a_404_problem(codat: FakeCodat) -> None:
    status, headers, body = invoke(api_event(company="00000000-0000-4000-8000-000000000000"))
    assert status == 404
    assert headers["Content-Type"] == [PROBLEM]
    assert body["type"] == "https://billpay.test/problems/not-found"
    assert body["upstream"] == {
        "statusCode": 404,
        "error": "No company was found",
        "correlationId": "corr-404",
    }


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (api_event(company="not-a-uuid"), "companyId"),
        (api_event(connection="7d2f9b4c1e3a4c5d8b6f0a1b2c3d4e52"), "connectionId"),
        (api_event(query={"status": "active"}), "status"),
        (api_event(query={"status": "Deleted"}), "status"),
        (api_event(query={"continuationToken": ""}), "continuationToken"),
    ],
    ids=["company", "connection", "status-case", "status-unknown", "empty-token"],
)
def test_bad_parameters_are_400_and_never_reach_codat(
    codat: FakeCodat, event: dict[str, Any], field: str
) -> None:
    status, headers, body = invoke(event)
    assert status == 400
    assert headers["Content-Type"] == [PROBLEM]
    assert body["type"] == "https://billpay.test/problems/validation-error"
    assert field in [e["field"] for e in body["errors"]]
    assert codat.requests == []


def test_a_token_codat_refuses_is_a_400_on_that_parameter(codat: FakeCodat) -> None:
    codat.answers.append(lambda r: error(400, "Invalid continuation token"))
    status, _, body = invoke(api_event(query={"continuationToken": "forged"}))
    assert status == 400
    assert body["type"].endswith("/problems/validation-error")
    assert [e["field"] for e in body["errors"]] == ["continuationToken"]


@pytest.mark.parametrize(
    ("upstream", "status", "problem", "retry_after"),
    [
        (401, 502, "upstream-rejected", None),
        (402, 502, "upstream-rejected", None),
        (403, 502, "upstream-rejected", None),
        (429, 503, "upstream-rate-limited", "2"),
        (500, 502, "upstream-unavailable", None),
        (503, 502, "upstream-unavailable", None),
    ],
)
def test_upstream_failures_map_to_the_design_table(
    codat: FakeCodat, upstream: int, status: int, problem: str, retry_after: str | None
) -> None:
    headers_out = {"Retry-After": "1.2"} if upstream == 429 else None
    codat.answers.extend([lambda r: error(upstream, headers=headers_out)] * 3)
    got, headers, body = invoke(api_event())
    assert got == status
    assert headers["Content-Type"] == [PROBLEM]
    assert body["type"] == f"https://billpay.test/problems/{problem}"
    assert body["upstream"]["statusCode"] == upstream
    assert body["upstream"]["correlationId"] == f"corr-{upstream}"
    if retry_after:
        assert headers["Retry-After"] == [retry_after]
    expected_calls = 3 if upstream in (429, 500, 503) else 1
    assert len(codat.requests) == expected_calls


def test_a_timeout_is_a_504(codat: FakeCodat) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    codat.answers.extend([slow] * 3)
    status, _, body = invoke(api_event())
    assert status == 504
    assert body["type"].endswith("/problems/upstream-unavailable")


def test_a_connection_failure_is_a_502(codat: FakeCodat) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    codat.answers.extend([refused] * 3)
    status, _, body = invoke(api_event())
    assert status == 502
    assert body["type"].endswith("/problems/upstream-unavailable")
    assert "refused" not in json.dumps(body)


def test_the_handler_does_not_import_boto3() -> None:
    # Powertools itself imports the bare `botocore` package (to register its user-agent hook; ~0.4 ms);
    # what must not load is boto3, any botocore client machinery, or a tracing SDK.
    code = (
        "import sys, json\n"
        "import functions.list_bank_accounts.handler\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('boto', 'aws_xray')))))\n"
    )
    env = {"CODAT_API_KEY": "k", "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'layers/billpay'}"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout)
    assert "boto3" not in loaded
    assert [m for m in loaded if m != "botocore"] == []
