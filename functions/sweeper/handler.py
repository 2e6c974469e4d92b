"""SweeperFunction: the one scheduler of retries, on a one-minute schedule (docs/contract.md, Retries).

AWS glue only: `billpay.service.sweep.Sweeper` pages through the due operations, takes each one's lease on
the base item, ends those past the retry window, enqueues the rest, and publishes the `NeedsReviewOpen` and
`OldestUnfinishedSeconds` gauges.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from billpay.observability import count_unexpected_errors, logger, metrics
from billpay.service.sweep import Sweeper

_sweeper: Sweeper | None = None


def _get_sweeper() -> Sweeper:
    global _sweeper  # noqa: PLW0603 — one sweeper (clients) per container
    if _sweeper is None:
        _sweeper = Sweeper.from_settings()
    return _sweeper


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@count_unexpected_errors
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = _get_sweeper().sweep(remaining_millis=context.get_remaining_time_in_millis)
    return report.to_dict()
