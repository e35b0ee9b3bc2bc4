"""Fixtures for the admin API tests: an app over a memory store, clients, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from admin_helpers import ADMIN_PASSWORD, USERS, login, make_app, make_auth
from aether_admin import AdminSettings, create_app
from aether_admin.service import Listener
from litestar.testing import TestClient

from aether_core import ConfigManager, MemoryStorage


@pytest.fixture
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", ADMIN_PASSWORD)


@pytest.fixture
def api(admin_env: None) -> Iterator[TestClient[Any]]:
    with TestClient(make_app()) as client:
        yield client


@pytest.fixture
def admin(api: TestClient[Any]) -> dict[str, str]:
    return login(api, "admin", ADMIN_PASSWORD)


@pytest.fixture
def team(api: TestClient[Any], admin: dict[str, str]) -> dict[str, dict[str, str]]:
    """Headers of a logged-in user per name in USERS, plus "admin"."""
    headers = {"admin": admin}
    for name, roles in USERS.items():
        response = api.post("/users", headers=admin, json={
            "username": name, "password": f"{name}-password", "roles": roles})
        assert response.status_code == 201, response.text
        headers[name] = login(api, name, f"{name}-password")
    return headers


@pytest.fixture
async def server(admin_env: None) -> AsyncIterator[Listener]:
    """The app served by a real uvicorn on a free loopback port, in this event loop."""
    manager = ConfigManager(MemoryStorage())
    await manager.start()
    auth = make_auth()
    app = create_app(manager, auth=auth, settings=AdminSettings(watch_keepalive=0.2))
    listener = Listener(app, "127.0.0.1", 0)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()
        await auth.close()
        await manager.close()
