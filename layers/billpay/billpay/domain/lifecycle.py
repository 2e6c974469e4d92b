"""Every transition of an operation, in one place (docs/contract.md, Operation life cycle).

A transition is pure: the state that was read (`before`; None for a claim), the state to store (`after`;
None for a release), and the condition the stored item must still meet. A store writes it as one
conditional request and builds no state of its own; whether a condition holds (`Transition.holds`) and
whether a write is visible in an item (`Transition.applied_in`) are decided here, so the DynamoDB adapter
and the in-memory fake agree on both.

    claim          none, or a guarding claim whose lease lapsed → guarding/pending, sync lease, 1-day TTL
    release        guarding under our token                    → deleted (nothing was ever sent)
    mark_sent      guarding under our token, lease still live  → sent, attempts 1, listed in the index
    settle         sent under our token                        → an end state, or pending due at retry_at
                                                                 (handed to the queue when it is due soon)
    settle_unsent  sent under our token, attempt never sent    → pending due now, the attempt counted clear
    take_lease     sent/pending under the token handed over    → a new token and lease (worker: attempt + 1)
    end_window     sent/pending, retry window closed           → failed (every attempt clear) or needs_review
    resolve        needs_review                                → succeeded/failed, as a person decided
    published      a terminal state, its event not yet published → the same, its version recorded published

A terminal state stays in the index's `unpublished` bucket until `published` records that its event went
out: the holder publishes right after its write; the sweeper publishes what a holder did not.

Every write bumps `version` (but `published`, which records which version's event went out); with the token
and the published version, it names one write. Every condition includes the version, token, phase, status and
published version that were read: a transition applies only to the state it was computed from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

from billpay.domain.operations import (
    DUE_BUCKET_NEEDS_REVIEW,
    DUE_BUCKET_PENDING,
    DUE_BUCKET_UNPUBLISHED,
    GUARDING_TTL_SECONDS,
    STORED_TEXT_LIMIT_BYTES,
    Kind,
    LeaseHolder,
    Operation,
    Phase,
    Resolution,
    Status,
    StoredBody,
    UpstreamRequest,
    iso_timestamp,
)
from billpay.domain.outcomes import OUTCOME_UNKNOWN, RATE_LIMITED, UNAVAILABLE, Outcome, ProblemSpec
from billpay.domain.retry_policy import RetryPolicy, end_status

TransitionName = Literal[
    "claim",
    "release",
    "mark_sent",
    "settle",
    "settle_unsent",
    "take_lease",
    "end_window",
    "resolve",
    "published",
]

# Correlation ids kept per operation (a replayed cached 5xx is recognised by one of them).
MAX_CORRELATION_IDS: Final = 50


@dataclass(frozen=True, slots=True)
class Transition:
    """`before → after`, and what the stored item must be for the write to apply."""

    name: TransitionName
    operation_id: str
    before: Operation | None
    after: Operation | None
    # claim: a `guarding` item whose lease ended before this may be replaced (its holder is gone).
    reclaim_lapsed_before: float | None = None
    # mark_sent: the stored lease must still run past this (a late write cannot revive a lapsed claim).
    lease_live_at: float | None = None
    # a take-over: the stored lease, if any, must have ended by this.
    lease_lapsed_at: float | None = None

    def holds(self, current: Operation | None) -> bool:
        """Whether the condition holds for `current`, the item as stored (None: absent)."""
        if self.before is None:
            if current is None:
                return True
            return (
                self.reclaim_lapsed_before is not None
                and current.phase == "guarding"
                and current.lease_until is not None
                and current.lease_until < self.reclaim_lapsed_before
            )
        if current is None or not same_write(current, self.before):
            return False
        if self.lease_live_at is not None and not (
            current.lease_until is not None and current.lease_until > self.lease_live_at
        ):
            return False
        return not (
            self.lease_lapsed_at is not None
            and current.lease_until is not None
            and current.lease_until >= self.lease_lapsed_at
        )

    def applied_in(self, current: Operation | None) -> bool:
        """Whether `current` shows this write applied: its after-state (version and token) is stored.

        A release is applied once our claim is gone: deleted, or replaced by someone else's claim after our
        lease lapsed (either way nothing of ours is left to send)."""
        if self.after is None:
            return current is None or (
                self.before is not None and current.lease_token != self.before.lease_token
            )
        return current is not None and same_write(current, self.after)

    @property
    def ours(self) -> Operation:
        """The state this transition writes (a release writes none)."""
        if self.after is None:
            raise ValueError("a release stores no state")
        return self.after


def same_write(a: Operation, b: Operation) -> bool:
    """Two readings of one stored write: the same version, token, phase, status and published version."""
    return _identity(a) == _identity(b)


def _identity(op: Operation) -> tuple[object, ...]:
    return (op.version, op.lease_token, op.phase, op.status, op.published_version)


def _written(op: Operation, now: float, **changes: Any) -> Operation:
    return op.with_changes(version=op.version + 1, updated_at=iso_timestamp(now), **changes)


def due_index(
    status: Status,
    phase: Phase,
    *,
    lease_until: float | None,
    next_attempt_at: float | None,
    now: float,
    unpublished: bool = False,
) -> tuple[str | None, float | None]:
    """Where an operation sits in the sparse index: (dueBucket, dueAt), or (None, None) when not listed.

    Listed while unfinished and sent: `pending` is due when its lease expires (a holder may have died) or,
    with no lease, at `nextAttemptAt`; `needs_review` stays listed (dated when it got there) until a person
    resolves it. A terminal state just written is listed `unpublished` (dated then) until its event is
    recorded published (a `needs_review` stays in its own bucket, counted, and is published from there). A
    `guarding` claim is never listed: nothing may ever send it.
    """
    if phase == "guarding":
        return None, None
    if unpublished and phase == "settled" and status != "needs_review":
        return DUE_BUCKET_UNPUBLISHED, now
    if status == "pending":
        due = lease_until if lease_until is not None else next_attempt_at
        return DUE_BUCKET_PENDING, due if due is not None else now
    if status == "needs_review":
        return DUE_BUCKET_NEEDS_REVIEW, now
    return None, None


# -- the synchronous path ----------------------------------------------------------------------------------


def claim(
    *,
    operation_id: str,
    kind: Kind,
    request_hash: str,
    upstream_key: str,
    upstream_request: UpstreamRequest,
    now: float,
    lease_until: float,
    lease_token: str,
    client_id: str | None = None,
) -> Transition:
    """A new record (or one replacing a `guarding` claim whose lease lapsed): `guarding`, `pending`, a sync
    lease, and a TTL — nothing ever sends a guarding claim, so one left by a crash may simply expire."""
    stamp = iso_timestamp(now)
    after = Operation(
        operation_id=operation_id,
        kind=kind,
        status="pending",
        phase="guarding",
        request_hash=request_hash,
        upstream_key=upstream_key,
        upstream_request=upstream_request,
        created_at=stamp,
        updated_at=stamp,
        lease_token=lease_token,
        lease_holder="sync",
        lease_until=lease_until,
        expires_at=math.ceil(now) + GUARDING_TTL_SECONDS,
        version=1,
        client_id=client_id,
        claim_token=lease_token,
    )
    return Transition("claim", operation_id, None, after, reclaim_lapsed_before=now)


def release(claimed: Operation) -> Transition:
    """Every exit before the send deletes the claim, so the same key may be sent again, corrected."""
    if claimed.phase != "guarding":
        raise ValueError("only a guarding claim is ever released: a sent record is kept forever")
    return Transition("release", claimed.operation_id, claimed, None)


def mark_sent(claimed: Operation, now: float) -> Transition:
    """The record may now reach Codat: it loses its TTL, counts the first attempt and joins the index, due
    when the sync lease expires (if its holder dies mid-send, a lease-taker finds it then)."""
    due_bucket, due_at = due_index(
        "pending", "sent", lease_until=claimed.lease_until, next_attempt_at=None, now=now
    )
    after = _written(
        claimed,
        now,
        phase="sent",
        first_attempt_at=now,
        attempts=1,
        expires_at=None,
        due_bucket=due_bucket,
        due_at=due_at,
    )
    return Transition("mark_sent", claimed.operation_id, claimed, after, lease_live_at=now)


# -- after an attempt ---------------------------------------------------------------------------------------


def _error_body(body: StoredBody) -> dict[str, Any]:
    return body.cut(STORED_TEXT_LIMIT_BYTES).to_dict()


# A retry due within this is handed to the queue (SQS DelaySeconds goes up to 15 minutes); a later one
# waits in the index for the sweeper.
HAND_OFF_HORIZON_SECONDS: Final = 900.0


@dataclass(frozen=True, slots=True)
class HandOff:
    """The lease a holder hands to a delayed queue message: a new token, held until the retry is due plus
    the worker's timeout (a message that never arrives then lapses, and the sweeper recovers it)."""

    token: str
    worker_timeout_seconds: float


