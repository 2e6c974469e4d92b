"""`python -m local.stack` (= `make run`): the whole system on this machine, in one foreground process.

Starts, in order: the AWS emulator (moto, with template.yaml's tables, queues and the Codat key secret),
the Codat sandbox, one worker pool per function, the API gateway, the SQS poller and the schedules. It is
ready when `GET /openapi.json` answers 200 (every API function loaded); Ctrl-C or SIGTERM stops all of it,
worker processes included.

Settings (environment):
  BILLPAY_API_PORT (3000), BILLPAY_SANDBOX_PORT (4100), BILLPAY_EMULATOR_PORT (4566) — 0 picks a free port
    (the emulator's port is a fault-injecting proxy in front of moto, see local/aws_faults.py; moto itself
    listens on a free internal port, `emulator_direct_url` in the ready document)
  BILLPAY_LOCAL_HOST (127.0.0.1), BILLPAY_LOCAL_CONCURRENCY (4 workers per function)
  BILLPAY_EMULATOR_PROCESS (0) — 1 runs moto in a process of its own instead of on a thread of this one
    (this process also serves the fault proxy, the sandbox, the gateway and the pollers: one GIL)
  BILLPAY_LOCAL_CALLER_ARN — the caller every request is signed as (header X-Local-Caller-Arn overrides)
  BILLPAY_SWEEP_INTERVAL_SECONDS (60) — how often scheduled functions run
  BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS — receive with this visibility timeout instead of the queue's
  BILLPAY_LOCAL_READY_FILE — write the addresses as JSON there once ready
  BILLPAY_LOCAL_USE_SECRET=1 — functions read the Codat key from the emulator's Secrets Manager
  BILLPAY_LOCAL_ACCESS_LOG (1) — one line per API request
  BILLPAY_LOCAL_EXIT_WITH_PARENT=1 — stop when the process that started this one dies (test runners)
  BILLPAY_TEMPLATE (template.yaml)
  CODAT_BASE_URL (+ CODAT_API_KEY) — use that Codat-compatible server instead of starting the sandbox
Any other BILLPAY_*, CODAT_* or POWERTOOLS_* variable is passed to every function, over the template's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from local.aws_faults import start_fault_proxy
from local.emulator import create_resources, start_emulator, start_emulator_process
from local.gateway.events import DEFAULT_CALLER_ARN
from local.gateway.runtime import api_routes, build_pools
from local.gateway.server import Gateway, start_gateway
from local.poller import ScheduleRunner, SqsPoller
from local.sandbox.server import start_sandbox
from local.template import REPO_ROOT, functions, load_template

READY_PREFIX = "billpay-local-stack ready "


class _Stop(Exception):
    """Raised in the main thread by SIGINT/SIGTERM, so start-up can be interrupted too."""


@dataclass(frozen=True)
class StackSettings:
    host: str
    api_port: int
    sandbox_port: int
    emulator_port: int
    concurrency: int
    caller_arn: str
    sweep_interval: float
    visibility_timeout: int | None
    template_path: Path
    ready_file: str | None
    access_log: bool
    external_codat_url: str | None
    emulator_process: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str]) -> StackSettings:
        visibility = env.get("BILLPAY_LOCAL_VISIBILITY_TIMEOUT_SECONDS")
        return cls(
            host=env.get("BILLPAY_LOCAL_HOST", "127.0.0.1"),
            api_port=int(env.get("BILLPAY_API_PORT", "3000")),
            sandbox_port=int(env.get("BILLPAY_SANDBOX_PORT", "4100")),
            emulator_port=int(env.get("BILLPAY_EMULATOR_PORT", "4566")),
            concurrency=int(env.get("BILLPAY_LOCAL_CONCURRENCY", "4")),
            caller_arn=env.get("BILLPAY_LOCAL_CALLER_ARN", DEFAULT_CALLER_ARN),
            sweep_interval=float(env.get("BILLPAY_SWEEP_INTERVAL_SECONDS", "60")),
            visibility_timeout=int(float(visibility)) if visibility else None,
            template_path=Path(env.get("BILLPAY_TEMPLATE", str(REPO_ROOT / "template.yaml"))).resolve(),
            ready_file=env.get("BILLPAY_LOCAL_READY_FILE"),
            access_log=env.get("BILLPAY_LOCAL_ACCESS_LOG", "1") != "0",
            external_codat_url=env.get("CODAT_BASE_URL"),
            emulator_process=env.get("BILLPAY_EMULATOR_PROCESS", "0") == "1",
        )


def _check_port(host: str, port: int, what: str, variable: str) -> None:
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise SystemExit(
                f"local.stack: port {port} ({what}) is in use — is another `make run` running? "
                f"Stop it, or choose another port with {variable}."
            ) from None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(env: dict[str, str], *, on_ready: Callable[[dict[str, Any]], None] | None = None) -> int:
    settings = StackSettings.from_env(env)
    for port, what, variable in (
        (settings.api_port, "API", "BILLPAY_API_PORT"),
        (settings.emulator_port, "AWS emulator", "BILLPAY_EMULATOR_PORT"),
        (settings.sandbox_port, "Codat sandbox", "BILLPAY_SANDBOX_PORT"),
    ):
        if what != "Codat sandbox" or not settings.external_codat_url:
            _check_port(settings.host, port, what, variable)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only the first signal interrupts; a second Ctrl-C during shutdown must not abort the cleanup.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop.set()
        raise _Stop

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if env.get("BILLPAY_LOCAL_EXIT_WITH_PARENT") == "1":
        _watch_parent(stop)

    started = time.perf_counter()
    with ExitStack() as cleanup:
        try:
            template = load_template(settings.template_path)
            specs = functions(template, base_dir=settings.template_path.parent)

            # moto on an internal port; the functions reach it through the fault proxy on the public one.
            emulator = (
                start_emulator_process(settings.host, 0)
                if settings.emulator_process
                else start_emulator(settings.host, 0)
            )
            cleanup.callback(emulator.close)
            proxy = start_fault_proxy(settings.host, settings.emulator_port, emulator.host, emulator.port)
            cleanup.callback(proxy.close)
            # Through the proxy, so queue URLs name the public port (nothing is armed yet).
            resources = create_resources(proxy.url, template, caller_arns=[settings.caller_arn])

            codat_url = settings.external_codat_url
            if codat_url is None:
                # Codat's own default page size, so a first `curl` shows whole lists; the tests set
                # BILLPAY_SANDBOX_PAGE_SIZE small to make every client page.
                page_size = int(os.environ.get("BILLPAY_SANDBOX_PAGE_SIZE", "100"))
                sandbox = start_sandbox(settings.host, settings.sandbox_port, page_size=page_size)
                cleanup.callback(sandbox.close)
                codat_url = sandbox.url

            pools = build_pools(
                template,
                specs,
                resources,
                endpoint_url=proxy.url,
                codat_base_url=codat_url,
                concurrency=settings.concurrency,
                supervisor_env=env,
                log=_log,
            )
            for pool in pools.values():
                cleanup.callback(pool.close)

            stage = _stage_name(template)
            gateway = Gateway(
                pools=pools,
                routes=api_routes(specs),
                stage=stage,
                caller_arn=settings.caller_arn,
                log=_log,
                access_log=settings.access_log,
            )
            api = start_gateway(gateway, settings.host, settings.api_port)
            cleanup.callback(api.close)
            if gateway.openapi is None:
                _log(f"local.stack: not ready — {gateway.openapi_error}")
                return 1

            runners: list[SqsPoller | ScheduleRunner] = []
            for spec in specs:
                for source in spec.sqs_sources:
                    queue_id = source.queue_logical_id
                    if queue_id is None or queue_id not in resources.refs:
                        _log(
                            f"{spec.logical_id}: SQS event on {source.queue!r} is not a local queue; skipped"
                        )
                        continue
                    runners.append(
                        SqsPoller(
                            pools[spec.logical_id],
                            source,
                            queue_url=resources.refs[queue_id],
                            queue_arn=resources.arns[queue_id],
                            # Lambda's event source mapping is AWS's, not our code: never faulted.
                            endpoint_url=emulator.url,
                            visibility_timeout=settings.visibility_timeout,
                            log=_log,
                        )
                    )
                for schedule in spec.schedules:
                    if schedule.enabled:
                        runners.append(
                            ScheduleRunner(
                                pools[spec.logical_id],
                                schedule,
                                interval_seconds=settings.sweep_interval,
                                log=_log,
                            )
                        )
            for runner in runners:
                runner.start()
                cleanup.callback(runner.stop)

            ready = {
                "api_url": api.url,
                "sandbox_url": codat_url,
                "emulator_url": proxy.url,
                "emulator_direct_url": emulator.url,
                "emulator_pid": emulator.pid,
                "stage": stage,
                "resources": resources.refs,
                "arns": resources.arns,
                "functions": [spec.logical_id for spec in specs],
                "pid": os.getpid(),
                "startup_seconds": round(time.perf_counter() - started, 2),
            }
            _announce(settings, ready, specs_summary=_summary(specs, settings))
            if on_ready is not None:
                on_ready(ready)
            stop.wait()
        except _Stop:
            pass
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _log("local.stack: stopping")
    _log("local.stack: stopped")
    return 0


def _watch_parent(stop: threading.Event) -> None:
    """A test runner killed hard must not leave a stack (and its workers) behind."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _stage_name(template: dict[str, Any]) -> str:
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Api":
            stage = (resource.get("Properties") or {}).get("StageName")
            if isinstance(stage, str):
                return stage
    return "local"


