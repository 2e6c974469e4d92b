"""The one Codat client (httpx, synchronous).

- One `httpx.Client` (one connection pool) per container, built on first use and reused across
  invocations; thread-safe, so concurrent lookups share it.
- `Authorization: Basic <base64 of the key>`, or a stored value starting `Basic ` used unchanged.
  The key is never logged, and response bodies (account numbers) are never logged either.
- Path segments are validated and URL-encoded: company and connection ids must be UUIDs (lower-cased),
  a bill id is a free string without `/`, `..` or control characters.
- Reads retry at most twice (exponential backoff with full jitter, never before `Retry-After`) inside a
  deadline, then raise a typed `CodatError`.
- Writes get a low-level `post_keyed` that neither retries nor classifies: the outcome of a keyed write
  is classified once, in domain code (docs/contract.md, Outcome table), and httpx exceptions propagate to it.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from billpay.adapters.secrets import get_codat_api_key
from billpay.config import Settings, get_settings
from billpay.domain.bounds import codat_error_fields, parse_retry_after
from billpay.models.codat import UUID_PATTERN, Bills, CompanyInformation, PaymentMappingOptions
from billpay.models.lists import Suppliers
from billpay.observability import logger

MAX_READ_RETRIES = 2
READ_BACKOFF_BASE_SECONDS = 0.2
READ_BACKOFF_CAP_SECONDS = 2.0
# Below this much time left, another attempt cannot usefully finish: give up with what we have.
MIN_ATTEMPT_SECONDS = 0.25
MAX_BILL_ID_LENGTH = 255

_UUID_RE = re.compile(UUID_PATTERN)

ModelT = TypeVar("ModelT", bound=BaseModel)


# ---------------------------------------------------------------------------------------------- errors


class InvalidPathSegmentError(ValueError):
    """An id that must not be put in an upstream URL. API handlers validate first; this is the backstop."""


class CodatError(Exception):
    """A read that did not succeed. `upstream` holds Codat's statusCode, error, correlationId if given."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        upstream: Mapping[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.upstream: dict[str, Any] = dict(upstream or {})
        self.retry_after = retry_after

    @property
    def correlation_id(self) -> str | None:
        value = self.upstream.get("correlationId")
        return value if isinstance(value, str) else None


class CodatNotFoundError(CodatError):
    """404: unknown company, connection or resource."""

    kind = "not-found"


class CodatBadRequestError(CodatError):
    """400: Codat refused the request's content (e.g. a malformed query or continuation token)."""

    kind = "bad-request"


class CodatRejectedError(CodatError):
    """401, 402, 403: Codat refused *us* (key, plan, permissions)."""

    kind = "rejected"


class CodatRateLimitedError(CodatError):
    """429 after the retries: `retry_after` seconds from Codat's header when given."""

    kind = "rate-limited"


class CodatUnavailableError(CodatError):
    """5xx, a connection that failed, a broken or unexpected answer."""

    kind = "unavailable"


class CodatTimeoutError(CodatError):
    """No answer within the time allowed (a single request's timeout or the whole deadline)."""

    kind = "timeout"


# ------------------------------------------------------------------------------------------- paths


def company_segment(company_id: str) -> str:
    if not _UUID_RE.fullmatch(company_id):
        raise InvalidPathSegmentError("companyId must be a UUID")
    return company_id.lower()


def connection_segment(connection_id: str) -> str:
    if not _UUID_RE.fullmatch(connection_id):
        raise InvalidPathSegmentError("connectionId must be a UUID")
    return connection_id.lower()


def validate_bill_id(bill_id: str) -> str:
    """A bill id as Codat knows it: free text, but never something that changes the URL's path."""
    if not bill_id or len(bill_id) > MAX_BILL_ID_LENGTH:
        raise InvalidPathSegmentError(f"billId must be 1 to {MAX_BILL_ID_LENGTH} characters")
    if "/" in bill_id or ".." in bill_id or bill_id == ".":
        raise InvalidPathSegmentError("billId must not contain '/' or '..'")
    if any(unicodedata.category(ch) == "Cc" for ch in bill_id):
        raise InvalidPathSegmentError("billId must not contain control characters")
    return bill_id


