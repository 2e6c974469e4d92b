"""The sandbox as an accounting system: payments move bills, refusals come in Codat's ErrorMessage."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from local.sandbox.seed import (
    ACCOUNT_GBP_ARCHIVED,
    ACCOUNT_GBP_CURRENT,
    ACCOUNT_GBP_EUR,
    ACCOUNT_GBP_NO_CURRENCY,
    ACCOUNT_GBP_USD,
    ACCOUNT_NOCCY_GBP,
    ACCOUNT_USD_CHECKING,
    BILL_GBP_DRAFT,
    BILL_GBP_JPY_OPEN,
    BILL_GBP_NODUE,
    BILL_GBP_PAID,
    BILL_GBP_PARTIAL,
    BILL_GBP_USD_OPEN,
    BILL_GBP_VOID,
    BILL_GBP_XXX,
    BILLS_GBP_OPEN,
    BILLS_NOCCY_OPEN,
    COMPANY_GBP_ID,
    COMPANY_NOCCY_ID,
    CONNECTION_GBP_ID,
    CONNECTION_NOCCY_ID,
    UNKNOWN_ACCOUNT_ID,
    UNKNOWN_BILL_ID,
    UNKNOWN_COMPANY_ID,
)
from tests.fixtures.openapi import CodatOpenAPI

GBP = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
RECORD_FIELDS = {
    "id",
    "companyId",
    "connectionId",
    "billId",
    "amount",
    "date",
    "reference",
    "accountRef",
    "currencyRate",
    "idempotencyKey",
    "recordedAt",
}


def payment(amount: Any = 10, account: str = ACCOUNT_GBP_CURRENT, **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "date": "2026-11-25", "accountRef": {"id": account}, **extra}


def bill(codat: httpx.Client, bill_id: str, base: str = GBP) -> dict[str, Any]:
    """A bill found by paging list-bills with every status (Codat has no get-bill in this API)."""
    token = None
    while True:
        params = {"query": "status=Open||status=PartiallyPaid||status=Paid||status=Void||status=Draft"}
        if token:
            params["continuationToken"] = token
        body = codat.get(f"{base}/bills", params=params).json()
        for found in body["results"]:
            if found["id"] == bill_id:
                return found  # type: ignore[no-any-return]
        token = body["pagination"].get("continuationToken")
        if not token:
            raise AssertionError(f"bill {bill_id} not listed")


def refusal(response: httpx.Response, status: int = 400) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == status
    return body.get("validation", {}).get("errors") or []


# --- payments ------------------------------------------------------------------------------------------


def test_partial_then_full_payment_moves_the_bill(
    codat: httpx.Client, sandbox, codat_openapi: CodatOpenAPI
) -> None:
    bill_id = BILLS_GBP_OPEN[0]  # 125.00 due
    first = payment(100.50, reference="pay-1")
    codat_openapi.validate_request("create-bill-payment", first)
    # Raw bytes, so the amount goes out as written (100.50), as our client sends it.
    raw = (
        f'{{"amount": 100.50, "date": "2026-11-25", "reference": "pay-1", '
        f'"accountRef": {{"id": "{ACCOUNT_GBP_CURRENT}"}}}}'
    )
    response = codat.post(f"{GBP}/bills/{bill_id}/payment", content=raw)
    assert response.status_code == 201
    created = response.json()
    assert created["amount"] == 100.5
    assert created["accountRef"] == {"id": ACCOUNT_GBP_CURRENT}
    assert created["reference"] == "pay-1"
    after_first = bill(codat, bill_id)
    assert (after_first["status"], Decimal(str(after_first["amountDue"]))) == (
        "PartiallyPaid",
        Decimal("24.50"),
    )

    assert codat.post(f"{GBP}/bills/{bill_id}/payment", json=payment(24.5)).status_code == 201
    after_second = bill(codat, bill_id)
    assert (after_second["status"], after_second["amountDue"]) == ("Paid", 0)
    open_ids = {b["id"] for b in codat.get(f"{GBP}/bills", params={"query": "status=Open"}).json()["results"]}
    assert bill_id not in open_ids

    records = sandbox.payments()
    assert [r["amount"] for r in records] == [100.5, 24.5]
    assert all(set(r) == RECORD_FIELDS for r in records)
    assert records[0]["id"] == created["id"]
    assert (records[0]["companyId"], records[0]["connectionId"], records[0]["billId"]) == (
        COMPANY_GBP_ID,
        CONNECTION_GBP_ID,
        bill_id,
    )
    assert records[0]["idempotencyKey"] is None
    assert records[0]["date"] == "2026-11-25"


def test_paying_a_partially_paid_bill_to_zero(codat: httpx.Client) -> None:
    assert codat.post(f"{GBP}/bills/{BILL_GBP_PARTIAL}/payment", json=payment(250)).status_code == 201
    assert bill(codat, BILL_GBP_PARTIAL)["status"] == "Paid"


def test_foreign_currency_payment_records_the_rate(codat: httpx.Client, sandbox) -> None:
    response = codat.post(f"{GBP}/bills/{BILL_GBP_USD_OPEN}/payment", json=payment(20, currencyRate=0.781))
    assert response.status_code == 201
    assert response.json()["currencyRate"] == 0.781
    assert sandbox.payments()[0]["currencyRate"] == 0.781


def test_a_missing_rate_is_booked_silently_as_quickbooks_does(codat: httpx.Client, sandbox) -> None:
    # The sandbox does not protect the client: our own currency-rate-required guard must.
    response = codat.post(f"{GBP}/bills/{BILL_GBP_USD_OPEN}/payment", json=payment(20))
    assert response.status_code == 201
    assert sandbox.payments()[0]["currencyRate"] is None


def test_a_bill_without_amount_due_is_capped_by_its_total(codat: httpx.Client) -> None:
    assert codat.post(f"{GBP}/bills/{BILL_GBP_NODUE}/payment", json=payment(60)).status_code == 201
    listed = bill(codat, BILL_GBP_NODUE)
    assert (listed["status"], listed["amountDue"]) == ("PartiallyPaid", None)
    refusal(codat.post(f"{GBP}/bills/{BILL_GBP_NODUE}/payment", json=payment(30.01)))
    assert codat.post(f"{GBP}/bills/{BILL_GBP_NODUE}/payment", json=payment(30)).status_code == 201
    assert bill(codat, BILL_GBP_NODUE)["status"] == "Paid"


@pytest.mark.parametrize(
    ("bill_id", "body", "item"),
    [
        (BILLS_GBP_OPEN[0], payment(125.01), "amount"),  # overpayment
        (BILL_GBP_PARTIAL, payment(250.5), "amount"),  # more than what is still due
        (BILL_GBP_PAID, payment(1), "billId"),
        (BILL_GBP_VOID, payment(1), "billId"),
        (BILL_GBP_DRAFT, payment(1), "billId"),
        (BILLS_GBP_OPEN[0], payment(1, account=UNKNOWN_ACCOUNT_ID), "accountRef.id"),
        (BILLS_GBP_OPEN[0], payment(1, account=ACCOUNT_GBP_ARCHIVED), "accountRef.id"),
        (BILLS_GBP_OPEN[0], payment(1, account=ACCOUNT_USD_CHECKING), "accountRef.id"),  # other company's
        (BILL_GBP_USD_OPEN, payment(1, account=ACCOUNT_GBP_EUR, currencyRate=0.78), "accountRef.id"),
        (BILL_GBP_JPY_OPEN, payment(1000.5, currencyRate=0.0052), "amount"),
        (BILLS_GBP_OPEN[0], payment(10.001), "amount"),
    ],
)
def test_the_ledger_refuses_with_validation_errors(
    codat: httpx.Client, sandbox, bill_id: str, body: dict[str, Any], item: str
) -> None:
    before = bill(codat, bill_id)
    errors = refusal(codat.post(f"{GBP}/bills/{bill_id}/payment", json=body))
    assert [error["itemId"] for error in errors] == [item]
    assert errors[0]["message"]
    assert sandbox.payments() == []
    assert bill(codat, bill_id) == before


def test_unknown_currencies_are_not_the_ledgers_business(codat: httpx.Client) -> None:
    # An XXX bill, an account without currency, a company without base currency: the sandbox books them
    # (what a platform that does not know would do); refusing them is our guard's job (currency-unknown).
    assert codat.post(f"{GBP}/bills/{BILL_GBP_XXX}/payment", json=payment(1)).status_code == 201
    assert (
        codat.post(
            f"{GBP}/bills/{BILLS_GBP_OPEN[1]}/payment", json=payment(1, ACCOUNT_GBP_NO_CURRENCY)
        ).status_code
        == 201
    )
    noccy = f"/companies/{COMPANY_NOCCY_ID}/connections/{CONNECTION_NOCCY_ID}/payables"
    noccy_payment = payment(1, ACCOUNT_NOCCY_GBP)
    assert codat.post(f"{noccy}/bills/{BILLS_NOCCY_OPEN[0]}/payment", json=noccy_payment).status_code == 201


def test_a_foreign_account_pays_a_bill_in_its_currency(codat: httpx.Client) -> None:
    response = codat.post(
        f"{GBP}/bills/{BILL_GBP_USD_OPEN}/payment", json=payment(50, ACCOUNT_GBP_USD, currencyRate=0.781)
    )
    assert response.status_code == 201


def test_unknown_bill_is_404(codat: httpx.Client, sandbox) -> None:
    response = codat.post(f"{GBP}/bills/{UNKNOWN_BILL_ID}/payment", json=payment(1))
    refusal(response, 404)
    assert sandbox.payments() == []


def test_unknown_company_on_a_write_is_404(codat: httpx.Client) -> None:
    path = f"/companies/{UNKNOWN_COMPANY_ID}/connections/{CONNECTION_GBP_ID}/payables/bills/x/payment"
    refusal(codat.post(path, json=payment(1)), 404)


@pytest.mark.parametrize(
    ("content", "items"),
    [
        (b"{not json", []),
        (b"", []),
        (b"[]", []),
        (b'"a string"', []),
        (b'{"amount": NaN, "date": "2026-11-25", "accountRef": {"id": "a"}}', []),
        (b'{"amount": Infinity, "date": "2026-11-25", "accountRef": {"id": "a"}}', []),
        (b"\xff\xfe", []),
        (b"{}", ["amount", "date", "accountRef"]),
        (b'{"amount": 0, "date": "2026-11-25", "accountRef": {"id": "a"}}', ["amount"]),
        (b'{"amount": -5, "date": "2026-11-25", "accountRef": {"id": "a"}}', ["amount"]),
        (b'{"amount": "10", "date": "2026-11-25", "accountRef": {"id": "a"}}', ["amount"]),
        (b'{"amount": true, "date": "2026-11-25", "accountRef": {"id": "a"}}', ["amount"]),
        (b'{"amount": 1, "date": 20261125, "accountRef": {"id": "a"}}', ["date"]),
        (b'{"amount": 1, "date": "25/11/2026", "accountRef": {"id": "a"}}', ["date"]),
        (b'{"amount": 1, "date": "2026-11-25", "accountRef": "a"}', ["accountRef"]),
        (b'{"amount": 1, "date": "2026-11-25", "accountRef": {}}', ["accountRef.id"]),
        (b'{"amount": 1, "date": "2026-11-25", "accountRef": {"id": 7}}', ["accountRef.id"]),
        (b'{"amount": 1, "date": "2026-11-25", "accountRef": {"id": "a"}, "reference": 5}', ["reference"]),
        (
            b'{"amount": 1, "date": "2026-11-25", "accountRef": {"id": "a"}, "currencyRate": 0}',
            ["currencyRate"],
        ),
        (
            b'{"amount": 1, "date": "2026-11-25", "accountRef": {"id": "a"}, "currencyRate": "1"}',
            ["currencyRate"],
        ),
        (b'{"amount": 1, "date": "2026-11-25", "accountRef": {"id": "a"}, "currency": "GBP"}', ["currency"]),
    ],
)
def test_malformed_payments_are_400_never_500(
    codat: httpx.Client, sandbox, content: bytes, items: list[str]
) -> None:
    response = codat.post(f"{GBP}/bills/{BILLS_GBP_OPEN[0]}/payment", content=content)
    errors = refusal(response, 400)
    assert [error["itemId"] for error in errors] == items
    assert sandbox.payments() == []


def test_iso_dates_with_time_and_zone_are_accepted(codat: httpx.Client, sandbox) -> None:
    for date in ("2026-11-25T00:00:00", "2026-11-25T10:30:00Z", "2026-11-25T10:30:00.123+01:00"):
        body = {"amount": 1, "date": date, "accountRef": {"id": ACCOUNT_GBP_CURRENT}}
        assert codat.post(f"{GBP}/bills/{BILLS_GBP_OPEN[2]}/payment", json=body).status_code == 201
    assert [record["date"] for record in sandbox.payments()][-1] == "2026-11-25T10:30:00.123+01:00"


# --- bank accounts ----------------------------------------------------------------------------------------


def test_a_created_bank_account_appears_active_in_mapping_options(
    codat: httpx.Client, codat_openapi: CodatOpenAPI
) -> None:
    prototype = {
        "name": "New Supplier Payments",
        "accountType": "Debit",
        "accountNumber": "80001234",
        "sortCode": "401010",
        "currency": "GBP",
    }
    codat_openapi.validate_request("create-bank-account", prototype)
    response = codat.post(f"{GBP}/bankAccounts", json=prototype)
    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "Active"
    assert {k: created[k] for k in prototype} == prototype

    listed: list[dict[str, Any]] = []
    token = None
    while True:
        body = codat.get(
            f"{GBP}/mappingOptions/payments", params={"continuationToken": token} if token else {}
        ).json()
        listed += body["bankAccounts"]
        token = body["pagination"].get("continuationToken")
        if not token:
            break
    mine = [account for account in listed if account["id"] == created["id"]]
    assert mine and mine[0]["status"] == "Active" and mine[0]["name"] == "New Supplier Payments"


def test_a_created_account_can_pay(codat: httpx.Client) -> None:
    body = {"name": "Ops", "accountType": "Credit", "accountNumber": "1", "currency": "GBP"}
    account_id = codat.post(f"{GBP}/bankAccounts", json=body).json()["id"]
    assert (
        codat.post(f"{GBP}/bills/{BILLS_GBP_OPEN[3]}/payment", json=payment(5, account_id)).status_code == 201
    )


@pytest.mark.parametrize(
    ("body", "items"),
    [
        ({}, ["name", "accountNumber", "accountType", "currency"]),
        ({"name": "A", "accountType": "Savings", "accountNumber": "1", "currency": "GBP"}, ["accountType"]),
        ({"name": "A", "accountType": "Debit", "accountNumber": "1", "currency": "pounds"}, ["currency"]),
        ({"name": "", "accountType": "Debit", "accountNumber": "1", "currency": "GBP"}, ["name"]),
        (
            {"name": 5, "accountType": "Debit", "accountNumber": 1, "currency": "GBP"},
            ["name", "accountNumber"],
        ),
        (
            {
                "name": "A",
                "accountType": "Debit",
                "accountNumber": "1",
                "currency": "GBP",
                "status": "Active",
            },
            ["status"],
        ),
        (
            {"name": "A", "accountType": "Debit", "accountNumber": "1", "currency": "GBP", "sortCode": 40},
            ["sortCode"],
        ),
    ],
)
def test_malformed_bank_accounts_are_400(codat: httpx.Client, body: dict[str, Any], items: list[str]) -> None:
    errors = refusal(codat.post(f"{GBP}/bankAccounts", json=body))
    assert sorted(error["itemId"] for error in errors) == sorted(items)


def test_bank_account_for_unknown_company_is_404(codat: httpx.Client) -> None:
    body = {"name": "A", "accountType": "Debit", "accountNumber": "1", "currency": "GBP"}
    path = f"/companies/{UNKNOWN_COMPANY_ID}/connections/{CONNECTION_GBP_ID}/payables/bankAccounts"
    refusal(codat.post(path, json=body), 404)


def test_reset_restores_the_seed(codat: httpx.Client, sandbox) -> None:
    codat.post(f"{GBP}/bills/{BILLS_GBP_OPEN[0]}/payment", json=payment(125))
    codat.post(
        f"{GBP}/bankAccounts",
        json={"name": "A", "accountType": "Debit", "accountNumber": "1", "currency": "GBP"},
    )
    assert bill(codat, BILLS_GBP_OPEN[0])["status"] == "Paid"
    reset = httpx.post(f"{sandbox.url}/_sandbox/reset")
    assert reset.status_code == 200
    assert sandbox.payments() == []
    assert bill(codat, BILLS_GBP_OPEN[0])["status"] == "Open"
    accounts = codat.get(
        f"{GBP}/mappingOptions/payments", params={"statusQuery": "status=Active||status=Archived"}
    )
    assert all(account["name"] != "A" for account in accounts.json()["bankAccounts"])
