"""List the SMB's bank accounts a payment can come from (Codat get-mapping-options-payments)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billpay.adapters.codat import CodatBadRequestError, CodatClient, CodatError, get_codat_client
from billpay.models.codat import BankAccount, Pagination
from billpay.observability import logger
from billpay.problems import Problem
from billpay.service.read_errors import problem_for_read_error

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
    try:
        options = codat.list_payment_accounts(
            company_id.lower(), connection_id.lower(), STATUS_QUERIES[status], continuation_token
        )
    except CodatBadRequestError as error:
        if continuation_token is not None:
            # The one caller-supplied value Codat interprets itself: a stale or forged token is bad input.
            raise Problem(
                400,
                "validation-error",
                "Invalid request",
                "Codat did not accept the continuation token.",
                errors=[
                    {
                        "location": "query",
                        "field": "continuationToken",
                        "message": "not a continuation token Codat accepts",
                        "type": "value_error",
                    }
                ],
                upstream=error.upstream or None,
            ) from None
        raise problem_for_read_error(error) from None
    except CodatError as error:
        logger.warning(
            "listing accounts failed", extra={"codat_error": error.kind, "upstream_status": error.status}
        )
        raise problem_for_read_error(error) from None
    token = options.pagination.continuation_token if options.pagination else None
    # Built afresh (not Codat's object) so only the token is passed on, and only when there is one.
    pagination = Pagination(continuationToken=token) if token else Pagination()
    return BankAccountsPage(bank_accounts=options.bank_accounts, pagination=pagination)


__all__ = ["STATUS_QUERIES", "BankAccountsPage", "StatusFilter", "list_accounts"]
