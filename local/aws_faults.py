"""Fault injection for the local AWS: a small proxy between the functions and moto.

The functions' `AWS_ENDPOINT_URL` is this proxy (the emulator's public port, BILLPAY_EMULATOR_PORT); moto
listens on an internal port. Requests pass through unchanged unless a fault armed with
`POST /_emulator/faults` matches them, so the code under test is the code that runs in the cloud. The
supervisor's own traffic (creating resources, the SQS poller that plays Lambda's event source mapping) and
the tests' inspection clients talk to moto directly (`emulator_direct_url` in the stack's ready document):
a fault never hits them.

Control endpoints (on the proxy's port, local only):
  POST   /_emulator/faults   arm one fault (body below); answers the armed fault with its id
  GET    /_emulator/faults   every fault armed since the last DELETE, with what each has fired
  DELETE /_emulator/faults   clear them all; requests held by a fault are let go at once

Body: {"service": "dynamodb"|"sqs"|"secretsmanager"|"ssm"|... (optional = any),
       "operation": "UpdateItem"|"PutItem"|"SendMessage"|... (optional = any),
       "match": "<substring of the request body>" (optional),
       "fault": KIND, or a list of kinds to pick from at random each time it fires,
       "status": 500|400|... (for "status"; absent: a 500 internal error or a 400 throttling error at random),
       "code": "ProvisionedThroughputExceededException"|... (absent: the service's own code for `status`),
       "times": K (default 1), "holdSeconds": H (for the holding kinds, default 30),
       "probability": P, "seed": N (probabilistic mode, below)}

Kinds:
  reset-before         the connection is reset; nothing is forwarded (the request was never applied)
  status               the error is answered in the service's own format; nothing is forwarded
  commit-then-timeout  forwarded (applied), then the answer is held until the client gives up (its read
                       timeout), `holdSeconds` pass, or the faults are cleared; then the connection is dropped
  commit-then-reset    forwarded (applied), then the connection is reset without an answer
  hold-before          held, not yet forwarded, until the faults are cleared or `holdSeconds` pass, then
                       forwarded as usual; a client that gave up meanwhile is not forwarded (for tests that
                       must keep a request in flight until they have seen its effect)

Counted faults fire on the next `times` matching requests, oldest armed first. A probabilistic fault
(`"probability": P`) fires on each matching request with probability P — drawn from its own generator seeded
with `seed` — with no limit unless `times` is given; counted faults are consulted before probabilistic ones.

The operation is read from `X-Amz-Target` (JSON protocols: `DynamoDB_20120810.UpdateItem`,
`AmazonSQS.SendMessage`, `secretsmanager.GetSecretValue`, `AmazonSSM.GetParameter`) or else from the
query protocol's `Action` parameter; the service from the target's prefix or the signature's credential
scope.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

CONTROL_PATH = "/_emulator/faults"
KINDS = ("reset-before", "status", "commit-then-timeout", "commit-then-reset", "hold-before")
DEFAULT_HOLD_SECONDS = 30.0
_POLL_SECONDS = 0.05

_TARGET_PREFIXES = {
    "DynamoDB_": "dynamodb",
    "DynamoDBStreams_": "dynamodbstreams",
    "AmazonSQS": "sqs",
    "secretsmanager": "secretsmanager",
    "AmazonSSM": "ssm",
    "AWSEvents": "events",
}
# What `__type` says in each JSON protocol's error body (botocore keeps what follows the `#`).
_ERROR_TYPE_PREFIX = {"dynamodb": "com.amazonaws.dynamodb.v20120810#", "sqs": "com.amazonaws.sqs#"}
_INTERNAL_CODE = {
    "dynamodb": "InternalServerError",
    "sqs": "InternalError",
    "secretsmanager": "InternalServiceError",
    "ssm": "InternalServerError",
}
_THROTTLING_CODE = {
    "dynamodb": "ProvisionedThroughputExceededException",
    "sqs": "RequestThrottled",
}
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
)


class FaultSpecError(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(error["detail"] for error in errors))
        self.errors = errors


@dataclass(frozen=True)
class RequestInfo:
    service: str | None
    operation: str | None
    body: bytes
    json_protocol: bool
    content_type: str


@dataclass
class AwsFault:
    id: int
    kinds: tuple[str, ...]
    service: str | None
    operation: str | None
    match: str | None
    status: int | None
    code: str | None
    times: int | None  # None: unlimited (probabilistic faults only)
    hold_seconds: float
    probability: float | None
    seed: int | None
    rng: random.Random
    fired: Counter[str] = field(default_factory=Counter)
    matched: int = 0
    holding: int = 0

    def matches(self, request: RequestInfo) -> bool:
        if self.service is not None and request.service != self.service:
            return False
        if self.operation is not None and request.operation != self.operation:
            return False
        return self.match is None or self.match.encode() in request.body

    @property
    def armed(self) -> bool:
        return self.times is None or self.times > 0

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "operation": self.operation,
            "match": self.match,
            "fault": self.kinds[0] if len(self.kinds) == 1 else list(self.kinds),
            "status": self.status,
            "code": self.code,
            "times": self.times,
            "holdSeconds": self.hold_seconds,
            "probability": self.probability,
            "seed": self.seed,
            "armed": self.armed,
            "matched": self.matched,
            "fired": dict(sorted(self.fired.items())),
            "firedTotal": sum(self.fired.values()),
            "holding": self.holding,
        }


@dataclass(frozen=True)
class Firing:
    """What one request gets: the kind, and for `status` the status and code."""

    fault: AwsFault
    kind: str
    status: int
    code: str


def parse_fault(spec: Any, fault_id: int) -> AwsFault:
    """A fault from its JSON body; FaultSpecError lists every problem at once."""
    if not isinstance(spec, dict):
        raise FaultSpecError([{"name": "body", "detail": "The body must be a JSON object."}])
    errors: list[dict[str, str]] = []

    def text(name: str) -> str | None:
        value = spec.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            errors.append({"name": name, "detail": f"'{name}' must be a non-empty string."})
            return None
        return value

    raw_kinds = spec.get("fault")
    kinds = tuple(raw_kinds) if isinstance(raw_kinds, list) else (raw_kinds,)
    if not kinds or any(kind not in KINDS for kind in kinds):
        errors.append({"name": "fault", "detail": f"'fault' must be one of {', '.join(KINDS)} (or a list)."})
    status = spec.get("status")
    if status is not None and (
        not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599
    ):
        errors.append({"name": "status", "detail": "'status' must be an HTTP error status (400-599)."})
        status = None
    probability = spec.get("probability")
    if probability is not None and (
        not isinstance(probability, (int, float))
        or isinstance(probability, bool)
        or not 0 <= probability <= 1
    ):
        errors.append({"name": "probability", "detail": "'probability' must be a number from 0 to 1."})
        probability = None
    times = spec.get("times", None if probability is not None else 1)
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
        errors.append({"name": "times", "detail": "'times' must be an integer >= 1."})
        times = 1
    hold = spec.get("holdSeconds", DEFAULT_HOLD_SECONDS)
    if not isinstance(hold, (int, float)) or isinstance(hold, bool) or hold < 0:
        errors.append({"name": "holdSeconds", "detail": "'holdSeconds' must be a number of seconds >= 0."})
        hold = DEFAULT_HOLD_SECONDS
    seed = spec.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        errors.append({"name": "seed", "detail": "'seed' must be an integer."})
        seed = None
    service, operation, match, code = text("service"), text("operation"), text("match"), text("code")
    if errors:
        raise FaultSpecError(errors)
    return AwsFault(
        id=fault_id,
        kinds=tuple(str(kind) for kind in kinds),
        service=service,
        operation=operation,
        match=match,
        status=status,
        code=code,
        times=times,
        hold_seconds=float(hold),
        probability=None if probability is None else float(probability),
        seed=seed,
        rng=random.Random(seed),
    )


class FaultBook:
    """The armed faults; every method is safe to call from the proxy's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[AwsFault] = []
        self._ids = itertools.count(1)
        self._released = threading.Event()  # replaced on every clear; holders watch the one they started with

    def arm(self, spec: Any) -> AwsFault:
        with self._lock:
            fault = parse_fault(spec, next(self._ids))
            self._faults.append(fault)
            return fault

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.describe() for fault in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults = []
            released, self._released = self._released, threading.Event()
        released.set()

    @property
    def release_event(self) -> threading.Event:
        with self._lock:
            return self._released

    def take(self, request: RequestInfo) -> Firing | None:
        with self._lock:
            if not self._faults:
                return None
            counted = [f for f in self._faults if f.probability is None and f.armed]
            chance = [f for f in self._faults if f.probability is not None and f.armed]
            for fault in counted + chance:
                if not fault.matches(request):
                    continue
                fault.matched += 1
                if fault.probability is not None and fault.rng.random() >= fault.probability:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                kind = fault.rng.choice(fault.kinds) if len(fault.kinds) > 1 else fault.kinds[0]
                status, code = self._error(fault, request)
                fault.fired[f"{kind}:{status}" if kind == "status" else kind] += 1
                return Firing(fault, kind, status, code)
            return None

    @staticmethod
    def _error(fault: AwsFault, request: RequestInfo) -> tuple[int, str]:
        service = request.service or ""
        status = fault.status
        if status is None:  # a mix: a server error or a throttle, both retried by the SDK
            status = fault.rng.choice((500, 400))
        if fault.code:
            return status, fault.code
        if status == 400:
            return status, _THROTTLING_CODE.get(service, "ThrottlingException")
        if status == 503:
            return status, "ServiceUnavailable"
        return status, _INTERNAL_CODE.get(service, "InternalFailure")

    def holding(self, fault: AwsFault, delta: int) -> None:
        with self._lock:
            fault.holding += delta


