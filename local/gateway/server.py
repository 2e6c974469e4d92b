"""The local API: a threading HTTP/1.1 server (keep-alive) in front of each function's worker pool.

For every request it matches a route declared in the template, builds the REST (v1) proxy event
(`local.gateway.events`), invokes the function's unchanged `lambda_handler` in one of that function's
worker processes and turns the proxy response back into HTTP. Like API Gateway: an unknown route is 403
"Missing Authentication Token", a handler that raises or times out is 502 "Internal server error", and a
function still running at 29 s is 504. `GET /openapi.json` is the merged OpenAPI document of every API
function's resolver.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.gateway.events import (
    CALLER_HEADER,
    HttpAnswer,
    Route,
    build_rest_event,
    compile_route,
    gateway_error,
    match_route,
    sort_routes,
    translate_response,
)
from local.gateway.workers import FunctionPool

API_GATEWAY_TIMEOUT_SECONDS = 29.0
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
_CALLER_HEADER_LOWER = CALLER_HEADER.lower()


@dataclass
class Gateway:
    """Routing, event building and invocation; independent of the HTTP server so it can be tested."""

    pools: dict[str, FunctionPool]  # logical id -> pool
    routes: list[Route]
    stage: str
    caller_arn: str
    openapi: dict[str, Any] | None = None
    openapi_error: str | None = None
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    access_log: bool = True

    def build_openapi(self, base_url: str) -> None:
        """Ask each API function's resolver for its document (one warm worker each) and merge them."""
        api_functions = sorted({route.function for route in self.routes})
        with ThreadPoolExecutor(max_workers=max(1, len(api_functions))) as executor:
            futures = {name: executor.submit(self.pools[name].openapi) for name in api_functions}
        documents: list[dict[str, Any]] = []
        errors: list[str] = []
        for future in futures.values():
            try:
                document = future.result()
            except Exception as exc:
                errors.append(str(exc))
                continue
            if document is not None:
                documents.append(document)
        if errors:
            self.openapi_error = "\n".join(errors)
            self.log("openapi.json unavailable: a function failed to load:\n" + self.openapi_error)
            return
        self.openapi = merge_openapi(documents, base_url)

    def handle(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        client_ip: str,
    ) -> HttpAnswer:
        request_id = str(uuid.uuid4())
        request_path, _, raw_query = target.partition("?")
        path = request_path
        stage_prefix = f"/{self.stage}/"
        if request_path.startswith(stage_prefix):
            path = request_path[len(stage_prefix) - 1 :]  # the stage is part of the URL, not of the route

        if method in ("GET", "HEAD") and path == "/openapi.json":
            return self._openapi_answer(request_id)

        caller_arn = self.caller_arn
        forwarded: list[tuple[str, str]] = []
        for name, value in headers:
            if name.lower() == _CALLER_HEADER_LOWER:
                caller_arn = value.strip()
            else:
                forwarded.append((name, value))
        if not caller_arn.startswith("arn:"):
            return gateway_error(403, "The security token included in the request is invalid.", request_id)

        found = match_route(self.routes, method, path)
        if found is None:
            return gateway_error(403, "Missing Authentication Token", request_id)
        route, raw_params = found
        if len(body) > MAX_BODY_BYTES:
            return gateway_error(413, "Request Too Long", request_id)

        event = build_rest_event(
            route=route,
            method=method,
            path=path,
            request_path=request_path,
            raw_path_parameters=raw_params,
            raw_query=raw_query,
            headers=_with_forwarding(forwarded, client_ip),
            body=body,
            stage=self.stage,
            caller_arn=caller_arn,
            source_ip=client_ip,
            request_id=request_id,
        )
        pool = self.pools[route.function]
        outcome = pool.invoke(event, request_id=request_id)
        if outcome.error is not None:
            error = outcome.error
            self.log(
                f"{route.function} {request_id}: {error.get('errorType')}: {error.get('errorMessage')}\n"
                + "".join(error.get("stackTrace") or [])
            )
            if outcome.duration_ms >= API_GATEWAY_TIMEOUT_SECONDS * 1000:
                return gateway_error(504, "Endpoint request timed out", request_id)
            return gateway_error(502, "Internal server error", request_id)
        return translate_response(outcome.result, request_id)

    def _openapi_answer(self, request_id: str) -> HttpAnswer:
        if self.openapi is None:
            message = "not ready" if self.openapi_error is None else "a function failed to load"
            return gateway_error(503, f"openapi.json {message}", request_id)
        return HttpAnswer(
            200,
            [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)],
            json.dumps(self.openapi).encode(),
        )


def _with_forwarding(headers: list[tuple[str, str]], client_ip: str) -> list[tuple[str, str]]:
    """API Gateway adds these in front of the integration."""
    present = {name.lower() for name, _ in headers}
    added = list(headers)
    if "x-forwarded-for" not in present:
        added.append(("X-Forwarded-For", client_ip))
    if "x-forwarded-proto" not in present:
        added.append(("X-Forwarded-Proto", "http"))
    if "x-amzn-trace-id" not in present:
        added.append(("X-Amzn-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"))
    return added


