"""The bill index in memory: the unit tier's store, and a container's own when no table is configured.

Same rules as the DynamoDB store (`billpay.domain.bill_index`), applied under one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from billpay.domain.bill_index import ConnectionKey, IndexedBill, SyncState, merge
from billpay.domain.reservations import Reservation


class InMemoryBillIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[ConnectionKey, SyncState] = {}
        self._bills: dict[ConnectionKey, dict[str, IndexedBill]] = {}
        self.writes = 0  # conditional writes attempted: what a DynamoDB store would be billed for

    def state(self, key: ConnectionKey) -> SyncState | None:
        with self._lock:
            return self._states.get(key)

    def write_state(self, key: ConnectionKey, before: SyncState | None, after: SyncState) -> bool:
        with self._lock:
            self.writes += 1
            current = self._states.get(key)
            if (current is None) != (before is None) or (
                current is not None and before is not None and current.version != before.version
            ):
                return False
            self._states[key] = after
            return True

    def bill(self, key: ConnectionKey, bill_id: str) -> IndexedBill | None:
        with self._lock:
            return self._bills.get(key, {}).get(bill_id)

    def bills(self, key: ConnectionKey) -> list[IndexedBill]:
        with self._lock:
            return list(self._bills.get(key, {}).values())

    def put_bills(self, key: ConnectionKey, bills: Sequence[IndexedBill]) -> None:
        with self._lock:
            stored = self._bills.setdefault(key, {})
            for bill in bills:
                self.writes += 1
                merged = merge(stored.get(bill.bill_id), bill)
                if merged is not None:
                    stored[bill.bill_id] = merged

    def drop(self, key: ConnectionKey, bill_ids: Sequence[str], sync_started_at: float) -> int:
        dropped = 0
        with self._lock:
            stored = self._bills.get(key, {})
            for bill_id in bill_ids:
                self.writes += 1
                bill = stored.get(bill_id)
                if bill is not None and bill.seen_at < sync_started_at and bill.reserved == 0:
                    del stored[bill_id]
                    dropped += 1
        return dropped

    def reserve(self, key: ConnectionKey, bill_id: str, reservation: Reservation) -> bool:
        with self._lock:
            self.writes += 1
            bill = self._bills.get(key, {}).get(bill_id)
            if bill is None or any(r.key == reservation.key for r in bill.reservations):
                return False
            available = bill.available
            if available is not None and available < reservation.amount:
                return False
            self._bills[key][bill_id] = replace(
                bill,
                reserved=bill.reserved + reservation.amount,
                reservations=(*bill.reservations, reservation),
            )
            return True

    def apply_reservation(self, key: ConnectionKey, bill_id: str, reservation_key: str, at: float) -> None:
        with self._lock:
            self.writes += 1
            bill = self._bills.get(key, {}).get(bill_id)
            if bill is None:
                return
            kept = tuple(
                replace(r, state="applied", applied_at=at) if r.key == reservation_key else r
                for r in bill.reservations
            )
            self._bills[key][bill_id] = replace(bill, reservations=kept)

    def free(self, key: ConnectionKey, bill_id: str, reservation: Reservation) -> None:
        with self._lock:
            self.writes += 1
            bill = self._bills.get(key, {}).get(bill_id)
            if bill is None or not any(r.key == reservation.key for r in bill.reservations):
                return
            self._bills[key][bill_id] = replace(
                bill,
                reserved=bill.reserved - reservation.amount,
                reservations=tuple(r for r in bill.reservations if r.key != reservation.key),
            )

    def bills_after(self, key: ConnectionKey, after: str | None, limit: int) -> list[IndexedBill]:
        floor = None if after is None else after.encode()
        with self._lock:
            stored = self._bills.get(key, {})
            # DynamoDB's order: the UTF-8 bytes of the sort key.
            ordered = sorted(
                (bill for bill_id, bill in stored.items() if floor is None or bill_id.encode() > floor),
                key=lambda bill: bill.bill_id.encode(),
            )
        return ordered[:limit]

    def reserved_totals(self, key: ConnectionKey, bill_ids: Sequence[str]) -> dict[str, Decimal]:
        with self._lock:
            stored = self._bills.get(key, {})
            return {bill_id: stored[bill_id].in_flight for bill_id in bill_ids if bill_id in stored}

    def hold(self, key: ConnectionKey, bill_id: str, amount: str) -> None:
        """Test hook: one `held` reservation of `amount` on the bill (as a payment in flight makes)."""
        with self._lock:
            stored = self._bills[key]
            held = Reservation("test-hold#token", "test-hold", Decimal(amount), "held", 0.0)
            stored[bill_id] = replace(stored[bill_id], reserved=Decimal(amount), reservations=(held,))
