"""Log-in, tokens and users through the API — and every way a token can be forged."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from admin_helpers import ADMIN_PASSWORD, assert_problem, login, make_app, make_auth
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from litestar.testing import TestClient
from structlog.testing import capture_logs

from aether_core.auth.keys import KeySet

Headers = dict[str, str]

#: Every route that needs a token, with a body where it takes one.
PROTECTED: list[tuple[str, str, Any]] = [
    ("GET", "/configs", None),
    ("POST", "/configs", {"name": "a", "value": 1}),
    ("GET", "/configs/billing/db", None),
    ("PUT", "/configs/billing/db", {"value": 1}),
    ("DELETE", "/configs/billing/db", None),
    ("GET", "/configs/billing/db/versions", None),
    ("POST", "/configs/billing/db/rollback", {"to_version": 1}),
    ("GET", "/configs/billing/db/diff?from=1&to=2", None),
    ("GET", "/schemas", None),
    ("GET", "/schemas/db", None),
    ("PUT", "/schemas/db", {"schema": {"type": "object"}}),
    ("POST", "/schemas/db/check", {"schema": {"type": "object"}}),
    ("GET", "/watch", None),
    ("GET", "/users", None),
    ("POST", "/users", {"username": "x", "password": "password-x", "roles": []}),
    ("GET", "/users/admin", None),
    ("PUT", "/users/admin/password", {"password": "new-password"}),
    ("PUT", "/users/admin/roles", {"roles": ["viewer"]}),
    ("DELETE", "/users/admin", None),
    ("GET", "/roles", None),
    ("GET", "/whoami", None),
    ("POST", "/token/refresh", None),
    ("POST", "/logout", None),
]


def _pem(key: ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class Forger:
    """Tokens for an EdDSA-configured app: the real key, and every kind of fake."""

    def __init__(self) -> None:
        self.private = ed25519.Ed25519PrivateKey.generate()
        self.keys = KeySet.build("EdDSA", "ed1", _pem(self.private))

    def claims(self, uid: str, **override: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"sub": "admin", "uid": uid, "iss": "aether", "aud": "aether", "iat": now,
                "nbf": now, "exp": now + 600, "jti": uuid.uuid4().hex, **override}

    def sign(self, claims: dict[str, Any], kid: str = "ed1", key: Any = None) -> str:
        return jwt.encode(claims, key or self.private, algorithm="EdDSA", headers={"kid": kid})


@pytest.fixture
def ed_api(admin_env: None) -> Iterator[tuple[TestClient[Any], Forger]]:
    forger = Forger()
    with TestClient(make_app(make_auth(forger.keys))) as client:
        yield client, forger


def test_real_token_works_and_forged_ones_get_401(ed_api: tuple[TestClient[Any], Forger]) -> None:
    client, forger = ed_api
    admin = login(client, "admin", ADMIN_PASSWORD)
    real = admin["Authorization"].split()[1]
    uid = jwt.decode(real, options={"verify_signature": False})["uid"]
    assert client.get("/whoami", headers=admin).json() == {"username": "admin",
                                                           "roles": ["admin"]}
    # A token that is right in every way but made by the test: proves the forger is sound.
    assert client.get("/whoami", headers={
        "Authorization": f"Bearer {forger.sign(forger.claims(uid))}"}).status_code == 200

    public_pem = forger.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header, payload, signature = real.split(".")
    tampered_claims = {**jwt.decode(real, options={"verify_signature": False}), "sub": "root"}
    client.post("/users", headers=admin, json={"username": "gone", "password": "gone-password",
                                               "roles": ["admin"]})
    gone = login(client, "gone", "gone-password")
    assert client.delete("/users/gone", headers=admin).status_code == 204
    revoked = login(client, "admin", ADMIN_PASSWORD)
    assert client.post("/logout", headers=revoked).status_code == 204

    now = int(time.time())
    forged = {
        "alg none": f"{_b64({'alg': 'none', 'kid': 'ed1', 'typ': 'JWT'})}."
                    f"{_b64(forger.claims(uid))}.",
        "HS256 with the public key": _hs256_with(public_pem, forger.claims(uid)),
        "tampered payload": f"{header}.{_b64(tampered_claims)}.{signature}",
        "bad signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "another key, same kid": forger.sign(
            forger.claims(uid), key=ed25519.Ed25519PrivateKey.generate()),
        "unknown kid": forger.sign(forger.claims(uid), kid="ed-unknown"),
        "no kid": jwt.encode(forger.claims(uid), forger.private, algorithm="EdDSA"),
        "expired": forger.sign(forger.claims(uid, iat=now - 4000, nbf=now - 4000,
                                             exp=now - 3000)),
        "not yet valid": forger.sign(forger.claims(uid, nbf=now + 3000, exp=now + 4000)),
        "wrong iss": forger.sign(forger.claims(uid, iss="someone-else")),
        "wrong aud": forger.sign(forger.claims(uid, aud="another-service")),
        "no jti": forger.sign({k: v for k, v in forger.claims(uid).items() if k != "jti"}),
        "no exp": forger.sign({k: v for k, v in forger.claims(uid).items() if k != "exp"}),
        "revoked jti": revoked["Authorization"].split()[1],
        "deleted user": gone["Authorization"].split()[1],
        "another incarnation of the user": forger.sign(forger.claims("old-uid")),
        "garbage": "not.a.token",
    }
    for reason, token in forged.items():
        for method, path, body in PROTECTED:
            response = client.request(method, path, json=body,
                                      headers={"Authorization": f"Bearer {token}"})
            problem = assert_problem(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer"), (reason, path)
            assert token not in response.text, reason
            assert problem["instance"] == path.split("?")[0]
    # Nothing was written by any of them.
    assert client.get("/configs", headers=admin).json()["items"] == []
    assert [u["username"] for u in client.get("/users", headers=admin).json()["items"]] == [
        "admin"]


def _hs256_with(secret: bytes, claims: dict[str, Any]) -> str:
    # PyJWT refuses to HMAC with a PEM key, which is the point; build the token by hand.
    import hashlib
    import hmac

    signing_input = f"{_b64({'alg': 'HS256', 'kid': 'ed1', 'typ': 'JWT'})}.{_b64(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_missing_or_malformed_authorization(api: TestClient[Any]) -> None:
    for headers in ({}, {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer "}):
        assert_problem(api.get("/configs", headers=headers), 401)


def test_jwks_lists_public_keys_only(ed_api: tuple[TestClient[Any], Forger],
                                     api: TestClient[Any]) -> None:
    client, _ = ed_api
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert [(k["kid"], k["alg"], k["kty"]) for k in keys] == [("ed1", "EdDSA", "OKP")]
    assert "d" not in keys[0]
    assert api.get("/.well-known/jwks.json").json() == {"keys": []}


def test_login_failures_are_401_then_throttled(admin_env: None) -> None:
    app = make_app(login_failures_per_user=3, login_failures_per_address=6)
    with capture_logs() as logs, TestClient(app) as c:
        for _ in range(3):
            body = assert_problem(c.post("/login", json={"username": "admin",
                                                         "password": "wrong-password"}), 401)
            assert body["detail"] == "invalid username or password"
        throttled = c.post("/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert_problem(throttled, 429)
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        unknown = assert_problem(c.post("/login", json={"username": "nobody-here",
                                                        "password": "wrong-password"}), 401)
        assert unknown["detail"] == "invalid username or password"  # same as a real user
        for i in range(2):
            c.post("/login", json={"username": f"ghost{i}", "password": "wrong-password"})
        # The address has now failed 6 times: every user is refused from it.
        assert_problem(c.post("/login", json={"username": "someone", "password": "x" * 9}), 429)
    # Every refused log-in is in the audit log, with no password in it.
    refused = [e for e in logs if e["event"] == "audit" and e["outcome"] == "denied"]
    assert len(refused) == 8 and {e["status"] for e in refused} == {401, 429}
    assert {"admin", "nobody-here", "someone"} <= {e["who"] for e in refused}
    assert "wrong-password" not in repr(logs) and ADMIN_PASSWORD not in repr(logs)


def test_refresh_revokes_the_old_token(api: TestClient[Any], admin: Headers) -> None:
    refreshed = api.post("/token/refresh", headers=admin)
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    new = {"Authorization": f"Bearer {body['access_token']}"}
    assert api.get("/whoami", headers=new).status_code == 200
    assert_problem(api.get("/whoami", headers=admin), 401)
    assert api.post("/logout", headers=new).status_code == 204
    assert_problem(api.get("/whoami", headers=new), 401)


def test_user_administration(api: TestClient[Any], admin: Headers) -> None:
    created = api.post("/users", headers=admin, json={
        "username": "carol", "password": "carol-password", "roles": ["editor"]})
    assert created.status_code == 201
    assert created.json() == {"username": "carol", "roles": ["editor"], "version": 1}
    assert_problem(api.post("/users", headers=admin, json={
        "username": "carol", "password": "carol-password"}), 409)
    assert_problem(api.post("/users", headers=admin, json={
        "username": "dave", "password": "dave-password", "roles": ["superuser"]}), 400)
    assert_problem(api.post("/users", headers=admin, json={
        "username": "dave", "password": "short"}), 400)
    assert_problem(api.post("/users", headers=admin, json={
        "username": "bad name", "password": "dave-password"}), 400)
    assert_problem(api.post("/users", headers=admin, json={
        "username": "dave", "password": "dave-password", "is_admin": True}), 400)
    listed = api.get("/users", headers=admin)
    assert [u["username"] for u in listed.json()["items"]] == ["admin", "carol"]
    assert "argon2" not in listed.text and "password" not in listed.text

    carol = login(api, "carol", "carol-password")
    assert api.get("/users/carol", headers=carol).json()["roles"] == ["editor"]
    assert_problem(api.get("/users/admin", headers=carol), 403)
    assert_problem(api.get("/users", headers=carol), 403)
    assert_problem(api.put("/users/carol/roles", headers=carol, json={"roles": ["admin"]}), 403)
    assert_problem(api.put("/users/carol/password", headers=carol,
                           json={"password": "carol-password-2"}), 403)
    assert_problem(api.put("/users/carol/password", headers=carol, json={
        "password": "carol-password-2", "current_password": "not-her-password"}), 403)
    assert api.put("/users/carol/password", headers=carol, json={
        "password": "carol-password-2", "current_password": "carol-password"}).status_code == 204
    assert_problem(api.post("/login", json={"username": "carol",
                                            "password": "carol-password"}), 401)
    carol = login(api, "carol", "carol-password-2")

    assert api.put("/users/carol/roles", headers=admin,
                   json={"roles": ["viewer"]}).json()["roles"] == ["viewer"]
    # Roles take effect at once, also for tokens issued before the change.
    assert_problem(api.put("/configs/x", headers=carol, json={"value": 1}), 403)
    assert api.put("/users/admin/password", headers=admin,
                   json={"password": "admin-password-2"}).status_code == 204
    assert_problem(api.delete("/users/nobody", headers=admin), 404)
    assert api.delete("/users/carol", headers=admin).status_code == 204
    assert_problem(api.get("/whoami", headers=carol), 401)
    assert_problem(api.get("/users/carol", headers=admin), 404)
    roles = {r["name"]: r for r in api.get("/roles", headers=admin).json()["items"]}
    assert {"admin", "editor", "viewer", "billing"} <= set(roles)
    assert roles["billing"]["rules"][1]["effect"] == "deny"
