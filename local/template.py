"""Read `template.yaml` once, the way CloudFormation does, so the local stack never duplicates it.

`load_template` turns the short-form intrinsic tags (`!Ref X`, `!GetAtt X.Arn`, `!Sub "..."`, ...) into their
long form (`{"Ref": "X"}`, `{"Fn::GetAtt": ["X", "Arn"]}`, ...). The helpers below list what the local
stack needs to run: functions (with Globals merged in), their events, tables and queues.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"

# Short tag -> long-form key. `!Ref` and `!Condition` are not `Fn::` functions.
_TAGS: dict[str, str] = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "And",
            "Base64",
            "Cidr",
            "Equals",
            "FindInMap",
            "GetAtt",
            "GetAZs",
            "If",
            "ImportValue",
            "Join",
            "Not",
            "Or",
            "Select",
            "Split",
            "Sub",
            "Transform",
            "Length",
            "ToJsonString",
        )
    },
}


class _TemplateLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's short-form tags; a loader of its own so SafeLoader stays untouched."""


def _construct(key: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if key == "Fn::GetAtt" and isinstance(value, str):
                # `!GetAtt Res.Attr.Sub` -> ["Res", "Attr.Sub"]: only the first dot separates.
                resource, _, attribute = value.partition(".")
                value = [resource, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            assert isinstance(node, yaml.MappingNode)
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag, _key in _TAGS.items():
    _TemplateLoader.add_constructor(f"!{_tag}", _construct(_key))


def load_template(path: str | Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """Parse a SAM/CloudFormation YAML template into plain dicts with long-form intrinsics."""
    with Path(path).open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=_TemplateLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(loaded, dict) or "Resources" not in loaded:
        raise ValueError(f"{path}: not a CloudFormation template (no Resources)")
    return loaded


@dataclass(frozen=True)
class ApiRoute:
    """An `Api` event of a function: the route API Gateway would serve."""

    event_name: str
    path: str  # as declared, with `{param}` placeholders (the event's `resource`)
    method: str  # upper case; `ANY` matches every method


@dataclass(frozen=True)
class SqsSource:
    """An `SQS` event: the event source mapping's settings."""

    event_name: str
    queue: Any  # usually {"Fn::GetAtt": [QueueLogicalId, "Arn"]}
    batch_size: int
    report_batch_item_failures: bool
    maximum_concurrency: int | None
    maximum_batching_window_seconds: int

    @property
    def queue_logical_id(self) -> str | None:
        return logical_id_of(self.queue)


@dataclass(frozen=True)
class Schedule:
    """A `Schedule` (or `ScheduleV2`) event."""

    event_name: str
    expression: str
    enabled: bool


@dataclass(frozen=True)
class FunctionSpec:
    """One `AWS::Serverless::Function`, with the template's Globals merged in."""

    logical_id: str
    code_uri: str
    handler: str  # "module.attribute"
    timeout: int
    memory_size: int
    environment: dict[str, Any]  # Globals' variables overlaid with the function's own (unresolved)
    api_routes: list[ApiRoute] = field(default_factory=list)
    sqs_sources: list[SqsSource] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    layers: list[Any] = field(default_factory=list)  # as declared, e.g. [{"Ref": "BillPayLayer"}]
    base_dir: Path = REPO_ROOT  # the template's directory: SAM resolves CodeUri against it

    @property
    def code_dir(self) -> Path:
        return (self.base_dir / self.code_uri).resolve()


def logical_id_of(value: Any) -> str | None:
    """The resource a `Ref`/`GetAtt` points at, or None for anything else."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        get_att = value.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att and isinstance(get_att[0], str):
            return get_att[0]
    return None


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> Properties of every resource of one type, in template order."""
    return {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == resource_type
    }


def tables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = resources_of_type(template, "AWS::DynamoDB::Table")
    # SAM's SimpleTable is a table with one string key named `id` unless PrimaryKey says otherwise.
    for logical_id, props in resources_of_type(template, "AWS::Serverless::SimpleTable").items():
        key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
        key_type = {"String": "S", "Number": "N", "Binary": "B"}[key["Type"]]
        found[logical_id] = {
            "TableName": props.get("TableName"),
            "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": key_type}],
            "BillingMode": "PAY_PER_REQUEST",
        }
    return found


def queues(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, "AWS::SQS::Queue")


def secrets(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, "AWS::SecretsManager::Secret")


def event_buses(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, "AWS::Events::EventBus")


def _function_globals(template: dict[str, Any]) -> dict[str, Any]:
    globals_ = template.get("Globals") or {}
    function_globals = globals_.get("Function") or {}
    assert isinstance(function_globals, dict)
    return function_globals


def _variables(props: dict[str, Any]) -> dict[str, Any]:
    environment = props.get("Environment") or {}
    variables = environment.get("Variables") or {}
    assert isinstance(variables, dict)
    return dict(variables)


def functions(template: dict[str, Any], base_dir: Path = REPO_ROOT) -> list[FunctionSpec]:
    """Every serverless function, Globals merged the way SAM merges them (function wins, maps overlay).

    `base_dir` is the template's directory (CodeUri is relative to it).
    """
    defaults = _function_globals(template)
    specs: list[FunctionSpec] = []
    for logical_id, props in resources_of_type(template, "AWS::Serverless::Function").items():
        merged = {**defaults, **props}
        environment = {**_variables(defaults), **_variables(props)}
        routes: list[ApiRoute] = []
        sqs: list[SqsSource] = []
        schedules: list[Schedule] = []
        for event_name, event in (props.get("Events") or {}).items():
            event_type = event.get("Type")
            event_props = event.get("Properties") or {}
            if event_type == "Api":
                routes.append(ApiRoute(event_name, event_props["Path"], str(event_props["Method"]).upper()))
            elif event_type == "SQS":
                scaling = event_props.get("ScalingConfig") or {}
                sqs.append(
                    SqsSource(
                        event_name=event_name,
                        queue=event_props["Queue"],
                        batch_size=int(event_props.get("BatchSize", 10)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (event_props.get("FunctionResponseTypes") or []),
                        maximum_concurrency=(
                            int(scaling["MaximumConcurrency"]) if "MaximumConcurrency" in scaling else None
                        ),
                        maximum_batching_window_seconds=int(
                            event_props.get("MaximumBatchingWindowInSeconds", 0)
                        ),
                    )
                )
            elif event_type in ("Schedule", "ScheduleV2"):
                enabled = event_props.get("Enabled", event_props.get("State", "ENABLED") != "DISABLED")
                schedules.append(
                    Schedule(
                        event_name,
                        str(event_props.get("Schedule") or event_props.get("ScheduleExpression")),
                        bool(enabled),
                    )
                )
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                code_uri=str(merged.get("CodeUri", ".")),
                handler=str(merged.get("Handler", "handler.lambda_handler")),
                timeout=int(merged.get("Timeout", 3)),
                memory_size=int(merged.get("MemorySize", 128)),
                environment=environment,
                api_routes=routes,
                sqs_sources=sqs,
                schedules=schedules,
                # SAM appends a function's own layers to the global ones.
                layers=[*(defaults.get("Layers") or []), *(props.get("Layers") or [])],
                base_dir=base_dir,
            )
        )
    return specs


