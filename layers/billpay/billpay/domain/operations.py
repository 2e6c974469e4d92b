"""The operation record's pure rules: key scope, ids, request hash, the record, and replays
(docs/contract.md, Idempotency key and scope). Its transitions are in `billpay.domain.lifecycle`.

No AWS, no HTTP library: the DynamoDB adapter stores `Operation`s.

Money-safety invariants kept here:
- one client key in one scope maps to one `operationId` and one upstream GUID, forever (golden-tested);
- the scope ignores the STS session name, so a retry from another instance of the same role lands on the
  same operation;
- the upstream request (path and body bytes) is computed once, at the claim, and stored, so every attempt
  sends the same bytes under the same GUID;
- `10`, `10.0` and `10.00` are one amount, so a client that re-serialises its retry is still a replay.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import quote

# -- vocabulary ------------------------------------------------------------------------------------------

Kind = Literal["billPayment", "bankAccount"]
Status = Literal["pending", "succeeded", "failed", "needs_review"]
# `settled` = an end state was written; an operation waiting for its next attempt stays `sent`.
Phase = Literal["guarding", "sent", "settled"]
# `queue`: handed to a delayed retry message, which the worker takes over when it arrives.
LeaseHolder = Literal["sync", "worker", "sweeper", "queue"]

KIND_BILL_PAYMENT: Final = "billPayment"
KIND_BANK_ACCOUNT: Final = "bankAccount"

# Routes as named in the scope. Stable names rather than URL templates: renaming a path must not change
# the operation an old key maps to.
ROUTE_CREATE_BANK_ACCOUNT: Final = "create-bank-account"
ROUTE_CREATE_BILL_PAYMENT: Final = "create-bill-payment"

SCOPE_VERSION: Final = "v1"
# Keys scoped to the client (every role of one app shares them), not to the IAM role that signed.
SCOPE_VERSION_V2: Final = "v2"
# Fixed forever: changing either would map every existing key to a new operation (a double payment).
OPERATION_ID_NAMESPACE: Final = uuid.UUID("f92d787c-3f11-4611-a4ff-f3f2e03c80c9")
UPSTREAM_KEY_NAMESPACE: Final = uuid.UUID("1e0c791c-5103-4230-acc1-7a4ad6f95e46")

IDEMPOTENCY_KEY_MAX_LENGTH: Final = 255
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")

# A lease runs to its holder's Lambda deadline plus this margin, never a shorter budget.
LEASE_MARGIN_SECONDS: Final = 5.0
# A `guarding` claim left by a crash is reclaimable once its lease expires and gone after a day.
GUARDING_TTL_SECONDS: Final = 86_400

# The sparse index (UnfinishedByDue): one partition for operations a lease-taker must retry or recover,
# another for the ones a person must look at, so a sweep reads only what it can act on and counts the rest.
DUE_BUCKET_PENDING: Final = "pending"
DUE_BUCKET_NEEDS_REVIEW: Final = "needs_review"
# A terminal state whose event is not yet published (the holder publishes it; the sweeper if it did not).
DUE_BUCKET_UNPUBLISHED: Final = "unpublished"

# Stored upstream text is capped so an item stays under 100 KB whatever Codat answers (DynamoDB refuses
# items over 400 KB, and a settle that cannot be written would leave the operation pending). A success body
# (the result the client needs) keeps more than an error's text; each cut keeps the whole text's SHA-256.
STORED_BODY_LIMIT_BYTES: Final = 16 * 1024
STORED_TEXT_LIMIT_BYTES: Final = 8 * 1024


# -- callers and scope ------------------------------------------------------------------------------------

_ASSUMED_ROLE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/.+$"
)
_IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(user/.+|role/.+|root)$")


class UnknownCaller(ValueError):
    """The request carries no caller ARN we can scope keys to (never expected behind AWS_IAM auth)."""


def normalise_caller(user_arn: str | None) -> str:
    """The caller a key is scoped to: a role without its STS session name, or an IAM principal as is.

    Never `identity.caller`, `user` or the session name: two instances of one role retrying one payment
    must land on one operation.
    """
    if not user_arn:
        raise UnknownCaller("the request has no caller identity (requestContext.identity.userArn)")
    match = _ASSUMED_ROLE.match(user_arn)
    if match:
        return f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"
    if _IAM_PRINCIPAL.match(user_arn):
        return user_arn
    raise UnknownCaller(f"unsupported caller identity {user_arn!r}")


def key_scope(caller: str, route: str, path_params: Sequence[str]) -> str:
    """`v1|<caller>|<route>|<path parameters>`, each parameter percent-encoded so none can contain `|`.

    The caller must already be normalised and ids lower-cased by the caller of this function; encoding
    keeps the string unambiguous (a bill id holding `|` cannot shift the boundary to the client key).
    """
    parts = [SCOPE_VERSION, caller, route, *(quote(p, safe="") for p in path_params)]
    return "|".join(parts)


def key_scope_v2(client_id: str, route: str, path_params: Sequence[str]) -> str:
    """`v2|<clientId>|<route>|<path parameters>`: as `key_scope`, with the registry's client id (a safe
    name without `|`) in place of the role, so a renamed or rotated role keeps its client's operations."""
    return "|".join([SCOPE_VERSION_V2, client_id, route, *(quote(p, safe="") for p in path_params)])


