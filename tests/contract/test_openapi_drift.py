"""docs/openapi.json is what the handlers serve: regenerated from their resolvers, it must be identical.

The regeneration is `local.openapi.build_document` — one worker process per API function with that
function's own environment, merged by the gateway's code — the same path as `GET /openapi.json` on the
local stack. A change to a route, a model or a problem list without `make openapi` fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.openapi import DOCUMENT_PATH, build_document, render


@pytest.fixture(scope="module")
def regenerated() -> dict[str, Any]:
    return build_document()


def test_committed_document_matches_the_handlers(regenerated: dict[str, Any]) -> None:
    committed = DOCUMENT_PATH.read_text(encoding="utf-8")
    assert committed == render(regenerated), (
        "docs/openapi.json differs from what the handlers serve: run `make openapi` and commit it"
    )


def test_document_lists_every_route_of_the_api(regenerated: dict[str, Any]) -> None:
    operations = {
        (method.upper(), path, operation["operationId"])
        for path, item in regenerated["paths"].items()
        for method, operation in item.items()
    }
    prefix = "/companies/{companyId}/connections/{connectionId}/payables"
    assert operations == {
        ("GET", f"{prefix}/bankAccounts", "listBankAccounts"),
        ("POST", f"{prefix}/bankAccounts", "createBankAccount"),
        ("POST", f"{prefix}/bills/{{billId}}/payments", "createBillPayment"),
        ("GET", "/operations/{operationId}", "getOperation"),
        ("GET", f"{prefix}/bills", "listBills"),
        ("GET", f"{prefix}/suppliers", "listSuppliers"),
    }


def test_every_problem_answer_is_problem_json(regenerated: dict[str, Any]) -> None:
    for path, item in regenerated["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                content = set((response.get("content") or {}).keys())
                expected = {"application/problem+json"} if int(status) >= 400 else {"application/json"}
                assert content == expected, f"{method.upper()} {path} {status}: {content}"


def test_render_is_stable() -> None:
    text = DOCUMENT_PATH.read_text(encoding="utf-8")
    assert render(json.loads(text)) == text
