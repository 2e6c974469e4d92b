"""List a connection's bills: what the app shows the SMB to pick a bill to pay, and to see it paid.

Two sources, by `status` (docs/contract.md, API):

- **Open, PartiallyPaid, or neither given** (Codat's own default, Open + PartiallyPaid): the **bill index**,
  after its incremental refresh (`BillLookup.refresh`: usually one list-bills page; the first listing of
  a connection pages its open bills once). Every open bill is in the index once a full sync has run, and
  the refresh brings in every change since, so the answer shows a payment's effect on `amountDue` as soon
  as the platform does — and `reservedAmount`, what our own payments in flight hold, at once.
  Ordered by bill id.
- **Paid, All** (Open + PartiallyPaid + Paid): Codat's list-bills, paged through. The index holds open
  bills only (a ledger's paid history is far larger, and a re-sync would page all of it every 6 hours),
  so a paid bill is read where it lives. In Codat's order; `reservedAmount` from the index.

`supplierId` filters either source on `supplierRef.id` (Codat's list-bills cannot filter on it), so it is
never sent upstream. Pages hold `pageSize` bills (default 100); the continuation token is ours: opaque,
bound to the `status` and `supplierId` it was issued for. On the Codat path it names a Codat page and a
position in it, so a bill that changes status while the app pages may be skipped or shown twice, as with
Codat's own paging.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final, Literal

from billpay.adapters.codat import CodatBadRequestError, CodatClient, CodatError, get_codat_client
from billpay.domain.bill_index import BillIndexStore, IndexedBill
from billpay.http import json_ready
from billpay.models.codat import Bill, Pagination
from billpay.models.lists import BillsPage, ListedBill
from billpay.observability import logger
from billpay.problems import Problem
from billpay.service.lookups import (
    BillLookup,
    bill_resync_seconds,
    connection_key,
    default_bill_index,
)
from billpay.service.read_errors import problem_for_read_error

BillStatusFilter = Literal["Open", "PartiallyPaid", "Paid", "All"]

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 500

# The index's bills, by the status asked for (None: Codat's default).
INDEX_STATUSES: Final[Mapping[str | None, frozenset[str]]] = {
    None: frozenset({"Open", "PartiallyPaid"}),
    "Open": frozenset({"Open"}),
    "PartiallyPaid": frozenset({"PartiallyPaid"}),
}
# Codat's list-bills query for the statuses served from Codat.
CODAT_QUERIES: Final[Mapping[str, str]] = {
    "Paid": "status=Paid",
    "All": "status=Open||status=PartiallyPaid||status=Paid",
}
# Index items read per request to the store while a page fills (a filter may skip many).
INDEX_READ_BATCH: Final = 200
# Codat pages one answer may read while a `supplierId` filter skips bills; past it (or past half the time
# budget) the page is answered short, with a token that carries on from there.
MAX_CODAT_PAGES_PER_ANSWER: Final = 10

_TOKEN_PREFIX: Final = "b1."  # noqa: S105 - a format tag, not a secret


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after a bill id in the index, or at `skip` in a Codat page."""

    status: str  # the filter it was issued for ("" = Codat's default)
    supplier: str | None
    after: str | None = None
    codat: str | None = None
    skip: int = 0


def encode_cursor(cursor: Cursor) -> str:
    members: dict[str, Any] = {"s": cursor.status, "p": cursor.supplier}
    if cursor.after is not None:
        members["a"] = cursor.after
    if cursor.codat is not None:
        members["c"] = cursor.codat
    if cursor.skip:
        members["k"] = cursor.skip
    raw = json.dumps(members, separators=(",", ":"), ensure_ascii=False).encode()
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_token(message: str) -> Problem:
    return Problem(
        400,
        "validation-error",
        "Invalid request",
        "The continuation token is not one this listing issued.",
        errors=[
            {"location": "query", "field": "continuationToken", "message": message, "type": "value_error"}
        ],
    )


def decode_cursor(token: str, status: str, supplier: str | None) -> Cursor:
    """The cursor in `token`, which must have been issued for the same `status` and `supplierId`."""
    if not token.startswith(_TOKEN_PREFIX):
        raise _bad_token("not a continuation token of this API")
    body = token[len(_TOKEN_PREFIX) :]
    try:
        members = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise _bad_token("not a continuation token of this API") from None
    if not isinstance(members, dict):
        raise _bad_token("not a continuation token of this API")
    after, codat, skip = members.get("a"), members.get("c"), members.get("k", 0)
    if (
        not isinstance(after, str | None)
        or not isinstance(codat, str | None)
        or not isinstance(skip, int)
        or isinstance(skip, bool)
        or not 0 <= skip <= 100_000
    ):
        raise _bad_token("not a continuation token of this API")
    if members.get("s") != status or members.get("p") != supplier:
        raise _bad_token("issued for another status or supplierId; start from the first page")
    return Cursor(status, supplier, after=after, codat=codat, skip=skip)


