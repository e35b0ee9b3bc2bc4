"""JWT signing-key rotation across nodes: a new key verifies on every node before any
node signs with it; tokens signed by the old key keep verifying through the overlap,
then the old key is retired. Two ``JwtAuth`` instances over one store stand for two
nodes: each follows the store's change feed on its own."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import msgspec
import pytest
from argon2 import PasswordHasher

from aether_core import ConfigManager, SqliteStorage
from aether_core.auth.base import Principal
from aether_core.auth.jwt import JwtAuth, UnknownKeyId
from aether_core.auth.keys import KeySet
from aether_core.auth.signing import KEYRING
from aether_core.auth.users import Passwords
from aether_core.errors import BadRequest, Unauthorized
from aether_core.secrets.errors import RotationRefused
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager
from aether_core.secrets.rotation import KeyRotator

BASE_KEY = "configured-signing-key-0123456789abcdef"


class Clock:
    """Real time (PyJWT checks expiry against it) plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _auth(clock: Clock) -> JwtAuth:
    return JwtAuth(KeySet.build("HS256", "k1", BASE_KEY), token_ttl=60, leeway=1,
                   clock=clock,
                   passwords=Passwords(PasswordHasher(time_cost=1, memory_cost=1024,
                                                      parallelism=1)))


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[Clock, SecretManager, JwtAuth, JwtAuth]]:
    clock = Clock()
    async with ConfigManager(SqliteStorage(tmp_path / "a.db"), clock=clock) as config:
        secrets = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        await secrets.start()
        a, b = _auth(clock), _auth(clock)
        await a.attach(config, bootstrap=False, secrets=secrets)
        await a.add_user("ana", "ana-password", ["admin"], author="test")
        await b.attach(config, bootstrap=False, secrets=secrets)
        try:
            yield clock, secrets, a, b
        finally:
            await a.close()
            await b.close()
            await secrets.close()


async def _eventually(check: Any, what: str) -> None:
    for _ in range(1000):  # 10 s at most
        if check():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting until {what}")


def _kid(token: str) -> str:
    kid: str = pyjwt.get_unverified_header(token)["kid"]
    return kid


