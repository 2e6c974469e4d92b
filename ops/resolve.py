"""The operator command: a person's decision on a `needs_review` operation (docs/runbook.md).

    make resolve OP=<operationId> STATUS=succeeded|failed NOTE="what was checked"   # local stack
    make resolve OP=... STATUS=... NOTE=... TABLE=<table>                            # a deployed stack

Only a `needs_review` operation can be resolved: a `pending` one is still in the machine's hands (an
attempt may be in flight), and an ended one has its answer. The decision is one conditional write
(`lifecycle.resolve`) recorded on the operation as a typed `resolution` (status, note, who, when, and what it
was before); the operation leaves the sparse index, so `NeedsReviewOpen` drops at the next sweep. Who
decided is the caller's AWS identity (STS GetCallerIdentity), not a name anyone could type.

Lives outside the Lambda layer: no function runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from billpay.domain import lifecycle
from billpay.domain.operations import Operation, Resolution, iso_timestamp, new_lease_token
from billpay.domain.ports import OperationStore, StoreUnavailable
from billpay.service.write_operation import write

RESOLUTIONS: Final = ("succeeded", "failed")
MAX_NOTE_LENGTH: Final = 2000

# The local stack's defaults (local/emulator.py): moto on BILLPAY_EMULATOR_PORT, region, table and bus.
LOCAL_TABLE: Final = "billpay-local-OperationsTable"
LOCAL_BUS: Final = "billpay-local-EventBus"
LOCAL_REGION: Final = "us-east-1"


class ResolveRefused(Exception):
    """The operation cannot be resolved as asked; the message says why."""


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
    op = store.get(operation_id)
    if op is None:
        raise ResolveRefused(f"no operation {operation_id}")
    now = clock()
    decision = Resolution(
        status="succeeded" if status == "succeeded" else "failed",
        note=note,
        by=by,
        at=iso_timestamp(now),
        previous_status=op.status,
    )
    try:
        resolving = lifecycle.resolve(op, decision, token=new_lease_token(), now=now)
    except lifecycle.NotResolvable as exc:
        raise ResolveRefused(f"{exc}: only a needs_review can be resolved") from None
    written = write(store, resolving)
    if not written.known:
        raise ResolveRefused(f"could not learn whether {operation_id} was resolved; run the command again")
    if not written.applied or written.current is None:
        current = written.current.status if written.current else "gone"
        raise ResolveRefused(f"operation {operation_id} changed while resolving (now {current}); try again")
    return written.current


def _aws_environment(table: str | None) -> str:
    """The table to resolve on: a deployed one (ambient AWS credentials and region), else the local
    stack's, with the emulator's endpoint and throwaway credentials."""
    if table:
        return table
    port = os.environ.get("BILLPAY_EMULATOR_PORT", "4566")
    os.environ.setdefault("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", LOCAL_REGION),
        ("AWS_REGION", LOCAL_REGION),
    ):
        os.environ.setdefault(name, value)
    return os.environ.get("OPERATIONS_TABLE_NAME") or LOCAL_TABLE


def caller_identity() -> str:
    """Who is resolving: the ARN STS says the credentials belong to."""
    import boto3  # noqa: PLC0415 — an operator command, not a Lambda

    sts: Any = boto3.client("sts")
    return str(sts.get_caller_identity()["Arn"])


def main(argv: Sequence[str] | None = None) -> int:
    from billpay.adapters.operations_dynamodb import DynamoOperationStore  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="make resolve", description="Resolve a needs_review operation after checking the books."
    )
    parser.add_argument("--operation-id", required=True)
    parser.add_argument("--status", required=True, choices=RESOLUTIONS)
    parser.add_argument("--note", required=True)
    parser.add_argument("--table", default="", help="a deployed stack's table (default: the local stack's)")
    parser.add_argument(
        "--bus", default="", help="its event bus (default: EVENT_BUS_NAME, else the local one)"
    )
    args = parser.parse_args(argv)
    table = _aws_environment(args.table or None)
    import boto3  # noqa: PLC0415 — an operator command: boto3's own defaults, no function settings

    store = DynamoOperationStore(table, client=boto3.client("dynamodb"))
    where = "the deployed table" if args.table else "the local stack (is `make run` running?)"
    try:
        by = caller_identity()
        op = resolve(store, args.operation_id, args.status, args.note, by=by)
    except ResolveRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"cannot reach {where}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # credentials, endpoint: say what failed, no traceback for an operator
        print(f"cannot resolve on {where}: {exc}", file=sys.stderr)
        return 1
    print(
        f"{op.operation_id}: needs_review -> {op.status} (by {by}); recorded as `resolution` on the operation"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
