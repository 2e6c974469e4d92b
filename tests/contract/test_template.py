"""template.yaml is the product as much as the code (docs/deploy.md): these tests read the parsed
template and hold it to its security and operations promises, whatever function is added next.

The template is parsed with the local stack's loader (`local.template`), so both read it the same way.
`make validate` (sam validate --lint, cfn-lint) and `make build` run in CI beside these; they are not run
from pytest.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.template import REPO_ROOT, load_template, logical_id_of, resources_of_type

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
GLOBALS: dict[str, Any] = TEMPLATE.get("Globals", {}).get("Function", {})
FUNCTIONS = resources_of_type(TEMPLATE, "AWS::Serverless::Function")

# API Gateway abandons an integration after 29 s.
API_GATEWAY_TIMEOUT_SECONDS = 29

# The functions that call Codat, and so the only ones that may read its key (least privilege).
CODAT_CALLERS = {
    "ListBankAccountsFunction",
    "ListBillsFunction",
    "ListSuppliersFunction",
    "CreateBankAccountFunction",
    "CreateBillPaymentFunction",
    "RetryWorkerFunction",
}

# Least privilege, per function: every action it may hold (the secret is checked apart). A function not
# listed here fails `test_every_function_has_a_declared_privilege_budget`: decide its budget consciously.
ALLOWED_ACTIONS: dict[str, set[str]] = {
    # Reads Codat only (and, like every API function, the client registry's one SSM parameter).
    "ListBankAccountsFunction": {"ssm:GetParameter"},
    "ListSuppliersFunction": {"ssm:GetParameter"},
    # The bill index (BillIndexTable only): refreshed, then read in pages (Query) or by the ids of a Codat
    # page (BatchGetItem); a re-sync's end drops closed bills (DeleteItem). Never the operations table.
    "ListBillsFunction": {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "ssm:GetParameter",
    },
    # Reads one operation record.
    "GetOperationFunction": {"dynamodb:GetItem", "ssm:GetParameter"},
    # Claim (Put), mark sent / settle (Update), release a refused claim (Delete); GetItem looks up a key's
    # v1-scoped record before the claim (and the failed claim's ALL_OLD reads the item).
    # A retry due soon is handed to the queue (SendMessage); the end of a write is an event (PutEvents).
    "CreateBankAccountFunction": {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "ssm:GetParameter",
        "sqs:SendMessage",
        "events:PutEvents",
    },
    "CreateBillPaymentFunction": {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:Query",  # the bill index: a connection's bills at a re-sync's end (BillIndexTable only)
        "ssm:GetParameter",
        "sqs:SendMessage",
        "events:PutEvents",
    },
    # Re-reads and settles leased operations; consumes the retry queue, hands the next retry back to it,
    # and publishes the end.
    "RetryWorkerFunction": {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "sqs:SendMessage",
        "events:PutEvents",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:DeleteMessageBatch",
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:GetQueueAttributes",
    },
    # Pages the sparse index, takes leases on base items, enqueues, re-publishes what a holder did not.
    "SweeperFunction": {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "sqs:SendMessage",
        "events:PutEvents",
    },
}

# SAM policy templates we accept, with the actions each grants (samtranslator's policy_templates.json).
POLICY_TEMPLATE_ACTIONS: dict[str, set[str]] = {
    "AWSSecretsManagerGetSecretValuePolicy": {"secretsmanager:GetSecretValue"},
    "SQSPollerPolicy": {
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
        "sqs:DeleteMessage",
        "sqs:DeleteMessageBatch",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    },
}
# Not accepted: SQSSendMessagePolicy (grants "sqs:SendMessage*"), the DynamoDB*Policy templates (Scan,
# BatchWrite... on the whole table): state the exact actions in a Statement instead.


# ---------------------------------------------------------------- helpers


def merged_function(props: dict[str, Any]) -> dict[str, Any]:
    """A function's properties with Globals merged in, as SAM merges them (the function's own value wins)."""
    return {**GLOBALS, **props}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(policies: Any) -> Iterator[tuple[set[str], list[Any], dict[str, Any]]]:
    """(actions, resources, statement) for every statement a function's `Policies` grants.

    SAM policy templates are expanded to their actions with the template's parameters as resources; a
    managed policy named as a string is refused outright (its actions are not in the template).
    """
    for policy in as_list(policies or []):
        if isinstance(policy, str):
            raise AssertionError(f"managed policy {policy!r}: state least-privilege statements instead")
        assert isinstance(policy, dict), policy
        if "Statement" in policy:
            for statement in as_list(policy["Statement"]):
                yield (
                    set(as_list(statement.get("Action", []))),
                    as_list(statement.get("Resource", [])),
                    statement,
                )
            continue
        assert len(policy) == 1, f"unexpected policy shape {policy}"
        ((name, params),) = policy.items()
        assert name in POLICY_TEMPLATE_ACTIONS, f"policy template {name} not reviewed: add it deliberately"
        yield set(POLICY_TEMPLATE_ACTIONS[name]), list((params or {}).values()), {"template": name}


def function_actions(props: dict[str, Any]) -> set[str]:
    return {action for actions, _, _ in policy_statements(props.get("Policies")) for action in actions}


def reads_secret(props: dict[str, Any]) -> bool:
    return any(
        "secretsmanager:GetSecretValue" in actions or any(a.startswith("secretsmanager:") for a in actions)
        for actions, _, _ in policy_statements(props.get("Policies"))
    )


def all_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement the template itself writes: functions' Policies, roles, policies."""
    for name, props in FUNCTIONS.items():
        for _, _, statement in policy_statements(props.get("Policies")):
            if "template" not in statement:
                yield name, statement
    for name, resource in RESOURCES.items():
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies") or []:
                for statement in as_list(policy["PolicyDocument"]["Statement"]):
                    yield name, statement
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in as_list(props["PolicyDocument"]["Statement"]):
                yield name, statement