def _supplier_of(body: Mapping[str, Any]) -> str | None:
    ref = body.get("supplierRef")
    supplier = ref.get("id") if isinstance(ref, Mapping) else None
    return supplier if isinstance(supplier, str) else None


def _listed(body: Mapping[str, Any], reserved: Decimal) -> ListedBill:
    return ListedBill.model_validate({**json_ready(dict(body)), "reservedAmount": json_ready(reserved)})


def _page(bills: list[ListedBill], cursor: Cursor | None) -> BillsPage:
    token = encode_cursor(cursor) if cursor is not None else None
    return BillsPage(bills=bills, pagination=Pagination(continuationToken=token) if token else Pagination())


def list_bills(
    company_id: str,
    connection_id: str,
    status: BillStatusFilter | None = None,
    supplier_id: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    continuation_token: str | None = None,
    *,
    client: CodatClient | None = None,
    store: BillIndexStore | None = None,
) -> BillsPage:
    company, connection = connection_key(company_id, connection_id)
    codat = client or get_codat_client()
    index = store or default_bill_index()
    cursor = (
        decode_cursor(continuation_token, status or "", supplier_id)
        if continuation_token is not None
        else Cursor(status or "", supplier_id)
    )
    deadline = codat.deadline()
    try:
        if status is None or status in INDEX_STATUSES:
            lookup = BillLookup(codat, index, resync_seconds=bill_resync_seconds())
            reads = lookup.refresh(company, connection, deadline)
            logger.info("bill index refreshed for a listing", extra={"upstream_reads": reads})
            return _from_index(index, (company, connection), INDEX_STATUSES[status], cursor, page_size)
        return _from_codat(
            codat, index, company, connection, CODAT_QUERIES[status], cursor, page_size, deadline
        )
    except CodatBadRequestError as error:
        if cursor.codat is not None:
            raise _bad_token("Codat no longer accepts the page it names; start from the first page") from None
        raise problem_for_read_error(error) from None
    except CodatError as error:
        logger.warning(
            "listing bills failed", extra={"codat_error": error.kind, "upstream_status": error.status}
        )
        raise problem_for_read_error(error) from None


def _from_index(
    index: BillIndexStore,
    key: tuple[str, str],
    statuses: frozenset[str],
    cursor: Cursor,
    page_size: int,
) -> BillsPage:
    def wanted(bill: IndexedBill) -> bool:
        return bill.status in statuses and (
            cursor.supplier is None or _supplier_of(bill.body) == cursor.supplier
        )

    found: list[IndexedBill] = []
    after = cursor.after
    more = False
    while not more:
        batch = index.bills_after(key, after, INDEX_READ_BATCH)
        for bill in batch:
            if not wanted(bill):
                continue
            if len(found) == page_size:
                more = True  # one more bill matches: the page gets a token
                break
            found.append(bill)
        if len(batch) < INDEX_READ_BATCH:
            break
        after = batch[-1].bill_id
    listed = [_listed(bill.body, bill.in_flight) for bill in found]
    return _page(listed, replace(cursor, after=found[-1].bill_id) if more else None)


def _from_codat(
    codat: CodatClient,
    index: BillIndexStore,
    company: str,
    connection: str,
    query: str,
    cursor: Cursor,
    page_size: int,
    deadline: float,
) -> BillsPage:
    found: list[Bill] = []
    codat_token, skip = cursor.codat, cursor.skip
    pages = 0
    next_cursor: Cursor | None = None
    half_budget = (deadline - codat.deadline(0)) / 2
    while True:
        answer = codat.list_bills(company, connection, query, codat_token, deadline=deadline)
        pages += 1
        following = (answer.pagination.continuation_token if answer.pagination else None) or None
        for position, bill in enumerate(answer.results):
            if position < skip or (
                cursor.supplier is not None and _supplier_of(bill.dump()) != cursor.supplier
            ):
                continue
            if len(found) == page_size:
                next_cursor = replace(cursor, codat=codat_token, skip=position)
                break
            found.append(bill)
        if next_cursor is not None or following is None:
            break
        out_of_reads = pages >= MAX_CODAT_PAGES_PER_ANSWER or deadline - codat.deadline(0) < half_budget
        if len(found) == page_size or out_of_reads:
            next_cursor = replace(cursor, codat=following, skip=0)
            break
        codat_token, skip = following, 0
    reserved = index.reserved_totals((company, connection), [bill.id for bill in found])
    listed = [_listed(bill.dump(), reserved.get(bill.id, Decimal(0))) for bill in found]
    return _page(listed, next_cursor)


__all__ = [
    "CODAT_QUERIES",
    "DEFAULT_PAGE_SIZE",
    "INDEX_STATUSES",
    "MAX_PAGE_SIZE",
    "BillStatusFilter",
    "Cursor",
    "decode_cursor",
    "encode_cursor",
    "list_bills",
]
