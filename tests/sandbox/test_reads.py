"""The sandbox's reads: Codat's paths, parameters, paging, query syntax, auth and error shapes."""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any

import httpx
import pytest

from local.sandbox import seed
from local.sandbox.seed import (
    ACCOUNT_GBP_ARCHIVED,
    ACCOUNT_GBP_USD_ARCHIVED,
    BILL_GBP_DRAFT,
    BILL_GBP_PAID,
    BILL_GBP_PARTIAL,
    BILL_GBP_USD_PAID,
    BILL_GBP_VOID,
    COMPANY_GBP_ID,
    COMPANY_NOCCY_ID,
    COMPANY_USD_ID,
    CONNECTION_GBP_ID,
    CONNECTION_NOCCY_ID,
    CONNECTION_USD_ID,
    UNKNOWN_COMPANY_ID,
    UNKNOWN_CONNECTION_ID,
)

GBP = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
USD = f"/companies/{COMPANY_USD_ID}/connections/{CONNECTION_USD_ID}/payables"


def _all_pages(codat: httpx.Client, path: str, key: str, **params: str) -> tuple[list[dict[str, Any]], int]:
    """Every item across continuation-token pages, and the number of pages."""
    items: list[dict[str, Any]] = []
    pages = 0
    token: str | None = None
    while True:
        query = dict(params, **({"continuationToken": token} if token else {}))
        response = codat.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body[key]
        pages += 1
        token = body["pagination"].get("continuationToken")
        if not token:
            return items, pages


# --- companies, connections, company information ---------------------------------------------------


def test_list_companies_is_codats_paged_shape(codat: httpx.Client) -> None:
    response = codat.get("/companies")
    assert response.status_code == 200
    body = response.json()
    ids = [company["id"] for company in body["results"]]
    assert ids == [COMPANY_GBP_ID, COMPANY_USD_ID, COMPANY_NOCCY_ID]
    assert (body["pageNumber"], body["pageSize"], body["totalResults"]) == (1, 100, 3)
    assert body["_links"]["current"]["href"] == "/companies?page=1&pageSize=100"
    gbp = body["results"][0]
    assert [connection["id"] for connection in gbp["dataConnections"]] == [CONNECTION_GBP_ID]
    assert gbp["dataConnections"][0]["status"] == "Linked"


def test_list_companies_pages_by_page_and_page_size(codat: httpx.Client) -> None:
    first = codat.get("/companies", params={"page": 1, "pageSize": 2}).json()
    second = codat.get("/companies", params={"page": 2, "pageSize": 2}).json()
    beyond = codat.get("/companies", params={"page": 9, "pageSize": 2}).json()
    assert [c["id"] for c in first["results"]] == [COMPANY_GBP_ID, COMPANY_USD_ID]
    assert first["_links"]["next"]["href"] == "/companies?page=2&pageSize=2"
    assert [c["id"] for c in second["results"]] == [COMPANY_NOCCY_ID]
    assert "next" not in second["_links"]
    assert second["_links"]["previous"]["href"] == "/companies?page=1&pageSize=2"
    assert beyond["results"] == []
    assert beyond["totalResults"] == 3


def test_page_size_is_capped_at_2000(codat: httpx.Client) -> None:
    body = codat.get("/companies", params={"pageSize": 5000}).json()
    assert body["pageSize"] == 2000


@pytest.mark.parametrize("params", [{"page": "0"}, {"page": "x"}, {"pageSize": "0"}, {"pageSize": "-3"}])
def test_bad_paging_parameters_are_400(codat: httpx.Client, params: dict[str, str]) -> None:
    response = codat.get("/companies", params=params)
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


def test_list_companies_query(codat: httpx.Client) -> None:
    body = codat.get("/companies", params={"query": "name=harbor street coffee inc"}).json()
    assert [c["id"] for c in body["results"]] == [COMPANY_USD_ID]
    unresolved = codat.get("/companies", params={"query": "isCompleted=true"})
    assert unresolved.status_code == 400
    assert "Could not resolve property isCompleted" in unresolved.json()["error"]


def test_get_company_and_connection(codat: httpx.Client) -> None:
    company = codat.get(f"/companies/{COMPANY_USD_ID}").json()
    assert company["name"] == "Harbor Street Coffee Inc"
    connections = codat.get(f"/companies/{COMPANY_USD_ID}/connections").json()
    assert [c["id"] for c in connections["results"]] == [CONNECTION_USD_ID]
    assert connections["results"][0]["platformName"] == "QuickBooks Online"
    connection = codat.get(f"/companies/{COMPANY_USD_ID}/connections/{CONNECTION_USD_ID}").json()
    assert connection["id"] == CONNECTION_USD_ID


