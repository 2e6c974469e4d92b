"""CreateBillPaymentFunction: POST …/payables/bills/{billId}/payments (Codat create-bill-payment).

AWS glue only: validates the body (BillPaymentCreate), the path and the Idempotency-Key, then runs the
write flow (`billpay.service.write_operation`) with the payment guards after the claim. Answers 201/202
with the operation envelope, or a problem (docs/contract.md, Status codes).
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from billpay.adapters.codat import (
    InvalidPathSegmentError,
    bill_payment_path,
    get_codat_client,
    validate_bill_id,
)
from billpay.domain.operations import KIND_BILL_PAYMENT, ROUTE_CREATE_BILL_PAYMENT, Operation, UpstreamRequest
from billpay.http import WRITE_PROBLEMS, build_resolver, route_responses
from billpay.models.codat import UUID_PATTERN
from billpay.models.operations import OperationEnvelope
from billpay.models.requests import BillPaymentCreate
from billpay.observability import logger, with_metrics
from billpay.problems import validation_error
from billpay.service.payment_guards import check_payment, payment_hold
from billpay.write_route import CLIENT_RULE, IdempotencyKeyHeader, run_write, write_request

app = build_resolver()

ROUTE = "/companies/<companyId>/connections/<connectionId>/payables/bills/<billId>/payments"


@app.post(
    ROUTE,
    summary="Record a payment against a bill (idempotent: Idempotency-Key header required)",
    description=(
        "Codat create-bill-payment. `amount` is in the bill's currency; `currency` (optional, ours) is "
        "checked against the bill's and never forwarded. One Idempotency-Key is one operation."
    )
    + CLIENT_RULE,
    operation_id="createBillPayment",
    tags=["Bill payments"],
    responses=route_responses(
        201,
        "The payment was recorded (the operation envelope)",
        WRITE_PROBLEMS,
        extra={202: {"description": "Accepted: the operation is pending; follow Location"}},
    ),
)
def create_bill_payment(
    companyId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat company id (UUID)")],
    connectionId: Annotated[str, Path(pattern=UUID_PATTERN, description="Codat connection id (UUID)")],
    billId: Annotated[str, Path(min_length=1, max_length=1024, description="Codat bill id")],
    payment: Annotated[BillPaymentCreate, Body()],
    idempotency_key_header: IdempotencyKeyHeader = None,
) -> Response[OperationEnvelope]:
    company, connection = companyId.lower(), connectionId.lower()
    # API Gateway hands over the decoded path parameter; the route match only sees the encoded path.
    bill = (app.current_event.path_parameters or {}).get("billId", billId)
    try:
        validate_bill_id(bill)
        path = bill_payment_path(company, connection, bill)
    except InvalidPathSegmentError as exc:
        raise validation_error(
            "The bill id is not valid.",
            [{"location": "path", "field": "billId", "message": str(exc), "type": "value_error"}],
        ) from None

    client = get_codat_client()
    request = write_request(
        app,
        kind=KIND_BILL_PAYMENT,
        company=company,
        route=ROUTE_CREATE_BILL_PAYMENT,
        path_params=(company, connection, bill),
        canonical_body=payment.canonical(),
        upstream=UpstreamRequest("POST", path, payment.to_upstream_json()),
    )

    hold = payment_hold()  # the amount reserved on the bill, let go or settled with the operation

    def guard(claimed: Operation) -> None:
        check_payment(client, company, connection, bill, payment, hold=hold, claimed=claimed)

    return run_write(app, request, client=client, guard=guard, holds=hold)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@with_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
