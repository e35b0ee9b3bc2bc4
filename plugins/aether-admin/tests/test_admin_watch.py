"""/watch over a real uvicorn server: SSE events, resume with Last-Event-ID, 410, RBAC."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from admin_helpers import ADMIN_PASSWORD, assert_problem
from aether_admin.app import admin_context
from aether_admin.service import Listener


async def _login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    response = await client.post("/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse an SSE stream into {"id", "event", "data"} dicts (comments are skipped)."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")


async def _take(client: httpx.AsyncClient, n: int, **kwargs: Any) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with client.stream("GET", "/watch", **kwargs) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in _events(response):
            got.append(event)
            if len(got) == n:
                break
    return got


async def test_watch_streams_resumes_and_filters(server: Listener) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        admin = await _login(client, "admin", ADMIN_PASSWORD)
        for name, value in (("app/a", 1), ("other/x", 0), ("app/b", 2), ("app/a", 3)):
            r = await client.put(f"/configs/{name}", headers=admin, json={"value": value})
            assert r.status_code in (200, 201)

        events = await asyncio.wait_for(
            _take(client, 3, params={"prefix": "app/", "since": 0}, headers=admin), 10)
        assert [(e["data"]["name"], e["data"]["value"]) for e in events] == [
            ("app/a", 1), ("app/b", 2), ("app/a", 3)]
        assert [int(e["id"]) for e in events] == [e["data"]["revision"] for e in events]
        assert all(e["event"] == "put" for e in events)

        # Resume after the first event: the next two, then a live one, each exactly once.
        async def later_write() -> None:
            await asyncio.sleep(0.3)
            await client.delete("/configs/app/b", headers=admin)

        writer = asyncio.create_task(later_write())
        resumed = await asyncio.wait_for(_take(
            client, 3, params={"prefix": "app/"},
            headers={**admin, "Last-Event-ID": events[0]["id"]}), 10)
        await writer
        assert [(e["data"]["name"], e["event"]) for e in resumed] == [
            ("app/b", "put"), ("app/a", "put"), ("app/b", "delete")]
        assert resumed[2]["data"]["value"] is None

        # A user of the billing role sees billing/* only, never billing/vault*.
        await client.post("/users", headers=admin, json={
            "username": "bill", "password": "bill-password", "roles": ["billing"]})
        bill = await _login(client, "bill", "bill-password")
        for name in ("billing/vault-key", "billing/db", "app/c", "billing/api"):
            await client.put(f"/configs/{name}", headers=admin, json={"value": name})
        seen = await asyncio.wait_for(_take(client, 2, params={"since": 0}, headers=bill), 10)
        assert [e["data"]["name"] for e in seen] == ["billing/db", "billing/api"]


async def test_watch_bad_resume_points(server: Listener) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        admin = await _login(client, "admin", ADMIN_PASSWORD)
        for i in range(4):
            await client.put("/configs/app/a", headers=admin, json={"value": i})
        manager = admin_context(server.app).manager
        await manager.storage.compact(3)
        gone = await client.get("/watch", params={"since": 1}, headers=admin)
        body = assert_problem(gone, 410)
        assert body["oldest_revision"] == 3
        gone = await client.get("/watch", headers={**admin, "Last-Event-ID": "2"})
        assert assert_problem(gone, 410)["oldest_revision"] == 3
        assert_problem(await client.get("/watch", headers={**admin, "Last-Event-ID": "abc"}),
                       400)
        assert_problem(await client.get("/watch", params={"since": -1}, headers=admin), 400)
        assert_problem(await client.get("/watch"), 401)
        # From the oldest kept revision on, it works.
        events = await asyncio.wait_for(
            _take(client, 1, params={"since": 3}, headers=admin), 10)
        assert events[0]["data"]["revision"] == 4


async def test_health_ready_metrics(server: Listener) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        ready = (await client.get("/ready")).json()
        assert ready["status"] == "ready" and ready["leader"] == "local"
        admin = await _login(client, "admin", ADMIN_PASSWORD)
        await client.put("/configs/m", headers=admin, json={"value": 1})
        await client.get("/configs/m", headers=admin)
        await client.get("/configs/nope", headers=admin)
        text = (await client.get("/metrics")).text
        assert 'aether_http_requests_total{method="PUT",route="/configs/{name}",' \
               'status="201"} 1.0' in text
        assert 'route="/configs/{name}",status="404"} 1.0' in text
        assert "aether_http_request_duration_seconds_bucket" in text
        revision = await admin_context(server.app).manager.revision()
        assert f"aether_revision {float(revision)}" in text
        assert "aether_watch_subscribers" in text
        # Readiness follows the transport: without a leader the node is not ready.
        transport = admin_context(server.app).transport
        machine = transport._state_machine  # type: ignore[attr-defined]
        transport._state_machine = None  # type: ignore[attr-defined]
        try:
            assert_problem(await client.get("/ready"), 503)
        finally:
            transport._state_machine = machine  # type: ignore[attr-defined]


async def test_an_idle_stream_gets_keep_alives_and_revoking_its_token_ends_it(
    server: Listener,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        admin = await _login(client, "admin", ADMIN_PASSWORD)
        other = await _login(client, "admin", ADMIN_PASSWORD)  # a second session
        async with client.stream("GET", "/watch", params={"since": 0}, headers=admin) as r:
            assert r.status_code == 200
            lines = r.aiter_lines()
            async with asyncio.timeout(10):
                while (await anext(lines)) != ": keep-alive":  # keepalive is 0.2 s here
                    pass
                # Another session's logout does not touch this stream; a write still
                # arrives after it.
                assert (await client.post("/logout", headers=other)).status_code == 204
                await client.put("/configs/app/k", headers=admin, json={"value": 1})
                while not (await anext(lines)).startswith("data: "):
                    pass
                assert (await client.post("/logout", headers=admin)).status_code == 204
                while (line := await anext(lines)) != "event: error":
                    assert not line.startswith("data: "), line
                error = json.loads((await anext(lines)).removeprefix("data: "))
                assert error["status"] == 401 and "revoked" in error["detail"]
                rest = [line async for line in lines]  # the server ended the stream
                assert not any(line.startswith("data: ") for line in rest)
        assert_problem(await client.get("/watch", headers=admin), 401)
