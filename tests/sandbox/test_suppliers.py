"""list-suppliers: Codat's path, default (Active and Archived), query on status and sourceModifiedDate,
continuation-token paging; every answer validated against Codat's YAML by the `codat` fixture."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from local.sandbox import seed
from local.sandbox.seed import (
    ACCOUNT_GBP_CURRENT,
    BILL_GBP_PARTIAL,
    COMPANY_GBP_ID,
    COMPANY_NOCCY_ID,
    CONNECTION_GBP_ID,
    CONNECTION_NOCCY_ID,
    SUPPLIER_GBP_ARCHIVED,
    SUPPLIER_GBP_OAK,
    SUPPLIER_GBP_TOOLS,
    SUPPLIER_NOCCY_PAPER,
    UNKNOWN_COMPANY_ID,
)
from tests.fixtures.openapi import CodatOpenAPI
from tests.fixtures.sandbox import Sandbox

GBP = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
SUPPLIERS = f"{GBP}/suppliers"


def all_suppliers(
    codat: httpx.Client, path: str = SUPPLIERS, **params: str
) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages = 0
    token: str | None = None
    while True:
        query = dict(params, **({"continuationToken": token} if token else {}))
        response = codat.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["results"]
        pages += 1
        token = body["pagination"].get("continuationToken")
        if not token:
            return items, pages


def test_lists_every_supplier_by_default_paged(codat: httpx.Client) -> None:
    suppliers, pages = all_suppliers(codat)
    ids = [supplier["id"] for supplier in suppliers]
    assert ids[:2] == [SUPPLIER_GBP_OAK, SUPPLIER_GBP_TOOLS]
    assert SUPPLIER_GBP_ARCHIVED in ids  # Codat's default is Active and Archived
    assert len(ids) == len(set(ids)) == 6
    assert pages == 2  # 5 a page under the tests


def test_query_filters_on_status_and_source_modified_date(codat: httpx.Client) -> None:
    archived, _ = all_suppliers(codat, query="status=Archived")
    assert [s["id"] for s in archived] == [SUPPLIER_GBP_ARCHIVED]
    recent, _ = all_suppliers(codat, query="sourceModifiedDate>2026-04-01T00:00:00.000Z&&status=Active")
    assert SUPPLIER_GBP_ARCHIVED not in {s["id"] for s in recent}
    assert len(recent) == 5


def test_balance_is_what_is_due_in_the_suppliers_currency_and_follows_payments(
    codat: httpx.Client, sandbox: Sandbox
) -> None:
    def balance(supplier_id: str) -> Decimal:
        suppliers, _ = all_suppliers(codat)
        (found,) = [s for s in suppliers if s["id"] == supplier_id]
        return Decimal(str(found["balance"]))

    # SUP-TOOLS: GBP-PARTIAL-01 (250.00 due); the Paid, Void and Draft bills owe nothing listed
    assert balance(SUPPLIER_GBP_TOOLS) == Decimal("250")
    # SUP-OAK: the ten GBP open bills; its null-due and XXX bills add nothing
    assert balance(SUPPLIER_GBP_OAK) == sum(Decimal(125 * n) for n in range(1, 11))
    response = codat.post(
        f"{GBP}/bills/{BILL_GBP_PARTIAL}/payment",
        json={"amount": 100, "date": "2026-11-25", "accountRef": {"id": ACCOUNT_GBP_CURRENT}},
    )
    assert response.status_code in (200, 201), response.text
    assert balance(SUPPLIER_GBP_TOOLS) == Decimal("150")


def test_a_supplier_without_currency_has_no_balance(codat: httpx.Client) -> None:
    path = f"/companies/{COMPANY_NOCCY_ID}/connections/{CONNECTION_NOCCY_ID}/payables/suppliers"
    suppliers, _ = all_suppliers(codat, path)
    assert [(s["id"], s["defaultCurrency"], s["balance"]) for s in suppliers] == [
        (SUPPLIER_NOCCY_PAPER, None, None)
    ]


def test_unknown_company_bad_query_and_bad_token_are_codat_errors(codat: httpx.Client) -> None:
    unknown = codat.get(f"/companies/{UNKNOWN_COMPANY_ID}/connections/{CONNECTION_GBP_ID}/payables/suppliers")
    assert unknown.status_code == 404
    assert codat.get(SUPPLIERS, params={"query": "supplierName=Oak"}).status_code == 400
    assert codat.get(SUPPLIERS, params={"continuationToken": "not-a-token"}).status_code == 400


def test_every_seeded_supplier_is_valid_against_codats_schema(codat_openapi: CodatOpenAPI) -> None:
    for company in seed.build("large"):
        for connection in company.connections:
            bill_suppliers = {bill.supplier_id for bill in connection.bills}
            listed = {supplier.id for supplier in connection.suppliers}
            assert bill_suppliers <= listed, company.name
            for supplier in connection.suppliers:
                codat_openapi.validate_schema("Supplier", supplier.to_codat(Decimal("1.5")))
