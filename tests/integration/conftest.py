"""The session's local stack as a fixture. The harness itself (Stack, start_stack, COMPRESSED) lives in
local/harness.py, where the benchmarks and the drill use it too; its names are re-exported here for the
test modules that import them from this file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from billpay.adapters.codat import CodatClient

from local.harness import COMPRESSED, REPO_ROOT, Stack, StackTimeout, start_stack
from tests.fixtures.sandbox import Sandbox


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The session's local stack (COMPRESSED timings). Call `stack.reset()` where sandbox state matters."""
    with start_stack() as running:
        yield running


@pytest.fixture
def codat(sandbox: Sandbox) -> Iterator[CodatClient]:
    """Our Codat client against the test's own in-process sandbox (5 s timeouts and budget)."""
    client = CodatClient(
        base_url=sandbox.url,
        api_key=sandbox.api_key,
        timeout_seconds=5.0,
        connect_timeout_seconds=1.0,
        budget_seconds=5.0,
    )
    yield client
    client.close()


__all__ = ["COMPRESSED", "REPO_ROOT", "Stack", "StackTimeout", "start_stack"]
