"""The client registry from SSM Parameter Store, through Powertools' parameters utility.

One String parameter holds the JSON document (`billpay.domain.clients`). Powertools caches the raw value
for `max_age` seconds (BILLPAY_CALLERS_MAX_AGE_SECONDS, default 60), so a change is seen by every
container within that time without a redeploy.

Every load is validated. A document that breaks a rule never replaces a good one: the container keeps
answering from the last good registry, logs why, and counts `CallerRegistryInvalid` (an alarm watches it)
once per load while the parameter stays broken. A container that never loaded a good registry has
nothing to fall back on and answers 503 — as it does when SSM itself cannot be read.

Powertools' parameters package imports boto3 at its own import, so it is imported here on first use:
a handler that imports this module at load still loads no boto3 until its first request.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from billpay.domain.clients import Registry, RegistryInvalid, parse_registry
from billpay.observability import SERVICE_NAME, logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

INVALID_METRIC: Final = "CallerRegistryInvalid"


class RegistryUnavailable(RuntimeError):
    """No registry to answer from: SSM could not be read, or no load was ever valid. Never a 500."""


@dataclass
class _State:
    raw: str | None = None  # the document the registry below came from
    registry: Registry | None = None  # the last good one
    bad_raw: str | None = None  # the last document refused, and when it was last counted
    bad_counted_at: float = 0.0


_lock = threading.Lock()
_state = _State()
_provider: SSMProvider | None = None
# Seconds the first read took in this container (the bench reports it; logs carry it too).
last_load_seconds: float | None = None


def _ssm_provider() -> SSMProvider:
    global _provider  # noqa: PLW0603 - one provider (its client and cache) per container
    if _provider is None:
        import boto3  # noqa: PLC0415 - deferred: the list handler loads no boto3 at import
        from aws_lambda_powertools.utilities.parameters import SSMProvider  # noqa: PLC0415 - imports boto3
        from botocore.config import Config  # noqa: PLC0415

        # Short timeouts and few retries: a registry read sits in front of every request (API Gateway
        # gives up at 29 s); a failure answers 503 and the client retries.
        config = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "max_attempts": 3})
        _provider = SSMProvider(boto3_client=boto3.client("ssm", config=config))
    return _provider


def load_registry(parameter_name: str, max_age_seconds: float) -> Registry:
    """The current registry (cached `max_age_seconds`); raises RegistryUnavailable when there is none."""
    global last_load_seconds  # noqa: PLW0603 - one module-level measurement
    started = time.perf_counter()
    try:
        raw = _ssm_provider().get(parameter_name, max_age=int(max_age_seconds))
    except Exception as exc:
        logger.warning(
            "caller registry unreadable", extra={"parameter": parameter_name, "error": type(exc).__name__}
        )
        raise RegistryUnavailable(f"the caller registry could not be read ({type(exc).__name__})") from exc
    if last_load_seconds is None:
        last_load_seconds = time.perf_counter() - started
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return _validated(text, parameter_name, max_age_seconds)


def _validated(text: str, parameter_name: str, max_age_seconds: float) -> Registry:
    with _lock:
        if text == _state.raw and _state.registry is not None:
            return _state.registry
        if text == _state.bad_raw:
            if time.monotonic() - _state.bad_counted_at >= max(max_age_seconds, 1.0):
                _count_invalid(parameter_name, "still invalid")
        else:
            try:
                registry = parse_registry(json.loads(text))
            except (ValueError, RecursionError) as exc:  # RegistryInvalid and JSONDecodeError are ValueErrors
                _state.bad_raw = text
                _count_invalid(parameter_name, str(exc) if isinstance(exc, RegistryInvalid) else "not JSON")
            else:
                _state.raw, _state.registry, _state.bad_raw = text, registry, None
                logger.info(
                    "caller registry loaded",
                    extra={"parameter": parameter_name, "clients": sorted(registry.clients)},
                )
                return registry
        if _state.registry is None:
            raise RegistryUnavailable("the caller registry is invalid and no earlier version was loaded")
        return _state.registry


def _count_invalid(parameter_name: str, reason: str) -> None:
    _state.bad_counted_at = time.monotonic()
    logger.error(
        "caller registry invalid; keeping the last good one",
        extra={"parameter": parameter_name, "reason": reason[:2000], "kept": _state.registry is not None},
    )
    try:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric  # noqa: PLC0415

        with single_metric(
            name=INVALID_METRIC,
            unit=MetricUnit.Count,
            value=1,
            namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BillPaySync"),
            default_dimensions={"service": SERVICE_NAME},
        ):
            pass
    except Exception:
        logger.exception("could not emit the CallerRegistryInvalid metric")


def reset_cache() -> None:
    """Forget the loaded registry and Powertools' cached value (tests)."""
    global _provider, last_load_seconds  # noqa: PLW0603
    with _lock:
        _state.raw, _state.registry, _state.bad_raw, _state.bad_counted_at = None, None, None, 0.0
        if _provider is not None:
            _provider.clear_cache()  # type: ignore[no-untyped-call]
        _provider = None
        last_load_seconds = None


def write_registry_document(client: Any, parameter_name: str, document: dict[str, Any]) -> None:
    """Store a (validated) registry document; used by the operator command and the local stack."""
    parse_registry(document)
    client.put_parameter(
        Name=parameter_name,
        Value=json.dumps(document, indent=1, sort_keys=True),
        Type="String",
        Overwrite=True,
    )


__all__ = [
    "INVALID_METRIC",
    "RegistryUnavailable",
    "last_load_seconds",
    "load_registry",
    "reset_cache",
    "write_registry_document",
]