def _seg(value: str) -> str:
    return quote(value, safe="")


def connection_path(company_id: str, connection_id: str) -> str:
    company = _seg(company_segment(company_id))
    return f"/companies/{company}/connections/{_seg(connection_segment(connection_id))}"


def payment_options_path(company_id: str, connection_id: str) -> str:
    return connection_path(company_id, connection_id) + "/payables/mappingOptions/payments"


def company_information_path(company_id: str, connection_id: str) -> str:
    return connection_path(company_id, connection_id) + "/payables/info"


def bills_path(company_id: str, connection_id: str) -> str:
    return connection_path(company_id, connection_id) + "/payables/bills"


def bank_accounts_path(company_id: str, connection_id: str) -> str:
    """create-bank-account: POST …/payables/bankAccounts."""
    return connection_path(company_id, connection_id) + "/payables/bankAccounts"


def bill_payment_path(company_id: str, connection_id: str, bill_id: str) -> str:
    """create-bill-payment: POST …/payables/bills/{billId}/payment (singular, as Codat spells it)."""
    return f"{bills_path(company_id, connection_id)}/{_seg(validate_bill_id(bill_id))}/payment"


# ---------------------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class UpstreamResponse:
    """A raw answer to a keyed write, for the domain's outcome classification."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def correlation_id(self) -> str | None:
        return error_details(self.body).get("correlationId")

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"), time.time())


# One parser of Codat's error bodies and one of Retry-After, shared with the write's classification.
error_details = codat_error_fields


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"), time.time())


def authorization_header(key: str) -> str:
    """Codat's Basic auth: base64 of the key; a stored value already starting `Basic ` is used as is."""
    if key.startswith("Basic "):
        return key
    return "Basic " + base64.b64encode(key.encode()).decode("ascii")


def parse_json(body: bytes) -> Any:
    """JSON with numbers as Decimal, so amounts are exact (0.1 stays 0.1)."""
    return json.loads(body, parse_float=Decimal)


# ------------------------------------------------------------------------------------------- client


class CodatClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | Callable[[], str],
        timeout_seconds: float,
        connect_timeout_seconds: float,
        budget_seconds: float,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._auth: str | None = None
        self._auth_lock = threading.Lock()
        self._timeout = timeout_seconds
        self._connect_timeout = min(connect_timeout_seconds, timeout_seconds)
        self._budget = budget_seconds
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=self._base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout_seconds, connect=self._connect_timeout),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=60.0),
            headers={"Accept": "application/json", "User-Agent": "billpay-sync"},
            follow_redirects=False,
            # HTTP(S)_PROXY from the environment would route money traffic through whatever is configured.
            trust_env=False,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.BaseTransport | None = None
    ) -> CodatClient:
        return cls(
            base_url=settings.codat_base_url,
            api_key=lambda: get_codat_api_key(settings),
            timeout_seconds=settings.upstream_timeout_seconds,
            connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
            budget_seconds=settings.sync_budget_seconds,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def deadline(self, budget_seconds: float | None = None) -> float:
        """An absolute deadline (this client's clock) `budget_seconds` from now (default: the sync budget)."""
        return self._clock() + (self._budget if budget_seconds is None else budget_seconds)

    # ---------------------------------------------------------------------------------------- reads

    def list_payment_accounts(
        self,
        company_id: str,
        connection_id: str,
        status_query: str | None = None,
        continuation_token: str | None = None,
        *,
        deadline: float | None = None,
    ) -> PaymentMappingOptions:
        """get-mapping-options-payments: the bank accounts a payment can come from."""
        params = _params(statusQuery=status_query, continuationToken=continuation_token)
        path = payment_options_path(company_id, connection_id)
        # Plain JSON numbers here: accounts are passed on to our caller exactly as Codat sent them.
        return self._get_model(
            path, params, PaymentMappingOptions, "get-mapping-options-payments", deadline, decimals=False
        )

    def get_company_information(
        self, company_id: str, connection_id: str, *, deadline: float | None = None
    ) -> CompanyInformation:
        """get-company-information: name and base currency."""
        path = company_information_path(company_id, connection_id)
        return self._get_model(path, {}, CompanyInformation, "get-company-information", deadline)

    def list_bills(
        self,
        company_id: str,
        connection_id: str,
        query: str | None = None,
        continuation_token: str | None = None,
        *,
        deadline: float | None = None,
    ) -> Bills:
        """list-bills: one page (Codat has no endpoint for one bill)."""
        params = _params(query=query, continuationToken=continuation_token)
        return self._get_model(bills_path(company_id, connection_id), params, Bills, "list-bills", deadline)

    def list_suppliers(
        self,
        company_id: str,
        connection_id: str,
        continuation_token: str | None = None,
        *,
        deadline: float | None = None,
    ) -> Suppliers:
        """list-suppliers: one page, numbers as Codat wrote them (passed on unchanged)."""
        params = _params(continuationToken=continuation_token)
        path = connection_path(company_id, connection_id) + "/payables/suppliers"
        return self._get_model(path, params, Suppliers, "list-suppliers", deadline, decimals=False)

    # --------------------------------------------------------------------------------------- writes

    def prepare(self) -> None:
        """Fetch what a write needs before it may be counted (the key, on first use): a failure here
        raises while nothing has been sent or counted, rather than inside `post_keyed`, where any
        exception counts as "may be applied"."""
        self._authorization()

    def post_keyed(self, path: str, body: bytes, idempotency_key: str, timeout: float) -> UpstreamResponse:
        """One POST of exact bytes under Codat's `Idempotency-Key`. No retry, no classification:
        httpx exceptions propagate so the caller can tell a request that never left from one that did."""
        if not path.startswith("/") or "?" in path or "#" in path:
            raise InvalidPathSegmentError("path must be an absolute path without query or fragment")
        started = self._clock()
        response = self._http.post(
            path,
            content=body,
            headers={
                "Authorization": self._authorization(),
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key,
            },
            timeout=httpx.Timeout(timeout, connect=min(self._connect_timeout, timeout)),
        )
        upstream = UpstreamResponse(
            status=response.status_code, headers=response.headers, body=response.content
        )
        logger.info(
            "codat write answered",
            extra={
                "upstream_path": path,
                "upstream_status": response.status_code,
                "correlation_id": upstream.correlation_id,
                "elapsed_ms": round((self._clock() - started) * 1000, 1),
            },
        )
        return upstream

    # ------------------------------------------------------------------------------------- internals

    def _authorization(self) -> str:
        if self._auth is None:
            with self._auth_lock:
                if self._auth is None:
                    key = self._api_key() if callable(self._api_key) else self._api_key
                    self._auth = authorization_header(key)
        return self._auth

    def _get_model(
        self,
        path: str,
        params: dict[str, str],
        model: type[ModelT],
        operation: str,
        deadline: float | None,
        *,
        decimals: bool = True,
    ) -> ModelT:
        body = self._get(path, params, operation, self.deadline() if deadline is None else deadline)
        try:
            return model.model_validate(parse_json(body) if decimals else json.loads(body))
        except (ValueError, ValidationError, RecursionError) as exc:
            # Not Codat's documented shape: treat as a fault upstream, without echoing the body.
            raise CodatUnavailableError(
                f"{operation}: unexpected response body ({type(exc).__name__})"
            ) from None

    def _get(self, path: str, params: dict[str, str], operation: str, deadline: float) -> bytes:
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining < MIN_ATTEMPT_SECONDS:
                raise CodatTimeoutError(f"{operation}: no time left for the request")
            started = self._clock()
            error: CodatError
            try:
                response = self._http.get(
                    path,
                    params=params,
                    headers={"Authorization": self._authorization()},
                    timeout=httpx.Timeout(
                        min(self._timeout, remaining), connect=min(self._connect_timeout, remaining)
                    ),
                )
            except httpx.TimeoutException as exc:
                error = CodatTimeoutError(f"{operation}: {type(exc).__name__}")
            except httpx.TransportError as exc:
                error = CodatUnavailableError(f"{operation}: {type(exc).__name__}")
            else:
                elapsed_ms = round((self._clock() - started) * 1000, 1)
                if response.is_success:
                    logger.debug(
                        "codat read",
                        extra={
                            "operation": operation,
                            "upstream_status": response.status_code,
                            "elapsed_ms": elapsed_ms,
                        },
                    )
                    return response.content
                error = _read_error(operation, response)
                logger.warning(
                    "codat read failed",
                    extra={
                        "operation": operation,
                        "upstream_status": response.status_code,
                        "correlation_id": error.correlation_id,
                        "elapsed_ms": elapsed_ms,
                        "attempt": attempt + 1,
                    },
                )
            if not _retryable(error) or attempt >= MAX_READ_RETRIES:
                raise error
            delay = random.uniform(0, min(READ_BACKOFF_CAP_SECONDS, READ_BACKOFF_BASE_SECONDS * 2**attempt))
            if error.retry_after is not None:
                delay = max(delay, error.retry_after)
            if self._clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
                raise error  # waiting as asked would overrun the budget: answer now
            attempt += 1
            self._sleep(delay)


def _params(**values: str | None) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}


