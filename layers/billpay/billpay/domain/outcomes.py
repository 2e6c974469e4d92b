"""Every upstream outcome of a keyed write, classified once, here (docs/contract.md, Outcome table).

| upstream outcome                                   | class              | end                              |
|----------------------------------------------------|--------------------|----------------------------------|
| 2xx                                                | applied            | succeeded (unparseable: raw kept)|
| 400, 404                                           | refused            | failed (422 / 404)               |
| 401, 402, 403                                      | refused_us         | failed (502)                     |
| 409 (key in progress at Codat)                     | in_progress        | retry, may be applied            |
| 422 (our derived key met another body: a bug)      | key_conflict       | needs_review                     |
| 429                                                | rate_limited       | retry after Retry-After, nothing |
| 5xx repeating an earlier attempt's correlationId   | replayed_failure   | needs_review                     |
| ConnectError, ConnectTimeout, PoolTimeout          | never_left         | retry, nothing applied           |
| anything else (other statuses, 5xx, read/write     | maybe_applied      | retry, may be applied            |
|   timeouts, RemoteProtocolError, any exception)    |                    |                                  |

Pure: the httpx exception types are recognised by their public names (`httpx.ConnectError`, ...), so the
domain needs no HTTP library. Only a request that provably never left counts as nothing applied: any doubt
is "may be applied", which can end `needs_review` but never `failed` (docs/contract.md, Outcome table).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from billpay.domain.bounds import cap_text, codat_error_fields, parse_retry_after
from billpay.domain.operations import StoredBody

OutcomeClass = Literal[
    "applied",
    "refused",
    "refused_us",
    "in_progress",
    "key_conflict",
    "rate_limited",
    "replayed_failure",
    "never_left",
    "maybe_applied",
]
Applied = Literal["yes", "no", "maybe"]
EndStatus = Literal["succeeded", "failed", "needs_review"]

# Exceptions raised before any byte of the request reached the network (httpx's public names).
NEVER_LEFT_EXCEPTIONS: Final = frozenset({"httpx.ConnectError", "httpx.ConnectTimeout", "httpx.PoolTimeout"})


@dataclass(frozen=True, slots=True)
class ProblemSpec:
    """The answer an ended operation gives (rendered as a problem with the `operation` member)."""

    status: int
    type: str
    title: str
    detail: str

    def to_error(
        self, upstream: Mapping[str, Any] | None = None, retry_after: float | None = None
    ) -> dict[str, Any]:
        # The detail may quote Codat's error text: it is capped like every string kept from upstream
        # (the whole text's digest is already in `upstream.truncated` when that was cut).
        detail, _ = cap_text(self.detail)
        error: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "title": self.title,
            "detail": detail,
        }
        if upstream:
            error["upstream"] = dict(upstream)
        if retry_after is not None:
            error["retryAfter"] = retry_after
        return error


OUTCOME_UNKNOWN: Final = ProblemSpec(
    502,
    "upstream-outcome-unknown",
    "Outcome unknown",
    "The write may or may not have been recorded in the accounting software; a person must check before "
    "anything is resubmitted.",
)
RATE_LIMITED: Final = ProblemSpec(
    503, "upstream-rate-limited", "Upstream rate limit", "Codat rate-limited the write; nothing was recorded."
)
UNAVAILABLE: Final = ProblemSpec(
    503, "upstream-unavailable", "Upstream unavailable", "Codat could not be reached; nothing was recorded."
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's classified outcome.

    `end` is set when the attempt ends the operation; None means transient (retry with the same key).
    `problem` is the answer for an end other than `succeeded`, and for a transient outcome the answer it
    becomes if no retry follows (`on_give_up`).
    """

    cls: OutcomeClass
    applied: Applied
    end: EndStatus | None
    upstream_status: int | None = None
    problem: ProblemSpec | None = None
    retry_after: float | None = None
    correlation_id: str | None = None
    upstream: Mapping[str, Any] | None = None
    body: StoredBody | None = None
    exception: str | None = None

    @property
    def transient(self) -> bool:
        return self.end is None

    @property
    def nothing_applied(self) -> bool:
        return self.applied == "no"

    def on_give_up(self) -> ProblemSpec:
        """The answer if this transient outcome is the last word (interim rules, or a closed window)."""
        if self.applied != "no":
            return OUTCOME_UNKNOWN
        return RATE_LIMITED if self.cls == "rate_limited" else UNAVAILABLE

    def error(self, problem: ProblemSpec | None = None) -> dict[str, Any] | None:
        spec = problem or self.problem
        if spec is None:
            return None
        upstream = dict(self.upstream) if self.upstream else {}
        if self.exception and not upstream:
            upstream = {"exception": self.exception}
        return spec.to_error(upstream or None, self.retry_after)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def classify_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    earlier_correlation_ids: Collection[str],
    now: float,
) -> Outcome:
    """Classify an HTTP answer to a keyed write. `earlier_correlation_ids` are those of earlier attempts."""
    stored = StoredBody.of(body)
    if 200 <= status < 300:
        return Outcome("applied", "yes", "succeeded", upstream_status=status, body=stored)

    codat = codat_error_fields(body)  # bounded: `error` capped, `correlationId` short
    correlation_id: str | None = codat.get("correlationId")
    upstream: dict[str, Any] = {"statusCode": status}
    for name in ("error", "correlationId", "truncated"):
        if name in codat:
            upstream[name] = codat[name]
    reason = f": {codat['error']}" if "error" in codat else ""
    common: dict[str, Any] = {
        "upstream_status": status,
        "correlation_id": correlation_id,
        "upstream": upstream,
        "body": stored,
    }

    if status == 400:
        spec = ProblemSpec(
            422, "upstream-rejected", "Rejected upstream", f"Codat refused the request{reason}"
        )
        return Outcome("refused", "no", "failed", problem=spec, **common)
    if status == 404:
        spec = ProblemSpec(404, "not-found", "Not found", f"Codat does not know the target{reason}")
        return Outcome("refused", "no", "failed", problem=spec, **common)
    if status in (401, 402, 403):
        spec = ProblemSpec(
            502, "upstream-rejected", "Rejected upstream", f"Codat refused our credentials{reason}"
        )
        return Outcome("refused_us", "no", "failed", problem=spec, **common)
    if status == 409:
        return Outcome("in_progress", "maybe", None, problem=OUTCOME_UNKNOWN, **common)
    if status == 422:
        return Outcome("key_conflict", "maybe", "needs_review", problem=OUTCOME_UNKNOWN, **common)
    if status == 429:
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now)
        return Outcome("rate_limited", "no", None, problem=RATE_LIMITED, retry_after=retry_after, **common)
    if status >= 500 and correlation_id is not None and correlation_id in earlier_correlation_ids:
        return Outcome("replayed_failure", "maybe", "needs_review", problem=OUTCOME_UNKNOWN, **common)
    return Outcome("maybe_applied", "maybe", None, problem=OUTCOME_UNKNOWN, **common)


def _qualified_names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}


def classify_exception(exc: BaseException) -> Outcome:
    """Classify an exception raised once the HTTP client had the request."""
    described = f"{type(exc).__name__}: {exc}"[:500]
    if _qualified_names(exc) & NEVER_LEFT_EXCEPTIONS:
        return Outcome("never_left", "no", None, problem=UNAVAILABLE, exception=described)
    return Outcome("maybe_applied", "maybe", None, problem=OUTCOME_UNKNOWN, exception=described)
