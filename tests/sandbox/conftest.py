"""`codat`: an httpx client on the sandbox that validates every answer against Codat's OpenAPI document.

Every Codat-shaped response a test in this folder sees goes through `CodatOpenAPI.validate_http`, so a
wrong shape fails the test that received it, whatever that test asserts itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.openapi import CodatOpenAPI
from tests.fixtures.sandbox import Sandbox


@pytest.fixture
def validated_client(sandbox: Sandbox, codat_openapi: CodatOpenAPI) -> Iterator[Callable[..., httpx.Client]]:
    """Factory: `validated_client(headers=..., on=other_sandbox)` -> a validating client, closed after."""
    clients: list[httpx.Client] = []

    def make(*, on: Sandbox | None = None, **kwargs: Any) -> httpx.Client:
        def validate(response: httpx.Response) -> None:
            response.read()
            codat_openapi.validate_http(response)

        client = (on or sandbox).client(event_hooks={"response": [validate]}, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def codat(validated_client: Callable[..., httpx.Client]) -> httpx.Client:
    return validated_client()
