"""The bills listing's own rules, on the in-memory index and a Codat of httpx.MockTransport: the paging
token, the pages of both sources, the supplier filter, `reservedAmount`, and amounts kept as numbers.
The same route through the local stack, against the sandbox, is tests/integration/test_flow_api.py."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from billpay.adapters.bill_index_memory import InMemoryBillIndex
from billpay.adapters.codat import CodatClient
from billpay.domain import bill_index
from billpay.domain.clients import authorize, parse_registry
from billpay.problems import Problem
from billpay.service.list_bills import Cursor, decode_cursor, encode_cursor, list_bills

COMPANY = "3c5e8a1f-6b2d-4f4a-9e7c-0a1b2c3d4e51"
CONNECTION = "7d2f9b4c-1e3a-4c5d-8b6f-0a1b2c3d4e52"
KEY = (COMPANY, CONNECTION)


def bill(n: int, status: str = "Open", supplier: str = "SUP-A", due: float = 10.5) -> dict[str, Any]:
    return {
        "id": f"B-{n:03d}",
        "supplierRef": {"id": supplier, "supplierName": supplier},
        "currency": "GBP",
        "status": status,
        "totalAmount": 20,
        "amountDue": due,
        "lineItems": [{"unitAmount": 0.1, "quantity": 1}],
        "sourceModifiedDate": "2026-11-01T09:00:00Z",
    }


class FakeCodat:
    """list-bills over `bills`, `page` per Codat page, honouring `status=X||…` and `sourceModifiedDate>`."""

    def __init__(self, bills: list[dict[str, Any]], page: int = 4) -> None:
        self.bills = bills
        self.page = page
        self.queries: list[str | None] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params.get("query")
        self.queries.append(query)
        if query is None or query.startswith("status"):
            wanted = {"Open", "PartiallyPaid"} if query is None else {p[7:] for p in query.split("||")}
            matching = [b for b in self.bills if b["status"] in wanted]
        else:
            matching = []  # nothing modified since the last refresh
        start = int(request.url.params.get("continuationToken") or 0)
        body: dict[str, Any] = {"results": matching[start : start + self.page], "pagination": {}}
        if start + self.page < len(matching):
            body["pagination"]["continuationToken"] = str(start + self.page)
        return httpx.Response(200, json=body)

    def client(self) -> CodatClient:
        return CodatClient(
            base_url="https://codat.test",
            api_key="k",
            timeout_seconds=2,
            connect_timeout_seconds=1,
            budget_seconds=5,
            transport=httpx.MockTransport(self.handler),
        )


def every_page(codat: FakeCodat, store: InMemoryBillIndex, **kwargs: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    token = None
    client = codat.client()
    while True:
        page = list_bills(COMPANY, CONNECTION, continuation_token=token, client=client, store=store, **kwargs)
        pages.append(json.loads(json.dumps([b.model_dump(by_alias=True) for b in page.bills])))
        token = page.pagination.continuation_token
        if token is None:
            return pages


def test_a_token_round_trips_and_is_bound_to_its_filter() -> None:
    cursor = Cursor("Paid", "SUP-A", codat="abc", skip=3)
    assert decode_cursor(encode_cursor(cursor), "Paid", "SUP-A") == cursor
    with pytest.raises(Problem) as other_filter:
        decode_cursor(encode_cursor(cursor), "All", "SUP-A")
    assert other_filter.value.status == 400
    for forged in ("b1.!!!", "b1." + "e30", "nope", "b1.WzFd"):
        with pytest.raises(Problem):
            decode_cursor(forged, "", None)


def test_open_bills_come_from_the_index_in_pages_of_the_asked_size() -> None:
    bills = [bill(n, "PartiallyPaid" if n % 3 == 0 else "Open") for n in range(1, 12)]
    codat = FakeCodat([*bills, bill(50, "Paid")])
    store = InMemoryBillIndex()
    pages = every_page(codat, store, page_size=4)
    assert [len(p) for p in pages] == [4, 4, 3]
    listed = [b for p in pages for b in p]
    assert [b["id"] for b in listed] == [b["id"] for b in bills]
    # As Codat sent it: numbers stay numbers, nested ones included; plus what is reserved.
    assert listed[0] == {**bills[0], "reservedAmount": 0}
    # Only the first listing paged the ledger; the later pages refreshed incrementally.
    assert sum(1 for q in codat.queries if q == bill_index.OPEN_BILLS_QUERY) == 3
    assert all(q and q.startswith("sourceModifiedDate>") for q in codat.queries[3:])


def test_reserved_amounts_and_the_supplier_filter() -> None:
    bills = [bill(n, supplier="SUP-B" if n in (2, 5) else "SUP-A") for n in range(1, 7)]
    store = InMemoryBillIndex()
    codat = FakeCodat(bills)
    every_page(codat, store)
    store.hold(KEY, "B-005", "4.50")
    pages = every_page(codat, store, supplier_id="SUP-B", page_size=1)
    assert [[b["id"] for b in p] for p in pages] == [["B-002"], ["B-005"]]
    assert pages[1][0]["reservedAmount"] == 4.5


def test_paid_and_all_are_paged_from_codat_with_a_position_inside_its_page() -> None:
    bills = [bill(n, "Paid" if n % 2 else "Open") for n in range(1, 15)]
    codat = FakeCodat(bills, page=4)
    store = InMemoryBillIndex()
    pages = every_page(codat, store, status="All", page_size=3)
    assert [b["id"] for p in pages for b in p] == [b["id"] for b in bills]
    assert all(len(p) == 3 for p in pages[:-1])
    paid = every_page(codat, store, status="Paid", page_size=5)
    assert [b["id"] for p in paid for b in p] == [b["id"] for b in bills if b["status"] == "Paid"]


def test_stored_bodies_keep_amounts_as_numbers() -> None:
    indexed = bill_index.from_codat(
        {"id": "x", "amountDue": Decimal("10.50"), "rate": Decimal("0.781"), "huge": Decimal("1e400")}, 0.0
    )
    assert indexed is not None
    assert json.loads(indexed.body_json()) == {"id": "x", "amountDue": 10.5, "rate": 0.781, "huge": "1E+400"}


def test_the_new_permissions_are_granted_one_by_one() -> None:
    arn = "arn:aws:iam::123456789012:role/app"
    registry = parse_registry(
        {"clients": {"app": {"principals": [arn], "permissions": ["bills:read"], "companies": ["*"]}}}
    )
    assert authorize(registry, arn, "bills:read", COMPANY).client_id == "app"  # type: ignore[union-attr]
    refused = authorize(registry, arn, "suppliers:read", COMPANY)
    assert getattr(refused, "reason", None) == "forbidden"