@pytest.mark.parametrize(
    ("company_id", "connection_id", "base"),
    [
        (COMPANY_GBP_ID, CONNECTION_GBP_ID, "GBP"),
        (COMPANY_USD_ID, CONNECTION_USD_ID, "USD"),
        (COMPANY_NOCCY_ID, CONNECTION_NOCCY_ID, None),
    ],
)
def test_company_information_gives_base_currency(
    codat: httpx.Client, company_id: str, connection_id: str, base: str | None
) -> None:
    body = codat.get(f"/companies/{company_id}/connections/{connection_id}/payables/info").json()
    assert body["baseCurrency"] == base
    assert body["companyName"]


@pytest.mark.parametrize(
    "path",
    [
        f"/companies/{UNKNOWN_COMPANY_ID}",
        f"/companies/{UNKNOWN_COMPANY_ID}/connections",
        f"/companies/{UNKNOWN_COMPANY_ID}/connections/{CONNECTION_GBP_ID}/payables/info",
        f"/companies/{COMPANY_GBP_ID}/connections/{UNKNOWN_CONNECTION_ID}/payables/info",
        f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_USD_ID}/payables/mappingOptions/payments",
        f"/companies/{COMPANY_GBP_ID}/connections/{UNKNOWN_CONNECTION_ID}/payables/bills",
        f"/companies/not-a-uuid/connections/{CONNECTION_GBP_ID}/payables/bills",
    ],
)
def test_unknown_company_or_connection_is_404(codat: httpx.Client, path: str) -> None:
    response = codat.get(path)
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


def test_ids_are_matched_case_insensitively(codat: httpx.Client) -> None:
    path = f"/companies/{COMPANY_GBP_ID.upper()}/connections/{CONNECTION_GBP_ID.upper()}/payables/info"
    assert codat.get(path).json()["baseCurrency"] == "GBP"


# --- payment mapping options -----------------------------------------------------------------------------


def test_mapping_options_default_to_active_accounts_paged(codat: httpx.Client) -> None:
    accounts, pages = _all_pages(codat, f"{GBP}/mappingOptions/payments", "bankAccounts")
    assert pages == 2  # 6 active accounts, page size 5
    assert {a["status"] for a in accounts} == {"Active"}
    assert len(accounts) == len({a["id"] for a in accounts}) == 6
    assert {a["currency"] for a in accounts} == {"GBP", "USD", "EUR", None}


def test_mapping_options_status_query(codat: httpx.Client) -> None:
    archived, _ = _all_pages(
        codat, f"{GBP}/mappingOptions/payments", "bankAccounts", statusQuery="status=Archived"
    )
    assert {a["id"] for a in archived} == {ACCOUNT_GBP_ARCHIVED, ACCOUNT_GBP_USD_ARCHIVED}
    everything, _ = _all_pages(
        codat, f"{GBP}/mappingOptions/payments", "bankAccounts", statusQuery="status=Active||status=Archived"
    )
    assert len(everything) == 8
    active, _ = _all_pages(
        codat, f"{GBP}/mappingOptions/payments", "bankAccounts", statusQuery="status=Active"
    )
    assert len(active) == 6


@pytest.mark.parametrize("status_query", ["name=Current", "status=", "status=Active||", "(status=Active"])
def test_mapping_options_bad_status_query_is_400(codat: httpx.Client, status_query: str) -> None:
    response = codat.get(f"{GBP}/mappingOptions/payments", params={"statusQuery": status_query})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Error parsing query")


@pytest.mark.parametrize("token", ["not base64!", base64.b64encode(b'{"offset": -1}').decode(), "e30="])
def test_bad_continuation_token_is_400(codat: httpx.Client, token: str) -> None:
    response = codat.get(f"{GBP}/mappingOptions/payments", params={"continuationToken": token})
    assert response.status_code == 400


# --- bills ---------------------------------------------------------------------------------------------


