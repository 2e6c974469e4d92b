"""The write flow (DESIGN §3): claim → (replay) → guards → mark sent → send → classify → settle.

Two entry points:
- `execute_write`: the API handlers' synchronous path, one attempt inside the request's time budget;
- `send_and_settle`: one attempt of an operation whose lease the caller holds in phase `sent` — the sync
  path uses it, and so does the retry worker (after taking the lease and counting the attempt).

Money-safety rules enforced here:
- nothing is sent unless the mark-sent write succeeded (the record then survives any crash);
- every exit before the send deletes the claim, so the key can be used again;
- once the HTTP client has the request, no exception leaves `send_and_settle`: the outcome is classified
  (an exception counts as "may be applied" unless the request provably never left) and settled;
- a record marked sent is never deleted: a transient outcome settles `pending` with `nextAttemptAt`, and
  the sweeper schedules the retries (DESIGN §4);
- a replay answers from the one read of the claim: no guard, no lookup, no Codat call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from billpay.adapters.operations_dynamodb import LeaseLost, OperationStore
from billpay.domain.operations import (
    Kind,
    Operation,
    UnknownCaller,
    UpstreamRequest,
    decide_replay,
    key_scope,
    key_scope_v2,
    lease_until,
    new_claim,
    new_lease_token,
    normalise_caller,
    operation_id,
    request_hash,
    sent_state,
    upstream_key,
    validate_idempotency_key,
)
from billpay.domain.outcomes import (
    UNAVAILABLE,
    Outcome,
    classify_exception,
    classify_response,
    settled_state,
)
from billpay.models.operations import envelope
from billpay.observability import logger
from billpay.problems import Problem

# Below this much budget left, a send could not finish in time: nothing is sent (the key is released).
MIN_SEND_SECONDS = 1.0
# Time kept back from the Lambda's remaining time for the settle write and the answer itself.
SETTLE_RESERVE_SECONDS = 2.0


class Sender(Protocol):
    """What a send needs of the Codat client (`CodatClient.post_keyed`)."""

    def post_keyed(self, path: str, body: bytes, idempotency_key: str, timeout: float) -> Any: ...


def prepare_sender(sender: Sender) -> None:
    """Let a sender fetch what it needs (e.g. the Codat key) before an attempt is counted, if it can."""
    prepare = getattr(sender, "prepare", None)
    if callable(prepare):
        prepare()


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

    def send_timeout(self, started: float, now: float) -> float:
        left_in_budget = self.seconds - (now - started)
        left_in_lambda = self.remaining_millis() / 1000.0 - SETTLE_RESERVE_SECONDS
        return min(self.upstream_timeout, left_in_budget, left_in_lambda)


def scope_of(request: WriteRequest) -> str:
    return key_scope_v2(request.client_id, request.route, request.path_params)


def replay_v1(
    request: WriteRequest, store: OperationStore, *, clock: Callable[[], float] = time.time
) -> Operation | None:
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
        raise Problem(
            403, "forbidden", "Forbidden", "This Idempotency-Key belongs to another client's operation."
        )
    return replay(existing, request_hash(request.canonical_body), clock=clock)


def execute_write(
    request: WriteRequest,
    *,
    store: OperationStore,
    sender: Sender,
    budget: Budget,
    retry_planner: RetryPlanner,
    guard: Callable[[], object] | None = None,
    on_succeeded: Callable[[Operation], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> Operation:
    """Run one write to an answer. Returns the operation to answer with (see `answer_status`); raises
    `Problem` for answers without an operation (reused key, in progress, guard refusal, nothing sent).

    `guard` runs after the claim and raises `Problem` to refuse; `on_succeeded` runs once, only when this
    call's own send succeeded (never on a replay), e.g. to keep a container's lookup cache in step.

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
            clock=clock,
        )
    finally:
        logger.remove_keys(["operationId"])


def _execute_write(
    request: WriteRequest,
    scope: str,
    op_id: str,
    *,
    store: OperationStore,
    sender: Sender,
    budget: Budget,
    retry_planner: RetryPlanner,
    guard: Callable[[], object] | None,
    on_succeeded: Callable[[Operation], None] | None,
    clock: Callable[[], float],
) -> Operation:
    started = clock()
    token = new_lease_token()
    claim = new_claim(
        operation_id=op_id,
        kind=request.kind,
        request_hash=request_hash(request.canonical_body),
        upstream_key=upstream_key(scope, request.client_key),
        upstream_request=request.upstream,
        now=started,
        lease_until=lease_until(started, budget.remaining_millis()),
        lease_token=token,
        client_id=request.client_id,
    )
    claimed = store.claim(claim, started)
    if not claimed.claimed:
        assert claimed.existing is not None
        return replay(claimed.existing, claim.request_hash, clock=clock)

    logger.info("operation claimed", extra={"kind": claim.kind})
    try:
        if guard is not None:
            guard()
        prepare_sender(sender)  # e.g. the Codat key: a failure here is still an exit before the send
        timeout = budget.send_timeout(started, clock())
        if timeout < MIN_SEND_SECONDS:
            raise Problem(
                503,
                "upstream-unavailable",
                "Upstream unavailable",
                "The request ran out of time before the write could be sent; nothing was sent.",
                headers={"Retry-After": "1"},
            )
        try:
            sent = store.transition(claim, sent_state(claim, clock()))
        except LeaseLost as lost:
            if lost.current is None:
                raise
            # Someone else holds the record now (nothing was sent by us): answer from what it returned.
            return replay(lost.current, claim.request_hash, clock=clock)
    except BaseException:
        _release_quietly(store, claim)
        raise
    settled = send_and_settle(store, sender, sent, timeout=timeout, retry_planner=retry_planner, clock=clock)
    if settled.status == "succeeded" and on_succeeded is not None:
        try:
            on_succeeded(settled)
        except Exception:
            logger.exception("after-success hook failed")
    return settled