def settle(
    op: Operation,
    outcome: Outcome,
    now: float,
    *,
    retry_at: float | None,
    hand_off: HandOff | None = None,
) -> Transition:
    """The record after one attempt ended with `outcome`.

    A transient outcome with `retry_at` stays `pending` in phase `sent`, due at `retry_at`, its would-be
    answer kept in `error` for the window's end; without `retry_at` (the window closed) it ends: `failed`
    only if every attempt taken was settled as nothing-applied, else `needs_review`. A refusal (400-404)
    after an attempt that may have been applied ends `needs_review` too: an auth refusal is answered before
    Codat's idempotency layer, so it says nothing about the earlier attempt. The lease is given up (holder
    and deadline removed) but its token is kept: one holder's writes share it — unless a `pending` retry is
    due within the hand-off horizon and `hand_off` is given: then the lease passes to the queue under the
    hand-off's token (`leaseHolder` `queue`), and the holder sends the delayed message after this write.
    """
    clear = op.clear_attempts + (1 if outcome.nothing_applied else 0)
    correlation_ids = op.correlation_ids
    if outcome.correlation_id and outcome.correlation_id not in correlation_ids:
        correlation_ids = (*correlation_ids, outcome.correlation_id)[-MAX_CORRELATION_IDS:]
    earlier_doubt = (op.attempts - 1) > op.clear_attempts
    status: Status
    error: dict[str, Any] | None = None
    result = None
    if outcome.end == "succeeded":
        status, result = "succeeded", outcome.body
    elif outcome.end == "failed" and earlier_doubt:
        status, error = "needs_review", outcome.error(OUTCOME_UNKNOWN)
    elif outcome.end is not None:
        status, error = outcome.end, outcome.error()
    elif retry_at is not None:
        status = "pending"
        # Kept (never shown while pending) so the lease-taker that ends the operation at the window's
        # close answers with what the attempts met: rate-limited or unreachable, and Codat's last words.
        error = outcome.error(outcome.on_give_up())
    else:
        ending = end_status(attempts=max(op.attempts, 1), clear_attempts=clear)
        status = ending
        error = outcome.error(outcome.on_give_up() if ending == "failed" else OUTCOME_UNKNOWN)
    # The raw body is kept with an end state only: a pending record carries just its would-be answer.
    if status != "pending" and error is not None and outcome.body and outcome.upstream_status is not None:
        error["rawBody"] = _error_body(outcome.body)
    phase: Phase = "sent" if status == "pending" else "settled"
    next_attempt_at = retry_at if status == "pending" else None
    lease: dict[str, Any] = {"lease_holder": None, "lease_until": None}
    if (
        hand_off is not None
        and next_attempt_at is not None
        and next_attempt_at - now <= HAND_OFF_HORIZON_SECONDS
    ):
        lease = {
            "lease_token": hand_off.token,
            "lease_holder": "queue",
            "lease_until": next_attempt_at + hand_off.worker_timeout_seconds,
        }
    due_bucket, due_at = due_index(
        status,
        phase,
        lease_until=lease["lease_until"],
        next_attempt_at=next_attempt_at,
        now=now,
        unpublished=True,
    )
    after = _written(
        op,
        now,
        status=status,
        phase=phase,
        clear_attempts=clear,
        correlation_ids=correlation_ids,
        next_attempt_at=next_attempt_at,
        result=result,
        error=error,
        due_bucket=due_bucket,
        due_at=due_at,
        **lease,
    )
    return Transition("settle", op.operation_id, op, after)


