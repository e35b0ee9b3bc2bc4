"""An ``aether up`` process for the client tests (a module with a unique name: every
test directory has a conftest.py, so ``from conftest import`` would find another one).
Adapted from the admin API's end-to-end test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

PASSWORD = "client-tests-admin-password"
SIGNING_KEY = "client-tests-signing-key-0123456789abcdef0123"
SCHEMA = {"type": "object", "properties": {"host": {"type": "string"},
                                           "port": {"type": "integer"}},
          "required": ["host", "port"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aether() -> str:
    found = Path(sys.executable).with_name("aether")
    if found.exists():
        return str(found)
    which = shutil.which("aether")
    assert which, "the aether command is not installed (pip install -e .)"
    return which


def client_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a client process: the server and the admin's credentials."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AETHER_TOKEN", "AETHER_PASSWORD_FILE", "AETHER_MANIFEST")}
    return {**env, "AETHER_URL": url, "AETHER_USERNAME": "admin", "AETHER_PASSWORD": PASSWORD,
            **extra}


class Node:
    """``aether up`` on a free loopback port with SQLite in ``directory``; stop and start
    it again on the same port and data."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "aether.toml").write_text(f"""
[node]
name = "client-tests"
data_dir = "data"

[storage]
use = "sqlite"

[transport]
use = "local"

[auth]
use = "jwt"
signing_key = "${{env:AETHER_SIGNING_KEY}}"
token_ttl = 600

[[services]]
use = "admin"
listen = "127.0.0.1:{self.port}"
watch_keepalive = 1
""")

    def start(self, timeout: float = 30) -> Node:
        env = {**os.environ, "AETHER_ADMIN_PASSWORD": PASSWORD, "AETHER_SIGNING_KEY": SIGNING_KEY}
        env.pop("AETHER_MANIFEST", None)
        self.log = open(self.directory / "node.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [aether(), "up", "-m", "aether.toml", "--log-format", "json"], cwd=self.directory,
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"aether up exited: {self.output()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"aether up did not become ready in {timeout} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("aether up did not stop within 15 s of SIGTERM")
        finally:
            self.log.close()
        assert code == 0, self.output()[-2000:]

    def output(self) -> str:
        return (self.directory / "node.log").read_text(errors="replace")

    def admin_headers(self) -> dict[str, str]:
        response = httpx.post(f"{self.url}/login", json={"username": "admin",
                                                          "password": PASSWORD}, timeout=10)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def put_schema(self, name: str, bind: list[str]) -> None:
        response = httpx.put(f"{self.url}/schemas/{name}", headers=self.admin_headers(),
                             json={"schema": SCHEMA, "bind": bind}, timeout=10)
        assert response.status_code in (200, 201), response.text
