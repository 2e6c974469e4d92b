"""The seed has what the guards, the local stack and the drills need, with the fixed ids the README lists."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from pathlib import Path

import pytest

from local.sandbox import seed
from local.sandbox.models import Company

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
README = Path(__file__).resolve().parents[2] / "README.md"


def by_id(companies: list[Company]) -> dict[str, Company]:
    return {company.id: company for company in companies}


def test_demo_has_a_gbp_and_a_usd_company_each_with_a_linked_connection() -> None:
    companies = by_id(seed.build("demo"))
    assert companies[seed.COMPANY_GBP_ID].base_currency == "GBP"
    assert companies[seed.COMPANY_USD_ID].base_currency == "USD"
    assert companies[seed.COMPANY_NOCCY_ID].base_currency is None
    for company in companies.values():
        assert UUID.match(company.id)
        assert [c.status for c in company.connections] == ["Linked"]
        assert all(UUID.match(c.id) for c in company.connections)


@pytest.mark.parametrize("company_id", [seed.COMPANY_GBP_ID, seed.COMPANY_USD_ID])
def test_accounts_and_bills_cover_every_state(company_id: str) -> None:
    connection = by_id(seed.build("demo"))[company_id].connections[0]
    active = {a.currency for a in connection.accounts if a.status == "Active"}
    archived = {a.currency for a in connection.accounts if a.status == "Archived"}
    assert len(active - {None}) >= 2 and len(archived) >= 2
    base = by_id(seed.build("demo"))[company_id].base_currency
    statuses = {(b.status, b.currency == base) for b in connection.bills}
    for status in ("Open", "PartiallyPaid", "Paid"):
        assert (status, True) in statuses and (status, False) in statuses, status
    assert ("Void", True) in statuses
    payable = [b for b in connection.bills if b.status in ("Open", "PartiallyPaid")]
    assert len([b for b in payable if b.currency == base]) >= 10


def test_every_company_has_ten_payable_bills_for_drills() -> None:
    for company in seed.build("demo"):
        bills = company.connections[0].bills
        assert len([b for b in bills if b.status in ("Open", "PartiallyPaid")]) >= 10


def test_seeded_amounts_are_consistent() -> None:
    for company in seed.build("large"):
        for bill in company.connections[0].bills:
            if bill.amount_due is not None:
                assert 0 <= bill.amount_due <= bill.total_amount
                assert (bill.amount_due == 0) == (bill.status in ("Paid", "Void"))
                assert bill.amount_paid + bill.amount_due == bill.total_amount or bill.status == "Void"


def test_ids_are_unique() -> None:
    companies = seed.build("large")
    ids = Counter(c.id for c in companies)
    ids.update(conn.id for c in companies for conn in c.connections)
    ids.update(a.id for c in companies for conn in c.connections for a in conn.accounts)
    assert max(ids.values()) == 1
    for company in companies:
        bill_ids = [b.id for b in company.connections[0].bills]
        assert len(bill_ids) == len(set(bill_ids))


def test_large_seed_adds_bulk_bills_and_companies() -> None:
    companies = by_id(seed.build("large"))
    assert len(companies) == 3 + seed.LARGE_EXTRA_COMPANIES
    gbp_bills = {b.id for b in companies[seed.COMPANY_GBP_ID].connections[0].bills}
    assert seed.bulk_bill_id(seed.COMPANY_GBP_ID, seed.LARGE_BULK_BILLS) in gbp_bills
    assert len(gbp_bills) >= seed.LARGE_BULK_BILLS


def test_unknown_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sandbox seed"):
        seed.build("huge")


def test_builds_are_independent() -> None:
    first, second = seed.build(), seed.build()
    first[0].connections[0].bills[0].status = "Paid"
    assert second[0].connections[0].bills[0].status == "Open"


def test_unknown_ids_are_well_formed_and_unused() -> None:
    uuid.UUID(seed.UNKNOWN_COMPANY_ID)
    uuid.UUID(seed.UNKNOWN_CONNECTION_ID)
    uuid.UUID(seed.UNKNOWN_ACCOUNT_ID)
    companies = by_id(seed.build())
    assert seed.UNKNOWN_COMPANY_ID not in companies


def test_the_readme_lists_the_seeded_ids() -> None:
    readme = README.read_text()
    for value in (seed.COMPANY_GBP_ID, seed.CONNECTION_GBP_ID, seed.COMPANY_USD_ID, seed.CONNECTION_USD_ID,
                  seed.COMPANY_NOCCY_ID, seed.CONNECTION_NOCCY_ID, seed.ACCOUNT_GBP_CURRENT,
                  seed.ACCOUNT_GBP_ARCHIVED, seed.ACCOUNT_USD_CHECKING, seed.BILL_GBP_PARTIAL,
                  seed.BILL_GBP_USD_OPEN, seed.BILLS_GBP_OPEN[0]):  # fmt: skip
        assert value in readme, value
