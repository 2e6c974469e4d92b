"""The one Logger and Metrics of the layer (Powertools).

Every module logs through `logger` so each line carries the same service name and, inside a handler
decorated with `logger.inject_lambda_context`, the request's correlation fields. No Tracer: X-Ray is
switched on by the template (`Tracing: Active`) instead of paying ~190 ms per cold start for the SDK.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "billpay")

logger = Logger(service=SERVICE_NAME)
# Namespace comes from POWERTOOLS_METRICS_NAMESPACE; the default keeps local runs and tests quiet about it.
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BillPaySync"), service=SERVICE_NAME
)

__all__ = ["SERVICE_NAME", "logger", "metrics"]
