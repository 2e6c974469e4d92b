"""The one resolver every API function uses, and the RFC 9457 problem mapping.

`build_resolver()` gives an `APIGatewayRestResolver` with validation on whose errors all answer
`application/problem+json`:

- a body over `REQUEST_BODY_LIMIT_BYTES` → 413 `payload-too-large`, before anything reads it;
- `Problem` → its own status and members;
- `RequestValidationError` (body, path, query), or a body of an unsupported content type → 400
  `validation-error` with an `errors` list (an integer with more digits than Python converts included);
- an unknown route (`NotFoundError`) → 404 `not-found`;
- Powertools' `ServiceError`s → their status, as a problem;
- our own dependency unavailable past the SDK's retries (DynamoDB, SQS, SSM, Secrets Manager: throttled,
  5xx, unreachable, timed out), or the Codat key unobtainable → 503 `service-unavailable` + Retry-After;
- anything else → 500 `internal-error`, logged with its traceback and counted (metric `UnexpectedError`:
  Lambda's Errors metric never sees an exception answered here), nothing of it in the answer.

Routes declare their answers with `route_responses(...)` so the OpenAPI document lists every problem
as `application/problem+json`; the resolver also removes Powertools' default 422 `HTTPValidationError`
(it never happens here: validation failures are 400 problems).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ValidationException,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, Field

from billpay.adapters.aws_sdk import DEPENDENCY_RETRY_AFTER_SECONDS, is_dependency_unavailable
from billpay.adapters.secrets import SecretUnavailableError
from billpay.config import get_settings
from billpay.observability import DEPENDENCY_UNAVAILABLE_METRIC, UNEXPECTED_ERROR_METRIC, logger, metrics
from billpay.problems import Problem, service_unavailable

PROBLEM_CONTENT_TYPE = "application/problem+json"
API_VERSION = "1.0.0"

# No request of this API needs more; a larger body is refused before it is decoded or parsed.
REQUEST_BODY_LIMIT_BYTES = 64 * 1024

# Titles for statuses a route may declare; the detail of each answer says what happened.
PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request (`validation-error`, `idempotency-key-missing`)",
    403: "The caller is not a registered client (`caller-unknown`) or its client lacks the permission "
    "(`forbidden`)",
    404: "Unknown company, connection or resource (`not-found`)",
    409: "The same Idempotency-Key is being processed (`request-in-progress`); see Retry-After",
    413: f"The request body is larger than {REQUEST_BODY_LIMIT_BYTES // 1024} KB (`payload-too-large`)",
    422: "Refused by a rule or by Codat (`idempotency-key-reused`, guards, `upstream-rejected`)",
    500: "Unexpected error (`internal-error`)",
    502: "Codat refused us, failed, or the outcome is unknown (`upstream-rejected`, `upstream-unavailable`, "
    "`upstream-outcome-unknown`)",
    503: "Codat rate-limited us, the time budget ran out, or a service of ours is unavailable "
    "(`upstream-rate-limited`, `upstream-unavailable`, `service-unavailable`); see Retry-After",
    504: "Codat did not answer in time (`upstream-unavailable`)",
}

READ_PROBLEMS: tuple[int, ...] = (400, 403, 404, 500, 502, 503, 504)
WRITE_PROBLEMS: tuple[int, ...] = (400, 403, 404, 409, 413, 422, 500, 502, 503, 504)

_POWERTOOLS_422_SCHEMA = "#/components/schemas/HTTPValidationError"


class ProblemError(BaseModel):
    """One entry of `errors`: where the bad input is and what is wrong with it."""

    location: str = Field(description="`body`, `path`, `query` or `header`")
    field: str = Field(description="dotted path of the field inside that location")
    message: str
    type: str = Field(description="machine-readable reason, e.g. `missing`, `string_pattern_mismatch`")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str = Field(description="URI ending in /problems/<name>")
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None
    upstream: dict[str, Any] | None = Field(
        default=None, description="Codat's statusCode, error, correlationId"
    )
    operation: dict[str, Any] | None = Field(default=None, description="the operation envelope, for writes")


def route_responses(
    success_status: int = 200,
    success_description: str = "Success",
    problems: Iterable[int] = READ_PROBLEMS,
    *,
    extra: Mapping[int, OpenAPIResponse] | None = None,
) -> dict[int, OpenAPIResponse]:
    """`responses=` for a route: its success answer (schema from the return annotation) and each
    problem status as `application/problem+json`. `extra` adds or overrides entries (e.g. a 202)."""
    responses: dict[int, OpenAPIResponse] = {success_status: {"description": success_description}}
    for status in problems:
        responses[status] = {
            "description": PROBLEM_DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_CONTENT_TYPE: {"model": ProblemDetails}},
        }
    if extra:
        responses.update(extra)
    return responses


def problem_response(problem: Problem) -> Response[str]:
    body = problem.to_dict(get_settings().problem_type_base)
    return Response(
        status_code=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=dumps(body),
        headers=dict(problem.headers),
    )


def validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Powertools/pydantic error dicts → our `errors` entries. Never echoes the input (it may hold
    account numbers)."""
    out: list[dict[str, str]] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        location = loc[0] if loc else "body"
        out.append(
            {
                "location": location,
                "field": ".".join(loc[1:]),
                "message": str(error.get("msg", "invalid")),
                "type": str(error.get("type", "value_error")),
            }
        )
    return out


