"""Problem: the one exception that becomes an RFC 9457 `application/problem+json` answer.

Pure on purpose (no HTTP framework, no AWS): domain and service code raise it, `billpay.http` renders it.
`type` is the short name (`validation-error`); the renderer prefixes BILLPAY_PROBLEM_TYPE_BASE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class Problem(Exception):
    def __init__(
        self,
        status: int,
        type: str,  # the RFC 9457 member name
        title: str,
        detail: str,
        errors: Sequence[Mapping[str, Any]] | None = None,
        upstream: Mapping[str, Any] | None = None,
        operation: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {type}: {detail}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.upstream = dict(upstream) if upstream is not None else None
        self.operation = dict(operation) if operation is not None else None
        self.headers = dict(headers) if headers is not None else {}

    def to_dict(self, type_base: str) -> dict[str, Any]:
        """The problem document; `type_base` is BILLPAY_PROBLEM_TYPE_BASE (no trailing slash)."""
        body: dict[str, Any] = {
            "type": f"{type_base.rstrip('/')}/problems/{self.type}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        if self.upstream is not None:
            body["upstream"] = self.upstream
        if self.operation is not None:
            body["operation"] = self.operation
        return body


def not_found(detail: str, **extra: Any) -> Problem:
    return Problem(404, "not-found", "Not found", detail, **extra)


def validation_error(detail: str, errors: Sequence[Mapping[str, Any]]) -> Problem:
    return Problem(400, "validation-error", "Invalid request", detail, errors=errors)


__all__ = ["Problem", "not_found", "validation_error"]
