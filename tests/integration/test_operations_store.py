"""The operation record store against moto in server mode, tables from template.yaml (DESIGN §3)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from billpay.adapters.operations_dynamodb import LeaseLost, OperationStore, from_item, to_item
from billpay.domain.operations import (
    DUE_BUCKET_NEEDS_REVIEW,
    DUE_BUCKET_PENDING,
    STORED_BODY_LIMIT_BYTES,
    Operation,
    UpstreamRequest,
    lease_until,
    new_claim,
    new_lease_token,
    operation_id,
    sent_state,
)
from billpay.domain.outcomes import classify_exception, classify_response, settled_state
from billpay.domain.retry_window import window_end_state
from billpay.service.write_operation import Budget, WriteRequest, execute_write, scope_of, send_and_settle

from tests.fixtures.codat_clients import keyless_client

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def store(aws_emulator: Any) -> OperationStore:
    return OperationStore(aws_emulator.table_names["OperationsTable"], client=aws_emulator.dynamodb)


def _claim(
    now: float = NOW, token: str | None = None, op_id: str | None = None, hash_: str = "h"
) -> Operation:
    return new_claim(
        operation_id=op_id or str(uuid.uuid4()),
        kind="billPayment",
        request_hash=hash_,
        upstream_key=str(uuid.uuid4()),
        upstream_request=UpstreamRequest("POST", "/companies/x/payment", b'{"amount":10}'),
        now=now,
        lease_until=lease_until(now, 20_000),
        lease_token=token or new_lease_token(),
    )


def _raw(store: OperationStore, op_id: str) -> dict[str, Any] | None:
    item = store.client.get_item(
        TableName=store.table_name, Key={"operationId": {"S": op_id}}, ConsistentRead=True
    )
    return item.get("Item")


def _listed(store: OperationStore, bucket: str) -> set[str]:
    ids: set[str] = set()
    kwargs: dict[str, Any] = {
        "TableName": store.table_name,
        "IndexName": "UnfinishedByDue",
        "KeyConditionExpression": "dueBucket = :b",
        "ExpressionAttributeValues": {":b": {"S": bucket}},
    }
    while True:
        page = store.client.query(**kwargs)
        ids |= {item["operationId"]["S"] for item in page["Items"]}
        if "LastEvaluatedKey" not in page:
            return ids
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_item_round_trip_is_exact(store: OperationStore) -> None:
    claim = _claim()
    assert from_item(to_item(claim)) == claim
    store.claim(claim, NOW)
    assert store.get(claim.operation_id) == claim


def test_claim_creates_a_guarding_record_with_ttl_outside_the_index(store: OperationStore) -> None:
    claim = _claim()
    assert store.claim(claim, NOW).claimed
    item = _raw(store, claim.operation_id)
    assert item is not None
    assert item["phase"] == {"S": "guarding"} and item["status"] == {"S": "pending"}
    assert item["leaseHolder"] == {"S": "sync"} and "expiresAt" in item
    assert "dueBucket" not in item and "dueAt" not in item
    assert claim.operation_id not in _listed(store, DUE_BUCKET_PENDING)


def test_a_second_claim_gets_the_existing_record_in_one_request(store: OperationStore) -> None:
    first = _claim()
    store.claim(first, NOW)
    second = _claim(op_id=first.operation_id, hash_="other")
    result = store.claim(second, NOW + 1)
    assert not result.claimed
    assert result.existing == first  # ALL_OLD: the whole record, from the failed put itself


def test_our_own_retried_claim_is_success(store: OperationStore) -> None:
    claim = _claim()
    assert store.claim(claim, NOW).claimed
    # The SDK resending a put whose answer was lost: the condition fails on our own item.
    assert store.claim(claim, NOW + 0.5).claimed


def test_an_expired_guarding_claim_is_reclaimed(store: OperationStore) -> None:
    dead = _claim(now=NOW)
    store.claim(dead, NOW)
    assert dead.lease_until is not None
    fresh = _claim(now=dead.lease_until + 1, op_id=dead.operation_id)
    assert store.claim(fresh, dead.lease_until + 1).claimed
    stored = store.get(dead.operation_id)
    assert stored is not None and stored.lease_token == fresh.lease_token


def test_a_sent_record_is_never_reclaimed_even_with_an_expired_lease(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    later = NOW + 3600
    result = store.claim(_claim(now=later, op_id=claim.operation_id), later)
    assert not result.claimed and result.existing == sent


def test_mark_sent_removes_the_ttl_and_lists_the_operation_due_at_lease_end(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW + 0.2))
    item = _raw(store, claim.operation_id)
    assert item is not None
    assert "expiresAt" not in item
    assert item["phase"] == {"S": "sent"} and item["attempts"] == {"N": "1"}
    assert item["dueBucket"] == {"S": DUE_BUCKET_PENDING}
    assert float(item["dueAt"]["N"]) == claim.lease_until
    assert claim.operation_id in _listed(store, DUE_BUCKET_PENDING)
    assert store.get(claim.operation_id) == sent


def test_our_own_retried_mark_sent_is_success(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    after = sent_state(claim, NOW)
    store.transition(claim, after)
    # The same update resent: its condition (phase guarding) fails on the item we already wrote.
    assert store.transition(claim, after) == after


def test_another_token_cannot_write_and_gets_the_current_record(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    impostor = claim.with_changes(lease_token=new_lease_token())
    with pytest.raises(LeaseLost) as lost:
        store.transition(impostor, sent_state(impostor, NOW))
    assert lost.value.current == claim
    assert store.get(claim.operation_id) == claim


def test_settle_succeeded_leaves_the_index(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    outcome = classify_response(201, {}, b'{"id": "bp-1", "amount": 10}', earlier_correlation_ids=(), now=NOW)
    settled = store.transition(sent, settled_state(sent, outcome, NOW + 1, retry_at=None))
    assert settled.status == "succeeded" and settled.phase == "settled"
    item = _raw(store, claim.operation_id)
    assert item is not None
    assert "dueBucket" not in item and "dueAt" not in item and "leaseUntil" not in item
    assert item["leaseToken"] == {"S": claim.lease_token}  # kept: a retried settle is still recognised
    assert claim.operation_id not in _listed(store, DUE_BUCKET_PENDING)
    assert store.transition(sent, settled) == settled  # our own settle, resent


def test_needs_review_stays_listed_in_its_own_bucket(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    outcome = classify_exception(TimeoutError("read timed out"))
    review = store.transition(sent, settled_state(sent, outcome, NOW + 2, retry_at=None))
    assert review.status == "needs_review"
    assert claim.operation_id in _listed(store, DUE_BUCKET_NEEDS_REVIEW)
    assert claim.operation_id not in _listed(store, DUE_BUCKET_PENDING)


def test_pending_with_a_next_attempt_is_due_then(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    outcome = classify_response(503, {}, b"{}", earlier_correlation_ids=(), now=NOW)
    waiting = store.transition(sent, settled_state(sent, outcome, NOW + 1, retry_at=NOW + 30))
    assert (waiting.status, waiting.phase, waiting.due_at, waiting.lease_until) == (
        "pending",
        "sent",
        NOW + 30,
        None,
    )
    item = _raw(store, claim.operation_id)
    assert item is not None and float(item["dueAt"]["N"]) == NOW + 30


def test_release_deletes_only_our_unsent_claim(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    assert not store.release(claim.with_changes(lease_token=new_lease_token()))
    assert store.get(claim.operation_id) is not None
    assert store.release(claim)
    assert store.get(claim.operation_id) is None
    assert not store.release(claim)  # resent delete: nothing left, nothing done


def test_release_of_a_guarding_claim_cannot_delete_a_sent_record(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    store.transition(claim, sent_state(claim, NOW))
    assert not store.release(claim)  # phase no longer `guarding`
    assert store.get(claim.operation_id) is not None


def test_release_never_deletes_a_sent_record_even_with_its_own_token(store: OperationStore) -> None:
    # Once marked sent, a request may have reached Codat: the record is never deleted, whoever asks
    # (DESIGN §3). Only a `guarding` claim is ever released.
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    assert sent.lease_token == claim.lease_token
    assert not store.release(sent)
    stored = store.get(claim.operation_id)
    assert stored is not None and stored.phase == "sent"


def test_take_lease_only_once_the_lease_expired(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    assert sent.lease_until is not None
    with pytest.raises(LeaseLost):
        store.take_lease(
            sent, holder="sweeper", token="t2", lease_until=NOW + 99, now=NOW + 1, updated_at="x"
        )
    after = sent.lease_until + 1
    taken = store.take_lease(
        sent, holder="sweeper", token="t2", lease_until=after + 60, now=after, updated_at="x"
    )
    assert (taken.lease_token, taken.lease_holder, taken.due_at) == ("t2", "sweeper", after + 60)
    with pytest.raises(LeaseLost):  # a second taker with the old view loses
        store.take_lease(
            sent, holder="sweeper", token="t3", lease_until=after + 60, now=after, updated_at="x"
        )


def test_a_take_over_waits_for_the_lease_and_the_old_holders_late_settle_changes_nothing(
    store: OperationStore,
) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    assert sent.lease_until is not None
    ended = window_end_state(sent, now=NOW + 1, token="t9", holder="sweeper")
    with pytest.raises(LeaseLost):  # the holder may still be running
        store.transition(sent, ended, lease_expired_before=NOW + 1)
    later = sent.lease_until + 1
    review = store.transition(
        sent, window_end_state(sent, now=later, token="t9", holder="sweeper"), lease_expired_before=later
    )
    assert review.status == "needs_review" and review.lease_token == "t9"
    with pytest.raises(LeaseLost) as lost:  # the original holder's late settle changes nothing
        store.transition(sent, sent.with_changes(status="succeeded", phase="settled"))
    assert lost.value.current == review


def test_large_results_are_stored_capped_with_their_hash(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    body = b'{"id": "x", "pad": "' + b"z" * (3 * STORED_BODY_LIMIT_BYTES) + b'"}'
    outcome = classify_response(200, {}, body, earlier_correlation_ids=(), now=NOW)
    store.transition(sent, settled_state(sent, outcome, NOW, retry_at=None))
    stored = store.get(claim.operation_id)
    assert stored is not None and stored.result is not None
    assert stored.result.truncated and stored.result.size == len(body)
    assert len(stored.result.text.encode()) == STORED_BODY_LIMIT_BYTES


# -- the send path: nothing escapes once the request may have left -------------------------------------------


class _Answer:
    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


class _Sender:
    def __init__(self, answer: _Answer) -> None:
        self.answer = answer
        self.sent = 0

    def post_keyed(self, path: str, body: bytes, idempotency_key: str, timeout: float) -> _Answer:
        self.sent += 1
        return self.answer


def _broken_planner(op: Operation, outcome: Any, now: float) -> float | None:
    raise RuntimeError("the planner broke")


def test_a_planner_that_raises_after_the_send_still_settles_pending_and_due(store: OperationStore) -> None:
    claim = _claim()
    store.claim(claim, NOW)
    sent = store.transition(claim, sent_state(claim, NOW))
    sender = _Sender(_Answer(429, b'{"statusCode":429,"correlationId":"c-1"}', {"Retry-After": "7"}))
    settled = send_and_settle(
        store, sender, sent, timeout=1.0, retry_planner=_broken_planner, clock=lambda: NOW + 1
    )
    assert sender.sent == 1
    stored = store.get(claim.operation_id)
    # The outcome is recorded (nothing applied, its correlation id), never ended for want of a schedule:
    # due again no sooner than Retry-After, and the lease-taker re-checks the window then.
    assert stored == settled
    assert (stored.status, stored.phase, stored.clear_attempts) == ("pending", "sent", 1)
    assert stored.correlation_ids == ("c-1",)
    assert stored.next_attempt_at == NOW + 1 + 7 and stored.due_bucket == DUE_BUCKET_PENDING


@contextlib.contextmanager
def _logged() -> Iterator[list[dict[str, Any]]]:
    """Every JSON line the layer's logger writes meanwhile, formatted as in Lambda (appended keys too)."""
    from billpay.observability import logger  # noqa: PLC0415

    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)  # Powertools has no public way to add a sink
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        logger._logger.removeHandler(handler)
    lines.extend(json.loads(line) for line in sink.getvalue().splitlines())


