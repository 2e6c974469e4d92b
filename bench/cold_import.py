"""Cold import of every function's handler beside the bare import of the libraries it pulls in.

For each `functions/<job>/handler.py`, in fresh interpreters laid out as on Lambda (sys.path = the
function's folder + the layer's package folder, settings-valid environment):

- `handler_ms`: `import handler`, median of RUNS;
- `libraries_ms`: importing, in a fresh interpreter, exactly the third-party modules that handler loaded
  (Powertools, httpx, pydantic, boto3 if any...), median of RUNS;
- `overhead_pct`: what our code adds on top (target ≤ 25 %);
- `boto3_imported`: whether loading the handler imported boto3 (the list handler must not).

Plus `registry_first_call`: the client registry's first read in a container (boto3, Powertools'
parameters utility, the SSM provider, parsing), and `secret_first_call`: the one-off cost of the
deferred boto3 path for the Codat key (import boto3 and build a Secrets Manager client; the network round
trip is not included).

A first, discarded run per measurement writes the .pyc files, as `sam build` precompiles the artifacts.
Libraries installed only for development (e.g. click, which httpx's CLI imports when present) load on
both sides alike; on Lambda they are absent from the layer, so both figures there are a little lower.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

NAME = "Cold import: handlers vs the libraries they need"
ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "billpay"
RUNS = int(os.environ.get("BILLPAY_BENCH_IMPORT_RUNS", "9"))

ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "CODAT_API_KEY": "local-sandbox-key",
    "CODAT_BASE_URL": "http://127.0.0.1:4100",
    "OPERATIONS_TABLE_NAME": "billpay-operations",
    "RETRY_QUEUE_URL": "http://127.0.0.1:4566/000000000000/billpay-retry",
    "POWERTOOLS_SERVICE_NAME": "billpay",
    "POWERTOOLS_METRICS_NAMESPACE": "BillPaySync",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "AWS_DEFAULT_REGION": "eu-west-2",
    "AWS_REGION": "eu-west-2",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "PYTHONDONTWRITEBYTECODE": "",
}

# Runs in the child: import the handler, report the time and what got loaded from where.
_HANDLER_PROBE = """
import json, sys, time
before = set(sys.modules)
t0 = time.perf_counter()
import handler
elapsed = time.perf_counter() - t0
loaded = []
for name in sorted(set(sys.modules) - before):
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) or ""
    loaded.append([name, path])
print(json.dumps({"seconds": elapsed, "loaded": loaded}))
"""

_LIBRARIES_PROBE = """
import importlib, json, sys, time
names = json.loads(sys.argv[1])
failed = []
t0 = time.perf_counter()
for name in names:
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name)
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "failed": failed}))
"""

_SECRET_PROBE = """
import json, time
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
boto3.client("secretsmanager", region_name="eu-west-2")
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "client": t2 - t1}))
"""

# The client registry's first read in a container: Powertools' parameters utility (it imports boto3 with
# it), an SSM provider with our bounded client config, and the registry's validation of a one-client
# document; the network round trip is not included (a GetParameter on the same region: ~10-20 ms).
_REGISTRY_PROBE = """
import json, time
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
from aws_lambda_powertools.utilities.parameters import SSMProvider
t2 = time.perf_counter()
from billpay.adapters.aws_sdk import client_config
from billpay.config import load_settings
SSMProvider(boto_config=client_config(load_settings({"CODAT_API_KEY": "k"})))
t3 = time.perf_counter()
from billpay.domain.clients import parse_registry
client = {"principals": ["arn:aws:iam::123456789012:role/app"], "permissions": ["payments:create"],
    "companies": ["*"]}
