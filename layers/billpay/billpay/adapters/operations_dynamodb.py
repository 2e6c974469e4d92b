"""The operations table (DynamoDB): the `OperationStore` port, one item per write.

It writes what the life cycle computed (`billpay.domain.lifecycle.Transition`) as ONE conditional request —
PutItem for a claim, DeleteItem for a release, UpdateItem (only the attributes that change) otherwise — and
builds no state itself. The condition is the transition's: the version, token, phase and status it was
computed from, plus its lease-time rule.

Every conditional write asks for ALL_OLD on failure. If the item it returns shows the transition's own
after-state, the failure is our own write retried by the SDK after a lost answer: that counts as success.
Otherwise nothing changed and `Conflict` carries the item as it is. Any other failure of a write is
`WriteUnknown` (it may have been applied; the caller learns the truth with one consistent read), except a
validation refusal (`WriteRejected`: the item too large, say), which no retry cures.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

# Imported at load, not on first use: every function that imports this adapter writes operations on its
# first invocation anyway, and Lambda's init phase (with its CPU boost) is the cheaper place to pay for it.
import boto3
from botocore.exceptions import BotoCoreError, ClientError

from billpay.adapters.aws_sdk import client_config
from billpay.domain.lifecycle import Transition
from billpay.domain.operations import Operation, Resolution, StoredBody, UpstreamRequest
from billpay.domain.ports import Conflict, StoreUnavailable, WriteRejected, WriteUnknown

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

# Attributes this module maps onto `Operation` fields; anything else on an item is carried in `extra`.
_KNOWN: Final = frozenset(
    {
        "operationId", "kind", "status", "phase", "requestHash", "upstreamKey", "upstreamRequest",
        "createdAt", "updatedAt", "attempts", "clearAttempts", "firstAttemptAt", "correlationIds",
        "leaseToken", "leaseHolder", "leaseUntil", "nextAttemptAt", "result", "error", "expiresAt",
        "dueBucket", "dueAt", "version", "resolution", "publishedVersion", "clientId", "claimToken",
    }
)  # fmt: skip


# -- serialisation ------------------------------------------------------------------------------------------


def _n(value: float | int) -> AttributeValue:
    if isinstance(value, int):
        return {"N": str(value)}
    if not math.isfinite(value):
        raise ValueError("DynamoDB numbers must be finite")
    # Millisecond precision is all a lease or schedule needs, and keeps numbers short and exact.
    return {"N": format(Decimal(repr(round(value, 3))).normalize(), "f")}


def _to_number(raw: str) -> float:
    return float(Decimal(raw))


def to_attribute(value: Any) -> AttributeValue:
    """Plain JSON-ish value → DynamoDB AttributeValue (numbers stay exact, no binary floats involved)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        return _n(value)
    if isinstance(value, Decimal):
        return {"N": format(value, "f")}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def from_attribute(av: Mapping[str, Any]) -> Any:
    """DynamoDB AttributeValue → plain value (numbers as int when integral, else float)."""
    if "S" in av:
        return av["S"]
    if "N" in av:
        number = Decimal(av["N"])
        return int(number) if number == number.to_integral_value() else float(number)
    if "BOOL" in av:
        return bool(av["BOOL"])
    if "NULL" in av:
        return None
    if "M" in av:
        return {k: from_attribute(v) for k, v in av["M"].items()}
    if "L" in av:
        return [from_attribute(v) for v in av["L"]]
    if "SS" in av:
        return list(av["SS"])
    raise TypeError(f"unsupported attribute value {sorted(av)}")


def to_item(op: Operation) -> Item:
    """The item for an `Operation`; attributes without a value are absent (that keeps the index sparse)."""
    item: Item = {
        "operationId": {"S": op.operation_id},
        "kind": {"S": op.kind},
        "status": {"S": op.status},
        "phase": {"S": op.phase},
        "requestHash": {"S": op.request_hash},
        "upstreamKey": {"S": op.upstream_key},
        "upstreamRequest": to_attribute(op.upstream_request.to_dict()),
        "createdAt": {"S": op.created_at},
        "updatedAt": {"S": op.updated_at},
        "attempts": {"N": str(op.attempts)},
        "clearAttempts": {"N": str(op.clear_attempts)},
        "correlationIds": {"L": [{"S": c} for c in op.correlation_ids]},
    }
    optional: dict[str, AttributeValue | None] = {
        "firstAttemptAt": _n(op.first_attempt_at) if op.first_attempt_at is not None else None,
        "leaseToken": {"S": op.lease_token} if op.lease_token is not None else None,
        "leaseHolder": {"S": op.lease_holder} if op.lease_holder is not None else None,
        "leaseUntil": _n(op.lease_until) if op.lease_until is not None else None,
        "nextAttemptAt": _n(op.next_attempt_at) if op.next_attempt_at is not None else None,
        "result": to_attribute(op.result.to_dict()) if op.result is not None else None,
        "error": to_attribute(dict(op.error)) if op.error is not None else None,
        "expiresAt": {"N": str(op.expires_at)} if op.expires_at is not None else None,
        "dueBucket": {"S": op.due_bucket} if op.due_bucket is not None else None,
        "dueAt": _n(op.due_at) if op.due_at is not None else None,
        "version": {"N": str(op.version)} if op.version else None,
        "resolution": to_attribute(op.resolution.to_dict()) if op.resolution is not None else None,
        "publishedVersion": {"N": str(op.published_version)} if op.published_version is not None else None,
        "clientId": {"S": op.client_id} if op.client_id is not None else None,
        "claimToken": {"S": op.claim_token} if op.claim_token is not None else None,
    }
    item.update({name: av for name, av in optional.items() if av is not None})
    for name, av in op.extra.items():
        if name not in _KNOWN:
            item[name] = dict(av)
    return item


