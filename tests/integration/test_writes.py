"""Idempotent writes through the whole local stack: gateway → handler workers → moto → Codat sandbox.

What must hold end to end: one key is one operation and at most one upstream record, whatever
the replays, concurrency, callers, upstream faults or crashes (contract: Operation life cycle, Outcome table).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from billpay.domain.operations import ROUTE_CREATE_BILL_PAYMENT, key_scope_v2, operation_id

from local.callers import LOCAL_CLIENT_ID, LOCAL_PARAMETER
from local.emulator import FAKE_CREDENTIALS
from local.gateway.events import DEFAULT_CALLER_ARN
from local.sandbox.seed import (
    ACCOUNT_GBP_ARCHIVED,
    ACCOUNT_GBP_CURRENT,
    BILL_GBP_PARTIAL,
    BILLS_GBP_OPEN,
    COMPANY_GBP_ID,
    CONNECTION_GBP_ID,
)
from tests.integration.conftest import Stack, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.long(seconds=85)]

REPO_ROOT = Path(__file__).resolve().parents[2]
CONNECTION = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
PAYMENT_GLOB = "*/payables/bills/*/payment"


def payments_path(bill: str = BILLS_GBP_OPEN[0]) -> str:
    return f"{CONNECTION}/bills/{bill}/payments"


def body(amount: Any = 25, account: str = ACCOUNT_GBP_CURRENT) -> dict[str, Any]:
    return {"amount": amount, "date": "2026-11-25", "accountRef": {"id": account}, "reference": "test"}


def new_key() -> str:
    return f"it-{uuid.uuid4()}"


def post(
    stack: Stack,
    payload: dict[str, Any] | str,
    key: str | None,
    *,
    bill: str = BILLS_GBP_OPEN[0],
    caller: str | None = None,
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if caller is not None:
        headers["X-Local-Caller-Arn"] = caller
    content = payload if isinstance(payload, str) else json.dumps(payload)
    return stack.client.post(payments_path(bill), content=content, headers=headers)


@pytest.fixture
def live(stack: Stack) -> Stack:
    stack.reset()
    return stack


# -- one key, one operation ---------------------------------------------------------------------------------


def test_two_posts_one_key_one_record_and_the_replay_never_calls_codat(live: Stack) -> None:
    key = new_key()
    first = post(live, body(), key)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "succeeded"
    live.arm_fault(path=PAYMENT_GLOB, fault="status", status=500, times=3)
    again = post(live, body(), key)
    assert again.status_code == 201 and again.json() == first.json()
    assert len(live.payments()) == 1
    assert [f["times"] for f in live.sandbox.get("/_sandbox/faults").json()] == [3]  # never fired


def test_ten_written_three_ways_is_one_body(live: Stack) -> None:
    key = new_key()
    template = '{"amount": %s, "date": "2026-11-25", "accountRef": {"id": "' + ACCOUNT_GBP_CURRENT + '"}}'
    answers = [post(live, template % amount, key) for amount in ("10", "10.0", "10.00")]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert len(live.payments()) == 1


def test_ten_concurrent_posts_one_key_one_operation_one_record(live: Stack) -> None:
    key = new_key()
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: post(live, body(), key), range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    assert 201 in statuses
    assert len({a.json()["operationId"] for a in answers if a.status_code == 201}) == 1
    assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 409)
    assert len(live.payments()) == 1


def test_reusing_a_key_with_another_body_is_422(live: Stack) -> None:
    key = new_key()
    assert post(live, body(amount=10), key).status_code == 201
    reused = post(live, body(amount=11), key)
    assert reused.status_code == 422
    assert reused.headers["content-type"].startswith("application/problem+json")
    assert reused.json()["type"].endswith("/problems/idempotency-key-reused")
    assert len(live.payments()) == 1


def test_a_missing_key_is_400(live: Stack) -> None:
    answer = post(live, body(), None)
    assert answer.status_code == 400 and answer.json()["type"].endswith("/problems/idempotency-key-missing")
    assert live.payments() == []


def test_one_role_two_sts_sessions_is_one_operation(live: Stack) -> None:
    key = new_key()
    role = "arn:aws:sts::123456789012:assumed-role/billpay-app"
    a = post(live, body(), key, caller=f"{role}/instance-a")
    b = post(live, body(), key, caller=f"{role}/instance-b")
    assert a.status_code == b.status_code == 201
    assert a.json()["operationId"] == b.json()["operationId"]
    assert len(live.payments()) == 1


def test_a_guard_refusal_records_nothing_and_releases_the_key(live: Stack) -> None:
    key = new_key()
    refused = post(live, body(account=ACCOUNT_GBP_ARCHIVED), key)
    assert refused.status_code == 422 and refused.json()["type"].endswith("/problems/account-inactive")
    assert "operation" not in refused.json()
    fixed = post(live, body(), key)
    assert fixed.status_code == 201
    assert len(live.payments()) == 1


# -- contract: Outcome table, row by row ---------------------------------------------------------------------

ROWS = [
    # (fault, first HTTP answer, its problem type, end status, upstream records at the end)
    ({"fault": "status", "status": 400}, 422, "upstream-rejected", "failed", 0),
    ({"fault": "status", "status": 404}, 404, "not-found", "failed", 0),
    ({"fault": "status", "status": 401}, 502, "upstream-rejected", "failed", 0),
    ({"fault": "status", "status": 402}, 502, "upstream-rejected", "failed", 0),
    ({"fault": "status", "status": 403}, 502, "upstream-rejected", "failed", 0),
    ({"fault": "status", "status": 422}, 502, "upstream-outcome-unknown", "needs_review", 0),
    # transient: 202 now, the sweeper and worker retry under the same key
    ({"fault": "status", "status": 409}, 202, None, "succeeded", 1),
    ({"fault": "status", "status": 429, "retry_after": 1}, 202, None, "succeeded", 1),
    ({"fault": "status", "status": 500}, 202, None, "succeeded", 1),
    ({"fault": "status", "status": 503}, 202, None, "succeeded", 1),
    ({"fault": "timeout", "hold_seconds": 4}, 202, None, "succeeded", 1),
    # applied, then the answer lost: the retry gets Codat's cached success
    ({"fault": "commit-then-timeout", "hold_seconds": 4}, 202, None, "succeeded", 1),
    # applied, then a 5xx cached under the key: the retry sees the same correlationId
    ({"fault": "commit-then-status", "status": 500}, 202, None, "needs_review", 1),
    ({"fault": "hold-then-commit", "hold_seconds": 0.3}, 201, None, "succeeded", 1),
]


@pytest.mark.parametrize(("fault", "http", "problem", "end", "records"), ROWS, ids=lambda v: str(v))
def test_each_upstream_outcome_ends_as_designed(
    live: Stack, fault: dict[str, Any], http: int, problem: str | None, end: str, records: int
) -> None:
    key = new_key()
    live.arm_fault(path=PAYMENT_GLOB, times=1, **fault)
    answer = post(live, body(), key)
    assert answer.status_code == http, answer.text
    document = answer.json()
    if problem is not None:
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert document["type"].endswith(f"/problems/{problem}")
        operation = document["operation"]
    else:
        operation = document
    if http == 202:
        assert answer.headers["Location"].endswith(f"/operations/{operation['operationId']}")
        assert operation["status"] == "pending"
    operation_id = operation["operationId"]

    def ended() -> dict[str, Any] | None:
        state = live.operation(operation_id)
        return state if state["status"] != "pending" else None

    final = live.wait_until(ended, timeout=30, message=f"operation {operation_id} ends")
    assert final is not None
    assert final["status"] == end
    assert len(live.payments()) == records
    replay = post(live, body(), key)  # a replay answers the end state and sends nothing
    replayed = replay.json() if replay.status_code in (201, 202) else replay.json()["operation"]
    assert replayed == final
    time.sleep(0.5)
    assert len(live.payments()) == records


# -- crashes ------------------------------------------------------------------------------------------------

_INVOKE = """
import json, sys
from functions.create_bill_payment.handler import lambda_handler
class Context:
    function_name = "crash"; memory_limit_in_mb = 512; aws_request_id = "crash"
    invoked_function_arn = "arn:aws:lambda:eu-west-2:000000000000:function:crash"
    def get_remaining_time_in_millis(self): return 10000
