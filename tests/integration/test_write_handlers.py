"""The write handlers invoked in-process with API Gateway events, against moto (server) and the sandbox.

Faster and more direct than through the gateway (tests/integration/test_writes.py covers that path):
these pin the handler glue — key header rules, status codes, problem bodies, Location, the sample
events — and the synchronous side of the contract's Outcome table, one row at a time (the retries
themselves, through the sweeper and the retry worker, are tests/integration/test_retries.py).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import billpay.adapters.codat as codat_module
import pytest
from billpay.adapters import secrets
from billpay.config import reset_settings
from billpay.service.payment_guards import reset_lookup_cache

from local.sandbox.seed import (
    ACCOUNT_GBP_ARCHIVED,
    ACCOUNT_GBP_CURRENT,
    BILL_GBP_PARTIAL,
    BILLS_GBP_OPEN,
    COMPANY_GBP_ID,
    CONNECTION_GBP_ID,
)

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "events"
PAYMENT_PATH = "/companies/*/connections/*/payables/bills/*/payment"


class Context:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-2:123456789012:function:test"
    aws_request_id = "req"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


@pytest.fixture
def env(aws_emulator: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in aws_emulator.function_env(
        "CreateBillPaymentFunction", codat_base_url=sandbox.url
    ).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    monkeypatch.setenv("CODAT_API_KEY", sandbox.api_key)
    aws_emulator.clear_table("BillIndexTable")
    _reset()
    yield sandbox
    _reset()


def _reset() -> None:
    reset_settings()
    reset_lookup_cache()
    secrets.reset_cache()
    codat_module._client = None


def _handler(name: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    module = __import__(f"functions.{name}.handler", fromlist=["lambda_handler"])
    return module.lambda_handler  # type: ignore[no-any-return]


def _event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def pay(
    body: dict[str, Any] | str,
    key: str | None,
    *,
    bill: str = BILLS_GBP_OPEN[0],
    caller: str | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    event = copy.deepcopy(_event("create_bill_payment"))
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    headers = {k: v for k, v in event["headers"].items() if k.lower() != "idempotency-key"}
    if key is not None:
        headers["Idempotency-Key"] = key
    event["headers"] = headers
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    event["pathParameters"]["billId"] = bill
    event["path"] = event["path"].replace(BILLS_GBP_OPEN[0], bill)
    event["requestContext"]["path"] = event["requestContext"]["path"].replace(BILLS_GBP_OPEN[0], bill)
    if caller:
        event["requestContext"]["identity"]["userArn"] = caller
    answer = _handler("create_bill_payment")(event, Context())
    headers = dict(answer.get("headers") or {})
    headers.update({k: v[-1] for k, v in (answer.get("multiValueHeaders") or {}).items()})
    return answer["statusCode"], headers, json.loads(answer["body"])


def body(amount: Any = 25, account: str = ACCOUNT_GBP_CURRENT, **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "date": "2026-11-25", "accountRef": {"id": account}, **extra}


def key() -> str:
    return f"test-{uuid.uuid4()}"


# -- sample events ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["create_bill_payment", "create_bank_account", "get_operation"])
def test_sample_events_parse_and_route(name: str, env: Any) -> None:
    answer = _handler(name)(_event(name), Context())
    assert answer["statusCode"] in (200, 201, 404)
    assert answer["statusCode"] < 500


# -- first answers and replays ------------------------------------------------------------------------


def test_a_payment_is_recorded_once_and_replayed_without_codat(env: Any) -> None:
    k = key()
    status, _, first = pay(body(), k)
    assert status == 201 and first["status"] == "succeeded" and first["attempts"] == 1
    assert first["result"]["amount"] == 25
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="status", status=500, times=5)
    status, _, again = pay(body(amount=25.00), k)
    assert status == 201 and again == first
    assert len(env.payments()) == 1
    assert [f["times"] for f in env.faults()] == [5]  # the armed fault never fired: Codat was not called


def test_ten_written_three_ways_is_one_body(env: Any) -> None:
    k = key()
    answers = [
        pay(f'{{"amount": {a}, "date": "2026-11-25", "accountRef": {{"id": "{ACCOUNT_GBP_CURRENT}"}}}}', k)
        for a in ("10", "10.0", "10.00")
    ]
    assert [a[0] for a in answers] == [201, 201, 201]
    assert answers[0][2] == answers[1][2] == answers[2][2]
    assert len(env.payments()) == 1


def test_reusing_a_key_with_another_body_is_422(env: Any) -> None:
    k = key()
    assert pay(body(amount=10), k)[0] == 201
    status, _, problem = pay(body(amount=11), k)
    assert status == 422 and problem["type"].endswith("/problems/idempotency-key-reused")
    assert "operation" not in problem
    assert len(env.payments()) == 1


def test_two_sessions_of_one_role_are_one_operation(env: Any) -> None:
    k = key()
    a = pay(body(), k, caller="arn:aws:sts::123456789012:assumed-role/billpay-app/session-a")
    b = pay(body(), k, caller="arn:aws:sts::123456789012:assumed-role/billpay-app/session-b")
    assert a[0] == b[0] == 201 and a[2]["operationId"] == b[2]["operationId"]
    # A role the client registry does not know is refused before anything is claimed or sent.
    c = pay(body(), k, caller="arn:aws:sts::123456789012:assumed-role/other-role/session-a")
    assert c[0] == 403 and c[2]["type"].endswith("/problems/caller-unknown")
    assert len(env.payments()) == 1


# -- the key header -----------------------------------------------------------------------------------------


def test_a_missing_key_is_400_and_nothing_is_recorded(env: Any) -> None:
    status, _, problem = pay(body(), None)
    assert status == 400 and problem["type"].endswith("/problems/idempotency-key-missing")
    assert env.payments() == []


@pytest.mark.parametrize("bad", ["", "x" * 256, "has space", "naïve"])
def test_a_malformed_key_is_a_validation_error(env: Any, bad: str) -> None:
    status, _, problem = pay(body(), bad)
    assert status == 400 and problem["type"].endswith("/problems/validation-error")
    assert problem["errors"][0]["field"] == "Idempotency-Key"


def test_the_key_header_name_is_case_insensitive(env: Any) -> None:
    event = copy.deepcopy(_event("create_bill_payment"))
    value = event["headers"].pop("Idempotency-Key")
    event["headers"]["idempotency-KEY"] = f"{value}-{uuid.uuid4()}"
    answer = _handler("create_bill_payment")(event, Context())
    assert answer["statusCode"] == 201


# -- guards -------------------------------------------------------------------------------------------------


def test_a_guard_refusal_releases_the_key(env: Any) -> None:
    k = key()
    status, _, problem = pay(body(account=ACCOUNT_GBP_ARCHIVED), k)
    assert status == 422 and problem["type"].endswith("/problems/account-inactive")
    assert "operation" not in problem and env.payments() == []
    status, _, fixed = pay(body(), k)  # the same key, corrected body
    assert status == 201 and fixed["status"] == "succeeded"


def test_a_bad_body_never_reaches_codat(env: Any) -> None:
    for bad in ['{"amount": -1, "date": "2026-11-25", "accountRef": {"id": "a"}}', "{", '{"amount": "10"}']:
        status, _, problem = pay(bad, key())
        assert status == 400 and problem["type"].endswith("/problems/validation-error")
    assert env.payments() == []


# -- outcomes (contract: Outcome table): a transient one settles `pending` (202 + Location) for the sweeper --


def test_a_codat_400_fails_with_422_and_the_operation(env: Any) -> None:
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="status", status=400, times=1)
    status, _, problem = pay(body(), key())
    assert status == 422 and problem["type"].endswith("/problems/upstream-rejected")
    assert problem["operation"]["status"] == "failed" and problem["upstream"]["statusCode"] == 400


def test_a_codat_404_fails_with_404(env: Any) -> None:
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="status", status=404, times=1)
    status, _, problem = pay(body(), key())
    assert status == 404 and problem["type"].endswith("/problems/not-found")
    assert problem["operation"]["status"] == "failed"


@pytest.mark.parametrize("code", [401, 402, 403])
def test_codat_refusing_us_fails_with_502(env: Any, code: int) -> None:
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="status", status=code, times=1)
    status, _, problem = pay(body(), key())
    assert status == 502 and problem["type"].endswith("/problems/upstream-rejected")
    assert problem["operation"]["status"] == "failed"


def test_a_429_settles_pending_and_a_replay_answers_it_without_sending(env: Any) -> None:
    k = key()
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="status", status=429, retryAfter=3, times=1)
    status, headers, envelope = pay(body(), k)
    assert status == 202 and envelope["status"] == "pending" and envelope["attempts"] == 1
    assert headers["Location"].endswith(f"/operations/{envelope['operationId']}")
    assert env.payments() == []
    # The replay answers the current state from the claim's one read: nothing is sent (the retry is the
    # sweeper's, not before Retry-After).
    status, _, again = pay(body(), k)
    assert status == 202 and again["operationId"] == envelope["operationId"]
    assert env.payments() == []


@pytest.mark.parametrize("code", [500, 502, 503])
def test_a_5xx_is_transient_so_it_settles_pending(env: Any, code: int) -> None:
    k = key()
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="status", status=code, times=1)
    status, _, envelope = pay(body(), k)
    assert status == 202 and envelope["status"] == "pending"
    status, _, again = pay(body(), k)  # a replay answers the same, and sends nothing
    assert status == 202 and again == envelope
    assert env.payments() == []


def test_commit_then_5xx_is_pending_and_never_pays_twice(env: Any) -> None:
    k = key()
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="commit-then-status", status=500, times=1)
    status, _, envelope = pay(body(), k)
    assert status == 202 and envelope["status"] == "pending"
    assert pay(body(), k)[0] == 202
    assert len(env.payments()) == 1


def test_a_409_from_codat_is_in_progress_so_it_settles_pending(env: Any) -> None:
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="status", status=409, times=1)
    status, _, envelope = pay(body(), key())
    assert status == 202 and envelope["status"] == "pending"


def test_a_422_from_codat_needs_review(env: Any) -> None:
    env.add_fault(method="POST", path=PAYMENT_PATH, fault="status", status=422, times=1)
    status, _, problem = pay(body(), key())
    assert status == 502 and problem["operation"]["status"] == "needs_review"


def test_the_bill_amount_due_drops_by_the_amount_paid(env: Any) -> None:
    def due() -> float:
        with env.client() as codat:
            page = codat.get(
                f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/bills",
                params={"query": "status=PartiallyPaid"},
            ).json()
        return float(next(b["amountDue"] for b in page["results"] if b["id"] == BILL_GBP_PARTIAL))

    before = due()
    assert pay(body(amount=12.34), key(), bill=BILL_GBP_PARTIAL)[0] == 201
    assert due() == pytest.approx(before - 12.34)


# -- GET /operations/{id} ---------------------------------------------------------------------------------


def test_get_operation_answers_the_envelope_or_404(env: Any) -> None:
    _, _, created = pay(body(), key())
    event = copy.deepcopy(_event("get_operation"))
    event["pathParameters"]["operationId"] = created["operationId"]
    event["path"] = f"/operations/{created['operationId']}"
    answer = _handler("get_operation")(event, Context())
    assert answer["statusCode"] == 200 and json.loads(answer["body"]) == created
    event["pathParameters"]["operationId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "nothing"))
    event["path"] = f"/operations/{event['pathParameters']['operationId']}"
    answer = _handler("get_operation")(event, Context())
    assert answer["statusCode"] == 404
