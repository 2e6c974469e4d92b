"""Every interleaving of our own side's faults, on the fake store with a fake clock
(docs/contract.md, Operation life cycle).

For each transition a payment goes through, crossed with {not applied, applied but the answer lost} and
{the request goes on, the process dies there}: the client follows the client rule (any 5xx or lost
answer → the same key and body again), the sweeper and the retry worker recover what is left, and in the end
- Codat recorded the payment at most once, and exactly once if our record says `succeeded`;
- nothing is left `pending` (every operation ends, or was never recorded and is gone);
- no answer without `operation` was given after a claim unless nothing of it is left.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from billpay.domain.lifecycle import unpublished
from billpay.domain.operations import KIND_BILL_PAYMENT, Operation, Resolution, UpstreamRequest
from billpay.domain.outcomes import Outcome, classify_response
from billpay.domain.ports import StoreUnavailable
from billpay.domain.retry_policy import RetryPolicy
from billpay.problems import Problem
from billpay.service.retry import PolicyPlanner, RetryWorker
from billpay.service.sweep import Sweeper
from billpay.service.write_operation import (
    Answered,
    Budget,
    NotSent,
    QueueHandOff,
    Refused,
    StateUnknown,
    WriteRequest,
    WriteResult,
    execute_write,
)

from ops.resolve import resolve
from tests.fixtures.fake_store import (
    Answer,
    FakeBus,
    FakeClock,
    FakeCodat,
    FakeQueue,
    FakeStore,
    FaultKind,
    ProcessDied,
)

LAMBDA_MILLIS = 20_000
CALLER = "arn:aws:sts::123456789012:assumed-role/app/session-1"


def _request(key: str = "invoice-1") -> WriteRequest:
    return WriteRequest(
        kind=KIND_BILL_PAYMENT,
        route="create-bill-payment",
        caller_arn=CALLER,
        client_id="app",
        path_params=("co", "conn", "bill-1"),
        client_key=key,
        canonical_body={"amount": "10"},
        upstream=UpstreamRequest("POST", "/companies/co/connections/conn/payables/bills/b/payment", b"{}"),
    )


@dataclass
class World:
    """The table, Codat, the queue and the clock shared by every process of one scenario."""

    clock: FakeClock = field(default_factory=FakeClock)
    store: FakeStore = field(default_factory=FakeStore)
    codat: FakeCodat = field(default_factory=FakeCodat)
    queue: FakeQueue = field(default_factory=FakeQueue)
    bus: FakeBus = field(default_factory=FakeBus)
    policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(4800, 5, 600))
    answers: list[WriteResult | str] = field(default_factory=list)

    def planner(self) -> PolicyPlanner:
        return PolicyPlanner(self.policy, random.Random(7))

    def hand_off(self) -> QueueHandOff:
        return QueueHandOff(self.queue, 90.0)

    def worker(self, sender: Any = None) -> RetryWorker:
        return RetryWorker(
            store=self.store.process(),
            sender=sender or self.codat,
            planner=self.planner(),
            upstream_timeout=8.0,
            hand_off=self.hand_off(),
            publisher=self.bus,
            clock=self.clock,
        )

    def deliver(self) -> None:
        """Every message sent so far, each to a worker of its own (a process that may die)."""
        for message in self.queue.drain():
            try:
                self.worker().process_message(
                    message.to_body(), remaining_millis=self.remaining(self.clock())
                )
            except (ProcessDied, RuntimeError, StoreUnavailable):
                continue  # SQS redelivers; the lease lapses and the sweeper finds it again

    def remaining(self, started: float) -> Any:
        return lambda: max(int(LAMBDA_MILLIS - (self.clock() - started) * 1000), 0)

    def post(self, request: WriteRequest, guard: Any = None) -> WriteResult | str:
        """One API invocation in a process of its own; 'died' when that process died."""
        try:
            result = execute_write(
                request,
                store=self.store.process(),
                sender=self.codat,
                budget=Budget(self.remaining(self.clock()), 15.0, 8.0),
                retry_planner=self.planner(),
                guard=guard,
                hand_off=self.hand_off(),
                publisher=self.bus,
                clock=self.clock,
            )
        except ProcessDied:
            self.answers.append("died")
            return "died"
        self.answers.append(result)
        return result

    def client(self, request: WriteRequest, guard: Any = None, tries: int = 12) -> WriteResult | str:
        """A client that keeps the client rule: the same key and body again after any 5xx or lost answer,
        and after a 409; it stops at an answer that decides (an operation's state, or a refusal)."""
        result: WriteResult | str = "died"
        for _ in range(tries):
            result = self.post(request, guard)
            if isinstance(result, Answered):
                return result
            if isinstance(result, Refused) and result.problem.status != 409:
                return result
            # died (a lost connection or a 502/504 from the gateway), 409, 503: wait, then the same again
            self.clock.advance(LAMBDA_MILLIS / 1000 + 6)
        return result

    def sweeper(self) -> Sweeper:
        return Sweeper(
            store=self.store.process(),
            index=self.store.process(),
            queue=self.queue,
            policy=self.policy,
            publisher=self.bus,
            clock=self.clock,
        )

    def recover(self, rounds: int = 40) -> None:
        """Sweeps and retry workers until nothing is pending or unpublished (each a process of its own)."""
        for _ in range(rounds):
            if not any(op.status == "pending" or unpublished(op) for op in self.store.items.values()):
                return
            self.clock.advance(30)
            sweeper = self.sweeper()
            self.deliver()  # hand-offs, due within the 30 s just passed
            try:
                sweeper.sweep(remaining_millis=self.remaining(self.clock()))
            except ProcessDied:
                continue
            self.deliver()

    def check(self) -> None:
        records = sum(self.codat.records.values())
        assert records <= 1, f"recorded {records} times"
        ops = list(self.store.items.values())
        for op in ops:
            assert op.status != "pending", f"left pending: {op}"
            if op.status == "succeeded":
                assert records == 1
            if op.status == "failed":
                assert records == 0, "failed although Codat recorded it"
        if not ops or all(op.phase == "guarding" for op in ops):
            assert records == 0
        for op in ops:
            if op.phase == "settled":
                assert not unpublished(op), "a terminal state's event was never published"
                published = [e for e in self.bus.events if e.detail["operationId"] == op.operation_id]
                assert published and published[-1].detail["status"] == op.status


# Transitions a payment's happy path writes, with the occurrence at which to fault: the claim, mark sent,
# the settle; and in recovery the sweeper's lease, the worker's lease and the worker's settle (after a
# first attempt that met a 503).
SYNC_TRANSITIONS = [("claim", 1), ("mark_sent", 1), ("settle", 1)]
RECOVERY_TRANSITIONS = [("take_lease", 1), ("take_lease", 2), ("settle", 2)]
KINDS: list[FaultKind] = ["not_applied", "applied_unknown"]


@pytest.mark.parametrize("dies", [False, True], ids=["goes-on", "dies"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("transition", "nth"), SYNC_TRANSITIONS)
def test_a_fault_on_the_synchronous_path_never_records_twice_nor_leaves_it_pending(
    transition: str, nth: int, kind: FaultKind, dies: bool
) -> None:
    world = World()
    world.store.inject(transition, kind, nth=nth, dies=dies)
    world.client(_request())
    world.recover()
    world.check()
    assert sum(world.codat.records.values()) == 1, "the payment must end recorded: the client kept retrying"
    assert [op.status for op in world.store.items.values()] == ["succeeded"]


@pytest.mark.parametrize("dies", [False, True], ids=["goes-on", "dies"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("transition", "nth"), RECOVERY_TRANSITIONS)
def test_a_fault_during_recovery_never_records_twice_nor_leaves_it_pending(
    transition: str, nth: int, kind: FaultKind, dies: bool
) -> None:
    world = World()
    world.codat.script.append(Answer(503, {}, b'{"statusCode": 503, "error": "busy"}'))
    world.store.inject(transition, kind, nth=nth, dies=dies)
    first = world.client(_request())
    assert isinstance(first, Answered)
    world.recover()
    world.check()
    assert [op.status for op in world.store.items.values()] == ["succeeded"]
    assert sum(world.codat.records.values()) == 1


@pytest.mark.parametrize("dies", [False, True], ids=["goes-on", "dies"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_guard_refusal_whose_release_is_unknown_answers_with_the_operation_or_confirms_it(
    kind: FaultKind, dies: bool
) -> None:
    world = World()
    world.store.inject("release", kind, dies=dies)

    def refuse(_claimed: Operation) -> None:
        raise Problem(422, "amount-exceeds-due", "Amount exceeds due", "too much")

    result = world.post(_request(), refuse)
    if isinstance(result, Refused):
        # Without `operation`: only once nothing of the claim is left.
        assert not world.store.items
    else:
        assert result == "died" or isinstance(result, StateUnknown)
    # The client, following the rule, sends the same key and body again until it gets the refusal.
    final = world.client(_request(), refuse)
    assert isinstance(final, Refused) and final.problem.type == "amount-exceeds-due"
    assert not world.store.items and world.codat.sends == 0


def test_a_mark_sent_applied_with_its_answer_lost_sends_once_and_answers_the_outcome() -> None:
    """The review's finding: mark-sent applied, answer lost → once a bare 500 that read as "nothing sent",
    after which a corrected request under a new key and the sweeper's send of the original recorded twice."""
    world = World()
    world.store.inject("mark_sent", "applied_unknown")
    result = world.post(_request())
    assert isinstance(result, Answered) and result.op.status == "succeeded"
    assert world.codat.sends == 1
    world.recover()
    world.check()


def test_a_mark_sent_learned_too_late_settles_the_unsent_attempt_as_clear() -> None:
    world = World()
    world.store.inject("mark_sent", "applied_unknown")
    original_get = world.store._get

    def slow_get(operation_id: str) -> Operation | None:
        world.clock.advance(14.5)  # the read that learns the truth eats the budget
        return original_get(operation_id)

    world.store._get = slow_get  # type: ignore[method-assign]
    result = world.post(_request())
    assert isinstance(result, Answered) and result.op.status == "pending"
    assert world.codat.sends == 0
    assert result.op.attempts == 1 and result.op.clear_attempts == 1
    world.store._get = original_get  # type: ignore[method-assign]
    world.recover()
    world.check()
    (op,) = world.store.items.values()
    assert op.status == "succeeded" and op.attempts == 2


def test_when_even_the_read_fails_the_answer_is_state_unknown_with_the_operation() -> None:
    world = World()
    world.store.inject("mark_sent", "applied_unknown")
    world.store.fail_reads(1, after=1)  # the look-up of a v1 record reads first
    result = world.post(_request())
    assert isinstance(result, StateUnknown)
    assert result.op.operation_id and result.retry_after >= 1
    assert world.codat.sends == 0
    # The rule: the same key and body again. A replay answers 409 while the sync lease lives, then 202.
    world.recover()
    world.check()
    final = world.client(_request())
    assert isinstance(final, Answered) and final.op.status == "succeeded"
    assert sum(world.codat.records.values()) == 1


def test_a_claim_whose_effect_is_unknown_and_not_stored_answers_service_unavailable() -> None:
    world = World()
    world.store.inject("claim", "not_applied")
    result = world.post(_request())
    assert isinstance(result, NotSent)
    assert not world.store.items and world.codat.sends == 0


def test_a_settle_too_large_for_the_store_is_written_minimal_not_left_pending() -> None:
    """A 400 with a 200 KB error text: once the settle failed and the operation sat `pending` for the whole
    window, then ended `needs_review` although Codat refused it outright."""
    world = World()
    huge = "x" * 200_000
    world.codat.script.append(
        Answer(400, {}, ('{"statusCode": 400, "error": "' + huge + '", "correlationId": "c1"}').encode())
    )
    result = world.post(_request())
    assert isinstance(result, Answered) and result.op.status == "failed"
    (op,) = world.store.items.values()
    assert op.status == "failed" and op.phase == "settled"
    assert len(str(op.error)) < 100_000


def test_a_settle_the_store_rejects_is_retried_with_the_minimal_fields() -> None:
    world = World()
    world.store.inject("settle", "rejected")
    result = world.post(_request())
    assert isinstance(result, Answered) and result.op.status == "succeeded"
    (op,) = world.store.items.values()
    assert op.status == "succeeded" and op.result is not None and op.result.truncated


def test_a_refusal_after_an_attempt_that_may_have_applied_ends_needs_review() -> None:
    """A 401 during a key rotation says nothing about the earlier attempt that timed out."""
    world = World()
    world.codat.script.extend(
        [
            Answer(504, {}, b'{"statusCode": 504, "error": "timeout", "correlationId": "a"}'),
            Answer(401, {}, b'{"statusCode": 401, "error": "unauthorised", "correlationId": "b"}'),
        ]
    )
    world.post(_request())
    world.recover()
    (op,) = world.store.items.values()
    assert op.status == "needs_review"


def test_the_worker_computes_its_lease_after_a_slow_key_fetch() -> None:
    """The review's finding: the lease was computed before the key fetch, and could end before the send."""
    world = World()
    world.codat.script.append(Answer(503, {}, b'{"statusCode": 503}'))
    world.post(_request())
    world.queue.drain()  # the hand-off message is lost: the sweeper recovers once its lease lapses
    world.clock.advance(200)
    sweeper = Sweeper(
        store=world.store.process(),
        index=world.store.process(),
        queue=world.queue,
        policy=world.policy,
        clock=world.clock,
    )
    sweeper.sweep(remaining_millis=lambda: 60_000)
    (message,) = world.queue.drain()

    class SlowKey(FakeCodat):
        def prepare(self) -> None:
            world.clock.advance(50)  # a cold Secrets Manager read

        def post_keyed(self, path: str, body: bytes, idempotency_key: str, timeout: float) -> Any:
            (op,) = world.store.items.values()
            assert op.lease_until is not None and op.lease_until > world.clock() + timeout
            return super().post_keyed(path, body, idempotency_key, timeout)

    started = world.clock()
    deadline = started + 90

    def remaining() -> int:
        return max(int((deadline - world.clock()) * 1000), 0)

    processed = world.worker(SlowKey()).process_message(message.to_body(), remaining_millis=remaining)
    assert processed.disposition == "settled" and processed.status == "succeeded"
    (op,) = world.store.items.values()
    assert op.updated_at  # settled by the worker that held the lease


def test_outcome_classes_used_above_are_what_the_table_says() -> None:
    # A guard against the scenario scripts drifting from the classification they rely on.
    maybe: Outcome = classify_response(504, {}, b"{}", earlier_correlation_ids=(), now=0.0)
    refused: Outcome = classify_response(401, {}, b"{}", earlier_correlation_ids=(), now=0.0)
    assert maybe.cls == "maybe_applied" and refused.end == "failed"


def test_a_transient_failure_is_retried_when_due_through_the_queue_not_at_the_next_sweep() -> None:
    world = World()
    world.codat.script.append(Answer(503, {}, b'{"statusCode": 503, "correlationId": "x"}'))
    first = world.post(_request())
    assert isinstance(first, Answered) and first.op.status == "pending"
    (op,) = world.store.items.values()
    assert op.lease_holder == "queue" and op.next_attempt_at is not None
    assert op.lease_until == op.next_attempt_at + 90.0
    assert world.queue.delays == [pytest.approx(op.next_attempt_at - world.clock(), abs=1)]
    assert world.queue.delays[0] <= 5  # the base backoff, not a sweep interval
    world.clock.advance(world.queue.delays[0])
    world.deliver()  # no sweep at all
    (op,) = world.store.items.values()
    assert op.status == "succeeded" and op.attempts == 2
    assert sum(world.codat.records.values()) == 1


def test_a_lost_hand_off_is_recovered_by_the_sweeper_once_its_lease_lapses() -> None:
    world = World()
    world.queue.lose_next = 1
    world.codat.script.append(Answer(503, {}, b'{"statusCode": 503}'))
    world.post(_request())
    (op,) = world.store.items.values()
    assert op.lease_holder == "queue" and not world.queue.messages
    sweeper = Sweeper(
        store=world.store.process(),
        index=world.store.process(),
        queue=world.queue,
        policy=world.policy,
        clock=world.clock,
    )
    world.clock.advance(30)
    assert sweeper.sweep(remaining_millis=lambda: 60_000).leased == 0  # the queue's lease still holds
    world.recover()
    world.check()
    (op,) = world.store.items.values()
    assert op.status == "succeeded"


def test_each_terminal_transition_publishes_one_event_without_raw_bodies() -> None:
    world = World()
    result = world.post(_request())
    assert isinstance(result, Answered) and result.op.status == "succeeded"
    (event,) = world.bus.events
    assert event.detail_type == "Operation Succeeded"
    assert event.detail["version"] == result.op.version and event.event_id.endswith(f":{result.op.version}")
    assert event.detail["result"] == {"id": "payment-1"}
    assert "rawBody" not in str(event.detail)
    (op,) = world.store.items.values()
    assert not unpublished(op) and op.published_version == result.op.version
    assert op.updated_at == result.op.updated_at  # recording the publication is not a change of state


def test_an_event_the_bus_refused_is_published_by_the_sweeper_after_its_grace() -> None:
    world = World()
    world.bus.fail_next = 1
    world.post(_request())
    assert not world.bus.events
    world.sweeper().sweep(remaining_millis=lambda: 60_000)
    assert not world.bus.events  # the holder's grace has not passed
    world.clock.advance(31)
    report = world.sweeper().sweep(remaining_millis=lambda: 60_000)
    assert report.republished == 1 and [e.detail_type for e in world.bus.events] == ["Operation Succeeded"]
    world.check()


def test_needs_review_then_resolved_publishes_both_the_highest_version_last() -> None:
    world = World()
    world.codat.script.append(Answer(422, {}, b'{"statusCode": 422, "correlationId": "k"}'))
    world.post(_request())
    (op,) = world.store.items.values()
    assert op.status == "needs_review" and not unpublished(op)
    assert world.store.open_reviews() == 1
    resolve(
        world.store.process(), op.operation_id, "failed", "checked the ledger", by="me", clock=world.clock
    )
    (op,) = world.store.items.values()
    assert op.resolution is not None and unpublished(op)
    assert op.resolution == Resolution("failed", "checked the ledger", "me", op.resolution.at, "needs_review")
    world.clock.advance(31)
    world.sweeper().sweep(remaining_millis=lambda: 60_000)
    kinds = [(e.detail_type, e.detail["version"]) for e in world.bus.events]
    assert [k for k, _ in kinds] == ["Operation Needs Review", "Operation Resolved"]
    assert kinds[0][1] < kinds[1][1]
    assert world.store.open_reviews() == 0


def test_a_window_that_closes_publishes_the_end() -> None:
    world = World(policy=RetryPolicy(60, 5, 10))
    world.codat.script.extend([Answer(429, {"Retry-After": "5"}, b"{}") for _ in range(40)])
    world.post(_request())
    world.recover()
    (op,) = world.store.items.values()
    assert op.status == "failed"
    assert world.bus.events[-1].detail_type == "Operation Failed"
    world.check()
