"""Clients and permissions through the local stack: the registry decides, before anything is claimed.

Each test writes the registry parameter it needs (the local-app client stays in it, so the stack's own
caller keeps working) on a stack of its own whose functions re-read the registry every second
(BILLPAY_CALLERS_MAX_AGE_SECONDS=1); a test waits for the change to be seen, never for a fixed time.
Callers are chosen per request with the gateway's X-Local-Caller-Arn header.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billpay.adapters.operations_dynamodb import to_item
from billpay.domain import lifecycle
from billpay.domain.operations import (
    KIND_BILL_PAYMENT,
    ROUTE_CREATE_BILL_PAYMENT,
    StoredBody,
    UpstreamRequest,
    key_scope,
    operation_id,
    request_hash,
    upstream_key,
)

from local.callers import local_registry, write_registry
from local.sandbox.seed import (
    ACCOUNT_GBP_CURRENT,
    ACCOUNT_USD_CHECKING,
    BILLS_GBP_OPEN,
    BILLS_USD_OPEN,
    COMPANY_GBP_ID,
    COMPANY_USD_ID,
    CONNECTION_GBP_ID,
    CONNECTION_USD_ID,
)
from tests.integration.conftest import Stack, start_stack

pytestmark = pytest.mark.integration

ACCOUNT = "210987654321"
ACME_V1 = f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-app-v1/i-0a"
ACME_V2 = f"arn:aws:sts::{ACCOUNT}:assumed-role/acme-app-v2/i-0b"
GLOBEX = f"arn:aws:sts::{ACCOUNT}:assumed-role/globex-app/i-0c"
READER = f"arn:aws:sts::{ACCOUNT}:assumed-role/reader/i-0d"
GBP_ONLY = f"arn:aws:sts::{ACCOUNT}:assumed-role/gbp-only/i-0e"
STRANGER = f"arn:aws:sts::{ACCOUNT}:assumed-role/stranger/i-0f"
EVERYTHING = ["accounts:read", "accounts:create", "payments:create", "operations:read"]

GBP = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
USD = f"/companies/{COMPANY_USD_ID}/connections/{CONNECTION_USD_ID}/payables"


def role(arn: str) -> str:
    name = arn.split("/")[1]
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def registry(**clients: dict[str, Any]) -> dict[str, Any]:
    document = local_registry()
    document["clients"].update(clients)
    return document


REGISTRY = registry(
    acme={"principals": [role(ACME_V1), role(ACME_V2)], "permissions": EVERYTHING, "companies": ["*"]},
    globex={"principals": [role(GLOBEX)], "permissions": EVERYTHING, "companies": ["*"]},
    reader={"principals": [role(READER)], "permissions": ["accounts:read"], "companies": ["*"]},
    gbp={"principals": [role(GBP_ONLY)], "permissions": EVERYTHING, "companies": [COMPANY_GBP_ID.upper()]},
)


@pytest.fixture(scope="module")
def callers_stack() -> Iterator[Stack]:
    with start_stack(BILLPAY_CALLERS_MAX_AGE_SECONDS="1") as stack:
        yield stack


@pytest.fixture
def live(callers_stack: Stack) -> Stack:
    callers_stack.reset()
    write_registry(callers_stack.emulator_url, REGISTRY)
    # Seen by every worker once a stranger is refused and acme is let in (the previous test's registry
    # may still be cached for up to a second).
    callers_stack.wait_until(
        lambda: list_accounts(callers_stack, ACME_V1).status_code == 200
        and list_accounts(callers_stack, READER).status_code == 200,
        message="the test registry is in force",
    )
    return callers_stack


def headers(caller: str, key: str | None = None) -> dict[str, str]:
    out = {"X-Local-Caller-Arn": caller, "Content-Type": "application/json"}
    if key is not None:
        out["Idempotency-Key"] = key
    return out


def list_accounts(stack: Stack, caller: str, base: str = GBP) -> httpx.Response:
    return stack.client.get(f"{base}/bankAccounts", headers=headers(caller))


def pay(
    stack: Stack,
    caller: str,
    key: str,
    *,
    base: str = GBP,
    bill: str = BILLS_GBP_OPEN[0],
    account: str = ACCOUNT_GBP_CURRENT,
    amount: str = "1.00",
) -> httpx.Response:
    payload = f'{{"amount": {amount}, "date": "2026-12-02", "accountRef": {{"id": "{account}"}}}}'
    return stack.client.post(f"{base}/bills/{bill}/payments", content=payload, headers=headers(caller, key))


def create_account(stack: Stack, caller: str, key: str | None) -> httpx.Response:
    payload = {"name": "Ops", "accountType": "Debit", "accountNumber": "12345678", "currency": "GBP"}
    return stack.client.post(f"{GBP}/bankAccounts", content=json.dumps(payload), headers=headers(caller, key))


def get_operation(stack: Stack, caller: str, op_id: str) -> httpx.Response:
    return stack.client.get(f"/operations/{op_id}", headers=headers(caller))


def recorded_items(stack: Stack) -> int:
    return int(stack.dynamodb.scan(TableName=stack.operations_table_name, Select="COUNT")["Count"])


def new_key() -> str:
    return f"callers-{uuid.uuid4()}"


def problem_type(answer: httpx.Response) -> str:
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    return str(answer.json()["type"]).rsplit("/", 1)[-1]


# -- one client, many roles ----------------------------------------------------------------------------------


def test_a_role_renamed_within_a_client_keeps_the_operation(live: Stack) -> None:
    key = new_key()
    first = pay(live, ACME_V1, key)
    assert first.status_code == 201, first.text
    again = pay(live, ACME_V2, key)  # the app's new role retries the same key
    assert again.status_code == 201, again.text
    assert again.json()["operationId"] == first.json()["operationId"]
    # The answers' headers: where to follow it, that the second is a replay, and each request's id.
    assert first.headers["Location"].endswith(f"/operations/{first.json()['operationId']}")
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["X-Request-Id"] != again.headers["X-Request-Id"]
    assert len(live.payments()) == 1  # one record upstream
    item = live.operation_item(first.json()["operationId"])
    assert item is not None and item["clientId"] == "acme"


def test_a_client_cannot_read_or_replay_another_clients_operation(live: Stack) -> None:
    key = new_key()
    mine = pay(live, ACME_V1, key)
    assert mine.status_code == 201, mine.text
    op_id = mine.json()["operationId"]
    assert get_operation(live, ACME_V2, op_id).status_code == 200
    theirs = get_operation(live, GLOBEX, op_id)
    assert theirs.status_code == 404 and problem_type(theirs) == "not-found"
    # Their request with the same key is theirs: it can never answer with acme's operation.
    other = pay(live, GLOBEX, key, bill=BILLS_GBP_OPEN[1])
    assert other.status_code == 201, other.text
    assert other.json()["operationId"] != op_id
    assert op_id not in other.text


def test_the_same_key_in_two_clients_is_two_operations(live: Stack) -> None:
    key = new_key()
    acme = pay(live, ACME_V1, key)
    globex = pay(live, GLOBEX, key)
    assert acme.status_code == globex.status_code == 201, (acme.text, globex.text)
    assert acme.json()["operationId"] != globex.json()["operationId"]
    recorded = live.payments()
    assert len(recorded) == 2
    assert len({p["idempotencyKey"] for p in recorded}) == 2  # two upstream keys


# -- refusals: nothing sent, nothing recorded ----------------------------------------------------------------


def test_a_client_limited_to_one_company_gets_404_for_another_and_nothing_is_sent(live: Stack) -> None:
    assert list_accounts(live, GBP_ONLY).status_code == 200  # its own company (listed upper-cased)
    before = recorded_items(live)
    listed = list_accounts(live, GBP_ONLY, USD)
    assert listed.status_code == 404 and problem_type(listed) == "not-found"
    paid = pay(live, GBP_ONLY, new_key(), base=USD, bill=BILLS_USD_OPEN[0], account=ACCOUNT_USD_CHECKING)
    assert paid.status_code == 404 and problem_type(paid) == "not-found"
    assert "operation" not in paid.json()
    assert live.payments() == [] and recorded_items(live) == before


def test_a_read_only_client_can_list_but_not_pay(live: Stack) -> None:
    assert list_accounts(live, READER).status_code == 200
    before = recorded_items(live)
    paid = pay(live, READER, new_key())
    assert paid.status_code == 403 and problem_type(paid) == "forbidden"
    created = create_account(live, READER, new_key())
    assert created.status_code == 403 and problem_type(created) == "forbidden"
    assert get_operation(live, READER, str(uuid.uuid5(uuid.NAMESPACE_URL, "x"))).status_code == 403
    assert live.payments() == [] and recorded_items(live) == before


def test_an_unknown_role_gets_403_everywhere(live: Stack) -> None:
    before = recorded_items(live)
    answers = [
        list_accounts(live, STRANGER),
        pay(live, STRANGER, new_key()),
        create_account(live, STRANGER, new_key()),
        get_operation(live, STRANGER, str(uuid.uuid5(uuid.NAMESPACE_URL, "y"))),
        # Before the Idempotency-Key is looked at (the body's shape is checked first: the API's shape is
        # public, and a 400 reveals nothing else).
        create_account(live, STRANGER, None),
    ]
    assert [a.status_code for a in answers] == [403] * 5, [a.text for a in answers]
    assert {problem_type(a) for a in answers} == {"caller-unknown"}
    assert live.payments() == [] and recorded_items(live) == before


def test_a_registry_change_is_seen_within_max_age(live: Stack) -> None:
    assert list_accounts(live, STRANGER).status_code == 403
    newcomer = {"principals": [role(STRANGER)], "permissions": ["accounts:read"], "companies": ["*"]}
    write_registry(live.emulator_url, {**REGISTRY, "clients": {**REGISTRY["clients"], "newcomer": newcomer}})
    live.wait_until(lambda: list_accounts(live, STRANGER).status_code == 200, timeout=10, message="seen")
    # A broken document never replaces the good one: the functions keep answering from the last good.
    write_registry(live.emulator_url, {"clients": {"bad": {"principals": ["not-an-arn"]}}})

    def refused_and_kept() -> bool:
        kept = list_accounts(live, STRANGER).status_code == 200  # each request may load the new document
        return kept and "caller registry invalid; keeping the last good one" in live.logs(3000)

    live.wait_until(refused_and_kept, timeout=10, message="the broken registry refused, the good one kept")
    assert list_accounts(live, ACME_V1).status_code == 200


# -- v1 records (scoped to the IAM role) ---------------------------------------------------------------------


def test_a_v1_record_is_replayed_and_stamped_with_the_callers_client(live: Stack) -> None:
    """A key used before clients existed stays its operation: no second payment, its client stamped."""
    key, bill = new_key(), BILLS_GBP_OPEN[2]
    path_params = (COMPANY_GBP_ID, CONNECTION_GBP_ID, bill)
    canonical = {"amount": Decimal("1.00"), "date": "2026-12-02", "accountRef": {"id": ACCOUNT_GBP_CURRENT}}
    v1_scope = key_scope(role(ACME_V1), ROUTE_CREATE_BILL_PAYMENT, path_params)
    v1_id = operation_id(v1_scope, key)
    claim = lifecycle.claim(
        operation_id=v1_id,
        kind=KIND_BILL_PAYMENT,
        request_hash=request_hash(canonical),
        upstream_key=upstream_key(v1_scope, key),
        upstream_request=UpstreamRequest("POST", f"/v1/{bill}", b"{}"),
        now=1_700_000_000.0,
        lease_until=1_700_000_010.0,
        lease_token="v1-token",
    ).ours
    # A v1 record as the previous version left it: succeeded, no clientId (nor version).
    done = lifecycle.mark_sent(claim, 1_700_000_001.0).ours.with_changes(
        version=0,
        status="succeeded",
        phase="settled",
        due_bucket=None,
        due_at=None,
        lease_until=None,
        result=StoredBody.of(b'{"id": "v1-payment"}'),
    )
    live.dynamodb.put_item(TableName=live.operations_table_name, Item=to_item(done))
    assert get_operation(live, ACME_V1, v1_id).status_code == 404  # unstamped: no client owns it yet

    replay = pay(live, ACME_V1, key, bill=bill)
    assert replay.status_code == 201, replay.text
    assert replay.json()["operationId"] == v1_id and replay.json()["result"] == {"id": "v1-payment"}
    assert live.payments() == []  # a replay sends nothing
    item = live.operation_item(v1_id)
    assert item is not None and item["clientId"] == "acme"
    assert get_operation(live, ACME_V2, v1_id).status_code == 200
    assert get_operation(live, GLOBEX, v1_id).status_code == 404
