"""ListSuppliersFunction: GET /companies/{companyId}/connections/{connectionId}/payables/suppliers.

AWS glue only: validates the path and query, calls `billpay.service.list_suppliers`, answers its page.
Needs neither DynamoDB nor SQS; the caller registry's SSM read loads boto3 on the first request.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from billpay.authz import authorize_request
from billpay.http import READ_PROBLEMS, build_resolver, route_responses
from billpay.models.codat import UUID_PATTERN
from billpay.models.lists import SuppliersPage
from billpay.observability import logger, with_metrics
from billpay.service.list_suppliers import list_suppliers

app = build_resolver()


@app.get(
    "/companies/<companyId>/connections/<connectionId>/payables/suppliers",
    summary="List the SMB's suppliers",
    description="Codat list-suppliers, one Codat page per answer: every supplier, Active and Archived.",
    operation_id="listSuppliers",
    tags=["Suppliers"],
    responses=route_responses(200, "A page of suppliers", READ_PROBLEMS),
)
def list_connection_suppliers(
    companyId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat company id (UUID)")],
    connectionId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat connection id (UUID)")],
    continuationToken: Annotated[
        str | None, Query(min_length=1, max_length=4096, description="From the previous page's pagination")
    ] = None,
) -> SuppliersPage:
    authorize_request(app, "suppliers:read", companyId)
    return list_suppliers(companyId, connectionId, continuationToken)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@with_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
