"""The session's local stack as a fixture. The harness itself (Stack, start_stack, COMPRESSED) lives in
local/harness.py, where the benchmarks and the drill use it too; its names are re-exported here for the
test modules that import them from this file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.harness import COMPRESSED, REPO_ROOT, Stack, StackTimeout, start_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The session's local stack (COMPRESSED timings). Call `stack.reset()` where sandbox state matters."""
    with start_stack() as running:
        yield running


__all__ = ["COMPRESSED", "REPO_ROOT", "Stack", "StackTimeout", "start_stack"]
