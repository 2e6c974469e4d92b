"""The client registry's rules: validation, decisions, edits, and the v2 scope (golden)."""

from __future__ import annotations

from typing import Any

import pytest
from billpay.domain.clients import (
    Caller,
    Refusal,
    RegistryInvalid,
    add_principal,
    authorize,
    check_no_principal_moved,
    parse_registry,
    retire_principal,
)
from billpay.domain.operations import ROUTE_CREATE_BILL_PAYMENT, key_scope_v2, operation_id

COMPANY = "3c5e8a1f-6b2d-4f4a-9e7c-0a1b2c3d4e51"
OTHER_COMPANY = "9a4b6c8d-2e1f-4a3b-8c5d-0a1b2c3d4e61"
APP = "arn:aws:iam::123456789012:role/app"
SESSION = "arn:aws:sts::123456789012:assumed-role/app/i-0abc"


def document(**overrides: Any) -> dict[str, Any]:
    spec = {"principals": [APP], "permissions": ["accounts:read"], "companies": [COMPANY.upper()]}
    return {"clients": {"acme": {**spec, **overrides}}}


def test_a_session_of_a_registered_role_is_its_client() -> None:
    registry = parse_registry(document())
    assert authorize(registry, SESSION, "accounts:read", COMPANY) == Caller("acme", APP)


@pytest.mark.parametrize(
    ("arn", "permission", "company", "reason"),
    [
        ("arn:aws:sts::123456789012:assumed-role/stranger/s", "accounts:read", COMPANY, "caller-unknown"),
        (None, "accounts:read", COMPANY, "caller-unknown"),
        (SESSION, "payments:create", COMPANY, "forbidden"),
        (SESSION, "accounts:read", OTHER_COMPANY, "not-found"),
    ],
)
def test_refusals(arn: str | None, permission: Any, company: str, reason: str) -> None:
    decision = authorize(parse_registry(document()), arn, permission, company)
    assert isinstance(decision, Refusal) and decision.reason == reason


def test_a_role_path_is_ignored_as_an_assumed_role_arn_carries_none() -> None:
    registry = parse_registry(document(principals=["arn:aws:iam::123456789012:role/team/app"]))
    assert isinstance(authorize(registry, SESSION, "accounts:read", COMPANY), Caller)


@pytest.mark.parametrize(
    "bad",
    [
        {"clients": []},
        {"clients": {"a|b": {"principals": [], "permissions": [], "companies": ["*"]}}},
        document(permissions=["payments:delete"]),
        document(principals=["not-an-arn"]),
        document(companies=[]),
        document(companies=["*", COMPANY]),
        {
            "clients": {
                "one": {"principals": [APP], "permissions": [], "companies": ["*"]},
                "two": {"principals": [APP + "-x", APP], "permissions": [], "companies": ["*"]},
            }
        },
    ],
)
def test_a_document_that_breaks_a_rule_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(RegistryInvalid):
        parse_registry(bad)


def test_a_retired_principal_stays_its_clients_and_may_do_nothing() -> None:
    registry = retire_principal(parse_registry(document()), APP)
    decision = authorize(registry, SESSION, "accounts:read", COMPANY)
    assert isinstance(decision, Refusal) and decision.reason == "forbidden"
    assert registry.owners[APP] == "acme"
    with pytest.raises(RegistryInvalid, match="never moves"):
        add_principal(registry, "globex", APP)


def test_an_edit_may_not_move_or_drop_a_principal() -> None:
    before = parse_registry(document())
    moved = parse_registry({"clients": {"globex": document()["clients"]["acme"]}})
    with pytest.raises(RegistryInvalid, match="move"):
        check_no_principal_moved(before, moved)
    with pytest.raises(RegistryInvalid, match="retire it instead"):
        check_no_principal_moved(before, parse_registry(document(principals=[])))
    check_no_principal_moved(before, add_principal(before, "acme", APP + "-v2"))


def test_v2_scope_is_pinned() -> None:
    """Golden: changing the v2 scope would map every client's keys to new operations (a double payment)."""
    scope = key_scope_v2("acme", ROUTE_CREATE_BILL_PAYMENT, [COMPANY, "c0nn", "bill|7"])
    assert scope == f"v2|acme|create-bill-payment|{COMPANY}|c0nn|bill%7C7"
    assert operation_id(scope, "key-1") == "d52bf297-2539-5a21-925c-78cae1431d26"
