"""One worker pool per function of the template, each with the function's own resolved environment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from local.emulator import LocalResources
from local.gateway.environment import function_environment
from local.gateway.events import Route
from local.gateway.server import routes_of
from local.gateway.workers import FunctionPool
from local.template import FunctionSpec, layer_dirs


def build_pools(
    template: dict[str, Any],
    specs: list[FunctionSpec],
    resources: LocalResources,
    *,
    endpoint_url: str,
    codat_base_url: str | None,
    concurrency: int,
    supervisor_env: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, FunctionPool]:
    return {
        spec.logical_id: FunctionPool(
            spec,
            function_environment(
                template,
                spec,
                resources,
                endpoint_url=endpoint_url,
                codat_base_url=codat_base_url,
                supervisor_env=supervisor_env,
            ),
            [str(path) for path in layer_dirs(template, spec)],
            concurrency,
            on_event=log,
        )
        for spec in specs
    }


def api_routes(specs: list[FunctionSpec]) -> list[Route]:
    return routes_of({spec.logical_id: [(r.path, r.method) for r in spec.api_routes] for spec in specs})
