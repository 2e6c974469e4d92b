"""The app's whole flow through the local stack: list bills and suppliers, pay, see the bill change, and
receive one event per end of a write (docs/contract.md, API and Events).

The bills route is compared with the sandbox's own list-bills, read straight from the sandbox with the
Codat key, for every status and every page; events are read from the emulator's tap queue (every
`billpay` event on the bus is copied there) and waited for, never slept for.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from billpay.adapters.operations_dynamodb import DynamoOperationStore
from billpay.service.sweep import PUBLISH_GRACE_SECONDS

from local.emulator import EVENTS_TAP
from local.events_tail import tail, tap_queue_url
from local.sandbox.seed import (
    ACCOUNT_GBP_CURRENT,
    BILLS_GBP_OPEN,
    COMPANY_GBP_ID,
    CONNECTION_GBP_ID,
    SUPPLIER_GBP_TOOLS,
)
from ops.resolve import resolve
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.long(seconds=50)]

CONNECTION = f"/companies/{COMPANY_GBP_ID}/connections/{CONNECTION_GBP_ID}/payables"
SANDBOX_AUTH = {"Authorization": "Basic " + base64.b64encode(b"local-sandbox-key").decode()}
# What each of our statuses is in Codat's query language (absent: Codat's own default).
CODAT_QUERY: dict[str | None, str | None] = {
    None: None,
    "Open": "status=Open",
    "PartiallyPaid": "status=PartiallyPaid",
    "Paid": "status=Paid",
    "All": "status=Open||status=PartiallyPaid||status=Paid",
}
# An event must follow the transition it announces by no more than this.
EVENT_SECONDS = 5.0


def clear_bill_index(stack: Stack) -> None:
    """The sandbox's reset puts its bills back, with older sourceModifiedDates than the index holds after
    earlier tests' payments; start this connection's index afresh so it follows the reset ledger."""
    table = stack.resources["BillIndexTable"]
    pk = f"{COMPANY_GBP_ID}#{CONNECTION_GBP_ID}"
    pages = stack.dynamodb.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ProjectionExpression="pk, sk",
    )
    for page in pages:
        for item in page["Items"]:
            stack.dynamodb.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})


@pytest.fixture
def live(stack: Stack) -> Stack:
    stack.reset()
    clear_bill_index(stack)
    return stack


def sandbox_list(stack: Stack, resource: str, query: str | None = None) -> list[dict[str, Any]]:
    """Every record of a sandbox list endpoint, paged with its own tokens."""
    records: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params = {k: v for k, v in (("query", query), ("continuationToken", token)) if v is not None}
        answer = stack.sandbox.get(f"{CONNECTION}/{resource}", params=params, headers=SANDBOX_AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        records += body["results"]
        token = (body.get("pagination") or {}).get("continuationToken")
        if not token:
            return records


def api_pages(stack: Stack, resource: str, key: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of one of our list routes."""
    pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    while True:
        query = {k: v for k, v in params.items() if v is not None}
        if token:
            query["continuationToken"] = token
        answer = stack.client.get(f"{CONNECTION}/{resource}", params=query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body[key])
        token = body["pagination"].get("continuationToken")
        if not token:
            return pages
        assert len(pages) < 100, "the pages never end"


def without_reserved(bill: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in bill.items() if k != "reservedAmount"}


def pay(stack: Stack, bill: str, amount: Any, key: str | None = None) -> httpx.Response:
    return stack.client.post(
        f"{CONNECTION}/bills/{bill}/payments",
        json={"amount": amount, "date": "2026-12-02", "accountRef": {"id": ACCOUNT_GBP_CURRENT}},
        headers={"Idempotency-Key": key or f"flow-{uuid.uuid4()}"},
    )


# -- bills ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(CODAT_QUERY), ids=lambda s: s or "default")
def test_the_bills_route_equals_the_sandbox_for_every_status_and_page(
    live: Stack, status: str | None
) -> None:
    expected = sandbox_list(live, "bills", CODAT_QUERY[status])
    assert expected, "the seed has bills of every status served"
    pages = api_pages(live, "bills", "bills", status=status, pageSize=3)

    assert all(len(page) == 3 for page in pages[:-1]) and len(pages[-1]) <= 3
    listed = [bill for page in pages for bill in page]
    ids = [bill["id"] for bill in listed]
    assert len(ids) == len(set(ids)), "no bill on two pages"
    assert all(bill["reservedAmount"] == 0 for bill in listed)
    by_id = {bill["id"]: bill for bill in expected}
    assert sorted(ids) == sorted(by_id)
    for bill in listed:
        assert without_reserved(bill) == by_id[bill["id"]], "each bill exactly as Codat returns it"
    if status in ("Paid", "All"):
        assert ids == [bill["id"] for bill in expected], "paged from Codat, in Codat's order"
    else:
        assert ids == sorted(ids, key=str.encode), "served from the index, by bill id"


