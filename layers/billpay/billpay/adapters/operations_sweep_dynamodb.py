"""The `OperationIndex` port on DynamoDB: what the sweeper reads from the operations table's sparse index
beyond single items (which `operations_dynamodb.DynamoOperationStore` reads and writes):

- paging the sparse index `UnfinishedByDue` (eventually consistent: only ever a list of candidates; every
  decision is a conditional write on the base item);
- counting open reviews and finding the oldest unfinished operation, for the gauges.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from billpay.adapters.operations_dynamodb import DynamoOperationStore, from_attribute, to_attribute
from billpay.domain.operations import DUE_BUCKET_NEEDS_REVIEW, DUE_BUCKET_PENDING, DUE_BUCKET_UNPUBLISHED

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

INDEX_NAME: Final = "UnfinishedByDue"
_PAGE_SIZE: Final = 200


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the sparse index: a candidate, to be re-read on the base item before anything is done."""

    operation_id: str
    due_bucket: str
    due_at: float
    first_attempt_at: float | None


class SweepIndex:
    def __init__(self, store: DynamoOperationStore) -> None:
        self.store = store

    @property
    def client(self) -> DynamoDBClient:
        return self.store.client

    def entries(self, bucket: str, *, due_by: float | None = None) -> Iterator[IndexEntry]:
        """Index rows of one bucket in `dueAt` order (only those due by `due_by` when given), paged lazily."""
        names = {"#b": "dueBucket"}
        values: dict[str, Any] = {":b": {"S": bucket}}
        condition = "#b = :b"
        if due_by is not None:
            names["#d"] = "dueAt"
            values[":d"] = to_attribute(float(due_by))
            condition += " AND #d <= :d"
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.store.table_name,
                "IndexName": INDEX_NAME,
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "Limit": _PAGE_SIZE,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                first = item.get("firstAttemptAt")
                yield IndexEntry(
                    operation_id=str(item["operationId"]["S"]),
                    due_bucket=str(item["dueBucket"]["S"]),
                    due_at=float(from_attribute(item["dueAt"])),
                    first_attempt_at=float(from_attribute(first)) if first is not None else None,
                )
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def due_pending(self, now: float) -> Iterator[str]:
        return (entry.operation_id for entry in self.entries(DUE_BUCKET_PENDING, due_by=now))

    def unpublished(self, before: float) -> Iterator[str]:
        # Ended operations wait in their own bucket; a needs_review stays in its (small) bucket, counted.
        for bucket in (DUE_BUCKET_UNPUBLISHED, DUE_BUCKET_NEEDS_REVIEW):
            yield from (entry.operation_id for entry in self.entries(bucket, due_by=before))

    def count(self, bucket: str) -> int:
        total = 0
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.store.table_name,
                "IndexName": INDEX_NAME,
                "KeyConditionExpression": "#b = :b",
                "ExpressionAttributeNames": {"#b": "dueBucket"},
                "ExpressionAttributeValues": {":b": {"S": bucket}},
                "Select": "COUNT",
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self.client.query(**kwargs)
            total += int(page.get("Count", 0))
            start = page.get("LastEvaluatedKey")
            if not start:
                return total

    def open_reviews(self) -> int:
        return self.count(DUE_BUCKET_NEEDS_REVIEW)

    def oldest_pending_first_attempt(self) -> float | None:
        """The earliest `firstAttemptAt` among pending operations (the index projects it), or None."""
        oldest: float | None = None
        for entry in self.entries(DUE_BUCKET_PENDING):
            if entry.first_attempt_at is not None and (oldest is None or entry.first_attempt_at < oldest):
                oldest = entry.first_attempt_at
        return oldest