def _summary(specs: list[Any], settings: StackSettings) -> list[str]:
    lines = []
    for spec in specs:
        triggers = [f"{r.method} {r.path}" for r in spec.api_routes]
        triggers += [f"SQS {s.queue_logical_id} (batch {s.batch_size})" for s in spec.sqs_sources]
        triggers += [f"every {settings.sweep_interval:g} s" for s in spec.schedules if s.enabled]
        lines.append(f"  {spec.logical_id}: {', '.join(triggers) or 'no local trigger'}")
    return lines


def _announce(settings: StackSettings, ready: dict[str, Any], specs_summary: list[str]) -> None:
    print(
        "\n".join(
            [
                "Bill Pay Sync local stack is up:",
                f"  API            {ready['api_url']}   (OpenAPI: {ready['api_url']}/openapi.json)",
                f"  Codat sandbox  {ready['sandbox_url']}",
                f"  AWS emulator   {ready['emulator_url']}   (faults: POST/GET/DELETE /_emulator/faults)",
                f"  caller         {settings.caller_arn}",
                *specs_summary,
                "Ctrl-C stops everything.",
                READY_PREFIX + json.dumps(ready),
            ]
        ),
        flush=True,
    )
    if settings.ready_file:
        partial = f"{settings.ready_file}.tmp"
        Path(partial).write_text(json.dumps(ready))
        os.replace(partial, settings.ready_file)  # readers never see half a file


def main() -> int:
    return run(dict(os.environ))


if __name__ == "__main__":
    code = main()
    # Everything this process started is stopped by now; skipping the interpreter's finalization of
    # moto's large module graph saves about a second on every stop.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
