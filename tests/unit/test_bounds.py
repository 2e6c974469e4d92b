"""Parsers are total and what is kept from upstream is bounded: a Retry-After that cannot be parsed or
overflows is absent (it never changes an outcome's class), and a 200 KB Codat error is kept as 8 KB with
the SHA-256 of the whole."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from billpay.domain.bounds import (
    MAX_RETRY_AFTER_SECONDS,
    UPSTREAM_TEXT_LIMIT_BYTES,
    bounded_correlation_id,
    cap_text,
    codat_error_fields,
    parse_retry_after,
)
from billpay.domain.outcomes import classify_response

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
LAYER = Path(__file__).resolve().parents[2] / "layers" / "billpay" / "billpay"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 7 ", 7.0),
        ("0.5", 0.5),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("-3", None),  # delta-seconds has no sign
        ("1_000", None),
        ("0x10", None),
        ("1e3", None),
        ("1e400", None),
        ("9" * 400, None),  # overflows a float
        ("9" * 5000, None),
        ("1e300", None),
        ("999999999", MAX_RETRY_AFTER_SECONDS),  # finite but absurd: capped at a day
        ("Fri, 15 Jan 2027 08:00:10 GMT", 10.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # in the past: now
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS),
        ("Sat, 01 Jan 10000 00:00:00 GMT", None),
        ("Mon, 99999999999999999999 Jan 2027 00:00:00 GMT", None),  # OverflowError inside the parser
        ("Mon, 01 Jan 0001 00:00:00 +0100", 0.0),
        ("Fri, 15 Jan 2027 08:00:10", None),  # no zone
        ("Fri, 15 Jan 2027 99:99:99 GMT", None),
        ("x" * 100_000, None),
    ],
)
def test_retry_after_is_parsed_totally(value: str | None, expected: float | None) -> None:
    seconds = parse_retry_after(value, NOW)
    assert seconds == (pytest.approx(expected) if expected else expected)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER_SECONDS)


def test_there_is_one_retry_after_parser_in_the_codebase() -> None:
    defining = [
        path.relative_to(LAYER).as_posix()
        for path in LAYER.rglob("*.py")
        if "def parse_retry_after" in path.read_text(encoding="utf-8")
    ]
    assert defining == ["domain/bounds.py"]


def _error_body(status: int, error: str, correlation_id: str = "c-1") -> bytes:
    return json.dumps({"statusCode": status, "error": error, "correlationId": correlation_id}).encode()


@pytest.mark.parametrize("header", ["1e400", "9" * 400, "1e300", "Fri, 31 Dec 9999 23:59:59 GMT", "x" * 5000])
def test_a_429_with_an_absurd_retry_after_is_still_rate_limited_nothing_applied(header: str) -> None:
    outcome = classify_response(
        429, {"Retry-After": header}, _error_body(429, "slow down"), earlier_correlation_ids=(), now=NOW
    )
    assert (outcome.cls, outcome.applied, outcome.end) == ("rate_limited", "no", None)
    assert outcome.retry_after is None or outcome.retry_after <= MAX_RETRY_AFTER_SECONDS
    error = outcome.error()
    assert error is not None and error["type"] == "upstream-rate-limited"


def test_cap_text_keeps_short_text_whole_and_marks_what_it_cuts() -> None:
    assert cap_text("short") == ("short", None)
    whole = "é" * UPSTREAM_TEXT_LIMIT_BYTES  # 2 bytes each: cut on a character boundary
    kept, marker = cap_text(whole)
    assert len(kept.encode()) <= UPSTREAM_TEXT_LIMIT_BYTES and whole.startswith(kept)
    assert marker == {
        "size": 2 * UPSTREAM_TEXT_LIMIT_BYTES,
        "sha256": hashlib.sha256(whole.encode()).hexdigest(),
    }


def test_a_200_kb_codat_error_is_kept_as_8_kb_with_its_digest() -> None:
    huge = "Validation failed: " + "x" * 200_000
    fields = codat_error_fields(_error_body(400, huge))
    assert len(fields["error"].encode()) == UPSTREAM_TEXT_LIMIT_BYTES
    assert fields["truncated"] == {
        "error": {"size": len(huge), "sha256": hashlib.sha256(huge.encode()).hexdigest()}
    }


def test_a_200_kb_codat_400_gives_a_small_error_dict() -> None:
    huge = "x" * 200_000
    outcome = classify_response(400, {}, _error_body(400, huge), earlier_correlation_ids=(), now=NOW)
    assert (outcome.cls, outcome.end) == ("refused", "failed")
    error = outcome.error()
    assert error is not None
    assert len(error["upstream"]["error"].encode()) <= UPSTREAM_TEXT_LIMIT_BYTES
    assert len(error["detail"].encode()) <= UPSTREAM_TEXT_LIMIT_BYTES
    assert error["upstream"]["truncated"]["error"]["size"] == 200_000
    # Without the raw body (capped by the settle), the stored error stays far under DynamoDB's 400 KB.
    assert len(json.dumps(error)) < 2 * UPSTREAM_TEXT_LIMIT_BYTES + 1024


def test_a_long_correlation_id_is_kept_as_a_digest_that_still_matches_a_replay() -> None:
    long_id = "c" * 10_000
    body = _error_body(500, "boom", long_id)
    first = classify_response(500, {}, body, earlier_correlation_ids=(), now=NOW)
    assert first.correlation_id == bounded_correlation_id(long_id)
    assert first.correlation_id is not None and len(first.correlation_id) < 100
    replay = classify_response(500, {}, body, earlier_correlation_ids=(first.correlation_id,), now=NOW)
    assert replay.cls == "replayed_failure"


@pytest.mark.parametrize(
    "body",
    [
        b'{"statusCode": ' + b"9" * 5000 + b"}",  # more digits than Python converts
        b"[" * 100_000,
        b"not json",
        b'{"statusCode": 400000, "error": 5, "correlationId": ["x"]}',
    ],
)
def test_codat_error_fields_never_raise_and_keep_only_codats_types(body: bytes) -> None:
    assert codat_error_fields(body) == {}
