"""Codat's `ErrorMessage` body, written by the sandbox itself (never copied from the YAML's examples)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

# Codat's wording for a bare status, used when nothing more specific is known.
_DEFAULT_ERRORS = {
    400: "Error processing request - not valid.",
    401: "Unauthorized",
    402: "An account limit has been exceeded.",
    403: "You are using an outdated API key or a key not associated with that resource.",
    404: "One or more of the resources you referenced could not be found.",
    405: "The requested method is not supported for this resource.",
    409: "A request is in progress with the same idempotency key.",
    422: "The idempotency key has already been used with a different request.",
    429: "You have exceeded the rate limit of requests. Please try again later.",
    500: "There is a problem with our server. Please try again later.",
    502: "Bad gateway: the accounting platform did not answer.",
    503: "The Codat API is temporarily offline for maintenance. Please try again later.",
    504: "Gateway timeout: the accounting platform took too long to answer.",
}


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One `validation.errors` item."""

    item_id: str
    message: str
    validator: str = "Validation"

    def to_codat(self) -> dict[str, Any]:
        return {"itemId": self.item_id, "message": self.message, "validatorName": self.validator}


class CodatError(Exception):
    """A refusal the sandbox answers with `ErrorMessage`; raised anywhere, rendered by the server."""

    def __init__(
        self,
        status: int,
        error: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        service: str = "PublicApi",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error or default_error(status))
        self.status = status
        self.error = error or default_error(status)
        self.errors = errors or []
        self.service = service
        self.headers = headers or {}


def default_error(status: int) -> str:
    return _DEFAULT_ERRORS.get(status, f"The request failed with status {status}.")


def error_message(
    status: int,
    error: str | None = None,
    *,
    errors: list[FieldError] | None = None,
    service: str = "PublicApi",
) -> dict[str, Any]:
    """An `ErrorMessage`; its `statusCode` is always the HTTP status and its `correlationId` fresh."""
    body: dict[str, Any] = {
        "statusCode": status,
        "service": service,
        "error": error or default_error(status),
        "correlationId": uuid.uuid4().hex,
        "canBeRetried": "Unknown",
        "detailedErrorCode": 0,
    }
    if errors:
        body["validation"] = {"errors": [item.to_codat() for item in errors], "warnings": []}
    return body


def from_exception(exc: CodatError) -> dict[str, Any]:
    return error_message(exc.status, exc.error, errors=exc.errors, service=exc.service)
