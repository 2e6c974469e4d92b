"""Local event sources: the SQS event source mapping and EventBridge schedules of the template.

`SqsPoller` does what Lambda's SQS poller does: receive up to `BatchSize` messages, invoke the function with
an SQS event, then delete what succeeded — with `ReportBatchItemFailures`, everything but the reported
`itemIdentifier`s (an invalid report fails the whole batch); without it, all or (on an error) nothing.
Messages not deleted come back when their visibility timeout ends, and SQS's own RedrivePolicy (which the
emulator honours) moves a message received `maxReceiveCount` times to the DLQ. Concurrency is the
mapping's `MaximumConcurrency`, bounded by the function's local pool.

`ScheduleRunner` invokes a scheduled function every BILLPAY_SWEEP_INTERVAL_SECONDS (default 60, as the
template's one-minute rate) with an EventBridge "Scheduled Event". Runs do not overlap: the next starts
once the interval has passed and the previous run has returned.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from local.emulator import ACCOUNT_ID, REGION, client
from local.gateway.workers import FunctionPool
from local.template import Schedule, SqsSource

_WAIT_SECONDS = 1  # long-poll wait: short, so a stopping stack is not held up
_ERROR_BACKOFF_SECONDS = 1.0


def _message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API shape -> Lambda event shape (camelCase, lists always present, binary as base64)."""
    converted: dict[str, Any] = {}
    for name, value in attributes.items():
        binary = value.get("BinaryValue")
        converted[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if binary is not None else None,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])],
            "dataType": value["DataType"],
        }
    return converted


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS poller sends, from ReceiveMessage's messages."""
    records = []
    for message in messages:
        attributes = message.get("Attributes") or {}
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    name: attributes[name]
                    for name in (
                        "ApproximateReceiveCount",
                        "SentTimestamp",
                        "SenderId",
                        "ApproximateFirstReceiveTimestamp",
                        "MessageGroupId",
                        "MessageDeduplicationId",
                        "SequenceNumber",
                        "AWSTraceHeader",
                    )
                    if name in attributes
                },
                "messageAttributes": _message_attributes(message.get("MessageAttributes") or {}),
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def failed_message_ids(result: Any, message_ids: list[str]) -> set[str]:
    """Which messages to keep after a successful invocation with ReportBatchItemFailures.

    Lambda treats a malformed report (an identifier that is empty, not a string or not in the batch) as
    a failure of the whole batch.
    """
    if not isinstance(result, dict) or not result.get("batchItemFailures"):
        return set()
    failures = result["batchItemFailures"]
    known = set(message_ids)
    failed: set[str] = set()
    for failure in failures if isinstance(failures, list) else [None]:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in known:
            return known
        failed.add(identifier)
    return failed


class SqsPoller:
    def __init__(
        self,
        pool: FunctionPool,
        source: SqsSource,
        *,
        queue_url: str,
        queue_arn: str,
        endpoint_url: str,
        visibility_timeout: int | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.pool = pool
        self.source = source
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.endpoint_url = endpoint_url
        self.visibility_timeout = visibility_timeout
        self.log = log
        self.concurrency = min(source.maximum_concurrency or pool.size, pool.size)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.concurrency):
            thread = threading.Thread(
                target=self._run, name=f"sqs-{self.pool.spec.logical_id}-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=_WAIT_SECONDS + 2)

    def _run(self) -> None:
        sqs = client("sqs", self.endpoint_url)
        while not self._stop.is_set():
            try:
                self.poll_once(sqs)
            except Exception as exc:  # the emulator stopping, a transient error: keep polling
                if self._stop.is_set():
                    return
                self.log(f"{self.pool.spec.logical_id} poller: {type(exc).__name__}: {exc}")
                self._stop.wait(_ERROR_BACKOFF_SECONDS)

    def poll_once(self, sqs: Any) -> int:
        """One receive + invoke + delete cycle; returns how many messages it received."""
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": max(1, min(self.source.batch_size, 10)),
            "WaitTimeSeconds": _WAIT_SECONDS,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
        if self.visibility_timeout is not None:
            request["VisibilityTimeout"] = self.visibility_timeout
        messages: list[dict[str, Any]] = sqs.receive_message(**request).get("Messages", [])
        if not messages or self._stop.is_set():
            return len(messages)
        outcome = self.pool.invoke(sqs_event(messages, self.queue_arn))
        ids = [message["MessageId"] for message in messages]
        if outcome.error is not None:
            self.log(
                f"{self.pool.spec.logical_id}: invocation failed ({outcome.error.get('errorType')}: "
                f"{outcome.error.get('errorMessage')}); {len(messages)} message(s) return to the queue"
            )
            return len(messages)
        keep = failed_message_ids(outcome.result, ids) if self.source.report_batch_item_failures else set()
        done = [m for m in messages if m["MessageId"] not in keep]
        if done:
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(messages)


def scheduled_event(rule_name: str, now: dt.datetime | None = None) -> dict[str, Any]:
    moment = now or dt.datetime.now(dt.UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {},
    }


class ScheduleRunner:
    def __init__(
        self,
        pool: FunctionPool,
        schedule: Schedule,
        *,
        interval_seconds: float,
        log: Callable[[str], None] = print,
    ) -> None:
        self.pool = pool
        self.schedule = schedule
        self.interval = interval_seconds
        self.log = log
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"schedule-{pool.spec.logical_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        rule = f"billpay-local-{self.pool.spec.logical_id}-{self.schedule.event_name}"
        next_run = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_run - time.monotonic())):
            next_run = time.monotonic() + self.interval
            try:
                outcome = self.pool.invoke(scheduled_event(rule))
            except Exception as exc:  # the pool closing under us
                if not self._stop.is_set():
                    self.log(f"{self.pool.spec.logical_id}: {type(exc).__name__}: {exc}")
                continue
            self.runs += 1
            if outcome.error is not None:
                self.log(
                    f"{self.pool.spec.logical_id}: scheduled run failed "
                    f"({outcome.error.get('errorType')}: {outcome.error.get('errorMessage')})\n"
                    + "".join(outcome.error.get("stackTrace") or [])
                )
