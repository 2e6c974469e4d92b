"""The Codat client against httpx.MockTransport: auth, encoding, typed errors, read retries, writes.

Pure unit tests: the transport stands in for Codat (including a connection that never opens, which a
listening server cannot fake). The client against the real sandbox is in tests/integration.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billpay.adapters.codat import (
    CodatBadRequestError,
    CodatClient,
    CodatError,
    CodatNotFoundError,
    CodatRateLimitedError,
    CodatRejectedError,
    CodatTimeoutError,
    CodatUnavailableError,
    InvalidPathSegmentError,
    authorization_header,
    bank_accounts_path,
    bill_payment_path,
    error_details,
    get_codat_client,
    set_codat_client,
)
from billpay.config import reset_settings

COMPANY = "3C5E8A1F-6B2D-4F4A-9E7C-0A1B2C3D4E51"
CONNECTION = "7d2f9b4c-1e3a-4c5d-8b6f-0a1b2c3d4e52"
KEY = "sk-test-0123456789-do-not-log"
ACCOUNT_NUMBER = "99887766"


class FakeClock:
    """Monotonic time that only moves when the client sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Handler = Callable[[httpx.Request], httpx.Response]


def make_client(
    handler: Handler, clock: FakeClock | None = None, budget: float = 10.0, key: str = KEY
) -> CodatClient:
    clock = clock or FakeClock()
    return CodatClient(
        base_url="https://codat.test/",
        api_key=key,
        timeout_seconds=5.0,
        connect_timeout_seconds=2.0,
        budget_seconds=budget,
        transport=httpx.MockTransport(handler),
        sleep=clock.sleep,
        clock=clock,
    )


def codat_error(
    status: int, correlation: str = "corr-1", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "statusCode": status,
            "service": "PublicApi",
            "error": f"error {status}",
            "correlationId": correlation,
        },
        headers=headers,
    )


ACCOUNTS = {
    "bankAccounts": [
        {
            "id": "a1",
            "name": "Current",
            "accountNumber": ACCOUNT_NUMBER,
            "currency": "GBP",
            "status": "Active",
        },
    ],
    "pagination": {"continuationToken": "next-page"},
}