@pytest.mark.parametrize("status", [None, "All"], ids=["index", "codat"])
def test_a_supplier_filter_keeps_that_suppliers_bills(live: Stack, status: str | None) -> None:
    expected = [
        bill
        for bill in sandbox_list(live, "bills", CODAT_QUERY[status])
        if bill["supplierRef"]["id"] == SUPPLIER_GBP_TOOLS
    ]
    pages = api_pages(live, "bills", "bills", status=status, supplierId=SUPPLIER_GBP_TOOLS, pageSize=1)
    listed = [without_reserved(bill) for page in pages for bill in page]
    assert expected and sorted(listed, key=lambda b: b["id"]) == sorted(expected, key=lambda b: b["id"])


def test_a_payment_shows_in_the_list_at_once(live: Stack) -> None:
    bill_id = BILLS_GBP_OPEN[1]  # 250.00 due

    def listed(status: str | None = None) -> dict[str, dict[str, Any]]:
        return {b["id"]: b for page in api_pages(live, "bills", "bills", status=status) for b in page}

    before = listed()[bill_id]
    assert before["amountDue"] == 250 and before["status"] == "Open"

    assert pay(live, bill_id, 100).status_code == 201
    after = listed()[bill_id]
    assert after["amountDue"] == 150 and after["status"] == "PartiallyPaid"
    assert after == {**sandbox_by_id(live)[bill_id], "reservedAmount": 0}

    assert pay(live, bill_id, 150).status_code == 201
    assert bill_id not in listed(), "a paid bill leaves the open bills at once"
    paid = listed("Paid")[bill_id]
    assert paid["amountDue"] == 0 and paid["status"] == "Paid"


def sandbox_by_id(stack: Stack) -> dict[str, dict[str, Any]]:
    return {bill["id"]: bill for bill in sandbox_list(stack, "bills", CODAT_QUERY["All"])}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"continuationToken": "not-ours"}, "continuationToken"),
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "501"}, "pageSize"),
        ({"status": "Void"}, "status"),
        ({"supplierId": "a\x01b"}, "supplierId"),
    ],
)
def test_bad_list_input_is_a_400_without_a_codat_read(
    live: Stack, params: dict[str, str], field: str
) -> None:
    answer = live.client.get(f"{CONNECTION}/bills", params=params)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in json.dumps(answer.json()["errors"])


def test_a_token_is_valid_only_for_the_filter_it_was_issued_for(live: Stack) -> None:
    first = live.client.get(f"{CONNECTION}/bills", params={"pageSize": 1, "status": "All"}).json()
    token = first["pagination"]["continuationToken"]
    answer = live.client.get(f"{CONNECTION}/bills", params={"pageSize": 1, "continuationToken": token})
    assert answer.status_code == 400 and "continuationToken" in answer.text


def test_an_unknown_connection_is_a_404(live: Stack) -> None:
    other = f"/companies/{uuid.uuid4()}/connections/{CONNECTION_GBP_ID}/payables/bills"
    answer = live.client.get(other)
    assert answer.status_code == 404 and answer.json()["type"].endswith("/problems/not-found")


# -- suppliers -----------------------------------------------------------------------------------------------


def test_the_suppliers_route_equals_the_sandbox_page_by_page(live: Stack) -> None:
    expected = sandbox_list(live, "suppliers")
    pages = api_pages(live, "suppliers", "suppliers")
    assert len(pages) > 1, "the seed's suppliers span pages of the stack's small sandbox pages"
    assert [s for page in pages for s in page] == expected


# -- events --------------------------------------------------------------------------------------------------