def validate_idempotency_key(key: str) -> str | None:
    """None when the key is acceptable, else why not (a 400 `validation-error`)."""
    if key == "":
        return "must not be empty"
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        return f"must be at most {IDEMPOTENCY_KEY_MAX_LENGTH} characters"
    if not _VISIBLE_ASCII.fullmatch(key):
        return "must contain only visible ASCII characters (no spaces or control characters)"
    return None


def operation_id(scope: str, client_key: str) -> str:
    return str(uuid.uuid5(OPERATION_ID_NAMESPACE, f"{scope}|{client_key}"))


def upstream_key(scope: str, client_key: str) -> str:
    """The GUID sent to Codat as `Idempotency-Key`; the client's own key never leaves us."""
    return str(uuid.uuid5(UPSTREAM_KEY_NAMESPACE, f"{scope}|{client_key}"))


# -- canonical bodies ---------------------------------------------------------------------------------------


def _canonical_number(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError("non-finite numbers have no JSON form")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def canonical_json(value: Any) -> bytes:
    """Compact JSON, keys sorted, decimals as `format(d.normalize(), "f")` (`10`, `10.0`, `10.00` → `10`).

    Used both for the request hash and for the upstream body bytes, so a number is never rounded through a
    binary float on its way to Codat. Strings (the `date` among them) are kept exactly as written.
    """
    return _encode(value).encode("utf-8")


def _encode(value: Any) -> str:
    if value is None or isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Decimal):
        return _canonical_number(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite numbers have no JSON form")
        return _canonical_number(Decimal(repr(value)))
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_encode(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} canonically")


def drop_nulls(body: Mapping[str, Any]) -> dict[str, Any]:
    """An explicit null and an absent optional field mean the same request (recursively)."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if value is None:
            continue
        out[name] = drop_nulls(value) if isinstance(value, Mapping) else value
    return out


def request_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical validated body (our own fields, e.g. `currency`, included).

    `body` is the validated model's canonical members (e.g. `BillPaymentCreate.canonical()`).
    """
    return hashlib.sha256(canonical_json(drop_nulls(body))).hexdigest()


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """The exact keyed write, computed once at the claim and replayed byte for byte on every attempt.

    `body` comes from the validated model (`to_upstream_json()`): exact decimals, `date` as written, only
    Codat's members (our own `currency` stays home).
    """

    method: str
    path: str
    body: bytes

    def to_dict(self) -> dict[str, str]:
        return {"method": self.method, "path": self.path, "body": self.body.decode("utf-8")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpstreamRequest:
        return cls(method=str(data["method"]), path=str(data["path"]), body=str(data["body"]).encode("utf-8"))


# -- stored bodies ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredBody:
    """An upstream body as kept on the record: at most 64 KB of it, with the whole body's SHA-256."""

    text: str
    sha256: str
    size: int
    truncated: bool

    @classmethod
    def of(cls, raw: bytes, limit: int = STORED_BODY_LIMIT_BYTES) -> StoredBody:
        # A cut can split a UTF-8 sequence; `replace` keeps what is stored valid text. Each byte it replaces
        # grows to three (U+FFFD), so the cap is applied again to the text as stored.
        text = raw[:limit].decode("utf-8", errors="replace")
        encoded = text.encode("utf-8")
        cut = len(encoded) > limit
        if cut:
            text = encoded[:limit].decode("utf-8", errors="ignore")
        return cls(
            text=text,
            sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            truncated=cut or len(raw) > limit,
        )

    def cut(self, limit: int) -> StoredBody:
        """The same body kept to `limit` bytes of text (its SHA-256 and size stay the whole body's)."""
        encoded = self.text.encode("utf-8")
        if len(encoded) <= limit:
            return self
        text = encoded[:limit].decode("utf-8", errors="ignore")
        return replace(self, text=text, truncated=True)

    def json(self) -> Any | None:
        """The parsed document, or None when it is cut or not JSON."""
        if self.truncated:
            return None
        try:
            return json.loads(self.text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep for the decoder
            return None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "sha256": self.sha256, "size": self.size, "truncated": self.truncated}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredBody:
        return cls(
            text=str(data["text"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            truncated=bool(data["truncated"]),
        )


# -- the record ---------------------------------------------------------------------------------------------


ResolvedStatus = Literal["succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """A person's decision on a `needs_review` operation, kept on it."""

    status: ResolvedStatus
    note: str
    by: str
    at: str
    previous_status: Status

    def to_dict(self) -> dict[str, str]:
        return {
            "status": self.status,
            "note": self.note,
            "by": self.by,
            "at": self.at,
            "previousStatus": self.previous_status,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resolution:
        return cls(
            status=data["status"],
            note=str(data["note"]),
            by=str(data["by"]),
            at=str(data["at"]),
            previous_status=data["previousStatus"],
        )


def iso_timestamp(epoch_seconds: float) -> str:
    return (
        datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True, slots=True)
class Operation:
    """One write: the idempotency record and its durable state. Field names are the item's attributes.

    Times that conditions compare (`leaseUntil`, `nextAttemptAt`, `firstAttemptAt`, `expiresAt`, `dueAt`)
    are epoch seconds; `createdAt`/`updatedAt` are ISO 8601 for people and the envelope.
    `error` is the problem the operation answers with once it ended (`type` short name, `status` HTTP,
    `title`, `detail`, optional `upstream` and `retryAfter`).
    """

    operation_id: str
    kind: Kind
    status: Status
    phase: Phase
    request_hash: str
    upstream_key: str
    upstream_request: UpstreamRequest
    created_at: str
    updated_at: str
    attempts: int = 0
    clear_attempts: int = 0
    first_attempt_at: float | None = None
    correlation_ids: tuple[str, ...] = ()
    lease_token: str | None = None
    lease_holder: LeaseHolder | None = None
    lease_until: float | None = None
    next_attempt_at: float | None = None
    result: StoredBody | None = None
    error: Mapping[str, Any] | None = None
    expires_at: int | None = None
    due_bucket: str | None = None
    due_at: float | None = None
    # Bumped by every write: with the token, it names one write, so a write whose answer was lost can be
    # recognised in the item afterwards (docs/contract.md, Operation life cycle).
    version: int = 0
    resolution: Resolution | None = None
    # The `version` whose terminal event was published (docs/contract.md, Events).
    published_version: int | None = None
    # The client that owns it (v2 scope); None on a v1 record not yet claimed by a client's replay.
    client_id: str | None = None
    # The token of the claim that created it, never changed: a bill reservation names its claim, so one
    # left by a claim that lapsed (and was claimed again) is told apart from the live one.
    claim_token: str | None = None
    # Anything else on the item, carried through untouched.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")

    def lease_live(self, now: float) -> bool:
        return self.lease_until is not None and self.lease_until > now

    def with_changes(self, **changes: Any) -> Operation:
        return replace(self, **changes)


def lease_until(now: float, remaining_millis: int) -> float:
    """A lease runs to the holder's Lambda deadline + 5 s: the holder cannot still be running after it."""
    return now + max(remaining_millis, 0) / 1000.0 + LEASE_MARGIN_SECONDS


def new_lease_token() -> str:
    return str(uuid.uuid4())


# -- replays ------------------------------------------------------------------------------------------------

ReplayAction = Literal["reused", "in_progress", "answer"]


@dataclass(frozen=True, slots=True)
class ReplayDecision:
    action: ReplayAction
    retry_after: int | None = None


def decide_replay(existing: Operation, request_hash: str, now: float) -> ReplayDecision:
    """What the one read of an existing record answers: never a guard, never Codat.

    - another body under the key → `reused` (422);
    - a live `sync` lease on an unfinished record → `in_progress` (409 + Retry-After): the first request
      is still executing and will answer itself;
    - otherwise → `answer` the current state: `pending` → 202 even while a worker holds the lease, or
      when a holder's lease expired (the sweeper finds it due and recovers it; a replay never writes).
    """
    if existing.request_hash != request_hash:
        return ReplayDecision("reused")
    if existing.status == "pending" and existing.lease_holder == "sync" and existing.lease_live(now):
        return ReplayDecision("in_progress", retry_after=1)
    if existing.status == "pending" and existing.phase == "guarding":
        # The conditional claim reclaims an expired guarding record, so this is a lease that expired between
        # the two clocks' readings; the first request is as good as gone, but it is not ours to decide.
        return ReplayDecision("in_progress", retry_after=1)
    return ReplayDecision("answer")
