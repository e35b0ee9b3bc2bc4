"""The kernel's built-in ``jwt`` auth: users as replicated records, tokens, keys, roles."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from aether_core import ConfigManager, MemoryStorage, SqliteStorage
from aether_core import manifest as manifest_mod
from aether_core.auth.base import Principal
from aether_core.auth.jwt import JwtAuth
from aether_core.auth.keys import KeySet, key_file
from aether_core.auth.roles import Role, RoleTable, Rule
from aether_core.auth.users import Passwords
from aether_core.commands import PutUser, decode, encode
from aether_core.errors import AlreadyExists, BadRequest, ConfigurationError, Unauthorized

KEY1 = "first-signing-key-0123456789abcdef-0123"
KEY2 = "second-signing-key-0123456789abcdef-012"


class CountingHasher(PasswordHasher):
    """argon2-cffi's real hasher (cheap parameters), counting verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


def make_auth(kid: str = "k1", key: str = KEY1, verify: dict[str, str] | None = None,
              **kwargs: Any) -> JwtAuth:
    return JwtAuth(KeySet.build("HS256", kid, key, verify),
                   passwords=Passwords(CountingHasher()), **kwargs)


@pytest.fixture
async def store() -> AsyncIterator[ConfigManager]:
    async with ConfigManager(MemoryStorage()) as manager:
        yield manager


