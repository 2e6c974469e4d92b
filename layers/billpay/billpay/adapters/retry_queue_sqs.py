"""The retry queue (SQS): the sweeper's hand-off of a leased operation to the retry worker.

See docs/contract.md, Retries.

A message carries only the operation id and the lease token the sweeper took: the operation record is the
state, the message is a nudge. A message that is lost, late or duplicated is harmless — the worker acts only
while the token still holds the lease, and an operation whose message never arrives is due again when the
lease expires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from billpay.adapters.aws_sdk import client_config
from billpay.domain.ports import RetryMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# SendMessageBatch takes at most ten entries.
_BATCH = 10


def sqs_client() -> SQSClient:
    """An SQS client with bounded timeouts; endpoint from AWS_ENDPOINT_URL like every other client."""
    # Deferred: boto3 costs cold-start time, paid only by functions that send.
    import boto3  # noqa: PLC0415

    return boto3.client("sqs", config=client_config())


class SqsRetryQueue:
    """The `RetryQueue` port on SQS."""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self._queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = sqs_client()
        return self._client

    def enqueue(self, messages: Sequence[RetryMessage], *, delay_seconds: int = 0) -> list[RetryMessage]:
        """Send the messages; return those that could not be sent (they are simply due again later).

        Never raises for a send failure: the caller already holds the leases, and an unsent operation is
        recovered by the next sweep once its lease expires.
        """
        failed: list[RetryMessage] = []
        for start in range(0, len(messages), _BATCH):
            chunk = list(messages[start : start + _BATCH])
            entries = [
                {"Id": str(i), "MessageBody": m.to_body(), "DelaySeconds": min(max(delay_seconds, 0), 900)}
                for i, m in enumerate(chunk)
            ]
            try:
                response = self.client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)  # type: ignore[arg-type]
            except Exception:
                failed.extend(chunk)
                continue
            failed.extend(chunk[int(entry["Id"])] for entry in response.get("Failed", []))
        return failed


_queues: dict[str, SqsRetryQueue] = {}


def retry_queue(queue_url: str) -> SqsRetryQueue:
    """The container's queue for `queue_url` (its client, and boto3's SQS model, built on first send)."""
    queue = _queues.get(queue_url)
    if queue is None:
        queue = _queues.setdefault(queue_url, SqsRetryQueue(queue_url))
    return queue
