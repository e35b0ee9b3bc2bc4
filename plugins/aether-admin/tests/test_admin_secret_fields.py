"""Secret fields of typed configs over HTTP: every read shows the placeholder unless it
asks ``?reveal=true`` with ``secrets:read``; a placeholder written back is a 400 that
changes nothing; no response (problem bodies included) other than a reveal, and no log
or audit line, carries the plaintext."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from admin_helpers import ADMIN_PASSWORD, assert_problem, fast_passwords, login
from aether_admin import create_app
from litestar.testing import TestClient
from pydantic import BaseModel, SecretStr

from aether_core import ConfigManager, MemoryStorage
from aether_core.auth.jwt import JwtAuth
from aether_core.auth.keys import KeySet
from aether_core.auth.roles import Role, RoleTable, Rule
from aether_core.secrets.fields import PLACEHOLDER
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager

MARKER, MARKER2 = "canary-field-5d2e71", "canary-field-0b9c44"
ROLES = {"reader": Role(rules=[
    Rule(actions=["configs:read", "secrets:read"], resources=["app/*"])])}


class Db(BaseModel):
    host: str
    password: SecretStr


class App(BaseModel):
    db: Db
    workers: int = 4


@pytest.fixture
def logs() -> Iterator[list[Any]]:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


def test_secret_fields_are_redacted_unless_revealed_with_secrets_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: list[Any]) -> None:
    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    manager = ConfigManager(MemoryStorage())
    secrets = SecretManager(manager, LocalKeyProvider(tmp_path / "secrets.keys"))
    auth = JwtAuth(KeySet.build("HS256", "k1", "0123456789abcdef0123456789abcdef-fields"),
                   roles=RoleTable(ROLES), passwords=fast_passwords())
    responses: list[httpx.Response] = []

    def keep(response: httpx.Response) -> None:
        response.read()
        responses.append(response)

    with TestClient(create_app(manager, auth=auth, secrets=secrets,
                               close_manager=True)) as api:
        api.event_hooks = {"response": [keep]}
        admin = login(api, "admin", ADMIN_PASSWORD)
        for user, roles in (("ed", ["editor"]), ("rita", ["reader"])):
            assert api.post("/users", headers=admin, json={
                "username": user, "password": f"{user}-password", "roles": roles}).is_success
        ed, rita = login(api, "ed", "ed-password"), login(api, "rita", "rita-password")
        assert api.put("/schemas/app", headers=admin, json={
            "schema": App.model_json_schema(), "bind": ["app/"]}).is_success

        value = {"db": {"host": "db1", "password": MARKER}, "workers": 4}
        created = api.put("/configs/app/svc", headers=ed, json={"value": value})
        assert created.status_code == 201, created.text
        assert created.json()["value"]["db"]["password"] == PLACEHOLDER
        read = api.get("/configs/app/svc", headers=ed)
        assert read.json()["value"] == {"db": {"host": "db1", "password": PLACEHOLDER},
                                        "workers": 4}

        # Revealing needs secrets:read on the name.
        assert_problem(api.get("/configs/app/svc?reveal=true", headers=ed), 403)
        revealed = api.get("/configs/app/svc?reveal=true", headers=rita)
        assert revealed.status_code == 200
        assert revealed.json()["value"] == value
        assert revealed.headers["cache-control"] == "no-store"

        # Writing the placeholder back (a read-modify-write without the secret): 400,
        # nothing changed.
        back = read.json()["value"]
        back["workers"] = 8
        assert_problem(api.put("/configs/app/svc", headers=ed, json={"value": back}), 400)
        assert api.get("/configs/app/svc", headers=ed).json()["version"] == 1

        # A bad value does not echo the secret in the problem body.
        bad = api.put("/configs/app/svc", headers=ed, json={
            "value": {"db": {"host": 5, "password": MARKER2}}})
        assert_problem(bad, 422)
        assert api.get("/configs/app/svc", headers=ed).json()["version"] == 1

        assert api.put("/configs/app/svc", headers=ed, json={"value": {
            "db": {"host": "db1", "password": MARKER2}, "workers": 4}}).status_code == 200
        diff = api.get("/configs/app/svc/diff?from=1&to=2", headers=ed).json()
        assert diff["patch"] == [] and diff["secret_fields"] == {"/db/password": "changed"}
        listing = api.get("/configs?prefix=app/", headers=ed).json()["items"]
        assert listing[0]["value"]["db"]["password"] == PLACEHOLDER
        assert api.get("/configs/app/svc/versions", headers=ed).is_success
        assert api.post("/configs/app/svc/rollback", headers=ed,
                        json={"to_version": 1}).is_success
        again = api.get("/configs/app/svc?reveal=true", headers=rita).json()
        assert again["value"]["db"]["password"] == MARKER

    reveals = [r for r in responses if "reveal=true" in str(r.request.url)
               and r.status_code == 200]
    assert len(reveals) == 2 and len(responses) >= 15
    for response in responses:
        if response in reveals:
            continue
        assert MARKER not in response.text and MARKER2 not in response.text, (
            response.request.url)
    audit = [entry for entry in logs if entry.get("event") == "audit"]
    assert any(entry.get("action") == "secrets:read" for entry in audit)
    assert MARKER not in repr(logs) and MARKER2 not in repr(logs)


async def _sse(response: httpx.Response, n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    data = ""
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data = line.removeprefix("data:").strip()
        elif not line and data:
            events.append(json.loads(data))
            data = ""
            if len(events) == n:
                break
    return events


async def test_the_sse_watch_stream_carries_only_the_placeholder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aether_admin.service import Listener

    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    manager = ConfigManager(MemoryStorage())
    await manager.start()
    secrets = SecretManager(manager, LocalKeyProvider(tmp_path / "secrets.keys"))
    auth = JwtAuth(KeySet.build("HS256", "k1", "0123456789abcdef0123456789abcdef-fields"),
                   passwords=fast_passwords())
    listener = Listener(create_app(manager, auth=auth, secrets=secrets), "127.0.0.1", 0)
    await listener.start()
    try:
        async with httpx.AsyncClient(base_url=listener.url, timeout=10) as client:
            token = (await client.post("/login", json={
                "username": "admin", "password": ADMIN_PASSWORD})).json()["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            assert (await client.put("/schemas/app", headers=admin, json={
                "schema": App.model_json_schema(), "bind": ["app/"]})).is_success
            for password in (MARKER, MARKER2):
                assert (await client.put("/configs/app/svc", headers=admin, json={"value": {
                    "db": {"host": "db1", "password": password}}})).is_success
            async with asyncio.timeout(10), client.stream(
                    "GET", "/watch", params={"prefix": "app/", "since": 0},
                    headers=admin) as response:
                assert response.status_code == 200
                events = await _sse(response, 2)
        assert [e["value"]["db"]["password"] for e in events] == [PLACEHOLDER, PLACEHOLDER]
        assert MARKER not in json.dumps(events) and MARKER2 not in json.dumps(events)
    finally:
        await listener.stop()
        await auth.close()
        await manager.close()
