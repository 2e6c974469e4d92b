"""Problem: the one exception that becomes an RFC 9457 `application/problem+json` answer.

Pure on purpose (no HTTP framework, no AWS): domain and service code raise it, `billpay.http` renders it.
`type` is the short name (`validation-error`); the renderer prefixes BILLPAY_PROBLEM_TYPE_BASE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

# A body with thousands of bad members must not get an answer thousands of entries long.
MAX_PROBLEM_ERRORS: Final = 20


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
        if errors is not None and len(errors) > MAX_PROBLEM_ERRORS:
            detail = f"{detail} (the first {MAX_PROBLEM_ERRORS} of {len(errors)} errors are listed)"
            errors = errors[:MAX_PROBLEM_ERRORS]
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


def service_unavailable(retry_after_seconds: int) -> Problem:
    """Our own dependency (the operations table, the queue, a parameter or secret) did not answer in time,
    even after the SDK's retries. Without an `operation` member the client rule applies: retry the same
    request, with the same Idempotency-Key, after Retry-After (see docs/contract.md, Client rule)."""
    return Problem(
        503,
        "service-unavailable",
        "Service unavailable",
        "A service this API depends on is unavailable; retry the same request (same Idempotency-Key) "
        "after Retry-After.",
        headers={"Retry-After": str(retry_after_seconds)},
    )


__all__ = ["MAX_PROBLEM_ERRORS", "Problem", "not_found", "service_unavailable", "validation_error"]
