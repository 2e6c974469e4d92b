"""The client registry's pure rules: who may call, what each client may do, and for which companies.

A *client* is one application that calls this API (e.g. the fintech's app backend). It owns its
operations: its idempotency keys are scoped to the client, not to the IAM role that signed the request,
so every role of one client — a renamed role, a rotated one, a second one retrying a key — lands on the
same operation and the same upstream key (see docs/contract.md, "Callers and permissions").

The registry document (one SSM String parameter, JSON):

    {"clients": {"<clientId>": {
        "principals": ["arn:aws:iam::<acct>:role/<name>", "arn:aws:iam::<acct>:user/<name>", ...],
        "retiredPrincipals": ["arn:aws:iam::<acct>:role/<old name>", ...],      # optional
        "permissions": ["accounts:read", "accounts:create", "payments:create", "operations:read",
                        "bills:read", "suppliers:read"],
        "companies": ["*"] | ["<companyId>", ...]}}}

A retired principal stays listed under its client with no permission at all: it can no longer call, but
it can never be given to another client either (its old keys keep their scope, and its v1 records their
owner). No AWS here: `billpay.adapters.callers_ssm` loads the document, `billpay.authz` applies it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from billpay.domain.operations import UnknownCaller, normalise_caller

Permission = Literal[
    "accounts:read", "accounts:create", "payments:create", "operations:read", "bills:read", "suppliers:read"
]
PERMISSIONS: Final[tuple[Permission, ...]] = (
    "accounts:read",
    "accounts:create",
    "payments:create",
    "operations:read",
    "bills:read",
    "suppliers:read",
)
ALL_COMPANIES: Final = "*"

# A client id goes into the key scope (`v2|<clientId>|…`): no `|`, nothing that needs encoding, and
# short enough to read in a log line.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ROLE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?:[^/]+/)*(?P<name>[^/]+)$"
)
_USER = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:user/.+$")
_COMPANY = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CLIENT_MEMBERS: Final = frozenset({"principals", "retiredPrincipals", "permissions", "companies"})


class RegistryInvalid(ValueError):
    """The document breaks a rule; the message lists every problem found (no principal is ever omitted)."""


def canonical_principal(arn: str) -> str:
    """A registry entry as the request's caller is normalised: a role without its path.

    An assumed-role ARN (what a SigV4 request carries) names the role without its IAM path, and a role's
    name is unique in its account, so `role/team/app` and `role/app` are one principal.
    """
    match = _ROLE.match(arn)
    if match:
        return f"arn:{match['partition']}:iam::{match['account']}:role/{match['name']}"
    if _USER.match(arn):
        return arn
    raise ValueError(f"{arn!r} is not an IAM role or user ARN")


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    principals: frozenset[str]  # canonical, may call (within `permissions`)
    retired: frozenset[str]  # canonical, belong to this client, may call nothing
    permissions: frozenset[Permission]
    companies: frozenset[str] | None  # lower-cased ids; None = every company

    def covers(self, company: str) -> bool:
        return self.companies is None or company.lower() in self.companies

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "principals": sorted(self.principals),
            "permissions": [p for p in PERMISSIONS if p in self.permissions],
            "companies": [ALL_COMPANIES] if self.companies is None else sorted(self.companies),
        }
        if self.retired:
            document["retiredPrincipals"] = sorted(self.retired)
        return document


@dataclass(frozen=True, slots=True)
class Registry:
    clients: Mapping[str, Client]
    # canonical principal (active or retired) -> client id
    owners: Mapping[str, str]

    def client_of(self, principal: str) -> Client | None:
        owner = self.owners.get(principal)
        return self.clients[owner] if owner is not None else None

    def to_document(self) -> dict[str, Any]:
        return {"clients": {cid: self.clients[cid].to_document() for cid in sorted(self.clients)}}


EMPTY_REGISTRY: Final = Registry(clients={}, owners={})


def parse_registry(document: Any) -> Registry:
    """Validate a registry document (already JSON-decoded). Raises RegistryInvalid listing every problem.

    Rules: client ids are short safe names; every principal is an IAM role or user ARN and belongs to at
    most one client (active or retired, across the whole registry); permissions are known ones; companies
    are `["*"]` or company UUIDs.
    """
    problems: list[str] = []
    if not isinstance(document, Mapping) or not isinstance(document.get("clients"), Mapping):
        raise RegistryInvalid('the registry must be an object with a "clients" object')
    if set(document) - {"clients"}:
        problems.append(f"unknown top-level members {sorted(set(document) - {'clients'})}")
    clients: dict[str, Client] = {}
    owners: dict[str, str] = {}
    for client_id, spec in document["clients"].items():
        where = f"client {client_id!r}"
        if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
            problems.append(f"{where}: the id must be 1-64 of A-Z a-z 0-9 . _ - (starting alphanumeric)")
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        unknown = set(spec) - _CLIENT_MEMBERS
        if unknown:
            problems.append(f"{where}: unknown members {sorted(unknown)}")
        active = _principals(spec.get("principals", []), f"{where} principals", problems)
        retired = _principals(spec.get("retiredPrincipals", []), f"{where} retiredPrincipals", problems)
        for principal in sorted(active & retired):
            problems.append(f"{where}: {principal} is both active and retired")
        for principal in sorted(active | retired):
            owner = owners.setdefault(principal, client_id)
            if owner != client_id:
                problems.append(f"{principal} belongs to two clients ({owner!r} and {client_id!r})")
        permissions = _permissions(spec.get("permissions", []), where, problems)
        companies = _companies(spec.get("companies"), where, problems)
        clients[client_id] = Client(client_id, active, retired - active, permissions, companies)
    if problems:
        raise RegistryInvalid("; ".join(problems))
    return Registry(clients=clients, owners=owners)


def _principals(raw: Any, where: str, problems: list[str]) -> frozenset[str]:
    if not isinstance(raw, list):
        problems.append(f"{where}: must be a list of ARNs")
        return frozenset()
    found: set[str] = set()
    for arn in raw:
        try:
            found.add(canonical_principal(arn if isinstance(arn, str) else repr(arn)))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return frozenset(found)


def _permissions(raw: Any, where: str, problems: list[str]) -> frozenset[Permission]:
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        problems.append(f"{where}: permissions must be a list of strings")
        return frozenset()
    unknown = sorted(set(raw) - set(PERMISSIONS))
    if unknown:
        problems.append(f"{where}: unknown permissions {unknown} (known: {', '.join(PERMISSIONS)})")
    return frozenset(p for p in PERMISSIONS if p in raw)


def _companies(raw: Any, where: str, problems: list[str]) -> frozenset[str] | None:
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        problems.append(f'{where}: companies must be ["*"] or a non-empty list of company ids')
        return frozenset()
    if ALL_COMPANIES in raw:
        if len(raw) > 1:
            problems.append(f'{where}: "*" cannot be combined with company ids')
        return None
    bad = [c for c in raw if not _COMPANY.match(c)]
    if bad:
        problems.append(f"{where}: company ids must be UUIDs ({bad[:3]})")
    return frozenset(c.lower() for c in raw)


# -- decisions ----------------------------------------------------------------------------------------------

RefusalReason = Literal["caller-unknown", "forbidden", "not-found"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not proceed: unknown principal (403), missing permission (403), or a company
    outside the client's list (404: whether it exists is not revealed)."""

    reason: RefusalReason
    detail: str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the client the principal belongs to, and the principal itself (for logs and the
    v1 scope look-up)."""

    client_id: str
    principal: str


def authorize(
    registry: Registry, user_arn: str | None, permission: Permission, company: str | None = None
) -> Caller | Refusal:
    """The caller's client when it holds `permission` (and covers `company` when one is named)."""
    try:
        principal = normalise_caller(user_arn)
    except UnknownCaller:
        return Refusal("caller-unknown", "The request's identity is not an IAM role or user.")
    client = registry.client_of(principal)
    if client is None:
        return Refusal("caller-unknown", "This principal is not registered as a client of the API.")
    if principal in client.retired:
        return Refusal("forbidden", "This principal is retired: it may no longer call the API.")
    if permission not in client.permissions:
        return Refusal("forbidden", f"The client may not do this ({permission} is not granted).")
    if company is not None and not client.covers(company):
        return Refusal("not-found", "Unknown company or connection.")
    return Caller(client_id=client.client_id, principal=principal)


