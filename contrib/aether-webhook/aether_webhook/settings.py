"""``[[watchers]] use = "webhook"``: the manifest settings.

The signing secret is a :class:`~pydantic.SecretStr` (never in a repr, a log line or an
error) and, in a manifest, must be a ``${env:NAME}`` or ``${file:PATH}`` reference.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from aether_core.watch import WatcherSettings

_REFERENCE = re.compile(r"^\s*\$\{(env|file):[^}]+\}\s*$")
MIN_SECRET_BYTES = 16


class WebhookSettings(WatcherSettings):
    """Where to POST, how to sign, how hard to try, where failures go."""

    #: ``http://`` or ``https://`` endpoint; credentials do not belong in it.
    url: str
    #: The HMAC-SHA256 key shared with the receiver (≥ 16 bytes; 32 random bytes is good).
    secret: SecretStr
    #: Only events whose name starts with this are sent.
    prefix: str = ""
    #: Only events of these kinds (``config``, ``schema``, ``secret``, …); all when unset.
    #: Secret events carry a name and version, never a value.
    kinds: list[str] | None = None
    #: Seconds one request may take (connect, send, wait for the answer).
    timeout: float = Field(default=10.0, gt=0, le=300)
    #: Tries per event before it goes to the dead-letter file.
    max_attempts: int = Field(default=5, ge=1, le=100)
    #: Seconds before the first retry; doubles each retry up to ``backoff_max``.
    backoff: float = Field(default=0.5, gt=0, le=600)
    backoff_max: float = Field(default=30.0, gt=0, le=3600)
    #: Fraction of each delay drawn at random (0: none, 1: anywhere in 0…delay), so
    #: many nodes retrying one receiver do not stampede it in step.
    jitter: float = Field(default=0.5, ge=0, le=1)
    #: JSON-lines file of events given up on; relative paths are in the data directory.
    dead_letter: str = Field(default="webhook-dead-letters.jsonl", min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError(
                "webhook_url", "must be an http:// or https:// URL with a host"
            )
        if parts.username or parts.password:
            # URLs show up in logs and dead letters; credentials must not.
            raise PydanticCustomError(
                "webhook_url", "must not carry credentials (the body is signed with `secret`)"
            )
        return url

    @field_validator("secret")
    @classmethod
    def _secret_from_reference(cls, secret: SecretStr, info: ValidationInfo) -> SecretStr:
        raw: Any = (info.context or {}).get("raw")
        written = raw.get("secret") if isinstance(raw, dict) else None
        if isinstance(written, str) and not _REFERENCE.match(written):
            raise PydanticCustomError(
                "inline_secret",
                'must come from "${env:NAME}" or "${file:PATH}", never inline in the manifest',
            )
        if len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise PydanticCustomError(
                "short_secret", "must be at least {n} bytes long", {"n": MIN_SECRET_BYTES}
            )
        return secret

    @model_validator(mode="after")
    def _backoff_order(self) -> WebhookSettings:
        if self.backoff_max < self.backoff:
            raise PydanticCustomError("backoff", "backoff_max must be at least backoff")
        return self
