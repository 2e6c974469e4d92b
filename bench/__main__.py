"""`make bench`: runs every benchmark section and writes bench/results.json and bench/RESULTS.md.

Each section is a module in this package with `NAME: str` and `run() -> dict[str, object]` (and, if its
figures read better as a table of its own, `markdown(results) -> list[str]`); a section that fails is
reported as such without hiding the others' numbers. `make bench SECTIONS="ledger drain"` refreshes only
those sections and keeps the others' last figures.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import platform
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Order matters only for reading; each section starts whatever it needs and stops it again.
SECTIONS = [
    "bench.cold_import",
    "bench.sandbox_throughput",
    "bench.routes",
    "bench.writes",
    "bench.costs",
    "bench.ledger",
    "bench.flow",
    "bench.drain",
    "bench.memory",
    "bench.artifacts",
]

HERE = Path(__file__).parent


def _machine() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def main() -> int:
    only = set(sys.argv[1:])
    results: dict[str, object] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "sections": {},
    }
    sections: dict[str, object] = {}
    previous = HERE / "results.json"
    if only and previous.exists():
        # A partial run (`make bench SECTIONS="writes drain"`) refreshes those sections and keeps the rest.
        sections.update(json.loads(previous.read_text()).get("sections", {}))
    for module_name in SECTIONS:
        short = module_name.rsplit(".", 1)[1]
        if only and short not in only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # section not written yet
            raise
        print(f"== {module.NAME}", flush=True)
        try:
            sections[short] = {"name": module.NAME, "results": module.run()}
        except Exception:
            traceback.print_exc()
            sections[short] = {"name": module.NAME, "error": traceback.format_exc(limit=3)}
        print(json.dumps(sections[short], indent=2, default=str), flush=True)
    results["sections"] = sections
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (HERE / "RESULTS.md").write_text(_markdown(results))
    return 0


def _markdown(results: dict[str, object]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['date']} on {json.dumps(results['machine'])}.",
        "Written by `make bench`; raw figures in `results.json`.",
        "",
    ]
    sections = results["sections"]
    assert isinstance(sections, dict)
    for short, section in sections.items():
        lines += [f"## {section['name']}", ""]
        if "error" in section:
            lines += ["Failed:", "", "```", str(section["error"]), "```", ""]
            continue
        render = _renderer(short)
        if render is not None:
            lines += render(section["results"])
            continue
        lines += ["| figure | value |", "|---|---|"]
        for key, value in _flatten(section["results"]):
            lines.append(f"| {key} | {value} |")
        lines.append("")
    return "\n".join(lines)


def _renderer(short: str) -> Callable[[Any], list[str]] | None:
    """The section's own table, if its module has one (`markdown(results)`)."""
    try:
        module = importlib.import_module(f"bench.{short}")
    except ImportError:
        return None
    render = getattr(module, "markdown", None)
    return render if callable(render) else None


def _flatten(value: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(value, dict):
        rows: list[tuple[str, object]] = []
        for key, inner in value.items():
            rows += _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, value)]


if __name__ == "__main__":
    raise SystemExit(main())
