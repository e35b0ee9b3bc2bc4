"""``[[services]] use = "admin"``: the admin API's settings."""

from __future__ import annotations

from pydantic import Field, field_validator

from aether_core.providers import ProviderSettings


class AdminSettings(ProviderSettings):
    #: host:port to bind. Keep it on loopback unless a TLS proxy sits in front.
    listen: str = "127.0.0.1:8080"
    #: Largest request body accepted (413 beyond).
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    #: Failed logins allowed per username / per client address within ``login_window``
    #: seconds before further attempts get 429 with Retry-After.
    login_failures_per_user: int = Field(default=5, ge=1, le=1000)
    login_failures_per_address: int = Field(default=20, ge=1, le=10_000)
    login_window: float = Field(default=60.0, gt=0, le=86_400)
    #: Seconds between SSE keep-alive comments on an idle watch stream.
    watch_keepalive: float = Field(default=15.0, gt=0, le=300)
    #: Serve the OpenAPI document and the interactive docs page at /docs.
    docs: bool = True

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])
