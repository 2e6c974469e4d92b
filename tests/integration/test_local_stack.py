"""The local stack end to end: `python -m local.stack` as a developer runs it.

Two stacks: the session's (the real template.yaml, the real list handler, the sandbox) and one on a
test-only template whose tiny handlers echo what the gateway and the event sources hand them, so the
event, the environment, partial batch failures, redrive and schedules are checked through real processes.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.sandbox.seed import (
    ACCOUNT_GBP_ARCHIVED,
    ACCOUNT_GBP_CURRENT,
    COMPANY_GBP_ID,
    CONNECTION_GBP_ID,
)
from tests.integration.conftest import Stack, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.long(seconds=25)]

LIST_PATH = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/bankAccounts"
UNKNOWN_COMPANY = "00000000-0000-4000-8000-000000000000"


# --- the real template


def test_openapi_lists_the_templates_routes(stack: Stack) -> None:
    answer = stack.client.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert "/companies/{companyId}/connections/{connectionId}/payables/bankAccounts" in document["paths"]
    assert document["servers"][0]["url"] == stack.api_url  # then a deployed stage's URL


def _all_pages(stack: Stack, **params: str) -> list[dict[str, Any]]:
    accounts: list[dict[str, Any]] = []
    while True:
        answer = stack.client.get(LIST_PATH, params=params)
        assert answer.status_code == 200, answer.text
        accounts += answer.json()["bankAccounts"]
        token = answer.json()["pagination"].get("continuationToken")
        if not token:
            return accounts
        params = {**params, "continuationToken": token}


def test_list_returns_the_active_accounts_of_a_seeded_company(stack: Stack) -> None:
    stack.reset()
    accounts = _all_pages(stack)
    assert accounts and {account["status"] for account in accounts} == {"Active"}
    assert ACCOUNT_GBP_CURRENT in {account["id"] for account in accounts}


def test_status_all_adds_the_archived_accounts(stack: Stack) -> None:
    active = {a["id"] for a in _all_pages(stack)}
    every = {a["id"]: a["status"] for a in _all_pages(stack, status="All")}
    assert active < set(every)
    assert every[ACCOUNT_GBP_ARCHIVED] == "Archived"
    assert {status for account_id, status in every.items() if account_id not in active} == {"Archived"}


def test_unknown_company_is_a_404_problem(stack: Stack) -> None:
    answer = stack.client.get(LIST_PATH.replace(COMPANY_GBP_ID, UNKNOWN_COMPANY))
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith("/problems/not-found")


def test_the_stage_prefix_is_served_too(stack: Stack) -> None:
    answer = stack.client.get(f"/{stack.stage}{LIST_PATH}")
    assert answer.status_code == 200


def test_an_undeclared_route_is_api_gateways_403(stack: Stack) -> None:
    answer = stack.client.get("/no/such/route")
    assert answer.status_code == 403
    assert answer.json() == {"message": "Missing Authentication Token"}
    assert stack.client.delete(LIST_PATH).status_code == 403  # declared path, undeclared method


def test_the_emulator_holds_the_templates_resources(stack: Stack) -> None:
    table = stack.dynamodb.describe_table(TableName=stack.operations_table_name)["Table"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["UnfinishedByDue"]
    redrive = json.loads(
        stack.sqs.get_queue_attributes(QueueUrl=stack.retry_queue_url, AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )
    assert redrive["deadLetterTargetArn"].endswith("RetryDeadLetterQueue")


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.add(int(entry.name))
    return found


def _gone(pids: set[int]) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        try:  # a zombie is gone for our purposes only once reaped; report it as still there
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return False
        except OSError:
            continue
    return True


def test_ctrl_c_or_sigterm_stops_everything_and_it_starts_again() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):  # the second run also shows that running it again works
        with start_stack() as running:
            assert running.client.get(LIST_PATH).status_code == 200
            workers = _children(running.process.pid)
            assert workers, "the list function should run in a worker process of its own"
            running.process.send_signal(signum)
            assert running.process.wait(timeout=15) == 0
            assert _gone(workers), f"worker processes left behind: {workers}"
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{running.api_url}/openapi.json", timeout=2)
            assert "local.stack: stopped" in running.logs()


# --- a test-only template: what the gateway and the event sources hand a function

ECHO_HANDLER = """
import json, os, sys