def merge_openapi(documents: list[dict[str, Any]], base_url: str) -> dict[str, Any]:
    """One document from each function's: paths and component schemas united, tags in first-seen order."""
    merged: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Bill Pay Sync API", "version": "1.0.0"},
        "servers": [{"url": base_url}],
        "paths": {},
        "components": {},
    }
    tags: dict[str, Any] = {}
    for document in documents:
        merged["openapi"] = document.get("openapi", merged["openapi"])
        merged["info"] = document.get("info", merged["info"])
        for path, operations in (document.get("paths") or {}).items():
            merged["paths"].setdefault(path, {}).update(operations)
        for section, entries in (document.get("components") or {}).items():
            merged["components"].setdefault(section, {}).update(entries)
        for tag in document.get("tags") or []:
            tags.setdefault(tag["name"], tag)
    if tags:
        merged["tags"] = list(tags.values())
    merged["paths"] = dict(sorted(merged["paths"].items()))
    _declare_contract(merged, base_url)
    return merged


# A deployed stage's base URL (the stack's ApiUrl output); SigV4 as API Gateway's AWS_IAM auth expects it.
DEPLOYED_SERVER: dict[str, Any] = {
    "url": "https://{apiId}.execute-api.{region}.amazonaws.com/{stage}",
    "description": "A deployed stack (its ApiUrl output); every request SigV4-signed for execute-api",
    "variables": {
        "apiId": {"default": "abcdef1234", "description": "the stack's ApiId output"},
        "region": {"default": "eu-west-2"},
        "stage": {"default": "v1"},
    },
}
SIGV4_SCHEME: dict[str, Any] = {
    "type": "apiKey",
    "name": "Authorization",
    "in": "header",
    "description": (
        "AWS Signature Version 4 for the service `execute-api`, signed by the calling app's IAM role or "
        "user. The principal must be registered as a client (403 caller-unknown otherwise); its client's "
        "permissions and companies decide the rest (403 forbidden, 404 not-found)."
    ),
    "x-amazon-apigateway-authtype": "awsSigv4",
}
_HEADERS: dict[str, Any] = {
    "X-Request-Id": {"description": "The request's id (as in the access log): quote it when asking.",
                     "schema": {"type": "string"}},
    "Location": {"description": "The operation: GET it to follow the write.", "schema": {"type": "string"}},
    "Retry-After": {"description": "Seconds until the operation's next attempt is due.",
                    "schema": {"type": "integer", "minimum": 1}},
    "Idempotent-Replayed": {"description": "`true` when the answer is a replay of an earlier request "
                            "with this Idempotency-Key (nothing was sent again).",
                            "schema": {"type": "string", "enum": ["true"]}},
}  # fmt: skip


def _declare_contract(document: dict[str, Any], base_url: str) -> None:
    """What the functions do but cannot declare through Powertools: SigV4, the deployed server, the
    required Idempotency-Key (a missing one is our own 400 `idempotency-key-missing`), and the headers."""
    document["servers"] = [{"url": base_url, "description": "The local stack (make run)"}, DEPLOYED_SERVER]
    document.setdefault("components", {}).setdefault("securitySchemes", {})["sigv4"] = SIGV4_SCHEME
    document["security"] = [{"sigv4": []}]
    for operations in document["paths"].values():
        for method, operation in operations.items():
            for parameter in operation.get("parameters") or []:
                if parameter.get("in") == "header" and parameter.get("name") == "Idempotency-Key":
                    parameter["required"] = True
                    parameter["schema"] = {"type": "string", "minLength": 1, "maxLength": 255}
            for status, response in (operation.get("responses") or {}).items():
                names = ["X-Request-Id"]
                if method == "post" and status in ("201", "202"):
                    names += ["Location", "Idempotent-Replayed"] + (
                        ["Retry-After"] if status == "202" else []
                    )
                if status in ("409", "503"):
                    names.append("Retry-After")
                response["headers"] = {name: _HEADERS[name] for name in names}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: GatewayServer
    timeout = 300  # an idle keep-alive connection's thread ends after this

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write; without this, Nagle + delayed ACKs add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        started = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        answer = self.server.gateway.handle(
            self.command, self.path, list(self.headers.items()), body, self.client_address[0]
        )
        head = [f"HTTP/1.1 {answer.status} {_reason(answer.status)}"]
        head += [f"{name}: {value}" for name, value in answer.headers]
        head.append(f"Content-Length: {len(answer.body)}")
        if self.close_connection:
            head.append("Connection: close")
        payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if self.command != "HEAD":
            payload += answer.body
        self.wfile.write(payload)
        if self.server.gateway.access_log:
            elapsed = (time.perf_counter() - started) * 1000
            self.server.gateway.log(f"{self.command} {self.path} -> {answer.status} ({elapsed:.1f} ms)")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access line is written by _serve, once, with the answer's status


def _reason(status: int) -> str:
    from http import HTTPStatus  # noqa: PLC0415 - cached after the first call

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        super().__init__(address, _Handler)


@dataclass
class GatewayHandle:
    server: GatewayServer
    gateway: Gateway
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = self.server.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for pool in self.gateway.pools.values():
            pool.close()


def routes_of(functions: dict[str, list[tuple[str, str]]]) -> list[Route]:
    """functions: logical id -> [(path, method)] of its Api events."""
    return sort_routes(
        compile_route(path, method, logical_id)
        for logical_id, declared in functions.items()
        for path, method in declared
    )


def start_gateway(gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> GatewayHandle:
    """Bind, build the OpenAPI document (warming one worker per API function), then serve in a thread."""
    server = GatewayServer((host, port), gateway)
    # A short poll interval: shutdown() waits for the serving loop to notice.
    serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    handle = GatewayHandle(server, gateway, serve)
    handle.thread.name = "gateway"
    handle.thread.start()
    gateway.build_openapi(handle.url)
    return handle
