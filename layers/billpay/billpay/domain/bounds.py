"""Total parsers and size bounds for what comes from outside: Codat's headers and error bodies.

Every function here answers for any input; it never raises. A value that cannot be parsed, or overflows,
is treated as absent, so a malformed header can never change how an outcome is classified or turn an
answer into a 5xx. Every string kept from upstream is cut to `UPSTREAM_TEXT_LIMIT_BYTES` and marked,
with the SHA-256 of the whole, so one huge error body cannot push an operation record past DynamoDB's
item limit (see docs/contract.md, Operation life cycle).

Pure: no HTTP library, no AWS.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from email.utils import parsedate_to_datetime
from typing import Any, Final

# A Retry-After longer than this is taken as this: no upstream pause is worth planning further ahead, and
# a bounded value keeps every timestamp derived from it representable (datetime, DynamoDB numbers).
MAX_RETRY_AFTER_SECONDS: Final = 86_400.0
# Each string kept from upstream (Codat's `error`, a problem's `detail`) is at most this many UTF-8 bytes.
UPSTREAM_TEXT_LIMIT_BYTES: Final = 8 * 1024
# Codat's correlation ids are GUID-like; a longer one is kept as its digest, which still compares equal
# when a cached answer is replayed (the replayed-failure rule needs that comparison, not the text).
MAX_CORRELATION_ID_CHARS: Final = 128

# RFC 9110 delta-seconds is digits only; a fraction is tolerated. Exponents, signs, "_" are not.
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# An HTTP-date is ~29 characters; anything much longer is not one and is not worth parsing.
_MAX_HTTP_DATE_CHARS: Final = 64


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP-date), at most
    `MAX_RETRY_AFTER_SECONDS`; None when absent, unparseable or overflowing. `now` is epoch seconds."""
    if value is None:
        return None
    text = value.strip()
    seconds: float | None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)  # digits only: never raises, an overflow becomes inf
    elif len(text) <= _MAX_HTTP_DATE_CHARS:
        seconds = _seconds_until_http_date(text, now)
    else:
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _seconds_until_http_date(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:
            return None
        return when.timestamp() - now
    # The email parser raises TypeError, ValueError, IndexError or OverflowError on malformed or huge
    # fields; any of them means "not a date", never a failure of the request.
    except Exception:
        return None


def cap_text(value: str, limit: int = UPSTREAM_TEXT_LIMIT_BYTES) -> tuple[str, dict[str, Any] | None]:
    """`value` cut to at most `limit` UTF-8 bytes (on a character boundary), and — when it was cut — the
    marker `{"size": <bytes of the whole>, "sha256": <hex digest of the whole>}`; None when kept whole."""
    encoded = value.encode("utf-8", errors="surrogatepass")
    if len(encoded) <= limit:
        return value, None
    kept = encoded[:limit].decode("utf-8", errors="ignore")
    return kept, {"size": len(encoded), "sha256": hashlib.sha256(encoded).hexdigest()}


def bounded_correlation_id(value: str) -> str:
    """A correlation id as kept: itself, or `sha256:<hex>` of it when it is implausibly long."""
    if len(value) <= MAX_CORRELATION_ID_CHARS:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", errors="surrogatepass")).hexdigest()


def codat_error_fields(body: bytes) -> dict[str, Any]:
    """Codat's `ErrorMessage` fields we report — `statusCode` (an HTTP status), `error` (capped, with
    `truncated: {"error": {...}}` when cut) and `correlationId` (bounded) — from an error body; {} when
    the body is not a JSON object. Members of another type than Codat's are left out."""
    try:
        doc = json.loads(body)
    # ValueError: not JSON, or an integer with more digits than Python converts; RecursionError: nested
    # too deep to decode. Either way it is not Codat's ErrorMessage.
    except (ValueError, RecursionError):
        return {}
    if not isinstance(doc, dict):
        return {}
    out: dict[str, Any] = {}
    status = doc.get("statusCode")
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        out["statusCode"] = status
    error = doc.get("error")
    if isinstance(error, str):
        out["error"], truncated = cap_text(error)
        if truncated is not None:
            out["truncated"] = {"error": truncated}
    correlation_id = doc.get("correlationId")
    if isinstance(correlation_id, str):
        out["correlationId"] = bounded_correlation_id(correlation_id)
    return out


__all__ = [
    "MAX_CORRELATION_ID_CHARS",
    "MAX_RETRY_AFTER_SECONDS",
    "UPSTREAM_TEXT_LIMIT_BYTES",
    "bounded_correlation_id",
    "cap_text",
    "codat_error_fields",
    "parse_retry_after",
]
