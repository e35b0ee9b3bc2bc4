"""End to end: ``aether up`` as a process with a manifest, talked to over HTTP."""

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

PASSWORD = "e2e-admin-password"
SIGNING_KEY = "e2e-signing-key-0123456789abcdef0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _aether() -> str:
    found = Path(sys.executable).with_name("aether")
    if found.exists():
        return str(found)
    which = shutil.which("aether")
    assert which, "the aether command is not installed (pip install -e .)"
    return which


class Node:
    def __init__(self, tmp: Path, port: int) -> None:
        self.tmp = tmp
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "AETHER_ADMIN_PASSWORD": PASSWORD,
               "AETHER_SIGNING_KEY": SIGNING_KEY}
        self.proc = subprocess.Popen(
            [_aether(), "up", "-m", "aether.toml", "--log-format", "json"], cwd=self.tmp,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"aether up exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail("aether up did not become ready in 30 s")

    def stop(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("aether up did not stop within 15 s of SIGTERM")
        output = self.output()
        assert code == 0, output
        return output

    def output(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        if self.proc.poll() is None:
            return ""
        return self.proc.stdout.read().decode(errors="replace")


def test_aether_up_serves_the_admin_api(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "aether.toml").write_text(f"""
[node]
name = "e2e"
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
listen = "127.0.0.1:{port}"
""")
    node = Node(tmp_path, port)
    node.start()
    try:
        with httpx.Client(base_url=node.url, timeout=5) as client:
            assert client.post("/login", json={"username": "admin", "password": "nope-nope"}
                               ).status_code == 401
            token = client.post("/login", json={"username": "admin", "password": PASSWORD}
                                ).json()["access_token"]
            other = client.post("/login", json={"username": "admin", "password": PASSWORD}
                                ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            created = client.post("/configs", headers=auth, json={
                "name": "billing/database", "value": {"port": 5432}})
            assert created.status_code == 201 and created.headers["etag"] == '"1"'
            updated = client.put("/configs/billing/database",
                                 headers={**auth, "If-Match": '"1"'},
                                 json={"value": {"port": 5433}})
            assert updated.status_code == 200
            assert client.get("/configs/billing/database?version=1",
                              headers=auth).json()["value"] == {"port": 5432}
            assert client.post("/logout", headers={"Authorization": f"Bearer {other}"}
                               ).status_code == 204
            assert "aether_http_requests_total" in client.get("/metrics").text
    finally:
        first_output = node.stop()
    assert PASSWORD not in first_output and SIGNING_KEY not in first_output

    # After a restart: data, users and revocations are still there; tokens still verify.
    node.start()
    try:
        with httpx.Client(base_url=node.url, timeout=5) as client:
            read = client.get("/configs/billing/database",
                              headers={"Authorization": f"Bearer {token}"})
            assert read.status_code == 200 and read.json()["version"] == 2
            revoked = client.get("/whoami", headers={"Authorization": f"Bearer {other}"})
            assert revoked.status_code == 401
    finally:
        node.stop()
