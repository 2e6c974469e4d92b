"""The local AWS: moto in server mode, with the tables, queues and secrets of `template.yaml`.

Everything is created from the template's own definitions (KeySchema, GSIs, TTL, queue attributes,
RedrivePolicy), so a change to the template is a change to the local stack. The Codat key parameter
(`...SecretArn`) gets a Secrets Manager secret holding the local key, so the cloud's secret path can be
exercised locally too.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from local.template import Resolver, event_buses, parameter_defaults, queues, secrets, tables

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account: the ARNs it hands out carry it
STACK_NAME = "billpay-local"
# Local only: a queue every event on the template's bus also reaches (a rule on the bus, as an app would
# add its own), so `make events` and tests can wait for an event instead of polling.
EVENTS_TAP = "LocalEventsTap"
LOCAL_CODAT_API_KEY = "local-sandbox-key"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}

# Queue properties that are SQS attributes of the same name; the rest (Tags, QueueName, ...) are not.
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "SqsManagedSseEnabled",
)


def fake_aws_env(endpoint_url: str) -> dict[str, str]:
    """The environment that points any AWS SDK at the emulator with throwaway credentials."""
    return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint_url}


def physical_name(logical_id: str) -> str:
    """CloudFormation would name it `<stack>-<LogicalId>-<suffix>`; locally the suffix is not needed."""
    return f"{STACK_NAME}-{logical_id}"


@dataclass
class LocalResources:
    """What the template's resources are called locally: `!Ref` and `!GetAtt ...Arn` values."""

    refs: dict[str, str] = field(default_factory=dict)  # logical id -> table name / queue URL / secret ARN
    arns: dict[str, str] = field(default_factory=dict)  # logical id -> ARN

    def resolver(self, template: dict[str, Any], parameters: dict[str, Any] | None = None) -> Resolver:
        # Parameters take their defaults unless given; the local resources' names override both.
        refs: dict[str, Any] = {**parameter_defaults(template), **(parameters or {}), **self.refs}
        attributes: dict[tuple[str, str], Any] = {(lid, "Arn"): arn for lid, arn in self.arns.items()}
        for logical_id in queues(template):
            if logical_id in self.arns:
                attributes[(logical_id, "QueueName")] = self.arns[logical_id].rsplit(":", 1)[1]
                attributes[(logical_id, "QueueUrl")] = self.refs[logical_id]
        return Resolver(
            refs=refs,
            attributes=attributes,
            conditions=template.get("Conditions") or {},
            region=REGION,
            account_id=ACCOUNT_ID,
            stack_name=STACK_NAME,
        )


def client(service: str, endpoint_url: str) -> Any:
    """A boto3 client for the emulator (boto3 imported here: the gateway imports this module)."""
    import boto3  # noqa: PLC0415

    session = boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=REGION,
    )
    service_name: Any = service  # boto3-stubs overloads on literal names; ours is a plain str
    return session.client(service_name, endpoint_url=endpoint_url)


def _plain(value: Any, what: str) -> str:
    if isinstance(value, dict):
        raise ValueError(f"{what}: intrinsic names are not supported locally ({value!r})")
    return str(value)


