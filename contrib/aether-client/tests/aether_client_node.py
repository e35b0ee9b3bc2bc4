"""An ``aether up`` process for the client tests (a module with a unique name: every
test directory has a conftest.py, so ``from conftest import`` would find another one)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from aether_core.testing.processes import AetherProcess, free_port
from aether_core.testing.processes import aether_command as aether

__all__ = ["PASSWORD", "Node", "aether", "client_env"]

PASSWORD = "client-tests-admin-password"
SIGNING_KEY = "client-tests-signing-key-0123456789abcdef0123"
SCHEMA = {"type": "object", "properties": {"host": {"type": "string"},
                                           "port": {"type": "integer"}},
          "required": ["host", "port"]}


def client_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a client process: the server and the admin's credentials."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AETHER_TOKEN", "AETHER_PASSWORD_FILE", "AETHER_MANIFEST")}
    return {**env, "AETHER_URL": url, "AETHER_USERNAME": "admin", "AETHER_PASSWORD": PASSWORD,
            **extra}


class Node(AetherProcess):
    """``aether up`` on a free loopback port with SQLite in ``directory``; stop and start
    it again on the same port and data."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(directory, f"""
[node]
name = "client-tests"
data_dir = "data"

[storage]
use = "sqlite"

[transport]
use = "local"

# Typed configs with SecretStr fields need a key provider (test_client_secret_binding).
[secrets]
key_provider = "local"

[auth]
use = "jwt"
signing_key = "${{env:AETHER_SIGNING_KEY}}"
token_ttl = 600

[[services]]
use = "admin"
listen = "127.0.0.1:{self.port}"
watch_keepalive = 1
""", url=f"http://127.0.0.1:{self.port}",
                         env={"AETHER_ADMIN_PASSWORD": PASSWORD,
                              "AETHER_SIGNING_KEY": SIGNING_KEY})

    def admin_headers(self) -> dict[str, str]:
        return self.login("admin", PASSWORD)

    def put_schema(self, name: str, bind: list[str]) -> None:
        response = httpx.put(f"{self.url}/schemas/{name}", headers=self.admin_headers(),
                             json={"schema": SCHEMA, "bind": bind}, timeout=10)
        assert response.status_code in (200, 201), response.text
