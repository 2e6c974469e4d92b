"""The Codat API key: from CODAT_API_KEY, or from Secrets Manager on first use, re-read after max_age.

Never at import: a handler that only lists accounts must not pay for boto3 at load. In Lambda, when the
AWS Parameters and Secrets Lambda Extension is attached (its port in the environment), the secret comes
over localhost from the extension's cache; otherwise through Powertools' parameters utility (secrets
provider, boto3 imported on first use). Either way a fetched key is used for at most
BILLPAY_CODAT_KEY_MAX_AGE_SECONDS (default 300), so a rotated key is picked up without recycling the
functions (docs/runbook.md: revoke the old key only after max_age + the longest Lambda timeout).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from urllib.parse import quote

from billpay.adapters.aws_sdk import client_config
from billpay.config import ConfigError, Settings
from billpay.observability import logger

EXTENSION_PORT_VAR = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"

_lock = threading.Lock()
_cache: dict[str, tuple[str, float]] = {}  # ARN -> (key, monotonic time fetched)
# Seconds the first fetch took: the bench and logs report it (it lands on one request per container).
last_fetch_seconds: float | None = None


class SecretUnavailableError(RuntimeError):
    """The key could not be fetched (Secrets Manager or the extension failed). Never carries the value.
    The API answers it 503 `service-unavailable`: nothing was sent upstream without the key."""


def get_codat_api_key(settings: Settings) -> str:
    """The raw key (or a full `Basic …` header value, as stored). Cached after the first fetch."""
    if settings.codat_api_key is not None:
        return settings.codat_api_key.get_secret_value()
    arn = settings.codat_api_key_secret_arn
    if arn is None:  # Settings guarantees one of the two; kept for type narrowing
        raise ConfigError("CODAT_API_KEY or CODAT_API_KEY_SECRET_ARN must be set")
    max_age = settings.codat_key_max_age_seconds
    cached = _cache.get(arn)
    if cached is not None and time.monotonic() - cached[1] < max_age:
        return cached[0]
    with _lock:
        cached = _cache.get(arn)
        if cached is None or time.monotonic() - cached[1] >= max_age:
            cached = (_fetch(arn, settings), time.monotonic())
            _cache[arn] = cached
    return cached[0]


def reset_cache() -> None:
    """Forget fetched secrets (tests)."""
    global last_fetch_seconds  # noqa: PLW0603 - one module-level measurement
    with _lock:
        _cache.clear()
        last_fetch_seconds = None
        parameters = sys.modules.get("aws_lambda_powertools.utilities.parameters")
        if parameters is not None:  # never imported just to be cleared (it loads boto3)
            parameters.clear_caches()


def _fetch(arn: str, settings: Settings) -> str:
    global last_fetch_seconds  # noqa: PLW0603 - one module-level measurement
    started = time.perf_counter()
    port = os.environ.get(EXTENSION_PORT_VAR)
    token = os.environ.get("AWS_SESSION_TOKEN")
    try:
        value = _from_extension(arn, port, token) if port and token else _from_powertools(arn, settings)
    except SecretUnavailableError:
        raise
    except Exception as exc:
        # The exception text of boto3/httpx never contains the secret value, only the request.
        raise SecretUnavailableError(f"could not read the Codat key secret: {type(exc).__name__}") from exc
    last_fetch_seconds = time.perf_counter() - started
    logger.info(
        "codat key fetched",
        extra={"source": "extension" if port and token else "boto3", "seconds": round(last_fetch_seconds, 4)},
    )
    value = value.strip()
    if not value:
        raise SecretUnavailableError("the Codat key secret is empty")
    return value


def _from_extension(arn: str, port: str, token: str) -> str:
    import httpx  # noqa: PLC0415 - already loaded by the Codat client; deferred only to keep this module light

    response = httpx.get(
        f"http://localhost:{int(port)}/secretsmanager/get?secretId={quote(arn, safe='')}",
        headers={"X-Aws-Parameters-Secrets-Token": token},
        timeout=httpx.Timeout(3.0),
    )
    if response.status_code != 200:
        raise SecretUnavailableError(f"secrets extension answered {response.status_code}")
    secret = response.json().get("SecretString")
    if not isinstance(secret, str):
        raise SecretUnavailableError("the Codat key secret has no SecretString")
    return secret


def _from_powertools(arn: str, settings: Settings) -> str:
    # Deferred: the parameters utility imports boto3 (~100 ms) that the list handler must not pay at load.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

    # Bounded like every AWS client of ours: botocore's default 60 s read timeout outlives the function.
    provider = SecretsProvider(boto_config=client_config(settings))
    secret = provider.get(arn, max_age=int(settings.codat_key_max_age_seconds))
    if not isinstance(secret, str):
        raise SecretUnavailableError("the Codat key secret has no SecretString")
    return secret


__all__ = ["SecretUnavailableError", "get_codat_api_key", "last_fetch_seconds", "reset_cache"]
