"""The exactly-once drill, small: 20 payments, each sent 1-3 times (some at once), under random faults of
every kind through the whole local stack (gateway, write functions, sweeper, retry worker, sandbox), with
our own side failing too (AWS faults on the functions' DynamoDB and SQS requests).
`make drill` is the same with N=200; see local/drill.py for the vocabulary."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from local.drill import (
    FINAL_STATES,
    STACK_ENV,
    Payment,
    Target,
    build_report,
    random_fault,
    run_drill,
    summary_line,
)
from local.harness import Stack, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.long(seconds=65)]

N = 20


@pytest.fixture(scope="module")
def drill_stack() -> Iterator[Stack]:
    """The drill's own timings and the large seed: a stack of its own, not the session's."""
    with start_stack(**STACK_ENV) as running:
        yield running


def test_every_fault_kind_can_be_armed() -> None:
    rng = random.Random(1)
    kinds = {random_fault(rng)[0] for _ in range(200)}
    assert kinds == {
        "status-5xx",
        "status-429",
        "timeout",
        "commit-then-status",
        "commit-then-timeout",
        "hold-then-commit",
    }


@pytest.mark.timeout(300)
def test_small_drill_records_every_payment_exactly_once(drill_stack: Stack) -> None:
    """Codat and our own table and queue failing at once: every kind of Codat fault at a rate high enough
    that 20 payments see most kinds, every kind of AWS fault on the functions' DynamoDB and SQS requests,
    and still each payment recorded once and each send answered definitely. (One drill for both: a drill
    with Codat faults alone proves nothing this one does not, and each costs about 40 s of waiting.)"""
    report = run_drill(
        Target.of(drill_stack),
        N,
        seed_value=12,
        fault_rate=0.6,  # more faults per payment than `make drill`, so 20 payments see most kinds
        drain_deadline=45,
        aws_fault_rate=0.1,
    )
    print(summary_line(report))
    assert report["drained"], report
    assert report["duplicated"] == 0, report["findings"]
    assert report["lost"] == 0, report["findings"]
    assert report["stuck"] == 0, report["findings"]
    assert report["recordedButFailed"] == 0, report["findings"]
    assert report["recordedWithoutOperation"] == 0, report["findings"]
    assert report["withoutDefiniteAnswer"] == 0, report["findings"]
    assert report["mismatched"] == 0, report["findings"]
    assert report["ok"]
    # It was a drill, not a quiet day: both kinds of fault were injected, the AWS faults in more than one
    # kind, and payments were resent, some at once.
    assert report["faultsArmedTotal"] >= 5
    assert report["faults"]["codatTotal"] >= 5
    assert report["faults"]["awsTotal"] >= 5
    assert len(report["faults"]["aws"]) >= 3, report["faults"]
    assert report["sends"] > N
    assert report["paymentsSentConcurrently"] > 0
    assert set(report["endStates"]) <= set(FINAL_STATES)
    assert sum(report["recorded"].values()) == N
    assert report["recorded"]["moreThanOnce"] == 0
    # Nothing else wrote to this stack's ledger, and the drill disarms what it armed.
    assert report["otherRecordsInLedger"] == 0
    assert len(drill_stack.payments()) == report["recorded"]["once"]
    assert drill_stack.aws_faults() == []


def _payment(index: int, status_answers: list[int] | None = None) -> Payment:
    return Payment(
        index=index,
        company_id="c",
        connection_id="k",
        bill_id=f"B-{index}",
        account_id="a",
        amount=Decimal("10.00"),
        reference=f"drill-run-{index:05d}",
        key=f"drill-run-{index:05d}",
        sends=1,
        concurrent=False,
        answers=status_answers or [201],
        operation_ids={f"op-{index}"},
    )


def _record(index: int, amount: str = "10.00") -> dict[str, Any]:
    reference = f"drill-run-{index:05d}"
    return {"id": f"r-{index}-{amount}", "billId": f"B-{index}", "amount": amount, "reference": reference}


def test_the_report_catches_every_kind_of_wrong_outcome() -> None:
    """The drill's judge, on a made-up ledger: each wrong outcome is counted, and any one fails the drill."""
    payments = [_payment(i) for i in range(7)]
    states: dict[int, dict[str, Any] | None] = {
        0: {"status": "succeeded"},  # recorded once: fine
        1: {"status": "succeeded"},  # recorded twice: duplicated
        2: {"status": "succeeded"},  # no record: lost
        3: {"status": "pending"},  # still pending after the drain: lost
        4: {"status": "failed"},  # failed yet recorded
        5: None,  # no operation, yet recorded
        6: {"status": "needs_review"},  # recorded for another amount: mismatched
    }
    records = [_record(0), _record(1), _record(1), _record(4), _record(5), _record(6, "11.00")]
    report = build_report(
        payments,
        states,
        records,
        run_id="run",
        faults=Counter(),
        faults_unused=0,
        send_seconds=1.0,
        drain_seconds=1.0,
        drained=True,
        settings={"payments": 7},
    )
    assert not report["ok"]
    assert report["recorded"] == {"once": 4, "zero": 2, "moreThanOnce": 1}
    assert (report["duplicated"], report["lost"], report["recordedButFailed"]) == (1, 2, 1)
    assert (report["recordedWithoutOperation"], report["mismatched"]) == (1, 1)
    assert [f["payment"] for f in report["findings"]["lost"]] == [2, 3]

    clean = build_report(
        payments[:1],
        {0: {"status": "succeeded"}},
        records[:1],
        run_id="run",
        faults=Counter(),
        faults_unused=0,
        send_seconds=1.0,
        drain_seconds=1.0,
        drained=True,
        settings={"payments": 1},
    )
    assert clean["ok"]
    assert "OK" in summary_line(clean)
