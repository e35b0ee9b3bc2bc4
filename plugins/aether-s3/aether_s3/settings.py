"""``[storage] use = "s3"``: the manifest settings.

Keys (``access_key_id``, ``secret_access_key``, ``session_token``) are
:class:`~pydantic.SecretStr`: give them with ``${env:NAME}``/``${file:PATH}``, or leave
them out and let boto3 find credentials (instance role, ``AWS_*`` variables, profile).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from aether_core.storage.base import StorageSettings

# S3's rule for bucket names (general purpose buckets), without the rarer exceptions.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3Settings(StorageSettings):
    """Which bucket and prefix hold the deployment, and how to reach the store."""

    bucket: str
    #: Every object of the deployment is under this prefix; several deployments share
    #: a bucket with different prefixes. Empty, or ending in ``/``.
    prefix: str = "aether/"
    #: For S3-compatible stores (MinIO, Ceph, R2, moto …); AWS when unset.
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    #: How often a waiting watcher lists for new commits (seconds).
    poll_interval: float = Field(default=1.0, gt=0, le=300)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    #: Attempts per request (boto3 "standard" retry mode).
    max_attempts: int = Field(default=3, ge=1, le=10)
    pool_size: int = Field(default=10, ge=1, le=256)
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    #: Verify the server's TLS certificate; ``ca_bundle`` names a CA file to trust.
    verify_tls: bool = True
    ca_bundle: str | None = None
    #: Create the bucket at start if it does not exist (handy for MinIO and tests).
    create_bucket: bool = False

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, bucket: str) -> str:
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError("not a valid S3 bucket name (3-63 characters: lower-case "
                             "letters, digits, dots and hyphens)")
        return bucket

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_folder(cls, prefix: str) -> str:
        if prefix and (not prefix.endswith("/") or prefix.startswith("/")):
            raise ValueError("must be empty or end with '/' (and not start with '/')")
        return prefix

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.password or parts.username:
            raise ValueError("must not carry credentials; use access_key_id and "
                             "secret_access_key")
        return url

    @model_validator(mode="after")
    def _key_pair(self) -> S3Settings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together")
        return self

    def where(self) -> str:
        """The bucket and prefix, for messages (never credentials)."""
        return f"s3://{self.bucket}/{self.prefix}"
