"""Peak memory per handler over many invocations, and whether it grows.

Starts the local stack (free ports, the sandbox's `large` seed) for its sandbox and AWS emulator, then for
each function runs a process of its own with that function's template environment and Lambda's sys.path
(its code directory, then the layer) — as one warm execution environment — and invokes its unchanged
`lambda_handler` with its sample event from events/ (made unique per invocation where it must be: a new
Idempotency-Key, another bulk bill) BILLPAY_BENCH_MEMORY_INVOCATIONS times (500).

Per handler, after a warm-up (10 % more invocations): one pass of N untraced invocations for the process's
RSS (after the first invocation, after the warm-up, at the end, and the peak VmHWM), then a second pass of
N under tracemalloc for the Python heap — its growth, its peak, and the three places it grew most.
`steady` is true when neither RSS nor the heap grew by more than 1 MB over its N invocations: a leak of
2 KB per invocation would show as ~1 MB over 500. (A heap that grows by a few hundred KB and then stops is
the container's caches filling — the lookup cache, botocore's loaders — not a leak: compare two N.)
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

NAME = "Memory per handler over many invocations (one warm environment each, local sandbox + emulator)"

INVOCATIONS = int(os.environ.get("BILLPAY_BENCH_MEMORY_INVOCATIONS", "500"))
JOBS = (
    "list_bank_accounts",
    "create_bank_account",
    "create_bill_payment",
    "get_operation",
    "retry_worker",
    "sweeper",
)
STEADY_LIMIT_BYTES = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent


def run() -> dict[str, Any]:
    from local.drill import running_stack  # noqa: PLC0415 - the child process must not import it
    from local.emulator import LocalResources  # noqa: PLC0415
    from local.gateway.environment import function_environment  # noqa: PLC0415
    from local.template import functions, layer_dirs, load_template  # noqa: PLC0415

    template = load_template()
    specs = {spec.code_dir.name: spec for spec in functions(template)}
    results: dict[str, Any] = {"invocations": INVOCATIONS, "handlers": {}}
    with running_stack({"BILLPAY_SWEEP_INTERVAL_SECONDS": "3600"}) as ready:
        resources = LocalResources(refs=dict(ready["resources"]), arns=dict(ready["arns"]))
        for job in JOBS:
            spec = specs[job]
            env = function_environment(
                template,
                spec,
                resources,
                endpoint_url=ready["emulator_url"],
                codat_base_url=ready["sandbox_url"],
                supervisor_env={
                    **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
                    "POWERTOOLS_LOG_LEVEL": "WARNING",
                    "POWERTOOLS_METRICS_DISABLED": "true",
                },
            )
            launch = {
                "job": job,
                "codeDir": str(spec.code_dir),
                "layerDirs": [str(p) for p in layer_dirs(template, spec)],
                "handler": spec.handler,
                "functionName": f"billpay-bench-{spec.logical_id}",
                "memoryMb": spec.memory_size,
                "timeout": spec.timeout,
                "invocations": INVOCATIONS,
                "repo": str(REPO),
            }
            out = Path(tempfile.mkdtemp(prefix="billpay-memory-")) / f"{job}.json"
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "bench.memory", json.dumps(launch), str(out)],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
                timeout=600,
            )
            figures = json.loads(out.read_text())
            figures["wallSeconds"] = round(time.perf_counter() - started, 1)
            results["handlers"][job] = figures
            print(
                f"  {job}: peak RSS {figures['peakRssMb']} MB, RSS growth {figures['rssGrowthKb']} KB, "
                f"heap growth {figures['heapGrowthKb']} KB over {figures['measuredInvocations']} "
                f"invocations ({figures['statuses']})",
                flush=True,
            )
    handlers = results["handlers"].values()
    results["allSteady"] = all(h["steady"] for h in handlers)
    results["maxPeakRssMb"] = max(h["peakRssMb"] for h in handlers)
    return results


# ----------------------------------------------------------------------------------- the child process


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _event(job: str, base: dict[str, Any], index: int, run_id: str) -> dict[str, Any]:
    """The sample event, made unique where a repeat would only replay (or exhaust a bill)."""
    event = copy.deepcopy(base)
    if job in ("create_bill_payment", "create_bank_account"):
        key = f"memory-{run_id}-{index}"
        event["headers"]["Idempotency-Key"] = key
        event["multiValueHeaders"]["Idempotency-Key"] = [key]
    if job == "create_bill_payment":
        from local.sandbox.seed import COMPANY_GBP_ID, bulk_bill_id  # noqa: PLC0415

        # Fifty bills in turn: the container's lookup cache keeps the open-bills listing it has paged
        # through (bounded by the connection's open bills), so new bills at every call would measure that
        # cache filling rather than the steady state. Fifty is reached well inside the warm-up.
        bill = bulk_bill_id(COMPANY_GBP_ID, index % 50 + 1)
        old = event["pathParameters"]["billId"]
        event["pathParameters"]["billId"] = bill
        event["path"] = event["path"].replace(f"/bills/{old}/", f"/bills/{bill}/")
        event["requestContext"]["path"] = event["requestContext"]["path"].replace(
            f"/bills/{old}/", f"/bills/{bill}/"
        )
    if job == "list_bank_accounts":
        from local.sandbox.seed import COMPANY_GBP_ID, CONNECTION_GBP_ID  # noqa: PLC0415

        params = event["pathParameters"]
        for name, value in (("companyId", COMPANY_GBP_ID), ("connectionId", CONNECTION_GBP_ID)):
            event["path"] = event["path"].replace(params[name], value)
            event["requestContext"]["path"] = event["requestContext"]["path"].replace(params[name], value)
            params[name] = value
    return event


def _child(launch: dict[str, Any], out: Path) -> None:
    import importlib  # noqa: PLC0415

    job = launch["job"]
    sys.path[:0] = [launch["codeDir"], *launch["layerDirs"]]
    from local.gateway.worker import LambdaContext  # noqa: PLC0415

    module_name, function_name = launch["handler"].rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), function_name)
    base = json.loads((Path(launch["repo"]) / "events" / f"{job}.json").read_text())
    spec = {
        "functionName": launch["functionName"],
        "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{launch['functionName']}",
        "memoryMb": launch["memoryMb"],
    }
    run_id = uuid.uuid4().hex[:8]
    total = int(launch["invocations"])
    warmup = max(1, total // 10)
    statuses: dict[str, int] = {}
    durations: list[float] = []
    counter = iter(range(10**9))

    def invoke() -> None:
        index = next(counter)
        event = _event(job, base, index, run_id)
        deadline_ms = int(time.time() * 1000) + int(launch["timeout"]) * 1000
        started = time.perf_counter()
        result = handler(event, LambdaContext(spec, str(uuid.uuid4()), deadline_ms))
        durations.append(time.perf_counter() - started)
        status = str(result.get("statusCode", "ok")) if isinstance(result, dict) else "ok"
        if isinstance(result, dict) and "batchItemFailures" in result:
            status = f"{len(result['batchItemFailures'])} failures"
        statuses[status] = statuses.get(status, 0) + 1

    invoke()
    rss_first = _status_kb("VmRSS")
    for _ in range(warmup - 1):
        invoke()
    # Pass 1, untraced: the process's RSS (tracemalloc's own bookkeeping would grow it).
    rss_warm = _status_kb("VmRSS")
    for _ in range(total):
        invoke()
    rss_end = _status_kb("VmRSS")
    peak_rss = _status_kb("VmHWM")
    # Pass 2, traced: the Python heap, and where it grew.
    tracemalloc.start(10)
    heap_start = tracemalloc.get_traced_memory()[0]
    snapshot_start = tracemalloc.take_snapshot()
    for _ in range(total):
        invoke()
    heap_end, heap_peak = tracemalloc.get_traced_memory()
    growth = tracemalloc.take_snapshot().compare_to(snapshot_start, "traceback")
    top_growth = [
        {"kb": round(stat.size_diff / 1024, 1), "count": stat.count_diff, "at": stat.traceback.format()[-6:]}
        for stat in growth[:3]
        if stat.size_diff > 0
    ]
    tracemalloc.stop()
    rss_growth = (rss_end - rss_warm) * 1024
    heap_growth = heap_end - heap_start
    measured = sorted(durations[warmup : warmup + total])  # the untraced pass: tracemalloc slows calls
    out.write_text(
        json.dumps(
            {
                "warmupInvocations": warmup,
                "measuredInvocations": total,
                "statuses": statuses,
                "rssAfterFirstMb": round(rss_first / 1024, 1),
                "rssAfterWarmupMb": round(rss_warm / 1024, 1),
                "rssEndMb": round(rss_end / 1024, 1),
                "peakRssMb": round(peak_rss / 1024, 1),
                "rssGrowthKb": round(rss_growth / 1024, 1),
                "heapGrowthKb": round(heap_growth / 1024, 1),
                "heapPeakAboveStartKb": round((heap_peak - heap_start) / 1024, 1),
                "heapGrowthPerInvocationBytes": round(heap_growth / total, 1),
                "invocationMsP50": round(measured[len(measured) // 2] * 1000, 2),
                "topHeapGrowth": top_growth,
                "steady": rss_growth <= STEADY_LIMIT_BYTES and heap_growth <= STEADY_LIMIT_BYTES,
            }
        )
    )


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]), Path(sys.argv[2]))
