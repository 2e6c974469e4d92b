"""The operation record's pure rules: scope, ids, hash, states, replays.

Contract: Idempotency key and scope, Operation life cycle.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from billpay.domain import lifecycle
from billpay.domain.lifecycle import due_index
from billpay.domain.operations import (
    DUE_BUCKET_NEEDS_REVIEW,
    DUE_BUCKET_PENDING,
    GUARDING_TTL_SECONDS,
    ROUTE_CREATE_BANK_ACCOUNT,
    ROUTE_CREATE_BILL_PAYMENT,
    STORED_BODY_LIMIT_BYTES,
    Operation,
    StoredBody,
    UnknownCaller,
    UpstreamRequest,
    canonical_json,
    decide_replay,
    key_scope,
    lease_until,
    normalise_caller,
    operation_id,
    request_hash,
    upstream_key,
    validate_idempotency_key,
)
from billpay.models.requests import BillPaymentCreate
from hypothesis import given
from hypothesis import strategies as st

COMPANY = "8a210b68-6988-11ed-a1eb-0242ac120002"
CONNECTION = "2e9d2c44-f675-40ba-8049-353bfcb5e171"


# -- golden: changing any of these maps existing keys to new operations (a double payment) --------------


def test_golden_scope_operation_id_and_upstream_key() -> None:
    caller = normalise_caller("arn:aws:sts::123456789012:assumed-role/billpay-client/i-0abc123")
    scope = key_scope(caller, ROUTE_CREATE_BILL_PAYMENT, [COMPANY, CONNECTION, "bill|7"])
    assert scope == (
        "v1|arn:aws:iam::123456789012:role/billpay-client|create-bill-payment|"
        "8a210b68-6988-11ed-a1eb-0242ac120002|2e9d2c44-f675-40ba-8049-353bfcb5e171|bill%7C7"
    )
    assert operation_id(scope, "order-42") == "01a069f6-daf0-5d72-a73b-9775e1b3675c"
    assert upstream_key(scope, "order-42") == "6be0415b-de99-5f0b-b770-18aa285d7a59"


def test_golden_request_hash() -> None:
    body = {"amount": Decimal("10.00"), "date": "2024-03-01", "accountRef": {"id": "acc-1"}}
    assert canonical_json(body) == b'{"accountRef":{"id":"acc-1"},"amount":10,"date":"2024-03-01"}'
    assert request_hash(body) == "9b8f85a46264520cc95a2c28fc2a7b0643495ea88d099aaf86e582ba152138de"


# -- callers ----------------------------------------------------------------------------------------------


def test_two_sessions_of_one_role_are_one_caller() -> None:
    a = normalise_caller("arn:aws:sts::123456789012:assumed-role/app/session-a")
    b = normalise_caller("arn:aws:sts::123456789012:assumed-role/app/i-0123456789")
    assert a == b == "arn:aws:iam::123456789012:role/app"


def test_other_partitions_keep_their_partition() -> None:
    assert (
        normalise_caller("arn:aws-cn:sts::123456789012:assumed-role/app/x")
        == "arn:aws-cn:iam::123456789012:role/app"
    )


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::123456789012:user/team/alice",
        "arn:aws:iam::123456789012:root",
    ],
)
def test_iam_principals_are_kept_as_they_are(arn: str) -> None:
    assert normalise_caller(arn) == arn


@pytest.mark.parametrize("arn", [None, "", "AIDAEXAMPLE", "arn:aws:sts::123456789012:federated-user/bob"])
def test_unknown_callers_are_refused(arn: str | None) -> None:
    with pytest.raises(UnknownCaller):
        normalise_caller(arn)


def test_other_role_other_account_other_route_other_operation() -> None:
    def op(caller: str, route: str, params: list[str]) -> str:
        return operation_id(key_scope(caller, route, params), "k")

    base = op("arn:aws:iam::123456789012:role/app", ROUTE_CREATE_BILL_PAYMENT, [COMPANY, CONNECTION, "b1"])
    assert base != op(
        "arn:aws:iam::123456789012:role/other", ROUTE_CREATE_BILL_PAYMENT, [COMPANY, CONNECTION, "b1"]
    )
    assert base != op(
        "arn:aws:iam::210987654321:role/app", ROUTE_CREATE_BILL_PAYMENT, [COMPANY, CONNECTION, "b1"]
    )
    assert base != op(
        "arn:aws:iam::123456789012:role/app", ROUTE_CREATE_BILL_PAYMENT, [COMPANY, CONNECTION, "b2"]
    )
    assert base != op(
        "arn:aws:iam::123456789012:role/app", ROUTE_CREATE_BANK_ACCOUNT, [COMPANY, CONNECTION, "b1"]
    )


def test_a_bar_in_a_bill_id_cannot_shift_into_the_client_key() -> None:
    caller = "arn:aws:iam::123456789012:role/app"
    one = operation_id(key_scope(caller, ROUTE_CREATE_BILL_PAYMENT, [COMPANY, CONNECTION, "a|b"]), "c")
    two = operation_id(key_scope(caller, ROUTE_CREATE_BILL_PAYMENT, [COMPANY, CONNECTION, "a"]), "b|c")
    assert one != two


def test_operation_id_and_upstream_key_differ_and_are_guids() -> None:
    scope = key_scope("arn:aws:iam::123456789012:role/app", ROUTE_CREATE_BANK_ACCOUNT, [COMPANY, CONNECTION])
    assert operation_id(scope, "k") != upstream_key(scope, "k")
    assert len(upstream_key(scope, "k")) == 36


# -- the client's key ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a", "x" * 255, "order-42:retry/1", "!~"])
def test_valid_keys(key: str) -> None:
    assert validate_idempotency_key(key) is None


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "tab\t", "é", "line\n"])
def test_invalid_keys(key: str) -> None:
    assert validate_idempotency_key(key) is not None


# -- hash ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["10", "10.0", "10.00", "1E+1", "10.000000"])
def test_ten_is_ten_however_written(amount: str) -> None:
    body = {"amount": Decimal(amount), "date": "2024-03-01", "accountRef": {"id": "a"}}
    reference = {"amount": Decimal("10"), "date": "2024-03-01", "accountRef": {"id": "a"}}
    assert request_hash(body) == request_hash(reference)


def test_model_parsed_bodies_hash_alike() -> None:
    bodies = [
        '{"amount": 10, "date": "2024-03-01", "accountRef": {"id": "a"}}',
        '{"accountRef": {"id": "a"}, "date": "2024-03-01", "amount": 10.00}',
        '{"amount": 10.0, "date": "2024-03-01", "accountRef": {"id": "a"}, "reference": null}',
    ]
    hashes = {request_hash(BillPaymentCreate.model_validate_json(b).canonical()) for b in bodies}
    assert len(hashes) == 1


def test_our_hash_agrees_with_the_models_canonical_bytes() -> None:
    model = BillPaymentCreate.model_validate_json(
        '{"amount": 20.50, "date": "2024-03-01T00:00:00Z", "accountRef": {"id": "a"}, "currencyRate": 0.7810,'
        ' "currency": "USD", "reference": "Invoice 1"}'
    )
    assert request_hash(model.canonical()) == hashlib.sha256(model.canonical_json()).hexdigest()


def test_what_changes_the_hash() -> None:
    base = {"amount": Decimal("10"), "date": "2024-03-01", "accountRef": {"id": "a"}}
    assert request_hash(base) != request_hash({**base, "amount": Decimal("10.01")})
    # the date is kept as written: the same day written differently is another request
    assert request_hash(base) != request_hash({**base, "date": "2024-03-01T00:00:00Z"})
    assert request_hash(base) != request_hash({**base, "currency": "GBP"})
    assert request_hash(base) == request_hash({**base, "reference": None})


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9))
def test_canonical_numbers_are_plain_and_stable(value: Decimal) -> None:
    text = canonical_json(value).decode()
    assert "E" not in text and "e" not in text
    assert Decimal(text) == value
    assert canonical_json(Decimal(text)) == canonical_json(value)


# -- stored bodies ------------------------------------------------------------------------------------------


def test_large_bodies_are_capped_with_their_hash() -> None:
    raw = b'{"x": "' + b"a" * (STORED_BODY_LIMIT_BYTES + 10) + b'"}'
    stored = StoredBody.of(raw)
    assert stored.truncated and stored.size == len(raw)
    assert len(stored.text.encode()) == STORED_BODY_LIMIT_BYTES
    assert stored.sha256 == hashlib.sha256(raw).hexdigest()
    assert stored.json() is None


def test_unparseable_bodies_are_kept_raw() -> None:
    stored = StoredBody.of(b"<html>ok</html>")
    assert stored.json() is None and stored.text == "<html>ok</html>" and not stored.truncated
    assert StoredBody.of(b'{"id": "1"}').json() == {"id": "1"}


# -- states -------------------------------------------------------------------------------------------------


def _claiming(now: float = 1000.0, token: str = "t1") -> lifecycle.Transition:
    return lifecycle.claim(
        operation_id="op",
        kind="billPayment",
        request_hash="h",
        upstream_key="u",
        upstream_request=UpstreamRequest("POST", "/p", b"{}"),
        now=now,
        lease_until=lease_until(now, 20_000),
        lease_token=token,
    )


def _claim(now: float = 1000.0, token: str = "t1") -> Operation:
    return _claiming(now, token).ours


def test_a_claim_guards_with_a_sync_lease_and_a_day_of_ttl() -> None:
    claiming = _claiming()
    claim = claiming.ours
    assert (claim.phase, claim.status, claim.lease_holder) == ("guarding", "pending", "sync")
    assert claim.lease_until == 1000.0 + 20.0 + 5.0
    assert claim.expires_at == 1000 + GUARDING_TTL_SECONDS
    assert claim.due_bucket is None and claim.due_at is None
    # A new record (nothing read before it), the first version; it may replace only a guarding claim
    # whose lease ended before now.
    assert (claiming.name, claiming.before, claim.version) == ("claim", None, 1)
    assert claiming.reclaim_lapsed_before == 1000.0


def test_due_index_lists_only_unfinished_sent_operations() -> None:
    assert due_index("pending", "guarding", lease_until=5, next_attempt_at=None, now=1) == (None, None)
    assert due_index("pending", "sent", lease_until=5, next_attempt_at=9, now=1) == (DUE_BUCKET_PENDING, 5)
    assert due_index("pending", "sent", lease_until=None, next_attempt_at=9, now=1) == (DUE_BUCKET_PENDING, 9)
    assert due_index("needs_review", "settled", lease_until=None, next_attempt_at=None, now=7) == (
        DUE_BUCKET_NEEDS_REVIEW,
        7,
    )
    assert due_index("succeeded", "settled", lease_until=None, next_attempt_at=None, now=1) == (None, None)
    assert due_index("failed", "settled", lease_until=None, next_attempt_at=None, now=1) == (None, None)


def test_replay_decisions() -> None:
    claim = _claim(now=1000.0)
    assert decide_replay(claim, "other", 1001).action == "reused"
    in_progress = decide_replay(claim, "h", 1001)
    assert in_progress.action == "in_progress" and in_progress.retry_after
    sent = claim.with_changes(phase="sent")
    assert decide_replay(sent, "h", 1001).action == "in_progress"
    # The holder's lease expired: still `pending` (the sweeper recovers it), answered, never written.
    assert decide_replay(sent, "h", 2000).action == "answer"
    worker = sent.with_changes(lease_holder="worker")
    assert decide_replay(worker, "h", 1001).action == "answer"
    waiting = sent.with_changes(lease_holder=None, lease_until=None, next_attempt_at=1500.0)
    assert decide_replay(waiting, "h", 2000).action == "answer"
    done = sent.with_changes(status="succeeded", phase="settled", lease_holder=None, lease_until=None)
    assert decide_replay(done, "h", 1001).action == "answer"
    assert decide_replay(done, "other", 1001).action == "reused"


def test_a_body_that_is_not_utf8_is_still_stored_within_the_cap() -> None:
    # Each invalid byte decodes to U+FFFD (3 bytes in UTF-8): the cap holds for what is stored.
    raw = bytes([0xFF]) * (STORED_BODY_LIMIT_BYTES + 10)
    stored = StoredBody.of(raw)
    assert len(stored.text.encode("utf-8")) <= STORED_BODY_LIMIT_BYTES
    assert stored.truncated and stored.size == len(raw)
    assert stored.sha256 == hashlib.sha256(raw).hexdigest()
    small = StoredBody.of(bytes([0xFF]) * 100)
    assert small.text == "\ufffd" * 100 and not small.truncated