def replay(existing: Operation, hash_: str, *, clock: Callable[[], float] = time.time) -> Operation:
    """Answer a repeated key from the record read at the claim (DESIGN §3 step 1): no other request.

    `pending` answers 202 whoever holds the lease, even one that expired: the sweeper recovers it."""
    now = clock()
    decision = decide_replay(existing, hash_, now)
    logger.info(
        "operation replayed",
        extra={"operationId": existing.operation_id, "status": existing.status, "replay": decision.action},
    )
    if decision.action == "reused":
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "This Idempotency-Key was already used with another request body; use a new key for a new one.",
        )
    if decision.action == "in_progress":
        raise Problem(
            409,
            "request-in-progress",
            "Request in progress",
            "A request with this Idempotency-Key is still being processed; retry after the given time.",
            headers={"Retry-After": str(decision.retry_after or 1)},
        )
    return existing


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


def send_and_settle(
    store: OperationStore,
    sender: Sender,
    op: Operation,
    *,
    timeout: float,
    retry_planner: RetryPlanner,
    clock: Callable[[], float] = time.time,
) -> Operation:
    """Send `op`'s stored request under its stored key, classify the outcome once, settle it.

    The caller holds `op`'s lease in phase `sent` and has counted this attempt in `attempts`. Returns the
    state to answer with; never raises an `Exception`.
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
        after = settled_state(op, outcome, now, retry_at=_next_attempt(retry_planner, op, outcome, now))
        return store.transition(op, after)
    except LeaseLost as lost:
        logger.warning("settle found the record changed", extra=log)
        return lost.current if lost.current is not None else op
    except Exception:
        # The record stays `sent` with our lease: it is due when the lease expires, and is recovered then
        # (this attempt, counted but never settled, can then only end the operation `needs_review`).
        logger.exception("settle failed; the operation stays pending", extra=log)
        return op


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


def _release_quietly(store: OperationStore, claim: Operation) -> None:
    try:
        store.release(claim)
    except Exception:
        # The claim expires anyway (lease, then a 1-day TTL): the key is reusable once the lease is over.
        logger.exception("could not release a claim", extra={"operationId": claim.operation_id})


# -- the answer ----------------------------------------------------------------------------------------------


def answer_status(op: Operation) -> int:
    """201 succeeded, 202 pending; for failed/needs_review see `ended_problem`."""
    return {"succeeded": 201, "pending": 202}.get(op.status, 0)


def ended_problem(op: Operation, envelope: dict[str, Any]) -> Problem:
    """The problem a `failed` or `needs_review` operation answers with, carrying the envelope."""
    error = dict(op.error or UNAVAILABLE.to_error())
    if op.status == "needs_review":
        error = {**error, "status": 502, "type": "upstream-outcome-unknown"}
    upstream = error.get("upstream")
    return Problem(
        int(error.get("status", 502)),
        str(error.get("type", "upstream-outcome-unknown")),
        str(error.get("title", "Upstream error")),
        str(error.get("detail", "")),
        upstream=upstream if isinstance(upstream, dict) and "statusCode" in upstream else None,
        operation=envelope,
    )


def idempotency_key(headers: Mapping[str, str] | None) -> str:
    """The client's `Idempotency-Key` (name matched case-insensitively), or the 400 to answer."""
    value = None
    for name, candidate in (headers or {}).items():
        if name.lower() == "idempotency-key":
            value = candidate
    if value is None:
        raise Problem(
            400,
            "idempotency-key-missing",
            "Idempotency-Key missing",
            "Every POST needs an Idempotency-Key header: one value per intended write, reused on retries.",
        )
    reason = validate_idempotency_key(value)
    if reason is not None:
        raise Problem(
            400,
            "validation-error",
            "Invalid request",
            f"Idempotency-Key {reason}.",
            errors=[
                {"location": "header", "field": "Idempotency-Key", "message": reason, "type": "value_error"}
            ],
        )
    return value


def answer(op: Operation, *, location: str, type_base: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, envelope) for a `succeeded` (201) or `pending` (202 + Location) operation;
    raises the problem (with the envelope as `operation`) for `failed` and `needs_review`."""
    body = envelope(op, type_base)
    status = answer_status(op)
    if status == 201:
        return 201, {}, body
    if status == 202:
        return 202, {"Location": location}, body
    raise ended_problem(op, body)
