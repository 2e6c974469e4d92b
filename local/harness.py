"""A running local stack (`python -m local.stack` as a subprocess) on free ports, with compressed timings.

Used by the integration tests (tests/integration/conftest.py makes it a fixture), the benchmarks and the
drill:

    def test_list(stack):                       # one stack for the whole session
        stack.reset()                           # sandbox back to its seed, Codat and AWS faults cleared
        stack.arm_fault(path="*/payment", fault="status", status=503, times=2)
        stack.arm_aws_fault(service="dynamodb", operation="UpdateItem", fault="commit-then-reset")
        answer = stack.client.post(path, json=body, headers={"Idempotency-Key": key})
        stack.wait_until(lambda: stack.operation(op_id)["status"] == "succeeded")
        assert len(stack.payments()) == 1

    def test_short_cache():                     # a stack of its own, with other settings
        with start_stack(BILLPAY_SANDBOX_IDEMPOTENCY_SECONDS="2") as short:
            ...

`COMPRESSED` lists the timings every stack gets unless overridden (pass `NAME=None` to unset one).
The stack's own inspection clients (`aws()`, `dynamodb`, `sqs`, `table`, `operation_item`) talk to moto
directly (`emulator_direct_url`), so AWS faults armed for the functions never hit them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx

from local.emulator import FAKE_CREDENTIALS, client
from local.template import REPO_ROOT

T = TypeVar("T")

COMPRESSED: dict[str, str] = {
    "BILLPAY_SWEEP_INTERVAL_SECONDS": "0.5",
    "BILLPAY_RETRY_BASE_DELAY_SECONDS": "0.2",
    "BILLPAY_RETRY_MAX_DELAY_SECONDS": "1",
    "BILLPAY_RETRY_WINDOW_SECONDS": "10",
    "BILLPAY_UPSTREAM_TIMEOUT_SECONDS": "2",
    "BILLPAY_SYNC_BUDGET_SECONDS": "5",
    # A message a worker crashed on comes back after 2 s instead of the queue's 540 s.
    "BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS": "2",
    "BILLPAY_LOCAL_CONCURRENCY": "4",
    # Small pages, so every list the tests read is paged (make run uses Codat's default of 100).
    "BILLPAY_SANDBOX_PAGE_SIZE": "5",
}
_START_TIMEOUT_SECONDS = 90.0


class StackTimeout(AssertionError):
    """A `wait_until` condition that never came (an AssertionError, so a test reports it as a failure)."""


@dataclass
class Stack:
    """A running local stack and handy clients for it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    ready: dict[str, Any]
    client: httpx.Client = field(init=False)  # base_url = the API
    sandbox: httpx.Client = field(init=False)  # base_url = the Codat sandbox (test-control endpoints)
    emulator: httpx.Client = field(init=False)  # base_url = the AWS emulator's public port (fault control)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.api_url, timeout=60)
        self.sandbox = httpx.Client(base_url=self.sandbox_url, timeout=30)
        self.emulator = httpx.Client(base_url=self.emulator_url, timeout=30)
        self._clients: dict[str, Any] = {}

    # -- addresses and resources
    @property
    def api_url(self) -> str:
        return str(self.ready["api_url"])

    @property
    def sandbox_url(self) -> str:
        return str(self.ready["sandbox_url"])

    @property
    def emulator_url(self) -> str:
        """What the functions use as AWS_ENDPOINT_URL: the fault proxy in front of moto."""
        return str(self.ready["emulator_url"])

    @property
    def emulator_direct_url(self) -> str:
        """moto itself, behind the fault proxy: inspection that no AWS fault can touch."""
        return str(self.ready.get("emulator_direct_url") or self.ready["emulator_url"])

    @property
    def stage(self) -> str:
        return str(self.ready["stage"])

    @property
    def resources(self) -> dict[str, str]:
        """Logical id -> local physical name (table name, queue URL, secret ARN)."""
        return dict(self.ready["resources"])

    @property
    def operations_table_name(self) -> str:
        return self.resources["OperationsTable"]

    @property
    def retry_queue_url(self) -> str:
        return self.resources["RetryQueue"]

    @property
    def dead_letter_queue_url(self) -> str:
        return self.resources["RetryDeadLetterQueue"]

    def aws(self, service: str) -> Any:
        """A boto3 client for the stack's emulator (direct: never faulted)."""
        if service not in self._clients:
            self._clients[service] = client(service, self.emulator_direct_url)
        return self._clients[service]

    @property
    def dynamodb(self) -> Any:
        return self.aws("dynamodb")

    @property
    def sqs(self) -> Any:
        return self.aws("sqs")

    @property
    def table(self) -> Any:
        """boto3 Table resource of the operations table."""
        if "table" not in self._clients:
            resource = boto3.resource(
                "dynamodb",
                endpoint_url=self.emulator_direct_url,
                region_name=FAKE_CREDENTIALS["AWS_REGION"],
                aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            )
            self._clients["table"] = resource.Table(self.operations_table_name)
        return self._clients["table"]

    # -- sandbox control (docs/contract.md, Local stack)
    def reset(self) -> None:
        """Sandbox back to its seed data, every Codat and AWS fault cleared, and the bill index emptied
        (it mirrors the sandbox's ledgers, which a reset takes back in time)."""
        self.sandbox.post("/_sandbox/reset").raise_for_status()
        self.clear_faults()
        self.clear_aws_faults()
        self.clear_bill_index()

    def clear_bill_index(self) -> None:
        table = self.resources.get("BillIndexTable")
        if table is None:
            return
        start: dict[str, Any] | None = None
        while True:
            page = self.dynamodb.scan(
                TableName=table,
                ProjectionExpression="pk, sk",
                **({"ExclusiveStartKey": start} if start else {}),
            )
            for item in page.get("Items", []):
                self.dynamodb.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def clear_faults(self) -> None:
        self.sandbox.delete("/_sandbox/faults").raise_for_status()

    def arm_fault(
        self,
        *,
        fault: str,
        path: str = "*",
        method: str = "POST",
        status: int | None = None,
        retry_after: float | None = None,
        times: int = 1,
        hold_seconds: float | None = None,
    ) -> dict[str, Any]:
        """The next `times` requests matching `method` and the `path` glob get `fault`."""
        body: dict[str, Any] = {"method": method, "path": path, "fault": fault, "times": times}
        if status is not None:
            body["status"] = status
        if retry_after is not None:
            body["retryAfter"] = retry_after
        if hold_seconds is not None:
            body["holdSeconds"] = hold_seconds
        answer = self.sandbox.post("/_sandbox/faults", json=body)
        answer.raise_for_status()
        return dict(answer.json()) if answer.content else {}

    # -- AWS fault control (local/aws_faults.py)
    def arm_aws_fault(
        self,
        *,
        fault: str | list[str],
        service: str | None = None,
        operation: str | None = None,
        match: str | None = None,
        status: int | None = None,
        code: str | None = None,
        times: int | None = None,
        hold_seconds: float | None = None,
        probability: float | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """The next `times` (default 1) function requests to AWS matching service/operation/match get
        `fault`; with `probability`, each matching request does with that chance. Returns the armed fault."""
        body: dict[str, Any] = {"fault": fault}
        for name, value in (
            ("service", service),
            ("operation", operation),
            ("match", match),
            ("status", status),
            ("code", code),
            ("times", times),
            ("holdSeconds", hold_seconds),
            ("probability", probability),
            ("seed", seed),
        ):
            if value is not None:
                body[name] = value
        answer = self.emulator.post("/_emulator/faults", json=body)
        answer.raise_for_status()
        return dict(answer.json())

    def aws_faults(self) -> list[dict[str, Any]]:
        """Every AWS fault armed since the last clear, with what each has fired (`fired`, `firedTotal`)."""
        answer = self.emulator.get("/_emulator/faults")
        answer.raise_for_status()
        return list(answer.json())

    def clear_aws_faults(self) -> None:
        """Disarm every AWS fault; requests a fault holds are let go at once."""
        self.emulator.delete("/_emulator/faults").raise_for_status()

    def payments(self) -> list[dict[str, Any]]:
        """Every bill payment the sandbox recorded, oldest first."""
        answer = self.sandbox.get("/_sandbox/payments")
        answer.raise_for_status()
        return list(answer.json())

    # -- our side
    def operation_item(self, operation_id: str) -> dict[str, Any] | None:
        """The operation's raw item in the table (numbers as Decimal), or None."""
        item: dict[str, Any] | None = self.table.get_item(
            Key={"operationId": operation_id}, ConsistentRead=True
        ).get("Item")
        return item

    def operation(self, operation_id: str) -> dict[str, Any]:
        """GET /operations/{id} through the API (raises unless 200)."""
        answer = self.client.get(f"/operations/{operation_id}")
        answer.raise_for_status()
        return dict(answer.json())

    def queue_depth(self, queue_url: str | None = None) -> int:
        """Visible + in-flight messages of a queue (the retry queue by default)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url or self.retry_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def wait_until(
        self,
        probe: Callable[[], T],
        *,
        timeout: float = 15.0,
        interval: float = 0.1,
        message: str = "condition",
    ) -> T:
        """Poll `probe` until it returns something truthy (returned), or fail with the stack's log tail."""
        deadline = time.monotonic() + timeout
        last: T | None = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(interval)
        raise StackTimeout(
            f"{message} not met within {timeout} s (last: {last!r})\n--- stack log ---\n{self.logs()}"
        )

    def logs(self, tail: int = 60) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as a developer's Ctrl-C would be; returns the exit code."""
        self.client.close()
        self.sandbox.close()
        self.emulator.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


@contextmanager
def start_stack(**env_overrides: str | None) -> Iterator[Stack]:
    """Start `python -m local.stack` on free ports with COMPRESSED timings plus `env_overrides`."""
    workdir = Path(tempfile.mkdtemp(prefix="billpay-stack-"))
    ready_file = workdir / "ready.json"
    log_path = workdir / "stack.log"
    env = {**os.environ, **COMPRESSED}
    env.update(
        BILLPAY_API_PORT="0",
        BILLPAY_SANDBOX_PORT="0",
        BILLPAY_EMULATOR_PORT="0",
        BILLPAY_LOCAL_READY_FILE=str(ready_file),
        BILLPAY_LOCAL_EXIT_WITH_PARENT="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("CODAT_BASE_URL", None)  # the stack's own sandbox, unless a test asks otherwise
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "local.stack"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            output = log_path.read_text(errors="replace")
            raise RuntimeError(f"local stack did not start (exit {process.returncode}):\n{output}")
        time.sleep(0.05)
    stack = Stack(process=process, log_path=log_path, ready=json.loads(ready_file.read_text()))
    try:
        assert stack.client.get("/openapi.json").status_code == 200
        yield stack
    finally:
        stack.stop()


__all__ = ["COMPRESSED", "REPO_ROOT", "Stack", "StackTimeout", "start_stack"]