@pytest.fixture
def captured_logs() -> Iterator[list[logging.LogRecord]]:
    """Every record from our logger and httpx/httpcore, at DEBUG."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("billpay", "httpx", "httpcore")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield records
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)


# ------------------------------------------------------------------------------------------- requests


def test_list_payment_accounts_sends_basic_auth_encoded_path_and_query() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=ACCOUNTS)

    page = make_client(handler).list_payment_accounts(
        COMPANY, CONNECTION, "status=Active||status=Archived", "tok/en=+&"
    )
    request = seen[0]
    assert request.method == "GET"
    assert request.url.path == (
        f"/companies/{COMPANY.lower()}/connections/{CONNECTION}/payables/mappingOptions/payments"
    )
    assert request.url.params["statusQuery"] == "status=Active||status=Archived"
    assert request.url.params["continuationToken"] == "tok/en=+&"
    assert b"tok%2Fen%3D%2B%26" in request.url.raw_path
    assert request.headers["authorization"] == "Basic " + base64.b64encode(KEY.encode()).decode()
    assert page.bank_accounts[0].id == "a1"
    assert page.pagination is not None
    assert page.pagination.continuation_token == "next-page"


def test_absent_query_parameters_are_not_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"bankAccounts": []})

    page = make_client(handler).list_payment_accounts(COMPANY, CONNECTION)
    assert seen[0].url.query == b""
    assert page.bank_accounts == []
    assert page.pagination is None


def test_a_stored_basic_header_is_used_unchanged() -> None:
    assert authorization_header("Basic YWJj") == "Basic YWJj"
    assert authorization_header("abc") == "Basic YWJj"


def test_the_key_is_fetched_once_lazily() -> None:
    calls: list[int] = []

    def key() -> str:
        calls.append(1)
        return KEY

    client = CodatClient(
        base_url="https://codat.test",
        api_key=key,
        timeout_seconds=1,
        connect_timeout_seconds=1,
        budget_seconds=5,
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"results": []})),
    )
    assert calls == []
    client.list_bills(COMPANY, CONNECTION)
    client.list_bills(COMPANY, CONNECTION)
    assert calls == [1]


def test_list_bills_and_company_information_parse_money_exactly() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/payables/info"):
            return httpx.Response(200, json={"companyName": "Dave", "baseCurrency": "GBP"})
        assert request.url.params["query"] == "status=Open||status=PartiallyPaid"
        body = (
            b'{"results":[{"id":"B-1","currency":"USD","status":"Open","amountDue":0.1,"totalAmount":250.10,'
            b'"currencyRate":"1,","supplierRef":{"id":"4"},"issueDate":"2024-01-01T00:00:00","dueDate":'
            b'"2024-02-01T00:00:00","custom":{"x":1}}],"pagination":{}}'
        )
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    client = make_client(handler)
    info = client.get_company_information(COMPANY, CONNECTION)
    assert info.base_currency == "GBP"
    bills = client.list_bills(COMPANY, CONNECTION, query="status=Open||status=PartiallyPaid")
    bill = bills.results[0]
    assert bill.amount_due == Decimal("0.1")
    assert bill.total_amount == Decimal("250.10")
    assert bill.currency_rate is None  # Codat's own example carries "1,"
    assert bill.dump()["custom"] == {"x": 1}


@pytest.mark.parametrize(
    "bad", ["not-a-uuid", "3c5e8a1f6b2d4f4a9e7c0a1b2c3d4e51", "{3c5e8a1f-6b2d-4f4a-9e7c-0a1b2c3d4e51}", ""]
)
def test_company_and_connection_must_be_uuids(bad: str) -> None:
    client = make_client(lambda r: pytest.fail("must not reach Codat"))
    with pytest.raises(InvalidPathSegmentError):
        client.list_payment_accounts(bad, CONNECTION)
    with pytest.raises(InvalidPathSegmentError):
        client.get_company_information(COMPANY, bad)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a..b", ".", "a\nb", "a\x00b", "a\x7fb", "x" * 256])
def test_bill_ids_that_would_change_the_path_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPathSegmentError):
        bill_payment_path(COMPANY, CONNECTION, bad)


def test_write_paths_are_encoded_and_singular() -> None:
    assert bank_accounts_path(COMPANY, CONNECTION) == (
        f"/companies/{COMPANY.lower()}/connections/{CONNECTION}/payables/bankAccounts"
    )
    assert bill_payment_path(COMPANY, CONNECTION, "INV 7?#%é") == (
        f"/companies/{COMPANY.lower()}/connections/{CONNECTION}/payables/bills/INV%207%3F%23%25%C3%A9/payment"
    )


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, CodatBadRequestError),
        (401, CodatRejectedError),
        (402, CodatRejectedError),
        (403, CodatRejectedError),
        (404, CodatNotFoundError),
        (409, CodatError),
    ],
)
def test_deterministic_errors_are_typed_and_not_retried(status: int, error_type: type[CodatError]) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return codat_error(status, correlation="c-404")

    with pytest.raises(error_type) as exc:
        make_client(handler).list_payment_accounts(COMPANY, CONNECTION)
    assert type(exc.value) is error_type
    assert exc.value.status == status
    assert exc.value.upstream == {"statusCode": status, "error": f"error {status}", "correlationId": "c-404"}
    assert exc.value.correlation_id == "c-404"
    assert calls == [1]


def test_a_non_json_error_body_still_gives_a_typed_error() -> None:
    with pytest.raises(CodatUnavailableError) as exc:
        make_client(lambda r: httpx.Response(502, text="<html>bad gateway</html>")).list_bills(
            COMPANY, CONNECTION
        )
    assert exc.value.upstream == {}


def test_an_unexpected_success_body_is_unavailable_not_a_crash() -> None:
    with pytest.raises(CodatUnavailableError):
        make_client(lambda r: httpx.Response(200, text="not json")).list_bills(COMPANY, CONNECTION)
    with pytest.raises(CodatUnavailableError):
        make_client(lambda r: httpx.Response(200, json={"results": "nope"})).list_bills(COMPANY, CONNECTION)

    # Nested deeper than the JSON decoder recurses: still a typed upstream fault, never a crash (500).
    deep = "[" * 50_000
    with pytest.raises(CodatUnavailableError):
        make_client(lambda r: httpx.Response(200, text=deep)).list_bills(COMPANY, CONNECTION)
    with pytest.raises(CodatUnavailableError) as exc:
        make_client(lambda r: httpx.Response(502, text=deep)).list_bills(COMPANY, CONNECTION)
    assert exc.value.upstream == {}


# -------------------------------------------------------------------------------------------- retries


def test_transient_errors_are_retried_at_most_twice_with_backoff() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return codat_error(503)

    with pytest.raises(CodatUnavailableError):
        make_client(handler, clock).list_payment_accounts(COMPANY, CONNECTION)
    assert len(calls) == 3
    assert len(clock.sleeps) == 2
    assert all(0 <= s <= 2.0 for s in clock.sleeps)


def test_a_retry_that_succeeds_returns_the_answer() -> None:
    answers = iter([codat_error(500), httpx.Response(200, json=ACCOUNTS)])
    page = make_client(lambda r: next(answers)).list_payment_accounts(COMPANY, CONNECTION)
    assert page.bank_accounts[0].id == "a1"


def test_retry_after_is_honoured() -> None:
    clock = FakeClock()
    answers = iter([codat_error(429, headers={"Retry-After": "3"}), httpx.Response(200, json=ACCOUNTS)])
    make_client(lambda r: next(answers), clock).list_payment_accounts(COMPANY, CONNECTION)
    assert clock.sleeps and clock.sleeps[0] >= 3.0


def test_retry_after_beyond_the_budget_answers_at_once() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return codat_error(429, headers={"Retry-After": "60"})

    with pytest.raises(CodatRateLimitedError) as exc:
        make_client(handler, clock, budget=10).list_payment_accounts(COMPANY, CONNECTION)
    assert exc.value.retry_after == 60
    assert calls == [1]
    assert clock.sleeps == []


def test_a_spent_deadline_makes_no_request() -> None:
    clock = FakeClock()
    client = make_client(lambda r: pytest.fail("must not reach Codat"), clock)
    with pytest.raises(CodatTimeoutError):
        client.list_payment_accounts(COMPANY, CONNECTION, deadline=clock.now + 0.1)


def test_a_connection_that_never_opens_is_retried_then_unavailable() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(CodatUnavailableError):
        make_client(handler).list_payment_accounts(COMPANY, CONNECTION)
    assert len(calls) == 3


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_timeouts_are_retried_then_a_timeout_error(exc_type: type[httpx.TimeoutException]) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise exc_type("slow", request=request)

    with pytest.raises(CodatTimeoutError):
        make_client(handler).list_bills(COMPANY, CONNECTION)
    assert len(calls) == 3


def test_request_timeouts_never_exceed_the_time_left() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"results": []})

    clock = FakeClock()
    make_client(handler, clock).list_bills(COMPANY, CONNECTION, deadline=clock.now + 1.5)
    assert seen[0]["read"] == pytest.approx(1.5)
    assert seen[0]["connect"] == pytest.approx(1.5)
    make_client(handler, clock).list_bills(COMPANY, CONNECTION)
    assert seen[1]["read"] == 5.0
    assert seen[1]["connect"] == 2.0


def test_a_read_429_with_an_overflowing_retry_after_is_retried_on_the_usual_backoff() -> None:
    answers = iter([codat_error(429, headers={"Retry-After": "9" * 400}), httpx.Response(200, json=ACCOUNTS)])
    sleeps: list[float] = []
    client = CodatClient(
        base_url="https://codat.test",
        api_key=KEY,
        timeout_seconds=5.0,
        connect_timeout_seconds=2.0,
        budget_seconds=15.0,
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=sleeps.append,
    )
    client.list_payment_accounts(COMPANY, CONNECTION)
    assert len(sleeps) == 1 and sleeps[0] <= 0.2  # the backoff's first ceiling, not the header


def test_a_huge_codat_error_is_reported_capped() -> None:
    details = error_details(json.dumps({"statusCode": 400, "error": "x" * 200_000}).encode())
    assert len(details["error"]) == 8 * 1024
    assert details["truncated"]["error"]["size"] == 200_000


# --------------------------------------------------------------------------------------------- writes


def test_post_keyed_sends_exact_bytes_and_key_and_returns_the_raw_answer() -> None:
    seen: list[httpx.Request] = []
    body = b'{"amount":10.00,"date":"2024-01-01"}'

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "bp-1"}, headers={"X-Extra": "1"})

    path = bill_payment_path(COMPANY, CONNECTION, "B-1")
    answer = make_client(handler).post_keyed(path, body, "6f1c7a9e-0000-5000-8000-000000000001", timeout=4.0)
    request = seen[0]
    assert request.method == "POST"
    assert request.url.path == path
    assert request.content == body
    assert request.headers["idempotency-key"] == "6f1c7a9e-0000-5000-8000-000000000001"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"].startswith("Basic ")
    assert request.extensions["timeout"]["read"] == 4.0
    assert answer.status == 201
    assert json.loads(answer.body) == {"id": "bp-1"}
    assert answer.headers["x-extra"] == "1"


def test_post_keyed_does_not_classify_or_retry() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return codat_error(500, correlation="c-500", headers={"Retry-After": "7"})

    answer = make_client(handler).post_keyed(bank_accounts_path(COMPANY, CONNECTION), b"{}", "k", timeout=1)
    assert answer.status == 500
    assert answer.correlation_id == "c-500"
    assert answer.retry_after == 7.0
    assert calls == [1]


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
def test_post_keyed_lets_httpx_exceptions_through(exc_type: type[httpx.TransportError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("x", request=request)

    with pytest.raises(exc_type):
        make_client(handler).post_keyed(bank_accounts_path(COMPANY, CONNECTION), b"{}", "k", timeout=1)


def test_post_keyed_refuses_a_path_with_a_query() -> None:
    with pytest.raises(InvalidPathSegmentError):
        make_client(lambda r: pytest.fail("no")).post_keyed("/a?b=c", b"{}", "k", timeout=1)


def test_error_details_reads_only_codat_error_bodies() -> None:
    assert error_details(b'{"statusCode":500,"correlationId":"x","error":"e","service":"s"}') == {
        "statusCode": 500,
        "error": "e",
        "correlationId": "x",
    }
    assert error_details(b"nope") == {}
    assert error_details(b"[1]") == {}


# ----------------------------------------------------------------------------------------- secrecy


def test_neither_the_key_nor_account_numbers_are_ever_logged(captured_logs: list[logging.LogRecord]) -> None:
    answers = iter([codat_error(503), httpx.Response(200, json=ACCOUNTS), codat_error(403), codat_error(500)])
    client = make_client(lambda r: next(answers))
    page = client.list_payment_accounts(COMPANY, CONNECTION)
    with pytest.raises(CodatRejectedError) as exc:
        client.list_payment_accounts(COMPANY, CONNECTION)
    assert KEY not in repr(exc.value) + str(exc.value)
    client.post_keyed(
        bank_accounts_path(COMPANY, CONNECTION),
        json.dumps({"accountNumber": ACCOUNT_NUMBER}).encode(),
        "k",
        1,
    )
    assert captured_logs, "expected the client to log its upstream calls"
    encoded_key = base64.b64encode(KEY.encode()).decode()
    for record in captured_logs:
        text = record.getMessage() + repr(record.__dict__)
        assert KEY not in text
        assert encoded_key not in text
        assert ACCOUNT_NUMBER not in text
    assert ACCOUNT_NUMBER not in repr(page)
    assert KEY not in repr(client)


def test_the_container_client_is_built_once_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODAT_API_KEY", KEY)
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    monkeypatch.setenv("CODAT_BASE_URL", "http://127.0.0.1:9")
    reset_settings()
    set_codat_client(None)
    try:
        first = get_codat_client()
        assert get_codat_client() is first  # one connection pool per container, reused
    finally:
        set_codat_client(None)
        reset_settings()
