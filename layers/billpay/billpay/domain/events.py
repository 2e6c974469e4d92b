"""The event a terminal transition publishes (docs/contract.md, Events): pure, from the operation as stored.

Source `billpay`; detail-type `Operation Succeeded` | `Operation Failed` | `Operation Needs Review` |
`Operation Resolved`; the detail is the operation's envelope without raw upstream bodies or account
details (a created bank account's result is reduced to its id), with `clientId`, `version` and `updatedAt`.
The id is deterministic (operation id + version), so a consumer can drop the duplicates that at-least-once
delivery brings; delivery is unordered, so a consumer keeps the highest `version`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from billpay.domain.operations import Operation

EVENT_SOURCE: Final = "billpay"
DETAIL_TYPES: Final = {
    "succeeded": "Operation Succeeded",
    "failed": "Operation Failed",
    "needs_review": "Operation Needs Review",
}
RESOLVED: Final = "Operation Resolved"


@dataclass(frozen=True, slots=True)
class OperationEvent:
    event_id: str
    detail_type: str
    detail: dict[str, Any]
    time: str


def operation_event(op: Operation) -> OperationEvent:
    detail: dict[str, Any] = {
        "eventId": f"{op.operation_id}:{op.version}",
        "operationId": op.operation_id,
        "kind": op.kind,
        "status": op.status,
        "attempts": op.attempts,
        "clientId": getattr(op, "client_id", None),
        "version": op.version,
        "createdAt": op.created_at,
        "updatedAt": op.updated_at,
        "result": _result(op),
        "error": _error(op),
    }
    if op.resolution is not None:
        detail["resolution"] = {"status": op.resolution.status, "at": op.resolution.at}
    detail_type = RESOLVED if op.resolution is not None else DETAIL_TYPES.get(op.status, "Operation Updated")
    return OperationEvent(detail["eventId"], detail_type, detail, op.updated_at)


def _result(op: Operation) -> dict[str, Any] | None:
    """Only the upstream id: a bank account's result carries its number, and no raw body leaves us."""
    if op.status != "succeeded" or op.result is None:
        return None
    parsed = op.result.json()
    if isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
        return {"id": parsed["id"]}
    return None


def _error(op: Operation) -> dict[str, Any] | None:
    if op.error is None or op.status == "succeeded":
        return None
    error = {k: op.error[k] for k in ("type", "status", "title", "detail") if k in op.error}
    upstream = op.error.get("upstream")
    if isinstance(upstream, dict):
        kept = {k: upstream[k] for k in ("statusCode", "correlationId") if k in upstream}
        if kept:
            error["upstream"] = kept
    return error
