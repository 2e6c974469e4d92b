"""The one Logger and Metrics of the layer (Powertools).

Every module logs through `logger` so each line carries the same service name and, inside a handler
decorated with `logger.inject_lambda_context`, the request's correlation fields. No Tracer: X-Ray is
switched on by the template (`Tracing: Active`) instead of paying ~190 ms per cold start for the SDK.

Every handler is decorated with `with_metrics` (Powertools' `metrics.log_metrics`), which flushes what
the invocation added (as EMF lines in the log). Unexpected exceptions are counted as `UnexpectedError`:
by the API resolver's catch-all (which answers 500, so Lambda's own Errors metric never sees them) and by
`count_unexpected_errors` on the worker and the sweeper; an alarm in template.yaml watches that metric.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "billpay")

UNEXPECTED_ERROR_METRIC: Final = "UnexpectedError"
DEPENDENCY_UNAVAILABLE_METRIC: Final = "DependencyUnavailable"

logger = Logger(service=SERVICE_NAME)
# Namespace comes from POWERTOOLS_METRICS_NAMESPACE; the default keeps local runs and tests quiet about it.
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BillPaySync"), service=SERVICE_NAME
)
# Most API invocations add no metric; Powertools would warn about that on every one of them.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

P = ParamSpec("P")
R = TypeVar("R")


def with_metrics(handler: Callable[P, R]) -> Callable[P, R]:
    """`metrics.log_metrics` (flush what the invocation added), keeping the handler's signature."""
    return cast(Callable[P, R], metrics.log_metrics(handler))


def count_unexpected_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Count an exception escaping `fn` as `UnexpectedError`, then let it propagate unchanged."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception:
            metrics.add_metric(name=UNEXPECTED_ERROR_METRIC, unit=MetricUnit.Count, value=1)
            raise

    return wrapper


__all__ = [
    "DEPENDENCY_UNAVAILABLE_METRIC",
    "SERVICE_NAME",
    "UNEXPECTED_ERROR_METRIC",
    "count_unexpected_errors",
    "logger",
    "metrics",
    "with_metrics",
]
