"""``/secrets`` and ``/keys`` over HTTP: values only with ``secrets:read``, changes only
with ``secrets:write``, and no plaintext in any other response, problem body or log."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from admin_helpers import ADMIN_PASSWORD, assert_problem, fast_passwords, login
from aether_admin import create_app
from litestar.testing import TestClient

from aether_core import ConfigManager, MemoryStorage
from aether_core.auth.jwt import JwtAuth
from aether_core.auth.keys import KeySet
from aether_core.auth.roles import Role, RoleTable, Rule
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager

MARKER = "canary-http-a91f0c"
ROLES = {
    "vault-reader": Role(rules=[Rule(actions=["secrets:read"], resources=["app/*"])]),
    "vault-writer": Role(rules=[Rule(actions=["secrets:write"], resources=["app/*"])]),
}
PEOPLE = {"reader": ["vault-reader"], "writer": ["vault-writer"], "ed": ["editor"]}


class Seen:
    """Every response the test received, to scan for the plaintext afterwards."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []

    def hook(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seen: Seen
          ) -> Iterator[tuple[TestClient[Any], dict[str, dict[str, str]]]]:
    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    manager = ConfigManager(MemoryStorage())
    secrets = SecretManager(manager, LocalKeyProvider(tmp_path / "secrets.keys"), overlap=600)
    auth = JwtAuth(KeySet.build("HS256", "k1", "0123456789abcdef0123456789abcdef-secrets"),
                   roles=RoleTable(ROLES), passwords=fast_passwords())
    app = create_app(manager, auth=auth, secrets=secrets, close_manager=True)
    with TestClient(app) as client:
        client.event_hooks = {"response": [seen.hook]}
        headers = {"admin": login(client, "admin", ADMIN_PASSWORD)}
        for name, roles in PEOPLE.items():
            created = client.post("/users", headers=headers["admin"], json={
                "username": name, "password": f"{name}-password", "roles": roles})
            assert created.status_code == 201, created.text
            headers[name] = login(client, name, f"{name}-password")
        yield client, headers


def value_endpoint(response: httpx.Response) -> bool:
    path = response.request.url.path
    return response.status_code == 200 and (path.endswith("/value") or path.endswith("/values"))


def assert_no_plaintext_outside_value_reads(seen: Seen, logs: list[dict[str, Any]],
                                            reads: bool = True) -> None:
    assert len(seen.responses) >= 10, "the scan saw the responses"
    assert any(value_endpoint(r) for r in seen.responses) == reads
    leaked = [r.request.url.path for r in seen.responses
              if MARKER in r.text and not value_endpoint(r)]
    assert leaked == []
    assert MARKER not in repr(logs)


def test_values_need_secrets_read_and_changes_secrets_write(
    vault: tuple[TestClient[Any], dict[str, dict[str, str]]], seen: Seen,
    logs: list[dict[str, Any]],
) -> None:
    client, h = vault
    created = client.put("/secrets/app/db/password", headers=h["writer"],
                         json={"value": MARKER, "comment": "first"})
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    assert created.json()["current"] == 1 and "value" not in created.json()

    value = client.get("/secrets/app/db/password/value", headers=h["reader"])
    assert value.status_code == 200 and value.json()["value"] == MARKER
    assert value.headers["cache-control"] == "no-store"
    assert value.json()["labels"] == ["current"]

    # The writer sees metadata but not the value; the reader cannot change anything.
    assert client.get("/secrets/app/db/password", headers=h["writer"]).status_code == 200
    body = assert_problem(client.get("/secrets/app/db/password/value", headers=h["writer"]), 403)
    assert "secrets:read" in body["detail"]
    for method, path, payload in [
        ("PUT", "/secrets/app/db/password", {"value": "overwritten"}),
        ("POST", "/secrets/app/db/password/stage", {"value": "staged"}),
        ("POST", "/secrets/app/db/password/rollback", {}),
        ("DELETE", "/secrets/app/db/password", None),
    ]:
        refused = client.request(method, path, headers=h["reader"], json=payload)
        assert "secrets:write" in assert_problem(refused, 403)["detail"]
    # An editor of configs has no secret permission at all; nobody outside app/*.
    assert_problem(client.get("/secrets/app/db/password", headers=h["ed"]), 403)
    assert_problem(client.get("/secrets/app/db/password/value", headers=h["ed"]), 403)
    assert_problem(client.put("/secrets/other/x", headers=h["writer"], json={"value": 1}), 403)
    assert_problem(client.get("/secrets/app/db/password/value"), 401)
    unchanged = client.get("/secrets/app/db/password", headers=h["admin"])
    assert unchanged.headers["etag"] == '"1"' and unchanged.json()["pending"] is None

    listing = client.get("/secrets/?prefix=app/", headers=h["reader"]).json()
    assert [i["name"] for i in listing["items"]] == ["app/db/password"]
    assert client.get("/secrets/", headers=h["ed"]).json()["items"] == []

    audit = [e for e in logs if e["event"] == "audit" and e.get("action") == "secrets:write"]
    assert any(e["status"] == 201 and e["who"] == "writer" for e in audit)
    assert any(e["status"] == 403 and e["who"] == "reader" for e in audit)
    reads = [e for e in logs if e["event"] == "audit" and e.get("action") == "secrets:read"]
    assert any(e["status"] == 200 and e["who"] == "reader" and e["method"] == "GET"
               and e["resource"] == "app/db/password" for e in reads)
    assert_no_plaintext_outside_value_reads(seen, logs)


