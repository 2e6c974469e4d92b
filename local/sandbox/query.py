"""Codat's query language, the subset its list endpoints document.

`status=Open||status=PartiallyPaid`, `sourceModifiedDate>2023-12-15T00:00:00.000Z&&status=Open`:
comparisons (`=`, `!=`, `>`, `<`, `>=`, `<=`, `~` contains) joined by `&&` (binds tighter) and `||`, with
parentheses. Strings compare case-insensitively, as Codat's do. Each endpoint names the properties it can
filter on; any other property is refused the way Codat refuses it ("Could not resolve property").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Kind = Literal["string", "datetime", "number"]
Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(r"\s*(\|\||&&|\(|\)|!=|>=|<=|=|>|<|~)\s*")
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
_COMPARATORS = frozenset({"=", "!=", ">", "<", ">=", "<=", "~"})


class QueryError(ValueError):
    """The query cannot be parsed or names a property the dataset does not have."""


def parse(query: str, properties: Mapping[str, Kind]) -> Predicate:
    """A predicate over records (dicts keyed by Codat property names) for `query`."""
    tokens = [token for token in _TOKEN.split(query.strip()) if token != ""]
    if not tokens:
        raise QueryError("Error parsing query - Malformed query.")
    parser = _Parser(tokens, properties)
    predicate = parser.expression()
    if parser.position != len(tokens):
        raise QueryError("Error parsing query - Malformed query.")
    return predicate


class _Parser:
    def __init__(self, tokens: list[str], properties: Mapping[str, Kind]) -> None:
        self.tokens = tokens
        self.position = 0
        # Codat resolves property names case-insensitively.
        self.properties = {name.lower(): (name, kind) for name, kind in properties.items()}

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise QueryError("Error parsing query - Malformed query.")
        self.position += 1
        return token

    def expression(self) -> Predicate:
        terms = [self.conjunction()]
        while self._peek() == "||":
            self._take()
            terms.append(self.conjunction())
        if len(terms) == 1:
            return terms[0]
        return lambda record: any(term(record) for term in terms)

    def conjunction(self) -> Predicate:
        factors = [self.factor()]
        while self._peek() == "&&":
            self._take()
            factors.append(self.factor())
        if len(factors) == 1:
            return factors[0]
        return lambda record: all(factor(record) for factor in factors)

    def factor(self) -> Predicate:
        if self._peek() == "(":
            self._take()
            inner = self.expression()
            if self._take() != ")":
                raise QueryError("Error parsing query - Malformed query.")
            return inner
        name = self._take().strip()
        operator = self._take()
        value = self._take().strip()
        if not _IDENT.match(name) or operator not in _COMPARATORS or value in _COMPARATORS | {"(", ")"}:
            raise QueryError("Error parsing query - Malformed query.")
        if value in {"||", "&&"}:
            raise QueryError("Error parsing query - Malformed query.")
        resolved = self.properties.get(name.lower())
        if resolved is None:
            raise QueryError(f"Error parsing query - Could not resolve property {name} on Dataset")
        return _comparison(resolved[0], resolved[1], operator, _unquote(value))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    if len(value) >= 2 and value[0] == "{" and value[-1] == "}":
        return value[1:-1]
    return value


def _parse_datetime(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise QueryError(f"Error parsing query - {value!r} is not a date") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _parse_number(value: str) -> Decimal:
    try:
        parsed = Decimal(value)
    except InvalidOperation as exc:
        raise QueryError(f"Error parsing query - {value!r} is not a number") from exc
    if not parsed.is_finite():
        raise QueryError(f"Error parsing query - {value!r} is not a number")
    return parsed


def _comparison(name: str, kind: Kind, operator: str, raw: str) -> Predicate:
    expected: Any
    convert: Callable[[Any], Any]
    if kind == "datetime":
        expected = _parse_datetime(raw)
        convert = lambda actual: _parse_datetime(str(actual))  # noqa: E731
    elif kind == "number":
        expected = _parse_number(raw)
        convert = lambda actual: Decimal(str(actual))  # noqa: E731
    else:
        expected = raw.lower()
        convert = lambda actual: str(actual).lower()  # noqa: E731
    if operator == "~" and kind != "string":
        raise QueryError(f"Error parsing query - operator ~ is not valid for {name}")

    def predicate(record: Mapping[str, Any]) -> bool:
        actual = record.get(name)
        if actual is None:
            return operator == "!="
        value = convert(actual)
        if operator == "=":
            return bool(value == expected)
        if operator == "!=":
            return bool(value != expected)
        if operator == "~":
            return isinstance(value, str) and str(expected) in value
        if operator == ">":
            return bool(value > expected)
        if operator == "<":
            return bool(value < expected)
        if operator == ">=":
            return bool(value >= expected)
        return bool(value <= expected)

    return predicate
