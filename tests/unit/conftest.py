"""The unit tier: pure rules, the in-memory fake store, in-process mocks. No server, no network: any
attempt to open a connection fails the test (`make unit` runs this tier alone, in well under a minute)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"a unit test opened a connection to {address!r}: it belongs to integration")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
