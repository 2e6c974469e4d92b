"""Reservations on a bill: what makes `amount-exceeds-due` exact (docs/contract.md, Reservations).

The bill's index item holds `amountDue` — only ever the platform's value — and a map of reservations, one
per payment that passed its guards (keyed by operation id + the token of the claim that made it), each
`held` or `applied`, with a stored `available` (= `amountDue` - every reservation) that one conditional
write can test. Before mark-sent a payment reserves (`available ≥ amount`, its key absent): of several
concurrent payments on one bill, only those the bill can take get through, whichever container runs them.

A reservation lives as long as its operation needs it, and is derived from the operation record (the two
live in different tables, without transactions):

| the operation                                        | its reservation                           |
|------------------------------------------------------|-------------------------------------------|
| absent, or a claim other than the one that reserved  | dropped (nothing was or will be sent)     |
| `guarding` under the reserving claim, lease lapsed   | dropped                                   |
| `failed` (or resolved failed)                        | dropped                                   |
| `succeeded` (or resolved succeeded)                  | `applied` until the platform shows it     |
| `pending`, `needs_review`, a live claim              | kept `held`                               |

An `applied` reservation is dropped once a refresh that began after the settle (plus a small margin for
our own clocks) has returned the bill: Codat's sync reads pass through to the platform, which recorded the
payment before Codat answered, so that refresh's `amountDue` includes it. Our own arithmetic never touches
`amountDue`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from billpay.domain.operations import Operation

ReservationState = Literal["held", "applied"]
Verdict = Literal["keep", "apply", "drop"]

# Both times are ours (the settle's, the refresh's start). Codat answered the write only once the platform
# had it, so a refresh that began after the settle reads it: no margin beyond "after", on clocks that are
# NTP-synced across our containers. Were the platform ever to show its write late, a payment could pass our
# guard on a stale amountDue, and Codat would refuse it (the operation fails; nothing recorded twice).
APPLIED_LAG_SECONDS: Final = 0.0


@dataclass(frozen=True, slots=True)
class Reservation:
    key: str
    operation_id: str
    amount: Decimal
    state: ReservationState
    at: float  # when it was made (epoch seconds)
    applied_at: float | None = None


def reservation_key(operation_id: str, claim_token: str) -> str:
    return f"{operation_id}#{claim_token}"


def claim_token_of(key: str) -> str:
    return key.split("#", 1)[1] if "#" in key else ""


def verdict(reservation: Reservation, op: Operation | None, now: float) -> Verdict:
    """What the operation record says of one reservation (the table above)."""
    if op is None or op.claim_token != claim_token_of(reservation.key):
        return "drop"
    if op.phase == "guarding":
        return "keep" if op.lease_live(now) else "drop"
    if op.status == "failed":
        return "drop"
    if op.status == "succeeded":
        return "keep" if reservation.state == "applied" else "apply"
    return "keep"


def reflected(reservation: Reservation, refreshed_at: float) -> bool:
    """Whether an `applied` reservation is part of the platform's `amountDue` as last refreshed (the
    refresh that wrote the bill began at `refreshed_at`)."""
    return (
        reservation.state == "applied"
        and reservation.applied_at is not None
        and refreshed_at > reservation.applied_at + APPLIED_LAG_SECONDS
    )
