"""Fixtures for the admin API tests: an app over a memory store, clients, tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aether_admin import AdminSettings, create_app
from aether_admin.service import Listener
from argon2 import PasswordHasher
from litestar import Litestar
from litestar.testing import TestClient

from aether_core import ConfigManager, MemoryStorage
from aether_core.auth.jwt import JwtAuth
from aether_core.auth.keys import KeySet
from aether_core.auth.roles import Role, RoleTable, Rule
from aether_core.auth.users import Passwords

ADMIN_PASSWORD = "admin-password-123"
HS_KEY = "0123456789abcdef0123456789abcdef-test-key"
#: Users the tests create, with their roles; every password is "<name>-password".
USERS = {"ed": ["editor"], "vi": ["viewer"], "bill": ["billing"], "nobody": []}
#: A custom role: everything on billing/*, except billing/vault*, which is denied.
CUSTOM_ROLES = {
    "billing": Role(rules=[
        Rule(actions=["configs:*", "schemas:read"], resources=["billing/*"]),
        Rule(actions=["*"], resources=["billing/vault*"], effect="deny"),
    ]),
}


def fast_passwords() -> Passwords:
    # Cheaper argon2 parameters keep the suite fast; production uses argon2-cffi's
    # defaults (tested in tests/test_auth_jwt.py).
    return Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def make_auth(keys: KeySet | None = None, **kwargs: Any) -> JwtAuth:
    return JwtAuth(
        keys or KeySet.build("HS256", "k1", HS_KEY),
        roles=RoleTable(CUSTOM_ROLES),
        passwords=fast_passwords(),
        **kwargs,
    )


def make_app(auth: JwtAuth | None = None, **settings: Any) -> Litestar:
    return create_app(
        ConfigManager(MemoryStorage()), auth=auth or make_auth(),
        settings=AdminSettings(**settings), close_manager=True,
    )


def login(client: TestClient[Any] | httpx.Client, username: str, password: str) -> dict[str, str]:
    response = client.post("/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://aether.dev/problems/")
    assert body["title"] and isinstance(body["detail"], str)
    for secret in (ADMIN_PASSWORD, HS_KEY, *(f"{u}-password" for u in USERS)):
        assert secret not in response.text
    return body


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
