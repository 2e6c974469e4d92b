"""The shared resolver: every error is an RFC 9457 problem, and the OpenAPI document says so."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler.openapi.params import Query
from billpay.config import reset_settings
from billpay.http import (
    PROBLEM_CONTENT_TYPE,
    WRITE_PROBLEMS,
    build_resolver,
    dumps,
    json_ready,
    operation_location,
    request_base_path,
    route_responses,
)
from billpay.problems import Problem
from pydantic import BaseModel

TYPE_BASE = "https://problems.billpay.test"


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CODAT_API_KEY", "k")
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    monkeypatch.setenv("BILLPAY_PROBLEM_TYPE_BASE", TYPE_BASE + "/")
    reset_settings()
    yield
    reset_settings()


class Thing(BaseModel):
    name: str
    amount: Decimal


def make_app() -> Any:
    app = build_resolver()

    @app.get("/things/<thingId>", responses=route_responses(200, "A thing"))
    def get_thing(thingId: str, verbose: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        if thingId == "missing":
            raise Problem(404, "not-found", "Not found", "No such thing.")
        if thingId == "busy":
            raise Problem(
                409,
                "request-in-progress",
                "In progress",
                "Try again shortly.",
                operation={"operationId": "op-1"},
                headers={"Retry-After": "2"},
            )
        if thingId == "boom":
            raise RuntimeError("database password is hunter2")
        answer: dict[str, Any] = json_ready(
            {"id": thingId, "amount": Decimal("10.50"), "count": [Decimal("3")]}
        )
        return answer

    @app.post("/things", responses=route_responses(201, "Created", WRITE_PROBLEMS))
    def create_thing(thing: Thing) -> dict[str, Any]:
        return {"name": thing.name, "amount": str(thing.amount)}

    return app


def event(
    method: str, path: str, body: str | None = None, query: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "requestContext": {"path": "/v1" + path, "stage": "v1", "requestId": "r-1", "identity": {}},
        "body": body,
        "isBase64Encoded": False,
    }


def call(app: Any, ev: dict[str, Any]) -> tuple[int, dict[str, list[str]], dict[str, Any]]:
    result = app.resolve(ev, None)
    return result["statusCode"], dict(result["multiValueHeaders"]), json.loads(result["body"])


def test_problem_to_dict_is_rfc9457_with_only_the_members_given() -> None:
    problem = Problem(422, "amount-exceeds-due", "Too much", "12.00 is more than the 10.00 due.")
    assert problem.to_dict("https://x.test/") == {
        "type": "https://x.test/problems/amount-exceeds-due",
        "title": "Too much",
        "status": 422,
        "detail": "12.00 is more than the 10.00 due.",
    }
    full = Problem(
        502,
        "upstream-rejected",
        "t",
        "d",
        errors=[{"field": "x"}],
        upstream={"statusCode": 403},
        operation={"a": 1},
    )
    assert set(full.to_dict("https://x.test")) == {
        "type",
        "title",
        "status",
        "detail",
        "errors",
        "upstream",
        "operation",
    }


def test_a_raised_problem_is_answered_as_problem_json_with_its_headers() -> None:
    status, headers, body = call(make_app(), event("GET", "/things/busy"))
    assert status == 409
    assert headers["Content-Type"] == [PROBLEM_CONTENT_TYPE]
    assert headers["Retry-After"] == ["2"]
    assert body == {
        "type": f"{TYPE_BASE}/problems/request-in-progress",
        "title": "In progress",
        "status": 409,
        "detail": "Try again shortly.",
        "operation": {"operationId": "op-1"},
    }


def test_request_validation_is_a_400_with_field_errors_and_never_echoes_input() -> None:
    status, headers, body = call(
        make_app(), event("POST", "/things", body=json.dumps({"name": "x", "amount": "12345678-secret"}))
    )
    assert status == 400
    assert headers["Content-Type"] == [PROBLEM_CONTENT_TYPE]
    assert body["type"] == f"{TYPE_BASE}/problems/validation-error"
    assert body["status"] == 400
    assert body["errors"] == [
        {
            "location": "body",
            "field": "amount",
            "message": body["errors"][0]["message"],
            "type": "decimal_parsing",
        }
    ]
    assert "12345678-secret" not in json.dumps(body)


@pytest.mark.parametrize(
    ("ev", "field"),
    [
        (event("POST", "/things", body="{not json"), ""),
        (event("POST", "/things", body=json.dumps({"amount": 1})), "name"),
        (event("GET", "/things/a", query={"verbose": "-1"}), "verbose"),
    ],
    ids=["malformed-json", "missing-field", "bad-query"],
)
def test_every_kind_of_bad_input_is_a_400_validation_error(ev: dict[str, Any], field: str) -> None:
    status, _, body = call(make_app(), ev)
    assert status == 400
    assert body["type"].endswith("/problems/validation-error")
    assert body["errors"], body
    if field:
        assert field in [e["field"] for e in body["errors"]]


def test_unknown_route_is_a_404_problem() -> None:
    status, headers, body = call(make_app(), event("GET", "/nowhere"))
    assert status == 404
    assert headers["Content-Type"] == [PROBLEM_CONTENT_TYPE]
    assert body["type"] == f"{TYPE_BASE}/problems/not-found"


def test_an_unexpected_exception_is_a_500_without_internals() -> None:
    status, headers, body = call(make_app(), event("GET", "/things/boom"))
    assert status == 500
    assert headers["Content-Type"] == [PROBLEM_CONTENT_TYPE]
    assert body["type"] == f"{TYPE_BASE}/problems/internal-error"
    text = json.dumps(body)
    assert "hunter2" not in text
    assert "RuntimeError" not in text
    assert "Traceback" not in text


def test_request_bodies_parse_numbers_exactly_never_through_a_float() -> None:
    body = '{"name": "n", "amount": 10.0000000000000001}'
    status, _, answer = call(make_app(), event("POST", "/things", body))
    assert status == 200
    assert answer["amount"] == "10.0000000000000001"


# Under the 64 KB body limit, so the parser meets them (a larger body is a 413 before any parsing).
@pytest.mark.parametrize("body", ["[" * 60_000, '{"name": ' * 7_000])
def test_a_body_nested_too_deep_is_a_400_not_a_500(body: str) -> None:
    status, _, answer = call(make_app(), event("POST", "/things", body))
    assert status == 400
    assert answer["type"] == f"{TYPE_BASE}/problems/validation-error"


def test_success_serializes_decimals_as_json_numbers() -> None:
    status, _, body = call(make_app(), event("GET", "/things/a"))
    assert status == 200
    assert body == {"id": "a", "amount": 10.5, "count": [3]}
    assert dumps({"a": Decimal("0.1"), "b": Decimal("100")}) == '{"a":0.1,"b":100}'


def test_openapi_declares_problems_and_drops_powertools_422() -> None:
    schema = json.loads(make_app().get_openapi_json_schema())
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text
    assert "#/components/schemas/ValidationError" not in text
    get = schema["paths"]["/things/{thingId}"]["get"]["responses"]
    assert "422" not in get
    assert set(get) == {"200", "400", "403", "404", "500", "502", "503", "504"}
    for code in ("400", "403", "404", "500", "502", "503", "504"):
        assert list(get[code]["content"]) == [PROBLEM_CONTENT_TYPE]
        assert get[code]["content"][PROBLEM_CONTENT_TYPE]["schema"] == {
            "$ref": "#/components/schemas/ProblemDetails"
        }
    post = schema["paths"]["/things"]["post"]["responses"]
    # A route that can answer 422 keeps it, as a problem.
    assert list(post["422"]["content"]) == [PROBLEM_CONTENT_TYPE]
    assert {"201", "409", "422"} <= set(post)
    problem = schema["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])


@pytest.mark.parametrize(
    ("resource", "called", "base"),
    [
        ("/operations/{operationId}", "/v1/operations/abc", "/v1"),
        (
            "/companies/{c}/connections/{k}/payables/bills/{b}/payments",
            "/v1/companies/C/connections/K/payables/bills/B/payments",
            "/v1",
        ),
        (
            "/companies/{c}/connections/{k}/payables/bankAccounts",
            "/billing/v2/companies/C/connections/K/payables/bankAccounts",
            "/billing/v2",
        ),
        ("/operations/{operationId}", "/operations/abc", ""),
    ],
    ids=["stage", "stage-deep", "custom-domain-base-path", "no-base"],
)
def test_request_base_path_is_whatever_precedes_the_resource(resource: str, called: str, base: str) -> None:
    ev = {"resource": resource, "path": called, "requestContext": {"path": called}}
    assert request_base_path(ev) == base
    assert operation_location(ev, "op/1") == f"{base}/operations/op%2F1"
