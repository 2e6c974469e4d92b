"""The operator command: a person's decision on a `needs_review` operation (DESIGN §4, docs/runbook.md).

    make resolve OP=<operationId> STATUS=succeeded|failed NOTE="what was checked"   # local stack
    make resolve OP=... STATUS=... NOTE=... TABLE=<table>                            # a deployed stack

Only a `needs_review` operation can be resolved: a `pending` one is still in the machine's hands (an
attempt may be in flight), and an ended one has its answer. The decision is one conditional write on the
base item (its status and token as read), recorded on the operation as `resolution` (status, note, who,
when, and what it was before); the operation leaves the sparse index, so `NeedsReviewOpen` drops at the
next sweep. Replays and `GET /operations/{id}` answer the new state.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from botocore.exceptions import EndpointConnectionError

from billpay.adapters.operations_dynamodb import LeaseLost, OperationStore, to_attribute
from billpay.domain.operations import Operation, ended_state, iso_timestamp, new_lease_token
from billpay.observability import logger

Resolution = Literal["succeeded", "failed"]
RESOLUTIONS: Final = ("succeeded", "failed")
MAX_NOTE_LENGTH: Final = 2000

# The local stack's defaults (local/emulator.py): moto on BILLPAY_EMULATOR_PORT, region and table name.
LOCAL_TABLE: Final = "billpay-local-OperationsTable"
LOCAL_REGION: Final = "us-east-1"


class ResolveRefused(Exception):
    """The operation cannot be resolved as asked; the message says why."""


def resolved_state(
    op: Operation, *, status: Resolution, note: str, by: str, now: float, token: str
) -> Operation:
    """The record after a person's decision: an end state, out of the index, with the decision kept."""
    resolution = {
        "status": status,
        "note": note,
        "by": by,
        "at": iso_timestamp(now),
        "previousStatus": op.status,
    }
    error: dict[str, Any] | None
    if status == "succeeded":
        error = None
    else:
        # The client may now resubmit under a new key: say so, and that a person checked.
        # The same family as a window that closed with nothing applied (503): the outcome is now known.
        error = {
            "type": "upstream-unavailable",
            "status": 503,
            "title": "Not recorded",
            "detail": "A person checked the accounting software: this payment was not recorded. "
            "It may be resubmitted with a new Idempotency-Key.",
        }
        previous = dict(op.error or {})
        if previous.get("upstream"):
            error["upstream"] = previous["upstream"]
    return ended_state(
        op,
        status,
        error=error,
        token=token,
        holder=None,
        now=now,
        extra={**dict(op.extra), "resolution": to_attribute(resolution)},
    )


def resolve(
    store: OperationStore,
    operation_id: str,
    status: str,
    note: str,
    *,
    by: str,
    clock: Callable[[], float] = time.time,
) -> Operation:
    if status not in RESOLUTIONS:
        raise ResolveRefused(f"STATUS must be one of {', '.join(RESOLUTIONS)}, not {status!r}")
    note = note.strip()
    if not note:
        raise ResolveRefused("NOTE is required: say what was checked (kept on the operation)")
    if len(note) > MAX_NOTE_LENGTH:
        raise ResolveRefused(f"NOTE is longer than {MAX_NOTE_LENGTH} characters")
    op = store.get(operation_id, consistent=True)
    if op is None:
        raise ResolveRefused(f"no operation {operation_id} in table {store.table_name}")
    if op.status != "needs_review":
        raise ResolveRefused(
            f"operation {operation_id} is {op.status}, not needs_review: only a needs_review can be resolved"
        )
    now = clock()
    after = resolved_state(op, status=status, note=note, by=by, now=now, token=new_lease_token())  # type: ignore[arg-type]
    try:
        stored = store.transition(op, after)
    except LeaseLost as lost:
        current = lost.current.status if lost.current else "gone"
        raise ResolveRefused(
            f"operation {operation_id} changed while resolving (now {current}); try again"
        ) from None
    logger.warning(
        "needs_review resolved by a person",
        extra={"operationId": operation_id, "status": status, "by": by, "note": note},
    )
    return stored


def _store(table: str | None) -> OperationStore:
    """A store on the deployed table when `table` is given (ambient AWS credentials and region), else on
    the local stack's emulator."""
    if table:
        return OperationStore(table)
    port = os.environ.get("BILLPAY_EMULATOR_PORT", "4566")
    os.environ.setdefault("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", LOCAL_REGION),
        ("AWS_REGION", LOCAL_REGION),
    ):
        os.environ.setdefault(name, value)
    return OperationStore(os.environ.get("OPERATIONS_TABLE_NAME") or LOCAL_TABLE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make resolve", description="Resolve a needs_review operation after checking the books."
    )
    parser.add_argument("--operation-id", required=True)
    parser.add_argument("--status", required=True, choices=RESOLUTIONS)
    parser.add_argument("--note", required=True)
    parser.add_argument("--table", default="", help="a deployed stack's table (default: the local stack's)")
    parser.add_argument("--by", default="", help="who decided (default: the OS user)")
    args = parser.parse_args(argv)
    by = args.by or os.environ.get("BILLPAY_OPERATOR") or getpass.getuser()
    store = _store(args.table or None)
    try:
        op = resolve(store, args.operation_id, args.status, args.note, by=by)
    except ResolveRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except EndpointConnectionError as exc:
        where = "the deployed table" if args.table else "the local stack (is `make run` running?)"
        print(f"cannot reach {where}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{op.operation_id}: needs_review -> {op.status} (by {by}); recorded as `resolution` on the operation"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
