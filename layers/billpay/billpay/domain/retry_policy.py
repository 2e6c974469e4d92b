"""When to try a keyed write again, and how it ends when the retry window closes (docs/contract.md, Retries).

Pure rules: no clock, no randomness source of its own, no AWS. Callers pass `now` (epoch seconds) and a
`random.Random`-like object, so the rules are testable exactly and property-testable.

Money-safety invariants kept here:
- the next attempt is never scheduled before the upstream's `Retry-After`;
- an operation ends `failed` (the client may resubmit under a new key) only when every attempt taken was
  settled as nothing-applied; any doubt ends it `needs_review`;
- the window must close well before Codat forgets the idempotency key (the settings refuse one that does
  not), or a late retry under the same key could be recorded a second time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

EndStatus = Literal["failed", "needs_review"]


class UniformSource(Protocol):
    """The one method of `random.Random` the policy needs (a seeded one in tests)."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, floored by Retry-After, bounded by the window."""

    window_seconds: float
    base_delay_seconds: float
    max_delay_seconds: float

    def __post_init__(self) -> None:
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            raise ValueError("retry window must be a positive number of seconds")
        if not (self.base_delay_seconds > 0 and math.isfinite(self.base_delay_seconds)):
            raise ValueError("retry base delay must be a positive number of seconds")
        if not (self.max_delay_seconds >= self.base_delay_seconds and math.isfinite(self.max_delay_seconds)):
            raise ValueError("retry max delay must be finite and at least the base delay")

    def backoff_ceiling(self, attempts: int) -> float:
        """The upper bound of the jittered delay after `attempts` attempts (1 = after the first)."""
        exponent = max(attempts, 1) - 1
        # Cap the exponent before exponentiating so huge attempt counts cannot overflow a float.
        if exponent >= 64:
            return self.max_delay_seconds
        return min(self.max_delay_seconds, self.base_delay_seconds * (2.0**exponent))

    def window_end(self, first_attempt_at: float) -> float:
        return first_attempt_at + self.window_seconds

    def window_closed(self, first_attempt_at: float, now: float) -> bool:
        return now >= self.window_end(first_attempt_at)

    def next_attempt_at(
        self,
        *,
        now: float,
        attempts: int,
        first_attempt_at: float,
        rng: UniformSource,
        retry_after: float | None = None,
    ) -> float:
        """When the operation is next due.

        Full jitter ("AWS Architecture Blog: Exponential Backoff and Jitter"): uniform in [0, ceiling].
        `Retry-After` is a floor that beats the cap: the upstream told us when it will listen again. A
        time past the window's end is pulled back to the window's end, where the next lease-taker ends the
        operation instead of sending (so an operation is never left waiting beyond its window).
        """
        delay = rng.uniform(0.0, self.backoff_ceiling(attempts))
        if retry_after is not None and math.isfinite(retry_after) and retry_after > delay:
            delay = retry_after
        return min(now + max(delay, 0.0), self.window_end(first_attempt_at))


def end_status(*, attempts: int, clear_attempts: int) -> EndStatus:
    """How an operation ends when its retry window closes.

    `failed` tells the client nothing was recorded and it may resubmit under a new key, so it is given only
    when every attempt taken was settled as nothing-applied. An attempt taken but never settled (a crashed
    worker) was counted in `attempts` but not in `clearAttempts`, so it ends `needs_review`.
    """
    if attempts < 0 or clear_attempts < 0:
        raise ValueError("attempt counts cannot be negative")
    if clear_attempts > attempts:
        # Should never happen; if the record is inconsistent, a person looks rather than us guessing.
        return "needs_review"
    return "failed" if clear_attempts == attempts else "needs_review"
