"""Fixtures for the KMS key provider tests: moto's server in a subprocess on a free port,
spoken to over real HTTP; a fresh alias family per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aether_kms import KmsKeyProvider, KmsSettings

from aether_core.testing.servers import moto_server

SERVER = Path(__file__).with_name("kms_moto_server.py")
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="session")
def kms_endpoint() -> Iterator[str]:
    with moto_server(SERVER, "KMS") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def kms_client(kms_endpoint: str) -> Any:
    return boto3.client("kms", endpoint_url=kms_endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def kms_alias() -> str:
    return f"alias/aether-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def make_kms(kms_endpoint: str, kms_alias: str
                   ) -> AsyncIterator[Callable[..., KmsKeyProvider]]:
    """Build providers for this test's alias family (start them yourself)."""
    made: list[KmsKeyProvider] = []

    def make(**overrides: Any) -> KmsKeyProvider:
        settings = KmsSettings.model_validate({
            "alias": kms_alias, "endpoint_url": kms_endpoint, **CREDENTIALS, **overrides})
        provider = KmsKeyProvider(settings)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()
