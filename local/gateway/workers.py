"""Worker processes per function, as separate Lambdas have separate execution environments.

Each function gets a pool of up to BILLPAY_LOCAL_CONCURRENCY processes, started on demand (a cold start,
like Lambda's) and then kept warm. A process runs `local.gateway.worker` with that function's own
environment and sys.path; an invocation is one JSON frame each way over a pipe, so a warm call costs a
few hundred microseconds on top of the handler. A worker that overruns the function's Timeout is
killed, as Lambda ends a timed-out environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from local.gateway.environment import function_arn, function_name
from local.template import REPO_ROOT, FunctionSpec

# How long past the function's deadline the supervisor waits before it declares the worker stuck.
_GRACE_SECONDS = 1.0
_INIT_TIMEOUT_SECONDS = 60.0  # Lambda allows 10 s of init; a loaded 2-core machine needs more


@dataclass(frozen=True)
class Outcome:
    """One invocation's result: `result` when the handler returned, else `error` (Lambda's error shape)."""

    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    init_ms: float | None = None  # set on a cold start

    @property
    def ok(self) -> bool:
        return self.error is None


class WorkerDied(RuntimeError):
    pass


class Worker:
    """One execution environment of one function."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], layer_dirs: list[str]) -> None:
        self.spec = spec
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        launch = {
            "functionName": function_name(spec),
            "functionArn": function_arn(spec),
            "memoryMb": spec.memory_size,
            "codeDir": str(spec.code_dir),
            "layerDirs": layer_dirs,
            "handler": spec.handler,
            "requestFd": request_read,
            "responseFd": response_write,
        }
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "local.gateway.worker", json.dumps(launch)],
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                pass_fds=(request_read, response_write),
            )
        finally:
            os.close(request_read)
            os.close(response_write)
        self._requests = Connection(request_write, readable=False)
        self._responses = Connection(response_read, writable=False)
        self.init_ms: float | None = None
        self.init_error: dict[str, Any] | None = None

    def wait_ready(self, timeout: float = _INIT_TIMEOUT_SECONDS) -> None:
        hello = self._receive(timeout)
        if "initError" in hello:
            self.init_error = hello["initError"]
            self.kill()
        else:
            self.init_ms = float(hello.get("initMs", 0.0))

    def _receive(self, timeout: float) -> dict[str, Any]:
        try:
            if not self._responses.poll(timeout):
                raise TimeoutError
            answer: dict[str, Any] = json.loads(self._responses.recv_bytes())
        except (EOFError, OSError) as exc:
            raise WorkerDied(f"{self.spec.logical_id} worker exited ({self.process.poll()})") from exc
        return answer

    def call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        try:
            self._requests.send_bytes(json.dumps(message).encode())
        except (BrokenPipeError, OSError) as exc:
            raise WorkerDied(f"{self.spec.logical_id} worker is gone") from exc
        return self._receive(timeout)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and self.init_error is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._close_pipes()

    def stop(self, timeout: float = 3.0) -> None:
        """End the environment the way Lambda does: no goodbye, no interpreter finalization to wait for."""
        self._close_pipes()
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _close_pipes(self) -> None:
        for connection in (self._requests, self._responses):
            if not connection.closed:
                connection.close()


class FunctionPool:
    """Up to `size` warm workers of one function; a busy pool makes callers wait, as reserved concurrency."""

    def __init__(
        self,
        spec: FunctionSpec,
        env: dict[str, str],
        layer_dirs: list[str],
        size: int,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.env = env
        self.layer_dirs = layer_dirs
        self.size = max(1, size)
        self._idle: list[Worker] = []
        self._all: set[Worker] = set()
        self._live = 0
        self._closed = False
        self._lock = threading.Condition()
        self._log = on_event or (lambda message: None)

    def _acquire(self) -> tuple[Worker, bool]:
        with self._lock:
            while True:
                if self._closed:
                    raise WorkerDied(f"{self.spec.logical_id}: the stack is stopping")
                if self._idle:
                    return self._idle.pop(), False
                if self._live < self.size:
                    self._live += 1
                    break
                self._lock.wait()
        try:
            worker = Worker(self.spec, self.env, self.layer_dirs)
            with self._lock:
                self._all.add(worker)
            worker.wait_ready()
        except BaseException:
            self._forget()
            raise
        return worker, True

    def _release(self, worker: Worker) -> None:
        with self._lock:
            if self._closed or not worker.alive:
                self._live -= 1
                self._all.discard(worker)
                discard = True
            else:
                self._idle.append(worker)  # LIFO: the warmest worker serves next
                discard = False
            self._lock.notify()
        if discard:
            worker.stop(timeout=0.5)

    def _forget(self) -> None:
        with self._lock:
            self._live -= 1
            self._lock.notify()

    def _run(self, message: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float | None]:
        worker, cold = self._acquire()
        if worker.init_error is not None:
            self._release(worker)
            return {"error": worker.init_error}, worker.init_ms
        if message["op"] == "invoke":
            # The clock starts when a worker takes the request: Lambda's Timeout excludes queueing and init.
            message = {**message, "deadlineMs": int((time.time() + self.spec.timeout) * 1000)}
        try:
            answer = worker.call(message, timeout)
        except TimeoutError:
            self._log(f"{self.spec.logical_id}: timed out after {timeout:.1f} s; worker killed")
            worker.kill()
            self._release(worker)
            return {
                "error": {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {self.spec.timeout:.2f} seconds",
                }
            }, None
        except WorkerDied as exc:
            worker.kill()
            self._release(worker)
            return {"error": {"errorType": "Runtime.ExitError", "errorMessage": str(exc)}}, None
        self._release(worker)
        return answer, worker.init_ms if cold else None

    def invoke(self, event: dict[str, Any], request_id: str | None = None) -> Outcome:
        """Run the handler once; never raises for the handler's own failures (they are in `.error`)."""
        started = time.perf_counter()
        message = {"op": "invoke", "event": event, "requestId": request_id or str(uuid.uuid4())}
        answer, init_ms = self._run(message, self.spec.timeout + _GRACE_SECONDS)
        return Outcome(
            result=answer.get("result"),
            error=answer.get("error"),
            duration_ms=(time.perf_counter() - started) * 1000,
            init_ms=init_ms,
        )

    def openapi(self) -> dict[str, Any] | None:
        """The OpenAPI document of the handler module's `app` (None when it has no resolver)."""
        answer, _ = self._run({"op": "openapi"}, _INIT_TIMEOUT_SECONDS)
        if "error" in answer:
            error = answer["error"]
            raise RuntimeError(
                f"{self.spec.logical_id}: {error['errorType']}: {error['errorMessage']}\n"
                + "".join(error.get("stackTrace") or [])
            )
        document: dict[str, Any] | None = answer["openapi"]
        return document

    def close(self) -> None:
        """Stop every worker, busy ones included (a stopping stack does not wait for a held request)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = self._all - set(idle)
            self._all.clear()
            self._lock.notify_all()
        for worker in busy:
            worker.kill()
        for worker in idle:
            worker.stop()
