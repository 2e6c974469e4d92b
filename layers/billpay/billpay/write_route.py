"""The HTTP side of a write, shared by every write route: build the `WriteRequest` from the event, run
the write flow with this container's store, client, budget and retry policy, and answer with the
operation envelope (201 / 202 + Location) or its problem.

The write handlers stay AWS glue: they validate their own path and body, then call `write_request` and
`run_write` with their guard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Header

from billpay.adapters.aws_sdk import worst_case_call_seconds
from billpay.adapters.codat import CodatClient
from billpay.adapters.events_eventbridge import event_publisher
from billpay.adapters.operations_dynamodb import operation_store
from billpay.adapters.retry_queue_sqs import retry_queue
from billpay.authz import authorize_request
from billpay.config import get_settings
from billpay.domain.clients import Permission
from billpay.domain.operations import (
    KIND_BANK_ACCOUNT,
    KIND_BILL_PAYMENT,
    Kind,
    Operation,
    UpstreamRequest,
    validate_idempotency_key,
)
from billpay.domain.outcomes import UNAVAILABLE
from billpay.http import operation_location
from billpay.models.operations import OperationEnvelope, envelope
from billpay.problems import Problem
from billpay.service.retry import WORKER_TIMEOUT_SECONDS, PolicyPlanner
from billpay.service.write_operation import (
    Answered,
    Budget,
    Holds,
    NotSent,
    QueueHandOff,
    Refused,
    StateUnknown,
    WriteRequest,
    WriteResult,
    execute_write,
)

# In every POST's OpenAPI description (docs/contract.md, Client rule): what a client does with each answer.
CLIENT_RULE = (
    "\n\n**Client rule.** An answer with `operation` is decided by its `status`: `succeeded` — done; "
    "`pending` — wait for the event or poll `Location`; `failed` — nothing was recorded, a corrected "
    "request takes a new Idempotency-Key; `needs_review` — a person decides. Without `operation`: 409 — "
    "the same key after `Retry-After`; a guard or validation 4xx to the first request with this key — "
    "nothing was recorded, the corrected request may reuse the key; anything else (any 5xx including 503 "
    "`operation-state-unknown`, a lost connection, API Gateway's own 502/504/429/403, a 422 "
    "`idempotency-key-reused`) — retry with the same key and the same body, never a new key."
)

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


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, its name matched case-insensitively (the last one wins)."""
    value = None
    lowered = name.lower()
    for key, candidate in (headers or {}).items():
        if key.lower() == lowered:
            value = candidate
    return value


def idempotency_key(headers: Mapping[str, str] | None) -> str:
    """The client's `Idempotency-Key`, or the 400 to answer."""
    value = header(headers, "Idempotency-Key")
    if value is None:
        raise Problem(
            400,
            "idempotency-key-missing",
            "Idempotency-Key missing",
            "Every POST needs an Idempotency-Key header: one value per intended write, reused on retries.",
        )
    reason = validate_idempotency_key(value)
    if reason is not None:
        raise Problem(
            400,
            "validation-error",
            "Invalid request",
            f"Idempotency-Key {reason}.",
            errors=[
                {"location": "header", "field": "Idempotency-Key", "message": reason, "type": "value_error"}
            ],
        )
    return value


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
    guard: Callable[[Operation], object],
    on_succeeded: Callable[[Operation], None] | None = None,
    holds: Holds | None = None,
) -> Response[OperationEnvelope]:
    """Claim, guard, send and settle (`execute_write`), then answer (docs/contract.md, Status codes)."""
    settings = get_settings()
    result = execute_write(
        request,
        store=operation_store(settings.table_name),
        sender=client,
        budget=Budget(
            app.lambda_context.get_remaining_time_in_millis,
            settings.sync_budget_seconds,
            settings.upstream_timeout_seconds,
            settle_reserve=worst_case_call_seconds(settings),
        ),
        guard=guard,
        on_succeeded=on_succeeded,
        # A transient outcome settles `pending` with nextAttemptAt; one due soon is handed to the queue.
        retry_planner=PolicyPlanner.from_settings(),
        hand_off=QueueHandOff(retry_queue(settings.queue_url), WORKER_TIMEOUT_SECONDS),
        publisher=event_publisher(settings),
        holds=holds,
    )
    location = operation_location(app.current_event.raw_event, _operation_id(result))
    status, headers, body = answer(result, location=location, type_base=settings.problem_type_base)
    return Response(status, "application/json", OperationEnvelope.model_validate(body), headers)


def _operation_id(result: WriteResult) -> str:
    return result.op.operation_id if isinstance(result, Answered | StateUnknown) else ""


def _seconds(value: float) -> str:
    return str(max(math.ceil(value), 1))


def answer(
    result: WriteResult, *, location: str, type_base: str
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, envelope) for a `succeeded` (201 + Location) or `pending` (202 + Location)
    operation; raises the problem to answer otherwise — with the envelope as `operation` whenever an
    operation may exist, so an answer without one always means nothing was recorded under the key."""
    if isinstance(result, Refused):
        raise result.problem
    if isinstance(result, NotSent):
        raise Problem(
            503,
            "service-unavailable",
            "Service unavailable",
            "A service this API depends on did not answer; nothing was sent. Retry with the same "
            "Idempotency-Key and body.",
            headers={"Retry-After": _seconds(result.retry_after)},
        )
    if isinstance(result, StateUnknown):
        raise Problem(
            503,
            "operation-state-unknown",
            "Operation state unknown",
            "The state of this write could not be confirmed. Retry with the same Idempotency-Key and body "
            "after Retry-After; never with a new key.",
            operation=envelope(result.op, type_base),
            headers={"Retry-After": _seconds(result.retry_after)},
        )
    op = result.op
    body = envelope(op, type_base)
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    if op.status == "succeeded":
        return 201, {**headers, "Location": location}, body
    if op.status == "pending":
        retry_after = str(retry_after_seconds(op, time.time()))
        return 202, {**headers, "Location": location, "Retry-After": retry_after}, body
    raise _ended_problem(op, body, headers)


def _ended_problem(op: Operation, body: dict[str, Any], headers: dict[str, str]) -> Problem:
    """The problem a `failed` or `needs_review` operation answers with, carrying the envelope."""
    error = dict(op.error or UNAVAILABLE.to_error())
    if op.status == "needs_review":
        error = {**error, "status": 502, "type": "upstream-outcome-unknown"}
    upstream = error.get("upstream")
    return Problem(
        int(error.get("status", 502)),
        str(error.get("type", "upstream-outcome-unknown")),
        str(error.get("title", "Upstream error")),
        str(error.get("detail", "")),
        upstream=upstream if isinstance(upstream, dict) and "statusCode" in upstream else None,
        operation=body,
        headers=headers,
    )


def retry_after_seconds(op: Operation, now: float) -> int:
    """Whole seconds until a pending operation is next due (its next attempt, else its lease's end)."""
    due = op.next_attempt_at if op.next_attempt_at is not None else op.lease_until
    return max(1, math.ceil(due - now)) if due is not None else 1
