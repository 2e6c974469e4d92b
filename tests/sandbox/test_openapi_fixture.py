"""The validator fixture itself: the nullable rewrite, and that it fails what it should."""

from __future__ import annotations

import pytest

from tests.fixtures.openapi import CodatOpenAPI, SchemaViolation, rewrite_nullable


def test_nullable_beside_a_type() -> None:
    assert rewrite_nullable({"type": "string", "nullable": True}) == {"type": ["string", "null"]}
    assert rewrite_nullable({"type": "string", "nullable": False}) == {"type": "string"}


def test_nullable_beside_a_ref() -> None:
    rewritten = rewrite_nullable({"$ref": "#/x", "nullable": True, "description": "d"})
    assert rewritten == {"anyOf": [{"$ref": "#/x"}, {"type": "null"}], "description": "d"}


def test_nullable_beside_an_enum() -> None:
    rewritten = rewrite_nullable({"type": "string", "enum": ["Active", "Resolved"], "nullable": True})
    assert rewritten == {"type": ["string", "null"], "enum": ["Active", "Resolved", None]}


def test_nested_and_examples_untouched() -> None:
    node = {"properties": {"a": {"type": "number", "nullable": True}}, "example": {"nullable": True}}
    assert rewrite_nullable(node) == {
        "properties": {"a": {"type": ["number", "null"]}},
        "example": {"nullable": True},
    }


def test_no_nullable_is_left(codat_openapi: CodatOpenAPI) -> None:
    def walk(node: object) -> int:
        if isinstance(node, dict):
            return int(node.get("nullable") is True) + sum(walk(v) for k, v in node.items() if k != "example")
        if isinstance(node, list):
            return sum(walk(v) for v in node)
        return 0

    assert walk(codat_openapi.document["components"]) == 0


def test_null_is_accepted_where_the_yaml_says_nullable(codat_openapi: CodatOpenAPI) -> None:
    codat_openapi.validate_response(
        "get-company-information", 200, {"companyName": None, "baseCurrency": None}
    )
    option = {"id": "a", "name": None, "currency": None, "status": "Active", "accountType": "Debit"}
    codat_openapi.validate_response(
        "get-mapping-options-payments", 200, {"bankAccounts": [option], "pagination": {}}
    )


@pytest.mark.parametrize(
    ("operation_id", "status", "body"),
    [
        ("get-mapping-options-payments", 200, {"bankAccounts": [{"id": "a", "status": "Closed"}]}),
        ("list-bills", 200, {"results": [{"id": "b", "status": "Open"}]}),  # required fields missing
        ("create-bill-payment", 201, {"amount": "10"}),
        ("create-bill-payment", 409, {"statusCode": "409"}),  # ErrorMessage.statusCode is an integer
        ("create-bill-payment", 422, {"error": 5}),  # undeclared status: ErrorMessage
        ("list-connections", 200, {"results": [{"id": "x"}]}),  # PagingInfo fields missing
    ],
)
def test_wrong_shapes_are_caught(
    codat_openapi: CodatOpenAPI, operation_id: str, status: int, body: object
) -> None:
    with pytest.raises(SchemaViolation):
        codat_openapi.validate_response(operation_id, status, body)


def test_request_validation(codat_openapi: CodatOpenAPI) -> None:
    codat_openapi.validate_request(
        "create-bill-payment", {"amount": 1, "date": "2026-11-25", "accountRef": {"id": "a"}}
    )
    with pytest.raises(SchemaViolation, match="accountRef"):
        codat_openapi.validate_request("create-bill-payment", {"amount": 1, "date": "2026-11-25"})
    with pytest.raises(SchemaViolation):
        codat_openapi.validate_request("create-bank-account", {"name": "A", "accountType": "Savings"})


def test_operations_are_found_from_method_and_path(codat_openapi: CodatOpenAPI) -> None:
    base = "/companies/c/connections/k/payables"
    assert (
        codat_openapi.operation_for("GET", f"{base}/mappingOptions/payments")
        == "get-mapping-options-payments"
    )
    assert codat_openapi.operation_for("POST", f"{base}/bills/b-1/payment") == "create-bill-payment"
    assert codat_openapi.operation_for("GET", f"{base}/bills") == "list-bills"
    assert codat_openapi.operation_for("POST", f"{base}/bankAccounts") == "create-bank-account"
    assert codat_openapi.operation_for("GET", "/companies") == "list-companies"
    assert codat_openapi.operation_for("GET", "/elsewhere") is None
