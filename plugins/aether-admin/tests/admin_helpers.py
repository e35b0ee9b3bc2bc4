"""Helpers for the admin API tests (a module with a unique name: every test directory
has a conftest.py, so ``from conftest import`` would find another one)."""

from __future__ import annotations

from typing import Any

import httpx
from aether_admin import AdminSettings, create_app
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
