"""Retries when they are due, not when the sweeper next runs (docs/contract.md, Retries): through the whole
local stack with the cloud's one-minute sweep, a payment whose first attempt meets a 503 is retried from
the delayed queue message its holder sent, so it ends `succeeded` after the backoff, not after a sweep."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID
from tests.integration.conftest import Stack, start_stack

pytestmark = pytest.mark.integration

SWEEP_INTERVAL_SECONDS = 60.0  # the cloud's schedule: a retry left to the sweeper waits up to this long
BASE_DELAY_SECONDS = 1.0  # full jitter: the first retry is due within 1 s (a delayed message of 1 s)
PATIENCE_SECONDS = 30.0  # how long the test waits at most: half the sweep interval


@pytest.fixture(scope="module")
def cloud_sweep_stack() -> Iterator[Stack]:
    with start_stack(
        BILLPAY_SWEEP_INTERVAL_SECONDS=str(SWEEP_INTERVAL_SECONDS),
        BILLPAY_RETRY_BASE_DELAY_SECONDS=str(BASE_DELAY_SECONDS),
        BILLPAY_RETRY_MAX_DELAY_SECONDS="5",
        BILLPAY_RETRY_WINDOW_SECONDS="600",
    ) as running:
        yield running


def test_a_transient_failure_is_retried_when_due_not_at_the_next_sweep(cloud_sweep_stack: Stack) -> None:
    stack = cloud_sweep_stack
    stack.reset()
    bill = BILLS_GBP_OPEN[4]
    stack.arm_fault(method="POST", path="*/payment", fault="status", status=503, times=1)

    answer = stack.client.post(
        f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/bills/{bill}/payments",
        json={"amount": 1.25, "date": "2026-11-25", "accountRef": {"id": ACCOUNT_GBP_CURRENT}},
        headers={"Idempotency-Key": f"due-{uuid.uuid4()}"},
    )
    answered = time.monotonic()
    assert answer.status_code == 202, answer.text
    operation_id = answer.json()["operationId"]
    assert answer.json()["status"] == "pending"
    assert 1 <= int(answer.headers["Retry-After"]) <= BASE_DELAY_SECONDS + 1

    # The holder kept the lease for the queue and sent the delayed message itself.
    item = stack.operation_item(operation_id)
    assert item is not None
    if item["status"] == "pending":  # the retry may already have run by the time this is read
        assert item["leaseHolder"] == "queue"

    final = stack.wait_until(
        lambda: (op := stack.operation(operation_id))["status"] != "pending" and op,
        timeout=PATIENCE_SECONDS,
        interval=0.05,
        message="the payment to end",
    )
    took = time.monotonic() - answered

    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    # The backoff (≤ 1 s, rounded up to a whole second of DelaySeconds) plus the poller's long poll and one
    # attempt: seconds. A retry that waited for the sweeper would take up to the whole interval.
    assert took < PATIENCE_SECONDS < SWEEP_INTERVAL_SECONDS, took
    recorded = [p for p in stack.payments() if p["billId"] == bill]
    assert len(recorded) == 1, recorded
    print(f"time from the 202 to succeeded: {took:.2f} s (sweep interval {SWEEP_INTERVAL_SECONDS:g} s)")


def test_a_delayed_message_arrives_after_its_delay_through_the_local_queue(cloud_sweep_stack: Stack) -> None:
    """The local SQS (moto) holds a message back for its DelaySeconds: the hand-off's timing is real."""
    stack = cloud_sweep_stack
    sqs = stack.sqs
    queue_url = sqs.create_queue(QueueName=f"delay-probe-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sent = time.monotonic()
    sqs.send_message(QueueUrl=queue_url, MessageBody="probe", DelaySeconds=2)
    early = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", [])
    assert early == []
    messages: list[object] = []
    while not messages and time.monotonic() - sent < 15:
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
    arrived = time.monotonic() - sent
    assert len(messages) == 1
    assert 1.9 <= arrived < 10, arrived
