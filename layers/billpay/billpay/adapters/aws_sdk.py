"""The one botocore configuration of every AWS client (DynamoDB, SQS, SSM, Secrets Manager), and the one
test of "our own dependency is unavailable".

Why bounded: botocore's defaults (60 s read timeout; legacy mode's 5 attempts with 1+2+4+8 s of backoff)
outlive a 10-25 s Lambda, which then dies before it can answer. Here one SDK call — every attempt timing
out, every backoff at its ceiling — is bounded by `worst_case_call_seconds`, and a unit test checks that
bound against each function's Timeout in template.yaml.

botocore is imported only when a client is built or an exception is examined, never at this module's
import: the list handler loads this module without paying for boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from billpay.config import Settings, get_settings

if TYPE_CHECKING:
    from botocore.config import Config

# botocore's standard mode: the n-th retry waits rand() * min(2 ** (n - 1), 20) s for a throttling error
# (other errors scale the same ceiling down), so the ceiling of the n-th wait is min(2 ** (n - 1), 20).
_BOTOCORE_MAX_BACKOFF_SECONDS: Final = 20.0

# Answered by a dependency that is there but overloaded or failing: retrying later can succeed. (Codes
# botocore itself treats as throttling or transient.)
UNAVAILABLE_ERROR_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "LimitExceededException",
        "TransactionInProgressException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)

# Seconds a client is told to wait after our own dependency failed (the SDK already retried).
DEPENDENCY_RETRY_AFTER_SECONDS: Final = 2


def backoff_ceiling_seconds(max_attempts: int) -> float:
    """The longest total wait botocore's standard mode can sleep between `max_attempts` attempts."""
    return sum(min(2.0 ** (n - 1), _BOTOCORE_MAX_BACKOFF_SECONDS) for n in range(1, max_attempts))


def worst_case_call_seconds(settings: Settings | None = None) -> float:
    """How long one SDK call can take before it raises: every attempt spends its connect and read
    timeouts, every wait between attempts its ceiling."""
    s = settings or get_settings()
    per_attempt = s.aws_connect_timeout_seconds + s.aws_read_timeout_seconds
    return s.aws_max_attempts * per_attempt + backoff_ceiling_seconds(s.aws_max_attempts)


def client_config(settings: Settings | None = None) -> Config:
    """The botocore `Config` for every client of ours: `boto3.client(name, config=client_config())`,
    or `boto_config=` for Powertools' parameter providers."""
    from botocore.config import Config  # noqa: PLC0415 - see the module docstring

    s = settings or get_settings()
    return Config(
        connect_timeout=s.aws_connect_timeout_seconds,
        read_timeout=s.aws_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": s.aws_max_attempts},
        tcp_keepalive=True,
    )


def is_dependency_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or an exception it was raised from) says an AWS service we depend on could not
    be reached or refused for load — after the SDK's own retries — rather than that a request was wrong:
    a connection or timeout error, a throttling error, or a 5xx."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _unavailable(exc: BaseException) -> bool:
    if not type(exc).__module__.startswith("botocore"):
        return False
    # botocore raised it, so botocore is loaded: this import costs nothing.
    from botocore.exceptions import ClientError, HTTPClientError  # noqa: PLC0415
    from botocore.exceptions import ConnectionError as BotocoreConnectionError  # noqa: PLC0415

    if isinstance(exc, BotocoreConnectionError | HTTPClientError):
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError, ...
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error.get("Code") in UNAVAILABLE_ERROR_CODES or (isinstance(status, int) and status >= 500)
    return False


__all__ = [
    "DEPENDENCY_RETRY_AFTER_SECONDS",
    "UNAVAILABLE_ERROR_CODES",
    "backoff_ceiling_seconds",
    "client_config",
    "is_dependency_unavailable",
    "worst_case_call_seconds",
]
