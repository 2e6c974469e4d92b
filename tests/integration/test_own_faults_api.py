"""Our own side failing, through the whole stack: DynamoDB faults injected between the functions and the
AWS emulator (`/_emulator/faults`), the client keeping the client rule (docs/contract.md, Client rule),
and Codat recording each payment exactly once whatever happens (docs/contract.md, Operation life cycle).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import pytest
from billpay.adapters.aws_sdk import client_config
from billpay.config import load_settings
from billpay.domain.operations import ROUTE_CREATE_BILL_PAYMENT, key_scope_v2, operation_id

from local.callers import LOCAL_CLIENT_ID
from local.harness import Stack, start_stack
from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID

pytestmark = [pytest.mark.integration, pytest.mark.long(seconds=85)]

CONNECTION = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
# Requests botocore makes for one call of the functions (their own client config's attempts).
SDK_TRIES = int(
    getattr(client_config(load_settings({"CODAT_API_KEY": "unused"})), "retries")["total_max_attempts"]  # noqa: B009
)
# In a mark-sent's request body only: its condition's phase (one payment is in flight at a time here).
MARK_SENT = "guarding"


@pytest.fixture(scope="module")
def own_stack() -> Iterator[Stack]:
    """A stack whose retry window outlasts a dead request's lease (an API function's timeout + 5 s), as
    in the cloud (80 minutes): the shared stack's 10 s window would end such an operation first."""
    with start_stack(BILLPAY_RETRY_WINDOW_SECONDS="120") as running:
        yield running


@pytest.fixture
def live(own_stack: Stack) -> Stack:
    own_stack.reset()
    return own_stack


def _pay(stack: Stack, key: str, bill: str, amount: str = "25.00") -> httpx.Response:
    return stack.client.post(
        f"{CONNECTION}/bills/{bill}/payments",
        json={"amount": float(amount), "date": "2026-12-02", "accountRef": {"id": ACCOUNT_GBP_CURRENT}},
        headers={"Idempotency-Key": key},
    )


def _op_id(key: str, bill: str) -> str:
    scope = key_scope_v2(
        LOCAL_CLIENT_ID, ROUTE_CREATE_BILL_PAYMENT, (COMPANY_GBP_ID, CONNECTION_GBP_ID, bill)
    )
    return operation_id(scope, key)


def _lose_mark_sent(stack: Stack) -> None:
    stack.arm_aws_fault(
        service="dynamodb",
        operation="UpdateItem",
        match=MARK_SENT,
        fault="commit-then-reset",
        times=SDK_TRIES,
    )


def _records(stack: Stack, bill: str) -> list[dict[str, Any]]:
    return [p for p in stack.payments() if p["billId"] == bill]


def _client_rule(stack: Stack, key: str, bill: str) -> httpx.Response:
    """What the README tells a client: an answer with `operation` is decided by its status; any other 5xx
    or a 409 → the same key and body again, after Retry-After."""

    def decided() -> httpx.Response | None:
        try:
            answer = _pay(stack, key, bill)
        except httpx.TransportError:
            return None  # a lost connection: the same again
        if answer.status_code in (201, 202):
            return answer
        problem = answer.json()
        unknown = problem.get("type", "").endswith("/problems/operation-state-unknown")
        if "operation" in problem and not unknown:
            return answer  # decided by the operation's status
        if answer.status_code >= 500 or answer.status_code == 409:
            return None
        if problem.get("type", "").endswith("/problems/idempotency-key-reused"):
            return None
        return answer  # a refusal, or an ended operation: decided

    answer = stack.wait_until(decided, timeout=90, interval=1.0, message="a decided answer")
    assert answer is not None
    return answer


