"""API Gateway REST (v1) proxy events and responses, built the way API Gateway builds them.

Pure functions (no I/O) so the event's shape is unit-tested on its own: `resource` is the template's path
with `{param}`s, `path` the request's path below the stage (still percent-encoded, as REST APIs deliver
it), `pathParameters` and the query string decoded, `headers`/`queryStringParameters` holding the last
value of a repeated name and the `multiValue*` twins all of them, and a `requestContext` whose `identity`
is what an `AWS_IAM` authorizer puts there for the signing principal.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

DEFAULT_CALLER_ARN = "arn:aws:sts::000000000000:assumed-role/billpay-local-client/local-session"
CALLER_HEADER = "X-Local-Caller-Arn"
LOCAL_API_ID = "local"


@dataclass(frozen=True)
class Route:
    resource: str  # the template's path, e.g. /companies/{companyId}/...
    method: str  # upper case, or ANY
    function: str  # logical id of the function serving it
    pattern: re.Pattern[str]
    rank: tuple[int, ...]  # orders literal segments before {param} before {proxy+}, as API Gateway does


def compile_route(resource: str, method: str, function: str) -> Route:
    parts = [segment for segment in resource.split("/") if segment]
    regex = ""
    rank: list[int] = []
    for segment in parts:
        greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
        param = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy:
            regex += rf"/(?P<{greedy.group(1)}>.+)"
            rank.append(2)
        elif param:
            regex += rf"/(?P<{param.group(1)}>[^/]+)"
            rank.append(1)
        else:
            regex += "/" + re.escape(segment)
            rank.append(0)
    return Route(resource, method.upper(), function, re.compile((regex or "/") + "/?$"), tuple(rank))


def sort_routes(routes: Iterable[Route]) -> list[Route]:
    return sorted(routes, key=lambda route: (route.rank, route.method == "ANY"))


def match_route(routes: Sequence[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a request path below the stage, with its raw (still encoded) path parameters."""
    for route in routes:
        found = route.pattern.match(path)
        if found and route.method in (method, "ANY"):
            return route, found.groupdict()
    return None


def _fake_id(prefix: str, seed: str, length: int = 17) -> str:
    digest = base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode()
    return prefix + digest[:length]


def identity_from_arn(caller_arn: str, source_ip: str, user_agent: str | None) -> dict[str, Any]:
    """requestContext.identity as API Gateway's AWS_IAM authorizer fills it for a SigV4 caller.

    An assumed role's `caller`/`user` is `<role id>:<session name>`, an IAM user's is its user id, the
    account root's is the account id; role and user ids are stable fakes derived from the ARN.
    """
    parts = caller_arn.split(":", 5)
    account_id = parts[4] if len(parts) == 6 else None
    resource = parts[5] if len(parts) == 6 else ""
    caller: str | None = caller_arn
    access_key = _fake_id("AKIA", caller_arn, 16)
    if resource.startswith("assumed-role/"):
        _, role, *session = resource.split("/")
        role_id = _fake_id("AROA", f"{account_id}:{role}")
        caller = f"{role_id}:{'/'.join(session)}"
        access_key = _fake_id("ASIA", caller_arn, 16)
    elif resource.startswith("user/"):
        caller = _fake_id("AIDA", caller_arn)
    elif resource == "root":
        caller = account_id
    return {
        "cognitoIdentityPoolId": None,
        "cognitoIdentityId": None,
        "apiKey": None,
        "apiKeyId": None,
        "principalOrgId": None,
        "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None,
        "clientCert": None,
        "vpceId": None,
        "accountId": account_id,
        "caller": caller,
        "accessKey": access_key,
        "sourceIp": source_ip,
        "user": caller,
        "userArn": caller_arn,
        "userAgent": user_agent,
    }


def _multi(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]]] | tuple[None, None]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # API Gateway keeps the last value of a repeated name
        multi.setdefault(name, []).append(value)
    if not multi:
        return None, None
    return single, multi


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Decoded name/value pairs in order. REST APIs decode %XX but leave `+` as it is (not a space)."""
    pairs: list[tuple[str, str]] = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def _request_time(epoch: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))


def build_rest_event(
    *,
    route: Route,
    method: str,
    path: str,
    request_path: str,
    raw_path_parameters: dict[str, str],
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    stage: str,
    caller_arn: str,
    source_ip: str,
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy integration event.

    `path` is the request path below the stage (what the resource matched), `request_path` the path the
    client called (requestContext.path: with the stage or a custom domain's base path, if any).
    `headers` are the client's (repeats allowed), minus anything local-only.
    """
    epoch = time.time() if now is None else now
    request_id = request_id or str(uuid.uuid4())
    single_headers, multi_headers = _multi(headers)
    single_query, multi_query = _multi(parse_query(raw_query))
    user_agent = next((value for name, value in headers if name.lower() == "user-agent"), None)
    host = next((value for name, value in headers if name.lower() == "host"), "127.0.0.1")
    text_body: str | None
    encoded = False
    if not body:
        text_body = None
    else:
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            text_body, encoded = base64.b64encode(body).decode("ascii"), True
    path_parameters = {name: unquote(value) for name, value in raw_path_parameters.items()} or None
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": hashlib.sha1(route.resource.encode(), usedforsecurity=False).hexdigest()[:6],
            "resourcePath": route.resource,
            "httpMethod": method,
            "extendedRequestId": base64.b32encode(uuid.UUID(request_id).bytes).decode()[:16]
            if _is_uuid(request_id)
            else request_id,
            "requestTime": _request_time(epoch),
            "path": request_path,
            "accountId": "000000000000",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "requestTimeEpoch": int(epoch * 1000),
            "requestId": request_id,
            "identity": identity_from_arn(caller_arn, source_ip, user_agent),
            "domainName": host,
            "apiId": LOCAL_API_ID,
        },
        "body": text_body,
        "isBase64Encoded": encoded,
    }


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def gateway_error(status: int, message: str, request_id: str) -> HttpAnswer:
    """API Gateway's own answers (its JSON `{"message": ...}`), not a handler's."""
    return HttpAnswer(
        status,
        [
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", _ERROR_TYPES.get(status, "InternalServerErrorException")),
        ],
        ('{"message":"' + message + '"}').encode(),
    )


_ERROR_TYPES = {
    403: "MissingAuthenticationTokenException",
    413: "RequestTooLargeException",
    502: "InternalServerErrorException",
    504: "InternalServerErrorException",
}


def translate_response(result: Any, request_id: str) -> HttpAnswer:
    """The handler's proxy response as HTTP; a malformed one is API Gateway's 502."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return gateway_error(502, "Internal server error", request_id)
    merged: dict[str, list[tuple[str, str]]] = {}
    for name, value in (result.get("headers") or {}).items():
        merged[name.lower()] = [(name, str(value))]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        merged[name.lower()] = [(name, str(value)) for value in values]
    headers = [pair for pairs in merged.values() for pair in pairs]
    if "content-type" not in merged:
        headers.append(("Content-Type", "application/json"))
    headers.append(("x-amzn-RequestId", request_id))
    headers.append(("Date", formatdate(usegmt=True)))
    body = result.get("body") or ""
    try:
        payload = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    except ValueError:
        return gateway_error(502, "Internal server error", request_id)
    return HttpAnswer(int(result["statusCode"]), headers, payload)
