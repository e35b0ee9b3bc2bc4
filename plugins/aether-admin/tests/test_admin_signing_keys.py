"""``/auth/keys`` over HTTP: only ``auth:keys`` (admins) may see or rotate the JWT
signing keys; bad input is a problem+json that changes nothing; after a rotation new
tokens name the new key and tokens signed before it keep working."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from admin_helpers import ADMIN_PASSWORD, HS_KEY, assert_problem, login, make_auth
from aether_admin import create_app
from litestar.testing import TestClient

from aether_core import ConfigManager, MemoryStorage
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient[Any]]:
    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    manager = ConfigManager(MemoryStorage())
    secrets = SecretManager(manager, LocalKeyProvider(tmp_path / "secrets.keys"))
    app = create_app(manager, auth=make_auth(), secrets=secrets, close_manager=True)
    with TestClient(app) as client:
        yield client


def _kid(headers: dict[str, str]) -> str:
    kid: str = pyjwt.get_unverified_header(headers["Authorization"].split()[1])["kid"]
    return kid


def test_admins_rotate_the_signing_key_and_old_tokens_keep_working(
        api: TestClient[Any]) -> None:
    admin = login(api, "admin", ADMIN_PASSWORD)
    assert api.post("/users", headers=admin, json={
        "username": "ed", "password": "ed-password", "roles": ["editor"]}).is_success
    editor = login(api, "ed", "ed-password")
    assert _kid(admin) == "k1"

    before = api.get("/auth/keys", headers=admin)
    assert before.status_code == 200, before.text
    assert before.json()["signing_kid"] == "k1" and before.json()["stored"] is False

    # Not an admin, no token, bad bodies: refused, nothing changed.
    assert_problem(api.post("/auth/keys/rotate", headers=editor, json={}), 403)
    assert_problem(api.get("/auth/keys", headers=editor), 403)
    assert_problem(api.post("/auth/keys/rotate", json={}), 401)
    for body in ({"propagation_seconds": -1}, {"propagation_seconds": 301},
                 {"propagation_seconds": "soon"}, {"kid": "mine"}):
        assert_problem(api.post("/auth/keys/rotate", headers=admin, json=body), 400)
    assert api.get("/auth/keys", headers=admin).json() == before.json()

    rotated = api.post("/auth/keys/rotate", headers=admin, json={"propagation_seconds": 0})
    assert rotated.status_code == 200, rotated.text
    status = rotated.json()
    new_kid = status["signing_kid"]
    assert new_kid != "k1" and status["stored"] is True
    assert {(k["kid"], k["state"]) for k in status["keys"]} == {
        ("k1", "previous"), (new_kid, "current")}
    assert HS_KEY not in rotated.text and "key\"" not in rotated.text

    # Tokens from before the rotation still work; new ones name the new key.
    assert api.get("/whoami", headers=editor).json()["username"] == "ed"
    assert api.get("/whoami", headers=admin).is_success
    fresh = login(api, "ed", "ed-password")
    assert _kid(fresh) == new_kid
    assert api.get("/whoami", headers=fresh).json()["username"] == "ed"

    # A second rotation inside the overlap would cut old tokens off: 409, no change.
    again = api.post("/auth/keys/rotate", headers=admin, json={"propagation_seconds": 0})
    assert assert_problem(again, 409)["title"]
    assert api.get("/auth/keys", headers=admin).json()["signing_kid"] == new_kid


def test_rotation_without_a_key_store_is_a_404_problem(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    app = create_app(ConfigManager(MemoryStorage()), auth=make_auth(), close_manager=True)
    with TestClient(app) as client:
        admin = login(client, "admin", ADMIN_PASSWORD)
        body = assert_problem(client.post("/auth/keys/rotate", headers=admin), 404)
        assert "[secrets] key provider" in body["detail"]
        assert client.get("/auth/keys", headers=admin).json()["signing_kid"] == "k1"
