"""The sandbox's records and how each is rendered in Codat's shapes.

Amounts are `Decimal` inside the sandbox (a ledger never adds floats) and become JSON numbers only when
rendered; `None` stands for a field the accounting platform does not report (Codat's `nullable`).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

JsonObject = dict[str, Any]

LINK_BASE = "https://link.codat.io"
LINK_API_BASE = "https://link-api.codat.io"


def number(value: Decimal | None) -> int | float | None:
    """A JSON number for an amount: integral amounts stay integers, the rest take the shortest float."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return int(value)
    return float(value)


@dataclasses.dataclass
class Account:
    """A bank account as `get-mapping-options-payments` lists it."""

    id: str
    name: str | None
    account_type: str  # Unknown | Credit | Debit
    currency: str | None
    status: str  # Active | Archived
    account_number: str | None = None
    sort_code: str | None = None
    nominal_code: str | None = None
    source_modified_date: str = "2026-11-01T09:00:00Z"

    def to_codat(self) -> JsonObject:
        return {
            "id": self.id,
            "name": self.name,
            "accountNumber": self.account_number,
            "nominalCode": self.nominal_code,
            "sortCode": self.sort_code,
            "currency": self.currency,
            "status": self.status,
            "accountType": self.account_type,
            "sourceModifiedDate": self.source_modified_date,
        }


@dataclasses.dataclass
class Bill:
    """A supplier bill; `amount_due` None models a platform that does not report it."""

    id: str
    reference: str | None
    supplier_id: str
    supplier_name: str
    issue_date: str
    due_date: str
    currency: str
    status: str  # Unknown | Open | PartiallyPaid | Paid | Void | Draft
    total_amount: Decimal
    amount_due: Decimal | None
    currency_rate: Decimal | None = None
    description: str = "Goods and services"
    source_modified_date: str = "2026-11-01T09:00:00Z"
    # What has been paid against the bill, tracked even when the platform hides `amountDue`.
    amount_paid: Decimal = Decimal(0)

    def to_codat(self) -> JsonObject:
        return {
            "id": self.id,
            "reference": self.reference,
            "supplierRef": {"id": self.supplier_id, "supplierName": self.supplier_name},
            "issueDate": self.issue_date,
            "dueDate": self.due_date,
            "currency": self.currency,
            "currencyRate": number(self.currency_rate),
            "lineItems": [
                {
                    "description": self.description,
                    "unitAmount": number(self.total_amount),
                    "quantity": 1,
                    "taxAmount": 0,
                    "totalAmount": number(self.total_amount),
                    "accountRef": {"id": "5000"},
                    "taxRateRef": {"id": "NONE"},
                }
            ],
            "status": self.status,
            "totalAmount": number(self.total_amount),
            "amountDue": number(self.amount_due),
            "sourceModifiedDate": self.source_modified_date,
        }


@dataclasses.dataclass
class Supplier:
    """A supplier as `list-suppliers` lists it; `balance` is derived from the connection's bills."""

    id: str
    name: str
    status: str  # Unknown | Active | Archived
    default_currency: str | None
    contact_name: str | None = None
    email_address: str | None = None
    phone: str | None = None
    country: str | None = None
    city: str | None = None
    postal_code: str | None = None
    source_modified_date: str = "2026-10-15T09:00:00Z"

    def to_codat(self, balance: Decimal | None) -> JsonObject:
        addresses = (
            None
            if self.country is None
            else [
                {
                    "type": "Billing",
                    "line1": None,
                    "line2": None,
                    "city": self.city,
                    "region": None,
                    "country": self.country,
                    "postalCode": self.postal_code,
                }
            ]
        )
        return {
            "id": self.id,
            "supplierName": self.name,
            "contactName": self.contact_name,
            "emailAddress": self.email_address,
            "phone": self.phone,
            "addresses": addresses,
            "status": self.status,
            "balance": number(balance),
            "defaultCurrency": self.default_currency,
            "sourceModifiedDate": self.source_modified_date,
        }


@dataclasses.dataclass
class Connection:
    """A company's data connection to its accounting platform, with that platform's ledger."""

    id: str
    company_id: str
    platform_name: str
    integration_key: str
    integration_id: str
    source_id: str
    status: str = "Linked"
    created: str = "2026-01-12T10:00:00Z"
    last_sync: str | None = "2026-11-25T06:00:00Z"
    accounts: list[Account] = dataclasses.field(default_factory=list)
    bills: list[Bill] = dataclasses.field(default_factory=list)
    suppliers: list[Supplier] = dataclasses.field(default_factory=list)

    def to_codat(self) -> JsonObject:
        return {
            "id": self.id,
            "integrationId": self.integration_id,
            "integrationKey": self.integration_key,
            "sourceId": self.source_id,
            "platformName": self.platform_name,
            "linkUrl": f"{LINK_API_BASE}/companies/{self.company_id}/connections/{self.id}/start",
            "status": self.status,
            "lastSync": self.last_sync,
            "created": self.created,
            "sourceType": "Accounting",
            "dataConnectionErrors": [],
        }


@dataclasses.dataclass
class Company:
    """An SMB as Codat knows it; `base_currency` None models a platform that does not report one."""

    id: str
    name: str
    base_currency: str | None
    description: str = ""
    created: str = "2026-01-12T09:30:00Z"
    created_by: str = "Local Sandbox"
    connections: list[Connection] = dataclasses.field(default_factory=list)

    def to_codat(self) -> JsonObject:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "redirect": f"{LINK_BASE}/company/{self.id}",
            "lastSync": "2026-11-25T06:00:00Z",
            "created": self.created,
            "createdByUserName": self.created_by,
            "products": ["payables"],
            "tags": {},
            "referenceSubsidiaryCompanies": [],
            "dataConnections": [connection.to_codat() for connection in self.connections],
        }


@dataclasses.dataclass(frozen=True)
class Payment:
    """A bill payment as recorded by the accounting system (and listed by GET /_sandbox/payments)."""

    id: str
    company_id: str
    connection_id: str
    bill_id: str
    amount: Decimal
    date: str
    reference: str | None
    account_id: str
    currency_rate: Decimal | None
    idempotency_key: str | None
    recorded_at: str

    def to_codat(self) -> JsonObject:
        """The `BillPayment` answer of `create-bill-payment`."""
        return {
            "id": self.id,
            "amount": number(self.amount),
            "date": self.date,
            "reference": self.reference,
            "accountRef": {"id": self.account_id},
            "currencyRate": number(self.currency_rate),
        }

    def to_record(self) -> JsonObject:
        return {
            "id": self.id,
            "companyId": self.company_id,
            "connectionId": self.connection_id,
            "billId": self.bill_id,
            "amount": number(self.amount),
            "date": self.date,
            "reference": self.reference,
            "accountRef": {"id": self.account_id},
            "currencyRate": number(self.currency_rate),
            "idempotencyKey": self.idempotency_key,
            "recordedAt": self.recorded_at,
        }
