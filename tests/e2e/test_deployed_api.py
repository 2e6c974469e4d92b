"""The deployed stack answers as the local one does (contract: API): run with BILLPAY_E2E_STACK=<stack>.

Read-only by default: a signed list, the 403 of an unsigned or tampered request, a 400 that never reaches
Codat, a 404 operation. The write scenarios (a payment, its replay, its status, a reused key) run only with
BILLPAY_E2E_ALLOW_WRITES=1 against a Codat sandbox company. Faults are never injected here.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest

from tests.e2e.conftest import Answer, DeployedApi, SandboxCompany

pytestmark = pytest.mark.e2e

# Well-formed ids that name nothing: a 404 or a refusal, never a write.
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
PROBLEM = "application/problem+json"


def list_path(company: str, connection: str) -> str:
    return f"/companies/{company}/connections/{connection}/payables/bankAccounts"


def assert_problem(answer: Answer, status: int, *types: str) -> None:
    assert answer.status == status, answer
    assert answer.content_type == PROBLEM, answer
    assert isinstance(answer.body, dict)
    assert answer.body["status"] == status
    assert any(str(answer.body["type"]).endswith(f"/problems/{t}") for t in types), answer.body


# ---------------------------------------------------------------- read-only


def test_the_outputs_describe_the_stack(deployed: DeployedApi) -> None:
    assert deployed.url.startswith("https://") and deployed.url.endswith("/v1")
    for output in ("OperationsTableName", "RetryQueueUrl", "RetryDeadLetterQueueUrl"):
        assert deployed.outputs[output]


def test_an_unsigned_request_is_refused_by_api_gateway(deployed: DeployedApi) -> None:
    answer = deployed.call("GET", list_path(UNKNOWN_ID, UNKNOWN_ID), signed=False)
    assert answer.status == 403


def test_a_tampered_signature_is_refused(deployed: DeployedApi) -> None:
    path = list_path(UNKNOWN_ID, UNKNOWN_ID)
    headers = deployed.sign("GET", deployed.url + path, {"accept": "application/json"}, b"")
    # Signed for one path, sent to another: the signature no longer matches.
    other = deployed.url + list_path(str(uuid.uuid4()), UNKNOWN_ID)
    response = deployed.client.get(other, headers=headers)
    assert response.status_code == 403


def test_a_bad_path_parameter_is_a_400_that_never_reaches_codat(deployed: DeployedApi) -> None:
    answer = deployed.call("GET", list_path("not-a-uuid", UNKNOWN_ID))
    assert_problem(answer, 400, "validation-error")
    assert answer.body.get("errors")


def test_a_bad_query_parameter_is_a_400(deployed: DeployedApi) -> None:
    answer = deployed.call("GET", list_path(UNKNOWN_ID, UNKNOWN_ID), query={"status": "Bogus"})
    assert_problem(answer, 400, "validation-error")


def test_an_unknown_operation_is_a_404(deployed: DeployedApi) -> None:
    answer = deployed.call("GET", f"/operations/{uuid.uuid4()}")
    assert_problem(answer, 404, "not-found")


def test_a_post_without_an_idempotency_key_writes_nothing(deployed: DeployedApi) -> None:
    # Refused before any record or upstream call: safe against any company.
    answer = deployed.call(
        "POST",
        f"/companies/{UNKNOWN_ID}/connections/{UNKNOWN_ID}/payables/bills/e2e-no-key/payments",
        body={},
    )
    assert_problem(answer, 400, "idempotency-key-missing", "validation-error")


def test_a_signed_list_returns_the_companys_accounts(
    deployed: DeployedApi, sandbox_company: SandboxCompany
) -> None:
    answer = deployed.call("GET", list_path(sandbox_company.company_id, sandbox_company.connection_id))
    assert answer.status == 200, answer
    assert answer.content_type == "application/json"
    assert isinstance(answer.body["bankAccounts"], list)
    assert "pagination" in answer.body


# ---------------------------------------------------------------- writes (sandbox company only)


@pytest.fixture(scope="module")
def payment_target(writes_allowed: SandboxCompany) -> dict[str, str]:
    bill = os.environ.get("BILLPAY_E2E_BILL_ID", "").strip()
    account = os.environ.get("BILLPAY_E2E_ACCOUNT_ID", "").strip()
    if not (bill and account):
        pytest.skip(
            "BILLPAY_E2E_BILL_ID and BILLPAY_E2E_ACCOUNT_ID are not set: an open sandbox bill and an "
            "account to pay it from"
        )
    return {"bill": bill, "account": account}


def payment_body(account: str, amount: str) -> dict[str, object]:
    body: dict[str, object] = {
        "amount": amount,
        "date": dt.date.today().isoformat(),
        "accountRef": {"id": account},
        "reference": "billpay-e2e",
    }
    rate = os.environ.get("BILLPAY_E2E_CURRENCY_RATE")
    if rate:
        body["currencyRate"] = rate
    return body


def test_a_payment_is_recorded_once_and_replays_the_same_operation(
    deployed: DeployedApi, writes_allowed: SandboxCompany, payment_target: dict[str, str]
) -> None:
    path = (
        f"/companies/{writes_allowed.company_id}/connections/{writes_allowed.connection_id}"
        f"/payables/bills/{payment_target['bill']}/payments"
    )
    key = {"Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    body = payment_body(payment_target["account"], os.environ.get("BILLPAY_E2E_AMOUNT", "0.01"))

    first = deployed.call("POST", path, body=body, headers=key)
    assert first.status in (201, 202), first
    operation_id = first.body["operationId"]
    if first.status == 202:
        assert first.headers["location"].endswith(f"/v1/operations/{operation_id}")

    replay = deployed.call("POST", path, body=body, headers=key)
    assert replay.status in (201, 202), replay
    assert replay.body["operationId"] == operation_id

    settled = deployed.wait_settled(operation_id)
    assert settled.status == 200
    assert settled.body["status"] == "succeeded", settled.body
    assert settled.body["result"]

    reused = deployed.call("POST", path, body={**body, "reference": "billpay-e2e other"}, headers=key)
    assert_problem(reused, 422, "idempotency-key-reused")


def test_a_bank_account_is_created(deployed: DeployedApi, writes_allowed: SandboxCompany) -> None:
    if os.environ.get("BILLPAY_E2E_CREATE_BANK_ACCOUNT") != "1":
        pytest.skip(
            "BILLPAY_E2E_CREATE_BANK_ACCOUNT=1 not set: adds an account to the sandbox company's ledger"
        )
    path = list_path(writes_allowed.company_id, writes_allowed.connection_id)
    suffix = uuid.uuid4().hex[:8]
    body = {
        "name": f"billpay-e2e {suffix}",
        "accountType": "Debit",
        "accountNumber": suffix,
        "currency": os.environ.get("BILLPAY_E2E_CURRENCY", "GBP"),
    }
    answer = deployed.call("POST", path, body=body, headers={"Idempotency-Key": f"e2e-{uuid.uuid4()}"})
    assert answer.status in (201, 202), answer
    settled = deployed.wait_settled(answer.body["operationId"])
    assert settled.body["status"] == "succeeded", settled.body