def events(props: dict[str, Any], event_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: event.get("Properties") or {}
        for name, event in (props.get("Events") or {}).items()
        if event.get("Type") == event_type
    }


def alarms() -> dict[str, dict[str, Any]]:
    return resources_of_type(TEMPLATE, "AWS::CloudWatch::Alarm")


def alarm_on(metric: str, namespace: str) -> list[dict[str, Any]]:
    return [a for a in alarms().values() if a.get("MetricName") == metric and a.get("Namespace") == namespace]


def notifies_topic(alarm: dict[str, Any]) -> bool:
    return alarm.get("AlarmActions") == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }


def api_functions() -> dict[str, dict[str, Any]]:
    return {name: props for name, props in FUNCTIONS.items() if events(props, "Api")}


# ---------------------------------------------------------------- API


def test_the_api_authorizes_every_route_with_iam_by_default() -> None:
    apis = resources_of_type(TEMPLATE, "AWS::Serverless::Api")
    assert set(apis) == {"Api"}
    auth = apis["Api"]["Auth"]
    assert auth["DefaultAuthorizer"] == "AWS_IAM"
    # CALLER_CREDENTIALS (SAM's default for AWS_IAM) would make every caller need lambda:InvokeFunction.
    assert auth.get("InvokeRole") == "NONE"


def test_every_route_is_on_our_api_and_none_overrides_iam() -> None:
    routes = 0
    for name, props in FUNCTIONS.items():
        for event_name, event in events(props, "Api").items():
            routes += 1
            # An Api event without RestApiId lands on SAM's implicit API, which has no authorizer.
            assert event.get("RestApiId") == {"Ref": "Api"}, f"{name}.{event_name} is not on Api"
            authorizer = (event.get("Auth") or {}).get("Authorizer", "AWS_IAM")
            assert authorizer == "AWS_IAM", f"{name}.{event_name} overrides the IAM authorizer: {authorizer}"
    assert routes >= 1
    # No other way in: no HTTP API, no function URL, no hand-written API Gateway method.
    for resource in RESOURCES.values():
        assert resource["Type"] not in (
            "AWS::Serverless::HttpApi",
            "AWS::Lambda::Url",
            "AWS::ApiGateway::Method",
            "AWS::ApiGatewayV2::Api",
        )
    for props in FUNCTIONS.values():
        assert "FunctionUrlConfig" not in props