def test_one_log_key_follows_an_operation_from_request_to_end_state(store: OperationStore) -> None:
    # The retry worker logs under `operationId`; the synchronous path must too, on every line it writes.
    request = WriteRequest(
        kind="billPayment",
        route="create-bill-payment",
        caller_arn="arn:aws:sts::123456789012:assumed-role/app/session-1",
        client_id="app",
        path_params=("c", "k", str(uuid.uuid4())),
        client_key="log-key",
        canonical_body={"amount": 10},
        upstream=UpstreamRequest("POST", "/companies/x/payment", b'{"amount":10}'),
    )
    sender = _Sender(_Answer(503, b'{"statusCode":503,"correlationId":"c-5"}'))
    budget = Budget(lambda: 20_000, 10.0, 5.0)

    def planner(op: Operation, outcome: Any, now: float) -> float:
        return now + 5

    with _logged() as captured:
        first = execute_write(request, store=store, sender=sender, budget=budget, retry_planner=planner)
        execute_write(request, store=store, sender=sender, budget=budget, retry_planner=planner)
    messages = {line["message"] for line in captured}
    assert {"operation claimed", "write attempt classified", "operation replayed"} <= messages
    for line in captured:
        assert line.get("operationId") == first.operation_id, line
        assert "operation_id" not in line, line


def test_a_codat_key_that_cannot_be_fetched_before_the_send_releases_the_claim(store: OperationStore) -> None:
    # Nothing was sent: the claim is released (the key may be resent) instead of a record left
    # `pending` with an attempt that counts as may-be-applied.
    client = keyless_client()
    request = WriteRequest(
        kind="bankAccount",
        route="create-bank-account",
        caller_arn="arn:aws:iam::123456789012:user/app",
        client_id="app",
        path_params=("c", str(uuid.uuid4())),
        client_key="no-key",
        canonical_body={"name": "x"},
        upstream=UpstreamRequest("POST", "/companies/x/bankAccounts", b'{"name":"x"}'),
    )
    with pytest.raises(RuntimeError):
        execute_write(
            request,
            store=store,
            sender=client,
            budget=Budget(lambda: 20_000, 10.0, 5.0),
            retry_planner=lambda op, outcome, now: now + 5,
        )
    assert store.get(operation_id(scope_of(request), "no-key")) is None
