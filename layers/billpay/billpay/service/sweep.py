"""The sweeper: the one scheduler of retries (DESIGN §4).

Every sweep:
1. pages through the pending operations that are due (the sparse index, ordered by `dueAt`);
2. re-reads each on the base item (the index is eventually consistent: a candidate list, never a truth)
   and skips anything that is not `pending`/`sent`, still leased, or not due;
3. takes its lease with a conditional write on the base item (its current token, an expired lease) —
   or, when its retry window has closed, ends it in that same one write: `failed` only if every attempt
   taken settled as nothing-applied, else `needs_review`;
4. enqueues one message per lease taken (operation id + the new token). A failed enqueue needs no
   handling: the operation is due again when this lease expires;
5. publishes the gauges `NeedsReviewOpen` and `OldestUnfinishedSeconds` (age of the oldest `pending`).

The lease it takes runs to the sweeper's own deadline + 5 s (DESIGN §3); the worker that gets the message
takes over with a token of its own, so a message that arrives late, twice, or after a re-take does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from aws_lambda_powertools.metrics import MetricUnit

from billpay.adapters.operations_dynamodb import LeaseLost, OperationStore
from billpay.adapters.operations_sweep_dynamodb import SweepIndex
from billpay.adapters.retry_queue_sqs import RetryMessage, RetryQueue
from billpay.config import get_settings
from billpay.domain.operations import Operation, iso_timestamp, lease_until, new_lease_token
from billpay.domain.retry_policy import RetryPolicy
from billpay.domain.retry_window import window_end_state
from billpay.observability import logger, metrics

# Stop taking leases with this little time left: each lease must be handed to SQS before the deadline,
# and what is left over is simply due at the next sweep.
STOP_MARGIN_MILLIS: Final = 3000
_PARALLEL: Final = 8
_CHUNK: Final = 40

Tally = Literal["skipped", "contended", "errors", "leased", "ended_failed", "ended_needs_review"]


@dataclass
class SweepReport:
    due: int = 0
    leased: int = 0
    queued: int = 0
    enqueue_failed: int = 0
    ended_failed: int = 0
    ended_needs_review: int = 0
    skipped: int = 0
    contended: int = 0
    errors: int = 0
    stopped_early: bool = False
    needs_review_open: int = 0
    oldest_unfinished_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Sweeper:
    def __init__(
        self,
        *,
        store: OperationStore,
        queue: RetryQueue,
        policy: RetryPolicy,
        clock: Callable[[], float] = time.time,
        new_token: Callable[[], str] = new_lease_token,
    ) -> None:
        self.store = store
        self.index = SweepIndex(store)
        self.queue = queue
        self.policy = policy
        self.clock = clock
        self.new_token = new_token

    @classmethod
    def from_settings(cls) -> Sweeper:
        settings = get_settings()
        return cls(
            store=OperationStore(settings.table_name),
            queue=RetryQueue(settings.queue_url),
            policy=policy_from_settings(),
        )

    def sweep(self, *, remaining_millis: Callable[[], int]) -> SweepReport:
        report = SweepReport()
        now = self.clock()
        until = lease_until(now, remaining_millis())
        chunk: list[str] = []
        # Each candidate costs two round trips (read, conditional write); a few in parallel keep a sweep
        # after an outage short. DynamoDB decides every race: the threads share nothing but the report.
        with ThreadPoolExecutor(max_workers=_PARALLEL, thread_name_prefix="sweep") as pool:
            for entry in self.index.due_pending(now):
                if remaining_millis() < STOP_MARGIN_MILLIS:
                    report.stopped_early = True
                    logger.warning("sweep stopped early: deadline near; the rest is due at the next sweep")
                    break
                report.due += 1
                chunk.append(entry.operation_id)
                if len(chunk) >= _CHUNK:
                    self._chunk(pool, chunk, now, until, report)
                    chunk = []
            if chunk:
                self._chunk(pool, chunk, now, until, report)

        self._gauges(report, self.clock())
        metrics.add_metric(name="RetrySwept", unit=MetricUnit.Count, value=report.due)
        metrics.add_metric(name="RetryQueued", unit=MetricUnit.Count, value=report.queued)
        if report.ended_failed:
            metrics.add_metric(name="RetryFailed", unit=MetricUnit.Count, value=report.ended_failed)
        if report.ended_needs_review:
            metrics.add_metric(
                name="RetryNeedsReview", unit=MetricUnit.Count, value=report.ended_needs_review
            )
        logger.info("sweep done", extra={"sweep": report.to_dict()})
        return report

    # -- one due candidate ----------------------------------------------------------------------------------

    def _chunk(
        self, pool: ThreadPoolExecutor, ids: list[str], now: float, until: float, report: SweepReport
    ) -> None:
        outbox: list[RetryMessage] = []
        for kind, message in pool.map(lambda op_id: self._guarded(op_id, now, until), ids):
            setattr(report, kind, getattr(report, kind) + 1)
            if message is not None:
                outbox.append(message)
        if outbox:
            self._send(outbox, report)

    def _guarded(self, operation_id: str, now: float, until: float) -> tuple[Tally, RetryMessage | None]:
        try:
            return self._one(operation_id, now, until)
        except Exception:
            # One operation's trouble (a throttled read, say) must not stop the sweep; it is due again.
            logger.exception("sweep of one operation failed", extra={"operationId": operation_id})
            return "errors", None

    def _one(self, operation_id: str, now: float, until: float) -> tuple[Tally, RetryMessage | None]:
        log = {"operationId": operation_id}
        op = self.store.get(operation_id, consistent=True)
        if op is None or not _due_on_base_item(op, now):
            # Changed since the index saw it (settled, re-leased, rescheduled): nothing to do.
            return "skipped", None

        token = self.new_token()
        if self.policy.window_closed(op.first_attempt_at or 0.0, now) or op.first_attempt_at is None:
            after = window_end_state(op, now=now, token=token, holder="sweeper")
            try:
                self.store.transition(op, after, lease_expired_before=now)
            except LeaseLost:
                return "contended", None
            logger.warning(
                "retry window closed: operation ended",
                extra={
                    **log,
                    "status": after.status,
                    "attempts": op.attempts,
                    "clearAttempts": op.clear_attempts,
                },
            )
            return ("ended_failed" if after.status == "failed" else "ended_needs_review"), None

        try:
            self.store.take_lease(
                op, holder="sweeper", token=token, lease_until=until, now=now, updated_at=iso_timestamp(now)
            )
        except LeaseLost:
            return "contended", None
        logger.info("lease taken for a retry", extra={**log, "attempts": op.attempts, "leaseUntil": until})
        return "leased", RetryMessage(operation_id=op.operation_id, lease_token=token)

    def _send(self, outbox: list[RetryMessage], report: SweepReport) -> None:
        failed = self.queue.enqueue(outbox)
        report.queued += len(outbox) - len(failed)
        report.enqueue_failed += len(failed)
        for message in failed:
            logger.warning(
                "enqueue failed: due again when the lease expires",
                extra={"operationId": message.operation_id},
            )

    def _gauges(self, report: SweepReport, now: float) -> None:
        report.needs_review_open = self.index.open_reviews()
        oldest = self.index.oldest_pending_first_attempt()
        report.oldest_unfinished_seconds = round(max(now - oldest, 0.0), 3) if oldest is not None else 0.0
        metrics.add_metric(name="NeedsReviewOpen", unit=MetricUnit.Count, value=report.needs_review_open)
        metrics.add_metric(
            name="OldestUnfinishedSeconds", unit=MetricUnit.Seconds, value=report.oldest_unfinished_seconds
        )


def _due_on_base_item(op: Operation, now: float) -> bool:
    """Due according to the consistent base item: pending, sent, no live lease, and its time has come."""
    if op.status != "pending" or op.phase != "sent":
        return False
    if op.lease_live(now):
        return False
    # Never before nextAttemptAt (it honours Retry-After), even when an old lease expired earlier.
    times = [t for t in (op.lease_until, op.next_attempt_at) if t is not None]
    return not times or max(times) <= now


def policy_from_settings() -> RetryPolicy:
    settings = get_settings()
    return RetryPolicy(
        window_seconds=settings.retry_window_seconds,
        base_delay_seconds=settings.retry_base_delay_seconds,
        max_delay_seconds=settings.retry_max_delay_seconds,
    )
