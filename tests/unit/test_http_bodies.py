"""A body the API cannot read — another content type, a multipart body, bytes that are not UTF-8 — is a 400
`validation-error`, never a 500 (each one found by tests/contract/test_fuzz_api.py). A ValueError from the
route itself, on a JSON request, is still a 500 `internal-error`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from billpay.config import reset_settings
from billpay.http import PROBLEM_CONTENT_TYPE, WRITE_PROBLEMS, build_resolver, route_responses
from pydantic import BaseModel


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
