"""Settings: every environment variable of docs/contract.md (Configuration), validated once per cold start.

`get_settings()` builds the model from `os.environ` on first call and caches it, so a bad configuration
fails loudly on the first invocation instead of deep inside a request. Tests change the environment and
call `reset_settings()`.

Plain pydantic rather than pydantic-settings: the mapping from variable names to fields is one dict, and
the layer stays one dependency lighter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

# Codat caches a keyed write's answer for 90 minutes; our retry window must close well before that, so
# a retry can never land after Codat has forgotten the key (it would be applied a second time).
KEY_CACHE_MARGIN_SECONDS = 600.0

# API Gateway gives up on an integration after 29 s; synchronous upstream work must end well before,
# leaving time for the DynamoDB writes and the answer itself.
API_GATEWAY_TIMEOUT_SECONDS = 29.0

PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]

# Field name -> environment variable. One place, so error messages can name the variable the operator set.
ENV_VARS: dict[str, str] = {
    "codat_base_url": "CODAT_BASE_URL",
    "codat_api_key": "CODAT_API_KEY",
    "codat_api_key_secret_arn": "CODAT_API_KEY_SECRET_ARN",
    "operations_table_name": "OPERATIONS_TABLE_NAME",
    "retry_queue_url": "RETRY_QUEUE_URL",
    "event_bus_name": "EVENT_BUS_NAME",
    "retry_window_seconds": "BILLPAY_RETRY_WINDOW_SECONDS",
    "retry_base_delay_seconds": "BILLPAY_RETRY_BASE_DELAY_SECONDS",
    "retry_max_delay_seconds": "BILLPAY_RETRY_MAX_DELAY_SECONDS",
    "upstream_key_cache_seconds": "BILLPAY_UPSTREAM_KEY_CACHE_SECONDS",
    "sweep_interval_seconds": "BILLPAY_SWEEP_INTERVAL_SECONDS",
    "upstream_timeout_seconds": "BILLPAY_UPSTREAM_TIMEOUT_SECONDS",
    "upstream_connect_timeout_seconds": "BILLPAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS",
    "sync_budget_seconds": "BILLPAY_SYNC_BUDGET_SECONDS",
    "lookup_cache_seconds": "BILLPAY_LOOKUP_CACHE_SECONDS",
    "problem_type_base": "BILLPAY_PROBLEM_TYPE_BASE",
    "aws_connect_timeout_seconds": "BILLPAY_AWS_CONNECT_TIMEOUT_SECONDS",
    "aws_read_timeout_seconds": "BILLPAY_AWS_READ_TIMEOUT_SECONDS",
    "aws_max_attempts": "BILLPAY_AWS_MAX_ATTEMPTS",
    "callers_parameter_name": "BILLPAY_CALLERS_PARAMETER",
    "callers_max_age_seconds": "BILLPAY_CALLERS_MAX_AGE_SECONDS",
    "codat_key_max_age_seconds": "BILLPAY_CODAT_KEY_MAX_AGE_SECONDS",
}

Requirable = Literal["operations_table_name", "retry_queue_url", "callers_parameter_name"]


class ConfigError(RuntimeError):
    """The environment does not describe a runnable configuration. The message names the variables."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    codat_base_url: str = "https://api.codat.io"
    codat_api_key: SecretStr | None = None
    codat_api_key_secret_arn: str | None = None
    operations_table_name: str | None = None
    retry_queue_url: str | None = None
    # Where terminal events go (docs/contract.md, Events); unset: no events (e.g. a function that ends none).
    event_bus_name: str | None = None

    # Retries (docs/contract.md, Retries): window from the first attempt, backoff with full jitter.
    retry_window_seconds: PositiveSeconds = 4800.0
    retry_base_delay_seconds: PositiveSeconds = 5.0
    retry_max_delay_seconds: PositiveSeconds = 600.0
    upstream_key_cache_seconds: PositiveSeconds = 5400.0
    sweep_interval_seconds: PositiveSeconds = 60.0

    # One upstream HTTP request (read timeout); connecting gets its own, shorter limit.
    upstream_timeout_seconds: PositiveSeconds = 8.0
    upstream_connect_timeout_seconds: PositiveSeconds = 3.0
    # All upstream work of one API request (lookups, read retries, the write's one attempt).
    sync_budget_seconds: PositiveSeconds = 15.0
    lookup_cache_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 60.0
    problem_type_base: str = "https://billpay.example.com"
    # The client registry (docs/contract.md, "Callers and permissions"): an SSM parameter, re-read after
    # max_age; and how long a fetched Codat key is used before it is read again (a rotation's lag).
    callers_parameter_name: str | None = None
    callers_max_age_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 60.0
    codat_key_max_age_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 300.0

    # Every AWS client of ours (billpay.adapters.aws_sdk): one call, all attempts and backoff included,
    # must end well inside the shortest Lambda timeout (a unit test checks it against template.yaml).
    # A single-item DynamoDB request answers in milliseconds; these bound a dependency that does not.
    aws_connect_timeout_seconds: PositiveSeconds = 1.0
    aws_read_timeout_seconds: PositiveSeconds = 2.0
    aws_max_attempts: Annotated[int, Field(ge=1, le=5)] = 2

    @field_validator("codat_base_url", "problem_type_base")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("codat_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator(
        "codat_api_key",
        "codat_api_key_secret_arn",
        "operations_table_name",
        "retry_queue_url",
        "callers_parameter_name",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # SAM and shells routinely pass "" for "not set".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if (self.codat_api_key is None) == (self.codat_api_key_secret_arn is None):
            raise ValueError("set exactly one of CODAT_API_KEY (local) or CODAT_API_KEY_SECRET_ARN (cloud)")
        if self.retry_window_seconds > self.upstream_key_cache_seconds - KEY_CACHE_MARGIN_SECONDS:
            raise ValueError(
                "BILLPAY_RETRY_WINDOW_SECONDS must end at least 600 s before "
                "BILLPAY_UPSTREAM_KEY_CACHE_SECONDS "
                f"(Codat's idempotency cache): window {self.retry_window_seconds:g} s, "
                f"cache {self.upstream_key_cache_seconds:g} s"
            )
        if self.retry_base_delay_seconds > self.retry_max_delay_seconds:
            raise ValueError(
                "BILLPAY_RETRY_BASE_DELAY_SECONDS must not exceed BILLPAY_RETRY_MAX_DELAY_SECONDS"
            )
        if self.sync_budget_seconds >= API_GATEWAY_TIMEOUT_SECONDS - 4:
            raise ValueError(
                "BILLPAY_SYNC_BUDGET_SECONDS must stay well under API Gateway's 29 s (at most 24 s)"
            )
        return self

    def require(self, name: Requirable) -> str:
        """The value of a setting only some functions need, or a ConfigError naming its variable."""
        value: str | None = getattr(self, name)
        if value is None:
            raise ConfigError(f"{ENV_VARS[name]} is required by this function but is not set")
        return value

    @property
    def table_name(self) -> str:
        return self.require("operations_table_name")

    @property
    def queue_url(self) -> str:
        return self.require("retry_queue_url")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Validate a fresh Settings from `environ` (default `os.environ`); ConfigError on any problem."""
    env = os.environ if environ is None else environ
    raw = {field: env[var] for field, var in ENV_VARS.items() if var in env}
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reset_settings() -> None:
    """Forget the cached settings (tests that change the environment)."""
    get_settings.cache_clear()


def _describe(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        field = str(loc[0]) if loc else ""
        where = ENV_VARS.get(field, field) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
