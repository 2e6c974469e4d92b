"""A body the API cannot read — another content type, a multipart body, bytes that are not UTF-8 — is a 400
`validation-error`, never a 500 (each one found by tests/contract/test_fuzz_api.py). A ValueError from the
route itself, on a JSON request, is still a 500 `internal-error`, and counted.

Bounds: a body over 64 KB is a 413 before anything reads it (plain or base64-encoded), an integer with
more digits than Python converts is a 400, `errors` lists stop at 20. Our own dependency failing past
the SDK's retries (DynamoDB, SQS, SSM, Secrets Manager) is a 503 `service-unavailable`, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from billpay.adapters.secrets import SecretUnavailableError
from billpay.config import reset_settings
from billpay.http import (
    PROBLEM_CONTENT_TYPE,
    REQUEST_BODY_LIMIT_BYTES,
    WRITE_PROBLEMS,
    build_resolver,
    request_body_bytes,
    route_responses,
)
from billpay.models.requests import Amount
from billpay.observability import UNEXPECTED_ERROR_METRIC, metrics
from billpay.problems import MAX_PROBLEM_ERRORS
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from pydantic import BaseModel, ConfigDict


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CODAT_API_KEY", "k")
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    monkeypatch.setenv("BILLPAY_PROBLEM_TYPE_BASE", "https://problems.billpay.test/")
    reset_settings()
    yield
    reset_settings()


class Thing(BaseModel):
    name: str


def make_app() -> Any:
    app = build_resolver()

    @app.post("/things", responses=route_responses(201, "Created", WRITE_PROBLEMS))
    def create_thing(thing: Thing) -> dict[str, Any]:
        if thing.name == "explode":
            raise ValueError("a bug of ours, not the client's")
        return {"name": thing.name}

    return app


def post(content_type: str | None, body: bytes) -> tuple[int, list[str], dict[str, Any]]:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:  # as the local gateway and API Gateway hand over binary bodies
        text, encoded = base64.b64encode(body).decode("ascii"), True
    event = {
        "resource": "/things",
        "path": "/things",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"path": "/v1/things", "stage": "v1", "requestId": "r-1", "identity": {}},
        "body": text,
        "isBase64Encoded": encoded,
    }
    result = build_and_resolve(event)
    return result["statusCode"], result["multiValueHeaders"]["Content-Type"], json.loads(result["body"])


def build_and_resolve(event: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = make_app().resolve(event, None)
    return answer


@pytest.mark.filterwarnings("ignore:Received multipart/form-data:UserWarning")
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"name": "a"}'),
        ("application/xml", b"<thing><name>a</name></thing>"),
        ("multipart/form-data", b'{"name": "a"}'),  # no boundary
        ("multipart/form-data; boundary=xyz", b'{"name": "a"}'),  # not multipart at all
        ("application/json", b'{"name": "\xff\xfe"}'),  # not UTF-8
    ],
)
def test_an_unreadable_body_is_a_validation_error(content_type: str, body: bytes) -> None:
    status, content_types, problem = post(content_type, body)
    assert status == 400, problem
    assert content_types == [PROBLEM_CONTENT_TYPE]
    assert problem["type"].endswith("/problems/validation-error")
    assert problem["errors"][0]["location"] == "body"


def test_a_json_body_still_works_with_and_without_a_content_type() -> None:
    assert post("application/json; charset=utf-8", b'{"name": "a"}')[0] == 200
    assert post(None, b'{"name": "a"}')[0] == 200


def test_a_value_error_of_our_own_is_still_an_internal_error() -> None:
    status, _, problem = post("application/json", b'{"name": "explode"}')
    assert status == 500
    assert problem["type"].endswith("/problems/internal-error")
    assert "bug" not in json.dumps(problem)


# ------------------------------------------------------------------------------- bounds (64 KB, digits)


def raw_post(body: str, *, encoded: bool = False, path: str = "/things") -> dict[str, Any]:
    event = {
        "resource": path,
        "path": path,
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"path": f"/v1{path}", "stage": "v1", "requestId": "r-1", "identity": {}},
        "body": base64.b64encode(body.encode()).decode("ascii") if encoded else body,
        "isBase64Encoded": encoded,
    }
    return build_and_resolve(event)


@pytest.mark.parametrize("encoded", [False, True])
def test_a_body_over_64_kb_is_a_413_before_anything_reads_it(encoded: bool) -> None:
    body = json.dumps({"name": "x" * (70 * 1024)})
    result = raw_post(body, encoded=encoded)
    assert result["statusCode"] == 413
    assert result["multiValueHeaders"]["Content-Type"] == [PROBLEM_CONTENT_TYPE]
    problem = json.loads(result["body"])
    assert problem["type"].endswith("/problems/payload-too-large")
    assert str(len(body)) in problem["detail"]


@pytest.mark.parametrize("encoded", [False, True])
def test_a_body_of_exactly_64_kb_is_read(encoded: bool) -> None:
    skeleton = json.dumps({"name": ""})
    body = json.dumps({"name": "x" * (REQUEST_BODY_LIMIT_BYTES - len(skeleton))})
    assert len(body) == REQUEST_BODY_LIMIT_BYTES
    assert raw_post(body, encoded=encoded)["statusCode"] == 200


def test_a_413_wins_over_an_unknown_route_and_a_wrong_content_type() -> None:
    assert raw_post("x" * (65 * 1024), path="/nowhere")["statusCode"] == 413


@pytest.mark.parametrize(
    ("body", "size"),
    [("", 0), ("abc", 3), ("é", 2), (base64.b64encode(b"abcd").decode(), 4)],
)
def test_request_body_bytes_counts_what_the_client_sent(body: str, size: int) -> None:
    encoded = size == 4
    assert request_body_bytes({"body": body, "isBase64Encoded": encoded}) == size


class Payment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount


def payment_app() -> Any:
    app = build_resolver()

    @app.post("/payments", responses=route_responses(201, "Created", WRITE_PROBLEMS))
    def pay(payment: Payment) -> dict[str, Any]:
        return {"ok": True}

    return app


def post_payment(body: str) -> tuple[int, dict[str, Any]]:
    event = {
        "resource": "/payments",
        "path": "/payments",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"path": "/v1/payments", "stage": "v1", "requestId": "r-1", "identity": {}},
        "body": body,
        "isBase64Encoded": False,
    }
    result = payment_app().resolve(event, None)
    return result["statusCode"], json.loads(result["body"])


@pytest.mark.parametrize("digits", [4301, 5000, 60_000])
def test_an_integer_with_more_digits_than_python_converts_is_a_400(digits: int) -> None:
    status, problem = post_payment('{"amount": ' + "9" * digits + "}")
    assert status == 400, problem
    assert problem["type"].endswith("/problems/validation-error")
    assert problem["errors"][0]["field"] == "amount"


def test_an_ordinary_integer_amount_still_passes() -> None:
    assert post_payment('{"amount": 10}')[0] == 200


def test_errors_are_capped_at_20_and_the_detail_says_so() -> None:
    members = ", ".join(f'"extra{i}": 1' for i in range(57))
    status, problem = post_payment('{"amount": 10, ' + members + "}")
    assert status == 400
    assert len(problem["errors"]) == MAX_PROBLEM_ERRORS
    assert f"first {MAX_PROBLEM_ERRORS} of 57" in problem["detail"]


# --------------------------------------------------------------------- our own dependency unavailable


def failing_app(exc: Exception) -> Any:
    app = build_resolver()

    @app.get("/things/<thingId>", responses=route_responses(200, "A thing"))
    def get_thing(thingId: str) -> dict[str, Any]:
        raise exc

    return app


def get_failing(exc: Exception) -> tuple[int, dict[str, list[str]], dict[str, Any]]:
    event = {
        "resource": "/things/{thingId}",
        "path": "/things/t-1",
        "httpMethod": "GET",
        "headers": {},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"thingId": "t-1"},
        "requestContext": {"path": "/v1/things/t-1", "stage": "v1", "requestId": "r-1", "identity": {}},
        "body": None,
        "isBase64Encoded": False,
    }
    result = failing_app(exc).resolve(event, None)
    return result["statusCode"], result["multiValueHeaders"], json.loads(result["body"])


def client_error(code: str) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    return ClientError(response, "GetItem")


@pytest.mark.parametrize(
    "exc",
    [
        client_error("ProvisionedThroughputExceededException"),
        EndpointConnectionError(endpoint_url="https://dynamodb.test"),
        ReadTimeoutError(endpoint_url="https://dynamodb.test"),
        SecretUnavailableError("could not read the Codat key secret: ReadTimeoutError"),
    ],
)
def test_our_own_dependency_unavailable_is_a_503_with_retry_after(exc: Exception) -> None:
    metrics.clear_metrics()
    status, headers, problem = get_failing(exc)
    assert status == 503
    assert problem["type"].endswith("/problems/service-unavailable")
    assert headers["Retry-After"] == ["2"]
    assert "operation" not in problem
    assert UNEXPECTED_ERROR_METRIC not in metrics.metric_set


def test_an_unexpected_exception_is_a_500_and_is_counted() -> None:
    metrics.clear_metrics()
    status, _, problem = get_failing(RuntimeError("a bug of ours"))
    assert status == 500 and problem["type"].endswith("/problems/internal-error")
    assert metrics.metric_set[UNEXPECTED_ERROR_METRIC]["Value"] == [1.0]
    metrics.clear_metrics()


def test_a_wrong_request_to_a_dependency_is_still_a_500() -> None:
    metrics.clear_metrics()
    assert get_failing(client_error("AccessDeniedException"))[0] == 500
    assert UNEXPECTED_ERROR_METRIC in metrics.metric_set
    metrics.clear_metrics()
