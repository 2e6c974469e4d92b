"""`python -m local.openapi` (= `make openapi`): write the API's OpenAPI document to docs/openapi.json.

The document is what the local gateway serves at `GET /openapi.json`, built the same way: one worker
process per API function of template.yaml, started with that function's own environment and sys.path,
asks its resolver for its document, and the gateway's `merge_openapi` unites them. No emulator, sandbox
or HTTP server is started: the handlers build no client at import, so placeholder resource names do.

    python -m local.openapi            # (re)write docs/openapi.json
    python -m local.openapi --check    # exit 1 if docs/openapi.json differs from what the handlers serve
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from local.emulator import ACCOUNT_ID, REGION, STACK_NAME, LocalResources, physical_name
from local.gateway.events import DEFAULT_CALLER_ARN
from local.gateway.runtime import api_routes, build_pools
from local.gateway.server import Gateway
from local.template import (
    DEFAULT_TEMPLATE,
    REPO_ROOT,
    event_buses,
    functions,
    load_template,
    queues,
    secrets,
    tables,
)

DOCUMENT_PATH = REPO_ROOT / "docs" / "openapi.json"
# `make run`'s API address: the committed document's server, so it can be tried as is.
DOCUMENT_SERVER = "http://127.0.0.1:3000"
# Never contacted: nothing is invoked, only each resolver's document is asked for.
_UNUSED_ENDPOINT = "http://127.0.0.1:9"


def _placeholder_resources(template: dict[str, Any]) -> LocalResources:
    """Names shaped like the emulator's, for environments that are resolved but never used."""
    found = LocalResources()
    for logical_id in tables(template):
        name = physical_name(logical_id)
        found.refs[logical_id] = name
        found.arns[logical_id] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
    for logical_id in queues(template):
        name = physical_name(logical_id)
        found.refs[logical_id] = f"{_UNUSED_ENDPOINT}/{ACCOUNT_ID}/{name}"
        found.arns[logical_id] = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
    for logical_id in secrets(template):
        arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{physical_name(logical_id)}"
        found.refs[logical_id] = found.arns[logical_id] = arn
    for logical_id in event_buses(template):
        name = physical_name(logical_id)
        found.refs[logical_id] = name
        found.arns[logical_id] = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{name}"
    for parameter, spec in (template.get("Parameters") or {}).items():
        if parameter.endswith("SecretArn") and "Default" not in spec:
            found.refs[parameter] = (
                f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{STACK_NAME}/{parameter}"
            )
    return found


def build_document(template_path: Path = DEFAULT_TEMPLATE, base_url: str = DOCUMENT_SERVER) -> dict[str, Any]:
    """The merged OpenAPI document of every API function, as the gateway would serve it at `base_url`."""
    template = load_template(template_path)
    specs = [spec for spec in functions(template, base_dir=template_path.parent) if spec.api_routes]
    # Only what a process needs to start: the document must not depend on the caller's BILLPAY_* settings.
    supervisor_env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    pools = build_pools(
        template,
        specs,
        _placeholder_resources(template),
        endpoint_url=_UNUSED_ENDPOINT,
        codat_base_url=None,
        concurrency=1,
        supervisor_env=supervisor_env,
    )
    errors: list[str] = []
    gateway = Gateway(
        pools=pools,
        routes=api_routes(specs),
        stage="v1",
        caller_arn=DEFAULT_CALLER_ARN,
        log=errors.append,
        access_log=False,
    )
    try:
        gateway.build_openapi(base_url)
    finally:
        for pool in pools.values():
            pool.close()
    if gateway.openapi is None:
        raise RuntimeError("the OpenAPI document could not be built:\n" + "\n".join(errors))
    return gateway.openapi


def render(document: dict[str, Any]) -> str:
    """The committed form: stable, readable, diff-friendly."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=DOCUMENT_PATH)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render(build_document())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    operations = sum(len(item) for item in json.loads(text)["paths"].values())
    print(f"wrote {args.output} ({operations} operations)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
