"""The read routes' answers for bills and suppliers, and Codat's supplier shapes.

Amounts here are JSON numbers (`int | float`), never Decimal: these models only carry what Codat sent on
to our caller, and pydantic's JSON mode would write a Decimal as a string. Like every Codat model they
serialise as received (no invented nulls) and keep fields Codat adds later.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from billpay.models.codat import CodatModel, Pagination, SupplierRef

Number = int | float


class Supplier(CodatModel):
    """`Supplier` of list-suppliers (the fields most apps show; the rest are kept as received)."""

    id: str
    supplier_name: str | None = Field(default=None, alias="supplierName")
    contact_name: str | None = Field(default=None, alias="contactName")
    email_address: str | None = Field(default=None, alias="emailAddress")
    phone: str | None = None
    addresses: list[dict[str, Any]] | None = None
    registration_number: str | None = Field(default=None, alias="registrationNumber")
    tax_number: str | None = Field(default=None, alias="taxNumber")
    status: str | None = Field(default=None, description="Active | Archived (Codat's supplierStatus)")
    default_currency: str | None = Field(default=None, alias="defaultCurrency")
    balance: Number | None = None
    source_modified_date: str | None = Field(default=None, alias="sourceModifiedDate")


class Suppliers(CodatModel):
    """`Supplier.definitions.suppliers`: the list-suppliers page."""

    results: list[Supplier] = Field(default_factory=list)
    pagination: Pagination | None = None


class ListedBill(CodatModel):
    """A bill as Codat returns it, plus `reservedAmount`."""

    id: str
    reference: str | None = None
    supplier_ref: SupplierRef | None = Field(default=None, alias="supplierRef")
    issue_date: str | None = Field(default=None, alias="issueDate")
    due_date: str | None = Field(default=None, alias="dueDate")
    currency: str | None = None
    currency_rate: Number | str | None = Field(default=None, alias="currencyRate")
    status: str | None = Field(
        default=None, description="Open | PartiallyPaid | Paid | Void | Draft | Unknown"
    )
    total_amount: Number | None = Field(default=None, alias="totalAmount")
    amount_due: Number | None = Field(
        default=None, alias="amountDue", description="The accounting platform's own figure"
    )
    source_modified_date: str | None = Field(default=None, alias="sourceModifiedDate")
    reserved_amount: Number = Field(
        alias="reservedAmount",
        description="What this API's payments in flight hold on the bill (not yet in `amountDue`)",
    )


class BillsPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    bills: list[ListedBill]
    pagination: Pagination = Field(
        description="`continuationToken` for the next page; absent on the last page"
    )


class SuppliersPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    suppliers: list[Supplier]
    pagination: Pagination = Field(
        description="`continuationToken` for the next page; absent on the last page"
    )


__all__ = ["BillsPage", "ListedBill", "Supplier", "Suppliers", "SuppliersPage"]