def _create_table(ddb: Any, logical_id: str, props: dict[str, Any]) -> tuple[str, str]:
    name = _plain(props["TableName"], logical_id) if props.get("TableName") else physical_name(logical_id)
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput"):
        if props.get(key):
            request[key] = props[key]
    if request["BillingMode"] == "PROVISIONED":
        request.setdefault("ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    stream = props.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    arn: str = ddb.create_table(**request)["TableDescription"]["TableArn"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return name, arn


def _attribute_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def create_resources(
    endpoint_url: str,
    template: dict[str, Any],
    *,
    codat_api_key: str = LOCAL_CODAT_API_KEY,
    caller_arns: Sequence[str] = (),
) -> LocalResources:
    """Create every DynamoDB table, SQS queue and secret of the template in the emulator.

    Returns the local physical names (`.refs`: table name, queue URL, secret ARN — what `!Ref` gives) and
    ARNs (`.arns`). A template parameter named `*SecretArn` without a default (the Codat key's) gets a
    secret of its own holding `codat_api_key`, and `.refs[<parameter>]` is its ARN. The client registry
    is seeded with `local-app` (local/callers.py), which `caller_arns` may call as too.
    """
    from local.callers import seed_local_callers  # noqa: PLC0415 - local.callers imports this module

    found = LocalResources()
    ddb = client("dynamodb", endpoint_url)
    for logical_id, props in tables(template).items():
        name, arn = _create_table(ddb, logical_id, props)
        found.refs[logical_id], found.arns[logical_id] = name, arn

    sqs = client("sqs", endpoint_url)
    declared = queues(template)
    # Every queue first, then the redrive policies: a policy names its DLQ by ARN, which must exist.
    for logical_id, props in declared.items():
        fifo = bool(props.get("FifoQueue"))
        default_name = physical_name(logical_id) + (".fifo" if fifo else "")
        name = _plain(props["QueueName"], logical_id) if props.get("QueueName") else default_name
        attributes = {
            key: _attribute_value(props[key])
            for key in _QUEUE_ATTRIBUTES
            if key in props and not isinstance(props[key], dict)
        }
        url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        queue_arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        found.refs[logical_id], found.arns[logical_id] = url, queue_arn
    resolver = found.resolver(template)
    for logical_id, props in declared.items():
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if props.get(key):
                policy = resolver.resolve(props[key])
                sqs.set_queue_attributes(
                    QueueUrl=found.refs[logical_id], Attributes={key: json.dumps(policy)}
                )

    manager = client("secretsmanager", endpoint_url)
    for logical_id, props in secrets(template).items():
        name = _plain(props["Name"], logical_id) if props.get("Name") else physical_name(logical_id)
        value = props.get("SecretString")
        secret_arn: str = manager.create_secret(
            Name=name, SecretString=_plain(value, logical_id) if value else codat_api_key
        )["ARN"]
        found.refs[logical_id], found.arns[logical_id] = secret_arn, secret_arn
    for parameter, spec in (template.get("Parameters") or {}).items():
        if parameter.endswith("SecretArn") and "Default" not in spec:
            secret_arn = manager.create_secret(Name=f"{STACK_NAME}/{parameter}", SecretString=codat_api_key)[
                "ARN"
            ]
            found.refs[parameter] = secret_arn
    _create_event_buses(endpoint_url, template, found)
    seed_local_callers(endpoint_url, caller_arns)
    return found


def _create_event_buses(endpoint_url: str, template: dict[str, Any], found: LocalResources) -> None:
    """The template's buses, each with a rule that copies every `billpay` event to the local tap queue."""
    buses = event_buses(template)
    if not buses:
        return
    events = client("events", endpoint_url)
    sqs = client("sqs", endpoint_url)
    tap_url: str = sqs.create_queue(QueueName=physical_name(EVENTS_TAP))["QueueUrl"]
    tap_arn: str = sqs.get_queue_attributes(QueueUrl=tap_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    found.refs[EVENTS_TAP], found.arns[EVENTS_TAP] = tap_url, tap_arn
    for logical_id, props in buses.items():
        # `!Sub "${AWS::StackName}-events"` in the cloud; locally the stack's own naming.
        declared = props.get("Name")
        name = declared if isinstance(declared, str) else physical_name(logical_id)
        arn: str = events.create_event_bus(Name=name)["EventBusArn"]
        found.refs[logical_id], found.arns[logical_id] = name, arn
        rule = f"{name}-local-tap"
        events.put_rule(Name=rule, EventBusName=name, EventPattern=json.dumps({"source": ["billpay"]}))
        events.put_targets(Rule=rule, EventBusName=name, Targets=[{"Id": "local-tap", "Arn": tap_arn}])


def reset_emulator(endpoint_url: str) -> None:
    """Wipe every resource and item in the emulator (moto's own reset endpoint)."""
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local emulator
        response.read()


@dataclass
class EmulatorHandle:
    server: ThreadedMotoServer
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The process serving it: this one (moto runs on a thread here)."""
        return os.getpid()

    def close(self) -> None:
        self.server.stop()


def _cache_moto_module_list() -> None:
    """List moto's service packages once instead of on every request.

    moto's server resolves each request's backend under one process-wide lock, and on the way lists its own
    package directory (a listdir and a stat per entry, each releasing the GIL) — for every request. Under
    load (a retry drain: sweeper, workers and pollers at once) the threads convoy on that lock and each
    DynamoDB/SQS request waits for the others' directory scans. The list cannot change while the process
    runs, so it is computed once.
    """
    from moto import backends  # noqa: PLC0415

    if getattr(backends.list_of_moto_modules, "_billpay_cached", False):
        return
    modules = tuple(backends.list_of_moto_modules())

    def cached() -> tuple[str, ...]:
        return modules

    cached._billpay_cached = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = cached


def _atomic_dynamodb_writes() -> None:
    """Make moto's DynamoDB writes atomic, as DynamoDB's are per item.

    moto checks a write's condition and then applies it without a lock, so two threads' conditional writes
    on one item can both pass their check under load (seen here: two concurrent sweepers both taking one
    lease). Every rule of the operation record rests on a conditional write being atomic, so the emulator
    serialises its writes: a local stand-in must not be weaker than the service it stands in for.
    """
    from moto.dynamodb.models import DynamoDBBackend  # noqa: PLC0415

    if getattr(DynamoDBBackend, "_billpay_atomic", False):
        return
    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item"):
        original = getattr(DynamoDBBackend, name)

        def serialised(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, serialised)
    DynamoDBBackend._billpay_atomic = True  # type: ignore[attr-defined]


def start_emulator(host: str = "127.0.0.1", port: int = 0) -> EmulatorHandle:
    """moto in server mode on a background thread; `port=0` picks a free port."""
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - moto is heavy; only the supervisor needs it

    _cache_moto_module_list()
    _atomic_dynamodb_writes()
    # Werkzeug logs every request at INFO: thousands of lines from the poller's receives.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    _, bound_port = server.get_host_and_port()
    return EmulatorHandle(server=server, host=host, port=bound_port)


@dataclass
class EmulatorProcess:
    """moto in a process of its own (`start_emulator_process`): the same address and `close` as
    `EmulatorHandle`, without sharing the caller's interpreter lock."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the child stops when its stdin ends (see `_serve`)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_READY_PREFIX = b"billpay-emulator ready "


def start_emulator_process(host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0) -> EmulatorProcess:
    """moto in server mode in a child process (`python -m local.emulator`); `port=0` picks a free port.

    Locally the supervisor process also runs the fault proxy, the sandbox, the gateway's server and the
    SQS pollers: with moto on a thread there, every DynamoDB and SQS request of the stack waits for that
    one interpreter lock. In its own process moto gets a core of its own. The child ends when its stdin
    closes: when `close()` is called, or when this process dies however it dies.
    """
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "local.emulator", host, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    found: list[int] = []

    def read_ready() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(_READY_PREFIX):
                found.append(int(line[len(_READY_PREFIX) :]))
                return

    reader = threading.Thread(target=read_ready, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        process.kill()
        process.wait()
        raise RuntimeError(f"the emulator process did not start within {timeout:g} s")
    return EmulatorProcess(process=process, host=host, port=found[0])


def _serve(host: str, port: int) -> None:
    handle = start_emulator(host, port)
    sys.stdout.buffer.write(_READY_PREFIX + str(handle.port).encode() + b"\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # until the parent closes it, or dies
    handle.close()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)  # skip finalising moto's module graph
