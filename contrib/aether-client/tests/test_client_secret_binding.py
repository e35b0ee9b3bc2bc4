"""Bindings of models with ``SecretStr`` fields against a running ``aether up``: values
are read revealed (at start and for each change), a client without ``secrets:read``
gets a clear error and never the placeholder as a secret, and no plaintext reaches the
disk cache."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aether_client import AsyncAetherClient, Backoff, Change, ClientError, Credentials
from aether_client.records import WatchEvent
from aether_client.secret_fields import PLACEHOLDER, has_secret_fields
from aether_client_node import PASSWORD, Node
from pydantic import BaseModel, SecretStr

ADMIN = Credentials(username="admin", password=PASSWORD)
FAST = Backoff(initial=0.02, maximum=0.2)
FIRST, SECOND, THIRD = (f"marker-{uuid.uuid4().hex}" for _ in range(3))


class Db(BaseModel):
    host: str
    password: SecretStr


class App(BaseModel):
    db: Db
    workers: int = 1


class Plain(BaseModel):
    db: dict[str, str]


class Tokens(BaseModel):
    tokens: list[SecretStr | None] = []


def _value(password: str, workers: int = 1) -> dict[str, object]:
    return {"db": {"host": "db.internal", "password": password}, "workers": workers}


def _schema(node: Node, prefix: str) -> None:
    response = httpx.put(f"{node.url}/schemas/{prefix.strip('/').replace('/', '-')}",
                         headers=node.admin_headers(), timeout=10,
                         json={"schema": App.model_json_schema(), "bind": [prefix]})
    assert response.status_code in (200, 201), response.text


def _files(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


async def _until(what: str, check: Callable[[], bool], seconds: float = 10) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {seconds} s: {what}")


def _viewer(node: Node) -> Credentials:
    """A user with the built-in ``viewer`` role: configs:read, no secrets:read."""
    user, password = f"viewer-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    created = httpx.post(f"{node.url}/users", headers=node.admin_headers(), timeout=10,
                         json={"username": user, "password": password, "roles": ["viewer"]})
    assert created.status_code == 201, created.text
    return Credentials(username=user, password=password)


def test_secret_fields_are_found_in_nested_and_optional_annotations() -> None:
    assert has_secret_fields(App) and has_secret_fields(Tokens)
    assert not has_secret_fields(Plain)


async def test_binding_reads_secret_fields_revealed_and_never_caches_them(
    node: Node, tmp_path: Path
) -> None:
    name = "sdk/secret/app"
    _schema(node, "sdk/secret/")
    cache_dir = tmp_path / "cache"
    async with AsyncAetherClient(node.url, ADMIN, backoff=FAST, cache_dir=cache_dir) as c:
        assert c.cache is not None
        await c.put(name, _value(FIRST))
        # The stored value and its events carry the placeholder, not the secret.
        assert (await c.get(name, 1)).value["db"]["password"] == PLACEHOLDER
        # A file from before the model had secret fields: never started from, removed.
        c.cache.directory.mkdir(parents=True)
        c.cache.path(name).write_text(json.dumps({
            "name": name, "version": 1, "revision": 1, "value": _value(PLACEHOLDER)}))
        binding = await c.bind(name, App)
        assert binding.secret and binding.source == "server" and binding.version == 1
        assert binding.value.db.password.get_secret_value() == FIRST
        assert not c.cache.path(name).exists()

        changes: list[Change[App]] = []
        binding.on_change(changes.append)
        await c.put(name, _value(SECOND, workers=2))
        await _until("the change applied", lambda: binding.version == 2)
        assert binding.value.db.password.get_secret_value() == SECOND
        assert binding.value.workers == 2 and [ch.version for ch in changes] == [2]
        assert changes[0].previous is not None
        assert changes[0].previous.db.password.get_secret_value() == FIRST
        # ?version=N&reveal=true reveals that version's own secret, not the latest.
        assert (await c.get(name, 1, reveal=True)).value["db"]["password"] == FIRST

        # A redacted value is never applied, even when offered as if revealed.
        await binding.offer(WatchEvent(revision=10**9, type="put", kind="config", name=name,
                                       version=99, value=_value(PLACEHOLDER)), revealed=True)
        assert binding.version == 2 and [e["path"] for e in binding.refused[99]] == [
            "db.password"]
        assert binding.value.db.password.get_secret_value() == SECOND

        # A model without secret fields is cached as before; no plaintext on disk.
        await c.put("sdk/plain/app", {"db": {"host": "h"}})
        await c.bind("sdk/plain/app", Plain)
        assert c.cache.load("sdk/plain/app") is not None
        assert not c.cache.path(name).exists()
        on_disk = _files(cache_dir)
        assert FIRST.encode() not in on_disk and SECOND.encode() not in on_disk


async def test_a_client_without_secrets_read_gets_a_clear_error_and_no_placeholder(
    node: Node, tmp_path: Path
) -> None:
    name = "sdk/secretless/app"
    _schema(node, "sdk/secretless/")
    viewer = _viewer(node)
    cache_dir = tmp_path / "cache"
    async with (AsyncAetherClient(node.url, ADMIN, backoff=FAST, cache_dir=False) as admin,
                AsyncAetherClient(node.url, viewer,
                                  backoff=FAST, cache_dir=cache_dir,
                                  client_id="secretless-client") as c):
        await admin.put(name, _value(FIRST))
        with pytest.raises(ClientError, match=r"has secret fields and this client may not "
                                              r"reveal them \(needs secrets:read"):
            await c.bind(name, App)

        fallback = App(db=Db(host="local", password=SecretStr("fallback")))
        binding = await c.bind(name, App, default=fallback)
        assert binding.source == "default" and binding.value == fallback
        assert "secrets:read" in binding.refused[1][0]["message"]

        await admin.put(name, _value(SECOND))
        await _until("version 2 refused", lambda: 2 in binding.refused)
        assert binding.value.db.password.get_secret_value() == "fallback"
        assert binding.source == "default" and binding.version == 0
        nacks: list[dict[str, object]] = []
        for _ in range(500):
            nacks = [n for n in await admin.reports(name, status="nack")
                     if n["client"] == "secretless-client"]
            if {n["version"] for n in nacks} == {1, 2}:
                break
            await asyncio.sleep(0.02)
        assert sorted(int(str(n["version"])) for n in nacks) == [1, 2]
        assert all("secrets:read" in str(n["errors"]) for n in nacks)
        assert not cache_dir.exists() or FIRST.encode() not in _files(cache_dir)
