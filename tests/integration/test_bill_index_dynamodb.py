"""The bill index on DynamoDB (the local emulator, the template's BillIndexTable): each rule is one
conditional write, and a lookup against the sandbox reads and writes it like the in-memory store."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from billpay.adapters.bill_index_dynamodb import DynamoDBBillIndex
from billpay.adapters.codat import CodatClient
from billpay.domain import bill_index as bi
from billpay.domain.bill_index import IndexedBill, SyncState
from billpay.service.lookups import BillLookup, connection_key

from local.sandbox.seed import BILL_GBP_NODUE, BILL_GBP_PARTIAL, COMPANY_GBP_ID, CONNECTION_GBP_ID
from tests.fixtures.sandbox import Sandbox

pytestmark = pytest.mark.integration

T0 = 1_796_000_000.0


@pytest.fixture
def store(aws_emulator: Any) -> DynamoDBBillIndex:
    return DynamoDBBillIndex(aws_emulator.table_names["BillIndexTable"], client=aws_emulator.dynamodb)


@pytest.fixture
def key() -> tuple[str, str]:
    return (str(uuid.uuid4()), str(uuid.uuid4()))  # a connection of this test's own


def bill(bill_id: str, modified: str, due: str | None, seen_at: float = T0) -> IndexedBill:
    body = {
        "id": bill_id,
        "status": "Open",
        "currency": "GBP",
        "amountDue": due,
        "sourceModifiedDate": modified,
    }
    indexed = bi.from_codat(body, seen_at)
    assert indexed is not None
    return indexed


def test_state_writes_are_conditional_on_the_version_read(
    store: DynamoDBBillIndex, key: tuple[str, str]
) -> None:
    assert store.state(key) is None
    first = bi.started(None, T0)
    assert store.write_state(key, None, first)
    assert not store.write_state(key, None, first)  # another container created it first
    moved = bi.progressed(first, "token-2")
    assert store.write_state(key, first, moved)
    assert not store.write_state(key, first, bi.progressed(first, "token-X"))  # stale version
    assert store.state(key) == moved
    done = bi.completed(moved)
    assert store.write_state(key, moved, done)
    assert store.state(key) == SyncState(watermark=T0, full_sync_at=T0, version=done.version)


def test_a_bill_is_written_only_forward_and_available_is_derived(
    store: DynamoDBBillIndex, key: tuple[str, str], aws_emulator: Any
) -> None:
    store.put_bills(key, [bill("B1", "2026-11-02T00:00:00Z", "40.5")])
    store.put_bills(key, [bill("B1", "2026-11-01T00:00:00Z", "100")])  # older: the condition refuses it
    stored = store.bill(key, "B1")
    assert stored is not None and stored.amount_due == Decimal("40.5") and stored.body["amountDue"] == "40.5"
    raw = aws_emulator.dynamodb.get_item(
        TableName=store.table_name, Key={"pk": {"S": f"{key[0]}#{key[1]}"}, "sk": {"S": "bill#B1"}}
    )["Item"]
    assert raw["available"] == {"N": "40.5"}  # amountDue - reservedTotal (none yet)
    assert (raw["reservations"], raw["reservedTotal"]) == ({"M": {}}, {"N": "0"})  # ready for reservations

    # reservations (written by the payment flow later) survive a refresh, and available follows amountDue
    aws_emulator.dynamodb.update_item(
        TableName=store.table_name,
        Key={"pk": {"S": f"{key[0]}#{key[1]}"}, "sk": {"S": "bill#B1"}},
        UpdateExpression="SET reservedTotal = :r, reservations = :m",
        ExpressionAttributeValues={":r": {"N": "10"}, ":m": {"M": {"op#tok": {"N": "10"}}}},
    )
    store.put_bills(key, [bill("B1", "2026-11-03T00:00:00Z", "30")])
    raw = aws_emulator.dynamodb.get_item(
        TableName=store.table_name, Key={"pk": {"S": f"{key[0]}#{key[1]}"}, "sk": {"S": "bill#B1"}}
    )["Item"]
    assert (raw["amountDue"], raw["available"], raw["reservations"]) == (
        {"N": "30"},
        {"N": "20"},
        {"M": {"op#tok": {"N": "10"}}},
    )
    assert store.bill(key, "B1").reserved == Decimal(10)  # type: ignore[union-attr]

    # the platform stops reporting amountDue: both numbers go
    store.put_bills(key, [bill("B1", "2026-11-04T00:00:00Z", None)])
    stored = store.bill(key, "B1")
    assert stored is not None and stored.amount_due is None and stored.available is None


def test_many_bills_and_a_conditional_drop(
    store: DynamoDBBillIndex, key: tuple[str, str], aws_emulator: Any
) -> None:
    store.put_bills(key, [bill(f"B{n:03d}", "2026-11-01T00:00:00Z", "5", seen_at=T0 - 1) for n in range(40)])
    store.put_bills(key, [bill("B000", "2026-11-01T00:00:00Z", "5", seen_at=T0 + 1)])  # seen again since
    assert len(store.bills(key)) == 40
    aws_emulator.dynamodb.update_item(
        TableName=store.table_name,
        Key={"pk": {"S": f"{key[0]}#{key[1]}"}, "sk": {"S": "bill#B001"}},
        UpdateExpression="SET reservedTotal = :r",
        ExpressionAttributeValues={":r": {"N": "5"}},
    )
    gone = store.drop(key, [b.bill_id for b in store.bills(key)], T0)
    assert gone == 38
    assert sorted(b.bill_id for b in store.bills(key)) == ["B000", "B001"]


def test_a_lookup_on_dynamodb_syncs_refreshes_and_reads(
    store: DynamoDBBillIndex, codat: CodatClient, sandbox: Sandbox, aws_emulator: Any
) -> None:
    aws_emulator.dynamodb.delete_item(
        TableName=store.table_name,
        Key={"pk": {"S": f"{COMPANY_GBP_ID}#{CONNECTION_GBP_ID}"}, "sk": {"S": "sync"}},
    )
    lookup = BillLookup(codat, store)
    found = lookup.find(COMPANY_GBP_ID, CONNECTION_GBP_ID, BILL_GBP_PARTIAL, codat.deadline(5))
    assert found.bill is not None and found.bill.amount_due == Decimal(250) and found.fresh
    nodue = lookup.find(COMPANY_GBP_ID, CONNECTION_GBP_ID, BILL_GBP_NODUE, codat.deadline(5))
    assert nodue.bill is not None and nodue.bill.amount_due is None
    state = store.state(connection_key(COMPANY_GBP_ID, CONNECTION_GBP_ID))
    assert state is not None and state.complete
    assert len(store.bills(connection_key(COMPANY_GBP_ID, CONNECTION_GBP_ID))) >= 17
