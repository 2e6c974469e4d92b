"""The operation record store against moto in server mode, tables from template.yaml.

Contract: Operation life cycle."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from billpay.adapters.operations_dynamodb import DynamoOperationStore, from_item, to_item
from billpay.domain import lifecycle
from billpay.domain.lifecycle import Transition
from billpay.domain.operations import (
    DUE_BUCKET_NEEDS_REVIEW,
    DUE_BUCKET_PENDING,
    DUE_BUCKET_UNPUBLISHED,
    STORED_BODY_LIMIT_BYTES,
    Operation,
    UpstreamRequest,
    lease_until,
    new_lease_token,
    operation_id,
)
from billpay.domain.outcomes import classify_exception, classify_response
from billpay.domain.ports import Conflict
from billpay.domain.retry_policy import RetryPolicy
from billpay.service.write_operation import (
    Answered,
    Budget,
    WriteRequest,
    execute_write,
    scope_of,
    send_and_settle,
)

from tests.fixtures.codat_clients import keyless_client

pytestmark = pytest.mark.integration

NOW = 1_800_000_000.0
# A window far longer than any test here: a lease-taker takes the lease instead of ending the operation.
OPEN_WINDOW = RetryPolicy(window_seconds=3600, base_delay_seconds=1, max_delay_seconds=10)
# A window already closed for an operation first sent at NOW: a lease-taker ends it instead.
CLOSED_WINDOW = RetryPolicy(window_seconds=0.5, base_delay_seconds=0.1, max_delay_seconds=0.1)


@pytest.fixture(scope="module")
def store(aws_emulator: Any) -> DynamoOperationStore:
    return DynamoOperationStore(aws_emulator.table_names["OperationsTable"], client=aws_emulator.dynamodb)


def _claiming(
    now: float = NOW, token: str | None = None, op_id: str | None = None, hash_: str = "h"
) -> Transition:
    return lifecycle.claim(
        operation_id=op_id or str(uuid.uuid4()),
        kind="billPayment",
        request_hash=hash_,
        upstream_key=str(uuid.uuid4()),
        upstream_request=UpstreamRequest("POST", "/companies/x/payment", b'{"amount":10}'),
        now=now,
        lease_until=lease_until(now, 20_000),
        lease_token=token or new_lease_token(),
    )


def _claimed(store: DynamoOperationStore, now: float = NOW) -> Operation:
    """A claim, stored."""
    claiming = _claiming(now)
    assert store.apply(claiming) == claiming.ours
    return claiming.ours


def _sent(store: DynamoOperationStore, claim: Operation, now: float = NOW) -> Operation:
    sent = store.apply(lifecycle.mark_sent(claim, now))
    assert sent is not None
    return sent


def _take(
    seen: Operation, *, token: str, lease_until: float, now: float, policy: RetryPolicy = OPEN_WINDOW
) -> Transition:
    """The sweeper's take-over of a lapsed lease (counts nothing)."""
    return lifecycle.take_due(
        seen,
        policy=policy,
        holder="sweeper",
        token=token,
        lease_until=lease_until,
        now=now,
        count_attempt=False,
        require_lapsed=True,
    )


