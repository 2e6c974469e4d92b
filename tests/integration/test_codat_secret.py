"""The Codat key from Secrets Manager with the deferred boto3 import, against the AWS emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from billpay.adapters import secrets
from billpay.config import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def no_extension(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(secrets.EXTENSION_PORT_VAR, raising=False)
    secrets.reset_cache()
    yield
    secrets.reset_cache()


def test_secret_is_read_with_boto3_when_no_extension_runs(aws_emulator, aws_env, no_extension) -> None:
    arn = aws_emulator.secretsmanager.create_secret(
        Name=f"test/codat-{uuid.uuid4()}", SecretString="Basic c2stbG9jYWw="
    )["ARN"]
    settings = load_settings({"CODAT_API_KEY_SECRET_ARN": arn})
    assert secrets.get_codat_api_key(settings) == "Basic c2stbG9jYWw="
    aws_emulator.secretsmanager.put_secret_value(SecretId=arn, SecretString="rotated")
    # Cached for the container's life: a rotated key is picked up by the next container.
    assert secrets.get_codat_api_key(settings) == "Basic c2stbG9jYWw="