# -- edits (the operator command) ----------------------------------------------------------------------------


def add_principal(registry: Registry, client_id: str, arn: str) -> Registry:
    """The registry with `arn` active under `client_id`; refuses to move a principal between clients."""
    principal = canonical_principal(arn)
    owner = registry.owners.get(principal)
    if owner is not None and owner != client_id:
        raise RegistryInvalid(
            f"{principal} belongs to client {owner!r}: a principal never moves to another client "
            "(its keys and operations are scoped to its client)"
        )
    document = registry.to_document()
    spec = document["clients"].setdefault(
        client_id, {"principals": [], "permissions": [], "companies": ["*"]}
    )
    spec["principals"] = sorted({*spec["principals"], principal})
    spec["retiredPrincipals"] = [p for p in spec.get("retiredPrincipals", []) if p != principal]
    return parse_registry(document)


def retire_principal(registry: Registry, arn: str) -> Registry:
    """The registry with `arn` kept under its client but allowed nothing."""
    principal = canonical_principal(arn)
    owner = registry.owners.get(principal)
    if owner is None:
        raise RegistryInvalid(f"{principal} is not in the registry")
    document = registry.to_document()
    spec = document["clients"][owner]
    spec["principals"] = [p for p in spec["principals"] if p != principal]
    spec["retiredPrincipals"] = sorted({*spec.get("retiredPrincipals", []), principal})
    return parse_registry(document)


def check_no_principal_moved(before: Registry, after: Registry) -> None:
    """Refuse an edit that gives any principal (active or retired) to another client, or drops one."""
    problems = []
    for principal, owner in before.owners.items():
        now = after.owners.get(principal)
        if now is None:
            problems.append(f"{principal} was removed from {owner!r} (retire it instead)")
        elif now != owner:
            problems.append(f"{principal} would move from {owner!r} to {now!r}")
    if problems:
        raise RegistryInvalid("; ".join(problems))
