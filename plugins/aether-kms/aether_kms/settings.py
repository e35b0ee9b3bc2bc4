"""``[secrets] key_provider = "kms"``."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from aether_core.providers import ProviderSettings

_ALIAS = re.compile(r"^alias/[A-Za-z0-9/_-]{1,200}$")


class KmsSettings(ProviderSettings):
    #: Key versions are the KMS aliases ``<alias>/1``, ``<alias>/2`` …, each naming one
    #: symmetric KMS key; the highest number is current.
    alias: str = "alias/aether"
    region_name: str = "us-east-1"
    #: Another endpoint (a VPC endpoint, a KMS-compatible server).
    endpoint_url: str | None = None
    #: Without these the usual AWS credential chain applies (environment, profile, role).
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    #: Create ``<alias>/1`` when no version exists; otherwise that is a start-up error.
    create_missing: bool = False
    #: Seconds per KMS call before it counts as unavailable.
    timeout: float = Field(default=5.0, gt=0, le=60)

    @field_validator("alias")
    @classmethod
    def _alias_shape(cls, value: str) -> str:
        value = value.rstrip("/")
        if not _ALIAS.match(value) or value.startswith("alias/aws/"):
            raise ValueError("an alias looks like alias/<name> (letters, digits, '/', '_', "
                             "'-'; not under alias/aws/)")
        return value
