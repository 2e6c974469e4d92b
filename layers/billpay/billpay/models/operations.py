"""The operation envelope every write answers with, and `GET /operations/{id}` returns (contract: API).

```json
{"operationId": "…", "kind": "billPayment", "status": "succeeded", "attempts": 1,
 "result": { …Codat BillPayment or BankAccount… }, "error": null, "createdAt": "…", "updatedAt": "…"}
```

`result` is Codat's answer as it came; a 2xx whose body is not JSON, or was cut at 64 KB, shows as
`{"rawBody", "sha256", "size", "truncated"}`. `error` is set once the operation ended other than
`succeeded`: the problem it answers with (type URI, title, status, detail, Codat's details).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billpay.domain.operations import Operation


class OperationError(BaseModel):
    model_config = ConfigDict(title="OperationError")

    type: str = Field(description="URI ending in /problems/<name>")
    title: str
    status: int = Field(description="the HTTP status this operation answers with")
    detail: str
    upstream: dict[str, Any] | None = Field(
        default=None, description="Codat's statusCode, error, correlationId"
    )


class OperationEnvelope(BaseModel):
    model_config = ConfigDict(title="Operation")

    operationId: str
    kind: Literal["billPayment", "bankAccount"]
    status: Literal["pending", "succeeded", "failed", "needs_review"] = Field(
        description=(
            "pending: queued or in flight; succeeded; failed: definitely not recorded upstream (fix and "
            "resubmit with a new key); needs_review: may or may not have been recorded, a person must look "
            "before anything is resubmitted"
        )
    )
    attempts: int
    result: dict[str, Any] | None = Field(description="Codat's BillPayment or BankAccount once succeeded")
    error: OperationError | None
    createdAt: str
    updatedAt: str


def _result(op: Operation) -> dict[str, Any] | None:
    if op.status != "succeeded" or op.result is None:
        return None
    parsed = op.result.json()
    if isinstance(parsed, dict):
        return parsed
    return {
        "rawBody": op.result.text,
        "sha256": op.result.sha256,
        "size": op.result.size,
        "truncated": op.result.truncated,
    }


def _error(op: Operation, type_base: str) -> dict[str, Any] | None:
    if op.error is None or op.status in ("pending", "succeeded"):
        return None
    error: dict[str, Any] = {
        "type": f"{type_base.rstrip('/')}/problems/{op.error.get('type', 'upstream-outcome-unknown')}",
        "title": str(op.error.get("title", "")),
        "status": int(op.error.get("status", 502)),
        "detail": str(op.error.get("detail", "")),
    }
    upstream = op.error.get("upstream")
    if isinstance(upstream, dict) and upstream:
        error["upstream"] = upstream
    return error


def envelope(op: Operation, type_base: str) -> dict[str, Any]:
    """The envelope as a plain dict (the order of docs/contract.md, API), ready to serialise."""
    return {
        "operationId": op.operation_id,
        "kind": op.kind,
        "status": op.status,
        "attempts": op.attempts,
        "result": _result(op),
        "error": _error(op, type_base),
        "createdAt": op.created_at,
        "updatedAt": op.updated_at,
    }


__all__ = ["OperationEnvelope", "OperationError", "envelope"]
