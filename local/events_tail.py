"""`python -m local.events_tail` (= `make events`): print every event the local stack publishes.

The emulator's bus copies every `billpay` event to a tap queue (local/emulator.py); this tails that queue
and prints each event as one JSON line (EventBridge's envelope: `id`, `detail-type`, `source`, `time`,
`detail`), so an app under development can wait for "Operation Succeeded" instead of polling. Each
message is deleted once printed: one tail per stack. Ctrl-C stops it.

    make events                                  # the `make run` stack (BILLPAY_EMULATOR_PORT, 4566)
    python -m local.events_tail --once           # print what is queued now, then exit
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from local.emulator import EVENTS_TAP, client, physical_name

WAIT_SECONDS = 10  # SQS long polling: a printed event is at most one receive away, with no busy loop


def tap_queue_url(sqs: Any) -> str:
    return str(sqs.get_queue_url(QueueName=physical_name(EVENTS_TAP))["QueueUrl"])


def tail(sqs: Any, queue_url: str, out: TextIO, *, once: bool = False) -> int:
    """Print each queued event as a JSON line; the number printed (with `once`, when the queue is empty)."""
    printed = 0
    while True:
        answer = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0 if once else WAIT_SECONDS
        )
        messages = answer.get("Messages", [])
        if not messages and once:
            return printed
        for message in messages:
            try:
                event = json.loads(message["Body"])
            except ValueError:
                event = {"unparsed": message["Body"]}
            out.write(json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n")
            out.flush()
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            printed += 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make events", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--once", action="store_true", help="print what is queued now, then exit")
    parser.add_argument(
        "--endpoint",
        default=f"http://127.0.0.1:{os.environ.get('BILLPAY_EMULATOR_PORT', '4566')}",
        help="the local AWS emulator (default: BILLPAY_EMULATOR_PORT, 4566)",
    )
    args = parser.parse_args(argv)
    sqs = client("sqs", args.endpoint)
    try:
        queue_url = tap_queue_url(sqs)
    except Exception as exc:
        print(f"no event tap at {args.endpoint} (is `make run` running?): {exc}", file=sys.stderr)
        return 1
    try:
        tail(sqs, queue_url, sys.stdout, once=args.once)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
