"""Fuzzing: schemathesis against the local API's `/openapi.json`, through the real gateway and handlers.

Every generated request — valid and invalid (schemathesis' positive and negative modes) — must be answered
without a 5xx, with a documented status code, the documented content type, a body matching the documented
schema and, for invalid input, a 4xx. Bounded and deterministic: hypothesis derandomized, no example
database, nothing learnt from earlier answers, 60 examples per operation plus schemathesis' examples and
coverage phases (about 10 s).

What the schema cannot say is added by hooks, drawn by hypothesis like the rest of the case:
- `Idempotency-Key` on POSTs: absent, fresh, reused, or malformed (empty, too long, not visible ASCII);
- real ids: some cases get the seeded company, connection, bill and account (so guards pass and payments
  are recorded), or the id of an existing operation; the rest keep schemathesis' random ones.

What random input cannot reach — a pending 202, a 409 in flight, each upstream failure of a write or a
read — is then made on purpose with sandbox faults and put through the same checks (but "no 5xx": there
the 5xx is the documented answer).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local.openapi import DOCUMENT_PATH
from local.sandbox import seed
from tests.integration.conftest import Stack, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.long(seconds=55)]

MAX_EXAMPLES = 60  # per operation, in the fuzzing phase
IDEMPOTENCY_KEY = "Idempotency-Key"
REUSED_KEY = "fuzz-reused-key"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]

# (company, connection, bill, account) that pass every guard when the amount fits.
_PAYABLE = [
    (seed.COMPANY_GBP_ID, seed.CONNECTION_GBP_ID, bill, seed.ACCOUNT_GBP_CURRENT)
    for bill in seed.BILLS_GBP_OPEN
] + [
    (seed.COMPANY_USD_ID, seed.CONNECTION_USD_ID, bill, seed.ACCOUNT_USD_CHECKING)
    for bill in seed.BILLS_USD_OPEN
]
_COMPANIES = [
    (seed.COMPANY_GBP_ID, seed.CONNECTION_GBP_ID),
    (seed.COMPANY_USD_ID, seed.CONNECTION_USD_ID),
    (seed.COMPANY_NOCCY_ID, seed.CONNECTION_NOCCY_ID),
    (seed.UNKNOWN_COMPANY_ID, seed.UNKNOWN_CONNECTION_ID),
]
# Mostly amounts the bills can take; some over the amount due or with too many decimals (422s).
_AMOUNTS = st.one_of(
    st.decimals(min_value=Decimal("1"), max_value=Decimal("110"), places=2),
    st.sampled_from([Decimal("0.005"), Decimal("99999.99")]),
)
_DATES = st.sampled_from(["2026-11-25", "2026-11-25T10:30:00Z", "2026-11-25T10:30:00+01:00"])
_known_operations: list[str] = []


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[Stack]:
    """A stack of its own: the fuzzer records payments and must not share sandbox state with other tests."""
    with start_stack(BILLPAY_LOCAL_ACCESS_LOG="0") as running:
        company, connection, bill, account = _PAYABLE[0]
        answer = running.client.post(
            f"/companies/{company}/connections/{connection}/payables/bills/{bill}/payments",
            json={"amount": 1.00, "date": "2026-11-25", "accountRef": {"id": account}},
            headers={IDEMPOTENCY_KEY: "fuzz-setup"},
        )
        assert answer.status_code == 201, answer.text
        _known_operations.append(answer.json()["operationId"])
        # A few transient upstream answers, so pending operations (202 + Location) are answered too —
        # for the USD company's bills only, so GBP payments answer 201 however fast the retries run.
        usd_bills = "*/bills/USD-OPEN-*/payment"
        running.arm_fault(path=usd_bills, fault="status", status=503, times=3)
        running.arm_fault(path=usd_bills, fault="status", status=429, retry_after=1, times=2)
        yield running


@pytest.fixture(scope="module")
def answers() -> Iterator[Counter[tuple[str, int]]]:
    """(operationId, status) of every answer; at the end, the fuzzer must have reached the real paths."""
    seen: Counter[tuple[str, int]] = Counter()
    yield seen
    statuses = {status for _, status in seen}
    print("fuzzing answers:", dict(sorted(seen.items())))
    # Which cases are drawn depends on the session (hypothesis' derandomized seed); 202, 409 and the
    # upstream 5xx answers are made deterministically by test_upstream_outcomes_answer_as_documented.
    assert {200, 201, 400, 404, 422} <= statuses, f"the fuzzer never reached some answers: {seen}"
    assert ("createBillPayment", 201) in seen
    assert ("getOperation", 200) in seen


@pytest.fixture(scope="module")
def api_schema(fuzz_stack: Stack) -> Any:
    config = schemathesis.Config()
    document = fuzz_stack.client.get("/openapi.json").json()
    # SigV4 is API Gateway's to check (it answers 403 unsigned before any of our code runs); the local
    # gateway stands in for it, so a request without `Authorization` is no schema violation here.
    document.pop("security", None)
    document.get("components", {}).pop("securitySchemes", None)
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.pop("security", None)
    document["servers"] = [{"url": fuzz_stack.api_url}]
    loaded = schemathesis.openapi.from_dict(document, config=config)
    loaded.config.update(base_url=fuzz_stack.api_url)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True, database="none"
    )
    # Deterministic means the same requests every run: no values learnt from earlier answers (ids,
    # timestamps differ per run), no generation steered by earlier 4xx answers.
    fuzzing = loaded.config.phases.fuzzing
    fuzzing.extra_data_sources.responses = False
    fuzzing.error_feedback.is_enabled = False
    # Methods outside API Gateway's own set (TRACE, QUERY) are answered by the local gateway's http.server
    # (501, HTML) before any of our code runs; in the cloud API Gateway answers them. The rest reach routing.
    loaded.config.phases.coverage.unexpected_methods = {"get", "put", "post", "delete", "options", "patch"}
    _register_hooks(loaded)
    return loaded


def _idempotency_keys() -> st.SearchStrategy[str | None]:
    visible = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=255)
    # Hypothesis favours the first branches: valid keys first, so most cases get past the key check.
    return st.one_of(
        st.uuids().map(str),
        visible,
        st.just(REUSED_KEY),
        st.none(),
        st.sampled_from(["", "x" * 256, "with space", "caf\u00e9"]),
    )


def _register_hooks(loaded: Any) -> None:
    @loaded.hook  # type: ignore[untyped-decorator]
    def flatmap_headers(context: Any, headers: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        if context.operation is None or context.operation.method.upper() != "POST":
            return st.just(headers)
        if headers and any(name.lower() == IDEMPOTENCY_KEY.lower() for name in headers):
            return st.just(headers)  # the schema declares it: schemathesis' own value stands

        def with_key(key: str | None) -> dict[str, Any] | None:
            if key is None:
                return headers
            return {**(headers or {}), IDEMPOTENCY_KEY: key}

        return _idempotency_keys().map(with_key)

    @loaded.hook  # type: ignore[untyped-decorator]
    def flatmap_case(context: Any, case: Any) -> st.SearchStrategy[Any]:
        operation_id = case.operation.definition.raw.get("operationId")
        if operation_id == "getOperation":
            return st.one_of(
                st.sampled_from(_known_operations).map(lambda op: _with(case, op)), st.just(case)
            )
        if operation_id == "createBillPayment":
            payable = st.tuples(st.sampled_from(_PAYABLE), _AMOUNTS, _DATES)
            return st.one_of(payable.map(lambda drawn: _payable(case, *drawn)), st.just(case))
        if operation_id in ("listBankAccounts", "createBankAccount"):
            return st.one_of(st.sampled_from(_COMPANIES).map(lambda ids: _company(case, ids)), st.just(case))
        return st.just(case)


def _with(case: Any, operation_id: str) -> Any:
    case.path_parameters = {**(case.path_parameters or {}), "operationId": operation_id}
    return case


def _company(case: Any, ids: tuple[str, str]) -> Any:
    company, connection = ids
    case.path_parameters = {**(case.path_parameters or {}), "companyId": company, "connectionId": connection}
    return case


def _payable(case: Any, ids: tuple[str, str, str, str], amount: Decimal, date: str) -> Any:
    """Seeded ids; and, in a body that is an object, an amount and a date the guards can pass."""
    company, connection, bill, account = ids
    case.path_parameters = {
        **(case.path_parameters or {}),
        "companyId": company,
        "connectionId": connection,
        "billId": bill,
    }
    body = case.body
    if isinstance(body, dict):
        case.body = {**body, "amount": float(amount), "date": date, "accountRef": {"id": account}}
    return case


def test_the_gateway_serves_the_committed_document(fuzz_stack: Stack) -> None:
    served = fuzz_stack.client.get("/openapi.json").json()
    committed = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
    # Only the local server differs: the gateway names the address it listens on first, then the
    # deployed one as the committed document does.
    served_servers, committed_servers = served.pop("servers"), committed.pop("servers")
    assert served_servers[0]["url"] == fuzz_stack.api_url
    assert served_servers[1:] == committed_servers[1:]
    assert served == committed


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_as_documented(case: Any, answers: Counter[tuple[str, int]]) -> None:
    response = case.call_and_validate(checks=CHECKS, timeout=30)
    answers[(case.operation.definition.raw.get("operationId") or case.method, response.status_code)] += 1


# -- the answers random input cannot reach on its own: each upstream outcome, made by a sandbox fault, through
# -- the same schemathesis checks (documented status, content type, schema, headers).

PAYMENTS = "/companies/{companyId}/connections/{connectionId}/payables/bills/{billId}/payments"
ACCOUNTS = "/companies/{companyId}/connections/{connectionId}/payables/bankAccounts"
OPERATION = "/operations/{operationId}"
ACCOUNTS_GLOB = "*/payables/mappingOptions/payments"

# name: (fault armed on the bill's upstream path, the first answer's status, the replay's status)
WRITE_OUTCOMES: dict[str, tuple[dict[str, Any], int, int]] = {
    "transient 503: pending": ({"fault": "status", "status": 503, "times": 50}, 202, 202),
    "codat 400: failed": ({"fault": "status", "status": 400}, 422, 422),
    "codat 404: failed": ({"fault": "status", "status": 404}, 404, 404),
    "codat 403: failed": ({"fault": "status", "status": 403}, 502, 502),
    "timeout after commit: pending, then replayed success": (
        {"fault": "commit-then-timeout", "hold_seconds": 3},
        202,
        201,
    ),
    "cached 5xx replayed: needs_review": ({"fault": "commit-then-status", "status": 500}, 202, 502),
}
READ_OUTCOMES: dict[str, tuple[dict[str, Any], int]] = {
    "codat 401": ({"fault": "status", "status": 401}, 502),
    "codat 429": ({"fault": "status", "status": 429, "retry_after": 1, "times": 10}, 503),
    "codat 503": ({"fault": "status", "status": 503, "times": 10}, 502),
    "codat timeout": ({"fault": "timeout", "hold_seconds": 3, "times": 10}, 504),
}


# Here a 5xx is the point (Codat failed, the answer says so): every check but "no 5xx".
UPSTREAM_CHECKS = [check for check in CHECKS if check is not not_a_server_error]


def _checked(api_schema: Any, path: str, method: str, **case: Any) -> Any:
    return api_schema[path][method].Case(**case).call_and_validate(checks=UPSTREAM_CHECKS, timeout=30)


@pytest.mark.parametrize("name", list(WRITE_OUTCOMES))
def test_upstream_outcomes_answer_as_documented(fuzz_stack: Stack, api_schema: Any, name: str) -> None:
    fault, first_status, replay_status = WRITE_OUTCOMES[name]
    bill = seed.BILLS_GBP_OPEN[list(WRITE_OUTCOMES).index(name) + 2]  # a bill of its own
    fuzz_stack.clear_faults()
    fuzz_stack.arm_fault(path=f"*/bills/{bill}/payment", **fault)
    case = {
        "path_parameters": {
            "companyId": seed.COMPANY_GBP_ID,
            "connectionId": seed.CONNECTION_GBP_ID,
            "billId": bill,
        },
        "headers": {IDEMPOTENCY_KEY: f"outcome-{uuid.uuid4()}"},
        "body": {"amount": 1.25, "date": "2026-11-25", "accountRef": {"id": seed.ACCOUNT_GBP_CURRENT}},
    }
    first = _checked(api_schema, PAYMENTS, "POST", **case)
    assert first.status_code == first_status, first.text
    body = first.json()
    operation_id = body.get("operationId") or body["operation"]["operationId"]
    if replay_status != first_status or first_status == 202:
        # Let the sweeper and the worker settle what they can before the replay.
        wanted = {202: "pending", 201: "succeeded", 502: "needs_review"}[replay_status]
        fuzz_stack.wait_until(
            lambda: fuzz_stack.operation(operation_id)["status"] == wanted, timeout=20, message=name
        )
    replay = _checked(api_schema, PAYMENTS, "POST", **case)
    assert replay.status_code == replay_status, replay.text
    state = _checked(api_schema, OPERATION, "GET", path_parameters={"operationId": operation_id})
    assert state.status_code == 200
    fuzz_stack.clear_faults()


def test_a_key_in_flight_answers_409_as_documented(fuzz_stack: Stack, api_schema: Any) -> None:
    """The first request is parked in the AWS fault proxy — its first write to the table that names the
    payment's unique reference is held before it reaches the table — so it stays in flight, with its live
    lease, until the duplicate has been answered; then it is let go. No clock decides the order."""
    bill = seed.BILLS_GBP_OPEN[9]
    reference = f"in-flight-{uuid.uuid4()}"
    fuzz_stack.clear_faults()
    fuzz_stack.clear_aws_faults()
    # Every SDK attempt is held (its read timeout would otherwise end the hold and let a retry through).
    fuzz_stack.arm_aws_fault(
        service="dynamodb", operation="UpdateItem", match=reference, fault="hold-before", times=5
    )
    case = {
        "path_parameters": {
            "companyId": seed.COMPANY_GBP_ID,
            "connectionId": seed.CONNECTION_GBP_ID,
            "billId": bill,
        },
        "headers": {IDEMPOTENCY_KEY: f"in-flight-{uuid.uuid4()}"},
        "body": {
            "amount": 2.5,
            "date": "2026-11-25",
            "accountRef": {"id": seed.ACCOUNT_GBP_CURRENT},
            "reference": reference,
        },
    }
    with ThreadPoolExecutor(max_workers=1) as other:
        first = other.submit(_checked, api_schema, PAYMENTS, "POST", **case)
        try:
            fuzz_stack.wait_until(
                lambda: fuzz_stack.aws_faults()[0]["holding"] == 1,
                timeout=30,
                message="the first request held in flight",
            )
            second = _checked(api_schema, PAYMENTS, "POST", **case)
        finally:
            fuzz_stack.clear_aws_faults()  # lets the first request go on
        assert second.status_code == 409, second.text
        assert second.headers.get("retry-after"), second.headers
        assert first.result().status_code == 201
    recorded = [p for p in fuzz_stack.payments() if p.get("reference") == reference]
    assert len(recorded) == 1, recorded


@pytest.mark.parametrize("name", list(READ_OUTCOMES))
def test_upstream_read_failures_answer_as_documented(fuzz_stack: Stack, api_schema: Any, name: str) -> None:
    fault, status = READ_OUTCOMES[name]
    fuzz_stack.clear_faults()
    fuzz_stack.arm_fault(path=ACCOUNTS_GLOB, method="GET", **fault)
    answer = _checked(
        api_schema,
        ACCOUNTS,
        "GET",
        path_parameters={"companyId": seed.COMPANY_USD_ID, "connectionId": seed.CONNECTION_USD_ID},
    )
    assert answer.status_code == status, answer.text
    fuzz_stack.clear_faults()
