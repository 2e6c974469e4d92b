"""Listing payment accounts against the real Codat sandbox: the client and service in-process (with its
faults), then the route end to end through the local stack's gateway."""

from __future__ import annotations

import time
from typing import Any

import pytest
from billpay.adapters.codat import CodatClient, CodatNotFoundError
from billpay.problems import Problem
from billpay.service.list_accounts import StatusFilter, list_accounts

from local.sandbox.seed import (
    ACCOUNT_GBP_ARCHIVED,
    ACCOUNT_GBP_CARD,
    ACCOUNT_GBP_CURRENT,
    ACCOUNT_GBP_EUR,
    ACCOUNT_GBP_NO_CURRENCY,
    ACCOUNT_GBP_RESERVE,
    ACCOUNT_GBP_USD,
    ACCOUNT_GBP_USD_ARCHIVED,
    COMPANY_GBP_ID,
    COMPANY_USD_ID,
    CONNECTION_GBP_ID,
    CONNECTION_USD_ID,
    UNKNOWN_COMPANY_ID,
    UNKNOWN_CONNECTION_ID,
)
from tests.fixtures.sandbox import Sandbox

pytestmark = pytest.mark.integration

GBP_ACTIVE = {
    ACCOUNT_GBP_CURRENT,
    ACCOUNT_GBP_RESERVE,
    ACCOUNT_GBP_USD,
    ACCOUNT_GBP_EUR,
    ACCOUNT_GBP_CARD,
    ACCOUNT_GBP_NO_CURRENCY,
}
GBP_ARCHIVED = {ACCOUNT_GBP_ARCHIVED, ACCOUNT_GBP_USD_ARCHIVED}
PAYMENTS_PATH = "/companies/*/payables/mappingOptions/payments"


def codat_client(sandbox: Sandbox, timeout: float = 5.0, budget: float = 10.0) -> CodatClient:
    return CodatClient(
        base_url=sandbox.url,
        api_key=sandbox.api_key,
        timeout_seconds=timeout,
        connect_timeout_seconds=min(timeout, 2.0),
        budget_seconds=budget,
    )


def all_pages(
    client: CodatClient, status: StatusFilter, company: str, connection: str
) -> list[dict[str, Any]]:
    accounts: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(20):
        page = list_accounts(company, connection, status, token, client=client)
        accounts += [account.dump() for account in page.bank_accounts]
        token = page.pagination.continuation_token
        if token is None:
            return accounts
    pytest.fail("pagination did not end")


@pytest.mark.parametrize(
    ("status", "expected"),
    [("Active", GBP_ACTIVE), ("Archived", GBP_ARCHIVED), ("All", GBP_ACTIVE | GBP_ARCHIVED)],
)
def test_status_filters_select_the_seeded_accounts_across_pages(
    sandbox: Sandbox, status: StatusFilter, expected: set[str]
) -> None:
    client = codat_client(sandbox)
    accounts = all_pages(client, status, COMPANY_GBP_ID, CONNECTION_GBP_ID)
    ids = [account["id"] for account in accounts]
    assert len(ids) == len(set(ids)), "no account twice across pages"
    assert set(ids) == expected
    wanted = {"Active", "Archived"} if status == "All" else {status}
    assert {account["status"] for account in accounts} == wanted


def test_accounts_are_codats_own_objects(sandbox: Sandbox) -> None:
    client = codat_client(sandbox)
    page = list_accounts(COMPANY_USD_ID, CONNECTION_USD_ID, "All", client=client)
    with sandbox.client() as raw:
        direct = raw.get(
            f"/companies/{COMPANY_USD_ID}/connections/{CONNECTION_USD_ID}/payables/mappingOptions/payments",
            params={"statusQuery": "status=Active||status=Archived"},
        ).json()
    assert [account.dump() for account in page.bank_accounts] == direct["bankAccounts"]


def test_upper_case_ids_reach_the_same_company(sandbox: Sandbox) -> None:
    page = list_accounts(
        COMPANY_GBP_ID.upper(), CONNECTION_GBP_ID.upper(), "Archived", client=codat_client(sandbox)
    )
    assert {account.id for account in page.bank_accounts} == GBP_ARCHIVED


