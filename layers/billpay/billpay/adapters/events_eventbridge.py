"""The `EventPublisher` port on EventBridge: one PutEvents per batch of up to ten terminal events.

boto3 is imported on first use: every function that publishes already loaded it for DynamoDB, and none
that does not publish pays for it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from billpay.adapters.aws_sdk import client_config
from billpay.config import Settings
from billpay.domain.events import EVENT_SOURCE, OperationEvent

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

_BATCH: Final = 10  # PutEvents takes at most ten entries


class EventBridgePublisher:
    def __init__(self, bus_name: str, client: EventBridgeClient | None = None) -> None:
        self.bus_name = bus_name
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> EventBridgeClient:
        with self._lock:
            if self._client is None:
                import boto3  # noqa: PLC0415

                self._client = boto3.client("events", config=client_config())
            return self._client

    def publish(self, events: Sequence[OperationEvent]) -> list[OperationEvent]:
        unsent: list[OperationEvent] = []
        for start in range(0, len(events), _BATCH):
            chunk = list(events[start : start + _BATCH])
            entries: list[Any] = [
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": event.detail_type,
                    "Detail": json.dumps(event.detail, sort_keys=True),
                    "EventBusName": self.bus_name,
                }
                for event in chunk
            ]
            try:
                answer = self.client.put_events(Entries=entries)
            except Exception:
                unsent.extend(chunk)
                continue
            for event, result in zip(chunk, answer.get("Entries", []), strict=False):
                if result.get("ErrorCode"):
                    unsent.append(event)
        return unsent


_publishers: dict[str, EventBridgePublisher] = {}


def event_publisher(settings: Settings) -> EventBridgePublisher | None:
    """The container's publisher, or None where no bus is configured."""
    if not settings.event_bus_name:
        return None
    publisher = _publishers.get(settings.event_bus_name)
    if publisher is None:
        publisher = _publishers.setdefault(
            settings.event_bus_name, EventBridgePublisher(settings.event_bus_name)
        )
    return publisher
