"""ListBankAccountsFunction: GET /companies/{companyId}/connections/{connectionId}/payables/bankAccounts.

AWS glue only: validates the path and query, calls `billpay.service.list_accounts`, answers its page.
Needs neither DynamoDB nor SQS, so nothing here (or below) imports boto3 at load; the caller registry's
SSM read loads it on the first request (billpay.adapters.callers_ssm).
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from billpay.authz import authorize_request
from billpay.http import READ_PROBLEMS, build_resolver, route_responses
from billpay.models.codat import UUID_PATTERN
from billpay.observability import logger, with_metrics
from billpay.service.list_accounts import BankAccountsPage, StatusFilter, list_accounts

app = build_resolver()


@app.get(
    "/companies/<companyId>/connections/<connectionId>/payables/bankAccounts",
    summary="List the bank accounts a payment can come from",
    description="Codat get-mapping-options-payments. `status`: Active (default), Archived or All.",
    operation_id="listBankAccounts",
    tags=["Bank accounts"],
    responses=route_responses(200, "A page of bank accounts", READ_PROBLEMS),
)
def list_bank_accounts(
    companyId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat company id (UUID)")],
    connectionId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat connection id (UUID)")],
    status: Annotated[StatusFilter, Query(description="Which accounts: Active, Archived or All")] = "Active",
    continuationToken: Annotated[
        str | None, Query(min_length=1, max_length=4096, description="From the previous page's pagination")
    ] = None,
) -> BankAccountsPage:
    authorize_request(app, "accounts:read", companyId)
    return list_accounts(companyId, connectionId, status, continuationToken)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@with_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
