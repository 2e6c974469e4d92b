"""A payment's reservation on its bill: made after the guards, before mark-sent; settled with the operation
(docs/contract.md, Reservations; the rules are `billpay.domain.reservations`').

- `reserve`: one conditional write on the bill's index item. If the bill cannot take it, every other
  reservation on the bill is first judged by its own operation record (dropped, applied, or kept) and the
  write tried once more; only then is the payment refused `amount-exceeds-due`.
- `released` / `settled`: what the synchronous path does when its claim is released or its operation
  ends. A holder that dies before either, or a retry that ends elsewhere, leaves the reservation as it
  was; the next reservation attempt on the bill that does not fit derives it from the operation record.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote

from billpay.domain.bill_index import BillIndexStore, ConnectionKey, IndexedBill, rewound
from billpay.domain.operations import KIND_BILL_PAYMENT, Operation
from billpay.domain.ports import OperationStore
from billpay.domain.reservations import Reservation, reflected, reservation_key, verdict
from billpay.observability import logger

_PAYMENT_PATH = re.compile(r"^/companies/([^/]+)/connections/([^/]+)/payables/bills/([^/]+)/payment$")


def payment_target(op: Operation) -> tuple[ConnectionKey, str, Decimal] | None:
    """(connection, bill id, amount) of a bill payment, from its stored upstream request."""
    if op.kind != KIND_BILL_PAYMENT:
        return None
    match = _PAYMENT_PATH.match(op.upstream_request.path)
    if match is None:
        return None
    try:
        amount = Decimal(str(json.loads(op.upstream_request.body)["amount"]))
    except (ValueError, KeyError, TypeError, InvalidOperation):
        return None
    company, connection, bill = (unquote(part) for part in match.groups())
    return (company.lower(), connection.lower()), bill, amount


class Reservations:
    def __init__(
        self, index: BillIndexStore, operations: OperationStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.index = index
        self.operations = operations
        self.clock = clock

    def reserve(self, claimed: Operation, key: ConnectionKey, bill_id: str, amount: Decimal) -> bool:
        """Reserve `amount` of the bill for the claimed operation; False when the bill cannot take it
        even after every other reservation was judged by its own operation."""
        assert claimed.claim_token is not None
        reservation = Reservation(
            key=reservation_key(claimed.operation_id, claimed.claim_token),
            operation_id=claimed.operation_id,
            amount=amount,
            state="held",
            at=self.clock(),
        )
        if self.index.reserve(key, bill_id, reservation):
            return True
        bill = self.index.bill(key, bill_id)
        if bill is None:
            return False
        if any(r.key == reservation.key for r in bill.reservations):
            return True  # our own earlier write (its answer lost)
        if not self.tidy(key, bill, exclude=reservation.key):
            return False
        return self.index.reserve(key, bill_id, reservation)

    def tidy(self, key: ConnectionKey, bill: IndexedBill, *, exclude: str = "") -> bool:
        """Judge every reservation on the bill by its operation record; True when any was dropped."""
        now = self.clock()
        dropped = False
        for held in bill.reservations:
            if held.key == exclude:
                continue
            if reflected(held, bill.seen_at):
                self.index.free(key, bill.bill_id, held)
                dropped = True
                continue
            judged = verdict(held, self.operations.get(held.operation_id), now)
            if judged == "drop":
                self.index.free(key, bill.bill_id, held)
                dropped = True
            elif judged == "apply":
                # Its holder never marked it (it died, or a retry ended elsewhere): applied from now, and
                # dropped by the next refresh that begins after this.
                self.index.apply_reservation(key, bill.bill_id, held.key, now)
        if dropped:
            logger.info("stale reservations dropped", extra={"billId": bill.bill_id})
        return dropped

    def released(self, claimed: Operation) -> None:
        """The claim was released (nothing sent): its reservation, if any, goes."""
        self._end(claimed, succeeded=False)

    def settled(self, op: Operation) -> None:
        """An operation ended: `succeeded` → applied; `failed` → dropped; anything else keeps it held."""
        if op.status in ("succeeded", "failed"):
            self._end(op, succeeded=op.status == "succeeded")

    def _rewind(self, key: ConnectionKey, op: Operation) -> None:
        state = self.index.state(key)
        if state is None or op.first_attempt_at is None:
            return
        after = rewound(state, op.first_attempt_at)
        if after is not None:
            self.index.write_state(key, state, after)  # lost to another writer: it moved on, fine

    def _end(self, op: Operation, *, succeeded: bool) -> None:
        target = payment_target(op)
        if target is None or op.claim_token is None:
            return
        key, bill_id, amount = target
        res_key = reservation_key(op.operation_id, op.claim_token)
        try:
            if succeeded:
                self.index.apply_reservation(key, bill_id, res_key, self.clock())
                self._rewind(key, op)
            else:
                held = Reservation(res_key, op.operation_id, amount, "held", self.clock())
                self.index.free(key, bill_id, held)
        except Exception:
            # Derived again from the operation record by the next reservation that does not fit.
            logger.exception("could not settle a reservation", extra={"operationId": op.operation_id})


class PaymentHold:
    """One payment request's `Holds`: the reservation its guard makes, let go or settled with it (and
    nothing to do, and no request spent, when the guard refused before reserving)."""

    def __init__(self, reservations: Reservations) -> None:
        self.reservations = reservations
        self.made = False

    def reserve(self, claimed: Operation, key: ConnectionKey, bill_id: str, amount: Decimal) -> bool:
        self.made = self.reservations.reserve(claimed, key, bill_id, amount)
        return self.made

    def released(self, claimed: Operation) -> None:
        if self.made:
            self.reservations.released(claimed)

    def settled(self, op: Operation) -> None:
        if self.made:
            self.reservations.settled(op)
