"""CreateBankAccountFunction: POST …/payables/bankAccounts (Codat create-bank-account).

AWS glue only: validates the body (BankAccountCreate), the path and the Idempotency-Key, then runs the
write flow (`billpay.service.write_operation`). The guard is the light one: the company and connection
must exist (a cached lookup); Codat judges the account itself, and a refusal there ends the operation
`failed`. Answers 201/202 with the operation envelope, or a problem (docs/contract.md, Status codes).
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from billpay.adapters.codat import bank_accounts_path, get_codat_client
from billpay.domain.operations import KIND_BANK_ACCOUNT, ROUTE_CREATE_BANK_ACCOUNT, Operation, UpstreamRequest
from billpay.http import WRITE_PROBLEMS, build_resolver, route_responses
from billpay.models.codat import UUID_PATTERN, BankAccount
from billpay.models.operations import OperationEnvelope
from billpay.models.requests import BankAccountCreate
from billpay.observability import logger, with_metrics
from billpay.service.payment_guards import check_bank_account, note_bank_account_created
from billpay.write_route import CLIENT_RULE, IdempotencyKeyHeader, run_write, write_request

app = build_resolver()


@app.post(
    "/companies/<companyId>/connections/<connectionId>/payables/bankAccounts",
    summary="Create a bank account to pay from (idempotent: Idempotency-Key header required)",
    description="Codat create-bank-account. One Idempotency-Key is one operation, replays included."
    + CLIENT_RULE,
    operation_id="createBankAccount",
    tags=["Bank accounts"],
    responses=route_responses(
        201,
        "The account was created (the operation envelope)",
        WRITE_PROBLEMS,
        extra={202: {"description": "Accepted: the operation is pending; follow Location"}},
    ),
)
def create_bank_account(
    companyId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat company id (UUID)")],
    connectionId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat connection id (UUID)")],
    account: Annotated[BankAccountCreate, Body()],
    idempotency_key_header: IdempotencyKeyHeader = None,
) -> Response[OperationEnvelope]:
    company, connection = companyId.lower(), connectionId.lower()
    client = get_codat_client()
    request = write_request(
        app,
        kind=KIND_BANK_ACCOUNT,
        company=company,
        route=ROUTE_CREATE_BANK_ACCOUNT,
        path_params=(company, connection),
        canonical_body=account.canonical(),
        upstream=UpstreamRequest("POST", bank_accounts_path(company, connection), account.to_upstream_json()),
    )

    def created(op: Operation) -> None:
        parsed = op.result.json() if op.result is not None else None
        if isinstance(parsed, dict):
            note_bank_account_created(company, connection, BankAccount.model_validate(parsed))

    return run_write(
        app,
        request,
        client=client,
        guard=lambda _claimed: check_bank_account(client, company, connection, account),
        on_succeeded=created,
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@with_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
