"""The HTTP side of a write, shared by every write route: build the `WriteRequest` from the event, run
the write flow with this container's store, client, budget and retry policy, and answer with the
operation envelope (201 / 202 + Location) or its problem.

The write handlers stay AWS glue: they validate their own path and body, then call `write_request` and
`run_write` with their guard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Header

from billpay.adapters.codat import CodatClient
from billpay.adapters.operations_dynamodb import operation_store
from billpay.authz import authorize_request
from billpay.config import get_settings
from billpay.domain.clients import Permission
from billpay.domain.operations import (
    KIND_BANK_ACCOUNT,
    KIND_BILL_PAYMENT,
    Kind,
    Operation,
    UpstreamRequest,
    iso_timestamp,
)
from billpay.http import operation_location
from billpay.models.operations import OperationEnvelope
from billpay.problems import Problem
from billpay.service.retry import PolicyPlanner
from billpay.service.write_operation import Budget, WriteRequest, answer, execute_write, idempotency_key

# Declared so the OpenAPI document shows it; the value is read (and refused) by `idempotency_key`, which
# answers a missing key with its own 400 `idempotency-key-missing` rather than a generic validation error.
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "Required on every POST: one value per intended write (1-255 visible ASCII characters), "
            "reused unchanged on every retry of it. Missing: 400 idempotency-key-missing; the same key "
            "with another body: 422 idempotency-key-reused; while the first is in flight: 409."
        ),
    ),
]


PERMISSION_OF_KIND: dict[Kind, Permission] = {
    KIND_BANK_ACCOUNT: "accounts:create",
    KIND_BILL_PAYMENT: "payments:create",
}


def write_request(
    app: APIGatewayRestResolver,
    *,
    kind: Kind,
    route: str,
    company: str,
    path_params: Sequence[str],
    canonical_body: dict[str, Any],
    upstream: UpstreamRequest,
) -> WriteRequest:
    """The write as the current request asks for it, once the caller's client may make it for `company`
    (raises 403/404 otherwise, then the 400 for a missing or bad key): nothing is claimed before."""
    caller = authorize_request(app, PERMISSION_OF_KIND[kind], company)
    event = app.current_event
    return WriteRequest(
        kind=kind,
        route=route,
        caller_arn=event.request_context.identity.user_arn,
        client_id=caller.client_id,
        path_params=path_params,
        client_key=idempotency_key(event.headers),
        canonical_body=canonical_body,
        upstream=upstream,
    )


def run_write(
    app: APIGatewayRestResolver,
    request: WriteRequest,
    *,
    client: CodatClient,
    guard: Callable[[], object],
    on_succeeded: Callable[[Operation], None],
) -> Response[OperationEnvelope]:
    """Claim, guard, send and settle (`execute_write`), then answer per DESIGN §2's table."""
    settings = get_settings()
    started = iso_timestamp(time.time())
    op = execute_write(
        request,
        store=operation_store(settings.table_name),
        sender=client,
        budget=Budget(
            app.lambda_context.get_remaining_time_in_millis,
            settings.sync_budget_seconds,
            settings.upstream_timeout_seconds,
        ),
        guard=guard,
        on_succeeded=on_succeeded,
        # A transient outcome settles `pending` with nextAttemptAt; the sweeper schedules the retries.
        retry_planner=PolicyPlanner.from_settings(),
    )
    location = operation_location(app.current_event.raw_event, op.operation_id)
    # An operation created before this request began was not made by it: the answer is a replay.
    replayed = op.created_at < started
    try:
        status, headers, body = answer(op, location=location, type_base=settings.problem_type_base)
    except Problem as ended:
        if replayed:
            ended.headers["Idempotent-Replayed"] = "true"
        raise
    headers = {**headers, "Location": location}
    if status == 202:
        headers["Retry-After"] = str(retry_after_seconds(op, time.time()))
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(status, "application/json", OperationEnvelope.model_validate(body), headers)


def retry_after_seconds(op: Operation, now: float) -> int:
    """Whole seconds until a pending operation is next due (its next attempt, else its lease's end)."""
    due = op.next_attempt_at if op.next_attempt_at is not None else op.lease_until
    return max(1, math.ceil(due - now)) if due is not None else 1
