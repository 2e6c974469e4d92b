"""A function's environment as Lambda would give it, resolved against the local stack.

The template's Environment (Globals merged with the function's own) is evaluated with the local physical
names; then three local substitutions: the Codat key itself instead of the secret's ARN (unless
BILLPAY_LOCAL_USE_SECRET=1, which keeps the ARN and exercises the Secrets Manager path against the
emulator), the sandbox's URL as CODAT_BASE_URL, and the emulator as every AWS endpoint. Finally any
BILLPAY_*/CODAT_*/POWERTOOLS_* variable set for the supervisor wins, so `BILLPAY_RETRY_WINDOW_SECONDS=20
make run` compresses time in every function.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from local.emulator import ACCOUNT_ID, FAKE_CREDENTIALS, LOCAL_CODAT_API_KEY, REGION, LocalResources
from local.template import FunctionSpec

OVERRIDE_PREFIXES = ("BILLPAY_", "CODAT_", "POWERTOOLS_")
# Supervisor-only settings that mean nothing to a function.
_SUPERVISOR_ONLY = {
    "BILLPAY_API_PORT",
    "BILLPAY_SANDBOX_PORT",
    "BILLPAY_EMULATOR_PORT",
    "BILLPAY_LOCAL_CONCURRENCY",
    "BILLPAY_LOCAL_CALLER_ARN",
    "BILLPAY_LOCAL_READY_FILE",
    "BILLPAY_TEMPLATE",
}
KEY_VARIABLE = "CODAT_API_KEY"
SECRET_VARIABLE = "CODAT_API_KEY_SECRET_ARN"  # noqa: S105 - a variable name, not a secret


def function_name(spec: FunctionSpec) -> str:
    return f"billpay-local-{spec.logical_id}"


def function_arn(spec: FunctionSpec) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name(spec)}"


def function_environment(
    template: dict[str, Any],
    spec: FunctionSpec,
    resources: LocalResources,
    *,
    endpoint_url: str,
    codat_base_url: str | None,
    supervisor_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The complete os.environ a worker of `spec` starts with."""
    supervisor = dict(os.environ if supervisor_env is None else supervisor_env)
    resolver = resources.resolver(template)
    variables: dict[str, str] = {}
    for name, value in spec.environment.items():
        resolved = resolver.resolve(value)
        if resolved is not None:  # `!Ref AWS::NoValue` removes the variable
            variables[name] = str(resolved).lower() if isinstance(resolved, bool) else str(resolved)

    use_secret = supervisor.get("BILLPAY_LOCAL_USE_SECRET") == "1"
    if SECRET_VARIABLE in variables and not use_secret:
        del variables[SECRET_VARIABLE]
        variables[KEY_VARIABLE] = LOCAL_CODAT_API_KEY
    if codat_base_url and "CODAT_BASE_URL" in variables:
        variables["CODAT_BASE_URL"] = codat_base_url

    for name, value in supervisor.items():
        if name.startswith(OVERRIDE_PREFIXES) and name not in _SUPERVISOR_ONLY:
            variables[name] = value
    # Settings demand exactly one of the two key variables; an explicit choice by the user wins.
    if KEY_VARIABLE in supervisor and not use_secret:
        variables.pop(SECRET_VARIABLE, None)
    elif SECRET_VARIABLE in supervisor or use_secret:
        variables.pop(KEY_VARIABLE, None)

    runtime = {
        # What the Lambda runtime itself sets; Powertools reads several of these.
        "AWS_LAMBDA_FUNCTION_NAME": function_name(spec),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name(spec)}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "TZ": ":UTC",
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint_url,
    }
    base = {name: supervisor[name] for name in ("PATH", "LANG", "LC_ALL", "HOME") if name in supervisor}
    return {**base, **runtime, **variables}
