"""The sandbox's accounting system: companies, connections, bank accounts, bills and recorded payments.

All state sits behind one lock. Reads and writes are both microseconds of work, so one lock costs nothing
measurable at our rates and makes every rule obviously atomic: check-then-apply on a bill (is it open, is
the amount due enough) can never interleave with another payment on the same bill.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from local.sandbox import query, seed
from local.sandbox.errors import CodatError, FieldError
from local.sandbox.models import Account, Bill, Company, Connection, JsonObject, Payment
from local.sandbox.payloads import BankAccountRequest, PaymentRequest

MAX_PAGE_SIZE = 2000  # Codat's PagingInfo caps pageSize here
DEFAULT_PAGE_SIZE = 100
PAYABLE_STATUSES = ("Open", "PartiallyPaid")

_COMPANY_PROPERTIES: Mapping[str, query.Kind] = {"id": "string", "name": "string"}
_CONNECTION_PROPERTIES: Mapping[str, query.Kind] = {
    "id": "string",
    "status": "string",
    "platformName": "string",
    "sourceType": "string",
}
# Codat documents filtering bills by `status` and `sourceModifiedDate` only, mapping options by `status`.
_BILL_PROPERTIES: Mapping[str, query.Kind] = {"status": "string", "sourceModifiedDate": "datetime"}
_ACCOUNT_PROPERTIES: Mapping[str, query.Kind] = {"status": "string"}
_SUPPLIER_PROPERTIES: Mapping[str, query.Kind] = {"status": "string", "sourceModifiedDate": "datetime"}
_DEFAULT_BILLS_QUERY = "status=Open||status=PartiallyPaid"
_DEFAULT_ACCOUNTS_QUERY = "status=Active"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _predicate(text: str | None, default: str, properties: Mapping[str, query.Kind]) -> query.Predicate:
    try:
        return query.parse(text if text else default, properties)
    except query.QueryError as exc:
        raise CodatError(400, str(exc)) from exc


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = decoded["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise CodatError(400, "Error processing request - the continuation token is not valid.") from exc
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise CodatError(400, "Error processing request - the continuation token is not valid.")
    return offset


def _page_number(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise CodatError(400, f"Error processing request - '{name}' must be a whole number of at least 1.")
    return value


class Ledger:
    """The in-memory accounting system; every public method is atomic."""

    def __init__(
        self, seed_name: str = "demo", page_size: int = 5, bulk_bills: int = seed.LARGE_BULK_BILLS
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.seed_name = seed_name
        self.bulk_bills = bulk_bills
        self.page_size = page_size
        self._lock = threading.Lock()
        self._companies: dict[str, Company] = {}
        self._payments: list[Payment] = []
        self._bills: dict[tuple[str, str], Bill] = {}  # (connection id, bill id): the large seed has 1,000s
        self.reset()

    def reset(self) -> None:
        companies = seed.build(self.seed_name, self.bulk_bills)
        bills = {
            (connection.id, bill.id): bill
            for company in companies
            for connection in company.connections
            for bill in connection.bills
        }
        with self._lock:
            self._companies = {company.id: company for company in companies}
            self._bills = bills
            self._payments = []

    # --- lookups (call with the lock held) ------------------------------------------------------------

    def _company(self, company_id: str) -> Company:
        company = self._companies.get(company_id.lower())
        if company is None:
            raise CodatError(404, f"No company was found with ID {company_id}", service="ClientsApi")
        return company

    def _connection(self, company_id: str, connection_id: str) -> tuple[Company, Connection]:
        company = self._company(company_id)
        for connection in company.connections:
            if connection.id == connection_id.lower():
                return company, connection
        raise CodatError(404, f"Data connection {connection_id} not found")

    # --- reads ------------------------------------------------------------------------------------------

    def list_companies(self, page: str | None, page_size: str | None, text: str | None) -> JsonObject:
        predicate = _predicate(text, "", _COMPANY_PROPERTIES) if text else None
        with self._lock:
            records = [company.to_codat() for company in self._companies.values()]
        if predicate:
            records = [record for record in records if predicate(record)]
        return _paged(records, "/companies", page, page_size)

    def get_company(self, company_id: str) -> JsonObject:
        with self._lock:
            return self._company(company_id).to_codat()

    def list_connections(
        self, company_id: str, page: str | None, page_size: str | None, text: str | None
    ) -> JsonObject:
        predicate = _predicate(text, "", _CONNECTION_PROPERTIES) if text else None
        with self._lock:
            company = self._company(company_id)
            records = [connection.to_codat() for connection in company.connections]
        if predicate:
            records = [record for record in records if predicate(record)]
        return _paged(records, f"/companies/{company.id}/connections", page, page_size)

    def get_connection(self, company_id: str, connection_id: str) -> JsonObject:
        with self._lock:
            return self._connection(company_id, connection_id)[1].to_codat()

    def company_information(self, company_id: str, connection_id: str) -> JsonObject:
        with self._lock:
            company, _ = self._connection(company_id, connection_id)
            return {"companyName": company.name, "baseCurrency": company.base_currency}

    def mapping_options_payments(
        self, company_id: str, connection_id: str, status_query: str | None, token: str | None
    ) -> JsonObject:
        predicate = _predicate(status_query, _DEFAULT_ACCOUNTS_QUERY, _ACCOUNT_PROPERTIES)
        offset = _decode_token(token)
        with self._lock:
            _, connection = self._connection(company_id, connection_id)
            matching = [a for a in connection.accounts if predicate({"status": a.status})]
            page, pagination = self._slice(matching, offset)
            return {"bankAccounts": [account.to_codat() for account in page], "pagination": pagination}

    def list_bills(
        self, company_id: str, connection_id: str, text: str | None, token: str | None
    ) -> JsonObject:
        predicate = _predicate(text, _DEFAULT_BILLS_QUERY, _BILL_PROPERTIES)
        offset = _decode_token(token)
        with self._lock:
            _, connection = self._connection(company_id, connection_id)
            matching = [
                b
                for b in connection.bills
                if predicate({"status": b.status, "sourceModifiedDate": b.source_modified_date})
            ]
            page, pagination = self._slice(matching, offset)
            return {"results": [bill.to_codat() for bill in page], "pagination": pagination}

    def list_suppliers(
        self, company_id: str, connection_id: str, text: str | None, token: str | None
    ) -> JsonObject:
        # Codat's default here is every supplier, Active and Archived alike.
        predicate = _predicate(text, "", _SUPPLIER_PROPERTIES) if text else None
        offset = _decode_token(token)
        with self._lock:
            _, connection = self._connection(company_id, connection_id)
            matching = [
                s
                for s in connection.suppliers
                if predicate is None
                or predicate({"status": s.status, "sourceModifiedDate": s.source_modified_date})
            ]
            page, pagination = self._slice(matching, offset)
            return {
                "results": [s.to_codat(_balance(connection, s.id, s.default_currency)) for s in page],
                "pagination": pagination,
            }

    def _slice(self, records: list[Any], offset: int) -> tuple[list[Any], JsonObject]:
        end = offset + self.page_size
        pagination: JsonObject = {}
        if end < len(records):
            pagination["continuationToken"] = _encode_token(end)
        return records[offset:end], pagination

    def payments(self) -> list[JsonObject]:
        with self._lock:
            return [payment.to_record() for payment in self._payments]

    def check_connection(self, company_id: str, connection_id: str) -> None:
        with self._lock:
            self._connection(company_id, connection_id)

    # --- writes -----------------------------------------------------------------------------------------

    def create_bank_account(
        self, company_id: str, connection_id: str, request: BankAccountRequest
    ) -> JsonObject:
        with self._lock:
            _, connection = self._connection(company_id, connection_id)
            account = Account(
                id=str(uuid.uuid4()),
                name=request.name,
                account_type=request.account_type,
                currency=request.currency,
                status="Active",
                account_number=request.account_number,
                sort_code=request.sort_code,
                nominal_code=request.nominal_code,
                source_modified_date=now_iso(),
            )
            connection.accounts.append(account)
            return account.to_codat()

    def pay_bill(
        self,
        company_id: str,
        connection_id: str,
        bill_id: str,
        request: PaymentRequest,
        idempotency_key: str | None,
    ) -> JsonObject:
        with self._lock:
            company, connection = self._connection(company_id, connection_id)
            bill = self._bills.get((connection.id, bill_id))
            if bill is None:
                raise CodatError(404, f"No data available for bill with ID {bill_id}")
            _check_payment(company, connection, bill, request)
            bill.amount_paid += request.amount
            if bill.amount_due is not None:
                bill.amount_due -= request.amount
                outstanding = bill.amount_due
            else:
                outstanding = bill.total_amount - bill.amount_paid
            bill.status = "Paid" if outstanding <= 0 else "PartiallyPaid"
            recorded_at = now_iso()
            bill.source_modified_date = recorded_at
            payment = Payment(
                id=str(uuid.uuid4()),
                company_id=company.id,
                connection_id=connection.id,
                bill_id=bill.id,
                amount=request.amount,
                date=request.date,
                reference=request.reference,
                account_id=request.account_id,
                currency_rate=request.currency_rate,
                idempotency_key=idempotency_key,
                recorded_at=recorded_at,
            )
            self._payments.append(payment)
            return payment.to_codat()


def _balance(connection: Connection, supplier_id: str, currency: str | None) -> Decimal | None:
    """What the ledger owes the supplier in its default currency (unknown without one)."""
    if currency is None:
        return None
    return sum(
        (
            bill.amount_due
            for bill in connection.bills
            if bill.supplier_id == supplier_id
            and bill.currency == currency
            and bill.status in PAYABLE_STATUSES
            and bill.amount_due is not None
        ),
        Decimal(0),
    )


def _find(items: list[Any], match: Callable[[Any], bool]) -> Any:
    return next((item for item in items if match(item)), None)


def _check_payment(company: Company, connection: Connection, bill: Bill, request: PaymentRequest) -> None:
    """The accounting platform's own refusals, as `validation.errors` on a 400."""

    def refuse(item: str, message: str, validator: str) -> CodatError:
        return CodatError(400, "The bill payment was refused.", errors=[FieldError(item, message, validator)])

    account: Account | None = _find(connection.accounts, lambda a: a.id == request.account_id)
    if account is None:
        raise refuse("accountRef.id", f"Account {request.account_id} does not exist.", "AccountExists")
    if account.status != "Active":
        raise refuse("accountRef.id", f"Account {request.account_id} is {account.status}.", "AccountActive")
    if bill.status not in PAYABLE_STATUSES:
        raise refuse("billId", f"Bill {bill.id} is {bill.status} and cannot be paid.", "BillPayable")
    # A real ledger books a payment only from an account in the bill's or the company's base currency; it
    # cannot check what it does not know, so an unreported currency passes here (our guards refuse it).
    known = [c for c in (account.currency, bill.currency, company.base_currency) if c and c != "XXX"]
    if len(known) == 3 and account.currency not in (bill.currency, company.base_currency):
        raise refuse(
            "accountRef.id",
            f"Account currency {account.currency} is neither the bill's ({bill.currency}) "
            f"nor the base currency ({company.base_currency}).",
            "CurrencyMatch",
        )
    digits = seed.MINOR_UNITS.get(bill.currency)
    exponent = request.amount.normalize().as_tuple().exponent
    if digits is not None and isinstance(exponent, int) and -exponent > digits:
        raise refuse("amount", f"{bill.currency} amounts have at most {digits} decimal places.", "Precision")
    outstanding = bill.amount_due if bill.amount_due is not None else bill.total_amount - bill.amount_paid
    if request.amount > outstanding:
        raise refuse(
            "amount",
            f"The amount {request.amount} exceeds the amount due on bill {bill.id} ({outstanding}).",
            "AmountDue",
        )


def _paged(records: list[JsonObject], base: str, page_raw: str | None, size_raw: str | None) -> JsonObject:
    """Codat's page-numbered list shape (`PagingInfo` with HAL links)."""
    page = _page_number(page_raw, "page", 1)
    page_size = min(_page_number(size_raw, "pageSize", DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
    start = (page - 1) * page_size
    links: JsonObject = {
        "self": {"href": base},
        "current": {"href": f"{base}?page={page}&pageSize={page_size}"},
    }
    if start + page_size < len(records):
        links["next"] = {"href": f"{base}?page={page + 1}&pageSize={page_size}"}
    if page > 1:
        links["previous"] = {"href": f"{base}?page={page - 1}&pageSize={page_size}"}
    return {
        "results": records[start : start + page_size],
        "pageNumber": page,
        "pageSize": page_size,
        "totalResults": len(records),
        "_links": links,
    }
