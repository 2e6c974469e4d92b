"""The one mapping of a failed Codat read to our answer (docs/contract.md, Status codes: the read rows).

401/402/403 → 502 `upstream-rejected`; 429 → 503 `upstream-rate-limited` (+ Retry-After); 5xx or a failed
connection → 502 `upstream-unavailable`; a timeout → 504 `upstream-unavailable`; 404 → 404 `not-found`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from billpay.adapters.codat import (
    CodatBadRequestError,
    CodatError,
    CodatNotFoundError,
    CodatRateLimitedError,
    CodatRejectedError,
    CodatTimeoutError,
)
from billpay.models.codat import Pagination
from billpay.observability import logger
from billpay.problems import Problem

T = TypeVar("T")


def problem_for_read_error(
    error: CodatError, *, not_found_detail: str = "Unknown company or connection."
) -> Problem:
    upstream = error.upstream or None
    if isinstance(error, CodatNotFoundError):
        return Problem(404, "not-found", "Not found", not_found_detail, upstream=upstream)
    if isinstance(error, CodatRejectedError | CodatBadRequestError):
        # A 400 on a read means we built a request Codat refused: our fault or our key's, never the caller's
        # (a caller-supplied value that Codat refuses is mapped by the use case itself).
        return Problem(
            502,
            "upstream-rejected",
            "Codat refused the request",
            "Codat refused our request.",
            upstream=upstream,
        )
    if isinstance(error, CodatRateLimitedError):
        headers = (
            {"Retry-After": str(math.ceil(error.retry_after))} if error.retry_after is not None else None
        )
        return Problem(
            503,
            "upstream-rate-limited",
            "Codat is rate-limiting us",
            "Codat asked us to slow down; retry later.",
            upstream=upstream,
            headers=headers,
        )
    if isinstance(error, CodatTimeoutError):
        return Problem(
            504,
            "upstream-unavailable",
            "Codat did not answer in time",
            "Codat did not answer in time.",
            upstream=upstream,
        )
    return Problem(
        502,
        "upstream-unavailable",
        "Codat is unavailable",
        "Codat could not serve the request.",
        upstream=upstream,
    )


def read_page(what: str, continuation_token: str | None, read: Callable[[], T]) -> T:
    """One page of a Codat listing passed through, its failures answered as problems: a continuation token
    Codat refuses is the caller's bad input (the one value Codat interprets itself); the rest as above."""
    try:
        return read()
    except CodatBadRequestError as error:
        if continuation_token is not None:
            raise Problem(
                400,
                "validation-error",
                "Invalid request",
                "Codat did not accept the continuation token.",
                errors=[
                    {
                        "location": "query",
                        "field": "continuationToken",
                        "message": "not a continuation token Codat accepts",
                        "type": "value_error",
                    }
                ],
                upstream=error.upstream or None,
            ) from None
        raise problem_for_read_error(error) from None
    except CodatError as error:
        logger.warning(
            f"listing {what} failed", extra={"codat_error": error.kind, "upstream_status": error.status}
        )
        raise problem_for_read_error(error) from None


def passed_on(pagination: Pagination | None) -> Pagination:
    """Only Codat's continuation token is handed on, and only when there is one (built afresh)."""
    token = pagination.continuation_token if pagination else None
    return Pagination(continuationToken=token) if token else Pagination()


__all__ = ["passed_on", "problem_for_read_error", "read_page"]
