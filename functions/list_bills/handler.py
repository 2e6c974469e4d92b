"""ListBillsFunction: GET /companies/{companyId}/connections/{connectionId}/payables/bills.

AWS glue only: validates the path and query, calls `billpay.service.list_bills`, answers its page. Reads
and refreshes the bill index (DynamoDB), so boto3 loads with the index store on the first request.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from billpay.authz import authorize_request
from billpay.http import READ_PROBLEMS, build_resolver, route_responses
from billpay.models.codat import UUID_PATTERN
from billpay.models.lists import BillsPage
from billpay.observability import logger, with_metrics
from billpay.service.list_bills import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, BillStatusFilter, list_bills

app = build_resolver()

# A supplier id is matched against the bills' `supplierRef.id`, never sent upstream: any printable text.
SUPPLIER_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


@app.get(
    "/companies/<companyId>/connections/<connectionId>/payables/bills",
    summary="List the bills the SMB can pay, or has paid",
    description=(
        "Each bill as Codat returns it, plus `reservedAmount` (what this API's payments in flight hold on "
        "it). `status`: absent = Open and PartiallyPaid (Codat's default), Open, PartiallyPaid (served from "
        "the bill index after an incremental refresh, ordered by bill id), Paid or All = Open + "
        "PartiallyPaid + Paid (paged from Codat, in Codat's order). `supplierId` keeps one supplier's bills. "
        "The continuation token is valid only with the `status` and `supplierId` it was issued for."
    ),
    operation_id="listBills",
    tags=["Bills"],
    responses=route_responses(200, "A page of bills", READ_PROBLEMS),
)
def list_connection_bills(
    companyId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat company id (UUID)")],
    connectionId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat connection id (UUID)")],
    status: Annotated[
        BillStatusFilter | None,
        Query(description="Open, PartiallyPaid, Paid or All; absent: Open and PartiallyPaid"),
    ] = None,
    supplierId: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=1024,
            pattern=SUPPLIER_ID_PATTERN,
            description="Only this supplier's bills",
        ),
    ] = None,
    pageSize: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Bills per page (default {DEFAULT_PAGE_SIZE})")
    ] = DEFAULT_PAGE_SIZE,
    continuationToken: Annotated[
        str | None, Query(min_length=1, max_length=4096, description="From the previous page's pagination")
    ] = None,
) -> BillsPage:
    authorize_request(app, "bills:read", companyId)
    return list_bills(companyId, connectionId, status, supplierId, pageSize, continuationToken)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@with_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