def from_item(item: Mapping[str, Mapping[str, Any]]) -> Operation:
    def s(name: str) -> str | None:
        av = item.get(name)
        return str(av["S"]) if av is not None and "S" in av else None

    def num(name: str) -> float | None:
        av = item.get(name)
        return _to_number(av["N"]) if av is not None and "N" in av else None

    result = item.get("result")
    error = item.get("error")
    resolution = item.get("resolution")
    expires = num("expiresAt")
    return Operation(
        operation_id=str(item["operationId"]["S"]),
        kind=item["kind"]["S"],
        status=item["status"]["S"],
        phase=item["phase"]["S"],
        request_hash=str(item["requestHash"]["S"]),
        upstream_key=str(item["upstreamKey"]["S"]),
        upstream_request=UpstreamRequest.from_dict(from_attribute(item["upstreamRequest"])),
        created_at=str(item["createdAt"]["S"]),
        updated_at=str(item["updatedAt"]["S"]),
        attempts=int(num("attempts") or 0),
        clear_attempts=int(num("clearAttempts") or 0),
        first_attempt_at=num("firstAttemptAt"),
        correlation_ids=tuple(str(v["S"]) for v in item.get("correlationIds", {}).get("L", [])),
        lease_token=s("leaseToken"),
        lease_holder=s("leaseHolder"),  # type: ignore[arg-type]
        lease_until=num("leaseUntil"),
        next_attempt_at=num("nextAttemptAt"),
        result=StoredBody.from_dict(from_attribute(result)) if result is not None else None,
        error=from_attribute(error) if error is not None else None,
        expires_at=int(expires) if expires is not None else None,
        due_bucket=s("dueBucket"),
        due_at=num("dueAt"),
        version=int(num("version") or 0),
        published_version=int(published) if (published := num("publishedVersion")) is not None else None,
        resolution=Resolution.from_dict(from_attribute(resolution)) if resolution is not None else None,
        client_id=s("clientId"),
        claim_token=s("claimToken"),
        extra={name: dict(av) for name, av in item.items() if name not in _KNOWN},
    )


# -- the store ----------------------------------------------------------------------------------------------

_client_lock = threading.Lock()
_clients: dict[str, DynamoDBClient] = {}


def dynamodb_client() -> DynamoDBClient:
    """One client per container (endpoint from AWS_ENDPOINT_URL), built on first use, never at import."""
    with _client_lock:
        client = _clients.get("default")
        if client is None:
            client = boto3.client("dynamodb", config=client_config())
            _clients["default"] = client
        return client


