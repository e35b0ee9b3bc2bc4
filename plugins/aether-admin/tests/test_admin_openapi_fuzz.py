"""schemathesis, from the app's own OpenAPI document: generated requests against a real
server never get a 5xx, and every documented response matches its documented schema."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from admin_helpers import ADMIN_PASSWORD, make_auth
from aether_admin import AdminSettings, create_app
from aether_admin.service import Listener
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from aether_core import ConfigManager, MemoryStorage

EXAMPLES_PER_OPERATION = 42
MIN_REQUESTS = 1000


class LiveServer:
    """uvicorn with the admin API in a thread of its own (schemathesis calls are sync)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop = asyncio.Event()
        self.url = ""
        self.thread = threading.Thread(target=self.loop.run_until_complete,
                                       args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self.stop = asyncio.Event()
        manager = ConfigManager(MemoryStorage())
        await manager.start()
        auth = make_auth()
        listener = Listener(create_app(manager, auth=auth, settings=AdminSettings(
            login_failures_per_user=1000, login_failures_per_address=10_000,
            watch_keepalive=0.05)), "127.0.0.1", 0)
        await listener.start()
        self.url = listener.url
        self.ready.set()
        await self.stop.wait()
        await listener.stop()
        await auth.close()
        await manager.close()

    def __enter__(self) -> LiveServer:
        self.thread.start()
        assert self.ready.wait(30), "the admin API did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def live(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, str]]]:
    monkeypatch_module.setenv("AETHER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    with LiveServer() as server:
        token = httpx.post(f"{server.url}/login", json={
            "username": "admin", "password": ADMIN_PASSWORD}).json()["access_token"]
        # Something to read, so GETs also take their success paths.
        headers = {"Authorization": f"Bearer {token}"}
        httpx.put(f"{server.url}/configs/a", headers=headers, json={"value": {"x": 1}})
        yield server.url, headers


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.slow
def test_generated_requests_match_the_documented_api(
    live: tuple[str, dict[str, str]],
) -> None:
    url, headers = live
    # Logging out, refreshing (which revokes) or deleting users would turn the rest of
    # the run into 401s; /watch streams forever. Everything else is generated.
    skipped = {("POST", "/logout"), ("POST", "/token/refresh"), ("GET", "/watch"),
               ("DELETE", "/users/{username}")}
    api = schemathesis.openapi.from_url(f"{url}/docs/openapi.json")
    operations = 0
    statuses: list[int] = []
    for result in api.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in skipped:
            continue
        operations += 1
        before = len(statuses)

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        def run(case: Any) -> None:
            response = case.call_and_validate(
                base_url=url, headers={} if case.path == "/login" else headers, timeout=10,
                checks=[not_a_server_error, response_schema_conformance],
            )
            statuses.append(response.status_code)

        started = time.perf_counter()
        run()
        print(operation.method, operation.path, len(statuses) - before,
              sorted(set(statuses[before:])), f"{time.perf_counter() - started:.2f}s")
    assert operations >= 20
    # The run reached success paths and refusals, and never a server error.
    assert {200, 201, 400, 404} <= set(statuses) and max(statuses) < 500
    assert len(statuses) >= MIN_REQUESTS, f"only {len(statuses)} generated requests ran"
