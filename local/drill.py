"""`make drill [N=200] [AWS_FAULTS=0.1]` (`python -m local.drill`): the exactly-once drill.

N payments over many bills (the sandbox's `large` seed), each sent 1-3 times with the same
Idempotency-Key — some of those sends at once — while the sandbox injects random faults of every kind
(5xx, 429 + Retry-After, timeout, commit-then-status, commit-then-timeout, hold-then-commit) with compressed
retry timings. With `--aws-faults RATE`, our own side fails too: every DynamoDB and SQS request of the
functions (API workers, retry worker, sweeper) is faulted with probability RATE by the emulator's fault proxy
(local/aws_faults.py), the four kinds mixed (reset-before, status 500/400-throttle, commit-then-timeout,
commit-then-reset).

Each send follows the client rule (docs/contract.md, Client rule): an answer with `operation` is decided by
its status; without one, on any 5xx, a lost connection, a 409 or a 422 `idempotency-key-reused` the send is
retried with the same key and the same body (bounded), until it gets a definite answer. The report counts
the 5xx answers and the sends left without a definite answer.

Then it waits for the drain (every operation out of `pending`, polled through `GET /operations/{id}`,
against a deadline), clears every fault, and counts, from the sandbox's own ledger (`GET /_sandbox/payments`,
matched to payments by their unique `reference`), how many payments were recorded once, zero times and
more than once, beside each operation's end state.

The vocabulary: *duplicated* = more than one record for an operation; *lost* = no record while the
operation is `succeeded`, or still `pending` after the drain; *stuck* = still `pending` after the drain with
no retry coming (a `guarding` claim past its lease, not in the sweeper's index, or due long ago). Also
fatal: a record for an operation that ended `failed` (failed promises "definitely not recorded") or that
does not exist, a record whose bill or amount is not the payment's, and a send the client rule could not
bring to a definite answer. `failed`, refused and `needs_review` (≤ 1 record) are counted apart.

Runs against a stack it starts itself on free ports (or one given with --api-url/--sandbox-url), writes the
report as JSON (default bench/drill.json) and prints one line; exits 1 on any fatal finding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

from local.emulator import client
from local.gateway.events import DEFAULT_CALLER_ARN
from local.harness import Stack, start_stack
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
    # The cloud's budget: under AWS faults a lookup meets held requests (a read timeout each), and a
    # compressed budget would turn them into 503s that a client retries past its patience.
    "BILLPAY_SYNC_BUDGET_SECONDS": "15",
    "BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS": "2",
    "BILLPAY_LOCAL_CONCURRENCY": "4",
    "BILLPAY_LOCAL_ACCESS_LOG": "0",
    "BILLPAY_SANDBOX_SEED": "large",
    # Codat's own default page size; the sandbox's demo default (5) would make each bill lookup page
    # through a thousand bulk bills five at a time.
    "BILLPAY_SANDBOX_PAGE_SIZE": "100",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
AWS_FAULT_KINDS = ("reset-before", "status", "commit-then-timeout", "commit-then-reset")
AWS_FAULTED_SERVICES = ("dynamodb", "sqs")
# A held answer is dropped when the client gives up (its read timeout) or, at the latest, after this.
AWS_HOLD_SECONDS = 10.0
# The client rule, bounded: this many requests per send at most, waits capped, and no more patience than
# this in all (an answer after a lost write can be 409 until the sync holder's lease, its Lambda timeout
# + 5 s, has lapsed; Retry-After says how long).
CLIENT_MAX_TRIES = 40
CLIENT_MAX_WAIT_SECONDS = 10.0
CLIENT_PATIENCE_SECONDS = 120.0
# Listings a connection's first sync may take (each carries it on) before the drill starts.
WARM_UP_TRIES = 20
# Past its due time by more than this, a pending operation is not being recovered.
STUCK_GRACE_SECONDS = 15.0
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
    answers: list[int] = field(default_factory=list)  # every answer's status; 0 = connection lost
    operation_ids: set[str] = field(default_factory=set)
    definite: list[bool] = field(default_factory=list)  # per send: did the client rule end on an answer?

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
    emulator_url: str | None = None  # the fault proxy (AWS faults need it)
    emulator_direct_url: str | None = None  # moto itself (reading items for `stuck`)
    operations_table: str | None = None

    @classmethod
    def of(cls, stack: Stack) -> Target:
        return cls(
            api_url=stack.api_url,
            sandbox_url=stack.sandbox_url,
            emulator_url=stack.emulator_url,
            emulator_direct_url=stack.emulator_direct_url,
            operations_table=stack.operations_table_name,
        )


def aws_fault_specs(rate: float, seed_value: int) -> list[dict[str, Any]]:
    """One probabilistic fault per faulted service: each request faulted with probability `rate`."""
    return [
        {
            "service": service,
            "fault": list(AWS_FAULT_KINDS),
            "probability": rate,
            "seed": seed_value * 100 + index,
            "holdSeconds": AWS_HOLD_SECONDS,
        }
        for index, service in enumerate(AWS_FAULTED_SERVICES)
    ]


def _warm_bill_index(api: httpx.Client, payments: list[Payment]) -> None:
    """List each connection's bills once, as an app does before paying: its bill index is filled before the
    faults start, so the drill measures exactly-once under faults rather than a first sync of a thousand
    bills under them (bench/ledger.py measures that)."""
    for company, connection in sorted({(p.company_id, p.connection_id) for p in payments}):
        path = f"/companies/{company}/connections/{connection}/payables/bills"
        # A first sync that does not fit one request's budget carries on from where it stopped.
        for _ in range(WARM_UP_TRIES):
            if api.get(path, timeout=120).status_code == 200:
                break
        else:
            raise RuntimeError(f"the bills of {company}/{connection} could not be listed")


def run_drill(
    target: Target,
    n: int = 200,
    *,
    seed_value: int = 7,
    fault_rate: float = 0.35,
    concurrency: int = 8,
    drain_deadline: float = 240.0,
    bulk: bool = True,
    aws_fault_rate: float = 0.0,
) -> dict[str, Any]:
    """Send, fault, drain, count. Returns the report (`ok` False on any fatal finding)."""
    if aws_fault_rate and not target.emulator_url:
        raise ValueError("AWS faults need the stack's emulator URL (its fault proxy)")
    rng = random.Random(seed_value)
    run_id = f"{seed_value}-{int(time.time())}"
    payments = plan(n, rng, run_id, bulk)
    api = httpx.Client(base_url=target.api_url, timeout=60, limits=httpx.Limits(max_connections=64))
    sandbox = httpx.Client(base_url=target.sandbox_url, timeout=30)
    emulator = httpx.Client(base_url=target.emulator_url, timeout=30) if target.emulator_url else None
    _warm_bill_index(api, payments)
    if emulator is not None:
        emulator.delete("/_emulator/faults").raise_for_status()
        for spec in aws_fault_specs(aws_fault_rate, seed_value) if aws_fault_rate else []:
            emulator.post("/_emulator/faults", json=spec).raise_for_status()
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
        """One send under the client rule: the same key and body again until a definite answer."""
        give_up_at = time.monotonic() + CLIENT_PATIENCE_SECONDS
        for attempt in range(CLIENT_MAX_TRIES):
            if time.monotonic() > give_up_at:
                break
            try:
                answer = api.post(
                    payment.path,
                    content=payment.body(),
                    headers={"Content-Type": "application/json", "Idempotency-Key": payment.key},
                )
            except httpx.TransportError:
                payment.answers.append(0)
                time.sleep(_backoff(attempt, None))
                continue
            payment.answers.append(answer.status_code)
            try:
                body = answer.json()
            except ValueError:
                body = {}
            operation = isinstance(body, dict) and (
                body.get("operationId") or (body.get("operation") or {}).get("operationId")
            )
            if operation:
                payment.operation_ids.add(str(operation))
            if operation or not _retry_by_client_rule(answer):  # with `operation`: decided by its status
                payment.definite.append(True)
                return
            time.sleep(_backoff(attempt, answer.headers.get("Retry-After")))
        payment.definite.append(False)

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

    # The drain: every operation polled until it leaves `pending`, or the deadline passes. An answer that
    # is not a state (a 5xx while AWS faults are armed) leaves the payment waiting.
    states: dict[int, dict[str, Any] | None] = {}
    waiting = list(payments)
    while True:
        still: list[Payment] = []
        for payment in waiting:
            state, known = _operation_state(api, payment)
            if known:
                states[payment.index] = state
            if not known or (state is not None and state["status"] == "pending"):
                still.append(payment)
        waiting = still
        if not waiting or time.monotonic() - sent_at > drain_deadline:
            break
        time.sleep(0.25)
    drained_at = time.monotonic()
    armed_left = sandbox.get("/_sandbox/faults").json()
    sandbox.delete("/_sandbox/faults").raise_for_status()
    aws_fired: list[dict[str, Any]] = []
    if emulator is not None:
        aws_fired = emulator.get("/_emulator/faults").json()
        emulator.delete("/_emulator/faults").raise_for_status()
        emulator.close()
    # The judgement reads without faults: the states of what was still waiting, read once more.
    for payment in waiting:
        state, known = _operation_state(api, payment)
        if known:
            states[payment.index] = state
    records = sandbox.get("/_sandbox/payments").json()
    pending_ids = [
        operation_id
        for payment in payments
        if (states.get(payment.index) or {}).get("status") == "pending"
        for operation_id in sorted(payment.operation_ids)[:1]
    ]
    stuck = _stuck(target, pending_ids)
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
        aws_faults=aws_fired,
        stuck=stuck,
        settings={
            "payments": n,
            "seed": seed_value,
            "faultRate": fault_rate,
            "awsFaultRate": aws_fault_rate,
            "awsFaultedServices": list(AWS_FAULTED_SERVICES) if aws_fault_rate else [],
            "concurrency": concurrency,
            "drainDeadlineSeconds": drain_deadline,
            "clientMaxTries": CLIENT_MAX_TRIES,
            "bills": "large seed bulk bills" if bulk else "demo seed open bills",
        },
    )


def _retry_by_client_rule(answer: httpx.Response) -> bool:
    """The client rule for an answer without `operation`: 5xx, 409 and 422 idempotency-key-reused are
    retried with the same key and body (an answer with `operation` is decided by its status)."""
    status = answer.status_code
    if status >= 500 or status == 409:
        return True
    return status == 422 and "idempotency-key-reused" in answer.text


def _backoff(attempt: int, retry_after: str | None) -> float:
    try:
        wait = float(retry_after) if retry_after else 0.2 * 2**attempt
    except ValueError:
        wait = 0.2 * 2**attempt
    return max(0.0, min(wait, CLIENT_MAX_WAIT_SECONDS))


def _stuck(target: Target, operation_ids: list[str]) -> list[dict[str, Any]] | None:
    """Operations still pending with no retry coming, read from the table itself (None: not measured)."""
    if not target.emulator_direct_url or not target.operations_table:
        return None
    table = client("dynamodb", target.emulator_direct_url)
    now = time.time()
    found = []
    for operation_id in operation_ids:
        item = table.get_item(
            TableName=target.operations_table, Key={"operationId": {"S": operation_id}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            continue
        phase = item.get("phase", {}).get("S")
        lease_until = float(item["leaseUntil"]["N"]) if "leaseUntil" in item else None
        due_at = float(item["dueAt"]["N"]) if "dueAt" in item else None
        lease_over = lease_until is None or lease_until < now
        reason = None
        if phase == "guarding" and lease_over:
            reason = "guarding claim past its lease (never listed, never sent)"
        elif "dueBucket" not in item:
            reason = "pending but not in the sweeper's index"
        elif due_at is not None and now - due_at > STUCK_GRACE_SECONDS and lease_over:
            reason = f"due {now - due_at:.0f} s ago and not taken"
        if reason:
            found.append(
                {
                    "operationId": operation_id,
                    "phase": phase,
                    "leaseHolder": item.get("leaseHolder", {}).get("S"),
                    "leaseUntil": lease_until,
                    "dueAt": due_at,
                    "reason": reason,
                }
            )
    return found


def _operation_state(api: httpx.Client, payment: Payment) -> tuple[dict[str, Any] | None, bool]:
    """(the operation's envelope or None when no send created one, whether that is known): every id any
    answer named is asked; an answer that is neither 200 nor 404 leaves it unknown."""
    known = True
    for operation_id in sorted(payment.operation_ids):
        try:
            answer = api.get(f"/operations/{operation_id}")
        except httpx.TransportError:
            known = False
            continue
        if answer.status_code == 200:
            envelope: dict[str, Any] = answer.json()
            return envelope, True
        if answer.status_code != 404:
            known = False
    return None, known


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
    aws_faults: list[dict[str, Any]] | None = None,
    stuck: list[dict[str, Any]] | None = None,
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
        "withoutDefiniteAnswer": [],
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
        if not all(payment.definite):
            problems["withoutDefiniteAnswer"].append(where)
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
    ok = drained and not any(counts.values()) and not stuck
    aws_by_kind: Counter[str] = Counter()
    aws_by_service: dict[str, dict[str, int]] = {}
    for fault in aws_faults or []:
        fired = {str(kind): int(count) for kind, count in (fault.get("fired") or {}).items()}
        aws_by_service[str(fault.get("service") or "any")] = dict(sorted(fired.items()))
        for kind, count in fired.items():
            aws_by_kind[kind.split(":", 1)[0]] += count
    all_answers = [status for p in payments for status in p.answers]
    return {
        "ok": ok,
        "runId": run_id,
        "settings": settings,
        "sends": sum(len(p.definite) for p in payments),
        "requests": sum(len(p.answers) for p in payments),
        "paymentsSentConcurrently": sum(1 for p in payments if p.concurrent),
        "sendsPerPayment": dict(sorted(Counter(str(p.sends) for p in payments).items())),
        "answers": dict(sorted(answers.items())),
        "faultsArmed": dict(sorted(faults.items())),
        "faultsArmedTotal": sum(faults.values()),
        "faultsUnused": faults_unused,
        "faults": {
            "codat": dict(sorted(faults.items())),
            "codatTotal": sum(faults.values()),
            "aws": dict(sorted(aws_by_kind.items())),
            "awsTotal": sum(aws_by_kind.values()),
            "awsByService": aws_by_service,
        },
        "client": {
            "answers5xx": sum(1 for status in all_answers if status >= 500),
            "connectionsLost": sum(1 for status in all_answers if status == 0),
            "retries": len(all_answers) - sum(len(p.definite) for p in payments),
            "sendsEndedDefinite": sum(1 for p in payments for ended in p.definite if ended),
            "sendsWithoutDefiniteAnswer": sum(1 for p in payments for ended in p.definite if not ended),
        },
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
        "withoutDefiniteAnswer": counts["withoutDefiniteAnswer"],
        "stuck": None if stuck is None else len(stuck),
        "otherRecordsInLedger": len(foreign),
        "drained": drained,
        "sendSeconds": round(send_seconds, 2),
        "drainSeconds": round(drain_seconds, 2),
        "findings": {
            **{name: found[:20] for name, found in problems.items() if found},
            **({"stuck": stuck[:20]} if stuck else {}),
        },
    }


def summary_line(report: dict[str, Any]) -> str:
    recorded, states = report["recorded"], report["endStates"]
    state_text = ", ".join(f"{name} {count}" for name, count in states.items())
    return (
        f"drill N={report['settings']['payments']} ({report['sends']} sends, "
        f"{report['faultsArmedTotal']} Codat faults, {report['faults']['awsTotal']} AWS faults): "
        f"recorded once {recorded['once']}, zero {recorded['zero']}, "
        f"more than once {recorded['moreThanOnce']}; "
        f"duplicated {report['duplicated']}, lost {report['lost']}, stuck {report['stuck']}, "
        f"without a definite answer {report['withoutDefiniteAnswer']} "
        f"({report['client']['answers5xx']} 5xx answers retried), "
        f"recorded-but-failed {report['recordedButFailed']}; end states: {state_text}; "
        f"drain {report['drainSeconds']} s — {'OK' if report['ok'] else 'FAILED'}"
    )


# ----------------------------------------------------------------------------------------------- stack


@contextmanager
def running_stack(extra_env: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """`python -m local.stack` on free ports with STACK_ENV (local/harness.py); yields its ready document
    plus `log`, the stack's log file."""
    with start_stack(**{**STACK_ENV, **(extra_env or {})}) as stack:
        yield {**stack.ready, "log": str(stack.log_path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payments", "-n", type=int, default=int(os.environ.get("N") or 200))
    parser.add_argument("--seed", type=int, default=7, help="the plan's random seed (default 7)")
    parser.add_argument("--fault-rate", type=float, default=0.35, help="faults armed per payment (0.35)")
    parser.add_argument("--concurrency", type=int, default=8, help="payments in flight at once (8)")
    parser.add_argument("--drain-deadline", type=float, default=240.0, help="seconds (240)")
    parser.add_argument(
        "--aws-faults",
        type=float,
        default=float(os.environ.get("AWS_FAULTS") or 0),
        metavar="RATE",
        help="fault each DynamoDB/SQS request of the functions with this probability (0: none)",
    )
    parser.add_argument(
        "--emulator-url", help="with --api-url: its AWS emulator (fault proxy), for AWS faults"
    )
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
            aws_fault_rate=args.aws_faults,
        )

    if args.api_url:
        if not args.sandbox_url:
            parser.error("--api-url needs --sandbox-url")
        if args.aws_faults and not args.emulator_url:
            parser.error("--aws-faults with --api-url needs --emulator-url")
        report = drill(Target(args.api_url, args.sandbox_url, emulator_url=args.emulator_url))
    else:
        print("starting the local stack (free ports, compressed retry timings, large seed)…", flush=True)
        with start_stack(**STACK_ENV) as stack:
            print(
                f"stack up in {stack.ready['startup_seconds']} s; drilling {args.payments} payments…",
                flush=True,
            )
            report = drill(Target.of(stack))
            if not report["ok"]:
                report["stackLog"] = str(stack.log_path)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(summary_line(report))
    print(f"report: {args.report}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