def unpublished(op: Operation) -> bool:
    """A terminal state whose event is not recorded as published."""
    return op.phase == "settled" and op.published_version != op.version


def published(op: Operation, now: float) -> Transition:
    """Its terminal event went out: record which version, and leave the `unpublished` bucket (a
    `needs_review` goes back to its own; an end state leaves the index). Conditional on the state that was
    published still being the one stored: a later change (a person's resolve) is published in its turn."""
    due_bucket, due_at = due_index(op.status, op.phase, lease_until=None, next_attempt_at=None, now=now)
    if op.status == "needs_review":
        due_bucket, due_at = op.due_bucket, op.due_at  # stays listed, dated when it got there
    # The operation itself does not change (its version and time stay those of the state the event
    # carries); `publishedVersion` is what tells this write apart.
    after = op.with_changes(published_version=op.version, due_bucket=due_bucket, due_at=due_at)
    return Transition("published", op.operation_id, op, after)


def handed_to_queue(settled: Operation) -> bool:
    return settled.status == "pending" and settled.lease_holder == "queue"


_MINIMAL_ERROR_FIELDS: Final = ("type", "status", "title", "retryAfter")
_MINIMAL_DETAIL_CHARS: Final = 500


def minimal(settling: Transition) -> Transition:
    """The same settle with only what an answer needs (status, phase, problem type and codes, hashes):
    for a store that refused the full one for a reason no retry cures (too large, a validation error)."""
    after = settling.ours
    error: dict[str, Any] | None = None
    if after.error is not None:
        error = {name: after.error[name] for name in _MINIMAL_ERROR_FIELDS if name in after.error}
        error["detail"] = str(after.error.get("detail", ""))[:_MINIMAL_DETAIL_CHARS]
        upstream = after.error.get("upstream")
        if isinstance(upstream, dict):
            error["upstream"] = {
                k: upstream[k]
                for k in ("statusCode", "correlationId")
                if isinstance(upstream.get(k), str | int)
            }
        raw = after.error.get("rawBody")
        if isinstance(raw, dict):
            error["rawBody"] = {
                "text": "",
                "sha256": raw.get("sha256"),
                "size": raw.get("size"),
                "truncated": True,
            }
    result = after.result.cut(0) if after.result is not None else None
    return Transition(
        settling.name,
        settling.operation_id,
        settling.before,
        after.with_changes(result=result, error=error, correlation_ids=after.correlation_ids[-5:]),
    )