@pytest.mark.parametrize(
    ("company", "connection"),
    [
        (UNKNOWN_COMPANY_ID, CONNECTION_GBP_ID),
        (COMPANY_GBP_ID, UNKNOWN_CONNECTION_ID),
        (COMPANY_GBP_ID, CONNECTION_USD_ID),
    ],
    ids=["company", "connection", "other-companys-connection"],
)
def test_unknown_company_or_connection_is_not_found(sandbox: Sandbox, company: str, connection: str) -> None:
    client = codat_client(sandbox)
    with pytest.raises(CodatNotFoundError) as raw:
        client.list_payment_accounts(company, connection, "status=Active")
    assert raw.value.correlation_id
    with pytest.raises(Problem) as problem:
        list_accounts(company, connection, client=client)
    assert (problem.value.status, problem.value.type) == (404, "not-found")
    assert problem.value.upstream is not None
    assert problem.value.upstream["statusCode"] == 404


def test_a_forged_continuation_token_is_a_400(sandbox: Sandbox) -> None:
    with pytest.raises(Problem) as problem:
        list_accounts(
            COMPANY_GBP_ID, CONNECTION_GBP_ID, "Active", "not-a-token", client=codat_client(sandbox)
        )
    assert (problem.value.status, problem.value.type) == (400, "validation-error")


def test_transient_failures_are_retried_inside_the_budget(sandbox: Sandbox) -> None:
    sandbox.add_fault(method="GET", path=PAYMENTS_PATH, fault="status", status=503, times=2)
    page = list_accounts(COMPANY_GBP_ID, CONNECTION_GBP_ID, "Archived", client=codat_client(sandbox))
    assert {account.id for account in page.bank_accounts} == GBP_ARCHIVED
    assert sandbox.faults() == []


@pytest.mark.parametrize(
    ("status", "times", "answer", "problem"),
    [
        (401, 1, 502, "upstream-rejected"),
        (403, 1, 502, "upstream-rejected"),
        (429, 3, 503, "upstream-rate-limited"),
        (500, 3, 502, "upstream-unavailable"),
    ],
)
def test_upstream_failures_become_problems(
    sandbox: Sandbox, status: int, times: int, answer: int, problem: str
) -> None:
    sandbox.add_fault(
        method="GET", path=PAYMENTS_PATH, fault="status", status=status, retryAfter=0.1, times=times
    )
    with pytest.raises(Problem) as raised:
        list_accounts(COMPANY_GBP_ID, CONNECTION_GBP_ID, client=codat_client(sandbox))
    assert (raised.value.status, raised.value.type) == (answer, problem)
    assert raised.value.upstream is not None
    assert raised.value.upstream["statusCode"] == status
    assert sandbox.faults() == [], "exactly the expected number of attempts"


def test_no_answer_in_time_is_a_504(sandbox: Sandbox) -> None:
    sandbox.add_fault(method="GET", path=PAYMENTS_PATH, fault="timeout", holdSeconds=3, times=3)
    started = time.monotonic()
    with pytest.raises(Problem) as raised:
        list_accounts(
            COMPANY_GBP_ID, CONNECTION_GBP_ID, client=codat_client(sandbox, timeout=0.3, budget=1.5)
        )
    assert (raised.value.status, raised.value.type) == (504, "upstream-unavailable")
    assert time.monotonic() - started < 2.5, "the time budget bounds the whole call"


# ------------------------------------------------------------------------------- through the gateway


def test_the_route_end_to_end_through_the_local_stack(stack: Any) -> None:
    stack.reset()
    base = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables/bankAccounts"

    def ids(status: str | None) -> set[str]:
        found: set[str] = set()
        params: dict[str, str] = {"status": status} if status else {}
        for _ in range(20):
            answer = stack.client.get(base, params=params)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("application/json")
            body = answer.json()
            found |= {account["id"] for account in body["bankAccounts"]}
            token = body["pagination"].get("continuationToken")
            if token is None:
                return found
            params = {**params, "continuationToken": token}
        pytest.fail("pagination did not end")

    assert ids(None) == GBP_ACTIVE
    assert ids("All") == GBP_ACTIVE | GBP_ARCHIVED

    missing = stack.client.get(
        f"/companies/{UNKNOWN_COMPANY_ID}/connections/{CONNECTION_GBP_ID}/payables/bankAccounts"
    )
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"].endswith("/problems/not-found")

    bad = stack.client.get(base, params={"status": "Closed"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in bad.json()["errors"]] == ["status"]
