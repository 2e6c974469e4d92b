"""The Codat sandbox's HTTP server: stdlib `ThreadingHTTPServer`, HTTP/1.1 keep-alive, one thread per
connection (so a request held by a fault never blocks another).

Each answer is written with a single `write` (status line, headers and body together) and Nagle is off:
a keep-alive client then never waits on a delayed ACK between headers and body.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.utils
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from local.sandbox import faults as faults_module
from local.sandbox import payloads
from local.sandbox.errors import CodatError, FieldError, error_message, from_exception
from local.sandbox.faults import Fault, FaultBook
from local.sandbox.idempotency import (
    CachedResponse,
    IdempotencyCache,
    Verdict,
    fingerprint,
    normalise_key,
)
from local.sandbox.seed import LARGE_BULK_BILLS, SEEDS
from local.sandbox.state import Ledger

logger = logging.getLogger("local.sandbox")

DEFAULT_API_KEY = "local-sandbox-key"
DEFAULT_PORT = 4100
DEFAULT_IDEMPOTENCY_SECONDS = 5400.0  # Codat's 90 minutes
DEFAULT_PAGE_SIZE = 5  # small, so every client pages mapping options and bills from the first day
MAX_BODY_BYTES = 1_000_000
_JSON = "application/json; charset=utf-8"


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    api_key: str = DEFAULT_API_KEY
    idempotency_seconds: float = DEFAULT_IDEMPOTENCY_SECONDS
    page_size: int = DEFAULT_PAGE_SIZE
    seed: str = "demo"
    verbose: bool = False
    # Added to every Codat request (never to /_sandbox/*): a real ledger answers in hundreds of ms a page.
    latency_ms: float = 0.0
    # Open bills per company 1 and 2 in the `large` seed (benchmarks of large ledgers).
    bulk_bills: int = LARGE_BULK_BILLS

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("the sandbox API key must not be empty")
        if self.idempotency_seconds <= 0:
            raise ValueError("idempotency_seconds must be positive")
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")
        if not 0 <= self.latency_ms <= 60_000:
            raise ValueError("latency_ms must be between 0 and 60000")
        if not 0 <= self.bulk_bills <= 100_000:
            raise ValueError("bulk_bills must be between 0 and 100000")
        if self.seed not in SEEDS:
            raise ValueError(f"seed must be one of {', '.join(SEEDS)}, not {self.seed!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SandboxConfig:
        """Explicit arguments win over BILLPAY_SANDBOX_* variables, which win over the defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        try:
            if "BILLPAY_SANDBOX_API_KEY" in env:
                values["api_key"] = env["BILLPAY_SANDBOX_API_KEY"]
            if "BILLPAY_SANDBOX_IDEMPOTENCY_SECONDS" in env:
                values["idempotency_seconds"] = float(env["BILLPAY_SANDBOX_IDEMPOTENCY_SECONDS"])
            if "BILLPAY_SANDBOX_PAGE_SIZE" in env:
                values["page_size"] = int(env["BILLPAY_SANDBOX_PAGE_SIZE"])
            if "BILLPAY_SANDBOX_SEED" in env:
                values["seed"] = env["BILLPAY_SANDBOX_SEED"]
            if env.get("BILLPAY_SANDBOX_LATENCY_MS", "").strip():
                values["latency_ms"] = float(env["BILLPAY_SANDBOX_LATENCY_MS"])
            if env.get("BILLPAY_SANDBOX_BULK_BILLS", "").strip():
                values["bulk_bills"] = int(env["BILLPAY_SANDBOX_BULK_BILLS"])
            if "BILLPAY_SANDBOX_VERBOSE" in env:
                values["verbose"] = env["BILLPAY_SANDBOX_VERBOSE"].lower() in ("1", "true", "yes")
        except ValueError as exc:
            raise ValueError(f"invalid BILLPAY_SANDBOX_* setting: {exc}") from exc
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def cached(self) -> CachedResponse:
        return CachedResponse(self.status, self.body, tuple(self.headers.items()))


class _Drop:
    """Close the connection without answering (a timeout as the client sees it)."""


DROP = _Drop()
Outcome = Response | _Drop


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, json.dumps(body, separators=(",", ":")).encode(), headers or {})