def settle_unsent(op: Operation, now: float) -> Transition:
    """An attempt was counted (mark-sent, learned late) but never sent: settled as nothing-applied and due
    at once, so a counted, unsent attempt can never force a `needs_review`."""
    due_bucket, due_at = due_index("pending", "sent", lease_until=None, next_attempt_at=now, now=now)
    after = _written(
        op,
        now,
        clear_attempts=op.clear_attempts + 1,
        lease_holder=None,
        lease_until=None,
        next_attempt_at=now,
        due_bucket=due_bucket,
        due_at=due_at,
    )
    return Transition("settle_unsent", op.operation_id, op, after)


# -- lease-takers: the sweeper and the retry worker ---------------------------------------------------


def take_due(
    op: Operation,
    *,
    policy: RetryPolicy,
    holder: LeaseHolder,
    token: str,
    lease_until: float,
    now: float,
    count_attempt: bool,
    require_lapsed: bool,
) -> Transition:
    """A lease-taker's one write on a due operation: the window's end if it has closed, else its lease.

    The sweeper takes a lapsed lease (`require_lapsed`) and counts nothing; the worker takes over the
    lease the sweeper handed it and counts its attempt (`count_attempt`) before anything is sent.
    """
    lapsed_at = now if require_lapsed else None
    if op.first_attempt_at is None or policy.window_closed(op.first_attempt_at, now):
        after = end_window_state(op, now=now, token=token, holder=holder)
        return Transition("end_window", op.operation_id, op, after, lease_lapsed_at=lapsed_at)
    after = _written(
        op,
        now,
        attempts=op.attempts + (1 if count_attempt else 0),
        lease_token=token,
        lease_holder=holder,
        lease_until=lease_until,
        due_at=lease_until if op.due_bucket is not None else None,
    )
    return Transition("take_lease", op.operation_id, op, after, lease_lapsed_at=lapsed_at)


