"""How an operation ends when its retry window has closed (DESIGN §4), written by the lease-taker.

Apart from `retry_policy` so that module stays a leaf the outcome classification can import.
"""

from __future__ import annotations

from typing import Any

from billpay.domain.operations import LeaseHolder, Operation, ended_state
from billpay.domain.outcomes import OUTCOME_UNKNOWN, RATE_LIMITED, UNAVAILABLE, ProblemSpec
from billpay.domain.retry_policy import EndStatus, end_status


def window_end_state(op: Operation, *, now: float, token: str, holder: LeaseHolder) -> Operation:
    """The record of an operation whose retry window closed, as its lease-taker writes it (one write).

    `failed` carries the nothing-applied answer of its last attempt (503 rate-limited, or unavailable
    when the last attempt never left); `needs_review` the 502 outcome-unknown. Both keep what Codat said
    last (`upstream`). A `needs_review` stays in the sparse index until a person resolves it.
    """
    previous: dict[str, Any] = dict(op.error or {})
    if op.first_attempt_at is None:
        # A sent record without its first attempt time is inconsistent: never guess `failed`.
        status: EndStatus = "needs_review"
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
    return ended_state(op, status, error=error, token=token, holder=holder, now=now)
