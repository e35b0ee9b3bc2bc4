"""``[storage] use = "redis"``: the manifest settings.

Secrets (``password``) are :class:`~pydantic.SecretStr`, so they never show in a repr, a
log line or an error; give them with ``${env:NAME}`` or ``${file:PATH}``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from aether_core.storage.base import StorageSettings

_SCHEMES = ("redis", "rediss", "unix")


class RedisSettings(StorageSettings):
    """Where the Redis is, how to reach it, and which keys this deployment owns."""

    #: ``redis://host:port/db``, ``rediss://…`` (TLS) or ``unix:///path/redis.sock``.
    #: Put the password in ``password``, not in the URL.
    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: SecretStr | None = None
    #: Every key of the deployment starts with ``{prefix}``; the braces make them one
    #: Redis Cluster hash slot, which the Lua scripts need. Several deployments share
    #: one Redis with different prefixes.
    prefix: str = Field(default="aether:", min_length=1, max_length=200)
    #: Connections for commands; the change feed has one more of its own.
    pool_size: int = Field(default=16, ge=1, le=1024)
    #: Seconds to wait for a reply / for a connection.
    socket_timeout: float = Field(default=5.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    #: Retries of a command after a connection error or timeout (exponential backoff
    #: from 50 ms up to 1 s). Safe for commits: see ``commit_token_ttl``.
    retries: int = Field(default=3, ge=0, le=20)
    #: TLS, also implied by ``rediss://``.
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_verify: bool = True
    #: How long one blocking read of the change stream lasts (seconds); bounds how late
    #: a node notices that the store was replaced by a restore.
    feed_block: float = Field(default=2.0, gt=0, le=60)
    #: Entries kept in the change-notification stream (approximate, ``MAXLEN ~``). The
    #: records themselves are kept forever; the stream only wakes waiting nodes.
    stream_maxlen: int = Field(default=10_000, ge=100)
    #: How long a commit's outcome is remembered so that a retry after a lost reply
    #: returns it instead of committing twice (seconds). Retries happen within a few
    #: seconds; each commit keeps one small key this long.
    commit_token_ttl: int = Field(default=60, ge=10)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(
                f"scheme must be one of {', '.join(s + '://' for s in _SCHEMES)}, "
                f"got {parts.scheme + '://' if parts.scheme else 'none'}"
            )
        if parts.password:
            # A URL is shown in messages and process lists; a password is not.
            raise ValueError("put the password in `password` (e.g. \"${env:REDIS_PASSWORD}\"), "
                             "not in the URL")
        return url

    @field_validator("prefix")
    @classmethod
    def _no_braces(cls, prefix: str) -> str:
        if any(c in prefix for c in "{}*?[]\\") or any(c.isspace() for c in prefix):
            raise ValueError("must not contain braces, glob characters or whitespace")
        return prefix

    @model_validator(mode="after")
    def _tls_pairs(self) -> RedisSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or urlsplit(self.url).scheme == "rediss"

    def where(self) -> str:
        """The server, for messages: scheme, host, port and db; never credentials."""
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        host = parts.hostname or "localhost"
        port = parts.port or 6379
        return f"{parts.scheme}://{host}:{port}{parts.path or '/0'}"
