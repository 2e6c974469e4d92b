"""The sweeper: the one scheduler of retries (docs/contract.md, Retries).

Every sweep:
1. pages through the pending operations that are due (the sparse index, ordered by `dueAt`);
2. re-reads each on the base item (the index is eventually consistent: a candidate list, never a truth)
   and skips anything that is not `pending`/`sent`, still leased, or not due;
3. takes its lapsed lease, or ends it if its retry window closed, in one conditional write
   (`lifecycle.take_due`, the same rule the retry worker uses);
4. enqueues one message per lease taken (operation id + the new token). A failed enqueue needs no
   handling: the operation is due again when this lease expires;
5. publishes the events that terminal transitions left unpublished (their holder died or the bus failed),
   once they have waited `PUBLISH_GRACE_SECONDS` — the holder normally publishes first;
6. publishes the gauges `NeedsReviewOpen` and `OldestUnfinishedSeconds` (age of the oldest `pending`).

The lease it takes runs to the sweeper's own deadline + 5 s; the worker that gets the message takes over
with a token of its own, so a message that arrives late, twice, or after a re-take does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from aws_lambda_powertools.metrics import MetricUnit

from billpay.domain import lifecycle
from billpay.domain.operations import Operation, lease_until, new_lease_token
from billpay.domain.ports import EventPublisher, OperationIndex, OperationStore, RetryMessage, RetryQueue
from billpay.domain.retry_policy import RetryPolicy
from billpay.observability import logger, metrics
from billpay.service.retry import policy_from_settings
from billpay.service.write_operation import announce, write

# Stop taking leases with this little time left: each lease must be handed to SQS before the deadline,
# and what is left over is simply due at the next sweep.
STOP_MARGIN_MILLIS: Final = 3000
# A terminal state's own holder publishes its event right after the write; the sweeper steps in after this.
PUBLISH_GRACE_SECONDS: Final = 30.0
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
    republished: int = 0
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
        index: OperationIndex,
        queue: RetryQueue,
        policy: RetryPolicy,
        publisher: EventPublisher | None = None,
        clock: Callable[[], float] = time.time,
        new_token: Callable[[], str] = new_lease_token,
    ) -> None:
        self.store = store
        self.index = index
        self.publisher = publisher
        self.queue = queue
        self.policy = policy
        self.clock = clock
        self.new_token = new_token

    @classmethod
    def from_settings(cls) -> Sweeper:
        # The AWS adapters only where a sweeper runs: the domain and the unit tier never import boto3.
        from billpay.adapters.events_eventbridge import event_publisher  # noqa: PLC0415
        from billpay.adapters.operations_dynamodb import operation_store  # noqa: PLC0415
        from billpay.adapters.operations_sweep_dynamodb import SweepIndex  # noqa: PLC0415
        from billpay.adapters.retry_queue_sqs import retry_queue  # noqa: PLC0415
        from billpay.config import get_settings  # noqa: PLC0415

        settings = get_settings()
        store = operation_store(settings.table_name)
        return cls(
            store=store,
            index=SweepIndex(store),
            queue=retry_queue(settings.queue_url),
            policy=policy_from_settings(),
            publisher=event_publisher(settings),
        )

    def sweep(self, *, remaining_millis: Callable[[], int]) -> SweepReport:
        report = SweepReport()
        now = self.clock()
        until = lease_until(now, remaining_millis())
        chunk: list[str] = []
        # Each candidate costs two round trips (read, conditional write); a few in parallel keep a sweep
        # after an outage short. DynamoDB decides every race: the threads share nothing but the report.
        with ThreadPoolExecutor(max_workers=_PARALLEL, thread_name_prefix="sweep") as pool:
            for operation_id in self.index.due_pending(now):
                if remaining_millis() < STOP_MARGIN_MILLIS:
                    report.stopped_early = True
                    logger.warning("sweep stopped early: deadline near; the rest is due at the next sweep")
                    break
                report.due += 1
                chunk.append(operation_id)
                if len(chunk) >= _CHUNK:
                    self._chunk(pool, chunk, now, until, report)
                    chunk = []
            if chunk:
                self._chunk(pool, chunk, now, until, report)

        self._republish(report, remaining_millis)
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
        op = self.store.get(operation_id)
        if op is None or not _due_on_base_item(op, now):
            # Changed since the index saw it (settled, re-leased, rescheduled): nothing to do.
            return "skipped", None

        taking = lifecycle.take_due(
            op,
            policy=self.policy,
            holder="sweeper",
            token=self.new_token(),
            lease_until=until,
            now=now,
            count_attempt=False,
            require_lapsed=True,
        )
        written = write(self.store, taking)
        if not written.known:
            return "errors", None  # the lease, if taken, lapses and the operation is due again
        if not written.applied:
            return "contended", None
        after = taking.ours
        if taking.name == "end_window":
            if self.publisher is not None:
                announce(self.store, self.publisher, after, self.clock)
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
        logger.info("lease taken for a retry", extra={**log, "attempts": op.attempts, "leaseUntil": until})
        assert after.lease_token is not None
        return "leased", RetryMessage(operation_id=op.operation_id, lease_token=after.lease_token)

    def _republish(self, report: SweepReport, remaining_millis: Callable[[], int]) -> None:
        if self.publisher is None:
            return
        for operation_id in self.index.unpublished(self.clock() - PUBLISH_GRACE_SECONDS):
            if remaining_millis() < STOP_MARGIN_MILLIS:
                report.stopped_early = True
                return
            try:
                op = self.store.get(operation_id)
                if op is not None and lifecycle.unpublished(op):
                    announce(self.store, self.publisher, op, self.clock)
                    report.republished += 1
            except Exception:
                logger.exception("re-publishing failed", extra={"operationId": operation_id})
                report.errors += 1

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
