"""Fixtures for the S3 storage tests: a moto server in a subprocess on a free port,
spoken to over real HTTP with boto3; one fresh bucket per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aether_s3 import S3Settings, S3Storage

from aether_core.testing.servers import moto_server

SERVER = Path(__file__).with_name("moto_serialized.py")
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server(SERVER, "S3") as endpoint:
        yield endpoint


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