parse_registry(json.loads(json.dumps({"clients": {"app": client}})))
t4 = time.perf_counter()
print(json.dumps({"boto3": t1 - t0, "parameters": t2 - t1, "provider": t3 - t2, "parse": t4 - t3}))
"""


def _run(code: str, sys_path: list[Path], *args: str) -> dict[str, Any]:
    env = dict(ENV)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in sys_path)
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=sys_path[0] if sys_path else ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
        raise RuntimeError(last)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _third_party(loaded: list[list[str]], ours: list[Path]) -> list[str]:
    """Names of loaded modules that live in site-packages (not the stdlib, not our code)."""
    site = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    names: list[str] = []
    for name, path in loaded:
        if not path:
            continue
        resolved = Path(path).resolve()
        if any(resolved.is_relative_to(p) for p in ours):
            continue
        if any(resolved.is_relative_to(p) for p in site):
            names.append(name)
    # Parents before children, in the order a real import would touch them.
    return sorted(names, key=lambda n: (n.count("."), n))


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def measure_function(function_dir: Path) -> dict[str, Any]:
    sys_path = [function_dir, LAYER]
    loaded = _run(_HANDLER_PROBE, sys_path)["loaded"]  # also writes .pyc files; not counted
    libraries = _third_party(loaded, [function_dir.resolve(), LAYER.resolve()])
    top_level = sorted({name.split(".")[0] for name in libraries})
    lib_args = json.dumps(libraries)
    _run(_LIBRARIES_PROBE, [ROOT], lib_args)
    # Interleaved, so load from anything else on the machine hits both sides alike.
    handler_runs: list[dict[str, Any]] = []
    library_runs: list[dict[str, Any]] = []
    for _ in range(RUNS):
        handler_runs.append(_run(_HANDLER_PROBE, sys_path))
        library_runs.append(_run(_LIBRARIES_PROBE, [ROOT], lib_args))
    handler_ms = _median_ms([r["seconds"] for r in handler_runs])
    libraries_ms = _median_ms([r["seconds"] for r in library_runs])
    loaded_names = {name for name, _ in loaded}
    return {
        "handler_ms": handler_ms,
        "libraries_ms": libraries_ms,
        "overhead_ms": round(handler_ms - libraries_ms, 1),
        "overhead_pct": round((handler_ms - libraries_ms) / libraries_ms * 100, 1) if libraries_ms else None,
        "within_25pct": bool(libraries_ms) and handler_ms <= libraries_ms * 1.25,
        "boto3_imported": "boto3" in loaded_names,
        "libraries": ", ".join(top_level),
        "third_party_modules": len(libraries),
        "unimportable_alone": len(library_runs[0]["failed"]),
        "runs": RUNS,
    }


def run() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for function_dir in sorted(p for p in (ROOT / "functions").iterdir() if (p / "handler.py").is_file()):
        try:
            results[function_dir.name] = measure_function(function_dir)
        except Exception as exc:  # one broken handler must not hide the others' numbers
            results[function_dir.name] = {"error": str(exc)}
    secret = [_run(_SECRET_PROBE, [ROOT]) for _ in range(max(3, RUNS // 2))]
    results["secret_first_call"] = {
        "boto3_import_ms": _median_ms([s["import"] for s in secret]),
        "secretsmanager_client_ms": _median_ms([s["client"] for s in secret]),
        "note": "deferred-boto3 path, once per container; the extension path skips both (a localhost GET)",
    }
    registry = [_run(_REGISTRY_PROBE, [ROOT, LAYER]) for _ in range(max(3, RUNS // 2))]
    results["registry_first_call"] = {
        "boto3_import_ms": _median_ms([r["boto3"] for r in registry]),
        "parameters_utility_import_ms": _median_ms([r["parameters"] for r in registry]),
        "ssm_provider_ms": _median_ms([r["provider"] for r in registry]),
        "registry_parse_ms": _median_ms([r["parse"] for r in registry]),
        "note": (
            "once per container, on the first request of every API function (the registry is read before "
            "anything else); the list handler imports no boto3 at load and pays this on its first call"
        ),
    }
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
