"""`python -m local.sandbox`: serve the Codat sandbox in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from local.sandbox.seed import SEEDS
from local.sandbox.server import DEFAULT_PORT, start_sandbox


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.sandbox", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("BILLPAY_SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("BILLPAY_SANDBOX_PORT", DEFAULT_PORT)))
    parser.add_argument("--seed", choices=SEEDS, default=None, help="default: $BILLPAY_SANDBOX_SEED or demo")
    parser.add_argument("--page-size", type=int, default=None)
    parser.add_argument("--idempotency-seconds", type=float, default=None)
    parser.add_argument(
        "--latency-ms", type=float, default=None, help="default: $BILLPAY_SANDBOX_LATENCY_MS or 0"
    )
    parser.add_argument("--verbose", action="store_true", default=None, help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(message)s")

    try:
        handle = start_sandbox(
            args.host,
            args.port,
            seed=args.seed,
            page_size=args.page_size,
            idempotency_seconds=args.idempotency_seconds,
            verbose=args.verbose,
            latency_ms=args.latency_ms,
        )
    except (OSError, ValueError) as exc:
        print(f"sandbox: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    config = handle.config
    print(
        f"Codat sandbox on {handle.url} (seed={config.seed}, page size={config.page_size}, "
        f"idempotency cache={config.idempotency_seconds:g}s, latency={config.latency_ms:g}ms)",
        flush=True,
    )
    stop.wait()
    handle.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