def _raw(store: DynamoOperationStore, op_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = store.client.get_item(
        TableName=store.table_name, Key={"operationId": {"S": op_id}}, ConsistentRead=True
    ).get("Item")
    return item


def _listed(store: DynamoOperationStore, bucket: str) -> set[str]:
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


def test_item_round_trip_is_exact(store: DynamoOperationStore) -> None:
    claiming = _claiming()
    claim = claiming.ours
    assert from_item(to_item(claim)) == claim
    store.apply(claiming)
    assert store.get(claim.operation_id) == claim


def test_claim_creates_a_guarding_record_with_ttl_outside_the_index(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    item = _raw(store, claim.operation_id)
    assert item is not None
    assert item["phase"] == {"S": "guarding"} and item["status"] == {"S": "pending"}
    assert item["leaseHolder"] == {"S": "sync"} and "expiresAt" in item
    assert item["version"] == {"N": "1"}
    assert "dueBucket" not in item and "dueAt" not in item
    assert claim.operation_id not in _listed(store, DUE_BUCKET_PENDING)


def test_a_second_claim_gets_the_existing_record_in_one_request(store: DynamoOperationStore) -> None:
    first = _claimed(store)
    second = _claiming(now=NOW + 1, op_id=first.operation_id, hash_="other")
    sent: list[str] = []

    def count(**_: Any) -> None:
        sent.append("request")

    store.client.meta.events.register("before-send.dynamodb", count)
    try:
        with pytest.raises(Conflict) as conflict:
            store.apply(second)
    finally:
        store.client.meta.events.unregister("before-send.dynamodb", count)
    assert conflict.value.current == first  # ALL_OLD: the whole record, from the failed put itself
    assert len(sent) == 1


def test_our_own_retried_claim_is_success(store: DynamoOperationStore) -> None:
    claiming = _claiming()
    assert store.apply(claiming) == claiming.ours
    # The SDK resending a put whose answer was lost: the condition fails on our own item.
    assert store.apply(claiming) == claiming.ours


def test_an_expired_guarding_claim_is_reclaimed(store: DynamoOperationStore) -> None:
    dead = _claimed(store, NOW)
    assert dead.lease_until is not None
    fresh = _claiming(now=dead.lease_until + 1, op_id=dead.operation_id)
    assert store.apply(fresh) == fresh.ours
    stored = store.get(dead.operation_id)
    assert stored is not None and stored.lease_token == fresh.ours.lease_token


def test_a_sent_record_is_never_reclaimed_even_with_an_expired_lease(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    later = NOW + 3600
    with pytest.raises(Conflict) as conflict:
        store.apply(_claiming(now=later, op_id=claim.operation_id))
    assert conflict.value.current == sent


def test_mark_sent_removes_the_ttl_and_lists_the_operation_due_at_lease_end(
    store: DynamoOperationStore,
) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim, NOW + 0.2)
    item = _raw(store, claim.operation_id)
    assert item is not None
    assert "expiresAt" not in item
    assert item["phase"] == {"S": "sent"} and item["attempts"] == {"N": "1"}
    assert item["version"] == {"N": "2"}
    assert item["dueBucket"] == {"S": DUE_BUCKET_PENDING}
    assert float(item["dueAt"]["N"]) == claim.lease_until
    assert claim.operation_id not in _listed(store, DUE_BUCKET_NEEDS_REVIEW)
    assert claim.operation_id in _listed(store, DUE_BUCKET_PENDING)
    assert store.get(claim.operation_id) == sent


def test_a_late_mark_sent_cannot_revive_a_lapsed_claim(store: DynamoOperationStore) -> None:
    # New with the life cycle's conditions: mark-sent also requires the claim's lease to be live.
    claim = _claimed(store)
    assert claim.lease_until is not None
    with pytest.raises(Conflict) as conflict:
        store.apply(lifecycle.mark_sent(claim, claim.lease_until + 1))
    assert conflict.value.current == claim


def test_our_own_retried_mark_sent_is_success(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    marking = lifecycle.mark_sent(claim, NOW)
    store.apply(marking)
    # The same update resent: its condition (version 1, phase guarding) fails on the item we already wrote.
    assert store.apply(marking) == marking.ours


def test_another_token_cannot_write_and_gets_the_current_record(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    impostor = claim.with_changes(lease_token=new_lease_token())
    with pytest.raises(Conflict) as conflict:
        store.apply(lifecycle.mark_sent(impostor, NOW))
    assert conflict.value.current == claim
    assert store.get(claim.operation_id) == claim


def test_settle_succeeded_leaves_the_index(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    outcome = classify_response(201, {}, b'{"id": "bp-1", "amount": 10}', earlier_correlation_ids=(), now=NOW)
    settling = lifecycle.settle(sent, outcome, NOW + 1, retry_at=None)
    settled = store.apply(settling)
    assert settled is not None and (settled.status, settled.phase) == ("succeeded", "settled")
    item = _raw(store, claim.operation_id)
    assert item is not None and "leaseUntil" not in item
    assert item["leaseToken"] == {"S": claim.lease_token}  # kept: a retried settle is still recognised
    assert claim.operation_id not in _listed(store, DUE_BUCKET_PENDING)
    assert store.apply(settling) == settled  # our own settle, resent
    # An end state used to leave the index with its settle; it now waits in the `unpublished` bucket until
    # its terminal event is recorded published, and leaves then.
    assert claim.operation_id in _listed(store, DUE_BUCKET_UNPUBLISHED)
    store.apply(lifecycle.published(settled, NOW + 2))
    item = _raw(store, claim.operation_id)
    assert item is not None and "dueBucket" not in item and "dueAt" not in item
    assert claim.operation_id not in _listed(store, DUE_BUCKET_UNPUBLISHED)


def test_needs_review_stays_listed_in_its_own_bucket(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    outcome = classify_exception(TimeoutError("read timed out"))
    review = store.apply(lifecycle.settle(sent, outcome, NOW + 2, retry_at=None))
    assert review is not None and review.status == "needs_review"
    assert claim.operation_id not in _listed(store, DUE_BUCKET_PENDING)
    # Counted in its own bucket at once, whether or not its event is out yet (it is published from there).
    assert claim.operation_id in _listed(store, DUE_BUCKET_NEEDS_REVIEW)
    assert claim.operation_id not in _listed(store, DUE_BUCKET_UNPUBLISHED)
    published = store.apply(lifecycle.published(review, NOW + 3))
    assert published is not None and published.published_version == review.version
    assert claim.operation_id in _listed(store, DUE_BUCKET_NEEDS_REVIEW)


def test_pending_with_a_next_attempt_is_due_then(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    outcome = classify_response(503, {}, b"{}", earlier_correlation_ids=(), now=NOW)
    waiting = store.apply(lifecycle.settle(sent, outcome, NOW + 1, retry_at=NOW + 30))
    assert waiting is not None
    assert (waiting.status, waiting.phase, waiting.due_at, waiting.lease_until) == (
        "pending",
        "sent",
        NOW + 30,
        None,
    )
    item = _raw(store, claim.operation_id)
    assert item is not None and float(item["dueAt"]["N"]) == NOW + 30


def test_release_deletes_only_our_unsent_claim(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    # Another token's release deletes nothing. It used to answer False; a release now counts as applied once
    # the releaser's own claim is gone (`Transition.applied_in`: no item under its token is left), so the
    # store answers with the item as it stays: the claim under our token, untouched.
    other = claim.with_changes(lease_token=new_lease_token())
    assert store.apply(lifecycle.release(other)) == claim
    assert store.get(claim.operation_id) == claim
    releasing = lifecycle.release(claim)
    assert store.apply(releasing) is None
    assert store.get(claim.operation_id) is None
    # A resent delete finds nothing left and does nothing. It used to answer False ("not deleted"); a
    # release is now applied once our claim is gone (`Transition.applied_in`), so the resent one counts as
    # our own delete, applied: it answers None (nothing stored) instead of raising a Conflict.
    assert store.apply(releasing) is None
    assert store.get(claim.operation_id) is None


def test_release_of_a_guarding_claim_cannot_delete_a_sent_record(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    with pytest.raises(Conflict) as conflict:  # phase (and version) no longer the claim's
        store.apply(lifecycle.release(claim))
    assert conflict.value.current == sent
    assert store.get(claim.operation_id) == sent


def test_release_never_deletes_a_sent_record_even_with_its_own_token(store: DynamoOperationStore) -> None:
    # Once marked sent, a request may have reached Codat: the record is never deleted, whoever asks
    # (docs/contract.md, Operation life cycle). Only a `guarding` claim is ever released. The store used to
    # refuse such a delete itself; the life cycle now refuses to build one at all.
    claim = _claimed(store)
    sent = _sent(store, claim)
    assert sent.lease_token == claim.lease_token
    with pytest.raises(ValueError, match="guarding"):
        lifecycle.release(sent)
    stored = store.get(claim.operation_id)
    assert stored is not None and stored.phase == "sent"


def test_take_lease_only_once_the_lease_expired(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    assert sent.lease_until is not None
    with pytest.raises(Conflict):
        store.apply(_take(sent, token="t2", lease_until=NOW + 99, now=NOW + 1))
    after = sent.lease_until + 1
    taken = store.apply(_take(sent, token="t2", lease_until=after + 60, now=after))
    assert taken is not None
    assert (taken.lease_token, taken.lease_holder, taken.due_at) == ("t2", "sweeper", after + 60)
    assert taken.attempts == sent.attempts  # the sweeper counts nothing: only the worker sends
    with pytest.raises(Conflict):  # a second taker with the old view loses
        store.apply(_take(sent, token="t3", lease_until=after + 60, now=after))


def test_a_take_over_waits_for_the_lease_and_the_old_holders_late_settle_changes_nothing(
    store: DynamoOperationStore,
) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    assert sent.lease_until is not None
    ending = _take(sent, token="t9", lease_until=NOW + 60, now=NOW + 1, policy=CLOSED_WINDOW)
    assert ending.name == "end_window"
    with pytest.raises(Conflict):  # the holder may still be running
        store.apply(ending)
    later = sent.lease_until + 1
    review = store.apply(_take(sent, token="t9", lease_until=later + 60, now=later, policy=CLOSED_WINDOW))
    assert review is not None and review.status == "needs_review" and review.lease_token == "t9"
    # The original holder's late settle (its send succeeded after all) changes nothing.
    late = classify_response(201, {}, b'{"id": "bp-1"}', earlier_correlation_ids=(), now=later)
    with pytest.raises(Conflict) as conflict:
        store.apply(lifecycle.settle(sent, late, later, retry_at=None))
    assert conflict.value.current == review


def test_large_results_are_stored_capped_with_their_hash(store: DynamoOperationStore) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    body = b'{"id": "x", "pad": "' + b"z" * (3 * STORED_BODY_LIMIT_BYTES) + b'"}'
    outcome = classify_response(200, {}, body, earlier_correlation_ids=(), now=NOW)
    store.apply(lifecycle.settle(sent, outcome, NOW, retry_at=None))
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


def test_a_planner_that_raises_after_the_send_still_settles_pending_and_due(
    store: DynamoOperationStore,
) -> None:
    claim = _claimed(store)
    sent = _sent(store, claim)
    sender = _Sender(_Answer(429, b'{"statusCode":429,"correlationId":"c-1"}', {"Retry-After": "7"}))
    settled = send_and_settle(
        store, sender, sent, timeout=1.0, retry_planner=_broken_planner, clock=lambda: NOW + 1
    )
    assert sender.sent == 1
    stored = store.get(claim.operation_id)
    # The outcome is recorded (nothing applied, its correlation id), never ended for want of a schedule:
    # due again no sooner than Retry-After, and the lease-taker re-checks the window then.
    assert stored is not None and settled.stored and settled.known and stored == settled.op
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


def test_one_log_key_follows_an_operation_from_request_to_end_state(store: DynamoOperationStore) -> None:
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
    assert isinstance(first, Answered)
    for line in captured:
        assert line.get("operationId") == first.op.operation_id, line
        assert "operation_id" not in line, line


def test_a_codat_key_that_cannot_be_fetched_before_the_send_releases_the_claim(
    store: DynamoOperationStore,
) -> None:
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