def _retryable(error: CodatError) -> bool:
    return isinstance(error, CodatRateLimitedError | CodatUnavailableError | CodatTimeoutError)


def _read_error(operation: str, response: httpx.Response) -> CodatError:
    status = response.status_code
    upstream = error_details(response.content)
    message = f"{operation}: Codat answered {status}"
    kwargs: dict[str, Any] = {"status": status, "upstream": upstream}
    if status == 404:
        return CodatNotFoundError(message, **kwargs)
    if status == 400:
        return CodatBadRequestError(message, **kwargs)
    if status in (401, 402, 403):
        return CodatRejectedError(message, **kwargs)
    if status == 429:
        return CodatRateLimitedError(message, retry_after=_retry_after(response), **kwargs)
    if status >= 500:
        return CodatUnavailableError(message, retry_after=_retry_after(response), **kwargs)
    # 409 (dataset still syncing), redirects and other surprises: Codat could not serve the read.
    return CodatError(message, **kwargs)


# ------------------------------------------------------------------------------- the container's client

_client: CodatClient | None = None
_client_lock = threading.Lock()


def get_codat_client() -> CodatClient:
    """The container's client, built on first use from `get_settings()` (never at import)."""
    global _client  # noqa: PLW0603 - one pool per container, by design
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = CodatClient.from_settings(get_settings())
    return _client


def set_codat_client(client: CodatClient | None) -> None:
    """Replace (or with None, drop) the container's client: tests and local tools."""
    global _client
    with _client_lock:
        old, _client = _client, client
    if old is not None and old is not client:
        old.close()


__all__ = [
    "CodatBadRequestError",
    "CodatClient",
    "CodatError",
    "CodatNotFoundError",
    "CodatRateLimitedError",
    "CodatRejectedError",
    "CodatTimeoutError",
    "CodatUnavailableError",
    "InvalidPathSegmentError",
    "UpstreamResponse",
    "authorization_header",
    "bank_accounts_path",
    "bill_payment_path",
    "company_segment",
    "connection_segment",
    "error_details",
    "get_codat_client",
    "parse_json",
    "set_codat_client",
    "validate_bill_id",
]
