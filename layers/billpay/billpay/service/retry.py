"""The retry worker's one step per message, and the retry planner the write flow uses
(docs/contract.md, Retries).

A message is (operation id, lease token) from the sweeper. The worker:
1. reads the record (consistent) and acts only if the message's token is still the record's token on a
   `pending`/`sent` record — otherwise the message is simply deleted: the sweeper owns recovery;
2. builds its Codat client and fetches the key, and only then computes its lease and send timeout from the
   time left (a slow key fetch must not leave it holding a lease that ends before its own send);
3. takes over the lease with a new token of its own (`lifecycle.take_due`), counting the attempt in that
   same conditional write before anything is sent — or, if the retry window closed, ends the operation;
4. sends the stored upstream key and bytes and settles through the write flow's `send_and_settle`.

An exception escapes only before the lease is taken (nothing counted: SQS redelivers, then dead-letters);
after it nothing escapes — an operation whose settle could not be written is due again when the lease
expires.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from aws_lambda_powertools.metrics import MetricUnit

from billpay.config import get_settings
from billpay.domain import lifecycle
from billpay.domain.operations import Operation, lease_until, new_lease_token
from billpay.domain.outcomes import Outcome
from billpay.domain.ports import EventPublisher, OperationStore, RetryMessage
from billpay.domain.retry_policy import RetryPolicy, UniformSource
from billpay.observability import logger, metrics
from billpay.service.write_operation import (
    DEFAULT_SETTLE_RESERVE_SECONDS,
    QueueHandOff,
    Sender,
    announce,
    prepare_sender,
    send_and_settle,
    write,
)

# The retry worker's Lambda timeout (template.yaml): a lease handed to the queue runs to the retry's time
# plus this, so a worker that takes the message can always finish inside it.
WORKER_TIMEOUT_SECONDS: Final = 90.0
# An attempt with less time than this cannot be trusted to finish: leave the message to the sweeper.
MIN_ATTEMPT_SECONDS: Final = 1.0

Disposition = Literal["stale", "no_time", "ended", "settled", "unsettled"]


def policy_from_settings() -> RetryPolicy:
    settings = get_settings()
    return RetryPolicy(
        window_seconds=settings.retry_window_seconds,
        base_delay_seconds=settings.retry_base_delay_seconds,
        max_delay_seconds=settings.retry_max_delay_seconds,
    )


class PolicyPlanner:
    """The write flow's `RetryPlanner`: when a transient outcome is next tried, or None once the window
    has closed (the attempt's settle then ends the operation: `failed` only if every attempt was clear)."""

    def __init__(self, policy: RetryPolicy, rng: UniformSource | None = None) -> None:
        self.policy = policy
        self.rng: UniformSource = rng or random.SystemRandom()

    @classmethod
    def from_settings(cls) -> PolicyPlanner:
        return cls(policy_from_settings())

    def __call__(self, op: Operation, outcome: Outcome, now: float) -> float | None:
        first = op.first_attempt_at
        if first is None or self.policy.window_closed(first, now):
            return None
        return self.policy.next_attempt_at(
            now=now,
            attempts=op.attempts,
            first_attempt_at=first,
            rng=self.rng,
            retry_after=outcome.retry_after,
        )


@dataclass(frozen=True, slots=True)
class Processed:
    disposition: Disposition
    status: str | None = None


class RetryWorker:
    def __init__(
        self,
        *,
        store: OperationStore,
        sender: Sender | Callable[[], Sender],
        planner: PolicyPlanner,
        upstream_timeout: float,
        hand_off: QueueHandOff | None = None,
        publisher: EventPublisher | None = None,
        settle_reserve: float = DEFAULT_SETTLE_RESERVE_SECONDS,
        clock: Callable[[], float] = time.time,
        new_token: Callable[[], str] = new_lease_token,
    ) -> None:
        self.settle_reserve = settle_reserve
        self.store = store
        self._sender = sender
        self.planner = planner
        self.upstream_timeout = upstream_timeout
        self.hand_off = hand_off
        self.publisher = publisher
        self.clock = clock
        self.new_token = new_token

    @classmethod
    def from_settings(cls) -> RetryWorker:
        from billpay.adapters.aws_sdk import worst_case_call_seconds  # noqa: PLC0415
        from billpay.adapters.codat import get_codat_client  # noqa: PLC0415 — httpx only when a worker runs
        from billpay.adapters.events_eventbridge import event_publisher  # noqa: PLC0415
        from billpay.adapters.operations_dynamodb import operation_store  # noqa: PLC0415
        from billpay.adapters.retry_queue_sqs import retry_queue  # noqa: PLC0415

        settings = get_settings()
        return cls(
            store=operation_store(settings.table_name),
            sender=get_codat_client,
            planner=PolicyPlanner.from_settings(),
            upstream_timeout=settings.upstream_timeout_seconds,
            hand_off=QueueHandOff(retry_queue(settings.queue_url), WORKER_TIMEOUT_SECONDS),
            publisher=event_publisher(settings),
            settle_reserve=worst_case_call_seconds(settings),
        )

    @property
    def sender(self) -> Sender:
        return self._sender() if callable(self._sender) else self._sender

    def process_message(
        self, body: str, *, remaining_millis: Callable[[], int], receive_count: int = 1
    ) -> Processed:
        """Handle one retry message. Raises only before a lease is taken (the record then redelivers)."""
        message = RetryMessage.from_body(body)  # a malformed body raises: redelivered, then dead-lettered
        logger.append_keys(operationId=message.operation_id)
        try:
            return self._process(message, remaining_millis, receive_count)
        finally:
            logger.remove_keys(["operationId"])

    def _process(
        self, message: RetryMessage, remaining_millis: Callable[[], int], receive_count: int
    ) -> Processed:
        op = self.store.get(message.operation_id)
        if (
            op is None
            or op.lease_token != message.lease_token
            or op.status != "pending"
            or op.phase != "sent"
        ):
            logger.info(
                "retry message no longer holds the lease: deleted (the sweeper owns recovery)",
                extra={"status": op.status if op else None, "receiveCount": receive_count},
            )
            return Processed("stale", op.status if op else None)

        # Built (and its key fetched) before anything is taken: a client that cannot be built raises while
        # nothing is counted (SQS redelivers), instead of an attempt counted, never sent, and then taken
        # as may-be-applied.
        sender = self.sender
        prepare_sender(sender)

        # The lease and the send timeout come from the time left now, after the preparation.
        now = self.clock()
        timeout = min(self.upstream_timeout, remaining_millis() / 1000.0 - self.settle_reserve)
        if timeout < MIN_ATTEMPT_SECONDS:
            # Not enough time to send and settle: take nothing; due again when the sweeper's lease expires.
            logger.warning("too little time left for an attempt: message left to the sweeper")
            return Processed("no_time")
        taking = lifecycle.take_due(
            op,
            policy=self.planner.policy,
            holder="worker",
            token=self.new_token(),
            lease_until=lease_until(now, remaining_millis()),
            now=now,
            count_attempt=True,
            require_lapsed=False,
        )
        written = write(self.store, taking)
        if not written.known:
            raise RuntimeError("could not learn whether the lease was taken; the message is redelivered")
        if not written.applied:
            logger.info("lease taken by someone else before the attempt: message deleted")
            return Processed("stale")
        held = taking.ours
        if taking.name == "end_window":
            if self.publisher is not None:
                announce(self.store, self.publisher, held, self.clock)
            _count_end(held.status)
            logger.warning(
                "retry window closed: operation ended",
                extra={"status": held.status, "attempts": op.attempts, "clearAttempts": op.clear_attempts},
            )
            return Processed("ended", held.status)

        # The lease is ours and the attempt counted: from here on nothing may raise.
        metrics.add_metric(name="RetryAttempted", unit=MetricUnit.Count, value=1)
        logger.info("retry attempt", extra={"attempts": held.attempts, "leaseUntil": held.lease_until})
        try:
            settled = send_and_settle(
                self.store,
                sender,
                held,
                timeout=timeout,
                retry_planner=self.planner,
                hand_off=self.hand_off,
                publisher=self.publisher,
                clock=self.clock,
            )
        except Exception:
            logger.exception("retry attempt failed unexpectedly; due again when its lease expires")
            return Processed("unsettled")
        if not settled.stored:
            # The settle was not written: the record stays `sent` under our lease, due when it expires.
            return Processed("unsettled", settled.op.status)
        _count_end(settled.op.status)
        logger.info(
            "retry attempt settled",
            extra={
                "status": settled.op.status,
                "attempts": settled.op.attempts,
                "clearAttempts": settled.op.clear_attempts,
                "nextAttemptAt": settled.op.next_attempt_at,
            },
        )
        return Processed("settled", settled.op.status)


_END_METRICS: Final = {
    "succeeded": "RetrySucceeded",
    "failed": "RetryFailed",
    "needs_review": "RetryNeedsReview",
    "pending": "RetryRescheduled",
}


def _count_end(status: str) -> None:
    name = _END_METRICS.get(status)
    if name:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
