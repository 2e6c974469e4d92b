"""Every function's AWS SDK calls — timeouts, attempts and botocore's backoff — fit inside its Lambda
Timeout with the rest of its work, so a dependency that stops answering gets a 503 (or a clean exit for
the worker and the sweeper), not a function killed mid-answer. And "unavailable" is told from "wrong".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from billpay.adapters.aws_sdk import (
    backoff_ceiling_seconds,
    client_config,
    is_dependency_unavailable,
    worst_case_call_seconds,
)
from billpay.config import Settings, load_settings, reset_settings
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from local.template import load_template, resources_of_type

TEMPLATE = load_template()
GLOBALS: dict[str, Any] = TEMPLATE.get("Globals", {}).get("Function", {})
FUNCTIONS = resources_of_type(TEMPLATE, "AWS::Serverless::Function")

# Time left after the last SDK call gave up, to log and answer (or return the batch report).
ANSWER_SECONDS = 1.0


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CODAT_API_KEY", "k")
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    reset_settings()
    yield
    reset_settings()


def function_settings(name: str) -> tuple[float, Settings]:
    """The function's Timeout and the settings its template environment gives it."""
    props = {**GLOBALS, **FUNCTIONS[name]}
    shared = (GLOBALS.get("Environment") or {}).get("Variables") or {}
    own = (FUNCTIONS[name].get("Environment") or {}).get("Variables") or {}
    # !Ref values (table, queue, secret ARN) are resolved at deploy time; only literals shape timings.
    env = {k: v for k, v in {**shared, **own}.items() if isinstance(v, str)}
    env.pop("CODAT_API_KEY_SECRET_ARN", None)
    env["CODAT_API_KEY"] = "k"
    return float(props["Timeout"]), load_settings(env)


def test_botocore_standard_backoff_ceilings() -> None:
    assert backoff_ceiling_seconds(1) == 0
    assert backoff_ceiling_seconds(2) == 1
    assert backoff_ceiling_seconds(4) == 1 + 2 + 4
    # botocore's legacy default (5 attempts, 1+2+4+8 s) alone outlives a 10 s function.
    assert backoff_ceiling_seconds(5) == 15


def test_one_call_is_bounded_by_attempts_timeouts_and_backoff() -> None:
    settings = load_settings(
        {
            "CODAT_API_KEY": "k",
            "BILLPAY_AWS_CONNECT_TIMEOUT_SECONDS": "1",
            "BILLPAY_AWS_READ_TIMEOUT_SECONDS": "2",
            "BILLPAY_AWS_MAX_ATTEMPTS": "3",
        }
    )
    assert worst_case_call_seconds(settings) == 3 * (1 + 2) + (1 + 2)


def test_the_client_config_is_the_one_the_arithmetic_is_about() -> None:
    settings = load_settings({"CODAT_API_KEY": "k"})
    config: Any = client_config(settings)  # botocore's stubs do not declare Config's attributes
    assert config.connect_timeout == settings.aws_connect_timeout_seconds
    assert config.read_timeout == settings.aws_read_timeout_seconds
    assert config.retries == {"mode": "standard", "total_max_attempts": settings.aws_max_attempts}


def test_every_function_survives_one_sdk_call_that_exhausts_its_retries() -> None:
    for name in FUNCTIONS:
        timeout, settings = function_settings(name)
        assert worst_case_call_seconds(settings) + ANSWER_SECONDS <= timeout, name


@pytest.mark.parametrize("name", ["CreateBankAccountFunction", "CreateBillPaymentFunction"])
def test_a_write_can_still_settle_after_spending_its_whole_sync_budget(name: str) -> None:
    # The claim, the guards' lookups, mark-sent and the send all run inside the sync budget; the settle
    # (or the release of a refused claim) comes after it.
    timeout, settings = function_settings(name)
    assert settings.sync_budget_seconds + worst_case_call_seconds(settings) + ANSWER_SECONDS <= timeout


def test_the_list_function_fetches_its_key_inside_its_budget() -> None:
    timeout, settings = function_settings("ListBankAccountsFunction")
    assert worst_case_call_seconds(settings) <= settings.sync_budget_seconds
    assert settings.sync_budget_seconds + ANSWER_SECONDS <= timeout


def test_the_retry_worker_finishes_one_record_whatever_its_dependencies_do() -> None:
    # Lease (one conditional write), the key on first use, one upstream send, the settle; the batch loop
    # stops taking records when less than this is left.
    timeout, settings = function_settings("RetryWorkerFunction")
    call = worst_case_call_seconds(settings)
    assert 3 * call + settings.upstream_timeout_seconds + ANSWER_SECONDS <= timeout


def test_the_sweeper_finishes_one_operation_whatever_its_dependencies_do() -> None:
    # One index page, one lease write, one SQS send.
    timeout, settings = function_settings("SweeperFunction")
    assert 3 * worst_case_call_seconds(settings) + ANSWER_SECONDS <= timeout


# ------------------------------------------------------------------------ unavailable vs. wrong


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutItem")


@pytest.mark.parametrize(
    "exc",
    [
        client_error("ProvisionedThroughputExceededException", 400),
        client_error("ThrottlingException", 400),
        client_error("RequestLimitExceeded", 400),
        client_error("InternalServerError", 500),
        client_error("SomethingNew", 503),
        EndpointConnectionError(endpoint_url="https://dynamodb.test"),
        ReadTimeoutError(endpoint_url="https://dynamodb.test"),
        ConnectTimeoutError(endpoint_url="https://dynamodb.test"),
    ],
)
def test_throttling_5xx_and_connection_failures_are_unavailable(exc: Exception) -> None:
    assert is_dependency_unavailable(exc)


def test_an_unavailable_cause_makes_the_wrapper_unavailable() -> None:
    try:
        try:
            raise ReadTimeoutError(endpoint_url="https://ssm.test")
        except ReadTimeoutError as inner:
            raise RuntimeError("could not load the registry") from inner
    except RuntimeError as outer:
        assert is_dependency_unavailable(outer)


@pytest.mark.parametrize(
    "exc",
    [
        client_error("ValidationException", 400),
        client_error("AccessDeniedException", 400),
        client_error("ResourceNotFoundException", 400),
        client_error("ConditionalCheckFailedException", 400),
        ParamValidationError(report="bad"),
        RuntimeError("a bug of ours"),
        ValueError("x"),
    ],
)
def test_a_wrong_request_or_our_own_bug_is_not_unavailable(exc: Exception) -> None:
    assert not is_dependency_unavailable(exc)
