"""Fixtures for the S3 storage tests: a moto server in a subprocess on a free port,
spoken to over real HTTP with boto3; one fresh bucket per test."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aether_s3 import S3Settings, S3Storage

SERVER = Path(__file__).with_name("moto_serialized.py")
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Start the moto S3 server; fail (never skip) with what to install if it cannot."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the S3 tests need moto's server: pip install 'moto[server]' ({exc})")
    proc = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port "):
            pytest.fail(f"the moto S3 server did not start (exit code {proc.poll()})")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_client(moto_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def s3_bucket(s3_client: Any) -> Iterator[str]:
    bucket = f"aether-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    yield bucket
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3_client.delete_object(Bucket=bucket, Key=item["Key"])
    s3_client.delete_bucket(Bucket=bucket)


@pytest.fixture
async def make_s3(moto_endpoint: str, s3_bucket: str
                  ) -> AsyncIterator[Callable[..., S3Storage]]:
    """Build stores over the test's bucket (open them yourself); all closed afterwards."""
    made: list[S3Storage] = []

    def make(node_name: str = "node-1", **overrides: Any) -> S3Storage:
        settings = S3Settings.model_validate({
            "bucket": s3_bucket, "endpoint_url": moto_endpoint, "prefix": "deploy/",
            "poll_interval": 0.05, **CREDENTIALS, **overrides,
        })
        store = S3Storage(settings, node_name=node_name)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