REQUEST_ID_HEADER = "X-Request-Id"


class BillPayResolver(APIGatewayRestResolver):
    """Powertools' REST resolver whose OpenAPI document shows our problem answers, not its 422; which
    refuses an oversized body before any route, middleware or validator reads it; and whose every answer —
    success, problem, unknown route — carries the request id (API Gateway's, as in its access log), so a
    client can quote it."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        answer: dict[str, Any] = super().resolve(event, context)
        request_id = str(((event or {}).get("requestContext") or {}).get("requestId") or "")
        if request_id:
            if isinstance(answer.get("multiValueHeaders"), dict):
                answer["multiValueHeaders"][REQUEST_ID_HEADER] = [request_id]
            else:
                answer.setdefault("headers", {})[REQUEST_ID_HEADER] = request_id
        return answer

    def _resolve(self) -> ResponseBuilder[Any]:
        # Powertools' first step after it wrapped the event (tests/unit/test_http_bodies.py pins it): the
        # body is measured here, before its base64 decoding and JSON parsing, whatever its content type.
        size = request_body_bytes(self.current_event.raw_event)
        if size > REQUEST_BODY_LIMIT_BYTES:
            logger.info("request body too large", extra={"problem": "payload-too-large", "bytes": size})
            problem = Problem(
                413,
                "payload-too-large",
                "Payload too large",
                f"The request body is {size} bytes; at most {REQUEST_BODY_LIMIT_BYTES} are accepted.",
            )
            return ResponseBuilder(problem_response(problem), serializer=self._serializer)
        return super()._resolve()

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        schema = super().get_openapi_schema(**kwargs)
        for item in (schema.paths or {}).values():
            for method in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
                operation = getattr(item, method, None)
                if operation is None or not operation.responses:
                    continue
                for code in list(operation.responses):
                    if _only_refers_to(operation.responses[code], _POWERTOOLS_422_SCHEMA):
                        del operation.responses[code]
        schemas = schema.components.schemas if schema.components else None
        if schemas is not None:
            # Powertools always adds its validation-error schemas; drop the ones nothing refers to any more
            # (ResponseValidationError first: it is what refers to ValidationError).
            for name in ("ResponseValidationError", "HTTPValidationError", "ValidationError"):
                others = {key: value for key, value in schemas.items() if key != name}
                used = json.dumps(
                    [_as_dict(item) for item in (schema.paths or {}).values()]
                    + [_as_dict(v) for v in others.values()],
                    default=str,
                )
                if f"#/components/schemas/{name}" not in used:
                    schemas.pop(name, None)
        return schema


def request_body_bytes(event: Mapping[str, Any]) -> int:
    """The size of the request body as the client sent it, in bytes, without decoding it."""
    body = event.get("body")
    if not isinstance(body, str) or not body:
        return 0
    if event.get("isBase64Encoded"):
        # 4 characters carry 3 bytes, less one per "=" of padding.
        text = body.rstrip()
        return len(text) * 3 // 4 - (len(text) - len(text.rstrip("=")))
    if body.isascii():
        return len(body)
    return len(body.encode("utf-8", errors="surrogatepass"))


def _exact_int(digits: str) -> int | Decimal:
    # Python refuses to convert an integer of more than `sys.get_int_max_str_digits()` digits (ValueError);
    # as a Decimal it reaches the validators, whose bounds refuse it with a field-level 400.
    try:
        return int(digits)
    except ValueError:
        return Decimal(digits)


def _loads_exact(body: str) -> Any:
    """Parse a request body with every JSON number that has a fraction or exponent as a Decimal.

    A binary float would round an amount such as 10.0000000000000001 to 10.0 before any validator saw
    it, so a payment could be recorded for a different amount than the client wrote.
    """
    try:
        return json.loads(body, parse_float=Decimal, parse_int=_exact_int)
    except RecursionError as exc:
        # Nesting deeper than the interpreter's stack is bad input like any other broken JSON: the
        # validation middleware answers a JSONDecodeError with 400, never a 500.
        raise json.JSONDecodeError("JSON nested too deeply", body, 0) from exc


def build_resolver() -> BillPayResolver:
    """The resolver of every API function (one per Lambda; routes register on it)."""
    app = BillPayResolver(enable_validation=True, serializer=dumps, json_body_deserializer=_loads_exact)
    app.configure_openapi(title="Bill Pay Sync API", version=API_VERSION)
    # Looked up along the exception's MRO, so the specific handlers win over the catch-all.
    app.exception_handler(Problem)(_on_problem)
    app.exception_handler(RequestValidationError)(_on_invalid_request)
    # A body of another content type than JSON, or not UTF-8, is bad input, never a 500 (found by the
    # fuzzer): Powertools raises RequestUnsupportedContentType for most types, a bare ValueError for a
    # multipart body it cannot split, and UnicodeDecodeError (a ValueError) for bytes that are not UTF-8.
    app.exception_handler(RequestUnsupportedContentType)(_on_invalid_request)
    app.exception_handler(ValueError)(lambda exc: _on_value_error(app, exc))
    app.exception_handler(NotFoundError)(_on_unknown_route)
    app.exception_handler(ServiceError)(_on_service_error)
    app.exception_handler(Exception)(_on_unexpected)
    return app


def _on_problem(problem: Problem) -> Response[str]:
    log = logger.warning if problem.status >= 500 else logger.info
    log("answered with a problem", extra={"problem": problem.type, "status": problem.status})
    return problem_response(problem)


def _on_invalid_request(exc: ValidationException) -> Response[str]:
    errors = validation_errors(exc.errors())
    logger.info(
        "invalid request", extra={"problem": "validation-error", "fields": [e["field"] for e in errors]}
    )
    return problem_response(
        Problem(
            400, "validation-error", "Invalid request", "The request does not match the API.", errors=errors
        )
    )


def _on_value_error(app: APIGatewayRestResolver, exc: ValueError) -> Response[str]:
    if isinstance(exc, UnicodeDecodeError):
        # Only a body that is not UTF-8 gets here (Powertools decodes it before parsing the JSON).
        return _on_invalid_request(
            RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "The body is not UTF-8 encoded JSON"}]
            )
        )
    content_type = str(app.current_event.headers.get("content-type") or "").strip()
    if content_type and not content_type.lower().startswith("application/json"):
        # Only the body parser sees a non-JSON body: a request that passed validation was JSON.
        return _on_invalid_request(
            RequestUnsupportedContentType(
                "Unsupported content type",
                errors=[
                    {
                        "type": "unsupported_content_type",
                        "loc": ("body",),
                        "msg": f"The body must be application/json, not {content_type.split(';')[0]}",
                    }
                ],
            )
        )
    return _on_unexpected(exc)


def _on_unknown_route(exc: NotFoundError) -> Response[str]:
    return problem_response(Problem(404, "not-found", "Not found", "No such resource."))


def _on_service_error(exc: ServiceError) -> Response[str]:
    status = exc.status_code
    name = "validation-error" if status == 400 else "not-found" if status == 404 else "request-error"
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return problem_response(Problem(status, name, title, str(exc.msg)))


def _on_unexpected(exc: Exception) -> Response[str]:
    if isinstance(exc, SecretUnavailableError) or is_dependency_unavailable(exc):
        # Not a bug of ours and not the client's: a service we depend on failed past the SDK's retries.
        logger.warning("a dependency is unavailable", exc_info=exc, extra={"problem": "service-unavailable"})
        metrics.add_metric(name=DEPENDENCY_UNAVAILABLE_METRIC, unit=MetricUnit.Count, value=1)
        return problem_response(service_unavailable(DEPENDENCY_RETRY_AFTER_SECONDS))
    logger.exception("unexpected error")
    # Counted here because Lambda's Errors metric never sees it: the answer is a 500, not a crash.
    metrics.add_metric(name=UNEXPECTED_ERROR_METRIC, unit=MetricUnit.Count, value=1)
    return problem_response(
        Problem(500, "internal-error", "Internal error", "The request could not be completed; it was logged.")
    )


# ------------------------------------------------------------------------------------ base path, Location


def request_base_path(event: Mapping[str, Any]) -> str:
    """The base of the request as the client called it: the leading segments of `requestContext.path`
    that are not the resource's own (the stage, or a custom domain's base path). "" when there are none.

    The resource's own segments are counted from `resource` (the route template), since its path
    parameters cannot contain "/".
    """
    resource = str(event.get("resource") or event.get("path") or "/")
    own = [s for s in resource.split("/") if s]
    context = event.get("requestContext") or {}
    called = str(context.get("path") or event.get("path") or "/")
    segments = [s for s in called.split("/") if s]
    base = segments[: max(0, len(segments) - len(own))]
    return "/" + "/".join(base) if base else ""


def operation_location(event: Mapping[str, Any], operation_id: str) -> str:
    """`Location` of an operation: the request's base + `/operations/{id}` (docs/contract.md, API)."""
    return f"{request_base_path(event)}/operations/{quote(operation_id, safe='')}"