def error_response(exc: CodatError) -> Response:
    return json_response(exc.status, from_exception(exc), exc.headers)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], config: SandboxConfig) -> None:
        self.config = config
        self.ledger = Ledger(config.seed, config.page_size, config.bulk_bills)
        self.idempotency = IdempotencyCache(config.idempotency_seconds)
        self.faults = FaultBook()
        self.requests = RequestCounter()
        self.stopping = threading.Event()
        # Bumped by every reset: a request held across a reset must not commit into the fresh state.
        self.generation = 0
        self.expected_authorization = "Basic " + base64.b64encode(config.api_key.encode()).decode()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, SandboxHandler)

    def reset(self) -> None:
        self.generation += 1
        self.faults.clear()
        self.requests.clear()
        self.idempotency.clear()
        self.ledger.reset()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (its own timeout) is normal here, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        with self._open_lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CodatSandbox/1.0"
    disable_nagle_algorithm = True
    server: SandboxServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.config.verbose:
            logger.info("%s %s", self.address_string(), format % args)

    # --- plumbing ---------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
            outcome = self._handle(body)
        except CodatError as exc:
            outcome = error_response(exc)
        except Exception:
            logger.exception("sandbox bug answering %s %s", self.command, self.path)
            outcome = json_response(500, error_message(500))
        if isinstance(outcome, _Drop):
            self._drop()
        else:
            self._send(outcome)
        if self.server.config.verbose:
            status = "dropped" if isinstance(outcome, _Drop) else outcome.status
            logger.info("%s %s -> %s", self.command, self.path, status)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise CodatError(400, "Error processing request - invalid Content-Length.")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                self.close_connection = True
                raise CodatError(400, "Error processing request - malformed chunked body.") from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                raise CodatError(400, "Error processing request - body too large.")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, response: Response) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Type: {_JSON}",
            f"Content-Length: {len(response.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _hold(self, seconds: float, generation: int) -> bool:
        """Wait `seconds`; False when the server stopped or was reset meanwhile (the request is abandoned)."""
        if self.server.stopping.wait(seconds):
            return False
        return self.server.generation == generation

    # --- routing ----------------------------------------------------------------------------------------

    def _handle(self, body: bytes) -> Outcome:
        split = urlsplit(self.path)
        raw_path = split.path
        segments = [unquote(segment) for segment in raw_path.strip("/").split("/")]
        params = {name: values[0] for name, values in parse_qs(split.query, keep_blank_values=True).items()}
        method = self.command.upper()

        if segments and segments[0] == "_sandbox":
            return self._control(method, segments[1:], body)

        generation = self.server.generation
        is_write = method == "POST"
        self.server.requests.count(method, raw_path)
        latency = self.server.faults.take(method, raw_path, faults_module.LATENCY_KINDS)
        delay = latency.hold_seconds if latency is not None else self.server.config.latency_ms / 1000
        # A write held across a reset is dropped by `_write` (the generation check), like any held write.
        if delay > 0 and self.server.stopping.wait(delay):
            return DROP
        fault = self.server.faults.take(
            method, raw_path, faults_module.FRONT_KINDS if is_write else faults_module.KINDS
        )
        if fault is not None and fault.kind in faults_module.FRONT_KINDS:
            return self._front_fault(fault, generation)

        if self.headers.get("Authorization") != self.server.expected_authorization:
            raise CodatError(
                401, "Unauthorized - the Authorization header must be 'Basic <base64 of API key>'."
            )

        route = self._route(method, segments, params, body)
        if route is None:
            raise CodatError(404, f"No resource was found at {raw_path}.")
        if isinstance(route, CodatError):
            raise route
        if is_write:
            return self._write(method, raw_path, body, route, generation)
        return self._read(route, fault, generation)

    def _route(
        self, method: str, segments: list[str], params: dict[str, str], body: bytes
    ) -> Callable[[], Response] | CodatError | None:
        ledger = self.server.ledger
        n = len(segments)
        if n == 0 or segments[0] != "companies":
            return None
        reads: dict[tuple[str, ...], Callable[[], Any]] = {}
        writes: dict[tuple[str, ...], Callable[[], Response]] = {}
        if n == 1:
            reads[()] = lambda: ledger.list_companies(
                params.get("page"), params.get("pageSize"), params.get("query")
            )
        elif n == 2:
            reads[()] = lambda: ledger.get_company(segments[1])
        elif n >= 3 and segments[2] == "connections":
            company_id = segments[1]
            if n == 3:
                reads[()] = lambda: ledger.list_connections(
                    company_id, params.get("page"), params.get("pageSize"), params.get("query")
                )
            elif n >= 4:
                connection_id = segments[3]
                tail = tuple(segments[4:])
                if tail == ():
                    reads[tail] = lambda: ledger.get_connection(company_id, connection_id)
                elif tail == ("payables", "info"):
                    reads[tail] = lambda: ledger.company_information(company_id, connection_id)
                elif tail == ("payables", "mappingOptions", "payments"):
                    reads[tail] = lambda: ledger.mapping_options_payments(
                        company_id, connection_id, params.get("statusQuery"), params.get("continuationToken")
                    )
                elif tail == ("payables", "bills"):
                    reads[tail] = lambda: ledger.list_bills(
                        company_id, connection_id, params.get("query"), params.get("continuationToken")
                    )
                elif tail == ("payables", "suppliers"):
                    reads[tail] = lambda: ledger.list_suppliers(
                        company_id, connection_id, params.get("query"), params.get("continuationToken")
                    )
                elif tail == ("payables", "bankAccounts"):
                    writes[tail] = lambda: self._create_bank_account(company_id, connection_id, body)
                elif len(tail) == 4 and tail[:2] == ("payables", "bills") and tail[3] == "payment":
                    bill_id = tail[2]
                    writes[tail] = lambda: self._pay_bill(company_id, connection_id, bill_id, body)
        if reads:
            if method != "GET":
                return CodatError(405)
            read = next(iter(reads.values()))
            return lambda: json_response(200, read())
        if writes:
            if method != "POST":
                return CodatError(405)
            return next(iter(writes.values()))
        return None

    # --- reads, writes and faults -----------------------------------------------------------------------

    def _front_fault(self, fault: Fault, generation: int) -> Outcome:
        if fault.kind == "timeout":
            self._hold(fault.hold_seconds, generation)
            return DROP
        return self._fault_status(fault)

    @staticmethod
    def _fault_status(fault: Fault) -> Response:
        assert fault.status is not None
        return json_response(fault.status, error_message(fault.status), fault.retry_after_header())

    def _read(self, read: Callable[[], Response], fault: Fault | None, generation: int) -> Outcome:
        if fault is None:
            return self._answer(read)
        if fault.kind == "hold-then-commit":
            return self._answer(read) if self._hold(fault.hold_seconds, generation) else DROP
        self._answer(read)  # the read happens; only its answer is lost or replaced
        if fault.kind == "commit-then-timeout":
            self._hold(fault.hold_seconds, generation)
            return DROP
        return self._fault_status(fault)  # commit-then-status

    @staticmethod
    def _answer(execute: Callable[[], Response]) -> Response:
        try:
            return execute()
        except CodatError as exc:
            return error_response(exc)

    def _write(
        self, method: str, path: str, body: bytes, execute: Callable[[], Response], generation: int
    ) -> Outcome:
        raw_key = self.headers.get("Idempotency-Key")
        key: str | None = None
        if raw_key is not None:
            key = normalise_key(raw_key)
            if key is None:
                raise CodatError(
                    400,
                    "The Idempotency-Key header must be a GUID.",
                    errors=[FieldError("Idempotency-Key", f"'{raw_key}' is not a GUID.", "Guid")],
                )
            verdict, cached = self.server.idempotency.begin(key, fingerprint(method, path, body))
            if verdict is Verdict.REPLAY:
                assert cached is not None
                return Response(cached.status, cached.body, dict(cached.headers))
            if verdict is Verdict.IN_PROGRESS:
                raise CodatError(409, f"A request with the idempotency key {key} is in progress.")
            if verdict is Verdict.REUSED:
                raise CodatError(
                    422, f"The idempotency key {key} has already been used with a different request."
                )

        finished = False

        def finish(response: Response | None) -> None:
            nonlocal finished
            finished = True
            if key is not None:
                self.server.idempotency.finish(key, None if response is None else response.cached())

        try:
            fault = self.server.faults.take(method, path, faults_module.COMMIT_KINDS)
            if fault is not None and fault.kind == "hold-then-commit":
                self._hold(fault.hold_seconds, generation)
            if self.server.stopping.is_set() or self.server.generation != generation:
                finish(None)  # abandoned by a stop or a reset: nothing applied, the key released
                return DROP
            response = self._answer(execute)
            if fault is not None and fault.kind == "commit-then-status" and 200 <= response.status < 300:
                response = self._fault_status(fault)  # applied, but answered (and cached) as a failure
            finish(response)
            if fault is not None and fault.kind == "commit-then-timeout":
                self._hold(fault.hold_seconds, generation)
                return DROP
            return response
        finally:
            if not finished:
                finish(None)

    def _create_bank_account(self, company_id: str, connection_id: str, body: bytes) -> Response:
        ledger = self.server.ledger
        ledger.check_connection(company_id, connection_id)
        request = payloads.parse_bank_account(payloads.parse_json(body))
        return json_response(201, ledger.create_bank_account(company_id, connection_id, request))

    def _pay_bill(self, company_id: str, connection_id: str, bill_id: str, body: bytes) -> Response:
        ledger = self.server.ledger
        ledger.check_connection(company_id, connection_id)
        request = payloads.parse_bill_payment(payloads.parse_json(body))
        key = self.headers.get("Idempotency-Key")
        payment = ledger.pay_bill(
            company_id, connection_id, bill_id, request, normalise_key(key) if key else None
        )
        return json_response(201, payment)

    # --- test control (local only, no auth) -------------------------------------------------------------

    def _control(self, method: str, segments: list[str], body: bytes) -> Response:
        server = self.server
        if segments == ["reset"] and method == "POST":
            server.reset()
            return json_response(200, {"reset": True, "seed": server.config.seed})
        if segments == ["faults"]:
            if method == "POST":
                return json_response(201, server.faults.add(payloads.parse_json(body)).to_json())
            if method == "GET":
                return json_response(200, server.faults.list())
            if method == "DELETE":
                return json_response(200, {"cleared": server.faults.clear()})
            raise CodatError(405)
        if segments == ["payments"]:
            if method == "GET":
                return json_response(200, server.ledger.payments())
            raise CodatError(405)
        if segments == ["requests"]:
            if method == "GET":
                return json_response(200, server.requests.snapshot())
            if method == "DELETE":
                return json_response(200, {"cleared": server.requests.clear()})
            raise CodatError(405)
        if segments == ["reset"]:
            raise CodatError(405)
        raise CodatError(404, f"No sandbox control endpoint at /_sandbox/{'/'.join(segments)}.")


