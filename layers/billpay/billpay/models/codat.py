"""Codat shapes we use, from Codat-Sync-Payables.yaml (the authority on upstream shapes).

Extra fields are kept (`extra="allow"`), so a field Codat adds later survives a parse and a re-dump.
Nullable fields are `X | None` (the YAML's `nullable: true`). Money is Decimal: the client parses JSON
numbers as Decimal so `amountDue` 0.1 is exactly 0.1.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

# Codat's company and connection ids (format: uuid). Hyphenated form only: it is what Codat issues, and
# one spelling per id keeps our operation keys stable.
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

BankAccountStatus = Literal["Active", "Archived"]
BankAccountType = Literal["Unknown", "Credit", "Debit"]
BillStatus = Literal["Unknown", "Open", "PartiallyPaid", "Paid", "Void", "Draft"]

# Bills a payment may be recorded against (docs/contract.md, Guards).
PAYABLE_BILL_STATUSES: tuple[BillStatus, ...] = ("Open", "PartiallyPaid")


class CodatModel(BaseModel):
    """Serialises as received: a field Codat left out stays out (no invented nulls), extras are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    # No return annotation on purpose: pydantic then documents the model's own fields in the serialization
    # schema (the OpenAPI document), where `-> dict[str, Any]` would make every model an opaque object.
    @model_serializer(mode="wrap")
    def _as_received(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data: dict[str, Any] = handler(self)
        fields = type(self).model_fields
        keep: set[str] = set()
        for name in self.model_fields_set:
            keep.add(name)
            alias = fields[name].alias if name in fields else None
            if alias:
                keep.add(alias)
        return {key: value for key, value in data.items() if key in keep}

    def dump(self) -> dict[str, Any]:
        """The JSON-ready dict, by Codat's field names."""
        return self.model_dump(by_alias=True)


class Pagination(CodatModel):
    continuation_token: str | None = Field(default=None, alias="continuationToken")


class BankAccount(CodatModel):
    """`PaymentMappingOptions.bankAccountMappingOption` and `BankAccount` (same fields we read)."""

    id: str
    name: str | None = None
    account_number: str | None = Field(default=None, alias="accountNumber", repr=False)
    sort_code: str | None = Field(default=None, alias="sortCode", repr=False)
    nominal_code: str | None = Field(default=None, alias="nominalCode")
    currency: str | None = None
    # Open strings beside the known values: a value Codat adds later must not fail the whole page.
    status: BankAccountStatus | str | None = None
    account_type: BankAccountType | str | None = Field(default=None, alias="accountType")
    source_modified_date: str | None = Field(default=None, alias="sourceModifiedDate")


class PaymentMappingOptions(CodatModel):
    bank_accounts: list[BankAccount] = Field(default_factory=list, alias="bankAccounts")
    pagination: Pagination | None = None


class CompanyInformation(CodatModel):
    company_name: str | None = Field(default=None, alias="companyName")
    base_currency: str | None = Field(default=None, alias="baseCurrency")


class SupplierRef(CodatModel):
    id: str | None = None
    supplier_name: str | None = Field(default=None, alias="supplierName")


class Bill(CodatModel):
    id: str
    reference: str | None = None
    supplier_ref: SupplierRef | None = Field(default=None, alias="supplierRef")
    issue_date: str | None = Field(default=None, alias="issueDate")
    due_date: str | None = Field(default=None, alias="dueDate")
    # Required by the YAML, but a missing or null currency must reach the guard (422 currency-unknown),
    # not fail the whole page.
    currency: str | None = None
    currency_rate: Decimal | None = Field(default=None, alias="currencyRate")
    status: BillStatus | str | None = None
    total_amount: Decimal | None = Field(default=None, alias="totalAmount")
    amount_due: Decimal | None = Field(default=None, alias="amountDue")
    source_modified_date: str | None = Field(default=None, alias="sourceModifiedDate")

    @field_validator("currency_rate", mode="before")
    @classmethod
    def _lenient_rate(cls, value: Any) -> Any:
        # Codat's own example carries "1," here; a bill's rate is informational for us, never a guard input.
        if isinstance(value, str):
            try:
                return Decimal(value)
            except InvalidOperation:
                return None
        return value


class Bills(CodatModel):
    """`Bill.definitions.bills`: the list-bills page."""

    results: list[Bill] = Field(default_factory=list)
    pagination: Pagination | None = None


class BillPaymentAccountRef(CodatModel):
    id: str


class BillPayment(CodatModel):
    id: str | None = None
    amount: Decimal | None = None
    date: str | None = None
    reference: str | None = None
    account_ref: BillPaymentAccountRef | None = Field(default=None, alias="accountRef")
    currency_rate: Decimal | None = Field(default=None, alias="currencyRate")


class ErrorValidationItem(CodatModel):
    item_id: str | None = Field(default=None, alias="itemId")
    message: str | None = None
    validator_name: str | None = Field(default=None, alias="validatorName")


class ErrorValidation(CodatModel):
    errors: list[ErrorValidationItem] | None = None
    warnings: list[ErrorValidationItem] | None = None


class ErrorMessage(CodatModel):
    status_code: int | None = Field(default=None, alias="statusCode")
    service: str | None = None
    error: str | None = None
    correlation_id: str | None = Field(default=None, alias="correlationId")
    validation: ErrorValidation | None = None
    can_be_retried: str | None = Field(default=None, alias="canBeRetried")
    detailed_error_code: int | None = Field(default=None, alias="detailedErrorCode")


__all__ = [
    "PAYABLE_BILL_STATUSES",
    "UUID_PATTERN",
    "BankAccount",
    "BankAccountStatus",
    "BankAccountType",
    "Bill",
    "BillPayment",
    "BillPaymentAccountRef",
    "BillStatus",
    "Bills",
    "CompanyInformation",
    "ErrorMessage",
    "ErrorValidation",
    "ErrorValidationItem",
    "Pagination",
    "PaymentMappingOptions",
    "SupplierRef",
]
