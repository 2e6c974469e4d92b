"""Injected faults: `POST /_sandbox/faults` arms one, the next `times` matching requests get it.

The fault kinds and their effects: docs/contract.md, Local stack.

Two families, because they sit at different places in Codat's stack:

- in front of the idempotency layer (`status`, `timeout`): nothing is applied or cached, the key is not
  touched — a load balancer or gateway failing;
- at the write itself (`commit-then-status`, `commit-then-timeout`, `hold-then-commit`): the idempotency
  layer has already claimed the key, so a replay of a cached answer never consumes one of these.

On a read every fault acts in front (there is nothing to commit or cache).

A third kind, `latency`, fails nothing: the matching request is answered normally after `latencyMs`
(or `holdSeconds`) instead of the sandbox's per-request latency — one slow endpoint, e.g. list-bills on a
large ledger. It is consumed independently of the other kinds, so a request can be both slow and failed.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import math
import threading
from decimal import Decimal
from typing import Any

from local.sandbox.errors import CodatError, FieldError

FRONT_KINDS = frozenset({"status", "timeout"})
COMMIT_KINDS = frozenset({"commit-then-status", "commit-then-timeout", "hold-then-commit"})
KINDS = FRONT_KINDS | COMMIT_KINDS
LATENCY_KINDS = frozenset({"latency"})
ALL_KINDS = KINDS | LATENCY_KINDS
DEFAULT_HOLD_SECONDS = 30.0
_FIELDS = ("method", "path", "fault", "status", "retryAfter", "times", "holdSeconds", "latencyMs")


@dataclasses.dataclass
class Fault:
    id: int
    method: str  # a glob, e.g. "POST" or "*"
    path: str  # a glob on the request path, e.g. "/companies/*/payables/bills/*/payment"
    kind: str
    status: int | None
    retry_after: float | None
    remaining: int
    hold_seconds: float

    def matches(self, method: str, path: str) -> bool:
        return fnmatch.fnmatchcase(method.upper(), self.method.upper()) and fnmatch.fnmatchcase(
            path, self.path
        )

    def retry_after_header(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        value = self.retry_after
        # Whole seconds as RFC 9110 writes them; fractions are kept so tests can compress time.
        return {"Retry-After": str(int(value)) if value == int(value) else repr(value)}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "fault": self.kind,
            "status": self.status,
            "retryAfter": self.retry_after,
            "times": self.remaining,
            "holdSeconds": self.hold_seconds,
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def parse(spec: Any, fault_id: int) -> Fault:
    """A fault from its JSON body; anything malformed is a 400 naming the field."""
    if not isinstance(spec, dict):
        raise CodatError(400, "A fault must be a JSON object.")
    errors = [
        FieldError(key, f"'{key}' is not a fault property.", "UnknownProperty")
        for key in spec
        if key not in _FIELDS
    ]
    kind = spec.get("fault")
    if kind not in ALL_KINDS:
        errors.append(FieldError("fault", f"'fault' must be one of {', '.join(sorted(ALL_KINDS))}.", "Enum"))
    method = spec.get("method", "*")
    path = spec.get("path")
    if not isinstance(method, str) or not method:
        errors.append(FieldError("method", "'method' must be an HTTP method or a glob.", "Type"))
    if not isinstance(path, str) or not path.startswith(("/", "*")):
        errors.append(
            FieldError("path", "'path' must be a glob on the request path, starting with /.", "Type")
        )

    status = spec.get("status")
    if kind in ("status", "commit-then-status"):
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            errors.append(FieldError("status", "'status' must be an HTTP error status (400-599).", "Range"))
        elif kind == "commit-then-status" and status < 500:
            # Codat never records a write and then answers 4xx.
            errors.append(FieldError("status", "commit-then-status needs a 5xx 'status'.", "Range"))
    elif status is not None:
        errors.append(FieldError("status", f"'status' does not apply to a {kind} fault.", "NotApplicable"))

    times = spec.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        errors.append(FieldError("times", "'times' must be a whole number of at least 1.", "Range"))
    retry_after = _number(spec.get("retryAfter", 0))
    if spec.get("retryAfter") is not None and (retry_after is None or retry_after < 0):
        errors.append(FieldError("retryAfter", "'retryAfter' must be a number of seconds >= 0.", "Range"))
    hold = _number(spec.get("holdSeconds", DEFAULT_HOLD_SECONDS))
    if hold is None or hold < 0:
        errors.append(FieldError("holdSeconds", "'holdSeconds' must be a number of seconds >= 0.", "Range"))
    if "latencyMs" in spec:
        latency_ms = _number(spec["latencyMs"])
        if kind != "latency":
            errors.append(
                FieldError("latencyMs", "'latencyMs' applies to a latency fault only.", "NotApplicable")
            )
        elif "holdSeconds" in spec:
            errors.append(
                FieldError("latencyMs", "Give 'latencyMs' or 'holdSeconds', not both.", "Exclusive")
            )
        elif latency_ms is None or latency_ms < 0:
            errors.append(
                FieldError("latencyMs", "'latencyMs' must be a number of milliseconds >= 0.", "Range")
            )
        else:
            hold = latency_ms / 1000
    elif kind == "latency" and "holdSeconds" not in spec:
        errors.append(
            FieldError("latencyMs", "A latency fault needs 'latencyMs' or 'holdSeconds'.", "Required")
        )
    if errors:
        raise CodatError(400, "The fault is not valid.", errors=errors)
    assert isinstance(kind, str) and isinstance(method, str) and isinstance(path, str) and hold is not None
    return Fault(
        id=fault_id,
        method=method,
        path=path,
        kind=kind,
        status=status if isinstance(status, int) else None,
        retry_after=retry_after if spec.get("retryAfter") is not None else None,
        remaining=times,
        hold_seconds=hold,
    )


class FaultBook:
    """The armed faults, consumed in the order they were armed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        # Read without the lock on the hot path; set before POST /_sandbox/faults answers, so any request
        # sent after that sees it.
        self.armed = False

    def add(self, spec: Any) -> Fault:
        with self._lock:
            fault = parse(spec, next(self._ids))
            self._faults.append(fault)
            self.armed = True
            return fault

    def clear(self) -> int:
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            self.armed = False
            return count

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.to_json() for fault in self._faults]

    def take(self, method: str, path: str, kinds: frozenset[str]) -> Fault | None:
        """The first armed fault of `kinds` matching the request, with one of its `times` used up."""
        if not self.armed:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                        self.armed = bool(self._faults)
                    return dataclasses.replace(fault)
            return None
