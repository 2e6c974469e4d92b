"""The sweeper's and the retry worker's conditional writes on the operations table (moto server, the
template's own table and queue): leases taken only when expired and only with the token read, the
eventually consistent index never trusted, the window's end decided by the lease-taker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from billpay.adapters.events_eventbridge import EventBridgePublisher
from billpay.adapters.operations_dynamodb import DynamoOperationStore, to_item
from billpay.adapters.operations_sweep_dynamodb import SweepIndex
from billpay.adapters.retry_queue_sqs import SqsRetryQueue
from billpay.domain import lifecycle
from billpay.domain.lifecycle import Transition, due_index
from billpay.domain.operations import (
    DUE_BUCKET_NEEDS_REVIEW,
    DUE_BUCKET_PENDING,
    DUE_BUCKET_UNPUBLISHED,
    Operation,
    Resolution,
    Status,
    UpstreamRequest,
    new_lease_token,
)
from billpay.domain.ports import Conflict, RetryMessage
from billpay.domain.retry_policy import RetryPolicy
from billpay.service.retry import PolicyPlanner, RetryWorker
from billpay.service.sweep import PUBLISH_GRACE_SECONDS, Sweeper

from ops.resolve import ResolveRefused, resolve
from tests.fixtures.codat_clients import keyless_client

pytestmark = pytest.mark.integration

NOW = 1_900_000_000.0
WINDOW = 600.0
POLICY = RetryPolicy(window_seconds=WINDOW, base_delay_seconds=1, max_delay_seconds=10)
EVENT_BUS = "billpay-sweeper-test"
PLENTY = lambda: 20_000  # noqa: E731 — a Lambda's remaining time, in ms


class _NoSend:
    """A sender that must never be reached: these tests stop before any upstream call."""

    def post_keyed(self, path: str, body: bytes, idempotency_key: str, timeout: float) -> Any:
        raise AssertionError("nothing may be sent here")


@pytest.fixture
def env(aws_emulator: Any, aws_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    aws_emulator.reset()
    store = DynamoOperationStore(aws_emulator.table_names["OperationsTable"], client=aws_emulator.dynamodb)
    url = aws_emulator.queue_urls["RetryQueue"]
    # A terminal state leaves the `unpublished` bucket only once its event is on a bus: the sweeper gets
    # one on the emulator (the template names none yet).
    events = aws_emulator.client("events")
    events.create_event_bus(Name=EVENT_BUS)
    yield {
        "store": store,
        "index": SweepIndex(store),
        "queue": SqsRetryQueue(url, client=aws_emulator.sqs),
        "publisher": EventBridgePublisher(EVENT_BUS, client=events),
        "url": url,
        "emu": aws_emulator,
    }


def _pending(
    store: DynamoOperationStore,
    *,
    n: int = 1,
    attempts: int = 1,
    clear: int = 0,
    first: float = NOW - 60,
    next_at: float | None = NOW - 1,
    lease_until: float | None = None,
    holder: str | None = None,
    status: Status = "pending",
) -> Operation:
    """A sent operation as the write flow leaves it, written straight to the table."""
    op = lifecycle.claim(
        operation_id=f"00000000-0000-4000-8000-{n:012d}",
        kind="billPayment",
        request_hash="h" * 64,
        upstream_key=f"10000000-0000-4000-8000-{n:012d}",
        upstream_request=UpstreamRequest("POST", "/companies/x/payment", b'{"amount":1}'),
        now=first,
        lease_until=first + 10,
        lease_token=new_lease_token(),
    ).ours
    bucket, due = due_index(status, "sent", lease_until=lease_until, next_attempt_at=next_at, now=NOW)
    op = op.with_changes(
        status=status,
        phase="sent" if status == "pending" else "settled",
        first_attempt_at=first,
        attempts=attempts,
        clear_attempts=clear,
        expires_at=None,
        lease_holder=holder,
        lease_until=lease_until,
        next_attempt_at=next_at,
        due_bucket=bucket,
        due_at=due,
    )
    store.client.put_item(TableName=store.table_name, Item=to_item(op))
    return op


def _sweeper(env: dict[str, Any], now: float = NOW) -> Sweeper:
    return Sweeper(
        store=env["store"],
        index=env["index"],
        queue=env["queue"],
        policy=POLICY,
        publisher=env["publisher"],
        clock=lambda: now,
    )


def _take(seen: Operation, *, token: str, lease_until: float, now: float = NOW) -> Transition:
    """The sweeper's own lease take-over of `seen`, as it computes it."""
    return lifecycle.take_due(
        seen,
        policy=POLICY,
        holder="sweeper",
        token=token,
        lease_until=lease_until,
        now=now,
        count_attempt=False,
        require_lapsed=True,
    )


