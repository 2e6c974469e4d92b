"""One function's execution environment: a process that imports the handler once and serves invocations.

Started by `local.gateway.workers` as `python -m local.gateway.worker <spec-json>` with the function's
own environment already in os.environ (as Lambda sets it before the runtime starts). It talks to the
supervisor over two inherited pipes (length-prefixed frames of `multiprocessing.connection`), leaving
stdout/stderr to the handler's logs as on Lambda.

Standard library only: anything imported here would be pre-loaded for the handler and skew its cold start.
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any


class LambdaContext:
    """The attributes and method of the Lambda runtime's context object that handlers use."""

    def __init__(self, spec: dict[str, Any], request_id: str, deadline_ms: int) -> None:
        self.function_name: str = spec["functionName"]
        self.function_version = "$LATEST"
        self.invoked_function_arn: str = spec["functionArn"]
        self.memory_limit_in_mb: int = int(spec["memoryMb"])
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _openapi(module: Any) -> dict[str, Any]:
    app = getattr(module, "app", None)
    if app is None or not hasattr(app, "get_openapi_json_schema"):
        return {"openapi": None}
    return {"openapi": json.loads(app.get_openapi_json_schema())}


def main() -> None:
    spec = json.loads(sys.argv[1])
    # Ctrl-C in a terminal signals the whole process group: the supervisor decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = Connection(int(spec["requestFd"]), writable=False)
    responses = Connection(int(spec["responseFd"]), readable=False)

    # Lambda's sys.path: the function's code, then its layers (/opt/python), then the runtime's own
    # packages. The repository root is not on it, so nothing outside the artifact can be imported.
    runtime_paths = [p for p in sys.path if "site-packages" in p or p.startswith(sys.base_prefix)]
    sys.path[:] = [spec["codeDir"], *spec["layerDirs"], *runtime_paths]
    module_name, function_name = spec["handler"].rsplit(".", 1)

    started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, function_name)
    except BaseException as exc:  # the init phase failed: report it and let the supervisor retry
        responses.send_bytes(json.dumps({"initError": _error(exc, "Runtime.ImportModuleError")}).encode())
        return
    responses.send_bytes(
        json.dumps({"ready": True, "initMs": (time.perf_counter() - started) * 1000}).encode()
    )

    while True:
        try:
            message = json.loads(requests.recv_bytes())
        except (EOFError, OSError):
            return  # the supervisor is gone: so is this execution environment
        if message["op"] == "openapi":
            try:
                answer: dict[str, Any] = _openapi(module)
            except Exception as exc:
                answer = {"error": _error(exc)}
        else:
            context = LambdaContext(spec, message["requestId"], int(message["deadlineMs"]))
            try:
                result = handler(message["event"], context)
            except Exception as exc:
                answer = {"error": _error(exc)}
            else:
                answer = {"result": result}
        try:
            payload = json.dumps(answer).encode()
        except (TypeError, ValueError) as exc:
            payload = json.dumps({"error": _error(exc, "Runtime.MarshalError")}).encode()
        try:
            responses.send_bytes(payload)
        except (BrokenPipeError, OSError):
            return


if __name__ == "__main__":
    main()
