"""The local gateway's REST (v1) proxy events, responses and routing; the template loader it reads."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from local.emulator import LocalResources
from local.gateway.environment import function_environment
from local.gateway.events import (
    DEFAULT_CALLER_ARN,
    build_rest_event,
    compile_route,
    identity_from_arn,
    match_route,
    parse_query,
    sort_routes,
    translate_response,
)
from local.gateway.server import merge_openapi
from local.poller import failed_message_ids, sqs_event
from local.template import Resolver, UnresolvableError, functions, load_template, queues, tables

LIST = "/companies/{companyId}/connections/{connectionId}/payables/bankAccounts"


def _event(**overrides: Any) -> dict[str, Any]:
    route = compile_route(LIST, "GET", "ListBankAccountsFunction")
    found = match_route([route], "GET", "/companies/c%2F1/connections/k1/payables/bankAccounts")
    assert found is not None
    arguments: dict[str, Any] = {
        "route": route,
        "method": "GET",
        "path": "/companies/c%2F1/connections/k1/payables/bankAccounts",
        "request_path": "/v1/companies/c%2F1/connections/k1/payables/bankAccounts",
        "raw_path_parameters": found[1],
        "raw_query": "status=All&tag=a&tag=b%20c&plus=a+b&empty=",
        "headers": [("Host", "127.0.0.1:3000"), ("Accept", "a"), ("Accept", "b"), ("User-Agent", "ua/1")],
        "body": b"",
        "stage": "v1",
        "caller_arn": DEFAULT_CALLER_ARN,
        "source_ip": "127.0.0.1",
        "request_id": "5d0e7ac8-7b55-4e3a-9d3a-4c1b6f3e2a10",
        "now": 1_795_600_000.5,
    }
    arguments.update(overrides)
    return build_rest_event(**arguments)


def test_event_has_the_rest_v1_shape_powertools_reads() -> None:
    event = _event()
    assert event["resource"] == LIST
    assert event["path"] == "/companies/c%2F1/connections/k1/payables/bankAccounts"  # REST keeps encoding
    assert event["pathParameters"] == {"companyId": "c/1", "connectionId": "k1"}  # decoded
    assert event["httpMethod"] == "GET"
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "v1"
    assert context["path"] == "/v1/companies/c%2F1/connections/k1/payables/bankAccounts"
    assert context["resourcePath"] == LIST
    assert context["requestId"] == "5d0e7ac8-7b55-4e3a-9d3a-4c1b6f3e2a10"
    assert context["requestTimeEpoch"] == 1_795_600_000_500
    assert context["requestTime"] == "25/Nov/2026:09:46:40 +0000"
    parsed = APIGatewayProxyEvent(event)
    assert parsed.request_context.identity.user_arn == DEFAULT_CALLER_ARN
    assert parsed.request_context.stage == "v1"
    assert parsed.resolved_query_string_parameters["tag"] == ["a", "b c"]


def test_repeated_headers_and_query_keep_the_last_single_value_and_all_multi_values() -> None:
    event = _event()
    assert event["headers"]["Accept"] == "b"
    assert event["multiValueHeaders"]["Accept"] == ["a", "b"]
    assert event["queryStringParameters"] == {"status": "All", "tag": "b c", "plus": "a+b", "empty": ""}
    assert event["multiValueQueryStringParameters"]["tag"] == ["a", "b c"]


def test_no_query_and_no_params_are_null_as_api_gateway_sends_them() -> None:
    route = compile_route("/health", "GET", "F")
    event = _event(route=route, raw_path_parameters={}, raw_query="", path="/health", request_path="/health")
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None


def test_body_text_or_base64() -> None:
    assert _event(body='{"a": "é"}'.encode())["body"] == '{"a": "é"}'
    binary = _event(body=b"\xff\x00")
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00"


@pytest.mark.parametrize(
    ("arn", "account", "caller_prefix", "caller_suffix"),
    [
        (DEFAULT_CALLER_ARN, "000000000000", "AROA", ":local-session"),
        ("arn:aws:iam::111122223333:user/alice", "111122223333", "AIDA", ""),
        ("arn:aws:iam::111122223333:root", "111122223333", "111122223333", ""),
    ],
)
def test_identity_is_what_the_iam_authorizer_gives(arn, account, caller_prefix, caller_suffix) -> None:
    identity = identity_from_arn(arn, "10.0.0.1", "curl/8")
    assert identity["userArn"] == arn
    assert identity["accountId"] == account
    assert identity["caller"].startswith(caller_prefix)
    assert identity["caller"].endswith(caller_suffix)
    assert identity["user"] == identity["caller"]
    assert identity["sourceIp"] == "10.0.0.1"
    assert identity["userAgent"] == "curl/8"
    assert identity["cognitoIdentityId"] is None


def test_role_id_is_stable_per_role_and_the_session_name_varies() -> None:
    one = identity_from_arn("arn:aws:sts::1:assumed-role/app/s1", "ip", None)["caller"]
    two = identity_from_arn("arn:aws:sts::1:assumed-role/app/s2", "ip", None)["caller"]
    other = identity_from_arn("arn:aws:sts::1:assumed-role/other/s1", "ip", None)["caller"]
    assert one.split(":")[0] == two.split(":")[0] != other.split(":")[0]


def test_routes_prefer_literals_then_params_then_greedy() -> None:
    routes = sort_routes(
        [
            compile_route("/{proxy+}", "ANY", "Greedy"),
            compile_route("/operations/{operationId}", "GET", "Get"),
            compile_route("/operations/summary", "GET", "Summary"),
        ]
    )
    assert match_route(routes, "GET", "/operations/summary")[0].function == "Summary"  # type: ignore[index]
    found = match_route(routes, "GET", "/operations/op-1")
    assert found is not None and found[0].function == "Get" and found[1] == {"operationId": "op-1"}
    assert match_route(routes, "POST", "/operations/op-1")[0].function == "Greedy"  # type: ignore[index]
    assert match_route([routes[1]], "POST", "/operations/op-1") is None


def test_query_plus_is_not_a_space() -> None:
    assert parse_query("a=1+2&b=%2B&c") == [("a", "1+2"), ("b", "+"), ("c", "")]


def test_response_translation_merges_multi_value_headers_and_decodes_base64() -> None:
    answer = translate_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/problem+json", "X-One": "1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-One": ["1", "2"]},
            "body": base64.b64encode(b"\x00bin").decode(),
            "isBase64Encoded": True,
        },
        "rid",
    )
    assert answer.status == 201
    assert answer.body == b"\x00bin"
    assert ("Set-Cookie", "a=1") in answer.headers and ("Set-Cookie", "b=2") in answer.headers
    assert [v for k, v in answer.headers if k == "X-One"] == ["1", "2"]
    assert [v for k, v in answer.headers if k.lower() == "content-type"] == ["application/problem+json"]


def test_a_malformed_proxy_response_is_a_502_like_api_gateway() -> None:
    answer = translate_response({"body": "no status"}, "rid")
    assert answer.status == 502
    assert answer.body == b'{"message":"Internal server error"}'


def test_openapi_documents_are_merged() -> None:
    info = {"title": "T", "version": "1"}
    one = {
        "openapi": "3.1.0",
        "info": info,
        "paths": {"/a": {"get": {}}},
        "components": {"schemas": {"A": {}}},
    }
    two = {
        "openapi": "3.1.0",
        "info": info,
        "paths": {"/a": {"post": {}}, "/b": {}},
        "components": {"schemas": {"B": {}}},
    }
    merged = merge_openapi([one, two], "http://127.0.0.1:3000")
    assert merged["paths"]["/a"] == {"get": {}, "post": {}}
    assert set(merged["paths"]) == {"/a", "/b"}
    assert set(merged["components"]["schemas"]) == {"A", "B"}
    assert merged["servers"][0]["url"] == "http://127.0.0.1:3000"
    assert merged["servers"][1]["url"].startswith("https://{apiId}.execute-api.")  # a deployed stage
    assert merged["components"]["securitySchemes"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert merged["security"] == [{"sigv4": []}]


# --- the template loader


def test_short_form_tags_become_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            """
            Conditions:
              IsOn: !Equals [!Ref Mode, "on"]
            Resources:
              Q:
                Type: AWS::SQS::Queue
                Properties:
                  RedrivePolicy: {deadLetterTargetArn: !GetAtt D.Arn, maxReceiveCount: 3}
                  Tags:
                    - Value: !Sub "${AWS::StackName}-${Mode}"
                    - Value: !If [IsOn, !Join ["-", [a, !Select [0, [b, c]]]], !Ref AWS::NoValue]
                    - Value: !GetAtt [D, QueueName]
            """
        )
    )
    template = load_template(path)
    queue = template["Resources"]["Q"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["D", "Arn"]}
    assert queue["Tags"][1]["Value"]["Fn::If"][1] == {
        "Fn::Join": ["-", ["a", {"Fn::Select": [0, ["b", "c"]]}]]
    }
    assert queue["Tags"][2]["Value"] == {"Fn::GetAtt": ["D", "QueueName"]}
    resolver = Resolver(
        refs={"Mode": "on"}, attributes={("D", "QueueName"): "dq"}, conditions=template["Conditions"]
    )
    assert resolver.resolve(queue["Tags"][0]["Value"]) == "billpay-local-on"
    assert resolver.resolve(queue["Tags"][1]["Value"]) == "a-b"
    assert resolver.resolve(queue["Tags"][2]["Value"]) == "dq"
    with pytest.raises(UnresolvableError):
        resolver.resolve({"Ref": "Unknown"})


def test_functions_merge_globals_and_list_their_events() -> None:
    template = load_template()
    specs = {spec.logical_id: spec for spec in functions(template)}
    listing = specs["ListBankAccountsFunction"]
    assert listing.handler == "handler.lambda_handler"
    assert listing.timeout == template["Globals"]["Function"]["Timeout"]  # from Globals
    assert listing.code_dir == Path("functions/list_bank_accounts").resolve()
    assert [(r.path, r.method) for r in listing.api_routes] == [(LIST, "GET")]
    assert listing.environment["OPERATIONS_TABLE_NAME"] == {"Ref": "OperationsTable"}
    assert listing.layers == [{"Ref": "BillPayLayer"}]
    worker = specs["RetryWorkerFunction"]
    (source,) = worker.sqs_sources
    assert source.queue_logical_id == "RetryQueue"
    assert source.report_batch_item_failures is True
    assert source.batch_size >= 1
    assert specs["SweeperFunction"].schedules[0].expression.startswith("rate(")
    assert "OperationsTable" in tables(template)
    assert {"RetryQueue", "RetryDeadLetterQueue"} <= set(queues(template))


def test_function_environment_is_resolved_for_local_use() -> None:
    template = load_template()
    spec = next(spec for spec in functions(template) if spec.logical_id == "ListBankAccountsFunction")
    resources = LocalResources(
        refs={
            "OperationsTable": "ops",
            "RetryQueue": "http://emu/q",
            "CodatApiKeySecretArn": "arn:secret",
            "EventBus": "bus",
        },
        arns={"OperationsTable": "arn:t", "RetryQueue": "arn:q", "EventBus": "arn:bus"},
    )
    env = function_environment(
        template,
        spec,
        resources,
        endpoint_url="http://emu",
        codat_base_url="http://sandbox",
        supervisor_env={"BILLPAY_RETRY_WINDOW_SECONDS": "12", "BILLPAY_API_PORT": "3000", "OTHER": "x"},
    )
    assert env["OPERATIONS_TABLE_NAME"] == "ops"
    assert env["RETRY_QUEUE_URL"] == "http://emu/q"
    assert env["EVENT_BUS_NAME"] == "bus"
    assert env["CODAT_BASE_URL"] == "http://sandbox"
    assert env["CODAT_API_KEY"] == "local-sandbox-key"
    assert "CODAT_API_KEY_SECRET_ARN" not in env
    assert env["AWS_ENDPOINT_URL"] == "http://emu"
    assert env["BILLPAY_RETRY_WINDOW_SECONDS"] == "12"  # the supervisor's setting wins
    assert "BILLPAY_API_PORT" not in env and "OTHER" not in env
    assert env["AWS_LAMBDA_FUNCTION_NAME"].endswith("ListBankAccountsFunction")
    with_secret = function_environment(
        template,
        spec,
        resources,
        endpoint_url="http://emu",
        codat_base_url=None,
        supervisor_env={"BILLPAY_LOCAL_USE_SECRET": "1"},
    )
    assert with_secret["CODAT_API_KEY_SECRET_ARN"] == "arn:secret"
    assert "CODAT_API_KEY" not in with_secret


# --- the SQS event source mapping's pure parts


def test_sqs_event_has_lambdas_record_shape() -> None:
    message = {
        "MessageId": "m1",
        "ReceiptHandle": "r1",
        "Body": "{}",
        "MD5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1"},
        "MessageAttributes": {"k": {"StringValue": "v", "DataType": "String"}},
    }
    (record,) = sqs_event([message], "arn:aws:sqs:us-east-1:1:q")["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:1:q"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["k"] == {
        "stringValue": "v",
        "binaryValue": None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }


@pytest.mark.parametrize(
    ("result", "kept"),
    [
        ({"batchItemFailures": []}, set()),
        (None, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),  # malformed: the whole batch fails
        ({"batchItemFailures": [{"itemIdentifier": "zz"}]}, {"a", "b"}),
    ],
)
def test_partial_batch_failures(result, kept) -> None:
    assert failed_message_ids(result, ["a", "b"]) == kept
