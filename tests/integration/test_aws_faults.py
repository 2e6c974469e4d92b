"""The local AWS fault proxy (local/aws_faults.py), through boto3 with the functions' own client config.

Each fault kind against the real emulator: what the client sees, and what the table holds afterwards
(read with the stack's direct client, which no fault can touch). The functions' DynamoDB client makes up to
5 attempts (`max_attempts` 4 are its retries), so `times` decides whether a fault outlasts the SDK's retries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from billpay.adapters.aws_sdk import client_config
from billpay.config import load_settings
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from local.emulator import FAKE_CREDENTIALS
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

# botocore's `max_attempts` counts the retries, not the first request: 4 means 5 requests in all.
# The functions' own client config (their defaults), so the faults meet the retries they will meet.
_CLIENT_CONFIG = client_config(load_settings({"CODAT_API_KEY": "unused"}))
ATTEMPTS = int(getattr(_CLIENT_CONFIG, "retries")["total_max_attempts"])  # noqa: B009 - untyped in stubs
READ_TIMEOUT = float(getattr(_CLIENT_CONFIG, "read_timeout"))  # noqa: B009


@pytest.fixture
def aws(stack: Stack) -> Iterator[Stack]:
    stack.clear_aws_faults()
    yield stack
    stack.clear_aws_faults()


def _function_client(stack: Stack, service: str = "dynamodb", config: Config = _CLIENT_CONFIG) -> Any:
    """A client as the functions build it: the proxy as endpoint, their retry and timeout config."""
    session = boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=FAKE_CREDENTIALS["AWS_REGION"],
    )
    name: Any = service
    return session.client(name, endpoint_url=stack.emulator_url, config=config)


def _put(client: Any, stack: Stack, key: str, *, only_new: bool = False) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": stack.operations_table_name,
        "Item": {"operationId": {"S": key}, "note": {"S": "fault-proxy test"}},
    }
    if only_new:
        request["ConditionExpression"] = "attribute_not_exists(operationId)"
    answer: dict[str, Any] = client.put_item(**request)
    return answer


def _key() -> str:
    return f"aws-fault-{uuid.uuid4()}"


def test_reset_before_never_applies_the_request(aws: Stack) -> None:
    key = _key()
    aws.arm_aws_fault(
        service="dynamodb", operation="PutItem", match=key, fault="reset-before", times=ATTEMPTS
    )
    with pytest.raises(ConnectionClosedError):
        _put(_function_client(aws), aws, key)
    assert aws.operation_item(key) is None
    [fault] = aws.aws_faults()
    assert fault["fired"] == {"reset-before": ATTEMPTS}
    assert not fault["armed"]


def test_a_500_is_retried_by_the_sdk_and_then_succeeds(aws: Stack) -> None:
    key = _key()
    retries = ATTEMPTS - 1  # every attempt but the last fails
    aws.arm_aws_fault(
        service="dynamodb", operation="PutItem", match=key, fault="status", status=500, times=retries
    )
    answer = _put(_function_client(aws), aws, key)
    assert answer["ResponseMetadata"]["RetryAttempts"] == retries
    assert aws.operation_item(key) is not None
    assert aws.aws_faults()[0]["fired"] == {"status:500": retries}


def test_an_error_code_is_parsed_by_botocore_as_the_service_s_own(aws: Stack) -> None:
    key = _key()
    aws.arm_aws_fault(
        service="dynamodb",
        operation="PutItem",
        match=key,
        fault="status",
        status=400,
        code="ProvisionedThroughputExceededException",
        times=ATTEMPTS,
    )
    with pytest.raises(ClientError) as raised:
        _put(_function_client(aws), aws, key)
    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == ATTEMPTS - 1  # a throttle: retried
    assert aws.operation_item(key) is None


def test_commit_then_reset_applies_the_write_and_the_retry_meets_its_own_effect(aws: Stack) -> None:
    key = _key()
    aws.arm_aws_fault(service="dynamodb", operation="PutItem", match=key, fault="commit-then-reset")
    with pytest.raises(ClientError) as raised:
        _put(_function_client(aws), aws, key, only_new=True)
    # The first attempt was applied; the SDK's retry of the same conditional write finds it there.
    assert raised.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert aws.operation_item(key) is not None


def test_commit_then_reset_past_the_retries_is_an_error_with_the_write_applied(aws: Stack) -> None:
    key = _key()
    aws.arm_aws_fault(
        service="dynamodb", operation="PutItem", match=key, fault="commit-then-reset", times=ATTEMPTS
    )
    with pytest.raises(ConnectionClosedError):
        _put(_function_client(aws), aws, key)
    assert aws.operation_item(key) is not None


def test_commit_then_timeout_holds_the_answer_until_the_client_gives_up(aws: Stack) -> None:
    key = _key()
    aws.arm_aws_fault(
        service="dynamodb", operation="PutItem", match=key, fault="commit-then-timeout", hold_seconds=60
    )
    started = time.monotonic()
    with pytest.raises(ClientError) as raised:
        _put(_function_client(aws), aws, key, only_new=True)
    elapsed = time.monotonic() - started
    assert raised.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert aws.operation_item(key) is not None
    # Held past the client's read timeout, not the 60 s cap: the hold ends when the client hangs up.
    assert READ_TIMEOUT <= elapsed < 30, elapsed
    [fault] = aws.aws_faults()
    assert fault["fired"] == {"commit-then-timeout": 1}
    assert fault["holding"] == 0


def test_commit_then_timeout_with_one_attempt_is_a_read_timeout(aws: Stack) -> None:
    key = _key()
    aws.arm_aws_fault(service="dynamodb", operation="PutItem", match=key, fault="commit-then-timeout")
    one_shot = Config(read_timeout=1, retries={"mode": "standard", "total_max_attempts": 1})
    with pytest.raises(ReadTimeoutError):
        _put(_function_client(aws, config=_CLIENT_CONFIG.merge(one_shot)), aws, key)
    assert aws.operation_item(key) is not None


def test_hold_before_keeps_a_request_in_flight_until_released(aws: Stack) -> None:
    key = _key()
    aws.arm_aws_fault(service="dynamodb", operation="PutItem", match=key, fault="hold-before")
    with ThreadPoolExecutor(max_workers=1) as other:
        put = other.submit(_put, _function_client(aws), aws, key)
        aws.wait_until(lambda: aws.aws_faults()[0]["holding"] == 1, message="the put is held")
        assert aws.operation_item(key) is None  # held before it reached moto
        aws.clear_aws_faults()
        assert put.result(timeout=30)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert aws.operation_item(key) is not None


def test_sqs_operations_are_recognised_and_faulted(aws: Stack) -> None:
    queue_url = aws.sqs.create_queue(QueueName=f"aws-fault-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    aws.arm_aws_fault(service="sqs", operation="SendMessage", fault="status", status=500, times=1)
    sqs = _function_client(aws, "sqs")
    answer = sqs.send_message(QueueUrl=queue_url, MessageBody="once")
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    attributes = aws.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"
    assert aws.aws_faults()[0]["fired"] == {"status:500": 1}


def test_get_lists_and_delete_clears(aws: Stack) -> None:
    first = aws.arm_aws_fault(service="dynamodb", operation="UpdateItem", fault="reset-before", times=3)
    second = aws.arm_aws_fault(service="sqs", fault=["status", "reset-before"], probability=0.1, seed=4)
    listed = aws.aws_faults()
    assert [fault["id"] for fault in listed] == [first["id"], second["id"]]
    assert listed[0]["times"] == 3 and listed[0]["firedTotal"] == 0 and listed[0]["armed"]
    assert listed[1]["probability"] == 0.1 and listed[1]["fault"] == ["status", "reset-before"]
    aws.clear_aws_faults()
    assert aws.aws_faults() == []
    key = _key()
    _put(_function_client(aws), aws, key)  # nothing armed: straight through
    assert aws.operation_item(key) is not None


def test_a_fault_that_is_not_understood_is_refused(aws: Stack) -> None:
    answer = aws.emulator.post("/_emulator/faults", json={"fault": "explode", "times": 0, "probability": 2})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert {error["name"] for error in answer.json()["errors"]} == {"fault", "times", "probability"}
    assert aws.aws_faults() == []


def test_the_inspection_clients_are_never_faulted(aws: Stack) -> None:
    key = _key()
    # Every service and operation, for this test's key only: the stack's sweeper runs meanwhile, and its
    # requests do go through the proxy.
    aws.arm_aws_fault(fault="reset-before", match=key, times=100)
    aws.table.put_item(Item={"operationId": key})
    assert aws.operation_item(key) is not None
    assert aws.queue_depth() >= 0
    assert aws.aws_faults()[0]["matched"] == 0


def test_probabilistic_faults_follow_their_seed(aws: Stack) -> None:
    """Same seed, same requests: the same requests are faulted (the drill relies on it being reproducible)."""
    client = _function_client(aws)
    key = _key()
    _put(client, aws, key)

    def pattern() -> list[int]:
        aws.clear_aws_faults()
        aws.arm_aws_fault(
            service="dynamodb",
            operation="GetItem",
            match=key,
            fault="status",
            status=500,
            probability=0.5,
            seed=9,
        )
        retries = []
        for _ in range(12):
            try:
                answer = client.get_item(TableName=aws.operations_table_name, Key={"operationId": {"S": key}})
                retries.append(int(answer["ResponseMetadata"]["RetryAttempts"]))
            except ClientError:  # every attempt faulted: counted as all of them
                retries.append(ATTEMPTS)
        return retries

    first = pattern()
    fired = aws.aws_faults()[0]["firedTotal"]
    assert fired == sum(first) > 0
    assert pattern() == first
