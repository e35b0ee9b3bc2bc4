"""Fixtures for the KMS key provider tests: moto's server in a subprocess on a free port,
spoken to over real HTTP; a fresh alias family per test."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aether_kms import KmsKeyProvider, KmsSettings

SERVER = Path(__file__).with_name("kms_moto_server.py")
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="session")
def kms_endpoint() -> Iterator[str]:
    """Start moto's server; fail (never skip) saying what to install if it cannot."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the KMS tests need moto's server: pip install 'moto[server]' ({exc})")
    proc = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port "):
            pytest.fail(f"the moto KMS server did not start (exit code {proc.poll()})")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
