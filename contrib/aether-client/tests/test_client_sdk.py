"""The SDK against a running ``aether up``: reads and writes, errors as problem details,
token refresh and log-in again, typed bindings with sync and async callbacks, the sync
client, and the ack/nack reports."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from aether_client import (
    AetherClient,
    ApiError,
    AsyncAetherClient,
    Backoff,
    Change,
    ClientError,
    Credentials,
    Unreachable,
)
from aether_client_node import PASSWORD, Node
from pydantic import BaseModel, Field

ADMIN = Credentials(username="admin", password=PASSWORD)
FAST = Backoff(initial=0.02, maximum=0.2)


class Limits(BaseModel):
    rate: int = Field(ge=1)
    burst: int = 10


def client(node: Node, tmp_path: Path, **kwargs: Any) -> AsyncAetherClient:
    kwargs.setdefault("cache_dir", tmp_path / "cache")
    return AsyncAetherClient(node.url, kwargs.pop("credentials", ADMIN), backoff=FAST,
                             **kwargs)


async def test_reads_writes_history_rollback_diff(node: Node, tmp_path: Path) -> None:
    async with client(node, tmp_path) as c:
        first = await c.put("sdk/rw/limits", {"rate": 1})
        second = await c.put("sdk/rw/limits", {"rate": 2}, if_match=first.version,
                             comment="more")
        assert (second.version, second.value, second.comment) == (2, {"rate": 2}, "more")
        assert (await c.get("sdk/rw/limits", 1)).value == {"rate": 1}
        assert [v.version for v in await c.history("sdk/rw/limits")] == [1, 2]
        assert await c.diff("sdk/rw/limits", 1, 2) == [
            {"op": "replace", "path": "/rate", "value": 2}]
        back = await c.rollback("sdk/rw/limits", 1)
        assert (back.version, back.value) == (3, {"rate": 1})
        await c.put("sdk/rw/other", {"rate": 9})
        names = [r.name for r in await c.list_configs("sdk/rw/", page_size=1)]
        assert names == ["sdk/rw/limits", "sdk/rw/other"]

        with pytest.raises(ApiError) as stale:
            await c.put("sdk/rw/limits", {"rate": 5}, if_match=1)
        assert stale.value.status == 412 and stale.value.extra["current_version"] == 3
        with pytest.raises(ApiError) as missing:
            await c.get("sdk/rw/nothing-here")
        assert missing.value.status == 404 and missing.value.code == "not-found"
        assert (await c.get("sdk/rw/limits")).version == 3  # nothing changed


async def test_bad_credentials_and_no_server_are_clear_errors(node: Node, tmp_path: Path) -> None:
    wrong = Credentials(username="admin", password="not-the-password")
    async with client(node, tmp_path, credentials=wrong) as c:
        with pytest.raises(ApiError) as refused:
            await c.get("sdk/x")
        assert refused.value.status == 401 and "not-the-password" not in str(refused.value)
    async with client(node, tmp_path, credentials=Credentials()) as c:
        with pytest.raises(ClientError, match="no credentials"):
            await c.get("sdk/x")
    async with AsyncAetherClient("http://127.0.0.1:9", ADMIN, cache_dir=False) as c:
        with pytest.raises(Unreachable, match=r"cannot reach http://127\.0\.0\.1:9"):
            await c.get("sdk/x")


async def test_token_refresh_and_log_in_again_after_revocation(node: Node, tmp_path: Path) -> None:
    raw = httpx.AsyncClient(base_url=node.url)
    async with client(node, tmp_path) as c, raw:
        await c.put("sdk/tokens/a", {"rate": 1})
        before = c._token
        c._refresh_at = 0  # the token is due for refresh
        await c.get("sdk/tokens/a")
        assert c._token and c._token != before
        old = await raw.get("/whoami", headers={"Authorization": f"Bearer {before}"})
        assert old.status_code == 401  # refreshing revoked the old token

        # A token revoked behind the client's back: it logs in again, once.
        revoked = await raw.post("/logout", headers={"Authorization": f"Bearer {c._token}"})
        assert revoked.status_code == 204
        assert (await c.get("sdk/tokens/a")).value == {"rate": 1}

        # With a token only (no password), a revoked token is an error, not a loop.
        token = (await raw.post("/login", json={"username": "admin", "password": PASSWORD})
                 ).json()["access_token"]
        async with client(node, tmp_path, credentials=Credentials(token=token)) as only:
            assert (await only.get("sdk/tokens/a")).version == 1
            await raw.post("/logout", headers={"Authorization": f"Bearer {token}"})
            with pytest.raises(ApiError) as refused:
                await only.get("sdk/tokens/a")
            assert refused.value.status == 401


async def test_binding_swaps_typed_values_and_runs_sync_and_async_callbacks(
    node: Node, tmp_path: Path
) -> None:
    async with client(node, tmp_path) as c:
        await c.put("sdk/bind/limits", {"rate": 5})
        await c.put("sdk/bind/limits-other", {"rate": 1})  # shares the prefix: ignored
        binding = await c.bind("sdk/bind/limits", Limits)
        assert binding.value == Limits(rate=5) and binding.source == "server"
        seen_sync: list[Change[Limits]] = []
        seen_async: list[int] = []
        arrived = asyncio.Event()
        binding.on_change(seen_sync.append)

        @binding.on_change
        async def record(change: Change[Limits]) -> None:
            await asyncio.sleep(0)
            seen_async.append(change.value.rate)
            if change.version == 4:
                arrived.set()

        await c.put("sdk/bind/limits", {"rate": 6, "burst": 20})
        await c.put("sdk/bind/limits-other", {"rate": 2})
        await c.put("sdk/bind/limits", {"rate": 0})  # refused by the model
        await c.put("sdk/bind/limits", {"rate": 7})
        await asyncio.wait_for(arrived.wait(), 10)
        assert [(ch.version, ch.value) for ch in seen_sync] == [
            (2, Limits(rate=6, burst=20)), (4, Limits(rate=7))]
        assert seen_sync[0].previous == Limits(rate=5)
        assert seen_async == [6, 7]
        assert binding.value == Limits(rate=7) and binding.version == 4
        assert list(binding.refused) == [3]
        for _ in range(100):
            nacks = await c.reports("sdk/bind/limits", status="nack")
            if nacks:
                break
            await asyncio.sleep(0.02)
        assert [(n["version"], n["errors"][0]["path"]) for n in nacks] == [(3, "rate")]

        # The last good value is on disk for the next start (written just after the
        # callbacks ran, so give it a moment).
        assert c.cache is not None
        for _ in range(250):
            cached = c.cache.load("sdk/bind/limits")
            if cached is not None and cached.version == 4:
                break
            await asyncio.sleep(0.02)
        assert cached is not None and (cached.version, cached.value) == (
            4, {"rate": 7, "burst": 10})


async def test_binding_of_an_invalid_or_missing_config_is_an_error(
    node: Node, tmp_path: Path
) -> None:
    async with client(node, tmp_path, cache_dir=False) as c:
        await c.put("sdk/invalid/limits", {"rate": -1})
        with pytest.raises(ClientError, match=r"version 1 does not match Limits: rate:"):
            await c.bind("sdk/invalid/limits", Limits)
        with pytest.raises(ClientError, match="does not exist"):
            await c.bind("sdk/invalid/absent", Limits)
        # With a default, a config created later is picked up.
        binding = await c.bind("sdk/invalid/later", Limits, default=Limits(rate=1))
        assert binding.source == "default"
        created = asyncio.Event()
        binding.on_change(lambda change: created.set())
        await c.put("sdk/invalid/later", {"rate": 3})
        await asyncio.wait_for(created.wait(), 10)
        assert binding.value == Limits(rate=3) and binding.source == "server"


def test_sync_client_binds_in_a_background_thread(node: Node, tmp_path: Path) -> None:
    with AetherClient(node.url, ADMIN, cache_dir=tmp_path / "c", backoff=FAST) as c:
        c.put("sdk/sync/limits", {"rate": 1})
        binding = c.bind("sdk/sync/limits", Limits)
        done = threading.Event()
        threads: list[str] = []

        def changed(change: Change[Limits]) -> None:
            threads.append(threading.current_thread().name)
            if change.version == 3:
                done.set()

        binding.on_change(changed)
        c.put("sdk/sync/limits", {"rate": 2})
        c.put("sdk/sync/limits", {"rate": 3})
        assert done.wait(10)
        assert binding.value.rate == 3 and threads == ["aether-client", "aether-client"]

        events = c.watch("sdk/sync/", since=0)
        assert [(e.name, e.version) for e in (next(events) for _ in range(3))] == [
            ("sdk/sync/limits", 1), ("sdk/sync/limits", 2), ("sdk/sync/limits", 3)]
        events.close()  # type: ignore[attr-defined]


def test_ack_reports_are_validated_and_need_read_permission(node: Node) -> None:
    admin = node.admin_headers()
    bad = httpx.post(f"{node.url}/acks", headers=admin, json={
        "name": "sdk/acks/x", "version": 0, "client": "c", "status": "maybe"})
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")
    unknown = httpx.post(f"{node.url}/acks", headers=admin, json={
        "name": "sdk/acks/x", "version": 1, "client": "c", "status": "ack", "extra": 1})
    assert unknown.status_code == 400
    assert httpx.post(f"{node.url}/acks", json={
        "name": "sdk/acks/x", "version": 1, "client": "c", "status": "ack"}).status_code == 401
    assert httpx.get(f"{node.url}/acks", params={"name": "sdk/acks/x"},
                     headers=admin).json() == {"items": []}

    created = httpx.post(f"{node.url}/users", headers=admin, json={
        "username": "no-roles", "password": "no-roles-password", "roles": []})
    assert created.status_code == 201, created.text
    token = httpx.post(f"{node.url}/login", json={
        "username": "no-roles", "password": "no-roles-password"}).json()["access_token"]
    denied = httpx.post(f"{node.url}/acks", headers={"Authorization": f"Bearer {token}"},
                        json={"name": "sdk/acks/x", "version": 1, "client": "c",
                              "status": "nack"})
    assert denied.status_code == 403
    assert httpx.get(f"{node.url}/acks", params={"name": "sdk/acks/x"},
                     headers=admin).json() == {"items": []}