def _messages(env: dict[str, Any]) -> list[RetryMessage]:
    out: list[RetryMessage] = []
    while True:
        got = env["emu"].sqs.receive_message(QueueUrl=env["url"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
        batch = got.get("Messages", [])
        if not batch:
            return out
        for m in batch:
            out.append(RetryMessage.from_body(m["Body"]))
            env["emu"].sqs.delete_message(QueueUrl=env["url"], ReceiptHandle=m["ReceiptHandle"])


def test_a_due_operation_is_leased_on_the_base_item_and_enqueued(env: dict[str, Any]) -> None:
    op = _pending(env["store"])
    report = _sweeper(env).sweep(remaining_millis=PLENTY)
    assert (report.due, report.leased, report.queued) == (1, 1, 1)
    [message] = _messages(env)
    stored = env["store"].get(op.operation_id)
    assert message.operation_id == op.operation_id
    assert stored.lease_token == message.lease_token != op.lease_token
    assert stored.lease_holder == "sweeper"
    assert stored.lease_until == pytest.approx(NOW + 20 + 5)
    # Still listed, now due when this lease expires: a lost message is recovered then.
    assert (stored.due_bucket, stored.due_at) == (DUE_BUCKET_PENDING, stored.lease_until)
    assert stored.attempts == 1  # the sweeper never counts an attempt: only the worker sends


def test_a_held_lease_is_not_taken_even_when_the_index_says_due(env: dict[str, Any]) -> None:
    op = _pending(env["store"], lease_until=NOW + 30, holder="worker")
    # The index is eventually consistent: make it claim the operation is due although its lease is live.
    env["store"].client.update_item(
        TableName=env["store"].table_name,
        Key={"operationId": {"S": op.operation_id}},
        UpdateExpression="SET dueAt = :d",
        ExpressionAttributeValues={":d": {"N": str(NOW - 100)}},
    )
    report = _sweeper(env).sweep(remaining_millis=PLENTY)
    assert (report.due, report.leased, report.skipped) == (1, 0, 1)
    assert _messages(env) == []
    assert env["store"].get(op.operation_id).lease_token == op.lease_token


def test_not_before_next_attempt_even_if_an_old_lease_expired(env: dict[str, Any]) -> None:
    # Retry-After pushed nextAttemptAt out; an expired lease must not make it due earlier.
    op = _pending(env["store"], next_at=NOW + 50, lease_until=NOW - 5, holder="worker")
    env["store"].client.update_item(
        TableName=env["store"].table_name,
        Key={"operationId": {"S": op.operation_id}},
        UpdateExpression="SET dueAt = :d",
        ExpressionAttributeValues={":d": {"N": str(NOW - 5)}},
    )
    report = _sweeper(env).sweep(remaining_millis=PLENTY)
    assert (report.leased, report.skipped) == (0, 1)


def test_an_expired_lease_is_taken_over(env: dict[str, Any]) -> None:
    op = _pending(env["store"], lease_until=NOW - 1, holder="worker", next_at=NOW - 30)
    report = _sweeper(env).sweep(remaining_millis=PLENTY)
    assert report.queued == 1
    assert env["store"].get(op.operation_id).lease_holder == "sweeper"


def test_a_stale_token_cannot_take_the_lease(env: dict[str, Any]) -> None:
    seen = _pending(env["store"])
    # Someone else took it after we read it.
    env["store"].apply(_take(seen, token="other", lease_until=NOW - 0.5))
    with pytest.raises(Conflict) as lost:
        env["store"].apply(_take(seen, token="mine", lease_until=NOW + 60))
    assert lost.value.current is not None and lost.value.current.lease_token == "other"


def test_an_sdk_retried_lease_take_counts_as_ours(env: dict[str, Any]) -> None:
    seen = _pending(env["store"])
    taking = _take(seen, token="mine", lease_until=NOW + 60)
    env["store"].apply(taking)
    again = env["store"].apply(taking)  # the same write, as the SDK would resend it
    assert again is not None and again.lease_token == "mine"


def test_concurrent_sweepers_enqueue_each_operation_once(env: dict[str, Any]) -> None:
    ops = [_pending(env["store"], n=n) for n in range(1, 13)]
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        _sweeper(env).sweep(remaining_millis=PLENTY)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    messages = _messages(env)
    assert sorted(m.operation_id for m in messages) == sorted(o.operation_id for o in ops)
    for m in messages:
        assert env["store"].get(m.operation_id).lease_token == m.lease_token


@pytest.mark.parametrize(
    ("attempts", "clear", "status"),
    [(3, 3, "failed"), (3, 2, "needs_review"), (1, 0, "needs_review")],
)
def test_the_window_end_is_decided_by_the_lease_taker(
    env: dict[str, Any], attempts: int, clear: int, status: str
) -> None:
    op = _pending(env["store"], attempts=attempts, clear=clear, first=NOW - WINDOW, next_at=NOW - WINDOW + 5)
    report = _sweeper(env).sweep(remaining_millis=PLENTY)
    assert report.queued == 0 and _messages(env) == []
    stored = env["store"].get(op.operation_id)
    assert (stored.status, stored.phase, stored.attempts) == (status, "settled", attempts)
    if status == "failed":
        assert stored.error["type"] == "upstream-rate-limited" and stored.error["status"] == 503
        assert stored.due_bucket is None  # out of the index
        assert report.ended_failed == 1
    else:
        assert stored.error["type"] == "upstream-outcome-unknown" and stored.error["status"] == 502
        assert stored.due_bucket == DUE_BUCKET_NEEDS_REVIEW  # stays listed until a person resolves it
        assert report.needs_review_open == 1
        # Still listed at the next sweep, never sent again.
        again = _sweeper(env, NOW + 120).sweep(remaining_millis=PLENTY)
        assert again.needs_review_open == 1 and again.queued == 0


def test_gauges(env: dict[str, Any]) -> None:
    _pending(env["store"], n=1, first=NOW - 300, next_at=NOW + 30)
    _pending(env["store"], n=2, first=NOW - 100, next_at=NOW + 30)
    _pending(env["store"], n=3, status="needs_review", next_at=None)
    report = _sweeper(env).sweep(remaining_millis=PLENTY)
    assert report.needs_review_open == 1
    assert report.oldest_unfinished_seconds == pytest.approx(300)
    assert report.due == 0


def test_a_failed_enqueue_is_due_again_when_the_lease_expires(env: dict[str, Any]) -> None:
    op = _pending(env["store"])
    broken = SqsRetryQueue(env["url"] + "-missing", client=env["emu"].sqs)
    report = Sweeper(
        store=env["store"], index=env["index"], queue=broken, policy=POLICY, clock=lambda: NOW
    ).sweep(remaining_millis=PLENTY)
    assert (report.leased, report.queued, report.enqueue_failed) == (1, 0, 1)
    # Not before the lease expires...
    assert _sweeper(env, NOW + 10).sweep(remaining_millis=PLENTY).queued == 0
    # ...then recovered.
    assert _sweeper(env, NOW + 26).sweep(remaining_millis=PLENTY).queued == 1
    [message] = _messages(env)
    assert message.operation_id == op.operation_id


def test_the_sweeper_stops_taking_leases_near_its_deadline(env: dict[str, Any]) -> None:
    _pending(env["store"])
    report = _sweeper(env).sweep(remaining_millis=lambda: 1000)
    assert report.stopped_early and report.leased == 0


# -- the worker's side: the token in the message must still hold the lease ---------------------------------


def _worker(env: dict[str, Any], now: float) -> RetryWorker:
    return RetryWorker(
        store=env["store"],
        sender=_NoSend(),
        planner=PolicyPlanner(POLICY),
        upstream_timeout=5,
        clock=lambda: now,
    )


def test_a_message_whose_token_lost_the_lease_is_dropped_without_sending(env: dict[str, Any]) -> None:
    op = _pending(env["store"])
    _sweeper(env).sweep(remaining_millis=PLENTY)
    [first] = _messages(env)
    _sweeper(env, NOW + 30).sweep(remaining_millis=PLENTY)  # the first lease expired and was re-taken
    [second] = _messages(env)
    assert first.lease_token != second.lease_token
    result = _worker(env, NOW + 31).process_message(first.to_body(), remaining_millis=PLENTY)
    assert result.disposition == "stale"
    assert env["store"].get(op.operation_id).attempts == 1


def test_a_late_message_after_the_window_ends_the_operation_without_sending(env: dict[str, Any]) -> None:
    op = _pending(env["store"], attempts=2, clear=2, first=NOW - WINDOW + 10)
    _sweeper(env).sweep(remaining_millis=PLENTY)
    [message] = _messages(env)
    result = _worker(env, NOW + 11).process_message(message.to_body(), remaining_millis=PLENTY)
    assert (result.disposition, result.status) == ("ended", "failed")
    assert env["store"].get(op.operation_id).attempts == 2


def test_a_malformed_message_raises_so_sqs_redelivers_it(env: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _worker(env, NOW).process_message(json.dumps({"operationId": "x"}), remaining_millis=PLENTY)


def test_resolve_needs_review_only_and_records_the_decision(env: dict[str, Any]) -> None:
    review = _pending(env["store"], n=1, status="needs_review", next_at=None)
    pending = _pending(env["store"], n=2)
    with pytest.raises(ResolveRefused):
        resolve(env["store"], pending.operation_id, "failed", "checked", by="ana")
    with pytest.raises(ResolveRefused):
        resolve(env["store"], review.operation_id, "succeeded", "  ", by="ana")
    done = resolve(
        env["store"], review.operation_id, "succeeded", "found in Xero", by="ana", clock=lambda: NOW
    )
    assert done.status == "succeeded"
    stored = env["store"].get(review.operation_id)
    # It used to leave the index at once; the resolution's event is now left to the sweeper (listed
    # `unpublished`), which publishes it after its grace, and then it leaves the index.
    assert stored.due_bucket == DUE_BUCKET_UNPUBLISHED
    assert _sweeper(env, NOW + PUBLISH_GRACE_SECONDS + 1).sweep(remaining_millis=PLENTY).republished == 1
    assert env["store"].get(review.operation_id).due_bucket is None
    # A typed decision now (it used to be a free-form map in `extra`); its stored form is unchanged.
    assert stored.resolution == Resolution(
        status="succeeded",
        note="found in Xero",
        by="ana",
        at=stored.updated_at,
        previous_status="needs_review",
    )
    resolution = env["store"].client.get_item(
        TableName=env["store"].table_name, Key={"operationId": {"S": review.operation_id}}
    )["Item"]["resolution"]["M"]
    assert resolution["note"]["S"] == "found in Xero" and resolution["by"]["S"] == "ana"
    assert resolution["previousStatus"]["S"] == "needs_review"
    assert env["index"].open_reviews() == 0
    with pytest.raises(ResolveRefused):  # already resolved
        resolve(env["store"], review.operation_id, "failed", "again", by="ana")


def test_a_worker_that_cannot_build_its_client_takes_nothing_and_lets_sqs_redeliver(
    env: dict[str, Any],
) -> None:
    # Nothing can have been sent, so no attempt may be counted: an attempt counted but never settled
    # would count as may-be-applied and could turn a clean `failed` into a `needs_review`.
    op = _pending(env["store"])
    _sweeper(env).sweep(remaining_millis=PLENTY)
    [message] = _messages(env)

    def no_client() -> Any:
        raise RuntimeError("settings or secret unavailable")

    worker = RetryWorker(
        store=env["store"],
        sender=no_client,
        planner=PolicyPlanner(POLICY),
        upstream_timeout=5,
        clock=lambda: NOW + 1,
    )
    with pytest.raises(RuntimeError):
        worker.process_message(message.to_body(), remaining_millis=PLENTY)
    stored = env["store"].get(op.operation_id)
    assert (stored.attempts, stored.lease_token, stored.lease_holder) == (1, message.lease_token, "sweeper")


def test_a_worker_whose_codat_key_cannot_be_fetched_takes_nothing_and_lets_sqs_redeliver(
    env: dict[str, Any],
) -> None:
    # A cold container fetches the key on first use; if Secrets Manager fails, nothing was sent, so the
    # attempt must not be counted (it would count as may-be-applied).
    client = keyless_client()
    op = _pending(env["store"])
    _sweeper(env).sweep(remaining_millis=PLENTY)
    [message] = _messages(env)
    worker = RetryWorker(
        store=env["store"],
        sender=client,
        planner=PolicyPlanner(POLICY),
        upstream_timeout=5,
        clock=lambda: NOW + 1,
    )
    with pytest.raises(RuntimeError):
        worker.process_message(message.to_body(), remaining_millis=PLENTY)
    stored = env["store"].get(op.operation_id)
    assert (stored.attempts, stored.lease_token) == (1, message.lease_token)
