"""End to end: ``aether up`` as a process with a manifest, talked to over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from aether_core.testing.processes import AetherProcess, free_port

PASSWORD = "e2e-admin-password"
SIGNING_KEY = "e2e-signing-key-0123456789abcdef0123456789"


def test_aether_up_serves_the_admin_api(tmp_path: Path) -> None:
    port = free_port()
    manifest = f"""
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
"""
    node = AetherProcess(tmp_path, manifest, url=f"http://127.0.0.1:{port}",
                         env={"AETHER_ADMIN_PASSWORD": PASSWORD,
                              "AETHER_SIGNING_KEY": SIGNING_KEY})
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
        node.stop()
    first_output = node.output()
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
