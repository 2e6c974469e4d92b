"""The bill index's rules (pure) and the in-memory store that applies them like DynamoDB's does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from billpay.adapters.bill_index_memory import InMemoryBillIndex
from billpay.config import ConfigError
from billpay.domain import bill_index as bi
from billpay.domain.bill_index import IndexedBill, SyncState
from billpay.service.lookups import bill_resync_seconds

KEY = ("c0", "n0")
T0 = 1_796_000_000.0  # 2026-11-30


def bill(bill_id: str = "B1", modified: str | None = "2026-11-01T09:00:00Z", **fields: Any) -> IndexedBill:
    body = {
        "id": bill_id,
        "status": "Open",
        "currency": "GBP",
        "amountDue": 100,
        "sourceModifiedDate": modified,
    }
    body.update(fields)
    indexed = bi.from_codat(body, seen_at=fields.pop("seen_at", T0))
    assert indexed is not None
    return indexed


def test_modified_keys_sort_like_the_instants_they_name() -> None:
    assert bi.modified_key("2026-11-01T09:00:00Z") == "2026-11-01T09:00:00.000000Z"
    assert bi.modified_key("2026-11-01T10:00:00+01:00") == bi.modified_key("2026-11-01T09:00:00Z")
    assert bi.modified_key("2026-11-01T09:00:00") == bi.modified_key("2026-11-01T09:00:00Z")  # UTC
    assert bi.modified_key("2026-11-01T09:00:00.5Z") > bi.modified_key("2026-11-01T09:00:00Z")
    assert bi.modified_key(None) == bi.modified_key("not a date") == bi.modified_key(7) == ""
    assert bi.iso_utc(T0) == "2026-11-30T00:53:20.000Z"


def test_a_refresh_never_puts_an_older_copy_over_a_newer_one() -> None:
    newer = bill(modified="2026-11-02T09:00:00Z", amountDue=40)
    older = bill(modified="2026-11-01T09:00:00Z", amountDue=100)
    assert bi.merge(newer, older) is None
    assert bi.merge(older, newer) == newer
    assert bi.merge(None, older) == older
    same = bill(modified="2026-11-02T09:00:00Z", amountDue=40, seen_at=T0 + 60)
    assert bi.merge(newer, same) == same  # same version seen again: seenAt moves on
    # a copy without a date never replaces a dated one
    assert bi.merge(newer, bill(modified=None)) is None


def test_merge_keeps_what_payments_hold_and_available_follows() -> None:
    stored = IndexedBill("B1", "Open", "GBP", Decimal(100), "", T0, {}, reserved=Decimal(30))
    merged = bi.merge(stored, bill(modified="2026-12-01T00:00:00Z", amountDue=80))
    assert merged is not None
    assert (merged.amount_due, merged.reserved, merged.available) == (Decimal(80), Decimal(30), Decimal(50))
    assert bill(amountDue=None).available is None


def test_from_codat_reads_what_the_guards_need_and_keeps_the_body() -> None:
    indexed = bill(status="Paid", amountDue="12.50", currency=None)
    assert (indexed.status, indexed.currency, indexed.amount_due, indexed.payable) == (
        "Paid",
        None,
        Decimal("12.50"),
        False,
    )
    assert indexed.body["id"] == "B1"
    assert bi.from_codat({"id": ""}, T0) is None
    assert bi.from_codat({"id": "X", "amountDue": "NaN"}, T0).amount_due is None  # type: ignore[union-attr]


def test_a_new_connection_starts_a_full_sync_and_gets_its_watermark() -> None:
    plan = bi.plan_refresh(None, T0, 21600)
    assert plan == bi.RefreshPlan(incremental_since=None, start_full_sync=True)
    state = bi.started(None, T0)
    assert (state.watermark, state.sync_started_at, state.sync_token, state.complete) == (T0, T0, None, False)
    # the next lookup refreshes from 5 minutes before the sync began, and carries the sync on
    plan = bi.plan_refresh(state, T0 + 10, 21600)
    assert plan == bi.RefreshPlan(incremental_since=T0 - 300, start_full_sync=False)
    assert bi.incremental_query(T0 - 300) == "sourceModifiedDate>2026-11-30T00:48:20.000Z"


def test_a_completed_sync_is_redone_after_the_resync_period() -> None:
    done = bi.completed(bi.progressed(bi.started(None, T0), "token-2"))
    assert (done.full_sync_at, done.syncing, done.complete, done.watermark) == (T0, False, True, T0)
    assert not bi.plan_refresh(done, T0 + 21599, 21600).start_full_sync
    assert bi.plan_refresh(done, T0 + 21600, 21600).start_full_sync
    # a sync left unfinished for a whole period restarts from its first page
    stalled = bi.started(done, T0 + 21600)
    assert not bi.plan_refresh(stalled, T0 + 43199, 21600).start_full_sync
    assert bi.plan_refresh(stalled, T0 + 43200, 21600).start_full_sync


def test_the_watermark_never_goes_back() -> None:
    state = SyncState(watermark=T0, version=3)
    assert bi.refreshed(state, T0 - 50).watermark == T0
    assert bi.refreshed(state, T0 + 50).watermark == T0 + 50
    assert bi.refreshed(state, T0 + 50).version == 4


def test_the_watermark_is_recorded_once_a_minute_at_most() -> None:
    state = SyncState(watermark=T0)
    assert not bi.worth_recording(state, T0 + 59)
    assert bi.worth_recording(state, T0 + 60)
    assert bi.worth_recording(SyncState(), T0)


def test_stale_bills_are_those_unseen_since_the_sync_began_and_unreserved() -> None:
    seen = bill("SEEN", seen_at=T0 + 1)
    unseen = bill("GONE", seen_at=T0 - 1)
    held = IndexedBill("HELD", "Open", "GBP", Decimal(5), "", T0 - 1, {}, reserved=Decimal(5))
    assert bi.stale([seen, unseen, held], T0) == ["GONE"]


def test_in_memory_store_applies_the_rules() -> None:
    store = InMemoryBillIndex()
    assert store.write_state(KEY, None, SyncState(version=1))
    assert not store.write_state(KEY, None, SyncState(version=1))  # someone else created it
    assert not store.write_state(KEY, SyncState(version=7), SyncState(version=8))  # stale version
    assert store.write_state(KEY, SyncState(version=1), SyncState(watermark=T0, version=2))
    assert store.state(KEY) == SyncState(watermark=T0, version=2)

    store.put_bills(KEY, [bill(modified="2026-11-02T00:00:00Z", amountDue=40)])
    store.put_bills(KEY, [bill(modified="2026-11-01T00:00:00Z", amountDue=100)])  # older: ignored
    assert store.bill(KEY, "B1").amount_due == Decimal(40)  # type: ignore[union-attr]

    store.put_bills(KEY, [bill("OLD", seen_at=T0 - 10), bill("HELD", seen_at=T0 - 10)])
    store.hold(KEY, "HELD", "5")
    assert store.drop(KEY, ["OLD", "HELD", "B1", "NOPE"], T0) == 1
    assert {b.bill_id for b in store.bills(KEY)} == {"B1", "HELD"}


@pytest.mark.parametrize("raw", ["", "  ", "60", "0.5"])
def test_resync_setting_reads_its_variable(raw: str) -> None:
    expected = 21600.0 if not raw.strip() else float(raw)
    assert bill_resync_seconds({"BILLPAY_BILL_RESYNC_SECONDS": raw}) == expected


@pytest.mark.parametrize("raw", ["0", "-5", "soon", "inf", "nan"])
def test_a_bad_resync_setting_fails_loudly(raw: str) -> None:
    with pytest.raises(ConfigError, match="BILLPAY_BILL_RESYNC_SECONDS"):
        bill_resync_seconds({"BILLPAY_BILL_RESYNC_SECONDS": raw})
