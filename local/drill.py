"""`make drill [N=200]` (`python -m local.drill`): the exactly-once drill.

N payments over many bills (the sandbox's `large` seed), each sent 1-3 times with the same
Idempotency-Key — some of those sends at once — while the sandbox injects random faults of every kind
(5xx, 429 + Retry-After, timeout, commit-then-status, commit-then-timeout, hold-then-commit) with compressed
retry timings. Then it waits for the drain (every operation out of `pending`, polled through
`GET /operations/{id}`, against a deadline) and counts, from the sandbox's own ledger
(`GET /_sandbox/payments`, matched to payments by their unique `reference`), how many payments were
recorded once, zero times and more than once, beside each operation's end state.

DESIGN §6's vocabulary: *duplicated* = more than one record for an operation; *lost* = no record while the
operation is `succeeded`, or still `pending` after the drain. Also fatal: a record for an operation that
ended `failed` (failed promises "definitely not recorded") or that does not exist, and a record whose bill
or amount is not the payment's. `failed`, refused and `needs_review` (≤ 1 record) are counted apart.

Runs against a stack it starts itself on free ports (or one given with --api-url/--sandbox-url), writes the
report as JSON (default bench/drill.json) and prints one line; exits 1 on any fatal finding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from local.gateway.events import DEFAULT_CALLER_ARN
from local.sandbox import seed
from local.template import REPO_ROOT

DEFAULT_REPORT = REPO_ROOT / "bench" / "drill.json"
PAYMENT_PATH_GLOB = "/companies/*/payables/bills/*/payment"
FINAL_STATES = ("succeeded", "failed", "needs_review")

# Timings of the stack the drill starts: retries within seconds, a window long enough that faults, not
# the window, decide most end states. The upstream timeout is what `timeout`-family faults outlast.
UPSTREAM_TIMEOUT_SECONDS = 2.0
STACK_ENV: dict[str, str] = {
    "BILLPAY_SWEEP_INTERVAL_SECONDS": "0.5",
    "BILLPAY_RETRY_BASE_DELAY_SECONDS": "0.2",
    "BILLPAY_RETRY_MAX_DELAY_SECONDS": "2",
    "BILLPAY_RETRY_WINDOW_SECONDS": "60",
    "BILLPAY_UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT_SECONDS),
    "BILLPAY_SYNC_BUDGET_SECONDS": "5",
    "BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS": "2",
    "BILLPAY_LOCAL_CONCURRENCY": "4",
    "BILLPAY_LOCAL_ACCESS_LOG": "0",
    "BILLPAY_SANDBOX_SEED": "large",
    # Codat's own default page size; the sandbox's demo default (5) would make each bill lookup page
    # through a thousand bulk bills five at a time.
    "BILLPAY_SANDBOX_PAGE_SIZE": "100",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
FAULT_KINDS = (
    "status-5xx",
    "status-429",
    "timeout",
    "commit-then-status",
    "commit-then-timeout",
    "hold-then-commit",
)


# ------------------------------------------------------------------------------------------------ plan


@dataclass
class Payment:
    index: int
    company_id: str
    connection_id: str
    bill_id: str
    account_id: str
    amount: Decimal
    reference: str
    key: str
    sends: int
    concurrent: bool
    answers: list[int] = field(default_factory=list)
    operation_ids: set[str] = field(default_factory=set)

    @property
    def path(self) -> str:
        return (
            f"/companies/{self.company_id}/connections/{self.connection_id}"
            f"/payables/bills/{self.bill_id}/payments"
        )

    def body(self) -> bytes:
        # Written by hand so the amount goes out exactly as planned (a JSON number, two decimals).
        return (
            f'{{"amount": {self.amount}, "date": "2026-11-25", "accountRef": {{"id": "{self.account_id}"}}, '
            f'"reference": "{self.reference}"}}'
        ).encode()


def plan(n: int, rng: random.Random, run_id: str, bulk: bool) -> list[Payment]:
    """N payments over the bulk bills (or the demo seed's open bills), 1-3 sends each, ~40 % at once."""
    companies = [
        (seed.COMPANY_GBP_ID, seed.CONNECTION_GBP_ID, (seed.ACCOUNT_GBP_CURRENT, seed.ACCOUNT_GBP_RESERVE)),
        (seed.COMPANY_USD_ID, seed.CONNECTION_USD_ID, (seed.ACCOUNT_USD_CHECKING, seed.ACCOUNT_USD_SAVINGS)),
    ]
    payments = []
    for index in range(n):
        company, connection, accounts = companies[rng.randrange(2)]
        if bulk:
            bill = seed.bulk_bill_id(company, rng.randint(1, seed.LARGE_BULK_BILLS))
            amount = Decimal(rng.randint(100, 50_000)) / 100
        else:  # small amounts: the demo bills' amounts due are 110.00 x n or 125.00 x n
            open_bills = seed.BILLS_GBP_OPEN if company == seed.COMPANY_GBP_ID else seed.BILLS_USD_OPEN
            bill = rng.choice(open_bills)
            amount = Decimal(rng.randint(1, 500)) / 100
        sends = rng.choice((1, 2, 2, 3))
        payments.append(
            Payment(
                index=index,
                company_id=company,
                connection_id=connection,
                bill_id=bill,
                account_id=rng.choice(accounts),
                amount=amount,
                reference=f"drill-{run_id}-{index:05d}",
                key=f"drill-{run_id}-{index:05d}",
                sends=sends,
                concurrent=sends > 1 and rng.random() < 0.4,
            )
        )
    return payments


def random_fault(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One fault of a random kind, timed against the compressed upstream timeout."""
    kind = rng.choice(FAULT_KINDS)
    spec: dict[str, Any] = {"method": "POST", "path": PAYMENT_PATH_GLOB, "times": 1}
    beyond_timeout = UPSTREAM_TIMEOUT_SECONDS + 1.0
    if kind == "status-5xx":
        spec.update(fault="status", status=rng.choice((500, 502, 503, 504)))
    elif kind == "status-429":
        spec.update(fault="status", status=429, retryAfter=rng.choice((0.5, 1)))
    elif kind == "timeout":
        spec.update(fault="timeout", holdSeconds=beyond_timeout)
    elif kind == "commit-then-status":
        spec.update(fault="commit-then-status", status=rng.choice((500, 502, 503)))
    elif kind == "commit-then-timeout":
        spec.update(fault="commit-then-timeout", holdSeconds=beyond_timeout)
    else:  # sometimes answered in time, sometimes after our timeout (then a retry meets Codat's 409)
        spec.update(fault="hold-then-commit", holdSeconds=rng.choice((0.5, beyond_timeout)))
    return kind, spec


# ------------------------------------------------------------------------------------------------- run


@dataclass
class Target:
    api_url: str
    sandbox_url: str
    caller_arn: str = DEFAULT_CALLER_ARN


def run_drill(
    target: Target,
    n: int = 200,
    *,
    seed_value: int = 7,
    fault_rate: float = 0.35,
    concurrency: int = 8,
    drain_deadline: float = 240.0,
    bulk: bool = True,
) -> dict[str, Any]:
    """Send, fault, drain, count. Returns the report (`ok` False on any fatal finding)."""
    rng = random.Random(seed_value)
    run_id = f"{seed_value}-{int(time.time())}"
    payments = plan(n, rng, run_id, bulk)
    api = httpx.Client(base_url=target.api_url, timeout=60, limits=httpx.Limits(max_connections=64))
    sandbox = httpx.Client(base_url=target.sandbox_url, timeout=30)
    faults: Counter[str] = Counter()
    fault_lock = threading.Lock()
    # The sends' random choices are made here, up front: threads would make them depend on timing.
    fault_before = [rng.random() < fault_rate for _ in payments]
    fault_specs = [random_fault(rng) for _ in payments]
    gaps = [[rng.uniform(0, 0.3) for _ in range(p.sends)] for p in payments]

    def arm(index: int) -> None:
        if not fault_before[index]:
            return
        kind, spec = fault_specs[index]
        sandbox.post("/_sandbox/faults", json=spec).raise_for_status()
        with fault_lock:
            faults[kind] += 1

    def send(payment: Payment) -> None:
        answer = api.post(
            payment.path,
            content=payment.body(),
            headers={"Content-Type": "application/json", "Idempotency-Key": payment.key},
        )
        payment.answers.append(answer.status_code)
        try:
            body = answer.json()
        except ValueError:
            return
        operation = body.get("operationId") or (body.get("operation") or {}).get("operationId")
        if operation:
            payment.operation_ids.add(str(operation))

    def pay(payment: Payment) -> None:
        arm(payment.index)
        if payment.concurrent:
            with ThreadPoolExecutor(max_workers=payment.sends) as together:
                list(together.map(lambda _: send(payment), range(payment.sends)))
        else:
            for gap in gaps[payment.index]:
                send(payment)
                time.sleep(gap)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(pay, payments))
    sent_at = time.monotonic()

    # The drain: every operation polled until it leaves `pending`, or the deadline passes.
    states: dict[int, dict[str, Any] | None] = {}
    waiting = list(payments)
    while True:
        still: list[Payment] = []
        for payment in waiting:
            state = _operation_state(api, payment)
            states[payment.index] = state
            if state is not None and state["status"] == "pending":
                still.append(payment)
        waiting = still
        if not waiting or time.monotonic() - sent_at > drain_deadline:
            break
        time.sleep(0.25)
    drained_at = time.monotonic()
    armed_left = sandbox.get("/_sandbox/faults").json()
    sandbox.delete("/_sandbox/faults").raise_for_status()
    records = sandbox.get("/_sandbox/payments").json()
    api.close()
    sandbox.close()
    return build_report(
        payments,
        states,
        records,
        run_id=run_id,
        faults=faults,
        faults_unused=sum(int(f.get("times") or 0) for f in armed_left),
        send_seconds=sent_at - started,
        drain_seconds=drained_at - sent_at,
        drained=not waiting,
        settings={
            "payments": n,
            "seed": seed_value,
            "faultRate": fault_rate,
            "concurrency": concurrency,
            "drainDeadlineSeconds": drain_deadline,
            "bills": "large seed bulk bills" if bulk else "demo seed open bills",
        },
    )


def _operation_state(api: httpx.Client, payment: Payment) -> dict[str, Any] | None:
    """The operation's envelope, or None when no send created one (every id any answer named is asked)."""
    ids = sorted(payment.operation_ids)
    for operation_id in ids:
        answer = api.get(f"/operations/{operation_id}")
        if answer.status_code == 200:
            envelope: dict[str, Any] = answer.json()
            return envelope
    return None


def build_report(
    payments: list[Payment],
    states: dict[int, dict[str, Any] | None],
    records: list[dict[str, Any]],
    *,
    run_id: str,
    faults: Counter[str],
    faults_unused: int,
    send_seconds: float,
    drain_seconds: float,
    drained: bool,
    settings: dict[str, Any],
) -> dict[str, Any]:
    by_reference: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_reference.setdefault(str(record.get("reference")), []).append(record)
    recorded: Counter[str] = Counter()
    end_states: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    records_by_state: dict[str, Counter[str]] = defaultdict(Counter)  # "2" = two or more
    problems: dict[str, list[dict[str, Any]]] = {
        "duplicated": [],
        "lost": [],
        "recordedButFailed": [],
        "recordedWithoutOperation": [],
        "mismatched": [],
        "severalOperations": [],
    }
    for payment in payments:
        answers.update(str(status) for status in payment.answers)
        state = states.get(payment.index)
        status = state["status"] if state else "none"
        end_states[status] += 1
        records_by_state[status][str(min(len(by_reference.get(payment.reference, [])), 2))] += 1
        mine = by_reference.get(payment.reference, [])
        count = len(mine)
        recorded["once" if count == 1 else "zero" if count == 0 else "moreThanOnce"] += 1
        where = {
            "payment": payment.index,
            "reference": payment.reference,
            "bill": payment.bill_id,
            "operationIds": sorted(payment.operation_ids),
            "status": status,
            "records": count,
            "answers": payment.answers,
        }
        if count > 1:
            problems["duplicated"].append(where)
        if (status == "succeeded" and count == 0) or status == "pending":
            problems["lost"].append(where)
        if status == "failed" and count > 0:
            problems["recordedButFailed"].append(where)
        if state is None and count > 0:
            problems["recordedWithoutOperation"].append(where)
        if len(payment.operation_ids) > 1:
            problems["severalOperations"].append(where)
        for record in mine:
            if (
                record.get("billId") != payment.bill_id
                or Decimal(str(record.get("amount"))) != payment.amount
            ):
                problems["mismatched"].append({**where, "record": record})
        result = (state or {}).get("result") or {}
        if status == "succeeded" and count == 1 and result.get("id") and result["id"] != mine[0].get("id"):
            problems["mismatched"].append({**where, "record": mine[0], "resultId": result["id"]})
    foreign = [r for r in records if not str(r.get("reference", "")).startswith(f"drill-{run_id}-")]
    counts = {name: len(found) for name, found in problems.items()}
    ok = drained and not any(counts.values())
    return {
        "ok": ok,
        "runId": run_id,
        "settings": settings,
        "sends": sum(len(p.answers) for p in payments),
        "paymentsSentConcurrently": sum(1 for p in payments if p.concurrent),
        "sendsPerPayment": dict(sorted(Counter(str(p.sends) for p in payments).items())),
        "answers": dict(sorted(answers.items())),
        "faultsArmed": dict(sorted(faults.items())),
        "faultsArmedTotal": sum(faults.values()),
        "faultsUnused": faults_unused,
        "recorded": {key: recorded.get(key, 0) for key in ("once", "zero", "moreThanOnce")},
        "endStates": dict(sorted(end_states.items())),
        "recordsByEndState": {
            state: dict(sorted(c.items())) for state, c in sorted(records_by_state.items())
        },
        "duplicated": counts["duplicated"],
        "lost": counts["lost"],
        "recordedButFailed": counts["recordedButFailed"],
        "recordedWithoutOperation": counts["recordedWithoutOperation"],
        "mismatched": counts["mismatched"],
        "severalOperations": counts["severalOperations"],
        "otherRecordsInLedger": len(foreign),
        "drained": drained,
        "sendSeconds": round(send_seconds, 2),
        "drainSeconds": round(drain_seconds, 2),
        "findings": {name: found[:20] for name, found in problems.items() if found},
    }


def summary_line(report: dict[str, Any]) -> str:
    recorded, states = report["recorded"], report["endStates"]
    state_text = ", ".join(f"{name} {count}" for name, count in states.items())
    return (
        f"drill N={report['settings']['payments']} ({report['sends']} sends, "
        f"{report['faultsArmedTotal']} faults): recorded once {recorded['once']}, zero {recorded['zero']}, "
        f"more than once {recorded['moreThanOnce']}; "
        f"duplicated {report['duplicated']}, lost {report['lost']}, "
        f"recorded-but-failed {report['recordedButFailed']}; end states: {state_text}; "
        f"drain {report['drainSeconds']} s — {'OK' if report['ok'] else 'FAILED'}"
    )


# ----------------------------------------------------------------------------------------------- stack


@contextmanager
def running_stack(extra_env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """`python -m local.stack` on free ports with STACK_ENV; yields its ready document."""
    workdir = Path(tempfile.mkdtemp(prefix="billpay-drill-"))
    ready_file = workdir / "ready.json"
    log_path = workdir / "stack.log"
    env = {
        **os.environ,
        **STACK_ENV,
        **(extra_env or {}),
        "BILLPAY_API_PORT": "0",
        "BILLPAY_SANDBOX_PORT": "0",
        "BILLPAY_EMULATOR_PORT": "0",
        "BILLPAY_LOCAL_READY_FILE": str(ready_file),
        "BILLPAY_LOCAL_EXIT_WITH_PARENT": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CODAT_BASE_URL", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "local.stack"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 120
        while not ready_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"local stack did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        ready: dict[str, Any] = json.loads(ready_file.read_text())
        ready["log"] = str(log_path)
        yield ready
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payments", "-n", type=int, default=int(os.environ.get("N") or 200))
    parser.add_argument("--seed", type=int, default=7, help="the plan's random seed (default 7)")
    parser.add_argument("--fault-rate", type=float, default=0.35, help="faults armed per payment (0.35)")
    parser.add_argument("--concurrency", type=int, default=8, help="payments in flight at once (8)")
    parser.add_argument("--drain-deadline", type=float, default=240.0, help="seconds (240)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    parser.add_argument("--api-url", help="use this running stack's API instead of starting one")
    parser.add_argument("--sandbox-url", help="its Codat sandbox (with --api-url; needs the large seed)")
    args = parser.parse_args(argv)

    def drill(target: Target) -> dict[str, Any]:
        return run_drill(
            target,
            args.payments,
            seed_value=args.seed,
            fault_rate=args.fault_rate,
            concurrency=args.concurrency,
            drain_deadline=args.drain_deadline,
        )

    if args.api_url:
        if not args.sandbox_url:
            parser.error("--api-url needs --sandbox-url")
        report = drill(Target(args.api_url, args.sandbox_url))
    else:
        print("starting the local stack (free ports, compressed retry timings, large seed)…", flush=True)
        with running_stack() as ready:
            print(f"stack up in {ready['startup_seconds']} s; drilling {args.payments} payments…", flush=True)
            report = drill(Target(ready["api_url"], ready["sandbox_url"]))
            if not report["ok"]:
                report["stackLog"] = ready["log"]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(summary_line(report))
    print(f"report: {args.report}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
