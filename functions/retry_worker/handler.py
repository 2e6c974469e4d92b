"""RetryWorkerFunction: SQS retry queue → one upstream attempt per leased operation (contract: Retries).

AWS glue only. Each record is handled by `billpay.service.retry.process_message`; a record is reported in
`batchItemFailures` only when it raised an unexpected exception before the lease was taken (e.g. DynamoDB
unavailable), so SQS redelivers it and, if it keeps failing, moves it to the dead-letter queue. A message
whose token no longer holds the lease is simply deleted: the sweeper owns recovery.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from billpay.observability import count_unexpected_errors, logger, metrics
from billpay.service.retry import RetryWorker

processor = BatchProcessor(event_type=EventType.SQS)
_worker: RetryWorker | None = None


def _get_worker() -> RetryWorker:
    # Built on first use, not at import: settings and AWS clients belong to the first invocation.
    global _worker  # noqa: PLW0603 — one worker (clients, pools) per container
    if _worker is None:
        _worker = RetryWorker.from_settings()
    return _worker


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@count_unexpected_errors
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    worker = _get_worker()

    # A record that raises is reported in batchItemFailures, not as a failed invocation: counted here,
    # since Lambda's Errors metric never sees it.
    @count_unexpected_errors
    def record_handler(record: SQSRecord) -> None:
        worker.process_message(
            record.body,
            remaining_millis=context.get_remaining_time_in_millis,
            receive_count=int(record.attributes.approximate_receive_count or 1),
        )

    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )
