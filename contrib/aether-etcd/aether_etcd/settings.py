"""``[storage] use = "etcd"``: the manifest settings."""

from __future__ import annotations

from urllib.parse import urlsplit

from aether_core.storage.base import StorageSettings
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError


class EtcdSettings(StorageSettings):
    """Where etcd is and which part of its key space this deployment owns."""

    #: Client URLs of the etcd members (``http://`` or ``https://``), tried in order.
    endpoints: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:2379"],
                                 min_length=1)
    #: Every key of the deployment starts with this; several deployments share an etcd
    #: by using different prefixes.
    prefix: str = Field(default="aether/", min_length=1, max_length=200)
    #: Seconds one request to etcd may take.
    timeout: float = Field(default=5.0, gt=0, le=300)
    #: Seconds between checks for other nodes' commits while a watcher waits.
    poll_interval: float = Field(default=0.2, gt=0, le=60)
    #: The server's ``--max-txn-ops``: a command writes three keys per document, so one
    #: command holds at most (max_txn_ops - 1) / 3 documents.
    max_txn_ops: int = Field(default=128, ge=4, le=100_000)

    @field_validator("endpoints")
    @classmethod
    def _http_urls(cls, endpoints: list[str]) -> list[str]:
        for endpoint in endpoints:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise PydanticCustomError(
                    "etcd_endpoint", "{endpoint!r} is not an http:// or https:// URL with a host",
                    {"endpoint": endpoint})
            if parts.username or parts.password:
                raise PydanticCustomError(
                    "etcd_endpoint", "endpoints must not carry credentials (they are logged)")
        return endpoints

    @field_validator("prefix")
    @classmethod
    def _no_nul(cls, prefix: str) -> str:
        if "\x00" in prefix:
            raise PydanticCustomError("etcd_prefix", "must not contain NUL")
        return prefix