async def test_rotation_introduces_the_key_everywhere_before_signing_with_it(
        nodes: tuple[Clock, SecretManager, JwtAuth, JwtAuth],
        caplog: pytest.LogCaptureFixture) -> None:
    clock, secrets, a, b = nodes
    caplog.set_level(logging.DEBUG)
    ana = Principal(name="ana", roles=("admin",))
    old_token = await a.issue_token(ana)
    assert _kid(old_token) == "k1"

    rotation = asyncio.create_task(a.rotate_signing_key(propagation=0.5, author="ana"))
    # While the new key propagates, node b verifies it but neither node signs with it.
    await _eventually(lambda: len(b.keys.verify_keys) == 2, "b loads the pending key")
    assert _kid(await a.issue_token(ana)) == "k1" and _kid(await b.issue_token(ana)) == "k1"
    status = await rotation
    new_kid = status.signing_kid
    assert new_kid != "k1"
    assert {(k.kid, k.state) for k in status.keys} == {("k1", "previous"), (new_kid, "current")}
    await _eventually(lambda: b.keys.signing_kid == new_kid, "b signs with the new key")

    # Overlap: the old token verifies on both nodes, new tokens cross nodes both ways.
    for node in (a, b):
        assert (await node.verify_token(old_token)).name == "ana"
    assert (await b.verify_token(await a.issue_token(ana))).name == "ana"
    assert (await a.verify_token(await b.issue_token(ana))).name == "ana"

    # Rotating again inside the overlap would log out old tokens: refused, no change.
    head = await secrets.config.storage.get("secret", KEYRING)
    with pytest.raises(RotationRefused, match="previous signing key verifies tokens until"):
        await a.rotate_signing_key(propagation=0)
    assert (await secrets.config.storage.get("secret", KEYRING)) == head

    # After the overlap the old key is retired: a token it signed is refused even if a
    # (forged) expiry says it is still valid.
    clock.offset += 60 + 2 + 1
    forged = pyjwt.encode({**pyjwt.decode(old_token, options={"verify_signature": False}),
                           "exp": time.time() + 30, "jti": "forged"},
                          BASE_KEY, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(Unauthorized, match="retired"):
        b.verify_token_now(forged)
    assert "retired" in {k.state for k in (await a.signing_status()).keys}
    # ... and the next rotation is allowed, dropping the retired key.
    status = await a.rotate_signing_key(propagation=0)
    assert "k1" not in {k.kid for k in status.keys} and len(status.keys) == 2

    # No key material in the status, the logs or the store's raw records.
    stored = msgspec.json.encode(await secrets.config.storage.history("secret", KEYRING))
    assert BASE_KEY.encode() not in stored
    assert BASE_KEY not in repr(msgspec.to_builtins(status)) + caplog.text


async def test_a_node_that_lags_rereads_the_keys_for_an_unknown_kid(
        nodes: tuple[Clock, SecretManager, JwtAuth, JwtAuth]) -> None:
    _, _, a, b = nodes
    assert b.signing is not None
    await b.signing.close()  # b no longer follows the feed: it lags behind every change
    await a.rotate_signing_key(propagation=0)
    token = await a.issue_token(Principal(name="ana"))
    with pytest.raises(UnknownKeyId):
        b.verify_token_now(token)
    assert (await b.verify_token(token)).name == "ana"
    # A made-up key id is still refused after the re-read.
    bogus = pyjwt.encode({"sub": "ana"}, BASE_KEY, algorithm="HS256",
                         headers={"kid": "nope"})
    with pytest.raises(Unauthorized, match="unknown key id"):
        await b.verify_token(bogus)


async def test_kek_rotation_rewraps_the_signing_keys_and_tokens_keep_verifying(
        nodes: tuple[Clock, SecretManager, JwtAuth, JwtAuth]) -> None:
    _, secrets, a, b = nodes
    await a.rotate_signing_key(propagation=0)
    token = await a.issue_token(Principal(name="ana"))
    before = await secrets.config.storage.get("secret", KEYRING)
    assert before is not None
    rotation = await KeyRotator(secrets).rotate()
    after = await secrets.config.storage.get("secret", KEYRING)
    assert after is not None and after.meta["key_versions"] == [rotation.target]
    assert before.meta["key_versions"] != after.meta["key_versions"]
    await b.signing.reload()  # type: ignore[union-attr]
    assert (await b.verify_token(token)).name == "ana"
    assert b.keys.signing_kid == a.keys.signing_kid


async def test_the_signing_keys_are_not_reachable_through_the_secrets_api(
        nodes: tuple[Clock, SecretManager, JwtAuth, JwtAuth]) -> None:
    _, secrets, a, _ = nodes
    await a.rotate_signing_key(propagation=0)
    items, _ = await secrets.list_secrets()
    assert items == []
    for call in (secrets.reveal(KEYRING), secrets.info(KEYRING),
                 secrets.put(KEYRING, "x"), secrets.delete(KEYRING),
                 secrets.reveal_for_client(KEYRING)):
        with pytest.raises(BadRequest, match="reserved"):
            await call


async def test_bad_propagation_and_no_key_store_are_clear_errors(
        nodes: tuple[Clock, SecretManager, JwtAuth, JwtAuth]) -> None:
    clock, secrets, a, _ = nodes
    with pytest.raises(BadRequest, match="propagation"):
        await a.rotate_signing_key(propagation=-1)
    assert await secrets.config.storage.get("secret", KEYRING) is None
    plain = _auth(clock)
    await plain.attach(secrets.config, bootstrap=False)
    try:
        with pytest.raises(Exception, match=r"\[secrets\] key provider"):
            await plain.rotate_signing_key(propagation=0)
    finally:
        await plain.close()


async def test_two_nodes_on_a_shared_redis_store_rotate_together(tmp_path: Path) -> None:
    """Two nodes, each its own manager, hub and auth, share a Redis prefix and the KEK
    file: node b learns of each step through the store's change feed alone."""
    import redis.asyncio as aioredis
    from aether_redis import RedisSettings, RedisStorage

    url = "redis://127.0.0.1:6379/0"
    try:
        probe = aioredis.Redis.from_url(url, socket_connect_timeout=3)
        await probe.ping()
        await probe.aclose()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {url} ({exc}); start it with "
                    "scripts/services.sh (or ./dev test)")
    settings = RedisSettings(url=url, prefix=f"signing-{uuid.uuid4().hex[:8]}", feed_block=0.2)
    clock = Clock()
    stores = [RedisStorage(settings, node_name=f"node-{i}") for i in (1, 2)]
    configs = [ConfigManager(store, clock=clock) for store in stores]
    auths: list[JwtAuth] = []
    secrets_list: list[SecretManager] = []
    try:
        for config in configs:
            await config.start()
            secrets = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
            await secrets.start()
            secrets_list.append(secrets)
            auth = _auth(clock)
            await auth.attach(config, bootstrap=False, secrets=secrets)
            auths.append(auth)
        a, b = auths
        await a.add_user("ana", "ana-password", ["admin"], author="test")
        await _eventually(lambda: b.directory is not None and b.directory.get("ana"),
                          "b sees the user")
        ana = Principal(name="ana")
        old = await b.issue_token(ana)
        rotation = asyncio.create_task(a.rotate_signing_key(propagation=1.0))
        await _eventually(lambda: len(b.keys.verify_keys) == 2, "b loads the pending key")
        assert b.keys.signing_kid == "k1"
        status = await rotation
        await _eventually(lambda: b.keys.signing_kid == status.signing_kid,
                          "b signs with the new key")
        assert (await a.verify_token(old)).name == "ana"
        assert (await a.verify_token(await b.issue_token(ana))).name == "ana"
        assert (await b.verify_token(await a.issue_token(ana))).name == "ana"
    finally:
        for auth in auths:
            await auth.close()
        for secrets in secrets_list:
            await secrets.close()
        if stores[0]._client is not None:
            await stores[0].destroy()
        for config in configs:
            await config.close()


async def test_key_pairs_rotate_too_and_the_jwks_publishes_the_new_key_first(
        tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    async with ConfigManager(SqliteStorage(tmp_path / "a.db")) as config:
        secrets = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        await secrets.start()
        auth = JwtAuth(KeySet.build("EdDSA", "ed1", pem), token_ttl=60, passwords=Passwords(
            PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)))
        await auth.attach(config, bootstrap=False, secrets=secrets)
        try:
            await auth.add_user("ana", "ana-password", ["admin"], author="test")
            old = await auth.issue_token(Principal(name="ana"))
            status = await auth.rotate_signing_key(propagation=0)
            kids = {k["kid"] for k in auth.jwks()["keys"]}
            assert kids == {"ed1", status.signing_kid}
            assert all("d" not in k for k in auth.jwks()["keys"])  # public halves only
            new = await auth.issue_token(Principal(name="ana"))
            assert _kid(new) == status.signing_kid
            for token in (old, new):
                assert (await auth.verify_token(token)).name == "ana"
        finally:
            await auth.close()
            await secrets.close()