def describe_request(headers: Any, path: str, body: bytes) -> RequestInfo:
    """Service and operation of an AWS request, from its target header, or its signature and Action."""
    content_type = str(headers.get("Content-Type") or "")
    target = headers.get("X-Amz-Target")
    service: str | None = None
    operation: str | None = None
    if target:
        prefix, _, operation = str(target).rpartition(".")
        service = next((name for start, name in _TARGET_PREFIXES.items() if prefix.startswith(start)), None)
    if service is None:
        authorization = str(headers.get("Authorization") or "")
        _, _, credential = authorization.partition("Credential=")
        scope = credential.split(",", 1)[0].split("/")
        if len(scope) >= 5:
            service = scope[3]
    if operation is None or not target:
        form = parse_qs(urlsplit(path).query)
        if "x-www-form-urlencoded" in content_type:
            form.update(parse_qs(body.decode("utf-8", "replace")))
        actions = form.get("Action")
        operation = actions[0] if actions else None
    return RequestInfo(
        service=service,
        operation=operation,
        body=body,
        json_protocol=bool(target),
        content_type=content_type or "application/x-amz-json-1.0",
    )


def error_answer(request: RequestInfo, status: int, code: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of an AWS error in the request's protocol, as botocore parses it."""
    message = f"Injected by the local emulator's fault proxy ({code})."
    if request.json_protocol:
        service = request.service or ""
        body = {"__type": _ERROR_TYPE_PREFIX.get(service, "") + code, "message": message}
        headers = {"Content-Type": request.content_type, "x-amzn-ErrorType": code}
        if service == "sqs":  # SQS's JSON protocol keeps its query-era codes in this header
            headers["x-amzn-query-error"] = f"{code};{'Sender' if status < 500 else 'Receiver'}"
        return headers, json.dumps(body).encode()
    xml = (
        "<ErrorResponse><Error>"
        f"<Type>{'Sender' if status < 500 else 'Receiver'}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error><RequestId>local-fault</RequestId></ErrorResponse>"
    )
    return {"Content-Type": "text/xml"}, xml.encode()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], upstream: tuple[str, int], book: FaultBook) -> None:
        super().__init__(address, _ProxyHandler)
        self.upstream = upstream
        self.book = book
        self.stopping = threading.Event()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs use it
    server: _ProxyServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host, port = self.server.upstream
        self.upstream = http.client.HTTPConnection(host, port, timeout=300)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # thousands of poller requests; the stack's log stays readable

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # Every method goes the same way: control endpoints, else (perhaps faulted) forwarding.
    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def _serve(self) -> None:
        body = self._body()
        if urlsplit(self.path).path.rstrip("/") == CONTROL_PATH:
            self._control(body)
            return
        request = describe_request(self.headers, self.path, body)
        firing = self.server.book.take(request)
        if firing is None:
            self._relay(self._forward(body))
            return
        kind = firing.kind
        if kind == "reset-before":
            self._reset()
        elif kind == "status":
            headers, error_body = error_answer(request, firing.status, firing.code)
            self._send(firing.status, headers, error_body)
        elif kind == "hold-before":
            if self._hold(firing.fault):
                self._relay(self._forward(body))
            else:
                self._reset()
        else:
            self._forward(body)  # applied; its answer is what gets lost
            if kind == "commit-then-timeout":
                self._hold(firing.fault)
            self._reset()

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
        for attempt in (1, 2):
            try:
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                response = self.upstream.getresponse()
                return response.status, response.getheaders(), response.read()
            except (http.client.HTTPException, ConnectionError):
                # moto closed an idle keep-alive connection; one fresh connection, then give up.
                self.upstream.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _relay(self, answer: tuple[int, list[tuple[str, str]], bytes]) -> None:
        status, headers, body = answer
        kept = {name: value for name, value in headers if name.lower() not in _HOP_BY_HOP}
        self._send(status, kept, body)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _hold(self, fault: AwsFault) -> bool:
        """Wait until the faults are cleared (True), or the client gave up, the hold ran out, or the proxy
        stops (False)."""
        released = self.server.book.release_event
        deadline = time.monotonic() + fault.hold_seconds
        self.server.book.holding(fault, +1)
        try:
            while not released.is_set():
                if self.server.stopping.is_set() or time.monotonic() >= deadline or self._client_gone():
                    return False
                released.wait(_POLL_SECONDS)
            return not self._client_gone()
        finally:
            self.server.book.holding(fault, -1)

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True

    def _reset(self) -> None:
        """Close with RST (no FIN, no answer): what a dropped connection looks like to the client."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()

    def _control(self, body: bytes) -> None:
        book = self.server.book
        if self.command == "GET":
            self._json(200, book.listing())
        elif self.command == "DELETE":
            book.clear()
            self._send(204, {}, b"")
        elif self.command == "POST":
            try:
                spec = json.loads(body or b"null")
                fault = book.arm(spec)
            except (ValueError, FaultSpecError) as exc:
                errors = (
                    exc.errors if isinstance(exc, FaultSpecError) else [{"name": "body", "detail": str(exc)}]
                )
                problem = {
                    "type": "about:blank",
                    "title": "Invalid fault",
                    "status": 400,
                    "detail": "; ".join(error["detail"] for error in errors),
                    "errors": errors,
                }
                self._send(400, {"Content-Type": "application/problem+json"}, json.dumps(problem).encode())
                return
            self._json(201, fault.describe())
        else:
            self._send(405, {"Allow": "GET, POST, DELETE"}, b"")

    def _json(self, status: int, document: Any) -> None:
        self._send(status, {"Content-Type": "application/json"}, json.dumps(document).encode())


@dataclass
class FaultProxy:
    server: _ProxyServer
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def book(self) -> FaultBook:
        return self.server.book

    def close(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def start_fault_proxy(host: str, port: int, upstream_host: str, upstream_port: int) -> FaultProxy:
    """The proxy on `host:port` (0 = a free port) in front of moto at `upstream_host:upstream_port`."""
    server = _ProxyServer((host, port), (upstream_host, upstream_port), FaultBook())
    thread = threading.Thread(target=server.serve_forever, name="aws-fault-proxy", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return FaultProxy(server=server, thread=thread, host=str(bound_host), port=int(bound_port))