# ------------------------------------------------------------------------------------------- JSON


def json_ready(value: Any) -> Any:
    """`value` with every Decimal turned into a JSON number (int when integral) and models into dicts.

    Use it on what a route returns when that holds Decimals: with validation on, Powertools serializes
    the return value in pydantic's JSON mode, which writes a bare Decimal as a *string*."""
    if isinstance(value, Decimal):
        return _decimal_number(value)
    if isinstance(value, BaseModel):
        return json_ready(value.model_dump(by_alias=True))
    if isinstance(value, Mapping):
        return {key: json_ready(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(inner) for inner in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON; Decimals as numbers (int when integral), pydantic models by alias."""
    return json.dumps(value, separators=(",", ":"), default=_default, ensure_ascii=False)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _decimal_number(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python", by_alias=True, exclude_none=False)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _decimal_number(value: Decimal) -> int | float:
    if not value.is_finite():
        raise ValueError("non-finite decimal")
    exponent = value.as_tuple().exponent
    return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)


def _only_refers_to(response: Any, ref: str) -> bool:
    content = _as_dict(response).get("content") or {}
    return bool(content) and all(ref in json.dumps(media, default=str) for media in content.values())


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True)
    return dict(value) if isinstance(value, Mapping) else {}


__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "READ_PROBLEMS",
    "REQUEST_BODY_LIMIT_BYTES",
    "WRITE_PROBLEMS",
    "BillPayResolver",
    "ProblemDetails",
    "ProblemError",
    "build_resolver",
    "dumps",
    "json_ready",
    "operation_location",
    "problem_response",
    "request_base_path",
    "request_body_bytes",
    "route_responses",
    "validation_errors",
]
