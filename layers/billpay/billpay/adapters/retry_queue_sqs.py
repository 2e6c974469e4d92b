"""The retry queue (SQS): the sweeper's hand-off of a leased operation to the retry worker (DESIGN §4).

A message carries only the operation id and the lease token the sweeper took: the operation record is the
state, the message is a nudge. A message that is lost, late or duplicated is harmless — the worker acts only
while the token still holds the lease, and an operation whose message never arrives is due again when the
lease expires.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from billpay.adapters.aws_sdk import client_config

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# SendMessageBatch takes at most ten entries.
_BATCH = 10


class BadRetryMessage(ValueError):
    """A message body that is not {"operationId": str, "leaseToken": str}."""


@dataclass(frozen=True, slots=True)
class RetryMessage:
    operation_id: str
    lease_token: str

    def to_body(self) -> str:
        return json.dumps({"operationId": self.operation_id, "leaseToken": self.lease_token}, sort_keys=True)

    @classmethod
    def from_body(cls, body: str) -> RetryMessage:
        try:
            data: Any = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise BadRetryMessage("retry message is not JSON") from exc
        if not isinstance(data, dict):
            raise BadRetryMessage("retry message is not a JSON object")
        operation_id = data.get("operationId")
        lease_token = data.get("leaseToken")
        if not (
            isinstance(operation_id, str) and operation_id and isinstance(lease_token, str) and lease_token
        ):
            raise BadRetryMessage("retry message lacks operationId or leaseToken")
        return cls(operation_id=operation_id, lease_token=lease_token)


def sqs_client() -> SQSClient:
    """An SQS client with bounded timeouts; endpoint from AWS_ENDPOINT_URL like every other client."""
    # Deferred: boto3 costs cold-start time, paid only by functions that send.
    import boto3  # noqa: PLC0415

    return boto3.client("sqs", config=client_config())


class RetryQueue:
    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self._queue_url = queue_url
        self._client = client

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = sqs_client()
        return self._client

    def enqueue(self, messages: Sequence[RetryMessage]) -> list[RetryMessage]:
        """Send the messages; return those that could not be sent (they are simply due again later).

        Never raises for a send failure: the caller already holds the leases, and an unsent operation is
        recovered by the next sweep once its lease expires.
        """
        failed: list[RetryMessage] = []
        for start in range(0, len(messages), _BATCH):
            chunk = list(messages[start : start + _BATCH])
            entries = [{"Id": str(i), "MessageBody": m.to_body()} for i, m in enumerate(chunk)]
            try:
                response = self.client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)  # type: ignore[arg-type]
            except Exception:
                failed.extend(chunk)
                continue
            failed.extend(chunk[int(entry["Id"])] for entry in response.get("Failed", []))
        return failed