def test_a_mark_sent_whose_answer_is_lost_is_sent_once_and_answered(live: Stack) -> None:
    """Once: the mark-sent write applied, its answer lost past the SDK's retries → a bare 500 that read
    as "nothing sent"; a corrected request under a new key and the sweeper's send made two payments."""
    key, bill = f"own-{uuid.uuid4()}", BILLS_GBP_OPEN[3]
    op_id = _op_id(key, bill)
    # Mark-sent is the one UpdateItem whose condition names `guarding` (the claim is a PutItem, the
    # bill's reservation an UpdateItem of another table). Every one of the SDK's attempts is applied (the
    # later ones find it done) and every answer is lost.
    _lose_mark_sent(live)
    answer = _pay(live, key, bill)
    assert answer.status_code == 201, answer.text
    assert answer.json()["operationId"] == op_id
    assert len(_records(live, bill)) == 1
    # The client's retry (had it lost the answer) is a replay: still one record.
    assert _pay(live, key, bill).status_code == 201
    assert len(_records(live, bill)) == 1
    assert live.aws_faults()[0]["firedTotal"] == SDK_TRIES


def test_when_even_the_read_back_fails_the_answer_carries_the_operation_and_one_payment_follows(
    live: Stack,
) -> None:
    key, bill = f"own-{uuid.uuid4()}", BILLS_GBP_OPEN[4]
    op_id = _op_id(key, bill)
    _lose_mark_sent(live)
    # The consistent read that learns the truth fails too (the v1 look-up before the claim reads a
    # different key, so only reads of this operation match).
    live.arm_aws_fault(
        service="dynamodb",
        operation="GetItem",
        match=op_id,
        fault="status",
        status=500,
        code="InternalServerError",
        times=SDK_TRIES,
    )
    first = _pay(live, key, bill)
    assert first.status_code == 503, first.text
    problem = first.json()
    assert problem["type"].endswith("/problems/operation-state-unknown"), problem
    assert problem["operation"]["operationId"] == op_id and "Retry-After" in first.headers
    assert _records(live, bill) == []  # nothing was sent by that request
    live.clear_aws_faults()
    # The client rule: the same key and body until an answer decides. The record is `sent` under the
    # dead request's lease; once it lapses, the sweeper sends it, and the replay answers the outcome.
    final = _client_rule(live, key, bill)
    assert final.status_code in (201, 202), final.text
    live.wait_until(lambda: live.operation(op_id)["status"] == "succeeded", timeout=90)
    assert len(_records(live, bill)) == 1
    assert _pay(live, key, bill).status_code == 201
    assert len(_records(live, bill)) == 1


def test_a_claim_the_store_cannot_confirm_answers_without_recording_anything(live: Stack) -> None:
    key, bill = f"own-{uuid.uuid4()}", BILLS_GBP_OPEN[5]
    op_id = _op_id(key, bill)
    live.arm_aws_fault(
        service="dynamodb", operation="PutItem", match=op_id, fault="reset-before", times=SDK_TRIES
    )
    first = _pay(live, key, bill)
    assert first.status_code == 503, first.text
    assert first.json()["type"].endswith("/problems/service-unavailable")
    assert live.operation_item(op_id) is None and _records(live, bill) == []
    assert _pay(live, key, bill).status_code == 201  # the same key and body again
    assert len(_records(live, bill)) == 1


def test_throttled_writes_everywhere_still_record_each_payment_once(live: Stack) -> None:
    """A third of every DynamoDB request of the functions fails or loses its answer; twelve payments,
    each sent by a client keeping the rule, end with one record each."""
    live.arm_aws_fault(
        service="dynamodb",
        fault=["status", "commit-then-reset", "reset-before"],
        probability=0.3,
        seed=13,
    )
    bills = BILLS_GBP_OPEN[6:9]
    keys = [(f"own-{uuid.uuid4()}", bills[n % len(bills)]) for n in range(12)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda kb: _client_rule(live, *kb), keys))
    live.clear_aws_faults()
    assert all(a.status_code in (201, 202, 422) for a in answers), [a.text for a in answers]

    def ended(op_id: str) -> bool:
        return bool(live.operation(op_id)["status"] != "pending")

    for key, bill in keys:
        live.wait_until(partial(ended, _op_id(key, bill)), timeout=90, interval=0.5)
    by_reference: dict[str, int] = {}
    for record in live.payments():
        by_reference[record["idempotencyKey"]] = by_reference.get(record["idempotencyKey"], 0) + 1
    assert all(count == 1 for count in by_reference.values()), by_reference
    succeeded = [kb for kb in keys if live.operation(_op_id(*kb))["status"] == "succeeded"]
    assert len(by_reference) == len(succeeded)
