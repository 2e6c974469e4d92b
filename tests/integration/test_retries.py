"""Retries through the whole local stack (gateway, emulator, sandbox, SQS poller, sweeper), with compressed
timings and the sandbox's `/_sandbox/faults` (contract: Retries, Outcome table): every fault reaches its
right end state with one record (none for `failed`), replays answer it with the contract's status code,
and crashes, lost and poison messages and concurrent duplicates still end once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from billpay.adapters.operations_dynamodb import DynamoOperationStore
from billpay.adapters.operations_sweep_dynamodb import SweepIndex
from billpay.domain import lifecycle
from billpay.domain.operations import new_lease_token
from billpay.domain.retry_policy import RetryPolicy
from billpay.service.sweep import PUBLISH_GRACE_SECONDS

from local.emulator import LocalResources
from local.gateway.environment import function_environment
from local.sandbox.seed import (
    ACCOUNT_GBP_CURRENT,
    ACCOUNT_USD_CHECKING,
    BILLS_GBP_OPEN,
    BILLS_USD_OPEN,
    COMPANY_GBP_ID,
    COMPANY_USD_ID,
    CONNECTION_GBP_ID,
    CONNECTION_USD_ID,
)
from local.template import functions, load_template
from tests.integration.conftest import REPO_ROOT, Stack, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.long(seconds=200)]

# Long enough for a killed worker's lease (its deadline + 5 s) to expire and the retry to land inside the
# window; short enough that "rate-limited until the window closes" takes seconds, not 80 minutes.
WINDOW_SECONDS = 25.0
SETTINGS = {
    "BILLPAY_RETRY_WINDOW_SECONDS": str(WINDOW_SECONDS),
    "BILLPAY_RETRY_BASE_DELAY_SECONDS": "0.2",
    "BILLPAY_RETRY_MAX_DELAY_SECONDS": "1",
    "BILLPAY_SWEEP_INTERVAL_SECONDS": "0.5",
    "BILLPAY_UPSTREAM_TIMEOUT_SECONDS": "1.5",
    "BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS": "1",
}
END = WINDOW_SECONDS + 20  # the longest an operation may take to end here


@dataclass(frozen=True)
class Target:
    company: str
    connection: str
    account: str
    bill: str

    @property
    def path(self) -> str:
        return f"/companies/{self.company}/connections/{self.connection}/payables/bills/{self.bill}/payments"

    @property
    def fault_path(self) -> str:
        return f"*/bills/{self.bill}/payment"


_TARGETS = [Target(COMPANY_GBP_ID, CONNECTION_GBP_ID, ACCOUNT_GBP_CURRENT, b) for b in BILLS_GBP_OPEN] + [
    Target(COMPANY_USD_ID, CONNECTION_USD_ID, ACCOUNT_USD_CHECKING, b) for b in BILLS_USD_OPEN
]
_next_target = iter(_TARGETS)


def target() -> Target:
    """A bill of its own for each test: records are counted per bill."""
    return next(_next_target)


@pytest.fixture(scope="module")
def rstack() -> Iterator[Stack]:
    with start_stack(**SETTINGS) as running:
        running.reset()
        yield running


def pay(
    stack: Stack, t: Target, key: str, amount: str = "10.00"
) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = {"amount": float(amount), "date": "2026-11-25", "accountRef": {"id": t.account}}
    answer = stack.client.post(t.path, json=body, headers={"Idempotency-Key": key})
    return answer.status_code, dict(answer.headers), answer.json()


def records(stack: Stack, t: Target) -> list[dict[str, Any]]:
    return [p for p in stack.payments() if p["billId"] == t.bill]


def ended(stack: Stack, operation_id: str, timeout: float = END) -> dict[str, Any]:
    def probe() -> dict[str, Any]:
        op = stack.operation(operation_id)
        return op if op["status"] != "pending" else {}

    result: dict[str, Any] = stack.wait_until(probe, timeout=timeout, message=f"{operation_id} ended")
    return result


def first_pending(stack: Stack, t: Target, key: str) -> str:
    status, headers, envelope = pay(stack, t, key)
    assert status == 202, envelope
    assert envelope["status"] == "pending"
    assert headers["location"].endswith(f"/operations/{envelope['operationId']}")
    return str(envelope["operationId"])


# -- every fault: first answer, end state, replay status, records -------------------------------------------


@pytest.mark.parametrize(
    ("fault", "end", "replay_status", "recorded"),
    [
        pytest.param(
            {"fault": "status", "status": 503, "times": 3}, "succeeded", 201, 1, id="503-three-times"
        ),
        pytest.param(
            {"fault": "status", "status": 429, "retry_after": 1.5, "times": 2}, "succeeded", 201, 1, id="429"
        ),
        pytest.param({"fault": "timeout", "hold_seconds": 3, "times": 1}, "succeeded", 201, 1, id="timeout"),
        pytest.param(
            {"fault": "commit-then-timeout", "hold_seconds": 3, "times": 1},
            "succeeded",
            201,
            1,
            id="commit-then-timeout",
        ),
        pytest.param(
            {"fault": "hold-then-commit", "hold_seconds": 3, "times": 1},
            "succeeded",
            201,
            1,
            id="hold-then-commit",
        ),
        pytest.param(
            {"fault": "commit-then-status", "status": 500, "times": 1},
            "needs_review",
            502,
            1,
            id="commit-then-500",
        ),
        pytest.param(
            {"fault": "status", "status": 429, "retry_after": 0.3, "times": 100_000},
            "failed",
            503,
            0,
            id="429-past-the-window",
        ),
    ],
)
def test_fault_reaches_its_end_state_once(
    rstack: Stack, fault: dict[str, Any], end: str, replay_status: int, recorded: int
) -> None:
    t, key = target(), f"retry-{uuid.uuid4()}"
    rstack.arm_fault(path=t.fault_path, **fault)
    started = time.monotonic()
    operation_id = first_pending(rstack, t, key)
    op = ended(rstack, operation_id)
    assert op["status"] == end, op
    assert op["attempts"] >= 2
    if fault.get("retry_after") and end == "succeeded":
        # Never before Retry-After: two 429s, each followed by a wait of at least 1.5 s.
        assert time.monotonic() - started >= 2 * fault["retry_after"]
    if end == "failed":
        assert time.monotonic() - started >= WINDOW_SECONDS - 1
    rstack.clear_faults()

    status, _, replay = pay(rstack, t, key)
    assert status == replay_status
    if end == "succeeded":
        assert replay["operationId"] == operation_id and replay["status"] == "succeeded"
    else:
        assert replay["operation"]["operationId"] == operation_id
        expected_type = "upstream-outcome-unknown" if end == "needs_review" else "upstream-rate-limited"
        assert replay["type"].endswith(f"/problems/{expected_type}")
    assert len(records(rstack, t)) == recorded


# -- a worker killed after the send, before the settle ------------------------------------------------------


def _lease_as_the_sweeper(stack: Stack, operation_id: str, lease_seconds: float) -> str:
    """Take the operation's lease as a lease-taker does, and return the new token for a message of our own.

    The 429's long Retry-After (60 s, within the 15-minute hand-off horizon) had the write flow hand its
    lease to the queue with a delayed message; the test takes that lease over with the token it read, as
    that message's recipient would (which leaves the delayed message stale when it arrives). It used to take
    the sweeper's lapsed-lease route, from an operation with no lease holder: there is no such operation
    now while a retry is due soon."""
    store = DynamoOperationStore(stack.operations_table_name, client=stack.dynamodb)
    op = store.get(operation_id)
    assert op is not None and op.status == "pending" and op.lease_holder == "queue"
    now = time.time()
    token = new_lease_token()
    policy = RetryPolicy(
        window_seconds=WINDOW_SECONDS,
        base_delay_seconds=float(SETTINGS["BILLPAY_RETRY_BASE_DELAY_SECONDS"]),
        max_delay_seconds=float(SETTINGS["BILLPAY_RETRY_MAX_DELAY_SECONDS"]),
    )
    taking = lifecycle.take_due(
        op,
        policy=policy,
        holder="sweeper",
        token=token,
        lease_until=now + lease_seconds,
        now=now,
        count_attempt=False,
        require_lapsed=False,  # the queue's lease is live: taken over with its token, not after it lapsed
    )
    assert taking.name == "take_lease"
    # Made due now (nextAttemptAt = now, where the 429's Retry-After had put it): once this lease lapses,
    # the sweeper finds it due at once.
    store.apply(replace(taking, after=taking.ours.with_changes(next_attempt_at=now)))
    return token


def _worker_env(stack: Stack) -> dict[str, str]:
    template = load_template()
    spec = next(s for s in functions(template) if s.logical_id == "RetryWorkerFunction")
    resources = LocalResources(refs=dict(stack.ready["resources"]), arns=dict(stack.ready["arns"]))
    env = function_environment(
        template,
        spec,
        resources,
        endpoint_url=stack.emulator_url,
        codat_base_url=stack.sandbox_url,
        supervisor_env=SETTINGS,
    )
    return {**os.environ, **env, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'layers' / 'billpay'}"}


# The worker gets a 12 s deadline (it was 4 s): it now builds its client and fetches the Codat key before it
# takes the lease and sizes its attempt from the time left, and a cold process on a loaded machine can spend
# two seconds on that; with too little left it sends nothing ("no_time") and the kill never comes.
_RUN_WORKER = """
import json, sys, time
from local.gateway.worker import LambdaContext
from functions.retry_worker.handler import lambda_handler
spec = {"functionName": "RetryWorkerFunction", "memoryMb": 512,
        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:RetryWorkerFunction"}
body = sys.argv[1]
event = {"Records": [{"messageId": "killed-1", "receiptHandle": "r", "body": body, "attributes":
         {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}]}
print(lambda_handler(event, LambdaContext(spec, "killed", int((time.time() + 12) * 1000))), flush=True)
"""


def _kill_worker_after_its_send(stack: Stack, t: Target, operation_id: str, token: str) -> None:
    """Run the real retry worker (its own process) on a message holding `token`; SIGKILL it as soon as the
    payment is recorded upstream, while it still waits for Codat's answer (commit-then-timeout)."""
    stack.arm_fault(path=t.fault_path, fault="commit-then-timeout", hold_seconds=30, times=1)
    body = json.dumps({"operationId": operation_id, "leaseToken": token})
    env = {**_worker_env(stack), "BILLPAY_UPSTREAM_TIMEOUT_SECONDS": "1.9"}
    worker = subprocess.Popen(
        [sys.executable, "-c", _RUN_WORKER, body],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        stack.wait_until(lambda: records(stack, t), timeout=20, interval=0.02, message="the worker's send")
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(10)
    item = stack.operation_item(operation_id)
    assert item is not None
    # Killed between the send and the settle: the attempt is counted, nothing settled.
    assert (item["status"], item["phase"], item["leaseHolder"]) == ("pending", "sent", "worker"), item
    assert item["attempts"] == 2 and item["clearAttempts"] == 1


def test_a_worker_killed_mid_attempt_still_ends_with_one_record(rstack: Stack) -> None:
    t, key = target(), f"killed-{uuid.uuid4()}"
    # A 429 with a long Retry-After keeps the stack's own retries away (the queue holds the lease, its
    # delayed message a minute off) while the test takes the lease.
    rstack.arm_fault(path=t.fault_path, fault="status", status=429, retry_after=60, times=1)
    operation_id = first_pending(rstack, t, key)
    token = _lease_as_the_sweeper(rstack, operation_id, lease_seconds=60)
    _kill_worker_after_its_send(rstack, t, operation_id, token)

    op = ended(rstack, operation_id)
    assert op["status"] == "succeeded" and op["attempts"] == 3
    assert len(records(rstack, t)) == 1
    assert pay(rstack, t, key)[0] == 201


def test_a_killed_attempt_then_429_until_the_window_closes_needs_review_never_failed(rstack: Stack) -> None:
    t, key = target(), f"killed-429-{uuid.uuid4()}"
    rstack.arm_fault(path=t.fault_path, fault="status", status=429, retry_after=60, times=1)
    operation_id = first_pending(rstack, t, key)
    token = _lease_as_the_sweeper(rstack, operation_id, lease_seconds=60)
    _kill_worker_after_its_send(rstack, t, operation_id, token)
    rstack.arm_fault(path=t.fault_path, fault="status", status=429, retry_after=0.3, times=100_000)

    op = ended(rstack, operation_id)
    rstack.clear_faults()
    # Every later attempt was clear, but the killed one may have been applied (and was): never `failed`.
    assert op["status"] == "needs_review", op
    item = rstack.operation_item(operation_id)
    assert item is not None and item["attempts"] > item["clearAttempts"]
    assert len(records(rstack, t)) == 1
    assert pay(rstack, t, key)[0] == 502


# -- a lost message, a poison message -----------------------------------------------------------------------


def test_a_lost_message_is_recovered_by_the_sweeper(rstack: Stack) -> None:
    t, key = target(), f"lost-{uuid.uuid4()}"
    rstack.arm_fault(path=t.fault_path, fault="status", status=429, retry_after=60, times=1)
    operation_id = first_pending(rstack, t, key)
    # The lease is taken and its message never arrives.
    _lease_as_the_sweeper(rstack, operation_id, lease_seconds=2)
    op = ended(rstack, operation_id)
    assert op["status"] == "succeeded" and op["attempts"] == 2
    assert len(records(rstack, t)) == 1


def test_a_poison_message_ends_in_the_dlq_and_its_operation_still_ends(rstack: Stack) -> None:
    t, key = target(), f"poison-{uuid.uuid4()}"
    rstack.arm_fault(path=t.fault_path, fault="status", status=429, retry_after=60, times=1)
    operation_id = first_pending(rstack, t, key)
    _lease_as_the_sweeper(rstack, operation_id, lease_seconds=3)
    poison = json.dumps({"operationId": operation_id, "leaseToken": 42})  # crashes the worker every time
    rstack.sqs.send_message(QueueUrl=rstack.retry_queue_url, MessageBody=poison)

    op = ended(rstack, operation_id)
    assert op["status"] == "succeeded" and len(records(rstack, t)) == 1

    def in_dlq() -> list[str]:
        got = rstack.sqs.receive_message(
            QueueUrl=rstack.dead_letter_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        return [m["Body"] for m in got if m["Body"] == poison]

    assert rstack.wait_until(in_dlq, timeout=30, message="the poison message in the DLQ")


# -- concurrent duplicates during an outage -----------------------------------------------------------------


def test_concurrent_duplicates_during_an_outage_make_one_operation_and_one_record(rstack: Stack) -> None:
    t, key = target(), f"dup-{uuid.uuid4()}"
    rstack.arm_fault(path=t.fault_path, fault="status", status=503, times=100_000)
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        status, _, body = pay(rstack, t, key)
        with lock:
            answers.append((status, body))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status for status, _ in answers} <= {202, 409}, answers
    ids = {body["operationId"] for status, body in answers if status == 202}
    assert len(ids) == 1
    [operation_id] = ids
    time.sleep(1)  # the outage goes on while retries are scheduled
    assert pay(rstack, t, key)[0] == 202
    assert records(rstack, t) == []

    rstack.clear_faults()
    assert ended(rstack, operation_id)["status"] == "succeeded"
    assert len(records(rstack, t)) == 1
    assert pay(rstack, t, key)[0] == 201


# -- a person resolves a needs_review -----------------------------------------------------------------------


def _needs_review_gauge(stack: Stack, after: int = 0) -> list[float]:
    """NeedsReviewOpen values the sweeper published (EMF lines in the stack's output), from line `after`."""
    values: list[float] = []
    for line in stack.log_path.read_text(errors="replace").splitlines()[after:]:
        if '"NeedsReviewOpen"' not in line or not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        value = doc.get("NeedsReviewOpen")
        if isinstance(value, list):
            value = value[-1]
        if isinstance(value, int | float):
            values.append(float(value))
    return values


def test_make_resolve_moves_a_needs_review_to_its_resolution_and_the_gauge_drops(rstack: Stack) -> None:
    t, key = target(), f"resolve-{uuid.uuid4()}"
    rstack.arm_fault(path=t.fault_path, fault="commit-then-status", status=500, times=1)
    operation_id = first_pending(rstack, t, key)
    assert ended(rstack, operation_id)["status"] == "needs_review"

    # The gauge counts every open review (earlier tests leave some): wait until it shows this one too.
    store = DynamoOperationStore(rstack.operations_table_name, client=rstack.dynamodb)
    before = SweepIndex(store).open_reviews()
    assert before >= 1
    mark = len(rstack.log_path.read_text(errors="replace").splitlines())
    rstack.wait_until(
        lambda: before in _needs_review_gauge(rstack, mark), message=f"NeedsReviewOpen = {before}"
    )

    port = rstack.emulator_url.rsplit(":", 1)[1]
    done = subprocess.run(
        ["make", "-s", "resolve", f"OP={operation_id}", "STATUS=succeeded", "NOTE=found once in the ledger"],
        cwd=REPO_ROOT,
        env={**os.environ, "BILLPAY_EMULATOR_PORT": port},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    mark = len(rstack.log_path.read_text(errors="replace").splitlines())

    op = rstack.operation(operation_id)
    assert op["status"] == "succeeded"
    item = rstack.operation_item(operation_id)
    assert item is not None and item["resolution"]["note"] == "found once in the ledger"
    # Who decided is no longer typed in (BY=...): it is the caller's AWS identity, as STS names it.
    assert item["resolution"]["by"] == rstack.aws("sts").get_caller_identity()["Arn"]
    assert item["resolution"]["previousStatus"] == "needs_review"
    # Out of the needs_review bucket at once. It used to leave the index with the resolve; the resolution's
    # event is now left to the sweeper (listed `unpublished`), which publishes it after its grace.
    assert item.get("dueBucket") != "needs_review"

    def out_of_the_index() -> bool:
        current = rstack.operation_item(operation_id)
        return current is not None and "dueBucket" not in current

    rstack.wait_until(
        out_of_the_index, timeout=PUBLISH_GRACE_SECONDS + 15, message="the resolution's event published"
    )
    assert pay(rstack, t, key)[0] == 201
    assert len(records(rstack, t)) == 1

    # Resolving again is refused: it is no longer needs_review.
    again = subprocess.run(
        ["make", "-s", "resolve", f"OP={operation_id}", "STATUS=failed", "NOTE=again"],
        cwd=REPO_ROOT,
        env={**os.environ, "BILLPAY_EMULATOR_PORT": port},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 2 and "not needs_review" in again.stderr

    rstack.wait_until(
        lambda: before - 1 in _needs_review_gauge(rstack, mark), message=f"NeedsReviewOpen = {before - 1}"
    )
