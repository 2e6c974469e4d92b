"""The client registry: seeded into the local stack, and printed or edited by `make callers`.

Locally the AWS emulator holds `/billpay-local/callers` with one client, `local-app`: the local caller
(BILLPAY_LOCAL_CALLER_ARN, default DEFAULT_CALLER_ARN) and the role of the sample events in `events/`,
every permission, every company. Tests add clients by writing the parameter (`write_registry`).

`python -m local.callers` (= `make callers`) works on the local stack's emulator by default, or on a
deployed stack's parameter with `--parameter /<stack>/callers` (AWS credentials and region from the
environment, as the AWS CLI takes them):

    make callers                                             # print the registry
    make callers CMD="add --client app --principal arn:aws:iam::123456789012:role/app-v2"
    make callers CMD="retire --principal arn:aws:iam::123456789012:role/app-v1"
    make callers CMD="grant --client app --permissions accounts:read,payments:create"
    make callers CMD="companies --client app --companies '*'"
    make callers CMD="put --file registry.json"              # whole document; no principal may move
    make callers PARAM=/billpay-prod/callers CMD=...         # a deployed stack

Every edit is validated before it is written, and refused if it would move a principal from one client
to another or drop one (retire it instead: a retired principal stays listed, allowed nothing, so its
keys keep their scope).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.emulator import STACK_NAME, client
from local.gateway.events import DEFAULT_CALLER_ARN

if TYPE_CHECKING:
    from billpay.domain.clients import Registry

LOCAL_PARAMETER = f"/{STACK_NAME}/callers"
LOCAL_CLIENT_ID = "local-app"
# The role that signs the sample events in events/*.json (sam local invoke -e, tests).
SAMPLE_EVENTS_ROLE = "arn:aws:iam::123456789012:role/billpay-app"
EVERY_PERMISSION = [
    "accounts:read",
    "accounts:create",
    "payments:create",
    "operations:read",
    "bills:read",
    "suppliers:read",
]

# The supervisor does not import the layer (billpay): an assumed role's session is dropped here as the
# functions drop it (billpay.domain.operations.normalise_caller); the functions validate what is seeded.
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/.+$")


def principal_of(caller_arn: str) -> str:
    """The registry principal of a caller ARN: an assumed role's role ARN, anything else as given."""
    match = _ASSUMED_ROLE.match(caller_arn)
    return f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}" if match else caller_arn


def local_registry(caller_arns: Iterable[str] = ()) -> dict[str, Any]:
    """`local-app`: the default local caller, the sample events' role and `caller_arns`; everything."""
    principals = {principal_of(DEFAULT_CALLER_ARN), SAMPLE_EVENTS_ROLE}
    principals.update(principal_of(arn) for arn in caller_arns)
    return {
        "clients": {
            LOCAL_CLIENT_ID: {
                "principals": sorted(principals),
                "permissions": list(EVERY_PERMISSION),
                "companies": ["*"],
            }
        }
    }


def write_registry(endpoint_url: str, document: dict[str, Any], parameter: str = LOCAL_PARAMETER) -> None:
    """Replace the local registry (tests write any document, even a broken one, on purpose)."""
    client("ssm", endpoint_url).put_parameter(
        Name=parameter, Value=json.dumps(document, indent=1, sort_keys=True), Type="String", Overwrite=True
    )


def seed_local_callers(endpoint_url: str, caller_arns: Iterable[str] = ()) -> str:
    """Write the local registry into the emulator; returns the parameter's name."""
    write_registry(endpoint_url, local_registry(caller_arns))
    return LOCAL_PARAMETER


# -- the operator command ---------------------------------------------------------------------------------


def _read(ssm: Any, parameter: str) -> Registry:
    from billpay.domain.clients import EMPTY_REGISTRY, parse_registry  # noqa: PLC0415

    try:
        raw = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return EMPTY_REGISTRY
    return parse_registry(json.loads(raw))


def _edited(before: Registry, args: argparse.Namespace) -> Registry:
    from billpay.domain.clients import (  # noqa: PLC0415
        RegistryInvalid,
        add_principal,
        parse_registry,
        retire_principal,
    )

    if args.command == "add":
        return add_principal(before, args.client, args.principal)
    if args.command == "retire":
        return retire_principal(before, args.principal)
    document = before.to_document()
    if args.command == "put":
        document = json.loads(Path(args.file).read_text())
    else:
        spec = document["clients"].get(args.client)
        if spec is None:
            raise RegistryInvalid(f"no client {args.client!r} (add a principal to create it)")
        if args.command == "grant":
            spec["permissions"] = [p.strip() for p in args.permissions.split(",") if p.strip()]
        elif args.command == "companies":
            spec["companies"] = [c.strip() for c in args.companies.split(",") if c.strip()]
    return parse_registry(document)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make callers", description="Print or edit the client registry.")
    parser.add_argument("--parameter", default="", help=f"SSM parameter (default: local {LOCAL_PARAMETER})")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("show", help="print the registry (the default)")
    add = sub.add_parser("add", help="add an active principal to a client (creating the client)")
    add.add_argument("--client", required=True)
    add.add_argument("--principal", required=True)
    retire = sub.add_parser("retire", help="keep a principal under its client, allowed nothing")
    retire.add_argument("--principal", required=True)
    grant = sub.add_parser("grant", help="set a client's permissions (comma-separated)")
    grant.add_argument("--client", required=True)
    grant.add_argument("--permissions", required=True, help=",".join(EVERY_PERMISSION))
    companies = sub.add_parser("companies", help="set a client's companies ('*' or comma-separated ids)")
    companies.add_argument("--client", required=True)
    companies.add_argument("--companies", required=True)
    put = sub.add_parser("put", help="replace the whole document from a JSON file")
    put.add_argument("--file", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from billpay.adapters.callers_ssm import write_registry_document  # noqa: PLC0415
    from billpay.domain.clients import RegistryInvalid, check_no_principal_moved  # noqa: PLC0415

    args = _parser().parse_args(argv)
    if args.parameter:
        import boto3  # noqa: PLC0415 - a deployed stack: the caller's own AWS credentials

        ssm, parameter = boto3.client("ssm"), args.parameter
    else:
        port = os.environ.get("BILLPAY_EMULATOR_PORT", "4566")
        ssm, parameter = client("ssm", f"http://127.0.0.1:{port}"), LOCAL_PARAMETER
    try:
        before = _read(ssm, parameter)
        if args.command in (None, "show"):
            print(json.dumps(before.to_document(), indent=2))
            return 0
        after = _edited(before, args)
        check_no_principal_moved(before, after)
        write_registry_document(ssm, parameter, after.to_document())
    except (RegistryInvalid, ValueError) as exc:
        print(f"make callers: refused: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(after.to_document(), indent=2))
    print(f"written to {parameter}; functions see it within BILLPAY_CALLERS_MAX_AGE_SECONDS", file=sys.stderr)
    return 0


__all__ = ["LOCAL_PARAMETER", "local_registry", "principal_of", "seed_local_callers", "write_registry"]

if __name__ == "__main__":
    sys.exit(main())
