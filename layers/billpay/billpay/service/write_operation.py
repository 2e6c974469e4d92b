"""The write flow: claim → (replay) → guards → mark sent → send → classify → settle
(docs/contract.md, Operation life cycle). Every state comes from `billpay.domain.lifecycle`; this module
only sequences the transitions and decides what each failure means.

Two entry points:
- `execute_write`: the API handlers' synchronous path, one attempt inside the request's time budget;
- `send_and_settle`: one attempt of an operation whose lease the caller holds in phase `sent` — the sync
  path uses it, and so does the retry worker (after taking the lease and counting the attempt).

Money-safety rules enforced here:
- nothing is sent unless the mark-sent write is known to be stored (the record then survives any crash);
- a write to our own store whose effect is unknown is learned with one consistent read before anything
  else happens; when even that read fails, the answer is `StateUnknown` (503 operation-state-unknown, with
  the operation): never an answer that could read as "nothing happened";
- every exit before the send releases the claim; only a confirmed release answers without an operation;
- once the HTTP client has the request, no exception leaves `send_and_settle`: the outcome is classified
  (an exception counts as "may be applied" unless the request provably never left) and settled; a settle
  refused for a reason no retry cures is written again with the minimal fields;
- a record marked sent is never deleted: a transient outcome settles `pending` with `nextAttemptAt`;
- a replay answers from the one read of the claim: no guard, no lookup, no Codat call.

The answers are values (`WriteResult`); `billpay.write_route` turns them into HTTP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from billpay.domain import lifecycle
from billpay.domain.events import operation_event
from billpay.domain.lifecycle import Transition, same_write
from billpay.domain.operations import (
    Kind,
    Operation,
    UnknownCaller,
    UpstreamRequest,
    decide_replay,
    key_scope,
    key_scope_v2,
    lease_until,
    new_lease_token,
    normalise_caller,
    operation_id,
    request_hash,
    upstream_key,
)
from billpay.domain.outcomes import Outcome, classify_exception, classify_response
from billpay.domain.ports import (
    Conflict,
    EventPublisher,
    OperationStore,
    RetryMessage,
    RetryQueue,
    StoreUnavailable,
    WriteRejected,
    WriteUnknown,
)
from billpay.observability import logger
from billpay.problems import Problem

# Below this much budget left, a send could not finish in time: nothing is sent (the key is released).
MIN_SEND_SECONDS = 1.0
# Time kept back from the Lambda's remaining time for the settle write and the answer, when the caller
# does not size it (functions pass one SDK call at its worst: `adapters.aws_sdk.worst_case_call_seconds`).
# Should even that run out, the record stays `sent` and is recovered.
DEFAULT_SETTLE_RESERVE_SECONDS = 2.0


class Sender(Protocol):
    """What a send needs of the Codat client (`CodatClient.post_keyed`)."""

    def post_keyed(self, path: str, body: bytes, idempotency_key: str, timeout: float) -> Any: ...


def prepare_sender(sender: Sender) -> None:
    """Let a sender fetch what it needs (e.g. the Codat key) before an attempt is counted, if it can."""
    prepare = getattr(sender, "prepare", None)
    if callable(prepare):
        prepare()


class Holds(Protocol):
    """What a write holds outside its record (a payment's reservation on its bill): let go when the claim
    is released, settled when the operation ends."""

    def released(self, claimed: Operation) -> None: ...

    def settled(self, op: Operation) -> None: ...


class RetryPlanner(Protocol):
    """When a transient outcome is next tried (epoch seconds), or None when the retry window has closed
    (the settle then ends the operation: `failed` only if every attempt taken was clear)."""

    def __call__(self, op: Operation, outcome: Outcome, now: float) -> float | None: ...


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """A validated write, as the handler hands it over."""

    kind: Kind
    route: str
    caller_arn: str | None  # only to find a record made under the v1 scope (the IAM role)
    client_id: str  # the registry's client of the caller: the scope of the key
    path_params: Sequence[str]  # ids already normalised (company/connection lower-cased)
    client_key: str
    canonical_body: dict[str, Any]  # what makes two requests "the same" (hashed)
    upstream: UpstreamRequest  # the exact bytes Codat gets on every attempt


@dataclass(frozen=True, slots=True)
class Budget:
    """The request's time: `remaining_millis` is the Lambda's; `seconds` the sync budget for upstream work."""

    remaining_millis: Callable[[], int]
    seconds: float
    upstream_timeout: float
    settle_reserve: float = DEFAULT_SETTLE_RESERVE_SECONDS

    def send_timeout(self, started: float, now: float) -> float:
        left_in_budget = self.seconds - (now - started)
        left_in_lambda = self.remaining_millis() / 1000.0 - self.settle_reserve
        return min(self.upstream_timeout, left_in_budget, left_in_lambda)


@dataclass(frozen=True, slots=True)
class QueueHandOff:
    """Where a holder hands a retry that is due soon: the queue, and the worker's timeout (the queue's lease
    runs to the retry's time plus it)."""

    queue: RetryQueue
    worker_timeout_seconds: float
    new_token: Callable[[], str] = new_lease_token


# -- what a write answers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answered:
    """Answer with this operation's state (201 / 202 / its problem); `replayed` when read, not made, here."""

    op: Operation
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """Answer with this problem and no operation: nothing was recorded under the key (or it is in use)."""

    problem: Problem


@dataclass(frozen=True, slots=True)
class NotSent:
    """Our own store failed before anything could be sent, and no claim of ours is left: 503
    service-unavailable without an operation; the same key and body may be sent again."""

    retry_after: float
    reason: str


@dataclass(frozen=True, slots=True)
class StateUnknown:
    """Our own store could not tell what it holds: 503 operation-state-unknown WITH the operation as best
    known, and Retry-After (the lease's end). The client retries with the same key and body."""

    op: Operation
    retry_after: float


WriteResult = Answered | Refused | NotSent | StateUnknown


@dataclass(frozen=True, slots=True)
class Written:
    """A transition's fate: `applied`, and the item as known afterwards (`known` False: even the read that
    should have told failed, so nothing is known)."""

    applied: bool
    current: Operation | None
    known: bool = True


def write(store: OperationStore, transition: Transition) -> Written:
    """Apply `transition`; if its effect is unknown, learn it with one consistent read (never guess)."""
    try:
        return Written(True, store.apply(transition))
    except Conflict as conflict:
        return Written(False, conflict.current)
    except WriteUnknown:
        logger.warning("store write outcome unknown; reading it back", extra={"transition": transition.name})
        try:
            current = store.get(transition.operation_id)
        except StoreUnavailable:
            logger.exception("could not learn a write's outcome", extra={"transition": transition.name})
            return Written(False, None, known=False)
        return Written(transition.applied_in(current), current)


def scope_of(request: WriteRequest) -> str:
    return key_scope_v2(request.client_id, request.route, request.path_params)


def replay_v1(
    request: WriteRequest, store: OperationStore, *, clock: Callable[[], float] = time.time
) -> WriteResult | None:
    """A key first used under the v1 scope (the caller's IAM role) stays that operation: the request is a
    replay of it, and the record gets the caller's client stamped the first time (one conditional write).
    None when there is no such record (or only a `guarding` claim whose holder is gone: never sent).

    Costs one GetItem before every v2 claim (see docs/contract.md, "Callers and permissions")."""
    try:
        caller = normalise_caller(request.caller_arn)
    except UnknownCaller:
        return None
    v1_id = operation_id(key_scope(caller, request.route, request.path_params), request.client_key)
    existing = store.get(v1_id)
    if existing is None or (existing.phase == "guarding" and not existing.lease_live(clock())):
        return None
    if existing.client_id is None:
        existing = store.stamp_client(v1_id, request.client_id)
        if existing is None:
            return None  # a guarding claim released meanwhile: nothing was sent under it
    if existing.client_id != request.client_id:
        # Only possible if a principal moved between clients, which the registry refuses.
        return Refused(
            Problem(
                403, "forbidden", "Forbidden", "This Idempotency-Key belongs to another client's operation."
            )
        )
    return replay(existing, request_hash(request.canonical_body), clock=clock)


def execute_write(
    request: WriteRequest,
    *,
    store: OperationStore,
    sender: Sender,
    budget: Budget,
    retry_planner: RetryPlanner,
    guard: Callable[[Operation], object] | None = None,
    on_succeeded: Callable[[Operation], None] | None = None,
    hand_off: QueueHandOff | None = None,
    publisher: EventPublisher | None = None,
    holds: Holds | None = None,
    clock: Callable[[], float] = time.time,
) -> WriteResult:
    """Run one write to its answer (see `WriteResult`).

    `guard` runs after the claim, with the claimed record, and raises `Problem` to refuse (it may take
    `holds`, e.g. a reservation, which are let go if the claim is released and settled when the operation
    ends); `on_succeeded` runs once, only when this call's own send succeeded (never on a replay).

    Every line logged meanwhile carries `operationId`, the key the retry worker and the sweeper log under,
    so one key follows an operation from its request to its end state."""
    v1 = replay_v1(request, store, clock=clock)
    if v1 is not None:
        return v1
    scope = scope_of(request)
    op_id = operation_id(scope, request.client_key)
    logger.append_keys(operationId=op_id)
    try:
        return _execute_write(
            request,
            scope,
            op_id,
            store=store,
            sender=sender,
            budget=budget,
            retry_planner=retry_planner,
            guard=guard,
            on_succeeded=on_succeeded,
            hand_off=hand_off,
            publisher=publisher,
            holds=holds,
            clock=clock,
        )
    finally:
        logger.remove_keys(["operationId"])


def _retry_after(op: Operation, now: float) -> float:
    """Seconds until `op`'s lease ends (at least 1): when a retry can find it settled or reclaimable."""
    return max((op.lease_until or now) - now, 1.0)


def _execute_write(
    request: WriteRequest,
    scope: str,
    op_id: str,
    *,
    store: OperationStore,
    sender: Sender,
    budget: Budget,
    retry_planner: RetryPlanner,
    guard: Callable[[Operation], object] | None,
    on_succeeded: Callable[[Operation], None] | None,
    hand_off: QueueHandOff | None,
    publisher: EventPublisher | None,
    holds: Holds | None,
    clock: Callable[[], float],
) -> WriteResult:
    started = clock()
    claiming = lifecycle.claim(
        operation_id=op_id,
        kind=request.kind,
        request_hash=request_hash(request.canonical_body),
        upstream_key=upstream_key(scope, request.client_key),
        upstream_request=request.upstream,
        now=started,
        lease_until=lease_until(started, budget.remaining_millis()),
        lease_token=new_lease_token(),
        client_id=request.client_id,
    )
    claimed = claiming.ours
    written = write(store, claiming)
    if not written.known:
        # Our claim may be stored; if so it is never sent and lapses with its lease.
        return StateUnknown(claimed, _retry_after(claimed, clock()))
    if not written.applied:
        if written.current is None:
            return NotSent(1.0, "the operation could not be claimed")
        return replay(written.current, claimed.request_hash, clock=clock)

    logger.info("operation claimed", extra={"kind": claimed.kind})
    try:
        if guard is not None:
            guard(claimed)
        prepare_sender(sender)  # e.g. the Codat key: a failure here is still an exit before the send
        if budget.send_timeout(started, clock()) < MIN_SEND_SECONDS:
            raise Problem(
                503,
                "upstream-unavailable",
                "Upstream unavailable",
                "The request ran out of time before the write could be sent; nothing was sent.",
                headers={"Retry-After": "1"},
            )
    except Problem as refusal:
        return _release_then(store, claimed, Refused(refusal), clock, holds)
    except StoreUnavailable as exc:
        return _release_then(store, claimed, NotSent(1.0, str(exc)), clock, holds)
    except BaseException:
        if not _release(store, claimed, holds):
            logger.exception("exit before the send, and the claim could not be released")
            return StateUnknown(claimed, _retry_after(claimed, clock()))
        raise

    marking = lifecycle.mark_sent(claimed, clock())
    written = write(store, marking)
    if not written.known:
        # Maybe `sent` (a lease-taker sends it once our lease lapses), maybe still our claim.
        return StateUnknown(marking.ours, _retry_after(claimed, clock()))
    if not written.applied:
        current = written.current
        if current is not None and same_write(current, claimed):
            # Not marked: our claim is still there, unsent. Release it; answer as any exit before the send.
            return _release_then(
                store, claimed, NotSent(1.0, "the write could not be marked sent"), clock, holds
            )
        if current is None:
            return NotSent(1.0, "the claim is gone; nothing was sent")
        # Someone else holds the record now (nothing was sent by us): answer from what is there.
        return replay(current, claimed.request_hash, clock=clock)
    sent = marking.ours

    timeout = budget.send_timeout(started, clock())
    if timeout < MIN_SEND_SECONDS:
        # Learned too late to send: the counted attempt never left, so it is settled as nothing-applied and
        # due at once; a lease-taker sends it.
        written = write(store, lifecycle.settle_unsent(sent, clock()))
        if written.applied and written.current is not None:
            return Answered(written.current)
        return StateUnknown(sent, _retry_after(sent, clock()))

    settled = send_and_settle(
        store,
        sender,
        sent,
        timeout=timeout,
        retry_planner=retry_planner,
        hand_off=hand_off,
        publisher=publisher,
        clock=clock,
    )
    if not settled.known:
        return StateUnknown(settled.op, _retry_after(sent, clock()))
    if holds is not None and settled.stored:
        holds.settled(settled.op)
    if settled.op.status == "succeeded" and settled.stored and on_succeeded is not None:
        try:
            on_succeeded(settled.op)
        except Exception:
            logger.exception("after-success hook failed")
    return Answered(settled.op)


def replay(existing: Operation, hash_: str, *, clock: Callable[[], float] = time.time) -> WriteResult:
    """Answer a repeated key from the record read at the claim: no other request.

    `pending` answers 202 whoever holds the lease, even one that expired: the sweeper recovers it."""
    now = clock()
    decision = decide_replay(existing, hash_, now)
    logger.info(
        "operation replayed",
        extra={"operationId": existing.operation_id, "status": existing.status, "replay": decision.action},
    )
    if decision.action == "reused":
        return Refused(
            Problem(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "This Idempotency-Key was already used with another request body; use a new key for a new "
                "one.",
            )
        )
    if decision.action == "in_progress":
        return Refused(
            Problem(
                409,
                "request-in-progress",
                "Request in progress",
                "A request with this Idempotency-Key is still being processed; retry after the given time.",
                headers={"Retry-After": str(decision.retry_after or 1)},
            )
        )
    return Answered(existing, replayed=True)


def attempt(
    sender: Sender, op: Operation, *, timeout: float, clock: Callable[[], float] = time.time
) -> Outcome:
    """One send of the stored request under the stored key, classified. Never raises an `Exception`."""
    request = op.upstream_request
    try:
        response = sender.post_keyed(request.path, request.body, op.upstream_key, timeout)
        return classify_response(
            response.status,
            response.headers,
            response.body,
            earlier_correlation_ids=op.correlation_ids,
            now=clock(),
        )
    except Exception as exc:  # once the client has the request, every failure is an outcome
        return classify_exception(exc)


@dataclass(frozen=True, slots=True)
class Settled:
    """After an attempt: the state to answer with; `stored` when that state is the one in the store (else
    the record is still `sent` under the holder's lease, due again when it lapses); `known` False when even
    the read that should have told failed."""

    op: Operation
    stored: bool
    known: bool = True


def send_and_settle(
    store: OperationStore,
    sender: Sender,
    op: Operation,
    *,
    timeout: float,
    retry_planner: RetryPlanner,
    hand_off: QueueHandOff | None = None,
    publisher: EventPublisher | None = None,
    clock: Callable[[], float] = time.time,
) -> Settled:
    """Send `op`'s stored request under its stored key, classify the outcome once, settle it.

    The caller holds `op`'s lease in phase `sent` and has counted this attempt in `attempts`. With
    `hand_off`, a retry due soon keeps its lease, passed to a delayed queue message sent after the settle
    is stored, so it is retried when due rather than when the sweeper next runs. Never raises an
    `Exception`.
    """
    outcome = attempt(sender, op, timeout=timeout, clock=clock)
    log = {
        "operationId": op.operation_id,
        "outcome": outcome.cls,
        "upstreamStatus": outcome.upstream_status,
        "correlationId": outcome.correlation_id,
        "attempts": op.attempts,
    }
    try:
        logger.info("write attempt classified", extra=log)
        now = clock()
        handing = (
            lifecycle.HandOff(hand_off.new_token(), hand_off.worker_timeout_seconds) if hand_off else None
        )
        settling = lifecycle.settle(
            op, outcome, now, retry_at=_next_attempt(retry_planner, op, outcome, now), hand_off=handing
        )
        settled = _settle(store, op, settling)
        if hand_off is not None and settled.stored and lifecycle.handed_to_queue(settled.op):
            _send_hand_off(hand_off.queue, settled.op, now)
        if publisher is not None and settled.stored:
            announce(store, publisher, settled.op, clock)
        return settled
    except Exception:
        # The record stays `sent` with our lease: it is due when the lease expires, and is recovered then.
        logger.exception("settle failed; the operation stays pending", extra=log)
        return Settled(op, stored=False)


def _settle(store: OperationStore, op: Operation, settling: Transition) -> Settled:
    """Write a settle: once more if it was not applied, with the minimal fields if the store refuses it."""
    for _ in range(2):
        try:
            written = write(store, settling)
        except WriteRejected:
            logger.exception("settle refused by the store; writing the minimal settle")
            settling = lifecycle.minimal(settling)
            continue
        if written.applied and written.current is not None:
            return Settled(written.current, stored=True)
        if not written.known:
            return Settled(op, stored=False, known=False)
        current = written.current
        if current is None or not same_write(current, op):
            # Someone else changed the record (a lease-taker after our lease lapsed): answer what is there.
            logger.warning("settle found the record changed", extra={"operationId": op.operation_id})
            return Settled(current or op, stored=False)
    return Settled(op, stored=False)


def announce(
    store: OperationStore, publisher: EventPublisher, op: Operation, clock: Callable[[], float]
) -> None:
    """Publish a terminal state's event and record it published. Only a state the store confirmed is
    published; a failure on either side leaves it `unpublished`, and the sweeper publishes it again."""
    if not lifecycle.unpublished(op):
        return
    try:
        if publisher.publish([operation_event(op)]):
            logger.warning("event not published; the sweeper re-publishes it")
            return
        write(store, lifecycle.published(op, clock()))
    except Exception:
        logger.exception(
            "publishing failed; the sweeper re-publishes it", extra={"operationId": op.operation_id}
        )


def _send_hand_off(queue: RetryQueue, op: Operation, now: float) -> None:
    """The delayed message that carries the lease to the worker. Lost or failed, it costs only time: the
    queue's lease lapses and the sweeper recovers the operation."""
    assert op.lease_token is not None and op.next_attempt_at is not None
    delay = math.ceil(max(op.next_attempt_at - now, 0.0))
    try:
        unsent = queue.enqueue([RetryMessage(op.operation_id, op.lease_token)], delay_seconds=delay)
    except Exception:
        unsent = [RetryMessage(op.operation_id, op.lease_token)]
    if unsent:
        logger.warning("hand-off to the queue failed; the sweeper recovers it when the lease lapses")


def _next_attempt(planner: RetryPlanner, op: Operation, outcome: Outcome, now: float) -> float | None:
    """When a transient outcome is retried. A planner that fails must not end the operation, nor lose this
    attempt's outcome: it is then due at once (never before Retry-After), and the lease-taker re-checks
    the window."""
    if not outcome.transient:
        return None
    try:
        return planner(op, outcome, now)
    except Exception:
        logger.exception("retry planner failed; due again at once", extra={"operationId": op.operation_id})
        return now + (outcome.retry_after or 0.0)


def _release(store: OperationStore, claimed: Operation, holds: Holds | None = None) -> bool:
    """Release a claim; True once it is confirmed gone (ours no longer stored), else False. What the
    claim held outside its record is let go only then (a claim not confirmed gone may still be sent)."""
    releasing = lifecycle.release(claimed)
    for _ in range(2):
        try:
            written = write(store, releasing)
        except Exception:
            logger.exception("could not release a claim", extra={"operationId": claimed.operation_id})
            return False
        if written.applied:
            if holds is not None:
                holds.released(claimed)
            return True
        if not (written.known and written.current is not None and same_write(written.current, claimed)):
            return False
        # Our claim is still there untouched (the delete's effect was unknown, and it was not applied): again.
    return False


def _release_then(
    store: OperationStore,
    claimed: Operation,
    result: WriteResult,
    clock: Callable[[], float],
    holds: Holds | None = None,
) -> WriteResult:
    """`result` once the release is confirmed; else 503 operation-state-unknown with the claim."""
    if _release(store, claimed, holds):
        return result
    return StateUnknown(claimed, _retry_after(claimed, clock()))