def test_api_routes_are_the_designed_ones() -> None:
    """Every declared route is one of the contract's API routes (the local-only /openapi.json is not one)."""
    designed = {
        ("GET", "/companies/{companyId}/connections/{connectionId}/payables/bankAccounts"),
        ("POST", "/companies/{companyId}/connections/{connectionId}/payables/bankAccounts"),
        ("POST", "/companies/{companyId}/connections/{connectionId}/payables/bills/{billId}/payments"),
        ("GET", "/operations/{operationId}"),
        ("GET", "/companies/{companyId}/connections/{connectionId}/payables/bills"),
        ("GET", "/companies/{companyId}/connections/{connectionId}/payables/suppliers"),
    }
    declared = {
        (str(event["Method"]).upper(), event["Path"])
        for props in FUNCTIONS.values()
        for event in events(props, "Api").values()
    }
    assert declared <= designed
    assert ("GET", "/companies/{companyId}/connections/{connectionId}/payables/bankAccounts") in declared


def test_the_stage_is_throttled_logged_and_traced() -> None:
    api = RESOURCES["Api"]["Properties"]
    assert api["TracingEnabled"] is True
    (settings,) = api["MethodSettings"]
    assert settings["ResourcePath"] == "/*" and settings["HttpMethod"] == "*"
    assert "ThrottlingRateLimit" in settings and "ThrottlingBurstLimit" in settings
    access = api["AccessLogSetting"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    for field in (
        "$context.requestId",
        "$context.status",
        "$context.identity.userArn",
        "$context.resourcePath",
    ):
        assert field in access["Format"]
    assert RESOURCES["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


def test_api_gateways_own_refusals_are_problem_json() -> None:
    responses = RESOURCES["Api"]["Properties"]["GatewayResponses"]
    for kind in (
        "MISSING_AUTHENTICATION_TOKEN",
        "INVALID_SIGNATURE",
        "THROTTLED",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    ):
        response = responses[kind]
        assert response["ResponseParameters"]["Headers"]["Content-Type"] == "'application/problem+json'"
        template = response["ResponseTemplates"]["application/json"]["Fn::Sub"]
        # What API Gateway renders: $context.error.messageString is a quoted JSON string.
        rendered = json.loads(
            template.replace("${ProblemTypeBase}", "https://example.test").replace(
                "$context.error.messageString", '"Missing Authentication Token"'
            )
        )
        assert rendered["type"].startswith("https://example.test/problems/")
        assert rendered["title"] and rendered["detail"]
        if "StatusCode" in response:
            assert rendered["status"] == int(response["StatusCode"])


def test_the_api_gateway_account_role_is_opt_in() -> None:
    parameter = TEMPLATE["Parameters"]["CreateApiGatewayAccountRole"]
    assert parameter["Default"] == "false"
    for name in ("ApiGatewayCloudWatchRole", "ApiGatewayAccount"):
        assert RESOURCES[name]["Condition"] == "CreateAccountRole"
    # The stage (with its access logs) waits for the account setting when the stack creates it.
    assert RESOURCES["Api"]["DependsOn"] == "ApiGatewayAccountReady"
    metadata = RESOURCES["ApiGatewayAccountReady"]["Metadata"]
    assert metadata["AccountSetting"] == {"Fn::If": ["CreateAccountRole", {"Ref": "ApiGatewayAccount"}, ""]}


# ---------------------------------------------------------------- functions


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_is_python313_arm64_traced_with_the_layer(name: str) -> None:
    props = merged_function(FUNCTIONS[name])
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["Tracing"] == "Active"
    assert {"Ref": "BillPayLayer"} in props["Layers"]
    assert props["Handler"] == "handler.lambda_handler"
    code_uri = Path(REPO_ROOT, props["CodeUri"])
    assert code_uri.parent == REPO_ROOT / "functions"
    assert (code_uri / "handler.py").is_file(), f"{name}: sam build needs {code_uri}/handler.py"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_builds_with_the_shared_makefile(name: str) -> None:
    assert RESOURCES[name]["Metadata"] == {"BuildMethod": "makefile", "ContextPath": "functions"}


def test_the_layer_builds_for_arm64_with_its_makefile() -> None:
    layer = RESOURCES["BillPayLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    makefile = (REPO_ROOT / "layers/billpay/Makefile").read_text()
    assert "build-BillPayLayer:" in makefile
    for flag in (
        "--platform manylinux2014_aarch64",
        "--platform manylinux_2_28_aarch64",
        "--python-version 3.13",
        "--implementation cp",
        "--only-binary=:all:",
        "--no-compile",
        "--invalidation-mode unchecked-hash",
    ):
        assert flag in makefile, flag


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_has_its_own_log_group_with_retention(name: str) -> None:
    log_group = FUNCTIONS[name]["LoggingConfig"]["LogGroup"]
    group_id = logical_id_of(log_group)
    assert group_id is not None
    group = RESOURCES[group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    others = [n for n, p in FUNCTIONS.items() if n != name and p["LoggingConfig"]["LogGroup"] == log_group]
    assert not others, f"{name} shares its log group with {others}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_has_an_errors_alarm(name: str) -> None:
    matching = [
        a
        for a in alarm_on("Errors", "AWS/Lambda")
        if a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": name}}]
    ]
    assert len(matching) == 1, f"{name} has no errors alarm"
    assert notifies_topic(matching[0])


@pytest.mark.parametrize("name", sorted(api_functions()))
def test_api_functions_end_well_before_api_gateway_gives_up(name: str) -> None:
    props = merged_function(FUNCTIONS[name])
    assert props["Timeout"] < API_GATEWAY_TIMEOUT_SECONDS - 5
    if name not in CODAT_CALLERS:
        return
    # The synchronous upstream budget must fit inside the function's own deadline.
    budget = float(merged_environment(name)["BILLPAY_SYNC_BUDGET_SECONDS"])
    assert budget + 3 <= props["Timeout"]


def merged_environment(name: str) -> dict[str, Any]:
    own = (FUNCTIONS[name].get("Environment") or {}).get("Variables") or {}
    shared = (GLOBALS.get("Environment") or {}).get("Variables") or {}
    return {**shared, **own}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_is_configured_for_powertools_and_the_cloud(name: str) -> None:
    env = merged_environment(name)
    assert env["POWERTOOLS_SERVICE_NAME"] == "billpay"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "BillPaySync"
    # The cloud reads the key from Secrets Manager; a literal key never sits in the template.
    assert env["CODAT_API_KEY_SECRET_ARN"] == {"Ref": "CodatApiKeySecretArn"}
    assert "CODAT_API_KEY" not in env
    assert env["OPERATIONS_TABLE_NAME"] == {"Ref": "OperationsTable"}
    assert env["RETRY_QUEUE_URL"] == {"Ref": "RetryQueue"}


# ---------------------------------------------------------------- least privilege


def test_no_statement_grants_a_wildcard_action() -> None:
    seen = 0
    for owner, statement in all_statements():
        seen += 1
        assert "NotAction" not in statement, owner
        assert "NotResource" not in statement, owner
        for action in as_list(statement.get("Action", [])):
            assert "*" not in action, f"{owner}: wildcard action {action}"
        for resource in as_list(statement.get("Resource", [])):
            assert resource != "*", f"{owner}: statement on every resource"
    assert seen >= 1
    for granted in POLICY_TEMPLATE_ACTIONS.values():
        assert not any("*" in action for action in granted)


def test_every_function_has_a_declared_privilege_budget() -> None:
    assert set(FUNCTIONS) <= set(ALLOWED_ACTIONS), set(FUNCTIONS) - set(ALLOWED_ACTIONS)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_function_holds_only_its_budgeted_actions(name: str) -> None:
    actions = function_actions(FUNCTIONS[name]) - {"secretsmanager:GetSecretValue"}
    assert actions <= ALLOWED_ACTIONS[name], (
        f"{name} holds more than it needs: {actions - ALLOWED_ACTIONS[name]}"
    )


@pytest.mark.parametrize(
    "name",
    ["CreateBankAccountFunction", "CreateBillPaymentFunction", "RetryWorkerFunction", "SweeperFunction"],
)
def test_the_operation_writers_hold_exactly_their_budget(name: str) -> None:
    # Not just "no more": a missing action (e.g. the GetItem behind a conditional write's ALL_OLD) would
    # only show on real AWS, in the middle of a payment.
    actions = function_actions(FUNCTIONS[name]) - {"secretsmanager:GetSecretValue"}
    assert actions == ALLOWED_ACTIONS[name], f"{name}: missing {ALLOWED_ACTIONS[name] - actions}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_statement_is_scoped_to_our_own_resources(name: str) -> None:
    for actions, resources, statement in policy_statements(FUNCTIONS[name].get("Policies")):
        assert resources, f"{name}: {statement} names no resource"
        for resource in resources:
            text = repr(resource)
            assert any(
                target in text
                for target in (
                    "OperationsTable",
                    "BillIndexTable",
                    "RetryQueue",
                    "EventBus",
                    "CodatApiKeySecretArn",
                    "CallersParameterName",
                )
            ), f"{name}: {sorted(actions)} on {resource}"
            if any(a.startswith("dynamodb:") for a in actions):
                assert "OperationsTable" in text or "BillIndexTable" in text
            if any(a.startswith("sqs:") for a in actions):
                assert "RetryQueue" in text and "DeadLetter" not in text


@pytest.mark.parametrize("name", ["ListBankAccountsFunction", "ListSuppliersFunction"])
def test_the_codat_pass_through_lists_touch_neither_table_nor_queue(name: str) -> None:
    actions = function_actions(FUNCTIONS[name])
    assert not {a for a in actions if a.startswith(("dynamodb:", "sqs:"))}


def test_the_bills_list_touches_only_the_bill_index() -> None:
    for actions, resources, _ in policy_statements(FUNCTIONS["ListBillsFunction"].get("Policies")):
        if any(a.startswith("dynamodb:") for a in actions):
            assert resources == [{"Fn::GetAtt": ["BillIndexTable", "Arn"]}]


def test_only_functions_that_call_codat_may_read_the_secret() -> None:
    readers = {name for name, props in FUNCTIONS.items() if reads_secret(props)}
    assert readers == CODAT_CALLERS & set(FUNCTIONS)
    for name in readers:
        for actions, resources, _ in policy_statements(FUNCTIONS[name].get("Policies")):
            if any(a.startswith("secretsmanager:") for a in actions):
                assert actions == {"secretsmanager:GetSecretValue"}
                assert resources == [{"Ref": "CodatApiKeySecretArn"}]
    # Nothing else in the template may grant it either.
    for owner, statement in all_statements():
        if owner not in FUNCTIONS:
            assert not any(str(a).startswith("secretsmanager:") for a in as_list(statement.get("Action", [])))


def test_the_secret_is_a_parameter_not_a_resource() -> None:
    assert not resources_of_type(TEMPLATE, "AWS::SecretsManager::Secret")
    assert TEMPLATE["Parameters"]["CodatApiKeySecretArn"]["Type"] == "String"
    assert "Default" not in TEMPLATE["Parameters"]["CodatApiKeySecretArn"]


# ---------------------------------------------------------------- data


def test_every_table_is_on_demand_with_ttl_pitr_and_encryption() -> None:
    tables = resources_of_type(TEMPLATE, "AWS::DynamoDB::Table")
    assert tables
    assert not resources_of_type(TEMPLATE, "AWS::Serverless::SimpleTable")
    for name, props in tables.items():
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["TimeToLiveSpecification"]["Enabled"] is True, name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert props["SSESpecification"]["SSEEnabled"] is True, name
        # The operation record is the only guard once Codat's key cache expired: never dropped with the stack.
        assert RESOURCES[name]["DeletionPolicy"] == "Retain"
        assert RESOURCES[name]["UpdateReplacePolicy"] == "Retain"


def test_the_operations_table_keeps_its_contract() -> None:
    props = RESOURCES["OperationsTable"]["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "operationId", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"]["AttributeName"] == "expiresAt"
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "UnfinishedByDue"
    assert index["KeySchema"] == [
        {"AttributeName": "dueBucket", "KeyType": "HASH"},
        {"AttributeName": "dueAt", "KeyType": "RANGE"},
    ]
    types = {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]}
    assert types == {"operationId": "S", "dueBucket": "S", "dueAt": "N"}


def dead_letter_queues() -> set[str]:
    return {
        str(logical_id_of(props["RedrivePolicy"]["deadLetterTargetArn"]))
        for props in resources_of_type(TEMPLATE, "AWS::SQS::Queue").values()
        if "RedrivePolicy" in props
    }


def test_every_queue_is_encrypted_and_every_work_queue_has_a_dlq() -> None:
    queues = resources_of_type(TEMPLATE, "AWS::SQS::Queue")
    dlqs = dead_letter_queues()
    assert dlqs == {"RetryDeadLetterQueue"}
    for name, props in queues.items():
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, name
        if name in dlqs:
            assert "RedrivePolicy" not in props
            assert props["MessageRetentionPeriod"] == 1209600  # 14 days, the maximum
            continue
        redrive = props["RedrivePolicy"]
        assert 1 < redrive["maxReceiveCount"] <= 10
        dlq = RESOURCES[str(logical_id_of(redrive["deadLetterTargetArn"]))]["Properties"]
        # A DLQ must keep a message longer than its source did, or it can expire on arrival.
        assert dlq["MessageRetentionPeriod"] > props["MessageRetentionPeriod"]


def sqs_consumers(queue: str) -> dict[str, dict[str, Any]]:
    return {
        name: event
        for name, props in FUNCTIONS.items()
        for event in events(props, "SQS").values()
        if logical_id_of(event["Queue"]) == queue
    }


def test_queue_visibility_covers_six_times_its_consumer() -> None:
    consumers = sqs_consumers("RetryQueue")
    if not consumers:
        pytest.skip("RetryWorkerFunction not declared yet")
    visibility = RESOURCES["RetryQueue"]["Properties"]["VisibilityTimeout"]
    for name in consumers:
        assert visibility >= 6 * merged_function(FUNCTIONS[name])["Timeout"], name


def test_the_retry_worker_reports_partial_failures_with_bounded_concurrency() -> None:
    consumers = sqs_consumers("RetryQueue")
    if not consumers:
        pytest.skip("RetryWorkerFunction not declared yet")
    assert set(consumers) == {"RetryWorkerFunction"}
    event = consumers["RetryWorkerFunction"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 2 <= event["ScalingConfig"]["MaximumConcurrency"] <= 20
    # Records of a batch run one after another: the batch must fit the function's deadline.
    timeout = merged_function(FUNCTIONS["RetryWorkerFunction"])["Timeout"]
    upstream_attempt = 8 + 3 + 2  # read + connect timeouts (config.py defaults) + DynamoDB writes
    assert event["BatchSize"] * upstream_attempt <= timeout


def test_the_sweeper_runs_every_minute() -> None:
    if "SweeperFunction" not in FUNCTIONS:
        pytest.skip("SweeperFunction not declared yet")
    schedules = events(FUNCTIONS["SweeperFunction"], "Schedule")
    assert [s["Schedule"] for s in schedules.values()] == ["rate(1 minute)"]
    # A sweep ends before the next one starts.
    assert merged_function(FUNCTIONS["SweeperFunction"])["Timeout"] < 60


# ---------------------------------------------------------------- alarms, dashboard, outputs


def test_alarms_watch_the_payment_flow_and_notify_the_topic() -> None:
    (dlq,) = alarm_on("ApproximateNumberOfMessagesVisible", "AWS/SQS")
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["RetryDeadLetterQueue", "QueueName"]}}
    ]
    (api5xx,) = alarm_on("5XXError", "AWS/ApiGateway")
    assert {"Name": "Stage", "Value": "v1"} in api5xx["Dimensions"]
    api_name = RESOURCES["Api"]["Properties"]["Name"]
    assert {"Name": "ApiName", "Value": api_name} in api5xx["Dimensions"]
    (review,) = alarm_on("NeedsReviewOpen", "BillPaySync")
    assert review["Threshold"] == 1 and review["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    (oldest,) = alarm_on("OldestUnfinishedSeconds", "BillPaySync")
    window = float(GLOBALS["Environment"]["Variables"]["BILLPAY_RETRY_WINDOW_SECONDS"])
    # + the longest lease a queue hand-off holds: DelaySeconds' 900 s and the worker's timeout.
    worker_timeout = RESOURCES["RetryWorkerFunction"]["Properties"]["Timeout"]
    assert oldest["Threshold"] == window + 600 + 900 + worker_timeout
    assert oldest["ComparisonOperator"] == "GreaterThanThreshold"
    for alarm in (dlq, api5xx, review, oldest):
        assert notifies_topic(alarm)
    # Powertools Metrics publishes with the service as a dimension.
    for alarm in (review, oldest):
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "billpay"}]


