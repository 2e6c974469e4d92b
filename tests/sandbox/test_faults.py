"""Injected faults (contract: Local stack): each kind, its matching, its use, and what it leaves behind."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID

GBP = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
PAY = f"{GBP}/bills/{BILLS_GBP_OPEN[6]}/payment"  # 875.00 due
PAY_GLOB = "/companies/*/payables/bills/*/payment"
OPTIONS = f"{GBP}/mappingOptions/payments"
BODY = f'{{"amount": 25, "date": "2026-11-25", "accountRef": {{"id": "{ACCOUNT_GBP_CURRENT}"}}}}'.encode()


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def amount_due(codat: httpx.Client, bill_id: str = BILLS_GBP_OPEN[6]) -> float:
    token = None
    while True:
        params: dict[str, str] = {"continuationToken": token} if token else {}
        page = codat.get(f"{GBP}/bills", params=params).json()
        for bill in page["results"]:
            if bill["id"] == bill_id:
                return float(bill["amountDue"])
        token = page["pagination"].get("continuationToken")
        assert token, f"{bill_id} not payable"


# --- status --------------------------------------------------------------------------------------------


def test_status_fault_on_a_read_answers_n_times_then_recovers(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="GET", path=OPTIONS, fault="status", status=503, times=2)
    failures = [codat.get(OPTIONS) for _ in range(2)]
    assert [r.status_code for r in failures] == [503, 503]
    assert [r.json()["statusCode"] for r in failures] == [503, 503]
    assert failures[0].json()["correlationId"] != failures[1].json()["correlationId"]
    assert codat.get(OPTIONS).status_code == 200
    assert sandbox.faults() == []


def test_status_fault_on_a_write_applies_and_caches_nothing(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY_GLOB, fault="status", status=500, retryAfter=0.5)
    key = str(uuid.uuid4())
    failed = codat.post(PAY, content=BODY, headers=keyed(key))
    assert failed.status_code == 500
    assert failed.headers["Retry-After"] == "0.5"
    assert sandbox.payments() == []
    assert amount_due(codat) == 875
    retried = codat.post(PAY, content=BODY, headers=keyed(key))
    assert retried.status_code == 201
    assert len(sandbox.payments()) == 1


def test_a_fault_matches_only_its_method_and_path(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY_GLOB, fault="status", status=502)
    assert codat.get(OPTIONS).status_code == 200  # GET: not matched
    assert codat.post(f"{GBP}/bankAccounts", json={"name": "A", "accountType": "Debit", "accountNumber": "1",
                                                   "currency": "GBP"}).status_code == 201  # fmt: skip
    assert codat.post(PAY, content=BODY).status_code == 502
    assert codat.post(PAY, content=BODY).status_code == 201  # times=1 used up


def test_faults_are_consumed_in_the_order_they_were_armed(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(path="/companies*", fault="status", status=503)
    sandbox.add_fault(path="/companies*", fault="status", status=504)
    assert [codat.get("/companies").status_code for _ in range(3)] == [503, 504, 200]


def test_delete_clears_all_faults(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(path="*", fault="status", status=503, times=100)
    assert len(sandbox.faults()) == 1
    assert httpx.delete(f"{sandbox.url}/_sandbox/faults").json() == {"cleared": 1}
    assert codat.get("/companies").status_code == 200


def test_faults_act_in_front_of_auth(validated_client, sandbox) -> None:
    client = validated_client(headers={"Authorization": "Basic bm9wZQ=="})
    sandbox.add_fault(path="/companies", fault="status", status=503)
    assert client.get("/companies").status_code == 503
    assert client.get("/companies").status_code == 401


# --- timeout -------------------------------------------------------------------------------------------


def test_timeout_fault_holds_then_drops_without_applying(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY, fault="timeout", holdSeconds=0.3)
    key = str(uuid.uuid4())
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        codat.post(PAY, content=BODY, headers=keyed(key))
    assert time.monotonic() - started >= 0.28
    assert sandbox.payments() == []
    # Nothing was cached: the same key is a fresh attempt.
    assert codat.post(PAY, content=BODY, headers=keyed(key)).status_code == 201
    assert len(sandbox.payments()) == 1


def test_a_held_request_blocks_no_other(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="GET", path=OPTIONS, fault="timeout", holdSeconds=5)
    with sandbox.client(timeout=0.4) as impatient:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            impatient.get(OPTIONS)
        assert time.monotonic() - started < 2
    # Meanwhile the held request's thread still sleeps; others are answered at once.
    started = time.monotonic()
    for _ in range(10):
        assert codat.get(OPTIONS).status_code == 200
    assert time.monotonic() - started < 3  # far below the 5 s hold


def test_default_hold_is_30_seconds(sandbox) -> None:
    fault = sandbox.add_fault(path="/companies", fault="timeout")
    assert fault["holdSeconds"] == 30
    assert fault["times"] == 1


# --- commit-then-status --------------------------------------------------------------------------------


def test_commit_then_status_applies_caches_and_replays_the_failure(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY_GLOB, fault="commit-then-status", status=502)
    key = str(uuid.uuid4())
    first = codat.post(PAY, content=BODY, headers=keyed(key))
    assert first.status_code == 502
    assert first.json()["statusCode"] == 502
    assert len(sandbox.payments()) == 1
    assert amount_due(codat) == 850
    replay = codat.post(PAY, content=BODY, headers=keyed(key))
    assert replay.status_code == 502
    assert replay.content == first.content  # same correlationId: a replayed cached failure
    assert len(sandbox.payments()) == 1


def test_commit_then_status_on_a_refused_write_answers_the_refusal(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY_GLOB, fault="commit-then-status", status=500)
    too_much = BODY.replace(b'"amount": 25', b'"amount": 5000')
    refused = codat.post(PAY, content=too_much, headers=keyed(str(uuid.uuid4())))
    assert refused.status_code == 400
    assert sandbox.payments() == []


# --- commit-then-timeout -------------------------------------------------------------------------------


def test_commit_then_timeout_applies_then_drops_and_the_retry_gets_the_success(
    codat: httpx.Client, sandbox
) -> None:
    sandbox.add_fault(method="POST", path=PAY_GLOB, fault="commit-then-timeout", holdSeconds=0.2)
    key = str(uuid.uuid4())
    with pytest.raises(httpx.RemoteProtocolError):
        codat.post(PAY, content=BODY, headers=keyed(key))
    records = sandbox.payments()
    assert len(records) == 1
    retry = codat.post(PAY, content=BODY, headers=keyed(key))
    assert retry.status_code == 201
    assert retry.json()["id"] == records[0]["id"]
    assert len(sandbox.payments()) == 1


def test_commit_then_timeout_retry_during_the_hold_gets_the_success(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY_GLOB, fault="commit-then-timeout", holdSeconds=2)
    key = str(uuid.uuid4())
    with sandbox.client(timeout=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post(PAY, content=BODY, headers=keyed(key))
    deadline = time.monotonic() + 5
    while not sandbox.payments():  # committed (the sandbox is still holding the answer)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    retry = codat.post(PAY, content=BODY, headers=keyed(key))
    assert retry.status_code == 201
    assert len(sandbox.payments()) == 1


# --- hold-then-commit ----------------------------------------------------------------------------------


def test_hold_then_commit_answers_normally_after_the_hold(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY_GLOB, fault="hold-then-commit", holdSeconds=0.3)
    started = time.monotonic()
    response = codat.post(PAY, content=BODY, headers=keyed(str(uuid.uuid4())))
    assert response.status_code == 201
    assert time.monotonic() - started >= 0.28
    assert len(sandbox.payments()) == 1


def test_a_request_held_across_a_reset_never_commits(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY_GLOB, fault="hold-then-commit", holdSeconds=0.5)
    errors: list[BaseException] = []

    def held() -> None:
        try:
            codat.post(PAY, content=BODY, headers=keyed(str(uuid.uuid4())))
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=held)
    thread.start()
    deadline = time.monotonic() + 5
    while sandbox.faults():  # taken: the request is being held
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sandbox.reset()
    thread.join(timeout=5)
    assert errors and isinstance(errors[0], httpx.RemoteProtocolError)
    assert sandbox.payments() == []


def test_commit_faults_on_reads(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="GET", path=OPTIONS, fault="commit-then-status", status=500)
    assert codat.get(OPTIONS).status_code == 500
    sandbox.add_fault(method="GET", path=OPTIONS, fault="hold-then-commit", holdSeconds=0.1)
    assert codat.get(OPTIONS).status_code == 200


# --- the control endpoint itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "/x", "fault": "explode"},
        {"path": "/x", "fault": "status"},  # no status
        {"path": "/x", "fault": "status", "status": 200},
        {"path": "/x", "fault": "commit-then-status", "status": 404},  # Codat never records then 4xx
        {"fault": "timeout"},  # no path
        {"path": "/x", "fault": "timeout", "times": 0},
        {"path": "/x", "fault": "timeout", "holdSeconds": -1},
        {"path": "/x", "fault": "status", "status": 503, "retryAfter": "soon"},
        {"path": "/x", "fault": "timeout", "status": 503},
        {"path": "/x", "fault": "timeout", "colour": "red"},
    ],
)
def test_malformed_faults_are_400(sandbox, spec: dict[str, object]) -> None:
    response = httpx.post(f"{sandbox.url}/_sandbox/faults", json=spec)
    assert response.status_code == 400
    assert response.json()["validation"]["errors"]
    assert sandbox.faults() == []


def test_payments_endpoint_lists_oldest_first(codat: httpx.Client, sandbox) -> None:
    for amount in (1, 2, 3):
        codat.post(PAY, content=BODY.replace(b'"amount": 25', f'"amount": {amount}'.encode()))
    assert [record["amount"] for record in sandbox.payments()] == [1, 2, 3]