class RequestCounter:
    """Codat requests served since the last reset, by method and path: what a benchmark pays upstream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def count(self, method: str, path: str) -> None:
        with self._lock:
            key = f"{method} {path}"
            self._counts[key] = self._counts.get(key, 0) + 1

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"total": sum(self._counts.values()), "byRequest": dict(self._counts)}

    def clear(self) -> int:
        with self._lock:
            total = sum(self._counts.values())
            self._counts.clear()
            return total


@dataclasses.dataclass
class SandboxHandle:
    """A running sandbox: `url` to talk to it, `close()` to stop it (also as a context manager)."""

    server: SandboxServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config(self) -> SandboxConfig:
        return self.server.config

    def reset(self) -> None:
        self.server.reset()

    def close(self) -> None:
        if not self.server.stopping.is_set():
            self.server.stop()
            self.thread.join(timeout=5)

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    idempotency_seconds: float | None = None,
    page_size: int | None = None,
    seed: str | None = None,
    verbose: bool | None = None,
    latency_ms: float | None = None,
    bulk_bills: int | None = None,
) -> SandboxHandle:
    """Start a sandbox serving from a background thread (port 0: a free port, see `.port`).

    Options left as None come from BILLPAY_SANDBOX_* variables, then from the defaults.
    """
    config = SandboxConfig.from_env(
        api_key=api_key,
        idempotency_seconds=idempotency_seconds,
        page_size=page_size,
        seed=seed,
        verbose=verbose,
        latency_ms=latency_ms,
        bulk_bills=bulk_bills,
    )
    server = SandboxServer((host, port), config)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="codat-sandbox", daemon=True
    )
    thread.start()
    return SandboxHandle(server=server, thread=thread, host=host)