_VALIDATION_CODES: Final = frozenset({"ValidationException", "ItemCollectionSizeLimitExceededException"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class DynamoOperationStore:
    """The `OperationStore` port on DynamoDB: conditional single-item writes. No transactions, no scans."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    def _key(self, operation_id: str) -> dict[str, AttributeValue]:
        return {"operationId": {"S": operation_id}}

    def get(self, operation_id: str) -> Operation | None:
        try:
            answer = self.client.get_item(
                TableName=self.table_name, Key=self._key(operation_id), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"reading operation {operation_id}: {exc}") from exc
        item = answer.get("Item")
        return from_item(item) if item else None

    def apply(self, transition: Transition) -> Operation | None:
        try:
            self._write(transition)
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                item: Any = exc.response.get("Item")
                current = from_item(item) if item else None
                if transition.applied_in(current):
                    return current  # our own write, retried by the SDK after a lost answer: applied
                raise Conflict(current) from None
            if _code(exc) in _VALIDATION_CODES:
                raise WriteRejected(f"{transition.name}: {exc}") from exc
            raise WriteUnknown(f"{transition.name}: {exc}") from exc
        except BotoCoreError as exc:  # timeouts, lost connections: the request may have been applied
            raise WriteUnknown(f"{transition.name}: {exc}") from exc
        return transition.after

    def _write(self, t: Transition) -> None:
        if t.before is None:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(t.ours),
                ConditionExpression=(
                    "attribute_not_exists(operationId) OR (#phase = :guarding AND #leaseUntil < :reclaim)"
                ),
                ExpressionAttributeNames={"#phase": "phase", "#leaseUntil": "leaseUntil"},
                ExpressionAttributeValues={
                    ":guarding": {"S": "guarding"},
                    ":reclaim": _n(t.reclaim_lapsed_before if t.reclaim_lapsed_before is not None else 0.0),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return
        names, values, condition = _condition(t)
        if t.after is None:
            # Whatever the caller built: a record that may have reached Codat is never deleted.
            values[":guarding"] = {"S": "guarding"}
            condition += " AND #phase = :guarding"
            self.client.delete_item(
                TableName=self.table_name,
                Key=self._key(t.operation_id),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return
        old, new = to_item(t.before), to_item(t.after)
        sets: list[str] = []
        removes: list[str] = []
        for index, (name, av) in enumerate(sorted(new.items())):
            if name == "operationId" or old.get(name) == av:
                continue
            names[f"#a{index}"] = name
            values[f":v{index}"] = av
            sets.append(f"#a{index} = :v{index}")
        for index, name in enumerate(sorted(set(old) - set(new))):
            names[f"#r{index}"] = name
            removes.append(f"#r{index}")
        update = "SET " + ", ".join(sets)  # `version` always changes, so there is always a SET
        if removes:
            update += " REMOVE " + ", ".join(removes)
        self.client.update_item(
            TableName=self.table_name,
            Key=self._key(t.operation_id),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    def stamp_client(self, operation_id: str, client_id: str) -> Operation | None:
        """Give a v1 record (scoped to an IAM role) its owner: `clientId`, written once, never changed.

        Touches nothing else (no token, no state, no version), so it cannot disturb a holder's writes, whose
        conditions do not look at `clientId`. Returns the item as it now is — owned by `client_id`, or by
        another client if one stamped it first — or None when it is gone.
        """
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key=self._key(operation_id),
                UpdateExpression="SET #clientId = :client",
                ConditionExpression="attribute_exists(operationId) AND attribute_not_exists(#clientId)",
                ExpressionAttributeNames={"#clientId": "clientId"},
                ExpressionAttributeValues={":client": {"S": client_id}},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise WriteUnknown(f"stamp_client: {exc}") from exc
            item: Any = exc.response.get("Item")
            return from_item(item) if item else None
        except BotoCoreError as exc:
            raise WriteUnknown(f"stamp_client: {exc}") from exc
        return from_item(answer["Attributes"])


def _condition(t: Transition) -> tuple[dict[str, str], dict[str, AttributeValue], str]:
    """The transition's condition on an existing item: the state it was computed from
    (`lifecycle.same_write`), and its lease rule."""
    before = t.before
    assert before is not None
    names = {"#phase": "phase", "#status": "status", "#leaseToken": "leaseToken", "#version": "version"}
    values: dict[str, AttributeValue] = {
        ":beforePhase": {"S": before.phase},
        ":beforeStatus": {"S": before.status},
    }
    parts = ["#phase = :beforePhase", "#status = :beforeStatus"]
    if before.lease_token is None:
        parts.append("attribute_not_exists(#leaseToken)")
    else:
        parts.append("#leaseToken = :beforeToken")
        values[":beforeToken"] = {"S": before.lease_token}
    if before.version:
        parts.append("#version = :beforeVersion")
        values[":beforeVersion"] = {"N": str(before.version)}
    else:
        parts.append("attribute_not_exists(#version)")
    names["#published"] = "publishedVersion"
    if before.published_version is not None:
        parts.append("#published = :beforePublished")
        values[":beforePublished"] = {"N": str(before.published_version)}
    else:
        parts.append("attribute_not_exists(#published)")
    if t.lease_live_at is not None:
        names["#leaseUntil"] = "leaseUntil"
        values[":liveAt"] = _n(t.lease_live_at)
        parts.append("#leaseUntil > :liveAt")
    if t.lease_lapsed_at is not None:
        names["#leaseUntil"] = "leaseUntil"
        values[":lapsedAt"] = _n(t.lease_lapsed_at)
        parts.append("(attribute_not_exists(#leaseUntil) OR #leaseUntil < :lapsedAt)")
    return names, values, " AND ".join(parts)


_stores: dict[str, DynamoOperationStore] = {}


def operation_store(table_name: str) -> DynamoOperationStore:
    """The container's store for `table_name` (its client built on first use)."""
    store = _stores.get(table_name)
    if store is None:
        store = _stores.setdefault(table_name, DynamoOperationStore(table_name))
    return store
