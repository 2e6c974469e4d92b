"""Codat's idempotency semantics as the sandbox models them (contract: Outcome table, Local stack)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from local.sandbox.idempotency import CachedResponse, IdempotencyCache, Verdict
from local.sandbox.seed import ACCOUNT_GBP_CURRENT, BILLS_GBP_OPEN, COMPANY_GBP_ID, CONNECTION_GBP_ID
from tests.fixtures.sandbox import Sandbox

GBP = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
PAY = f"{GBP}/bills/{BILLS_GBP_OPEN[4]}/payment"  # 625.00 due


def body(amount: float = 10) -> bytes:
    account = f'{{"id": "{ACCOUNT_GBP_CURRENT}"}}'
    return f'{{"amount": {amount}, "date": "2026-11-25", "accountRef": {account}}}'.encode()


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def wait_until_taken(sandbox: Sandbox) -> None:
    """Until the armed fault has been taken: the first request now holds the key (no sleep-and-hope)."""
    deadline = time.monotonic() + 5
    while sandbox.faults():
        assert time.monotonic() < deadline, "the held request never arrived"
        time.sleep(0.01)


def test_same_key_same_body_is_replayed_byte_for_byte(codat: httpx.Client, sandbox) -> None:
    key = str(uuid.uuid4())
    first = codat.post(PAY, content=body(), headers=keyed(key))
    second = codat.post(PAY, content=body(), headers=keyed(key))
    third = codat.post(PAY, content=body(), headers=keyed(key.upper()))  # GUIDs compare case-insensitively
    assert first.status_code == second.status_code == third.status_code == 201
    assert first.content == second.content == third.content
    records = sandbox.payments()
    assert len(records) == 1
    assert records[0]["idempotencyKey"] == key
    assert records[0]["id"] == first.json()["id"]


def test_refusals_are_cached_too_with_their_correlation_id(codat: httpx.Client, sandbox) -> None:
    key = str(uuid.uuid4())
    first = codat.post(PAY, content=body(9999), headers=keyed(key))
    assert first.status_code == 400
    # Even once the bill could take it (nothing changed here), the key answers what it answered.
    second = codat.post(PAY, content=body(9999), headers=keyed(key))
    assert second.status_code == 400
    assert second.content == first.content
    assert second.json()["correlationId"] == first.json()["correlationId"]
    assert sandbox.payments() == []


def test_404_is_cached(codat: httpx.Client) -> None:
    key = str(uuid.uuid4())
    path = f"{GBP}/bills/NO-SUCH/payment"
    first = codat.post(path, content=body(), headers=keyed(key))
    second = codat.post(path, content=body(), headers=keyed(key))
    assert first.status_code == second.status_code == 404
    assert first.content == second.content


@pytest.mark.parametrize(
    "other",
    [
        body(11),  # another amount
        body(10).replace(b": ", b":"),  # the same JSON, other bytes: Codat compares raw bytes
    ],
)
def test_same_key_other_body_is_422(codat: httpx.Client, sandbox, other: bytes) -> None:
    key = str(uuid.uuid4())
    assert codat.post(PAY, content=body(10), headers=keyed(key)).status_code == 201
    reused = codat.post(PAY, content=other, headers=keyed(key))
    assert reused.status_code == 422
    assert reused.json()["statusCode"] == 422
    assert len(sandbox.payments()) == 1


def test_same_key_on_another_path_is_422(codat: httpx.Client) -> None:
    key = str(uuid.uuid4())
    assert codat.post(PAY, content=body(), headers=keyed(key)).status_code == 201
    other_bill = f"{GBP}/bills/{BILLS_GBP_OPEN[5]}/payment"
    assert codat.post(other_bill, content=body(), headers=keyed(key)).status_code == 422


@pytest.mark.parametrize("key", ["not-a-guid", "", "12345", "0b0c6a3e-1111-4222-8333-44445555666"])
def test_a_non_guid_key_is_400_and_nothing_is_recorded(codat: httpx.Client, sandbox, key: str) -> None:
    response = codat.post(PAY, content=body(), headers=keyed(key))
    assert response.status_code == 400
    assert response.json()["validation"]["errors"][0]["itemId"] == "Idempotency-Key"
    assert sandbox.payments() == []


def test_unkeyed_posts_are_each_applied(codat: httpx.Client, sandbox) -> None:
    first = codat.post(PAY, content=body())
    second = codat.post(PAY, content=body())
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert len(sandbox.payments()) == 2


def test_409_while_the_first_is_in_flight_then_the_replay(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY, fault="hold-then-commit", holdSeconds=1.0)
    key = str(uuid.uuid4())
    answers: dict[str, httpx.Response] = {}

    def first() -> None:
        answers["first"] = codat.post(PAY, content=body(), headers=keyed(key))

    thread = threading.Thread(target=first)
    thread.start()
    wait_until_taken(sandbox)
    during = codat.post(PAY, content=body(), headers=keyed(key))
    assert during.status_code == 409
    assert during.json()["statusCode"] == 409
    assert sandbox.payments() == []  # still held
    thread.join(timeout=5)
    assert answers["first"].status_code == 201
    after = codat.post(PAY, content=body(), headers=keyed(key))
    assert after.content == answers["first"].content
    assert len(sandbox.payments()) == 1


def test_429_is_never_cached_the_key_is_free_again(codat: httpx.Client, sandbox) -> None:
    sandbox.add_fault(method="POST", path=PAY, fault="status", status=429, retryAfter=1)
    key = str(uuid.uuid4())
    limited = codat.post(PAY, content=body(), headers=keyed(key))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert sandbox.payments() == []
    retried = codat.post(PAY, content=body(), headers=keyed(key))
    assert retried.status_code == 201
    assert len(sandbox.payments()) == 1


def test_after_the_cache_expires_the_key_is_forgotten(sandbox_factory, validated_client) -> None:
    # Codat forgets a key after 90 minutes; a resend then records the payment again. Our operation record,
    # not Codat, is the guard past that window — this is the behaviour the drills rely on.
    short = sandbox_factory(idempotency_seconds=0.3)
    client = validated_client(on=short)
    key = str(uuid.uuid4())
    first = client.post(PAY, content=body(), headers=keyed(key))
    assert client.post(PAY, content=body(), headers=keyed(key)).content == first.content
    time.sleep(0.45)
    again = client.post(PAY, content=body(), headers=keyed(key))
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    assert len(short.payments()) == 2


def test_reset_clears_cached_answers(codat: httpx.Client, sandbox) -> None:
    key = str(uuid.uuid4())
    first = codat.post(PAY, content=body(), headers=keyed(key))
    sandbox.reset()
    second = codat.post(PAY, content=body(), headers=keyed(key))
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]


# --- the cache on its own (pure) ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_verdicts_and_expiry() -> None:
    clock = Clock()
    cache = IdempotencyCache(90.0, clock=clock)
    ok = CachedResponse(201, b"{}")
    assert cache.begin("k", b"a") == (Verdict.EXECUTE, None)
    assert cache.begin("k", b"a") == (Verdict.IN_PROGRESS, None)
    assert cache.begin("k", b"b") == (Verdict.REUSED, None)
    cache.finish("k", ok)
    assert cache.begin("k", b"a") == (Verdict.REPLAY, ok)
    clock.now = 89.9
    assert cache.begin("k", b"a")[0] is Verdict.REPLAY
    clock.now = 90.0
    assert cache.begin("k", b"a") == (Verdict.EXECUTE, None)


@pytest.mark.parametrize("response", [CachedResponse(429, b"{}"), None])
def test_a_429_or_no_answer_releases_the_key(response: Any) -> None:
    cache = IdempotencyCache(90.0)
    cache.begin("k", b"a")
    cache.finish("k", response)
    assert cache.begin("k", b"other body") == (Verdict.EXECUTE, None)
