"""The retry policy (contract: Retries): full-jitter backoff, Retry-After floor, cap, window, end rules."""

from __future__ import annotations

import random

import pytest
from billpay.domain.retry_policy import (
    RetryPolicy,
    end_status,
)
from hypothesis import given
from hypothesis import strategies as st

POLICY = RetryPolicy(window_seconds=4800, base_delay_seconds=2, max_delay_seconds=300)
NOW = 1_800_000_000.0


class _Edge:
    """A uniform source pinned to one end of its range, to probe the bounds exactly."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_ceiling_doubles_from_the_base_and_stops_at_the_cap() -> None:
    assert [POLICY.backoff_ceiling(n) for n in range(1, 10)] == [2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert POLICY.backoff_ceiling(10_000) == 300


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    low = POLICY.next_attempt_at(now=NOW, attempts=3, first_attempt_at=NOW, rng=_Edge(high=False))
    high = POLICY.next_attempt_at(now=NOW, attempts=3, first_attempt_at=NOW, rng=_Edge(high=True))
    assert (low, high) == (NOW, NOW + 8)


def test_jitter_actually_spreads_delays() -> None:
    rng = random.Random(7)
    delays = {
        round(POLICY.next_attempt_at(now=NOW, attempts=5, first_attempt_at=NOW, rng=rng) - NOW, 3)
        for _ in range(50)
    }
    assert len(delays) > 40
    assert all(0 <= d <= 32 for d in delays)


def test_retry_after_is_a_floor_even_above_the_cap() -> None:
    at = POLICY.next_attempt_at(
        now=NOW, attempts=1, first_attempt_at=NOW, rng=_Edge(high=True), retry_after=1000
    )
    assert at == NOW + 1000


def test_a_time_past_the_window_is_pulled_back_to_the_window_end() -> None:
    first = NOW - 4790
    at = POLICY.next_attempt_at(now=NOW, attempts=1, first_attempt_at=first, rng=_Edge(True), retry_after=60)
    assert at == first + 4800
    assert POLICY.window_closed(first, at)


def test_window_closes_at_exactly_its_length() -> None:
    assert not POLICY.window_closed(NOW, NOW + 4799.999)
    assert POLICY.window_closed(NOW, NOW + 4800)


@pytest.mark.parametrize(
    ("attempts", "clear", "expected"),
    [
        (1, 1, "failed"),
        (5, 5, "failed"),
        (5, 4, "needs_review"),  # one attempt may have been applied
        (2, 0, "needs_review"),
        (3, 4, "needs_review"),  # inconsistent record: a person looks
        (0, 0, "failed"),
    ],
)
def test_end_status(attempts: int, clear: int, expected: str) -> None:
    assert end_status(attempts=attempts, clear_attempts=clear) == expected


def test_end_status_refuses_negative_counts() -> None:
    with pytest.raises(ValueError):
        end_status(attempts=-1, clear_attempts=0)


@pytest.mark.parametrize(
    ("window", "base", "cap"),
    [(0, 1, 1), (10, 0, 1), (10, 2, 1), (float("inf"), 1, 1), (10, 1, float("nan"))],
)
def test_nonsense_policies_are_refused(window: float, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(window_seconds=window, base_delay_seconds=base, max_delay_seconds=cap)


seconds = st.floats(min_value=0.01, max_value=10_000, allow_nan=False, allow_infinity=False)


@given(
    base=seconds,
    extra=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    window=seconds,
    attempts=st.integers(min_value=0, max_value=500),
    elapsed=st.floats(min_value=0, max_value=20_000, allow_nan=False),
    retry_after=st.none() | st.floats(min_value=0, max_value=100_000, allow_nan=False),
    seed=st.integers(),
)
def test_next_attempt_is_bounded(
    base: float,
    extra: float,
    window: float,
    attempts: int,
    elapsed: float,
    retry_after: float | None,
    seed: int,
) -> None:
    policy = RetryPolicy(window_seconds=window, base_delay_seconds=base, max_delay_seconds=base + extra)
    first = NOW - elapsed
    at = policy.next_attempt_at(
        now=NOW, attempts=attempts, first_attempt_at=first, rng=random.Random(seed), retry_after=retry_after
    )
    window_end = first + window
    if window_end <= NOW:
        # Already past the window: due at once, so the next lease-taker ends it.
        assert at == window_end
        return
    assert NOW <= at <= window_end
    if at < window_end:
        # Never before Retry-After, never above the cap unless Retry-After asked for more.
        if retry_after is not None:
            assert at >= NOW + retry_after - 1e-6
        ceiling = max(policy.backoff_ceiling(attempts), retry_after or 0.0)
        assert at - NOW <= ceiling + 1e-6
        assert at - NOW <= max(policy.max_delay_seconds, retry_after or 0.0) + 1e-6


@given(attempts=st.integers(min_value=0, max_value=1000), clear=st.integers(min_value=0, max_value=1000))
def test_failed_only_when_every_attempt_was_clear(attempts: int, clear: int) -> None:
    status = end_status(attempts=attempts, clear_attempts=clear)
    assert (status == "failed") == (attempts == clear)