def test_staged_rotation_over_http(
    vault: tuple[TestClient[Any], dict[str, dict[str, str]]], seen: Seen,
    logs: list[dict[str, Any]],
) -> None:
    client, h = vault
    w, r = h["writer"], h["reader"]
    assert client.put("/secrets/app/api", headers=w, json={"value": MARKER + "-1"}).is_success
    staged = client.post("/secrets/app/api/stage", headers=w,
                         json={"value": MARKER + "-2", "window_seconds": 300})
    assert staged.status_code == 200 and staged.json()["pending"] == 2
    pending = client.get("/secrets/app/api/value?label=pending", headers=r).json()
    assert pending["value"] == MARKER + "-2"

    body = assert_problem(client.post("/secrets/app/api/promote", headers=w,
                                      json={"version": 1}), 409)
    assert body["type"].endswith("/rotation-refused")
    assert "not pending" in body["detail"]
    promoted = client.post("/secrets/app/api/promote", headers=w, json={"version": 2})
    assert (promoted.json()["current"], promoted.json()["previous"]) == (2, 1)

    both = client.get("/secrets/app/api/values", headers=r).json()["values"]
    assert [(v["version"], v["value"]) for v in both] == [(2, MARKER + "-2"), (1, MARKER + "-1")]
    diff = client.get("/secrets/app/api/diff?from=1&to=2", headers=w).json()
    assert diff == {"name": "app/api", "from": 1, "to": 2, "result": "changed"}

    rolled = client.post("/secrets/app/api/rollback", headers=w, json={})
    assert rolled.json()["current"] == 1
    assert client.get("/secrets/app/api/value", headers=r).json()["value"] == MARKER + "-1"
    assert_no_plaintext_outside_value_reads(seen, logs)


def test_bad_requests_change_nothing(
    vault: tuple[TestClient[Any], dict[str, dict[str, str]]], seen: Seen,
    logs: list[dict[str, Any]],
) -> None:
    client, h = vault
    w = h["admin"]
    assert client.put("/secrets/app/k", headers=w, json={"value": MARKER}).status_code == 201
    cases = [
        (client.put("/secrets/app/k", headers=w, json={"value": MARKER, "colour": 1}), 400),
        (client.put("/secrets/app/k", headers={**w, "If-Match": '"7"'},
                    json={"value": MARKER + "x"}), 412),
        (client.put("/secrets/app/k", headers=w, json={"value": None}), 400),
        (client.put("/secrets/app/x/stage", headers=w, json={"value": 1}), 405),
        (client.put("/secrets/app/values", headers=w, json={"value": 1}), 405),
        (client.post("/secrets/app/k/promote", headers=w, json={"version": 0}), 400),
        (client.post("/secrets/app/k/promote", headers=w, json={"version": 1}), 409),
        (client.post("/secrets/app/k/rollback", headers=w, json={}), 409),
        (client.post("/secrets/app/k/stage", headers=w,
                     json={"value": MARKER, "window_seconds": -1}), 400),
        (client.get("/secrets/app/k/value?label=secret", headers=w), 400),
        (client.get("/secrets/app/missing/value", headers=w), 404),
        (client.get("/secrets/app/k/diff?from=1&to=5", headers=w), 404),
    ]
    for response, status in cases:
        assert_problem(response, status)
    head = client.get("/secrets/app/k", headers=w)
    assert head.headers["etag"] == '"1"' and head.json()["pending"] is None
    assert_no_plaintext_outside_value_reads(seen, logs, reads=False)


def test_key_rotation_over_http(
    vault: tuple[TestClient[Any], dict[str, dict[str, str]]], seen: Seen,
    logs: list[dict[str, Any]],
) -> None:
    client, h = vault
    for n in range(5):
        client.put(f"/secrets/app/s{n}", headers=h["admin"], json={"value": f"{MARKER}-{n}"})
    assert_problem(client.post("/keys/rotate", headers=h["writer"]), 403)  # not on "*"
    keys = client.get("/keys", headers=h["admin"]).json()
    assert (keys["key_provider"], keys["versions"], keys["current"]) == ("local", ["1"], "1")
    started = client.post("/keys/rotate", headers=h["admin"])
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 10
    while (status := client.get("/keys", headers=h["admin"]).json())["rotating"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.02)
    assert status["versions"] == ["2"] and status["keyring"]["rotation"] is None
    assert status["keyring"]["last"]["retired"] == ["1"]
    assert status["keyring"]["last"]["rewrapped"] == 5
    for n in range(5):
        value = client.get(f"/secrets/app/s{n}/value", headers=h["reader"]).json()["value"]
        assert value == f"{MARKER}-{n}"
    assert_no_plaintext_outside_value_reads(seen, logs)


def test_a_node_without_secrets_answers_404(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", ADMIN_PASSWORD)
    auth = JwtAuth(KeySet.build("HS256", "k1", "0123456789abcdef0123456789abcdef-secrets"),
                   passwords=fast_passwords())
    app = create_app(ConfigManager(MemoryStorage()), auth=auth, close_manager=True)
    with TestClient(app) as client:
        headers = login(client, "admin", ADMIN_PASSWORD)
        body = assert_problem(client.get("/secrets/app/x", headers=headers), 404)
        assert "no [secrets]" in body["detail"]
