"""The bill index's rules: what a bill item holds, when a refresh may overwrite it, when to re-sync.

Codat has no read for one bill and no page size on list-bills, and an SMB ledger holds thousands of open
bills, so the payment guards read bills from an index (one item per bill of a connection, plus one sync
state per connection) that Codat's own answers keep up to date:

- The first lookup of a connection starts a **full sync**: it pages the open bills
  (`status=Open||status=PartiallyPaid`). A sync is resumable: it stops at the bill a lookup needs, the
  continuation token is kept, and later lookups carry it on until the pages end. Pages read at different
  times are stitched together by the incremental refresh below.
- Every later lookup **refreshes incrementally**: `sourceModifiedDate>{watermark - 5 min}` (any status, so
  bills that became Paid or Void are seen too), paged, and moves the watermark to when that refresh began.
  The 5 minutes absorb clock skew between us and the platform and writes that land while we read.
- A **full re-sync** starts when the last completed full sync began `resync_seconds` ago (default 6 h):
  bills without `sourceModifiedDate` (some platforms, voided bills) never show up incrementally. When it
  completes, bills it did not list, and that nothing has seen since it began, are dropped from the index.
- A refresh writes a bill only if its `sourceModifiedDate` does not go backwards (`supersedes`), so a slow
  refresh can never put an older `amountDue` over a newer one. `amountDue` is only ever the platform's.

Every time here is seconds since the epoch on our clock (`time.time()`); platform dates are compared as
normalised UTC strings (`modified_key`), which sort like the instants they name.

Reservations (operation id + claim token -> amount, `held` or `applied`; `billpay.domain.reservations`)
live on the bill's item: `available` = `amountDue` - every reservation, stored so a condition can test it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from billpay.domain.reservations import Reservation, reflected

OPEN_STATUSES: tuple[str, ...] = ("Open", "PartiallyPaid")
OPEN_BILLS_QUERY = "status=Open||status=PartiallyPaid"
LAG_MARGIN_SECONDS = 300.0
DEFAULT_RESYNC_SECONDS = 21600.0
# How many pages of a full re-sync a lookup carries on when it already knows its bill: a re-sync of a
# large ledger spreads over lookups instead of making one payment wait for every page.
SYNC_PAGES_PER_LOOKUP = 2
# A refresh moves the stored watermark only once it is this far behind: a busy connection then writes its
# sync state once a minute, not on every payment, at the price of a window of up to 6 minutes, not 5.
WATERMARK_STEP_SECONDS = 60.0


def iso_utc(seconds: float) -> str:
    """Codat's query date format: `2026-12-02T10:00:00.000Z`."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def modified_key(raw: Any) -> str:
    """A platform date as a sortable UTC string; "" for a missing or unreadable one (sorts first).

    A date without a zone is taken as UTC, as Codat documents its dates.
    """
    if not isinstance(raw, str) or not raw.strip():
        return ""
    try:
        parsed = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return ""
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def supersedes(incoming_key: str, stored_key: str | None) -> bool:
    """The merge rule: a refresh's copy replaces the stored one unless it is older (equal: same version)."""
    return stored_key is None or incoming_key >= stored_key


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@dataclass(frozen=True)
class IndexedBill:
    """One bill of a connection as the index holds it: the fields the guards read, and Codat's body."""

    bill_id: str
    status: str | None
    currency: str | None
    amount_due: Decimal | None
    modified: str  # `modified_key` of sourceModifiedDate ("" when the platform gives none)
    seen_at: float  # when the refresh that last wrote it began
    body: Mapping[str, Any] = field(compare=False, repr=False)
    # What in-flight payments hold (the sum of the item's reservations), and the reservations themselves.
    reserved: Decimal = Decimal(0)
    reservations: tuple[Reservation, ...] = field(default=(), compare=False)

    @property
    def in_flight(self) -> Decimal:
        """What our payments hold that the platform's `amountDue` does not show yet: every reservation but
        an applied one that a refresh since has read back (`reservations.reflected`)."""
        return sum((r.amount for r in self.reservations if not reflected(r, self.seen_at)), start=Decimal(0))

    @property
    def payable(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def available(self) -> Decimal | None:
        """`amountDue` less every reservation; None when the platform does not report `amountDue`."""
        return None if self.amount_due is None else self.amount_due - self.reserved

    def body_json(self) -> str:
        """Codat's body as JSON, its amounts as JSON numbers again: the list-bills route serves it as
        Codat sent it."""
        return json.dumps(self.body, separators=(",", ":"), default=_json_number)


def _json_number(value: Any) -> Any:
    """A Decimal as the JSON number it was parsed from (a float that reads back as the same amount; an
    amount no float holds exactly stays a string, so no digit is ever lost)."""
    if isinstance(value, Decimal) and value.is_finite():
        if value == value.to_integral_value() and abs(value) < 2**53:
            return int(value)
        as_float = float(value)
        if Decimal(repr(as_float)) == value:
            return as_float
    return str(value)


def from_codat(body: Mapping[str, Any], seen_at: float) -> IndexedBill | None:
    """A list-bills result as an index entry (None when it has no usable id)."""
    bill_id = body.get("id")
    if not isinstance(bill_id, str) or not bill_id:
        return None
    status = body.get("status")
    currency = body.get("currency")
    return IndexedBill(
        bill_id=bill_id,
        status=status if isinstance(status, str) else None,
        currency=currency if isinstance(currency, str) else None,
        amount_due=_decimal(body.get("amountDue")),
        modified=modified_key(body.get("sourceModifiedDate")),
        seen_at=seen_at,
        body=dict(body),
    )


def merge(stored: IndexedBill | None, incoming: IndexedBill) -> IndexedBill | None:
    """What a refresh leaves in the index: `incoming` (keeping the stored reservations), or None when
    the stored copy is newer and must stay."""
    if stored is None:
        return incoming
    if not supersedes(incoming.modified, stored.modified):
        return None
    return replace(incoming, reserved=stored.reserved, reservations=stored.reservations)


@dataclass(frozen=True)
class SyncState:
    """A connection's watermark item."""

    watermark: float | None = None  # when the last refresh that covered everything began
    full_sync_at: float | None = None  # when the last completed full sync began
    sync_started_at: float | None = None  # a full sync in progress: when it began...
    sync_token: str | None = None  # ...and the continuation token of its next page (None: first page)
    version: int = 0  # bumped by every write: the condition that serialises writers

    @property
    def syncing(self) -> bool:
        return self.sync_started_at is not None

    @property
    def complete(self) -> bool:
        """At least one full sync has listed every open bill."""
        return self.full_sync_at is not None


@dataclass(frozen=True)
class RefreshPlan:
    incremental_since: float | None  # page `sourceModifiedDate>` this (None: nothing to refresh from)
    start_full_sync: bool  # begin a (re-)sync now, from the first page


def plan_refresh(state: SyncState | None, now: float, resync_seconds: float) -> RefreshPlan:
    state = state or SyncState()
    since = None if state.watermark is None else state.watermark - LAG_MARGIN_SECONDS
    if state.syncing:
        assert state.sync_started_at is not None
        # A sync abandoned for a whole re-sync period restarts: its continuation token may have expired.
        return RefreshPlan(since, start_full_sync=now - state.sync_started_at >= resync_seconds)
    due = state.full_sync_at is None or now - state.full_sync_at >= resync_seconds
    return RefreshPlan(since, start_full_sync=due)


def incremental_query(since: float) -> str:
    return f"sourceModifiedDate>{iso_utc(since)}"


def started(state: SyncState | None, now: float) -> SyncState:
    """A full sync begins at `now`. A connection never synced gets its watermark now too: the pages to
    come are snapshots taken over time, and the incremental refresh from here on catches what changes."""
    state = state or SyncState()
    return replace(
        state,
        watermark=now if state.watermark is None else state.watermark,
        sync_started_at=now,
        sync_token=None,
        version=state.version + 1,
    )


def progressed(state: SyncState, token: str) -> SyncState:
    return replace(state, sync_token=token, version=state.version + 1)


def completed(state: SyncState) -> SyncState:
    assert state.sync_started_at is not None
    began = state.sync_started_at
    return replace(
        state,
        watermark=began if state.watermark is None else max(state.watermark, began),
        full_sync_at=began,
        sync_started_at=None,
        sync_token=None,
        version=state.version + 1,
    )


def refreshed(state: SyncState, began: float) -> SyncState:
    """An incremental refresh that began at `began` read every page: the watermark moves (never back)."""
    watermark = began if state.watermark is None else max(state.watermark, began)
    return replace(state, watermark=watermark, version=state.version + 1)


def rewound(state: SyncState, first_attempt_at: float) -> SyncState | None:
    """A payment recorded since `first_attempt_at`: the next incremental refresh must return its bill (to
    drop its applied reservation), so the watermark goes back to at most then; None if it already is."""
    target = first_attempt_at - LAG_MARGIN_SECONDS
    if state.watermark is None or state.watermark <= target:
        return None
    return replace(state, watermark=target, version=state.version + 1)


def worth_recording(state: SyncState, began: float) -> bool:
    return state.watermark is None or began - state.watermark >= WATERMARK_STEP_SECONDS


def stale(bills: Iterable[IndexedBill], sync_started_at: float) -> list[str]:
    """Bills a completed full sync did not list and nothing has seen since it began: no longer open (or
    never modified visibly, e.g. voided without a date). Kept while payments hold reservations on them."""
    return [b.bill_id for b in bills if b.seen_at < sync_started_at and b.reserved == 0]


ConnectionKey = tuple[str, str]  # (companyId, connectionId), lower-cased


class BillIndexStore(Protocol):
    """The bill index's storage (DynamoDB, or memory in tests and when no table is configured).

    Every write applies one rule of this module as a single conditional write, so any number of
    containers can refresh the same connection at once.
    """

    def state(self, key: ConnectionKey) -> SyncState | None: ...

    def write_state(self, key: ConnectionKey, before: SyncState | None, after: SyncState) -> bool:
        """Replace `before` (None: no state yet) with `after`; False when someone else wrote first."""
        ...

    def bill(self, key: ConnectionKey, bill_id: str) -> IndexedBill | None: ...

    def bills(self, key: ConnectionKey) -> list[IndexedBill]: ...

    def put_bills(self, key: ConnectionKey, bills: Sequence[IndexedBill]) -> None:
        """Write each bill unless the stored copy supersedes it (`merge`); reservations are kept."""
        ...

    def drop(self, key: ConnectionKey, bill_ids: Sequence[str], sync_started_at: float) -> int:
        """Delete bills still unseen since `sync_started_at` and without reservations; the count deleted."""
        ...

    def reserve(self, key: ConnectionKey, bill_id: str, reservation: Reservation) -> bool:
        """Add `reservation` if its key is absent and `available` (when the bill reports `amountDue`)
        covers it, in one conditional write; False when the bill cannot take it (or it is gone)."""
        ...

    def apply_reservation(self, key: ConnectionKey, bill_id: str, reservation_key: str, at: float) -> None:
        """Mark a reservation `applied` (its payment was recorded); nothing if it is gone."""
        ...

    def free(self, key: ConnectionKey, bill_id: str, reservation: Reservation) -> None:
        """Drop a reservation and give its amount back to `available`; nothing if it is gone."""

    def bills_after(self, key: ConnectionKey, after: str | None, limit: int) -> list[IndexedBill]:
        """Up to `limit` bills of the connection in bill id order (UTF-8 bytes, as DynamoDB sorts),
        starting after the bill id `after` (None: from the first): the list-bills route's pages."""
        ...

    def reserved_totals(self, key: ConnectionKey, bill_ids: Sequence[str]) -> dict[str, Decimal]:
        """What in-flight payments hold on each of these bills (bills the index lacks are left out)."""
        ...