print(json.dumps(lambda_handler(json.load(open(sys.argv[1])), Context())), flush=True)
"""


def _spawn_handler(
    stack: Stack, tmp_path: Path, key: str, payload: dict[str, Any]
) -> subprocess.Popen[bytes]:
    """The payment handler in a process of its own (the same code a gateway worker runs), with a Lambda
    deadline 10 s away: its lease ends 15 s after the claim. (Less would leave too little for a send once
    the settle's reserve — one AWS call at its worst, retries included — is kept back.)"""
    event = json.loads((REPO_ROOT / "events" / "create_bill_payment.json").read_text())
    event["headers"]["Idempotency-Key"] = key
    event["multiValueHeaders"]["Idempotency-Key"] = [key]
    event["body"] = json.dumps(payload)
    event["requestContext"]["identity"]["userArn"] = DEFAULT_CALLER_ARN
    event_file = tmp_path / f"{key}.json"
    event_file.write_text(json.dumps(event))
    env = {
        **os.environ,
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": stack.emulator_url,
        "OPERATIONS_TABLE_NAME": stack.operations_table_name,
        "RETRY_QUEUE_URL": stack.retry_queue_url,
        "CODAT_BASE_URL": stack.sandbox_url,
        "CODAT_API_KEY": "local-sandbox-key",
        "BILLPAY_CALLERS_PARAMETER": LOCAL_PARAMETER,
        "BILLPAY_UPSTREAM_TIMEOUT_SECONDS": "20",
        "BILLPAY_SYNC_BUDGET_SECONDS": "20",
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'layers' / 'billpay'}",
    }
    env.pop("CODAT_API_KEY_SECRET_ARN", None)
    return subprocess.Popen(
        [sys.executable, "-c", _INVOKE, str(event_file)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _operation_id(key: str, bill: str = BILLS_GBP_OPEN[0]) -> str:
    """The id the handler derives for the default local caller's client (the golden scope rules)."""
    scope = key_scope_v2(
        LOCAL_CLIENT_ID,
        ROUTE_CREATE_BILL_PAYMENT,
        [COMPANY_GBP_ID, CONNECTION_GBP_ID, bill],
    )
    return operation_id(scope, key)


def _kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


@pytest.fixture(scope="module")
def long_window() -> Iterator[Stack]:
    """A stack whose retry window outlasts a killed holder's lease (its deadline + 5 s), as in the cloud
    (80 minutes against at most 28 s): the shared stack's 10 s window would end it `needs_review` first."""
    with start_stack(BILLPAY_RETRY_WINDOW_SECONDS="60") as running:
        yield running


def test_a_process_killed_after_the_send_never_leads_to_a_second_write(
    long_window: Stack, tmp_path: Path
) -> None:
    live = long_window
    live.reset()
    key = new_key()
    # Codat records the payment and caches its success, but the answer never comes back in time.
    live.arm_fault(path=PAYMENT_GLOB, fault="commit-then-timeout", hold_seconds=30)
    process = _spawn_handler(live, tmp_path, key, body())
    try:
        live.wait_until(lambda: len(live.payments()) == 1, timeout=20, message="the sandbox recorded it")
    finally:
        _kill(process)  # after the send, before the settle
    assert len(live.payments()) == 1

    in_flight = post(live, body(), key)
    assert in_flight.status_code == 409  # its lease (the dead process's deadline + 5 s) still runs

    def ended() -> dict[str, Any] | None:
        answer = post(live, body(), key)
        if answer.status_code == 409:
            return None
        document = answer.json()
        state = document.get("operation", document)
        return state if state["status"] in ("needs_review", "succeeded") else None

    final = live.wait_until(ended, timeout=30, message="the dead holder's lease expired and was handled")
    assert final is not None
    # The sweeper finds the operation due when the dead holder's lease expires; the worker retries under
    # the same key and gets Codat's cached success. Never a second record.
    assert final["status"] == "succeeded"
    time.sleep(1)
    assert len(live.payments()) == 1


def test_a_process_killed_during_the_guards_leaves_the_key_reusable(live: Stack, tmp_path: Path) -> None:
    key = new_key()
    live.arm_fault(method="GET", path="*/payables/bills", fault="timeout", hold_seconds=30, times=5)
    process = _spawn_handler(live, tmp_path, key, body())
    try:
        live.wait_until(
            lambda: (live.operation_item(_operation_id(key)) or {}).get("phase") == "guarding",
            timeout=20,
            message="the claim is written",
        )
    finally:
        _kill(process)
    live.clear_faults()
    assert live.payments() == []
    assert post(live, body(), key).status_code == 409  # the claim's lease still runs

    def reclaimed() -> httpx.Response | None:
        answer = post(live, body(), key)
        return answer if answer.status_code != 409 else None

    answer = live.wait_until(reclaimed, timeout=30, message="the expired claim is taken over")
    assert answer is not None
    assert answer.status_code == 201, answer.text
    assert len(live.payments()) == 1


# -- the accounting side -------------------------------------------------------------------------------------


def _bill(stack: Stack, bill_id: str) -> dict[str, Any]:
    page = stack.sandbox.get(
        f"{CONNECTION}/bills",
        params={"query": "status=Open||status=PartiallyPaid"},
        headers={"Authorization": "Basic bG9jYWwtc2FuZGJveC1rZXk="},
    ).json()
    token = page.get("pagination", {}).get("continuationToken")
    bills = list(page["results"])
    while token:
        page = stack.sandbox.get(
            f"{CONNECTION}/bills",
            params={"query": "status=Open||status=PartiallyPaid", "continuationToken": token},
            headers={"Authorization": "Basic bG9jYWwtc2FuZGJveC1rZXk="},
        ).json()
        bills += page["results"]
        token = page.get("pagination", {}).get("continuationToken")
    return next(b for b in bills if b["id"] == bill_id)


def test_the_bills_amount_due_drops_by_the_amount_paid(live: Stack) -> None:
    before = Decimal(str(_bill(live, BILL_GBP_PARTIAL)["amountDue"]))
    assert post(live, body(amount=12.34), new_key(), bill=BILL_GBP_PARTIAL).status_code == 201
    after = Decimal(str(_bill(live, BILL_GBP_PARTIAL)["amountDue"]))
    assert before - after == Decimal("12.34")


def test_a_created_account_is_listed_once_and_can_be_paid_from_at_once(live: Stack) -> None:
    account = {
        "name": f"Payables {uuid.uuid4().hex[:8]}",
        "accountType": "Debit",
        "accountNumber": "12345678",
        "sortCode": "40-47-84",
        "currency": "GBP",
    }
    created = live.client.post(
        f"{CONNECTION}/bankAccounts", json=account, headers={"Idempotency-Key": new_key()}
    )
    assert created.status_code == 201, created.text
    account_id = created.json()["result"]["id"]

    seen: list[str] = []
    token: str | None = None
    while True:
        params = {"status": "All", **({"continuationToken": token} if token else {})}
        page = live.client.get(f"{CONNECTION}/bankAccounts", params=params).json()
        seen += [a["id"] for a in page["bankAccounts"]]
        token = page.get("pagination", {}).get("continuationToken")
        if not token:
            break
    assert seen.count(account_id) == 1

    paid = post(live, body(account=account_id), new_key())
    assert paid.status_code == 201, paid.text
    assert live.payments()[-1]["accountRef"]["id"] == account_id


def test_a_replay_after_codats_key_cache_expired_records_nothing() -> None:
    with start_stack(BILLPAY_SANDBOX_IDEMPOTENCY_SECONDS="1") as short:
        key = new_key()
        first = post(short, body(), key)
        assert first.status_code == 201
        time.sleep(1.5)  # Codat (the sandbox) has forgotten the key; our record has not
        again = post(short, body(), key)
        assert again.status_code == 201 and again.json() == first.json()
        assert len(short.payments()) == 1
