"""Codat's idempotency layer for keyed POSTs (docs/contract.md, Outcome table).

A keyed request's answer is cached for `ttl_seconds` after it was given and replayed byte for byte (same
`correlationId`), 4xx and 5xx included; a second request while the first is executing gets 409; the same
key with other raw body bytes (or another method or path) gets 422; a 429 is never cached, which releases
the key. After the cache expires the key is forgotten, exactly as Codat forgets it after 90 minutes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import threading
import time
import uuid
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class CachedResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class Verdict(enum.Enum):
    EXECUTE = "execute"  # the key is now ours: run the write, then call finish()
    REPLAY = "replay"  # answer the cached response
    IN_PROGRESS = "in-progress"  # 409
    REUSED = "reused"  # 422


@dataclasses.dataclass
class _Entry:
    fingerprint: bytes
    response: CachedResponse | None = None  # None while the first request is executing
    expires_at: float = float("inf")


def normalise_key(raw: str) -> str | None:
    """The key as a canonical GUID, or None when it is not one (Codat answers 400)."""
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        return None


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    return hashlib.sha256(method.encode() + b"\0" + path.encode() + b"\0" + body).digest()


class IdempotencyCache:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._next_purge = 0.0

    def begin(self, key: str, request_fingerprint: bytes) -> tuple[Verdict, CachedResponse | None]:
        now = self._clock()
        with self._lock:
            self._purge(now)
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at <= now:
                del self._entries[key]
                entry = None
            if entry is None:
                self._entries[key] = _Entry(request_fingerprint)
                return Verdict.EXECUTE, None
            if entry.fingerprint != request_fingerprint:
                return Verdict.REUSED, None
            if entry.response is None:
                return Verdict.IN_PROGRESS, None
            return Verdict.REPLAY, entry.response

    def finish(self, key: str, response: CachedResponse | None) -> None:
        """Cache the answer given under `key`, or release the key (`None`: a 429, or no answer at all)."""
        with self._lock:
            if response is None or response.status == 429:
                self._entries.pop(key, None)
                return
            entry = self._entries.get(key)
            if entry is not None:
                entry.response = response
                entry.expires_at = self._clock() + self.ttl_seconds

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _purge(self, now: float) -> None:
        # Expired answers are dropped at most once a second so a long run does not grow without bound.
        if now < self._next_purge:
            return
        self._next_purge = now + 1.0
        for key in [key for key, entry in self._entries.items() if entry.expires_at <= now]:
            del self._entries[key]