def test_list_bills_defaults_to_open_and_partially_paid(codat: httpx.Client) -> None:
    bills, pages = _all_pages(codat, f"{GBP}/bills", "results")
    assert {b["status"] for b in bills} == {"Open", "PartiallyPaid"}
    ids = {b["id"] for b in bills}
    assert len(ids) == len(bills) >= 10
    assert pages == -(-len(bills) // 5)
    assert not ids & {BILL_GBP_PAID, BILL_GBP_VOID, BILL_GBP_DRAFT, BILL_GBP_USD_PAID}
    assert BILL_GBP_PARTIAL in ids
    assert {b["currency"] for b in bills} >= {"GBP", "USD", "EUR"}


def test_list_bills_query_with_or_and_and(codat: httpx.Client) -> None:
    paid, _ = _all_pages(codat, f"{GBP}/bills", "results", query="status=Paid")
    assert {b["id"] for b in paid} == {BILL_GBP_PAID, BILL_GBP_USD_PAID}
    paid_or_void, _ = _all_pages(codat, f"{GBP}/bills", "results", query="status=Paid||status=Void")
    assert {b["id"] for b in paid_or_void} == {BILL_GBP_PAID, BILL_GBP_USD_PAID, BILL_GBP_VOID}
    none, _ = _all_pages(codat, f"{GBP}/bills", "results", query="status=Paid&&status=Void")
    assert none == []
    recent, _ = _all_pages(
        codat,
        f"{GBP}/bills",
        "results",
        query="sourceModifiedDate>2023-12-15T00:00:00.000Z&&status=PartiallyPaid",
    )
    assert {b["status"] for b in recent} == {"PartiallyPaid"}
    future, _ = _all_pages(codat, f"{GBP}/bills", "results", query="sourceModifiedDate>2099-01-01T00:00:00Z")
    assert future == []


@pytest.mark.parametrize("query", ["amountDue>5", "status", "status=Open&&", "sourceModifiedDate>yesterday"])
def test_list_bills_bad_query_is_400(codat: httpx.Client, query: str) -> None:
    response = codat.get(f"{GBP}/bills", params={"query": query})
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


def test_bills_carry_what_the_guards_need(codat: httpx.Client) -> None:
    bills, _ = _all_pages(
        codat, f"{USD}/bills", "results", query="status=Open||status=PartiallyPaid||status=Paid"
    )
    by_id = {bill["id"]: bill for bill in bills}
    partial = by_id[seed.BILL_USD_EUR_PARTIAL]
    assert (partial["currency"], partial["amountDue"], partial["totalAmount"]) == ("EUR", 125, 500)
    assert all({"currency", "amountDue", "status", "totalAmount", "supplierRef"} <= set(b) for b in bills)


# --- auth, routing, error bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic " + base64.b64encode(b"wrong-key").decode(),
        "Bearer local-sandbox-key",
        "Basic local-sandbox-key",  # the key must be base64-encoded, as Codat expects
        "Basic " + base64.b64encode(b":local-sandbox-key").decode(),
    ],
)
def test_requests_without_the_key_are_401(validated_client, authorization: str | None) -> None:
    client = validated_client()
    if authorization is None:
        del client.headers["Authorization"]
    else:
        client.headers["Authorization"] = authorization
    for response in (client.get("/companies"), client.get(f"{GBP}/mappingOptions/payments")):
        assert response.status_code == 401
        assert response.json()["statusCode"] == 401


def test_another_configured_key(sandbox_factory, validated_client) -> None:
    other = sandbox_factory(api_key="another-key")
    assert validated_client(on=other).get("/companies").status_code == 200
    assert other.authorization == "Basic " + base64.b64encode(b"another-key").decode()


def test_every_answer_has_a_fresh_correlation_id(codat: httpx.Client) -> None:
    ids = {codat.get(f"/companies/{UNKNOWN_COMPANY_ID}").json()["correlationId"] for _ in range(5)}
    assert len(ids) == 5


def test_unknown_path_is_404_and_wrong_method_405(codat: httpx.Client) -> None:
    missing = codat.get("/nothing/here")
    assert missing.status_code == 404
    assert missing.json()["statusCode"] == 404
    wrong = codat.delete(f"{GBP}/bills")
    assert wrong.status_code == 405
    assert wrong.json()["statusCode"] == 405


def test_answers_are_compact_json_on_a_keep_alive_connection(sandbox, codat: httpx.Client) -> None:
    response = codat.get(f"{GBP}/info")
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.http_version == "HTTP/1.1"
    assert b" " not in response.content.replace(b"Riverside Joinery Ltd", b"")
    connection = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    try:
        sockets = set()
        for _ in range(3):
            connection.request("GET", f"{GBP}/info", headers={"Authorization": sandbox.authorization})
            answer = connection.getresponse()
            codat_body = json.loads(answer.read())
            assert answer.status == 200
            assert codat_body["baseCurrency"] == "GBP"
            sockets.add(connection.sock.getsockname())
        assert len(sockets) == 1  # one TCP connection served all three
    finally:
        connection.close()
