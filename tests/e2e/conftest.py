"""Fixtures for tests against a deployed stack (`make deploy`), so a user can check their own deployment.

Set `BILLPAY_E2E_STACK` to the CloudFormation stack name (AWS credentials and region from the usual
boto3 chain: AWS_PROFILE, AWS_REGION, ...). Requests are SigV4-signed for `execute-api` by botocore, as
any IAM caller of the API must.

Read-only by default. Tests that record anything in an accounting ledger also need
`BILLPAY_E2E_ALLOW_WRITES=1` and the ids of a **Codat sandbox** company: a user's real ledger is never
written by a test.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

STACK_VAR = "BILLPAY_E2E_STACK"
WRITES_VAR = "BILLPAY_E2E_ALLOW_WRITES"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: Any  # parsed JSON, or the raw text when the body is not JSON

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", "")).split(";")[0].strip()


@dataclass
class DeployedApi:
    """The stack's API, called with or without a SigV4 signature."""

    stack: str
    region: str
    url: str  # ApiUrl output, e.g. https://abc.execute-api.eu-west-2.amazonaws.com/v1
    outputs: dict[str, str]
    client: httpx.Client
    sign: Callable[[str, str, dict[str, str], bytes], dict[str, str]]

    def call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
    ) -> Answer:
        url = self.url + path + (f"?{urlencode(query)}" if query else "")
        data = b"" if body is None else json.dumps(body).encode()
        request_headers = {"accept": "application/json, application/problem+json", **(headers or {})}
        if body is not None:
            request_headers["content-type"] = "application/json"
        if signed:
            request_headers = self.sign(method, url, request_headers, data)
        response = self.client.request(method, url, headers=request_headers, content=data or None)
        try:
            parsed: Any = response.json()
        except ValueError:
            parsed = response.text
        return Answer(response.status_code, response.headers, parsed)

    def wait_settled(self, operation_id: str, *, timeout: float = 180.0) -> Answer:
        """Poll GET /operations/{id} until the operation leaves `pending`, against a deadline."""
        deadline = time.monotonic() + timeout
        delay = 1.0
        while True:
            answer = self.call("GET", f"/operations/{operation_id}")
            if answer.status != 200 or answer.body.get("status") != "pending" or time.monotonic() > deadline:
                return answer
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _signer(region: str) -> Callable[[str, str, dict[str, str], bytes], dict[str, str]]:
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        pytest.fail(
            f"{STACK_VAR} is set but no AWS credentials were found (AWS_PROFILE, AWS_ACCESS_KEY_ID...)"
        )
    frozen = credentials.get_frozen_credentials()

    def sign(method: str, url: str, headers: dict[str, str], data: bytes) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(frozen, "execute-api", region).add_auth(request)
        return dict(request.headers.items())

    return sign


@pytest.fixture(scope="session")
def deployed() -> Iterator[DeployedApi]:
    stack = os.environ.get(STACK_VAR, "").strip()
    if not stack:
        pytest.skip(
            f"{STACK_VAR} is not set: these tests run against a deployed stack "
            f"(e.g. {STACK_VAR}=bill-pay-sync-dev after `make deploy ENV=dev`); this machine has no AWS"
        )
    session = boto3.Session()
    region = session.region_name
    if not region:
        pytest.fail(f"{STACK_VAR} is set but no AWS region is configured (AWS_REGION or a profile's region)")
    cloudformation = session.client("cloudformation")
    (description,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    with httpx.Client(timeout=httpx.Timeout(35.0)) as client:
        yield DeployedApi(
            stack=stack,
            region=region,
            url=outputs["ApiUrl"].rstrip("/"),
            outputs=outputs,
            client=client,
            sign=_signer(region),
        )


@dataclass(frozen=True)
class SandboxCompany:
    """A Codat sandbox company and connection the tests may read (and, when allowed, write to)."""

    company_id: str
    connection_id: str


@pytest.fixture(scope="session")
def sandbox_company(deployed: DeployedApi) -> SandboxCompany:
    company = os.environ.get("BILLPAY_E2E_COMPANY_ID", "").strip()
    connection = os.environ.get("BILLPAY_E2E_CONNECTION_ID", "").strip()
    if not (company and connection):
        pytest.skip(
            "BILLPAY_E2E_COMPANY_ID and BILLPAY_E2E_CONNECTION_ID are not set: the id of a Codat sandbox "
            "company (and its accounting connection) the deployed stack's key can read"
        )
    return SandboxCompany(company, connection)


@pytest.fixture(scope="session")
def writes_allowed(sandbox_company: SandboxCompany) -> SandboxCompany:
    if os.environ.get(WRITES_VAR) != "1":
        pytest.skip(
            f"{WRITES_VAR}=1 not set: write tests record payments in the company's ledger; run them only "
            "against a Codat sandbox company, never a real customer's"
        )
    return sandbox_company
