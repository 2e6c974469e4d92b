"""Request bodies of the two writes: shape rules (400), exact decimals, dates kept as written, and the
exact upstream JSON (without our `currency`) — also through the real resolver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from billpay.config import reset_settings
from billpay.http import build_resolver
from billpay.models.requests import (
    BankAccountCreate,
    BillPaymentCreate,
    decimal_places,
    decimal_text,
    json_loads,
    render_json,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

VALID: dict[str, Any] = {"amount": 10, "date": "2024-03-01", "accountRef": {"id": "acc-1"}}


def parse(text: str) -> BillPaymentCreate:
    """As the API parses a body: exact decimals, then the model."""
    return BillPaymentCreate.model_validate(json_loads(text))


def body(**changes: Any) -> str:
    merged = {**VALID, **changes}
    return json.dumps({k: v for k, v in merged.items() if v is not ...})


def errors_of(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as raised:
        parse(text)
    return [(".".join(map(str, e["loc"])), e["type"]) for e in raised.value.errors()]


# ------------------------------------------------------------------------------------- bill payment


def test_a_full_body_parses_and_forwards_without_currency() -> None:
    text = (
        '{"amount": 1329.540, "date": "2022-10-23T00:00:00.000Z", "accountRef": {"id": "7bda9f44sr56"},'
        ' "reference": "Bill Payment against bill c13e37b6", "currencyRate": 0.7810, "currency": "USD"}'
    )
    request = parse(text)
    assert request.amount == Decimal("1329.540")
    assert request.currency == "USD"
    upstream = request.to_upstream_json()
    assert upstream == (
        b'{"amount":1329.54,"date":"2022-10-23T00:00:00.000Z",'
        b'"reference":"Bill Payment against bill c13e37b6",'
        b'"accountRef":{"id":"7bda9f44sr56"},"currencyRate":0.781}'
    )
    assert "currency" not in json.loads(upstream)


def test_upstream_json_is_a_valid_codat_bill_payment_prototype(codat_openapi: Any) -> None:
    request = parse(body(reference="r", currencyRate=0.781, currency="USD"))
    codat_openapi.validate_request("create-bill-payment", json.loads(request.to_upstream_json()))
    account = BankAccountCreate.model_validate(
        {"name": "Ops", "accountType": "Debit", "accountNumber": "1", "currency": "EUR", "sortCode": "12"}
    )
    codat_openapi.validate_request("create-bank-account", json.loads(account.to_upstream_json()))


@pytest.mark.parametrize("null_member", ["reference", "currencyRate", "currency"])
def test_null_optional_members_are_neither_forwarded_nor_hashed(null_member: str) -> None:
    with_null = parse(body(**{null_member: None}))
    without = parse(body())
    assert with_null.to_upstream_json() == without.to_upstream_json()
    assert with_null.canonical_json() == without.canonical_json()
    assert null_member not in json.loads(with_null.to_upstream_json())


def test_ten_ten_point_zero_and_ten_point_zero_zero_are_one_body() -> None:
    bodies = [
        parse(f'{{"amount": {a}, "date": "2024-03-01", "accountRef": {{"id": "x"}}}}')
        for a in ("10", "10.0", "10.00", "1e1", "1.000E+1")
    ]
    assert len({b.canonical_json() for b in bodies}) == 1
    assert len({b.to_upstream_json() for b in bodies}) == 1
    assert bodies[0].canonical_json() == b'{"accountRef":{"id":"x"},"amount":10,"date":"2024-03-01"}'


def test_currency_is_part_of_the_canonical_body_but_not_the_upstream_one() -> None:
    a, b = parse(body(currency="GBP")), parse(body())
    assert a.canonical_json() != b.canonical_json()
    assert a.to_upstream_json() == b.to_upstream_json()


@pytest.mark.parametrize(
    "written",
    [
        "2024-03-01",
        "2024-02-29",
        "2024-03-01T10:00",
        "2024-03-01T10:00:00",
        "2024-03-01T10:00:00Z",
        "2024-03-01T10:00:00.5Z",
        "2022-10-27T10:22:43.6464237Z",
        "2024-03-01T10:00:00.123456789+05:30",
        "2024-03-01T23:59:59-11:00",
        "2022-10-23T00:00:00.000Z",
    ],
)
def test_dates_are_kept_exactly_as_written(written: str) -> None:
    request = parse(body(date=written))
    assert request.date == written
    assert f'"date":"{written}"'.encode() in request.to_upstream_json()
    assert f'"date":"{written}"'.encode() in request.canonical_json()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "2024-3-1",
        "2024/03/01",
        "20240301",
        "2024-02-30",
        "2023-02-29",
        "2024-13-01",
        "2024-03-01T24:00:00",
        "2024-03-01T10:60:00",
        "2024-03-01 10:00:00",
        "2024-03-01t10:00:00z",
        "2024-03-01T10:00:00.1234567890Z",
        "2024-03-01T10:00:00+2400",
        "2024-03-01T10:00:00+24:00",
        " 2024-03-01",
        "2024-03-01\n",
        "٢٠٢٤-03-01",
        "yesterday",
    ],
)
def test_malformed_dates_are_refused(bad: str) -> None:
    assert errors_of(body(date=bad)) == [("date", "iso_8601")]


def test_a_date_must_be_a_string() -> None:
    assert errors_of(body(date=20240301))[0][0] == "date"


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        ('"10.00"', "json_number"),
        ("true", "json_number"),
        ("null", "json_number"),
        ("[10]", "json_number"),
        ("NaN", "finite_number"),
        ("Infinity", "finite_number"),
        ("-Infinity", "finite_number"),
        ("0", "greater_than"),
        ("0.00", "greater_than"),
        ("-0", "greater_than"),
        ("-5", "greater_than"),
        ("1e15", "number_too_large"),
        ("1000000000000000", "number_too_large"),
        ("1e999999999", "number_too_large"),
        ("0.0000000000001", "decimal_max_places"),
        ("1e-999999999", "decimal_max_places"),
    ],
)
def test_bad_amounts_are_refused(amount: str, error: str) -> None:
    text = f'{{"amount": {amount}, "date": "2024-03-01", "accountRef": {{"id": "x"}}}}'
    assert errors_of(text) == [("amount", error)]


def test_amount_limits_are_inclusive_where_they_should_be() -> None:
    assert parse(body(amount=999999999999999)).amount == Decimal("999999999999999")
    assert parse('{"amount": 0.000000000001, "date": "2024-03-01", "accountRef": {"id": "x"}}').amount > 0
    # trailing zeros are not decimals: 12 places of precision, written with 30
    padded = "1." + "0" * 30
    assert parse(f'{{"amount": {padded}, "date": "2024-03-01", "accountRef": {{"id": "x"}}}}').amount == 1


@pytest.mark.parametrize(
    ("rate", "error"),
    [
        ("0", "greater_than"),
        ("-0.5", "greater_than"),
        ('"0.78"', "json_number"),
        ("NaN", "finite_number"),
        ("0.1234567891", "decimal_max_places"),
        ("1000000000", "number_too_large"),
    ],
)
def test_bad_currency_rates_are_refused(rate: str, error: str) -> None:
    text = f'{{"amount": 1, "date": "2024-03-01", "accountRef": {{"id": "x"}}, "currencyRate": {rate}}}'
    assert errors_of(text) == [("currencyRate", error)]


@pytest.mark.parametrize("currency", ["gbp", "GB", "GBPX", "£", "", "12A", 826])
def test_currency_must_be_iso_4217_shaped(currency: Any) -> None:
    assert errors_of(body(currency=currency))[0][0] == "currency"


def test_unknown_members_are_refused_at_every_level() -> None:
    assert errors_of(body(curency="GBP")) == [("curency", "extra_forbidden")]
    assert errors_of(body(accountRef={"id": "x", "name": "Current"})) == [
        ("accountRef.name", "extra_forbidden")
    ]
    # snake_case names are not aliases of the camelCase ones
    assert ("account_ref", "extra_forbidden") in errors_of(json.dumps({**VALID, "account_ref": {"id": "x"}}))


@pytest.mark.parametrize("missing", ["amount", "date", "accountRef"])
def test_required_members(missing: str) -> None:
    assert errors_of(body(**{missing: ...})) == [(missing, "missing")]


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("accountRef", {"id": ""}),
        ("accountRef", {"id": "a\u0000b"}),
        ("accountRef", {"id": "a\nb"}),
        ("accountRef", {}),
        ("accountRef", "acc-1"),
        ("reference", "x" * 4001),
        ("reference", "bell\u0007"),
        ("reference", 12),
    ],
)
def test_bad_strings_are_refused(member: str, value: Any) -> None:
    assert errors_of(body(**{member: value}))[0][0].startswith(member)


def test_a_reference_may_hold_line_breaks_and_any_script() -> None:
    request = parse(body(reference="Rechnung Nr. 7\r\n\tÄÖÜ 請求書 🧾"))
    assert json.loads(request.to_upstream_json())["reference"] == "Rechnung Nr. 7\r\n\tÄÖÜ 請求書 🧾"


def test_a_lone_surrogate_is_refused_not_a_500() -> None:
    assert errors_of(r'{"amount": 1, "date": "2024-03-01", "accountRef": {"id": "x"}, "reference": "\ud800"}')


# --- decimals: exact whatever their size, via json_loads or (if a resolver hands floats) via repr


@settings(max_examples=400, deadline=None)
@given(
    st.decimals(
        min_value=Decimal("0.000000000001"), max_value=Decimal("999999999999999"), allow_nan=False, places=12
    )
)
def test_every_accepted_amount_round_trips_exactly(amount: Decimal) -> None:
    request = parse(f'{{"amount": {amount}, "date": "2024-03-01", "accountRef": {{"id": "x"}}}}')
    assert request.amount == amount
    forwarded = json.loads(request.to_upstream_json(), parse_float=Decimal, parse_int=Decimal)["amount"]
    assert forwarded == amount
    assert decimal_text(amount) == format(amount.normalize(), "f")


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e14, allow_nan=False, allow_infinity=False))
def test_a_float_is_taken_by_its_shortest_repr_or_refused(value: float) -> None:
    try:
        request = BillPaymentCreate.model_validate({**VALID, "amount": value})
    except ValidationError as exc:
        assert {e["type"] for e in exc.errors()} <= {"number_precision", "decimal_max_places"}
        return
    assert request.amount == Decimal(repr(value))
    assert float(request.amount) == value


def test_json_loads_keeps_what_was_written() -> None:
    assert json_loads('{"a": 10.10}')["a"] == Decimal("10.10")
    assert str(json_loads('{"a": 12345678901234.567}')["a"]) == "12345678901234.567"


@pytest.mark.parametrize(
    ("value", "text", "places"),
    [
        (Decimal("10"), "10", 0),
        (Decimal("10.00"), "10", 0),
        (Decimal("1E+3"), "1000", 0),
        (Decimal("0.50"), "0.5", 1),
        (Decimal("0.000001"), "0.000001", 6),
        (Decimal("123.4500"), "123.45", 2),
        (Decimal("1." + "0" * 40), "1", 0),
        (Decimal("1234567890123456789012345678901.5"), "1234567890123456789012345678901.5", 1),
    ],
)
def test_decimal_text_is_plain_and_exact(value: Decimal, text: str, places: int) -> None:
    assert decimal_text(value) == text
    assert decimal_places(value) == places


def test_render_json_writes_decimals_as_number_tokens() -> None:
    assert render_json({"b": Decimal("1.50"), "a": [None, True, "é"]}, sort_keys=True) == (
        '{"a":[null,true,"é"],"b":1.5}'.encode()
    )


# ------------------------------------------------------------------------------------- bank account

ACCOUNT: dict[str, Any] = {
    "name": "Ops",
    "accountType": "Debit",
    "accountNumber": "12345678",
    "currency": "GBP",
}


def test_a_bank_account_body_forwards_in_codat_order() -> None:
    account = BankAccountCreate.model_validate({**ACCOUNT, "sortCode": "123456", "nominalCode": "090"})
    assert account.to_upstream_json() == (
        b'{"nominalCode":"090","name":"Ops","accountType":"Debit","accountNumber":"12345678",'
        b'"sortCode":"123456","currency":"GBP"}'
    )
    assert account.canonical_json() == render_json(account.canonical(), sort_keys=True)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"accountType": "Savings"}, "accountType"),
        ({"accountNumber": None}, "accountNumber"),
        ({"currency": "XXX"}, "currency"),
        ({"currency": "XAU"}, "currency"),
        ({"currency": "gbp"}, "currency"),
        ({"sortCode": 123456}, "sortCode"),
        ({"iban": "GB00"}, "iban"),
    ],
)
def test_bad_bank_accounts_are_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        BankAccountCreate.model_validate({**ACCOUNT, **changes})
    assert [str(e["loc"][0]) for e in raised.value.errors()] == [field]


@pytest.mark.parametrize("missing", ["name", "accountType", "accountNumber", "currency"])
def test_bank_account_required_members(missing: str) -> None:
    with pytest.raises(ValidationError):
        BankAccountCreate.model_validate({k: v for k, v in ACCOUNT.items() if k != missing})


# ------------------------------------------------------------------------- through the real resolver


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("CODAT_API_KEY", "k")
    monkeypatch.delenv("CODAT_API_KEY_SECRET_ARN", raising=False)
    reset_settings()
    resolver = build_resolver()

    @resolver.post("/pay")
    def pay(payment: BillPaymentCreate) -> dict[str, Any]:
        return {"amount": str(payment.amount), "upstream": payment.to_upstream_json().decode()}

    yield resolver
    reset_settings()


def post(app: Any, text: str) -> tuple[int, dict[str, Any]]:
    event = {
        "resource": "/pay",
        "path": "/pay",
        "httpMethod": "POST",
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {"content-type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"path": "/pay", "stage": "test", "requestId": "r"},
        "body": text,
        "isBase64Encoded": False,
    }
    answer = app.resolve(event, None)
    return answer["statusCode"], json.loads(answer["body"])


@pytest.mark.parametrize(
    "text",
    [
        '{"amount": "10.00", "date": "2024-03-01", "accountRef": {"id": "x"}}',
        '{"amount": NaN, "date": "2024-03-01", "accountRef": {"id": "x"}}',
        '{"amount": 10, "date": "2024-02-30", "accountRef": {"id": "x"}}',
        '{"amount": 10, "date": "2024-03-01", "accountRef": {"id": "x"}, "extra": 1}',
        '{"amount": 10, "date": "2024-03-01", "accountRef": {"id": "x"}, "currencyRate": 0}',
        '{"amount": 0.30000000000000004, "date": "2024-03-01", "accountRef": {"id": "x"}}',
        '{"amount": 10, "date": "2024-03-01"',
        "[1, 2]",
        "null",
    ],
)
def test_the_resolver_answers_shape_violations_with_400_validation_error(app: Any, text: str) -> None:
    status, problem = post(app, text)
    assert status == 400
    assert problem["type"].endswith("/problems/validation-error")


def test_the_resolver_keeps_amounts_exact(app: Any) -> None:
    status, answer = post(app, '{"amount": 1234.10, "date": "2024-03-01", "accountRef": {"id": "x"}}')
    assert status == 200
    assert Decimal(answer["amount"]) == Decimal("1234.10")
    assert answer["upstream"] == '{"amount":1234.1,"date":"2024-03-01","accountRef":{"id":"x"}}'