def _ended(
    op: Operation,
    status: Status,
    *,
    error: dict[str, Any] | None,
    token: str,
    holder: LeaseHolder | None,
    now: float,
    **changes: Any,
) -> Operation:
    """Ended outside an attempt, under a fresh `token`: settled, lease and schedule cleared, listed only as
    `due_index` says (a `needs_review` stays listed; `succeeded`/`failed` leave the index)."""
    due_bucket, due_at = due_index(
        status, "settled", lease_until=None, next_attempt_at=None, now=now, unpublished=True
    )
    return _written(
        op,
        now,
        status=status,
        phase="settled",
        error=error,
        lease_token=token,
        lease_holder=holder,
        lease_until=None,
        next_attempt_at=None,
        due_bucket=due_bucket,
        due_at=due_at,
        **changes,
    )


def end_window_state(op: Operation, *, now: float, token: str, holder: LeaseHolder) -> Operation:
    """An operation whose retry window closed. `failed` carries its last attempt's nothing-applied answer
    (503 rate-limited, or unavailable when it never left); `needs_review` the 502 outcome-unknown. Both keep
    what Codat said last (`upstream`)."""
    previous: dict[str, Any] = dict(op.error or {})
    if op.first_attempt_at is None:
        # A sent record without its first attempt time is inconsistent: never guess `failed`.
        status: Status = "needs_review"
    else:
        status = end_status(attempts=op.attempts, clear_attempts=op.clear_attempts)
    spec: ProblemSpec
    if status == "failed":
        spec = UNAVAILABLE if previous.get("type") == UNAVAILABLE.type else RATE_LIMITED
        detail = (
            f"{spec.detail} The retry window closed after {op.attempts} attempt(s); nothing was recorded."
        )
    else:
        spec = OUTCOME_UNKNOWN
        detail = (
            f"{spec.detail} The retry window closed after {op.attempts} attempt(s), "
            f"{op.attempts - op.clear_attempts} of them with an unknown outcome."
        )
    error: dict[str, Any] = {"type": spec.type, "status": spec.status, "title": spec.title, "detail": detail}
    if previous.get("upstream"):
        error["upstream"] = previous["upstream"]
    return _ended(op, status, error=error, token=token, holder=holder, now=now)


# -- a person -----------------------------------------------------------------------------------------------

NOT_RECORDED: Final = ProblemSpec(
    503,
    "upstream-unavailable",
    "Not recorded",
    "A person checked the accounting software: this payment was not recorded. "
    "It may be resubmitted with a new Idempotency-Key.",
)


class NotResolvable(ValueError):
    """Only a `needs_review` operation can be resolved."""


def resolve(op: Operation, resolution: Resolution, *, token: str, now: float) -> Transition:
    """A person's decision on a `needs_review` operation: an end state, out of the index, decision kept."""
    if op.status != "needs_review":
        raise NotResolvable(f"operation {op.operation_id} is {op.status}, not needs_review")
    error: dict[str, Any] | None = None
    if resolution.status == "failed":
        # The client may now resubmit under a new key: say so, and that a person checked.
        error = NOT_RECORDED.to_error()
        upstream = (op.error or {}).get("upstream")
        if upstream:
            error["upstream"] = upstream
    after = _ended(
        op, resolution.status, error=error, token=token, holder=None, now=now, resolution=resolution
    )
    return Transition("resolve", op.operation_id, op, after)