def layer_dirs(template: dict[str, Any], spec: FunctionSpec) -> list[Path]:
    """Content directories of a function's layers that the template itself builds (its /opt/python).

    A layer with `BuildMethod: makefile` is built from its ContentUri into `python/`; locally the
    ContentUri is importable as it is (it holds the package folder), so it goes on sys.path unchanged.
    """
    own = resources_of_type(template, "AWS::Serverless::LayerVersion")
    found: list[Path] = []
    for layer in spec.layers:
        logical_id = logical_id_of(layer)
        if logical_id in own and isinstance(own[logical_id].get("ContentUri"), str):
            found.append((spec.base_dir / own[logical_id]["ContentUri"]).resolve())
    return found


def parameter_defaults(template: dict[str, Any]) -> dict[str, Any]:
    return {
        name: spec["Default"]
        for name, spec in (template.get("Parameters") or {}).items()
        if isinstance(spec, dict) and "Default" in spec
    }


class UnresolvableError(ValueError):
    """An intrinsic the local stack cannot evaluate (e.g. a Ref to something it did not create)."""


@dataclass
class Resolver:
    """Evaluates the intrinsics a function's Environment may hold, against the local physical resources.

    `refs` maps a logical id or parameter name to what `!Ref` gives (table name, queue URL, parameter value);
    `attributes` maps (logical id, attribute) to what `!GetAtt` gives (e.g. ("RetryQueue", "Arn")).
    """

    refs: dict[str, Any]
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)  # the template's Conditions section
    region: str = "us-east-1"
    account_id: str = "123456789012"
    stack_name: str = "billpay-local"

    def _pseudo(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.refs:
            return self.refs[name]
        raise UnresolvableError(f"!Ref {name}: not available locally")

    def _condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise UnresolvableError(f"condition {name} not in the template")
        return bool(self.resolve(self.conditions[name]))

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in (argument[1] or {}).items()}
        else:
            text, variables = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # `${!Literal}` is an escaped `${Literal}`
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, _, attribute = name.partition(".")
                return str(self.resolve({"Fn::GetAtt": [resource, attribute]}))
            return str(self._pseudo(name))

        return re.sub(r"\$\{([^}]+)\}", replace, str(text))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(inner) for key, inner in value.items()}
        ((key, argument),) = value.items()
        if key == "Ref":
            return self._pseudo(str(argument))
        if key == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
            try:
                return self.attributes[(resource, attribute)]
            except KeyError:
                raise UnresolvableError(f"!GetAtt {resource}.{attribute}: not available locally") from None
        if key == "Fn::Sub":
            return self._sub(argument)
        if key == "Fn::Join":
            separator, items = argument
            return str(separator).join(str(item) for item in self.resolve(items))
        if key == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if key == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(str(separator))
        if key == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self._condition(str(name)) else when_false)
        if key == "Fn::Equals":
            left, right = self.resolve(argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(argument[0])
        if key == "Fn::And":
            return all(self.resolve(item) for item in argument)
        if key == "Fn::Or":
            return any(self.resolve(item) for item in argument)
        if key == "Condition":
            return self._condition(str(argument))
        if key.startswith("Fn::"):
            raise UnresolvableError(f"{key} is not supported by the local stack")
        return {key: self.resolve(argument)}