class Tap:
    """The emulator's tap queue: every event received, by operation, with when it arrived."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.queue = stack.resources[EVENTS_TAP]
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.delays: dict[str, float] = {}  # detail-type -> seconds from the transition to its arrival

    def drain(self, wait_seconds: int = 0) -> None:
        while True:
            answer = self.stack.sqs.receive_message(
                QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
            )
            messages = answer.get("Messages", [])
            if not messages:
                return
            now = time.monotonic()
            for message in messages:
                self.received.append((now, json.loads(message["Body"])))
                self.stack.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            wait_seconds = 0

    def of(self, operation_id: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, e) for at, e in self.received if e["detail"]["operationId"] == operation_id]

    def wait_for(
        self, operation_id: str, detail_type: str, *, since: float, timeout: float = EVENT_SECONDS
    ) -> dict[str, Any]:
        def arrived() -> tuple[float, dict[str, Any]] | None:
            self.drain(wait_seconds=1)
            return next(((at, e) for at, e in self.of(operation_id) if e["detail-type"] == detail_type), None)

        found = self.stack.wait_until(arrived, timeout=timeout, message=f"{detail_type} of {operation_id}")
        assert found is not None
        at, event = found
        self.delays[detail_type] = at - since
        assert at - since <= timeout
        return event

    def assert_once_each(self, operation_id: str) -> Counter[str]:
        """Once the store records the last version published, nothing is re-published: count by event id."""
        self.stack.wait_until(lambda: published(self.stack, operation_id), message="publication recorded")
        self.drain(wait_seconds=1)
        counts = Counter(e["detail"]["eventId"] for _, e in self.of(operation_id))
        assert counts and all(n == 1 for n in counts.values()), counts
        return counts


def published(stack: Stack, operation_id: str) -> bool:
    item = stack.operation_item(operation_id) or {}
    return item.get("publishedVersion") is not None and item.get("publishedVersion") == item.get("version")


@pytest.fixture
def tap(live: Stack) -> Iterator[Tap]:
    tap = Tap(live)
    tap.drain()  # what earlier tests left
    tap.received.clear()
    yield tap


def operation_of(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    return dict(body.get("operation", body))


def check_event(event: dict[str, Any], operation: dict[str, Any], status: str) -> None:
    detail = event["detail"]
    assert event["source"] == "billpay"
    assert detail["status"] == status and detail["clientId"] == "local-app"
    assert detail["eventId"] == f"{detail['operationId']}:{detail['version']}"
    assert detail["operationId"] == operation["operationId"]
    assert "upstreamRequest" not in detail and "raw" not in json.dumps(detail)


def test_a_payment_that_succeeds_publishes_one_event(tap: Tap) -> None:
    answer = pay(tap.stack, BILLS_GBP_OPEN[2], 10)
    answered = time.monotonic()
    assert answer.status_code == 201, answer.text
    event = tap.wait_for(operation_of(answer)["operationId"], "Operation Succeeded", since=answered)
    check_event(event, operation_of(answer), "succeeded")
    assert event["detail"]["result"]["id"] == tap.stack.payments()[-1]["id"]
    tap.assert_once_each(operation_of(answer)["operationId"])


def test_a_payment_codat_refuses_publishes_one_failed_event(tap: Tap) -> None:
    tap.stack.arm_fault(path="*/payment", fault="status", status=400)
    answer = pay(tap.stack, BILLS_GBP_OPEN[2], 10)
    answered = time.monotonic()
    assert answer.status_code == 422, answer.text
    operation = operation_of(answer)
    event = tap.wait_for(operation["operationId"], "Operation Failed", since=answered)
    check_event(event, operation, "failed")
    assert event["detail"]["error"]["upstream"]["statusCode"] == 400
    tap.assert_once_each(operation["operationId"])


def test_a_retried_payment_publishes_only_its_end(tap: Tap) -> None:
    tap.stack.arm_fault(path="*/payment", fault="status", status=503)
    answer = pay(tap.stack, BILLS_GBP_OPEN[2], 10)
    assert answer.status_code == 202, answer.text
    operation_id = operation_of(answer)["operationId"]
    done = tap.stack.wait_until(
        lambda: tap.stack.operation(operation_id)["status"] == "succeeded", message="the retry succeeded"
    )
    assert done
    event = tap.wait_for(operation_id, "Operation Succeeded", since=time.monotonic())
    check_event(event, operation_of(answer), "succeeded")
    assert event["detail"]["attempts"] == 2
    counts = tap.assert_once_each(operation_id)
    assert len(counts) == 1, "a pending state publishes nothing"


def test_a_needs_review_then_its_resolution_publish_one_event_each(tap: Tap) -> None:
    stack = tap.stack
    stack.arm_fault(path="*/payment", fault="status", status=422)
    answer = pay(stack, BILLS_GBP_OPEN[2], 10)
    answered = time.monotonic()
    assert answer.status_code == 502, answer.text
    operation = operation_of(answer)
    assert operation["status"] == "needs_review"
    review = tap.wait_for(operation["operationId"], "Operation Needs Review", since=answered)
    check_event(review, operation, "needs_review")

    store = DynamoOperationStore(stack.operations_table_name, client=stack.dynamodb)
    resolved_op = resolve(store, operation["operationId"], "failed", "not in the ledger", by="test")
    resolved_at = time.monotonic()
    # `make resolve` records the decision; the sweeper publishes it once its grace period has passed.
    resolved = tap.wait_for(
        operation["operationId"],
        "Operation Resolved",
        since=resolved_at,
        timeout=PUBLISH_GRACE_SECONDS + EVENT_SECONDS,
    )
    check_event(resolved, operation, "failed")
    assert resolved["detail"]["version"] == resolved_op.version > review["detail"]["version"]
    counts = tap.assert_once_each(operation["operationId"])
    assert len(counts) == 2


def test_make_events_prints_each_event_as_one_json_line(tap: Tap) -> None:
    answer = pay(tap.stack, BILLS_GBP_OPEN[3], 5)
    assert answer.status_code == 201, answer.text
    operation_id = operation_of(answer)["operationId"]
    tap.stack.wait_until(lambda: published(tap.stack, operation_id), message="publication recorded")
    out = io.StringIO()
    printed = tail(tap.stack.sqs, tap_queue_url(tap.stack.sqs), out, once=True)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert printed == len(lines) >= 1
    assert [e["detail-type"] for e in lines if e["detail"]["operationId"] == operation_id] == [
        "Operation Succeeded"
    ]
