"""Codat's query language as the sandbox parses it (pure)."""

from __future__ import annotations

import pytest

from local.sandbox.query import QueryError, parse

PROPS = {"status": "string", "sourceModifiedDate": "datetime", "amountDue": "number", "name": "string"}
OPEN: dict[str, object] = {
    "status": "Open",
    "sourceModifiedDate": "2026-11-01T09:00:00Z",
    "amountDue": 10,
    "name": "Oak Ltd",
}
PAID: dict[str, object] = {
    "status": "Paid",
    "sourceModifiedDate": "2023-01-01T00:00:00Z",
    "amountDue": 0,
    "name": "Ash plc",
}
VOID: dict[str, object] = {
    "status": "Void",
    "sourceModifiedDate": "2026-11-02T00:00:00Z",
    "amountDue": None,
    "name": "Elm",
}
RECORDS: list[dict[str, object]] = [OPEN, PAID, VOID]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=Open", [OPEN]),
        ("status = open", [OPEN]),  # values and spacing as Codat tolerates them
        ("STATUS=Open", [OPEN]),
        ("status!=Open", [PAID, VOID]),
        ("status=Open||status=Paid", [OPEN, PAID]),
        ("status=Open&&status=Paid", []),
        ("status=Paid||status=Void&&amountDue>5", [PAID]),  # && binds tighter
        ("(status=Paid||status=Void)&&sourceModifiedDate>2026-01-01T00:00:00.000Z", [VOID]),
        ("sourceModifiedDate>=2026-11-01T09:00:00Z", [OPEN, VOID]),
        ("sourceModifiedDate<2026-11-01", [PAID]),
        ("amountDue<=0", [PAID]),
        ("amountDue!=10", [PAID, VOID]),  # null is "not equal" to anything
        ("name~oak", [OPEN]),
        ("name='Ash plc'", [PAID]),
        ("name={Elm}", [VOID]),
    ],
)
def test_queries_select(query: str, expected: list[dict[str, object]]) -> None:
    predicate = parse(query, PROPS)  # type: ignore[arg-type]
    assert [r for r in RECORDS if predicate(r)] == expected


@pytest.mark.parametrize(
    "query",
    [
        "",
        "status",
        "status=",
        "=Open",
        "status=Open||",
        "||status=Open",
        "(status=Open",
        "status=Open)",
        "status==Open",
        "sourceModifiedDate>soon",
        "amountDue>lots",
        "amountDue~1",
        "status=Open&&&&status=Paid",
    ],
)
def test_malformed_queries_are_refused(query: str) -> None:
    with pytest.raises(QueryError, match="Error parsing query"):
        parse(query, PROPS)  # type: ignore[arg-type]


def test_unknown_property_is_refused_as_codat_words_it() -> None:
    with pytest.raises(QueryError, match="Could not resolve property isCompleted on Dataset"):
        parse("isCompleted=true", PROPS)  # type: ignore[arg-type]
