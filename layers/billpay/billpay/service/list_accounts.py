"""List the SMB's bank accounts a payment can come from (Codat get-mapping-options-payments)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billpay.adapters.codat import CodatClient, get_codat_client
from billpay.models.codat import BankAccount, Pagination
from billpay.service.read_errors import passed_on, read_page

StatusFilter = Literal["Active", "Archived", "All"]

# Our `status` → Codat's `statusQuery` (Codat's query language: `||` is "or").
STATUS_QUERIES: dict[StatusFilter, str] = {
    "Active": "status=Active",
    "Archived": "status=Archived",
    "All": "status=Active||status=Archived",
}


class BankAccountsPage(BaseModel):
    """Our list answer: the accounts as Codat returns them, and where the next page starts."""

    model_config = ConfigDict(populate_by_name=True)

    bank_accounts: list[BankAccount] = Field(alias="bankAccounts")
    pagination: Pagination = Field(
        description="`continuationToken` for the next page; absent on the last page"
    )


def list_accounts(
    company_id: str,
    connection_id: str,
    status: StatusFilter = "Active",
    continuation_token: str | None = None,
    *,
    client: CodatClient | None = None,
) -> BankAccountsPage:
    codat = client or get_codat_client()
    options = read_page(
        "accounts",
        continuation_token,
        lambda: codat.list_payment_accounts(
            company_id.lower(), connection_id.lower(), STATUS_QUERIES[status], continuation_token
        ),
    )
    return BankAccountsPage(bank_accounts=options.bank_accounts, pagination=passed_on(options.pagination))


__all__ = ["STATUS_QUERIES", "BankAccountsPage", "StatusFilter", "list_accounts"]
