"""The operation record store (DESIGN §3): one DynamoDB item per write, every change one conditional write.

Three kinds of write, and nothing else:
- `claim`: PutItem that creates the record (or takes over a `guarding` claim whose lease expired);
- `transition`: UpdateItem from a state we read to the state we want, conditional on the lease token
  (and the phase and status we read), used for mark-sent, settle, lease-taking and review;
- `release`: DeleteItem of a `guarding` claim (nothing was ever sent through it), conditional on its token.

Every conditional write asks for ALL_OLD on failure. If the item it returns carries the token we were
writing, the failure is our own write retried by the SDK after a lost answer: that counts as success.
Otherwise the write changed nothing and the returned item is the truth the caller answers from.

Writers that take over a record (a lease-taker, the operator command) always write a NEW token: a token
identifies one holder's writes and nobody else's.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

# Imported at load, not on first use: every function that imports this adapter writes operations on its
# first invocation anyway, and Lambda's init phase (with its CPU boost) is the cheaper place to pay for it.
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from billpay.domain.operations import LeaseHolder, Operation, StoredBody, UpstreamRequest

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
        "dueBucket", "dueAt", "clientId",
    }
)  # fmt: skip

# Short timeouts: a sync request has a 29 s gateway budget, and a write that timed out is safely retried
# (the token recognises our own earlier success).
_CLIENT_CONFIG: Final = Config(
    connect_timeout=2,
    read_timeout=3,
    retries={"mode": "standard", "max_attempts": 4},
    tcp_keepalive=True,
)


class LeaseLost(Exception):  # a state, not a programming error
    """A conditional write found the record changed by someone else; `current` is the item it returned."""

    def __init__(self, current: Operation | None) -> None:
        super().__init__("the record is no longer ours to write" if current else "the record is gone")
        self.current = current


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """`claimed`: the record is ours (new, reclaimed, or our own retried put); else `existing` is it."""

    claimed: bool
    existing: Operation | None = None


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
        "clientId": {"S": op.client_id} if op.client_id is not None else None,
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
        client_id=s("clientId"),
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
            client = boto3.client("dynamodb", config=_CLIENT_CONFIG)
            _clients["default"] = client
        return client


class OperationStore:
    """Conditional single-item writes on the operations table. No transactions, no scans."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = dynamodb_client()
        return self._client

    # reads --------------------------------------------------------------------------------------------

    def get(self, operation_id: str, *, consistent: bool = True) -> Operation | None:
        answer = self.client.get_item(
            TableName=self.table_name, Key={"operationId": {"S": operation_id}}, ConsistentRead=consistent
        )
        item = answer.get("Item")
        return from_item(item) if item else None

    # step 1 -------------------------------------------------------------------------------------------

    def claim(self, claim: Operation, now: float) -> ClaimResult:
        """Create the record, or take over a `guarding` claim whose lease expired (its holder is gone).

        One request either way: on a condition failure the existing item comes back (ALL_OLD) and the
        replay is answered from it.
        """
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(claim),
                ConditionExpression=(
                    "attribute_not_exists(operationId) OR (#phase = :guarding AND #leaseUntil < :now)"
                ),
                ExpressionAttributeNames={"#phase": "phase", "#leaseUntil": "leaseUntil"},
                ExpressionAttributeValues={":guarding": {"S": "guarding"}, ":now": _n(now)},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            existing = _condition_failed_item(exc)
            if existing is None:
                raise
            if existing.lease_token == claim.lease_token:
                return ClaimResult(claimed=True)  # our own put, retried by the SDK
            return ClaimResult(claimed=False, existing=existing)
        return ClaimResult(claimed=True)

    # any holder's change --------------------------------------------------------------------------------

    def transition(
        self, before: Operation, after: Operation, *, lease_expired_before: float | None = None
    ) -> Operation:
        """Write `after` over `before`, conditional on `before`'s token, phase and status.

        `after` may carry a new token (a take-over); with `lease_expired_before`, the write also requires
        `before`'s lease to have expired by then (checked on the base item, never on the index).
        Returns the state now stored; raises LeaseLost with the current item when someone else changed it.
        """
        if before.operation_id != after.operation_id:
            raise ValueError("a transition cannot change the operation id")
        old, new = to_item(before), to_item(after)
        names: dict[str, str] = {"#phase": "phase", "#status": "status", "#leaseToken": "leaseToken"}
        values: dict[str, AttributeValue] = {
            ":beforePhase": old["phase"],
            ":beforeStatus": old["status"],
        }
        if before.lease_token is None:
            condition = "attribute_not_exists(#leaseToken)"
        else:
            condition = "#leaseToken = :beforeToken"
            values[":beforeToken"] = {"S": before.lease_token}
        condition += " AND #phase = :beforePhase AND #status = :beforeStatus"
        if lease_expired_before is not None:
            names["#leaseUntil"] = "leaseUntil"
            values[":leaseDeadline"] = _n(lease_expired_before)
            condition += " AND (attribute_not_exists(#leaseUntil) OR #leaseUntil < :leaseDeadline)"

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
        update = ""
        if sets:
            update += "SET " + ", ".join(sets)
        if removes:
            update += (" " if update else "") + "REMOVE " + ", ".join(removes)
        if not update:
            return after
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"operationId": {"S": after.operation_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            current = _condition_failed_item(exc)
            if (
                current is not None
                and after.lease_token is not None
                and current.lease_token == after.lease_token
            ):
                return current  # our own update, retried by the SDK: it is applied
            raise LeaseLost(current) from None
        return after

    def release(self, op: Operation) -> bool:
        """Delete a `guarding` claim (every exit before the send), so the same key can be used again.
        Conditional on our token and on the phase still being `guarding`: once a record is marked sent, a
        request may have reached Codat and the record is never deleted, whatever `op` says. False when
        the record is not (or no longer) ours to delete; it is then left alone.
        """
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={"operationId": {"S": op.operation_id}},
                ConditionExpression="#leaseToken = :token AND #phase = :guarding AND #status = :pending",
                ExpressionAttributeNames={
                    "#leaseToken": "leaseToken",
                    "#phase": "phase",
                    "#status": "status",
                },
                ExpressionAttributeValues={
                    ":token": {"S": op.lease_token or ""},
                    ":guarding": {"S": "guarding"},
                    ":pending": {"S": "pending"},
                },
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            # Someone else holds it now, it was marked sent, or our delete already ran and the SDK
            # retried it.
            return False
        return True

    def stamp_client(self, operation_id: str, client_id: str) -> Operation | None:
        """Give a v1 record (scoped to an IAM role) its owner: `clientId`, written once, never changed.

        Touches nothing else (no token, no state), so it cannot disturb a holder's writes. Returns the item
        as it now is — owned by `client_id`, or by another client if one stamped it first — or None when
        it is gone.
        """
        try:
            answer = self.client.update_item(
                TableName=self.table_name,
                Key={"operationId": {"S": operation_id}},
                UpdateExpression="SET #clientId = :client",
                ConditionExpression="attribute_exists(operationId) AND attribute_not_exists(#clientId)",
                ExpressionAttributeNames={"#clientId": "clientId"},
                ExpressionAttributeValues={":client": {"S": client_id}},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            return _condition_failed_item(exc)
        return from_item(answer["Attributes"])

    # conveniences over `transition` for lease-takers ------------------------------------------------------

    def take_lease(
        self,
        seen: Operation,
        *,
        holder: LeaseHolder,
        token: str,
        lease_until: float,
        now: float,
        updated_at: str,
    ) -> Operation:
        """Take the lease of an unfinished record whose lease expired (sweeper/worker take-over).

        The record stays listed, due when this new lease expires (a holder that dies is noticed then).
        """
        after = seen.with_changes(
            lease_token=token,
            lease_holder=holder,
            lease_until=lease_until,
            due_at=lease_until if seen.due_bucket is not None else None,
            updated_at=updated_at,
        )
        return self.transition(seen, after, lease_expired_before=now)


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _condition_failed_item(exc: ClientError) -> Operation | None:
    """The ALL_OLD item of a ConditionalCheckFailed, or None (also None for other errors: re-raised)."""
    if not _is_condition_failure(exc):
        return None
    item: Any = exc.response.get("Item")
    if not item:
        return None
    return from_item(item)


def describe(op: Operation) -> str:
    """A compact JSON line for logs (no bodies)."""
    return json.dumps(
        {
            "operationId": op.operation_id,
            "status": op.status,
            "phase": op.phase,
            "attempts": op.attempts,
            "leaseHolder": op.lease_holder,
        }
    )


_stores: dict[str, OperationStore] = {}


def operation_store(table_name: str) -> OperationStore:
    """The container's store for `table_name` (its client built on first use)."""
    store = _stores.get(table_name)
    if store is None:
        store = _stores.setdefault(table_name, OperationStore(table_name))
    return store