def test_unexpected_errors_are_an_alarm_even_when_answered_as_500() -> None:
    # The resolver turns an exception into a 500 problem, so Lambda's Errors metric never sees it: the
    # UnexpectedError metric counted by billpay.observability is what this alarm watches.
    (unexpected,) = alarm_on("UnexpectedError", "BillPaySync")
    assert unexpected["Dimensions"] == [{"Name": "service", "Value": "billpay"}]
    assert unexpected["Statistic"] == "Sum" and unexpected["Period"] == 300
    assert unexpected["Threshold"] == 1
    assert unexpected["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert unexpected["TreatMissingData"] == "notBreaching"
    assert notifies_topic(unexpected)
    (dashboard,) = resources_of_type(TEMPLATE, "AWS::CloudWatch::Dashboard").values()
    assert "${UnexpectedErrorAlarm.Arn}" in dashboard["DashboardBody"]["Fn::Sub"][0]


def test_the_retry_window_respects_codats_key_cache() -> None:
    window = float(GLOBALS["Environment"]["Variables"]["BILLPAY_RETRY_WINDOW_SECONDS"])
    assert window <= 5400 - 600


def test_a_stalled_sweeper_is_an_alarm() -> None:
    if "SweeperFunction" not in FUNCTIONS:
        pytest.skip("SweeperFunction not declared yet")
    (stalled,) = [
        a
        for a in alarm_on("Invocations", "AWS/Lambda")
        if a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "SweeperFunction"}}]
    ]
    assert stalled["TreatMissingData"] == "breaching"
    assert notifies_topic(stalled)