@pytest.fixture
async def auth(store: ConfigManager, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[JwtAuth]:
    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", "bootstrap-password")
    auth = make_auth()
    await auth.attach(store)
    yield auth
    await auth.close()


async def test_users_are_records_written_by_commands(store: ConfigManager,
                                                     auth: JwtAuth) -> None:
    subscription = await store.watch(since=0, kinds=frozenset({"user"}))
    await auth.add_user("alice", "alice-password", ["editor"], author="test")
    record = await store.storage.get("user", "alice")
    assert record is not None and record.version == 1 and record.author == "test"
    assert record.value["roles"] == ["editor"]
    assert record.value["password_hash"].startswith("$argon2id$")
    events = []
    async for event in subscription:
        events.append(event)
        if len(events) == 2:
            break
    assert [(e.kind, e.name) for e in events] == [("user", "admin"), ("user", "alice")]
    assert all(e.value is None for e in events)  # hashes never travel in events
    command = PutUser(name="x", uid="u", password_hash="h", roles=["viewer"])
    assert decode(encode(command)) == command
    with pytest.raises(AlreadyExists):
        await auth.add_user("alice", "alice-password", [], author="test")
    with pytest.raises(BadRequest, match="unknown role"):
        await auth.add_user("bob", "bob-password", ["root"], author="test")
    assert await store.storage.get("user", "bob") is None


def test_default_password_hashing_is_argon2id_at_least_the_library_defaults() -> None:
    hashed = Passwords().hasher.hash("some password")
    assert hashed.startswith("$argon2id$")
    params = dict(p.split("=") for p in hashed.split("$")[3].split(","))
    assert int(params["m"]) >= 65536 and int(params["t"]) >= 3 and int(params["p"]) >= 1


async def test_unknown_user_costs_a_hash_verification_too(auth: JwtAuth) -> None:
    hasher = auth.passwords.hasher
    assert isinstance(hasher, CountingHasher)
    before = hasher.verified
    for username, password in (("admin", "wrong-password"), ("nobody", "wrong-password")):
        with pytest.raises(Unauthorized) as refused:
            await auth.authenticate(username, password)
        assert refused.value.detail == "invalid username or password"
    assert hasher.verified - before == 2
    assert (await auth.authenticate("admin", "bootstrap-password")).roles == ("admin",)


async def test_token_claims_and_kid(auth: JwtAuth) -> None:
    token = await auth.issue_token(Principal(name="admin"))
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = jwt.decode(token, KEY1, algorithms=["HS256"], audience="aether")
    assert {"sub", "uid", "iss", "aud", "iat", "nbf", "exp", "jti"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900
    assert auth.verify_token_now(token) == Principal(name="admin", roles=("admin",),
                                                     token_id=claims["jti"])


async def test_key_rotation_keeps_old_tokens_valid_until_the_old_key_goes(
    store: ConfigManager, auth: JwtAuth
) -> None:
    old_token = await auth.issue_token(Principal(name="admin"))
    rotated = make_auth("k2", KEY2, {"k1": KEY1})
    await rotated.attach(store)
    try:
        assert (await rotated.verify_token(old_token)).name == "admin"
        new_token = await rotated.issue_token(Principal(name="admin"))
        assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    finally:
        await rotated.close()
    retired = make_auth("k2", KEY2)
    await retired.attach(store)
    try:
        assert (await retired.verify_token(new_token)).name == "admin"
        with pytest.raises(Unauthorized, match="unknown key id"):
            await retired.verify_token(old_token)
    finally:
        await retired.close()


async def test_expiry_is_checked_also_for_cached_tokens(auth: JwtAuth) -> None:
    now = auth.clock()
    auth.clock = lambda: now - 2000  # issued long ago: expired at once
    stale = await auth.issue_token(Principal(name="admin"))
    auth.clock = lambda: now
    with pytest.raises(Unauthorized, match="expired"):
        auth.verify_token_now(stale)
    fresh = await auth.issue_token(Principal(name="admin"))
    auth.verify_token_now(fresh)  # now cached
    auth.clock = lambda: now + 900 + auth.leeway + 1
    with pytest.raises(Unauthorized, match="expired"):
        auth.verify_token_now(fresh)
    with pytest.raises(Unauthorized, match="not valid yet"):
        auth.clock = lambda: now + 600
        early = await auth.issue_token(Principal(name="admin"))
        auth.clock = lambda: now
        auth.verify_token_now(early)


async def test_revocation_is_seen_by_another_node_of_a_shared_store(
    store: ConfigManager, auth: JwtAuth
) -> None:
    other_manager = ConfigManager(store.storage)
    await other_manager.start()
    other = make_auth()
    await other.attach(other_manager)
    try:
        token = await auth.issue_token(Principal(name="admin"))
        second = await auth.issue_token(Principal(name="admin"))
        assert other.verify_token_now(token).name == "admin"
        await auth.revoke_token(token)
        for _ in range(100):
            if other.directory is not None and other.directory.is_revoked(
                    jwt.decode(token, options={"verify_signature": False})["jti"]):
                break
            await asyncio.sleep(0.02)
        with pytest.raises(Unauthorized, match="revoked"):
            other.verify_token_now(token)
        await auth.delete_user("admin", author="test")
        for _ in range(100):
            if other.directory is not None and other.directory.get("admin") is None:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(Unauthorized, match="no longer exists"):
            other.verify_token_now(second)
    finally:
        await other.close()
        await other_manager.close()


async def test_revocation_and_users_survive_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AETHER_ADMIN_PASSWORD", "bootstrap-password")
    async with ConfigManager(SqliteStorage(tmp_path / "a.db")) as manager:
        auth = make_auth()
        await auth.attach(manager)
        kept = await auth.issue_token(Principal(name="admin"))
        dropped = await auth.issue_token(Principal(name="admin"))
        await auth.revoke_token(dropped)
        await auth.close()
    async with ConfigManager(SqliteStorage(tmp_path / "a.db")) as manager:
        auth = make_auth()
        await auth.attach(manager)
        try:
            assert auth.verify_token_now(kept).name == "admin"
            with pytest.raises(Unauthorized, match="revoked"):
                auth.verify_token_now(dropped)
        finally:
            await auth.close()


async def test_a_recreated_user_does_not_inherit_old_tokens(auth: JwtAuth) -> None:
    await auth.add_user("carol", "carol-password", ["viewer"], author="t")
    old = await auth.issue_token(Principal(name="carol"))
    await auth.delete_user("carol", author="t")
    with pytest.raises(Unauthorized, match="no longer exists"):
        auth.verify_token_now(old)
    await auth.add_user("carol", "carol-password-2", ["admin"], author="t")
    with pytest.raises(Unauthorized, match="no longer exists"):
        auth.verify_token_now(old)
    assert auth.get_user("carol").version == 3


def _pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_key_material_is_checked_and_never_shown() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 bytes") as short:
        KeySet.build("HS256", "k", "short-secret")
    assert "short-secret" not in str(short.value)
    ed = _pem(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ConfigurationError, match="not a key for RS256"):
        KeySet.build("RS256", "k", ed)
    weak = _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(ConfigurationError, match="2048 bits"):
        KeySet.build("RS256", "k", weak)
    with pytest.raises(ConfigurationError, match="PEM private key") as bad:
        KeySet.build("EdDSA", "k", "-----BEGIN PRIVATE KEY-----\nnot really\n")
    assert "not really" not in str(bad.value)
    keys = KeySet.build("EdDSA", "k", ed)
    assert [k["kid"] for k in keys.jwks()["keys"]] == ["k"]
    assert "d" not in keys.jwks()["keys"][0]


def test_generated_key_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "jwt-signing.key"
    first = key_file(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_file(path) == first
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        key_file(path)


def test_manifest_settings_build_the_provider(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SIGNING_KEY", KEY1)
    (tmp_path / "old.key").write_text(KEY2)
    path = tmp_path / "aether.toml"
    path.write_text(f"""
[node]
data_dir = "{tmp_path / 'data'}"
[storage]
use = "memory"
[transport]
use = "local"
[auth]
use = "jwt"
signing_key = "${{env:TEST_SIGNING_KEY}}"
key_id = "new"
verify_keys = {{ old = "${{file:old.key}}" }}
leeway = 10
[auth.roles.auditor]
rules = [{{ actions = ["configs:read"], resources = ["audit/*"] }}]
""")
    manifest = manifest_mod.load(path)
    assert manifest.auth is not None
    built = JwtAuth.from_settings(manifest.auth.settings, manifest.info)  # type: ignore[arg-type]
    assert built.keys.signing_kid == "new" and set(built.keys.verify_keys) == {"new", "old"}
    assert built.authorize(Principal(name="x", roles=("auditor",)),
                           "configs:read", "audit/log").allowed
    assert KEY1 not in repr(manifest.auth.settings)
    path.write_text(path.read_text().replace("leeway = 10", "leeway = 120"))
    with pytest.raises(ConfigurationError, match=r"\[auth\] leeway"):
        manifest_mod.load(path)
    monkeypatch.setenv("TEST_SIGNING_KEY", "too-short")
    path.write_text(path.read_text().replace("leeway = 120", "leeway = 1"))
    with pytest.raises(ConfigurationError, match="at least 32 bytes") as short:
        m = manifest_mod.load(path)
        JwtAuth.from_settings(m.auth.settings, m.info)  # type: ignore[union-attr,arg-type]
    assert "too-short" not in str(short.value)


async def test_bootstrap_admin_password_generated_and_shown_once(
    store: ConfigManager, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AETHER_ADMIN_PASSWORD", raising=False)
    first = make_auth()
    await first.attach(store)
    shown = capsys.readouterr().err
    password = shown.split("with password ")[1].split()[0]
    assert (await first.authenticate("admin", password)).name == "admin"
    await first.close()
    second = make_auth()
    await second.attach(store)
    assert "password" not in capsys.readouterr().err
    await second.close()


def test_roles_default_deny_and_deny_wins() -> None:
    table = RoleTable({
        "billing": Role(rules=[
            Rule(actions=["configs:*"], resources=["billing/*"]),
            Rule(actions=["configs:write"], resources=["billing/locked/*"], effect="deny"),
        ]),
        "viewer": Role(rules=[Rule(actions=["configs:read"], resources=["public/*"])]),
    })
    assert table.decide(["billing"], "configs:write", "billing/db").allowed
    assert table.decide(["billing"], "configs:read", "billing/locked/x").allowed
    denied = table.decide(["billing", "admin"], "configs:write", "billing/locked/x")
    assert not denied.allowed and "billing" in denied.reason
    assert not table.decide(["billing"], "configs:read", "other/db").allowed
    assert not table.decide([], "configs:read", "x").allowed
    assert not table.decide(["no-such-role"], "configs:read", "x").allowed
    assert not table.decide(["viewer"], "configs:read", "billing/db").allowed  # overridden
    assert table.decide(["admin"], "users:admin", "").allowed
    assert not table.decide(["editor"], "users:admin", "").allowed


def test_users_cli_creates_the_first_admin_without_a_server(tmp_path: Path) -> None:
    from aether_core.cli import cli

    (tmp_path / "aether.toml").write_text(f"""
[node]
data_dir = "{tmp_path / 'data'}"
[storage]
use = "sqlite"
[transport]
use = "local"
[auth]
use = "jwt"
""")
    runner = CliRunner()
    from aether_core.builtins import aether_register_commands

    aether_register_commands(cli=cli)
    env = {k: v for k, v in os.environ.items() if k != "AETHER_ADMIN_PASSWORD"}
    m = ["-m", str(tmp_path / "aether.toml")]
    added = runner.invoke(cli, ["users", "add", *m, "root", "--role", "admin",
                                "--password-stdin"], input="root-password\n", env=env)
    assert added.exit_code == 0, added.output
    assert "root-password" not in added.output
    again = runner.invoke(cli, ["users", "add", *m, "root", "--password-stdin"],
                          input="root-password\n", env=env)
    assert again.exit_code == 1 and "already exists" in again.output
    short = runner.invoke(cli, ["users", "add", *m, "x", "--password-stdin"], input="abc\n",
                          env=env)
    assert short.exit_code == 1 and "password must be" in short.output
    listed = runner.invoke(cli, ["users", "list", *m, "--json"], env=env)
    assert json.loads(listed.output) == [{"username": "root", "roles": ["admin"]}]

    async def check() -> None:
        async with ConfigManager(SqliteStorage(tmp_path / "data" / "aether.db")) as manager:
            auth = make_auth()
            await auth.attach(manager)  # a user exists: no bootstrap admin is added
            try:
                assert (await auth.authenticate("root", "root-password")).roles == ("admin",)
                assert [u.name for u in auth.list_users()] == ["root"]
            finally:
                await auth.close()

    asyncio.run(check())
