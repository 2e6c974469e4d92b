"""The one mapping of a failed Codat read to our answer (docs/contract.md, Status codes: the read rows).

401/402/403 → 502 `upstream-rejected`; 429 → 503 `upstream-rate-limited` (+ Retry-After); 5xx or a failed
connection → 502 `upstream-unavailable`; a timeout → 504 `upstream-unavailable`; 404 → 404 `not-found`.
"""

from __future__ import annotations

import math

from billpay.adapters.codat import (
    CodatBadRequestError,
    CodatError,
    CodatNotFoundError,
    CodatRateLimitedError,
    CodatRejectedError,
    CodatTimeoutError,
)
from billpay.problems import Problem


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


__all__ = ["problem_for_read_error"]