def lambda_handler(event, context):
    if event.get("path") == "/boom":
        raise RuntimeError("boom")
    if event.get("path") == "/slow":
        import time
        time.sleep(5)
    try:
        import functions  # the repository is not on a Lambda's sys.path
        repo_importable = True
    except ImportError:
        repo_importable = False
    body = {
        "event": event,
        "env": {k: v for k, v in os.environ.items() if not k.startswith(("PATH", "HOME", "LANG"))},
        "sysPath0": sys.path[0],
        "repoImportable": repo_importable,
        "remainingMs": context.get_remaining_time_in_millis(),
        "functionName": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "requestId": context.aws_request_id,
        "pid": os.getpid(),
    }
    return {"statusCode": 200, "headers": {"X-Echo": "1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]}, "body": json.dumps(body)}
"""

CONSUMER_HANDLER = """
import json, os, boto3

def lambda_handler(event, context):
    table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
    failures = []
    for record in event["Records"]:
        if record["body"].startswith("poison"):
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        receives = record["attributes"]["ApproximateReceiveCount"]
        table.put_item(Item={"id": record["body"], "receives": receives})
    return {"batchItemFailures": failures}
"""

TICKER_HANDLER = """
import os, boto3

def lambda_handler(event, context):
    table = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])
    one = {":one": 1}
    table.update_item(Key={"id": "ticks"}, UpdateExpression="ADD n :one", ExpressionAttributeValues=one)
    table.put_item(Item={"id": "last-event", "detailType": event["detail-type"], "source": event["source"]})
    return {}
"""

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting: {Type: String, Default: hello}
Globals:
  Function:
    Runtime: python3.13
    Handler: handler.lambda_handler
    Timeout: 2
    Environment:
      Variables:
        TABLE_NAME: !Ref Store
        QUEUE_URL: !Ref Inbox
        QUEUE_ARN: !GetAtt Inbox.Arn
        GREETING: !Sub "${Greeting}-${AWS::Region}"
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties: {StageName: test}
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      MemorySize: 256
      Events:
        Any: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/items/{itemId}", Method: ANY}}
        Boom: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /boom, Method: GET}}
        Slow: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /slow, Method: GET}}
  ConsumerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: consumer/
      Events:
        Inbox:
          Type: SQS
          Properties:
            Queue: !GetAtt Inbox.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig: {MaximumConcurrency: 2}
  TickerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: ticker/
      Events:
        Tick: {Type: Schedule, Properties: {Schedule: rate(1 minute)}}
  Store:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
  InboxDeadLetters:
    Type: AWS::SQS::Queue
  Inbox:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      RedrivePolicy: {deadLetterTargetArn: !GetAtt InboxDeadLetters.Arn, maxReceiveCount: 2}
"""


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("echo-template")
    for folder, source in (
        ("echo", ECHO_HANDLER),
        ("consumer", CONSUMER_HANDLER),
        ("ticker", TICKER_HANDLER),
    ):
        (root / folder).mkdir()
        (root / folder / "handler.py").write_text(textwrap.dedent(source))
    (root / "template.yaml").write_text(TEMPLATE)
    with start_stack(
        BILLPAY_TEMPLATE=str(root / "template.yaml"),
        BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS="1",
        BILLPAY_SWEEP_INTERVAL_SECONDS="0.3",
        BILLPAY_LOCAL_CONCURRENCY="2",
        BILLPAY_RETRY_WINDOW_SECONDS="33",
    ) as running:
        yield running


