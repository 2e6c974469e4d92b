"""Every row of the contract's Outcome table, classified in one place, and the state each attempt leaves."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from billpay.adapters.codat import CodatClient
from billpay.domain import lifecycle
from billpay.domain.bounds import parse_retry_after
from billpay.domain.operations import (
    DUE_BUCKET_NEEDS_REVIEW,
    DUE_BUCKET_PENDING,
    DUE_BUCKET_UNPUBLISHED,
    STORED_BODY_LIMIT_BYTES,
    Operation,
    UpstreamRequest,
    lease_until,
)
from billpay.domain.outcomes import (
    Outcome,
    classify_exception,
    classify_response,
)
from billpay.models.operations import envelope
from billpay.service.write_operation import attempt

NOW = 1_800_000_000.0


def _error(status: int, correlation_id: str = "c-1", message: str = "nope") -> bytes:
    return json.dumps({"statusCode": status, "error": message, "correlationId": correlation_id}).encode()


def _sent() -> Operation:
    claiming = lifecycle.claim(
        operation_id="op-1",
        kind="billPayment",
        request_hash="h",
        upstream_key="2f0c5a4e-0000-4000-8000-000000000001",
        upstream_request=UpstreamRequest("POST", "/companies/x/payment", b'{"amount":10}'),
        now=NOW,
        lease_until=lease_until(NOW, 20_000),
        lease_token="t",
    )
    return lifecycle.mark_sent(claiming.ours, NOW).ours


def classify(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None, earlier: tuple[str, ...] = ()
):
    return classify_response(status, headers or {}, body, earlier_correlation_ids=earlier, now=NOW)


# -- the table ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202])
def test_2xx_is_applied_and_succeeds(status: int) -> None:
    outcome = classify(status, b'{"id": "bp-1"}')
    assert (outcome.cls, outcome.applied, outcome.end) == ("applied", "yes", "succeeded")
    assert outcome.body is not None and outcome.body.json() == {"id": "bp-1"}


def test_an_unparseable_2xx_succeeds_with_the_raw_body() -> None:
    outcome = classify(201, b"Created!")
    assert outcome.end == "succeeded" and outcome.body is not None and outcome.body.text == "Created!"


@pytest.mark.parametrize(
    ("status", "http", "problem"), [(400, 422, "upstream-rejected"), (404, 404, "not-found")]
)
def test_400_and_404_are_refusals_nothing_applied(status: int, http: int, problem: str) -> None:
    outcome = classify(status, _error(status))
    assert (outcome.cls, outcome.applied, outcome.end) == ("refused", "no", "failed")
    assert outcome.problem is not None and (outcome.problem.status, outcome.problem.type) == (http, problem)
    assert outcome.upstream == {"statusCode": status, "error": "nope", "correlationId": "c-1"}


@pytest.mark.parametrize("status", [401, 402, 403])
def test_401_402_403_refused_us_fail_with_502(status: int) -> None:
    outcome = classify(status, _error(status))
    assert (outcome.cls, outcome.applied, outcome.end) == ("refused_us", "no", "failed")
    assert outcome.problem is not None and (outcome.problem.status, outcome.problem.type) == (
        502,
        "upstream-rejected",
    )


def test_409_is_in_progress_may_be_applied_retry() -> None:
    outcome = classify(409, _error(409))
    assert (outcome.cls, outcome.applied, outcome.end) == ("in_progress", "maybe", None)


def test_422_is_a_key_conflict_needs_review() -> None:
    outcome = classify(422, _error(422))
    assert (outcome.cls, outcome.applied, outcome.end) == ("key_conflict", "maybe", "needs_review")
    assert outcome.problem is not None and (outcome.problem.status, outcome.problem.type) == (
        502,
        "upstream-outcome-unknown",
    )


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), (None, None), ("soon", None)])
def test_429_is_rate_limited_nothing_applied_with_retry_after(
    header: str | None, seconds: float | None
) -> None:
    outcome = classify(429, _error(429), {"Retry-After": header} if header else {})
    assert (outcome.cls, outcome.applied, outcome.end) == ("rate_limited", "no", None)
    assert outcome.retry_after == seconds
    assert outcome.on_give_up().type == "upstream-rate-limited"


def test_retry_after_as_an_http_date() -> None:
    assert parse_retry_after("Fri, 15 Jan 2027 08:00:10 GMT", 1_800_000_000.0) == pytest.approx(
        1_800_000_000.0 - NOW + 10, abs=1e6
    )
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", NOW) == 0.0


def test_a_5xx_repeating_an_earlier_correlation_id_is_a_replayed_failure() -> None:
    outcome = classify(500, _error(500, "c-first"), earlier=("c-first",))
    assert (outcome.cls, outcome.applied, outcome.end) == ("replayed_failure", "maybe", "needs_review")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_fresh_5xx_may_be_applied_retry(status: int) -> None:
    outcome = classify(status, _error(status, "c-new"), earlier=("c-old",))
    assert (outcome.cls, outcome.applied, outcome.end) == ("maybe_applied", "maybe", None)
    assert outcome.on_give_up().type == "upstream-outcome-unknown"


@pytest.mark.parametrize("status", [301, 405, 408, 413])
def test_anything_else_may_be_applied(status: int) -> None:
    assert classify(status, b"").cls == "maybe_applied"


def _request() -> httpx.Request:
    return httpx.Request("POST", "https://codat.test/x")


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused", request=_request()),
        httpx.ConnectTimeout("slow connect", request=_request()),
        httpx.PoolTimeout("no connection free", request=_request()),
    ],
)
def test_a_request_that_never_left_is_nothing_applied(exc: Exception) -> None:
    outcome = classify_exception(exc)
    assert (outcome.cls, outcome.applied, outcome.end) == ("never_left", "no", None)
    assert outcome.on_give_up().type == "upstream-unavailable"


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow answer", request=_request()),
        httpx.WriteTimeout("slow send", request=_request()),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.ReadError("reset"),
        RuntimeError("anything"),
        ValueError("even this"),
    ],
)
def test_any_other_exception_may_be_applied(exc: Exception) -> None:
    outcome = classify_exception(exc)
    assert (outcome.cls, outcome.applied, outcome.end) == ("maybe_applied", "maybe", None)


# -- through the real client: the connection that never opens ----------------------------------------------


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> CodatClient:
    return CodatClient(
        base_url="https://codat.test",
        api_key="local-sandbox-key",
        timeout_seconds=2,
        connect_timeout_seconds=1,
        budget_seconds=5,
        transport=httpx.MockTransport(handler),
    )


def test_a_connection_that_never_opens_is_nothing_applied_through_the_send_path() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    outcome = attempt(_client(refuse), _sent(), timeout=1.0)
    assert (outcome.cls, outcome.applied) == ("never_left", "no")


def test_the_send_path_sends_the_stored_bytes_under_the_stored_key() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # A streamed body, as a real transport gives (a pre-read one never sets `elapsed`).
        return httpx.Response(201, stream=httpx.ByteStream(b'{"id": "bp-1"}'))

    op = _sent()
    outcome = attempt(_client(record), op, timeout=1.0)
    assert outcome.cls == "applied"
    assert seen[0].content == op.upstream_request.body
    assert seen[0].headers["Idempotency-Key"] == op.upstream_key
    assert seen[0].url.path == op.upstream_request.path


# A body nested deeper than Python's JSON decoder can recurse, yet kept whole: not JSON to us. (It was
# 50,000 bytes while a result kept 64 KB; the cap is now STORED_BODY_LIMIT_BYTES, 16 KB, and a cut body is
# never parsed at all, so the body stays just under the cap to still reach the decoder's RecursionError.)
_TOO_DEEP = b"[" * (STORED_BODY_LIMIT_BYTES - 1)


def test_a_2xx_whose_body_is_too_deep_to_parse_succeeds_with_the_raw_body_through_the_send_path() -> None:
    # Applied is applied: a body we cannot parse must not turn the answer into doubt (a retry, a review).
    def nested(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, stream=httpx.ByteStream(_TOO_DEEP))

    outcome = attempt(_client(nested), _sent(), timeout=1.0)
    assert (outcome.cls, outcome.end) == ("applied", "succeeded")
    assert outcome.body is not None and outcome.body.text.encode() == _TOO_DEEP
    assert not outcome.body.truncated and outcome.body.json() is None


def test_a_refusal_whose_body_is_too_deep_to_parse_is_still_a_refusal() -> None:
    outcome = classify(400, _TOO_DEEP)
    assert (outcome.cls, outcome.end, outcome.correlation_id) == ("refused", "failed", None)


def test_a_read_timeout_through_the_send_path_may_be_applied() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    assert attempt(_client(slow), _sent(), timeout=1.0).cls == "maybe_applied"


# -- the state an attempt leaves ----------------------------------------------------------------------------


def _settle(outcome: Outcome, retry_at: float | None = None, op: Operation | None = None) -> Operation:
    return lifecycle.settle(op or _sent(), outcome, NOW + 1, retry_at=retry_at).ours


def _bucket_once_published(ended: Operation) -> str | None:
    """Where an ended operation is listed once its event is out. A settle used to list it there at once;
    an end state is now listed `unpublished` until its terminal event is recorded published — except a
    `needs_review`, which stays in its own bucket (counted by the gauge) and is published from there."""
    waiting = DUE_BUCKET_NEEDS_REVIEW if ended.status == "needs_review" else DUE_BUCKET_UNPUBLISHED
    assert ended.due_bucket == waiting
    return lifecycle.published(ended, NOW + 2).ours.due_bucket


def test_success_settles_and_leaves_the_index() -> None:
    after = _settle(classify(201, b'{"id": "bp-1"}'))
    assert (after.status, after.phase, after.lease_holder, after.lease_until) == (
        "succeeded",
        "settled",
        None,
        None,
    )
    assert _bucket_once_published(after) is None
    assert after.lease_token == "t" and after.error is None


def test_a_refusal_fails_with_its_problem_and_counts_a_clear_attempt() -> None:
    after = _settle(classify(400, _error(400, "c-9")))
    assert after.status == "failed" and after.clear_attempts == 1
    assert (
        after.error is not None
        and after.error["type"] == "upstream-rejected"
        and after.error["status"] == 422
    )
    assert after.correlation_ids == ("c-9",)


def test_a_transient_outcome_with_a_retry_stays_pending_and_due() -> None:
    after = _settle(classify(429, _error(429)), retry_at=NOW + 30)
    assert (after.status, after.phase, after.next_attempt_at) == ("pending", "sent", NOW + 30)
    assert (after.due_bucket, after.due_at) == (DUE_BUCKET_PENDING, NOW + 30)
    assert after.clear_attempts == 1


def test_giving_up_after_nothing_applied_fails() -> None:
    after = _settle(classify(429, _error(429)))
    assert (
        after.status == "failed"
        and after.error is not None
        and after.error["type"] == "upstream-rate-limited"
    )
    assert after.error["status"] == 503


def test_giving_up_after_maybe_applied_needs_review() -> None:
    after = _settle(classify(503, _error(503)))
    assert after.status == "needs_review" and _bucket_once_published(after) == DUE_BUCKET_NEEDS_REVIEW
    assert after.error is not None and after.error["type"] == "upstream-outcome-unknown"


def test_one_unsettled_attempt_makes_the_end_needs_review() -> None:
    # two attempts taken, only this one settled as nothing-applied: the other may have been applied
    op = _sent().with_changes(attempts=2, clear_attempts=0)
    after = _settle(classify_exception(httpx.ConnectError("x", request=_request())), op=op)
    assert after.status == "needs_review" and after.clear_attempts == 1


def test_a_refusal_after_an_earlier_attempt_that_may_have_applied_needs_review() -> None:
    # A 401 is answered before Codat's idempotency layer: it says nothing about the earlier attempt (a
    # timeout, say), so the end is doubt, never `failed`.
    op = _sent().with_changes(attempts=2, clear_attempts=0)
    after = _settle(classify(401, _error(401)), op=op)
    assert after.status == "needs_review" and _bucket_once_published(after) == DUE_BUCKET_NEEDS_REVIEW
    assert after.error is not None and after.error["type"] == "upstream-outcome-unknown"


def test_every_settle_is_a_new_version_under_the_same_token() -> None:
    sent = _sent()
    settling = lifecycle.settle(sent, classify(201, b"{}"), NOW + 1, retry_at=None)
    assert (settling.name, settling.before) == ("settle", sent)
    assert settling.ours.version == sent.version + 1 and settling.ours.lease_token == sent.lease_token


def test_correlation_ids_accumulate_once_each() -> None:
    op = _settle(classify(503, _error(503, "c-1")), retry_at=NOW + 5)
    op = _settle(classify(503, _error(503, "c-1"), earlier=op.correlation_ids), op=op)
    assert op.correlation_ids == ("c-1",) and op.status == "needs_review"


# -- the window's end answers with what the attempts actually met ------------------------------------------


def test_a_window_that_closed_after_only_unopened_connections_fails_unavailable_not_rate_limited() -> None:
    never_left = classify_exception(httpx.ConnectError("refused", request=_request()))
    op = _settle(never_left, retry_at=NOW + 5)
    ended = lifecycle.end_window_state(op, now=NOW + 3600, token="t2", holder="sweeper")
    assert ended.status == "failed" and ended.error is not None
    assert (ended.error["type"], ended.error["status"]) == ("upstream-unavailable", 503)


def test_a_window_that_closed_rate_limited_fails_503_with_codats_last_words() -> None:
    op = _settle(classify(429, _error(429, "c-429"), headers={"Retry-After": "5"}), retry_at=NOW + 5)
    ended = lifecycle.end_window_state(op, now=NOW + 3600, token="t2", holder="sweeper")
    assert ended.status == "failed" and ended.error is not None
    assert (ended.error["type"], ended.error["status"]) == ("upstream-rate-limited", 503)
    assert ended.error["upstream"] == {"statusCode": 429, "error": "nope", "correlationId": "c-429"}


def test_a_pending_record_never_shows_its_provisional_answer() -> None:
    op = _settle(classify(429, _error(429)), retry_at=NOW + 5)
    assert envelope(op, "https://x")["error"] is None
    assert op.error is not None and "rawBody" not in op.error  # bodies are kept with end states only
