"""What the life cycle needs of the outside world, as ports: the operations store, its index of unfinished
operations, and the retry queue. The DynamoDB and SQS adapters implement them for Lambda; an in-memory fake
(tests/fixtures/fake_store.py) implements them for the unit tier, with the faults our own side can have.

How a write can fail, and what each failure means for the caller (docs/contract.md, Operation life cycle):
- `Conflict`: the condition did not hold, so nothing changed; `current` is the item as it is now.
- `WriteUnknown`: the request may or may not have been applied (a timeout, a lost connection, a 5xx past
  the SDK's retries). Never "failed": the caller learns the truth with one consistent read.
- `WriteRejected`: refused for a reason no retry cures (the item too large, a validation error); not applied.
- `StoreUnavailable`: a read (or anything else) the store could not answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from billpay.domain.events import OperationEvent
    from billpay.domain.lifecycle import Transition
    from billpay.domain.operations import Operation


class StoreUnavailable(Exception):
    """Our own store did not answer (past the SDK's retries)."""


class WriteUnknown(StoreUnavailable):
    """A write whose effect on the item is unknown: it may have been applied."""


class WriteRejected(Exception):
    """A write the store refused for a non-transient reason; nothing was applied."""


class Conflict(Exception):  # a state, not a programming error
    """The transition's condition no longer holds; `current` is the item now (None when it is gone)."""

    def __init__(self, current: Operation | None) -> None:
        super().__init__("the record changed" if current is not None else "the record is gone")
        self.current = current


class OperationStore(Protocol):
    def get(self, operation_id: str) -> Operation | None:
        """A strongly consistent read of one operation."""

    def apply(self, transition: Transition) -> Operation | None:
        """Write `transition` as one conditional request; the state now stored (None after a release).

        Raises `Conflict`, `WriteUnknown`, `WriteRejected` or `StoreUnavailable`. A condition failure whose
        item carries the transition's own after-state (the SDK retried our applied write) is a success.
        """

    def stamp_client(self, operation_id: str, client_id: str) -> Operation | None:
        """Give an unowned (v1) record its client, once; the item as it now is (None: gone). It changes
        nothing a life-cycle condition reads, so it never disturbs a holder."""


class OperationIndex(Protocol):
    """The sparse index of unfinished operations: candidates only, re-read on the base item before use."""

    def due_pending(self, now: float) -> Iterator[str]:
        """Ids of pending operations due by `now`, oldest due first."""

    def unpublished(self, before: float) -> Iterator[str]:
        """Candidates for a terminal event not yet published (listed before `before`): the ended operations
        waiting in the `unpublished` bucket and every `needs_review`; each is re-read before publishing."""

    def open_reviews(self) -> int: ...

    def oldest_pending_first_attempt(self) -> float | None: ...


class BadRetryMessage(ValueError):
    """A message body that is not {"operationId": str, "leaseToken": str}."""


@dataclass(frozen=True, slots=True)
class RetryMessage:
    """A nudge to the retry worker: the record is the state, the message only names it and the lease."""

    operation_id: str
    lease_token: str

    def to_body(self) -> str:
        return json.dumps({"operationId": self.operation_id, "leaseToken": self.lease_token}, sort_keys=True)

    @classmethod
    def from_body(cls, body: str) -> RetryMessage:
        try:
            data: Any = json.loads(body)
        except (TypeError, ValueError, RecursionError) as exc:
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


class RetryQueue(Protocol):
    def enqueue(self, messages: Sequence[RetryMessage], *, delay_seconds: int = 0) -> list[RetryMessage]:
        """Send the messages, each delivered no sooner than `delay_seconds` (at most 900); return those not
        sent (never raises: an unsent one is due again when its lease lapses)."""


class EventPublisher(Protocol):
    def publish(self, events: Sequence[OperationEvent]) -> list[OperationEvent]:
        """Put the events on the bus; return those not put (never raises: the sweeper re-publishes)."""
