"""Every sample event in events/ parses, fits its function's trigger in template.yaml, and (where the
function needs no AWS service) drives the unchanged `lambda_handler`.

Generic on purpose: a new `events/<job>.json` is covered without touching this file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, EventBridgeEvent, SQSEvent
from billpay import authz
from billpay.adapters.codat import CodatClient, set_codat_client
from billpay.config import reset_settings
from billpay.domain.clients import parse_registry

from functions.list_bank_accounts.handler import lambda_handler
from local.callers import local_registry
from local.template import FunctionSpec, functions, load_template

ROOT = Path(__file__).resolve().parents[2]
EVENTS = sorted((ROOT / "events").glob("*.json"))
SPECS = {Path(spec.code_uri).name: spec for spec in functions(load_template(ROOT / "template.yaml"))}


def load(path: Path) -> dict[str, Any]:
    event = json.loads(path.read_text())
    assert isinstance(event, dict), f"{path.name}: an event is a JSON object"
    return event


def spec_for(path: Path) -> FunctionSpec:
    assert path.stem in SPECS, f"{path.name}: no function with CodeUri functions/{path.stem}/ in the template"
    return SPECS[path.stem]


def test_there_are_sample_events() -> None:
    assert EVENTS, "events/ holds one sample event per function"


@pytest.mark.parametrize("path", EVENTS, ids=[p.stem for p in EVENTS])
def test_event_fits_its_functions_trigger(path: Path) -> None:
    event = load(path)
    spec = spec_for(path)
    assert (spec.code_dir / "handler.py").is_file()
    if spec.api_routes:
        check_rest_proxy_event(event, spec)
    elif spec.sqs_sources:
        sqs = SQSEvent(event)
        records = list(sqs.records)
        assert records, "an SQS event has records"
        for record in records:
            assert record.event_source == "aws:sqs"
            assert record.message_id
            json.loads(record.body)  # our messages are JSON
    elif spec.schedules:
        scheduled = EventBridgeEvent(event)
        assert scheduled.source == "aws.events"
        assert scheduled.detail_type == "Scheduled Event"
    else:
        pytest.fail(f"{spec.logical_id} has no trigger this test knows")


def check_rest_proxy_event(event: dict[str, Any], spec: FunctionSpec) -> None:
    proxy = APIGatewayProxyEvent(event)
    routes = {(route.path, route.method) for route in spec.api_routes}
    assert (proxy.resource, proxy.http_method) in routes, "resource + method must be a route of the function"
    # The path is the resource with its path parameters filled in, and the request context carries the
    # stage in front of it (REST v1 proxy integration).
    params = proxy.path_parameters or {}
    assert set(re.findall(r"{(\w+)\+?}", proxy.resource)) == set(params)
    expected = proxy.resource
    for name, value in params.items():
        expected = expected.replace("{" + name + "}", value)
    assert proxy.path == expected
    context = event["requestContext"]
    assert context["path"] == f"/{context['stage']}{proxy.path}"
    assert context["requestId"]
    assert context["identity"]["userArn"]
    multi = event.get("multiValueQueryStringParameters") or {}
    single = event.get("queryStringParameters") or {}
    assert {key: values[-1] for key, values in multi.items()} == single
    assert {key: values[-1] for key, values in (event.get("multiValueHeaders") or {}).items()} == event[
        "headers"
    ]


# ---------------------------------------------------------------------------------- invoking handlers


PAGE = {"bankAccounts": [{"id": "a1", "status": "Active"}], "pagination": {}}


class Context:
    function_name = "sample"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-2:123456789012:function:sample"
    aws_request_id = "sample-request"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


@pytest.fixture
def codat(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Request]]:
    monkeypatch.setenv("CODAT_API_KEY", "local-sandbox-key")
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    reset_settings()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"bankAccounts": [{"id": "a1", "status": "Active"}], "pagination": {}}
        )

    set_codat_client(
        CodatClient(
            base_url="https://codat.test",
            api_key="local-sandbox-key",
            timeout_seconds=2,
            connect_timeout_seconds=1,
            budget_seconds=5,
            transport=httpx.MockTransport(answer),
        )
    )
    # The local stack's registry, where the sample events' role is a client (local/callers.py).
    registry = parse_registry(local_registry())
    authz.use_registry_loader(lambda: registry)
    yield seen
    authz.use_registry_loader(None)
    set_codat_client(None)
    reset_settings()


def test_list_bank_accounts_sample_drives_the_handler(codat: list[httpx.Request]) -> None:
    event = load(ROOT / "events" / "list_bank_accounts.json")
    result = lambda_handler(event, Context())  # type: ignore[arg-type]
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"]) == {
        "bankAccounts": [{"id": "a1", "status": "Active"}],
        "pagination": {},
    }
    params = event["pathParameters"]
    assert codat[0].url.path == (
        f"/companies/{params['companyId']}/connections/{params['connectionId']}/payables/mappingOptions/payments"
    )
    assert codat[0].url.params["statusQuery"] == "status=Active||status=Archived"  # the sample asks for All
