"""The bill index on DynamoDB (`BillIndexTable`): one item per bill of a connection, one sync-state item.

Keys: `pk` = `<companyId>#<connectionId>`; `sk` = `bill#<billId>` for a bill, `sync` for the state.
A bill item: `billId`, `status`, `currency`, `amountDue` (N; absent when the platform reports none),
`available` (N; `amountDue` - `reservedTotal`), `modified` (the sortable sourceModifiedDate), `seenAt`,
`body` (the bill as Codat returned it, JSON; amounts as strings), `reservations` (M, created empty: keyed
by operation id + claim token once payments reserve) and `reservedTotal` (N, 0). A refresh never changes
the last two, and recomputes `available` from `reservedTotal`, so a condition `available >= :amount`
stays exact.

Every write is one conditional request (the rules are `billpay.domain.bill_index`'s):
- a bill: UpdateItem, `attribute_not_exists(sk) OR modified <= :modified` (never backwards);
- the state: PutItem, conditional on the `version` read (or on there being none);
- a drop: DeleteItem, conditional on `seenAt` before the sync began and nothing reserved.
A bill write whose condition fails changed nothing and needs nothing more: a newer copy is there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from billpay.domain.bill_index import ConnectionKey, IndexedBill, SyncState
from billpay.domain.reservations import Reservation, reflected

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

Item = Mapping[str, Any]

STATE_SK: Final = "sync"
BILL_PREFIX: Final = "bill#"
# Bills of one page are written concurrently: a first sync of thousands of bills is one UpdateItem each.
WRITE_THREADS: Final = 16
# BatchGetItem reads at most 100 keys; unprocessed keys (throttling) are asked for again a few times.
BATCH_GET_KEYS: Final = 100
BATCH_GET_ROUNDS: Final = 5

_CLIENT_CONFIG: Final = Config(
    connect_timeout=2,
    read_timeout=3,
    retries={"mode": "standard", "max_attempts": 4},
    tcp_keepalive=True,
    max_pool_connections=WRITE_THREADS + 8,
)


def partition(key: ConnectionKey) -> str:
    return f"{key[0]}#{key[1]}"


def _n(value: float | int | Decimal) -> dict[str, str]:
    return {"N": str(value) if isinstance(value, Decimal) else repr(value)}


def _number(item: Item, name: str) -> Decimal | None:
    value = item.get(name)
    return Decimal(value["N"]) if value and "N" in value else None


def _string(item: Item, name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def _bill_from_item(item: Item) -> IndexedBill:
    seen = _number(item, "seenAt")
    body = _string(item, "body")
    return IndexedBill(
        bill_id=_string(item, "billId") or "",
        status=_string(item, "status"),
        currency=_string(item, "currency"),
        amount_due=_number(item, "amountDue"),
        modified=_string(item, "modified") or "",
        seen_at=float(seen) if seen is not None else 0.0,
        body=json.loads(body) if body else {},
        reserved=_number(item, "reservedTotal") or Decimal(0),
        reservations=_reservations(item),
    )


def _reservations(item: Item) -> tuple[Reservation, ...]:
    found: list[Reservation] = []
    for key, value in (item.get("reservations") or {}).get("M", {}).items():
        entry = value.get("M", {})
        applied = _number(entry, "appliedAt")
        found.append(
            Reservation(
                key=key,
                operation_id=_string(entry, "operationId") or "",
                amount=_number(entry, "amount") or Decimal(0),
                state="applied" if _string(entry, "state") == "applied" else "held",
                at=float(_number(entry, "at") or 0),
                applied_at=float(applied) if applied is not None else None,
            )
        )
    return tuple(found)


def _state_from_item(item: Item) -> SyncState:
    def seconds(name: str) -> float | None:
        value = _number(item, name)
        return float(value) if value is not None else None

    version = _number(item, "version")
    return SyncState(
        watermark=seconds("watermark"),
        full_sync_at=seconds("fullSyncAt"),
        sync_started_at=seconds("syncStartedAt"),
        sync_token=_string(item, "syncToken"),
        version=int(version) if version is not None else 0,
    )


def _state_item(key: ConnectionKey, state: SyncState) -> Item:
    item: dict[str, Any] = {"pk": {"S": partition(key)}, "sk": {"S": STATE_SK}, "version": _n(state.version)}
    for name, value in (
        ("watermark", state.watermark),
        ("fullSyncAt", state.full_sync_at),
        ("syncStartedAt", state.sync_started_at),
    ):
        if value is not None:
            item[name] = _n(value)
    if state.sync_token is not None:
        item["syncToken"] = {"S": state.sync_token}
    return item


def _conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoDBBillIndex:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client: DynamoDBClient = client or boto3.client("dynamodb", config=_CLIENT_CONFIG)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="bill-index")
        return self._pool

    # --- the sync state ---------------------------------------------------------------------------------

    def state(self, key: ConnectionKey) -> SyncState | None:
        answer = self._client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": partition(key)}, "sk": {"S": STATE_SK}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return _state_from_item(item) if item else None

    def write_state(self, key: ConnectionKey, before: SyncState | None, after: SyncState) -> bool:
        condition: dict[str, Any]
        if before is None:
            condition = {"ConditionExpression": "attribute_not_exists(sk)"}
        else:
            condition = {
                "ConditionExpression": "version = :version",
                "ExpressionAttributeValues": {":version": _n(before.version)},
            }
        try:
            self._client.put_item(TableName=self.table_name, Item=_state_item(key, after), **condition)
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise
        return True

    # --- bills ------------------------------------------------------------------------------------------

    def bill(self, key: ConnectionKey, bill_id: str) -> IndexedBill | None:
        answer = self._client.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": partition(key)}, "sk": {"S": BILL_PREFIX + bill_id}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return _bill_from_item(item) if item else None

    def _items(self, key: ConnectionKey) -> Iterator[Item]:
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": partition(key)}, ":prefix": {"S": BILL_PREFIX}},
            ConsistentRead=True,
        ):
            yield from page.get("Items", [])

    def bills(self, key: ConnectionKey) -> list[IndexedBill]:
        return [_bill_from_item(item) for item in self._items(key)]

    def put_bills(self, key: ConnectionKey, bills: Sequence[IndexedBill]) -> None:
        if len(bills) <= 1:
            for bill in bills:
                self._put_bill(key, bill)
            return
        # list(): surface the first failure of any write here, in the caller's thread.
        list(self._executor().map(lambda bill: self._put_bill(key, bill), bills))

    def _put_bill(self, key: ConnectionKey, bill: IndexedBill) -> None:
        names = {"#status": "status", "#modified": "modified"}
        values: dict[str, Any] = {
            ":id": {"S": bill.bill_id},
            ":modified": {"S": bill.modified},
            ":seen": _n(bill.seen_at),
            ":body": {"S": bill.body_json()},
        }
        # The reservations map and its total exist from the first write, so a reservation can SET one
        # entry (`reservations.#key`) and add to the total without a first-writer special case.
        values[":zero"] = _n(0)
        values[":none"] = {"M": {}}
        sets = [
            "billId = :id",
            "#modified = :modified",
            "seenAt = :seen",
            "body = :body",
            "reservations = if_not_exists(reservations, :none)",
            "reservedTotal = if_not_exists(reservedTotal, :zero)",
        ]
        removes: list[str] = []
        for attribute, placeholder, value in (
            ("#status", ":status", bill.status),
            ("currency", ":currency", bill.currency),
        ):
            if value is None:
                removes.append(attribute)
            else:
                sets.append(f"{attribute} = {placeholder}")
                values[placeholder] = {"S": value}
        if bill.amount_due is None:
            removes += ["amountDue", "available"]
        else:
            values[":due"] = _n(bill.amount_due)
            sets += ["amountDue = :due", "available = :due - if_not_exists(reservedTotal, :zero)"]
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": partition(key)}, "sk": {"S": BILL_PREFIX + bill.bill_id}},
                UpdateExpression=expression,
                ConditionExpression="attribute_not_exists(sk) OR #modified <= :modified",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise

    def _bill_key(self, key: ConnectionKey, bill_id: str) -> Item:
        return {"pk": {"S": partition(key)}, "sk": {"S": BILL_PREFIX + bill_id}}

    def reserve(self, key: ConnectionKey, bill_id: str, reservation: Reservation) -> bool:
        entry = {
            "operationId": {"S": reservation.operation_id},
            "amount": _n(reservation.amount),
            "state": {"S": reservation.state},
            "at": _n(round(reservation.at, 3)),
        }
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=self._bill_key(key, bill_id),
                # `available` is only meaningful (and only checked) while the bill reports amountDue; a
                # refresh recomputes it from amountDue and reservedTotal either way.
                UpdateExpression=(
                    "SET reservations.#k = :entry, reservedTotal = reservedTotal + :amount, "
                    "available = if_not_exists(available, :zero) - :amount"
                ),
                ConditionExpression=(
                    "attribute_exists(sk) AND attribute_not_exists(reservations.#k) "
                    "AND (attribute_not_exists(amountDue) OR available >= :amount)"
                ),
                ExpressionAttributeNames={"#k": reservation.key},
                ExpressionAttributeValues={
                    ":entry": {"M": entry},
                    ":amount": _n(reservation.amount),
                    ":zero": _n(0),
                },
            )
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise
        return True

    def apply_reservation(self, key: ConnectionKey, bill_id: str, reservation_key: str, at: float) -> None:
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=self._bill_key(key, bill_id),
                UpdateExpression="SET reservations.#k.#state = :applied, reservations.#k.appliedAt = :at",
                ConditionExpression="attribute_exists(reservations.#k)",
                ExpressionAttributeNames={"#k": reservation_key, "#state": "state"},
                ExpressionAttributeValues={":applied": {"S": "applied"}, ":at": _n(round(at, 3))},
            )
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise

    def free(self, key: ConnectionKey, bill_id: str, reservation: Reservation) -> None:
        try:
            self._client.update_item(
                TableName=self.table_name,
                Key=self._bill_key(key, bill_id),
                UpdateExpression=(
                    "REMOVE reservations.#k SET reservedTotal = reservedTotal - :amount, "
                    "available = if_not_exists(available, :zero) + :amount"
                ),
                ConditionExpression="attribute_exists(reservations.#k)",
                ExpressionAttributeNames={"#k": reservation.key},
                ExpressionAttributeValues={":amount": _n(reservation.amount), ":zero": _n(0)},
            )
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise

    def drop(self, key: ConnectionKey, bill_ids: Sequence[str], sync_started_at: float) -> int:
        def delete(bill_id: str) -> int:
            try:
                self._client.delete_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": partition(key)}, "sk": {"S": BILL_PREFIX + bill_id}},
                    ConditionExpression=(
                        "seenAt < :started AND (attribute_not_exists(reservedTotal) OR reservedTotal = :zero)"
                    ),
                    ExpressionAttributeValues={":started": _n(sync_started_at), ":zero": _n(0)},
                )
            except ClientError as exc:
                if _conditional_failure(exc):
                    return 0
                raise
            return 1

        return sum(self._executor().map(delete, bill_ids))

    # --- the list-bills route -------------------------------------------------------------------------

    def bills_after(self, key: ConnectionKey, after: str | None, limit: int) -> list[IndexedBill]:
        found: list[IndexedBill] = []
        start: dict[str, Any] | None = (
            {"pk": {"S": partition(key)}, "sk": {"S": BILL_PREFIX + after}} if after is not None else None
        )
        while len(found) < limit:
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
                "ExpressionAttributeValues": {":pk": {"S": partition(key)}, ":prefix": {"S": BILL_PREFIX}},
                "ConsistentRead": True,
                "Limit": limit - len(found),
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            answer = self._client.query(**request)
            found += [_bill_from_item(item) for item in answer.get("Items", [])]
            start = answer.get("LastEvaluatedKey")
            if not start:
                break
        return found

    def reserved_totals(self, key: ConnectionKey, bill_ids: Sequence[str]) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        unique = list(dict.fromkeys(bill_ids))
        for start in range(0, len(unique), BATCH_GET_KEYS):
            keys: list[dict[str, Any]] = [
                {"pk": {"S": partition(key)}, "sk": {"S": BILL_PREFIX + bill_id}}
                for bill_id in unique[start : start + BATCH_GET_KEYS]
            ]
            for _ in range(BATCH_GET_ROUNDS):
                answer = self._client.batch_get_item(
                    RequestItems={
                        self.table_name: {
                            "Keys": keys,
                            "ProjectionExpression": "billId, reservations, seenAt",
                            "ConsistentRead": True,
                        }
                    }
                )
                for item in answer.get("Responses", {}).get(self.table_name, []):
                    seen = float(_number(item, "seenAt") or 0)
                    totals[_string(item, "billId") or ""] = sum(
                        (r.amount for r in _reservations(item) if not reflected(r, seen)), start=Decimal(0)
                    )
                unprocessed: Mapping[str, Any] = answer.get("UnprocessedKeys") or {}
                keys = list((unprocessed.get(self.table_name) or {}).get("Keys") or [])
                if not keys:
                    break
            else:
                raise RuntimeError("the bill index left keys unprocessed after every round")
        totals.pop("", None)
        return totals
