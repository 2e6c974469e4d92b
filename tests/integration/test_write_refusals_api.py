"""Refusals through the whole local stack: every guard and every kind of malformed body answers a problem,
records nothing upstream, never a 5xx — and a guard's refusal leaves the key free for the corrected body.

(contract: Guards, and its rule for every exit before the send.)
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.sandbox.seed import (
    ACCOUNT_GBP_ARCHIVED,
    ACCOUNT_GBP_CURRENT,
    ACCOUNT_GBP_EUR,
    ACCOUNT_GBP_NO_CURRENCY,
    ACCOUNT_GBP_USD,
    BILL_GBP_PAID,
    BILL_GBP_PARTIAL,
    BILL_GBP_USD_OPEN,
    BILLS_GBP_OPEN,
    COMPANY_GBP_ID,
    CONNECTION_GBP_ID,
    UNKNOWN_ACCOUNT_ID,
    UNKNOWN_COMPANY_ID,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

OPEN_BILL = BILLS_GBP_OPEN[1]


def payments_path(bill: str, company: str = COMPANY_GBP_ID) -> str:
    return f"/companies/{company}/connections/{CONNECTION_GBP_ID}/payables/bills/{bill}/payments"


def payment(account: str = ACCOUNT_GBP_CURRENT, amount: Any = 10, **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "date": "2026-11-25", "accountRef": {"id": account}, **extra}


def post(stack: Stack, path: str, content: str, key: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return stack.client.post(path, content=content, headers=headers)


@pytest.fixture
def live(stack: Stack) -> Stack:
    stack.reset()
    return stack


# (what, bill, refused body, problem type, corrected body) — in the order of the contract's Guards table
GUARDS = [
    ("account unknown", OPEN_BILL, payment(UNKNOWN_ACCOUNT_ID), "account-not-found", payment()),
    ("account archived", OPEN_BILL, payment(ACCOUNT_GBP_ARCHIVED), "account-inactive", payment()),
    ("account has no currency", OPEN_BILL, payment(ACCOUNT_GBP_NO_CURRENCY), "currency-unknown", payment()),
    (
        "account neither bill's nor base currency",
        BILL_GBP_USD_OPEN,
        payment(ACCOUNT_GBP_EUR, currencyRate=0.781),
        "currency-mismatch",
        payment(ACCOUNT_GBP_USD, currencyRate=0.781),
    ),
    ("currency given is not the bill's", OPEN_BILL, payment(currency="USD"), "currency-mismatch", payment()),
    (
        "foreign bill without a rate",
        BILL_GBP_USD_OPEN,
        payment(),
        "currency-rate-required",
        payment(currencyRate=0.781),
    ),
    ("more decimals than GBP has", OPEN_BILL, payment(amount=10.001), "amount-precision", payment()),
    (
        "more than the amount due",
        BILL_GBP_PARTIAL,
        payment(amount=250.01),
        "amount-exceeds-due",
        payment(amount=250),
    ),
]


@pytest.mark.parametrize(
    ("bill", "refused", "problem", "corrected"), [g[1:] for g in GUARDS], ids=[g[0] for g in GUARDS]
)
def test_each_guard_refuses_records_nothing_and_frees_the_key(
    live: Stack, bill: str, refused: dict[str, Any], problem: str, corrected: dict[str, Any]
) -> None:
    key = f"guard-{uuid.uuid4()}"
    answer = post(live, payments_path(bill), json.dumps(refused), key)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith(f"/problems/{problem}")
    assert "operation" not in answer.json()
    assert live.payments() == []

    fixed = post(live, payments_path(bill), json.dumps(corrected), key)
    assert fixed.status_code == 201, fixed.text
    recorded = live.payments()
    assert len(recorded) == 1 and recorded[0]["billId"] == bill


def test_unknown_company_is_404_and_a_bill_not_open_is_bill_not_payable(live: Stack) -> None:
    unknown = post(live, payments_path(OPEN_BILL, UNKNOWN_COMPANY_ID), json.dumps(payment()), "k-unknown")
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("/problems/not-found")
    paid = post(live, payments_path(BILL_GBP_PAID), json.dumps(payment()), "k-paid")
    assert paid.status_code == 422 and paid.json()["type"].endswith("/problems/bill-not-payable")
    assert live.payments() == []


# -- malformed bodies: property-based, through the gateway ------------------------------------------------

# Tokens spliced into the body as raw JSON text, so that non-JSON numbers and wrong types get through
# the client untouched. Every one of them is invalid where it is put.
BAD_AMOUNTS = [
    "0",
    "-1",
    "-0.01",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    '"10"',
    '"10.00"',
    "true",
    "null",
    "[]",
    "{}",
]
BAD_DATES = [
    '""',
    '"2026-13-01"',
    '"2026-02-30"',
    '"25/11/2026"',
    '"2026-11-25T25:00:00Z"',
    '"yesterday"',
    "20261125",
    "null",
]
BAD_RATES = ["0", "-0.5", '"0.781"', "true", "[]", "NaN"]
BAD_CURRENCIES = ['"usd"', '"US"', '"USDD"', "840", '""', '"G B"']
BAD_ACCOUNT_REFS = [
    '{"id": ""}',
    "{}",
    '"a1"',
    '{"id": 5}',
    "null",
    f'{{"id": "{ACCOUNT_GBP_CURRENT}", "x": 1}}',
]

VALID = {"amount": "10", "date": '"2026-11-25"', "accountRef": f'{{"id": "{ACCOUNT_GBP_CURRENT}"}}'}


def body_with(field: str, token: str) -> str:
    members = {**VALID, field: token}
    return "{" + ", ".join(f'"{name}": {value}' for name, value in members.items()) + "}"


malformed_bodies = st.one_of(
    st.sampled_from(BAD_AMOUNTS).map(lambda t: body_with("amount", t)),
    st.sampled_from(BAD_DATES).map(lambda t: body_with("date", t)),
    st.sampled_from(BAD_RATES).map(lambda t: body_with("currencyRate", t)),
    st.sampled_from(BAD_CURRENCIES).map(lambda t: body_with("currency", t)),
    st.sampled_from(BAD_ACCOUNT_REFS).map(lambda t: body_with("accountRef", t)),
    st.sampled_from(["amount", "date", "accountRef"]).map(
        lambda missing: "{" + ", ".join(f'"{k}": {v}' for k, v in VALID.items() if k != missing) + "}"
    ),
    st.text(max_size=8).map(lambda name: body_with(f"unknown_{name}", "1")),
    # anything at all that is not a JSON object
    st.text(max_size=40).filter(lambda text: not text.strip().startswith("{")),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5), st.lists, max_leaves=5).map(
        json.dumps
    ),
)


@settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=malformed_bodies, with_key=st.booleans())
def test_malformed_bodies_are_problems_never_5xx_and_record_nothing(
    live: Stack, content: str, with_key: bool
) -> None:
    key = f"fuzz-{uuid.uuid4()}" if with_key else None
    answer = post(live, payments_path(OPEN_BILL), content, key)
    assert answer.status_code in (400, 422), (content, answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == answer.status_code and "operation" not in problem
    assert live.payments() == []
