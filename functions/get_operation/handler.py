"""GetOperationFunction: GET /operations/{operationId} — the envelope of one write, from the table.

AWS glue only: one strongly consistent GetItem, no Codat call. A `guarding` claim is not an operation
yet (it passed no guard and nothing was sent), so it answers 404 like an unknown id — as does an
operation of another client.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from billpay.adapters.operations_dynamodb import operation_store
from billpay.authz import authorize_request
from billpay.config import get_settings
from billpay.http import build_resolver, route_responses
from billpay.models.operations import OperationEnvelope, envelope
from billpay.observability import logger, with_metrics
from billpay.problems import not_found

app = build_resolver()

OPERATION_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


@app.get(
    "/operations/<operationId>",
    summary="Follow a write: its operation envelope",
    description="status: pending, succeeded, failed (not recorded) or needs_review (a person must look).",
    operation_id="getOperation",
    tags=["Operations"],
    responses=route_responses(200, "The operation", (400, 403, 404, 500, 503)),
)
def get_operation(
    operationId: Annotated[str, Path(pattern=OPERATION_ID_PATTERN, description="From a write's answer")],
) -> OperationEnvelope:
    caller = authorize_request(app, "operations:read")
    settings = get_settings()
    op = operation_store(settings.table_name).get(operationId)
    # Another client's operation, or a v1 record no request of its client has replayed yet (no clientId):
    # answered exactly as an unknown id, so ids reveal nothing.
    if op is None or op.phase == "guarding" or op.client_id != caller.client_id:
        raise not_found("No such operation.")
    return OperationEnvelope.model_validate(envelope(op, settings.problem_type_base))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@with_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
