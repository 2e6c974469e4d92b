"""Shared fixtures, one plugin module per concern (each owned by the part of the system it serves)."""

import pytest

pytest_plugins = [
    "tests.fixtures.openapi",  # Codat OpenAPI validator (codat_openapi)
    "tests.fixtures.sandbox",  # an in-process Codat sandbox on a free port (sandbox)
    "tests.fixtures.aws",  # moto in server mode on a free port, resources from template.yaml (aws_emulator)
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked `long` first, longest first, so that with `make test`'s parallel workers the
    long waits overlap and no long module starts last (xdist's `--dist loadfile` hands out files in this
    order with `--no-loadscope-reorder`). The sort is stable: a module's tests keep their order."""

    def weight(item: pytest.Item) -> float:
        marker = item.get_closest_marker("long")
        return -float(marker.kwargs.get("seconds", 1)) if marker else 0.0

    items.sort(key=weight)