def _echo(stack: Stack, path: str, **kwargs: object) -> dict[str, Any]:
    answer = stack.client.request(kwargs.pop("method", "GET"), path, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-echo"] == "1"
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
    return dict(answer.json())


def test_the_handler_gets_a_rest_v1_event(echo_stack: Stack) -> None:
    echoed = _echo(
        echo_stack,
        "/test/items/it%20em?tag=a&tag=b",
        method="POST",
        content=b'{"x": 1}',
        headers={"X-Multi": "1", "Content-Type": "application/json"},
    )
    event = echoed["event"]
    assert event["resource"] == "/items/{itemId}"
    assert event["path"] == "/items/it%20em"
    assert event["pathParameters"] == {"itemId": "it em"}
    assert event["httpMethod"] == "POST"
    assert event["body"] == '{"x": 1}'
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
    assert event["queryStringParameters"] == {"tag": "b"}
    assert event["headers"]["X-Multi"] == "1"
    context = event["requestContext"]
    assert context["stage"] == "test"
    assert context["path"] == "/test/items/it%20em"
    assert context["identity"]["userArn"] == (
        "arn:aws:sts::000000000000:assumed-role/billpay-local-client/local-session"
    )
    assert context["requestId"] == echoed["requestId"]


def test_the_caller_header_sets_the_identity_and_is_stripped(echo_stack: Stack) -> None:
    arn = "arn:aws:sts::111122223333:assumed-role/partner-app/session-9"
    event = _echo(echo_stack, "/items/1", headers={"X-Local-Caller-Arn": arn})["event"]
    assert event["requestContext"]["identity"]["userArn"] == arn
    assert event["requestContext"]["identity"]["accountId"] == "111122223333"
    assert not any(name.lower() == "x-local-caller-arn" for name in event["headers"])
    assert echo_stack.client.get("/items/1", headers={"X-Local-Caller-Arn": "nobody"}).status_code == 403


def test_each_function_runs_with_its_own_environment_and_sys_path(echo_stack: Stack) -> None:
    echoed = _echo(echo_stack, "/items/1")
    env = echoed["env"]
    assert env["TABLE_NAME"] == echo_stack.resources["Store"]
    assert env["QUEUE_URL"] == echo_stack.resources["Inbox"]
    assert env["QUEUE_ARN"].endswith(":billpay-local-Inbox")
    assert env["GREETING"] == "hello-us-east-1"
    assert env["AWS_ENDPOINT_URL"] == echo_stack.emulator_url
    assert env["BILLPAY_RETRY_WINDOW_SECONDS"] == "33"  # the supervisor's BILLPAY_* variables pass through
    assert "BILLPAY_API_PORT" not in env
    assert echoed["sysPath0"].endswith("/echo")
    assert echoed["repoImportable"] is False
    assert echoed["functionName"] == "billpay-local-EchoFunction"
    assert echoed["memory"] == 256
    assert echoed["arn"].endswith(":function:billpay-local-EchoFunction")
    assert 0 < echoed["remainingMs"] <= 2000
    assert echoed["pid"] not in (echo_stack.process.pid, os.getpid())


def test_workers_are_reused_and_bounded_by_the_pool(echo_stack: Stack) -> None:
    pids = {_echo(echo_stack, "/items/1")["pid"] for _ in range(10)}
    assert 1 <= len(pids) <= 2  # BILLPAY_LOCAL_CONCURRENCY=2, warm workers kept


def test_a_raising_handler_is_a_502_and_a_timed_out_one_too(echo_stack: Stack) -> None:
    boom = echo_stack.client.get("/boom")
    assert boom.status_code == 502
    assert boom.json() == {"message": "Internal server error"}
    started = time.monotonic()
    slow = echo_stack.client.get("/slow")  # sleeps 5 s; the template's Timeout is 2 s
    assert slow.status_code == 502
    assert time.monotonic() - started < 4.5
    assert _echo(echo_stack, "/items/after")["event"]["path"] == "/items/after"  # a fresh worker serves on


def test_the_poller_deletes_successes_and_redrives_reported_failures(echo_stack: Stack) -> None:
    inbox = echo_stack.resources["Inbox"]
    dead_letters = echo_stack.resources["InboxDeadLetters"]
    store = echo_stack.aws("dynamodb")
    for body in ("ok-1", "ok-2", "poison-1"):
        echo_stack.sqs.send_message(QueueUrl=inbox, MessageBody=body)

    def stored(key: str) -> bool:
        return "Item" in store.get_item(TableName=echo_stack.resources["Store"], Key={"id": {"S": key}})

    echo_stack.wait_until(lambda: stored("ok-1") and stored("ok-2"), message="both good messages processed")

    def dead_lettered() -> list[dict[str, Any]]:
        answer = echo_stack.sqs.receive_message(QueueUrl=dead_letters, WaitTimeSeconds=1)
        return list(answer.get("Messages", []))

    moved = echo_stack.wait_until(dead_lettered, timeout=20, message="poison message in the DLQ")
    assert [m["Body"] for m in moved] == ["poison-1"]
    assert echo_stack.queue_depth(inbox) == 0  # the good ones were deleted, not redelivered


def test_scheduled_functions_run_every_interval(echo_stack: Stack) -> None:
    store = echo_stack.aws("dynamodb")
    table = echo_stack.resources["Store"]

    def ticks() -> int:
        item = store.get_item(TableName=table, Key={"id": {"S": "ticks"}}).get("Item")
        return int(item["n"]["N"]) if item else 0

    first = echo_stack.wait_until(ticks, message="a scheduled run")
    echo_stack.wait_until(lambda: ticks() >= first + 3, timeout=10, message="three more runs at 0.3 s")
    last = store.get_item(TableName=table, Key={"id": {"S": "last-event"}})["Item"]
    assert last["detailType"]["S"] == "Scheduled Event"
    assert last["source"]["S"] == "aws.events"
