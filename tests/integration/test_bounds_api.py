"""Bounds through the whole local stack: an oversized body is a 413 and a 5,000-digit amount a 400, with
nothing recorded anywhere; a 429 whose Retry-After overflows is still "rate-limited, nothing applied"
(202 pending, `clearAttempts` counted), never "may be applied"."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

CONNECTION = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
# The last open GBP bill: the retry tests of other modules take theirs from the front of the list.
BILL = BILLS_GBP_OPEN[-1]
PAYMENT_PATH = f"{CONNECTION}/bills/{BILL}/payments"
PROBLEM_JSON = "application/problem+json"


def operation_count(stack: Stack) -> int:
    return int(stack.dynamodb.scan(TableName=stack.operations_table_name, Select="COUNT")["Count"])


def nothing_recorded_by(stack: Stack, send: Any) -> Any:
    """`send()`'s answer, checking it left no operation in the table and no payment in the sandbox."""
    operations, payments = operation_count(stack), len(stack.payments())
    answer = send()
    assert operation_count(stack) == operations
    assert len(stack.payments()) == payments
    return answer


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"amount": 10, "date": "2026-11-25", "accountRef": {"id": "a"}, "reference": "'
         + b"x" * (70 * 1024) + b'"}', "application/json"),
        (b"\xff" * (70 * 1024), "application/octet-stream"),  # not text: the gateway base64-encodes it
    ],
    ids=["json", "base64"],
)  # fmt: skip
def test_a_70_kb_body_is_a_413_and_records_nothing(stack: Stack, content: bytes, content_type: str) -> None:
    stack.reset()
    answer = nothing_recorded_by(
        stack,
        lambda: stack.client.post(
            PAYMENT_PATH,
            content=content,
            headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": content_type},
        ),
    )
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    problem = answer.json()
    assert problem["type"].endswith("/problems/payload-too-large")
    assert problem["status"] == 413


def test_a_5000_digit_amount_is_a_400_and_records_nothing(stack: Stack) -> None:
    stack.reset()
    body = '{"amount": ' + "9" * 5000 + ', "date": "2026-11-25", "accountRef": {"id": "a"}}'
    answer = nothing_recorded_by(
        stack,
        lambda: stack.client.post(
            PAYMENT_PATH,
            content=body.encode(),
            headers={"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"},
        ),
    )
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["type"].endswith("/problems/validation-error")
    assert [e["field"] for e in problem["errors"]] == ["amount"]


def test_a_429_with_an_overflowing_retry_after_is_rate_limited_not_maybe_applied(stack: Stack) -> None:
    stack.reset()
    # The sandbox writes 1e300 as a 301-digit delta-seconds header: far past any datetime or DynamoDB
    # number once added to now, unless the parser bounds it.
    stack.arm_fault(path=f"*/bills/{BILL}/payment", fault="status", status=429, retry_after=1e300, times=1)
    body = {"amount": 1.5, "date": "2026-11-25", "accountRef": {"id": ACCOUNT_GBP_CURRENT}}
    answer = stack.client.post(PAYMENT_PATH, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert answer.status_code == 202, answer.text
    envelope = answer.json()
    assert envelope["status"] == "pending"
    operation_id = envelope["operationId"]

    item = stack.operation_item(operation_id)
    assert item is not None
    # The attempt was settled as nothing-applied: counted in clearAttempts, so it can never force a
    # needs_review at the window's end.
    assert int(item["attempts"]) == 1 and int(item["clearAttempts"]) == 1
    assert item["status"] == "pending" and item["phase"] == "sent"

    # Retried (the fault answered once) or ended at the window's close: either way never needs_review.
    def ended() -> dict[str, Any]:
        op = stack.operation(operation_id)
        return op if op["status"] != "pending" else {}

    final = stack.wait_until(ended, timeout=40, message=f"{operation_id} ended")
    assert final["status"] in ("succeeded", "failed"), final
    recorded = [p for p in stack.payments() if p["billId"] == BILL]
    if final["status"] == "succeeded":
        assert len(recorded) == 1
    else:
        assert final["error"]["type"].endswith("/problems/upstream-rate-limited")
        assert recorded == []