def test_the_alarm_topic_is_an_optional_parameter() -> None:
    assert TEMPLATE["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert TEMPLATE["Conditions"]["HasAlarmTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]
    }


def test_the_dashboard_shows_the_payment_flow() -> None:
    (dashboard,) = resources_of_type(TEMPLATE, "AWS::CloudWatch::Dashboard").values()
    body, _ = dashboard["DashboardBody"]["Fn::Sub"]
    for metric in (
        "5XXError",
        "NeedsReviewOpen",
        "OldestUnfinishedSeconds",
        "ApproximateAgeOfOldestMessage",
        "Errors",
    ):
        assert metric in body


def test_outputs_name_what_deployed_tests_and_operators_need() -> None:
    outputs = TEMPLATE["Outputs"]
    assert {"ApiUrl", "OperationsTableName", "RetryQueueUrl", "RetryDeadLetterQueueUrl"} <= set(outputs)
    assert outputs["ApiUrl"]["Value"]["Fn::Sub"].endswith("/v1")


# ---------------------------------------------------------------- samconfig


def test_samconfig_has_default_dev_and_prod_with_a_region() -> None:
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    for env in ("default", "dev", "prod"):
        assert config[env]["global"]["parameters"]["region"], env
        assert config[env]["global"]["parameters"]["stack_name"], env
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        # Never a Codat key or secret ARN committed: they are given at deploy time.
        assert "CodatApiKeySecretArn" not in deploy.get("parameter_overrides", "")
    assert config["prod"]["deploy"]["parameters"]["confirm_changeset"] is True
    stacks = {config[env]["global"]["parameters"]["stack_name"] for env in ("default", "dev", "prod")}
    assert len(stacks) == 3
