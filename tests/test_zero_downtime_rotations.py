"""Zero downtime through every kind of rotation, black box: ``aether up`` as a process,
clients over real HTTP reading and authenticating continuously while an operator runs,
one after the other,

(a) a secret rotation (stage a new value as pending, promote it),
(b) a config rollout with a rollback (start, widen, a nack rolls it back; start again,
    promote),
(d) a JWT signing-key rotation (new ``kid`` verified everywhere, then signing; the old
    one keeps verifying its tokens),
(c) a key-encryption-key rotation (every data key re-wrapped online: the secrets', the
    signing keys' and the data key of a typed config's ``SecretStr`` field).

Every request is token-authenticated; some clients keep the token they got before
everything (signed by the old key), others refresh theirs all along (signed by
whichever key is current), one logs in again and again; readers read a secret, a config
under rollout and a typed config with its secret field revealed. Asserted: at least 100
operations a second, 0 failed reads, 0 failed authentications, each read a value that
was being served, and no client going back to an older secret once it saw the new one.
(``tests/test_rollout_zero_downtime.py`` pins the rollout's per-client ordering in
process; this test covers all four rotations through the API.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest

from aether_core.testing.processes import AetherProcess, free_port

PASSWORD = "zero-downtime-admin-pw"
CLIENT_PASSWORD = "zero-downtime-client-pw"
SIGNING_KEY = "zero-downtime-signing-key-0123456789abcdef"
SECRET_OLD, SECRET_NEW = "db-password-old-7c1e", "db-password-new-93ab"
#: The SecretStr field of a typed config (re-wrapped by the KEK rotation too).
FIELD_SECRET = "typed-field-secret-4f0a"
TYPED_SCHEMA = {"type": "object", "properties": {
    "host": {"type": "string"},
    "password": {"type": "string", "format": "password", "writeOnly": True}}}
CONFIG_OLD, CONFIG_NEW = {"pool": 10}, {"pool": 20}
STEADY, REFRESHING = 4, 4
MIN_RATE = 100


@pytest.fixture
def node(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    manifest = f"""
[node]
name = "zero-downtime"
data_dir = "data"

[storage]
use = "sqlite"

[transport]
use = "local"

[secrets]
key_provider = "local"

[auth]
use = "jwt"
signing_key = "${{env:AETHER_SIGNING_KEY}}"
token_ttl = 600

[auth.roles.client]
rules = [{{ actions = ["configs:read", "secrets:read"], resources = ["*"] }}]

[[services]]
use = "admin"
listen = "127.0.0.1:{port}"
"""
    node = AetherProcess(tmp_path, manifest, url=f"http://127.0.0.1:{port}",
                         env={"AETHER_ADMIN_PASSWORD": PASSWORD,
                              "AETHER_SIGNING_KEY": SIGNING_KEY})
    try:
        yield node.start().url
    finally:
        node.stop(check=False)
    output = node.output()
    for secret in (SECRET_OLD, SECRET_NEW, FIELD_SECRET, SIGNING_KEY, PASSWORD,
                   CLIENT_PASSWORD):
        assert secret not in output, "a secret reached the node's log"


class Conn:
    """One keep-alive HTTP/1.1 connection, as lean as a client can be: the readers'
    own cost must not eat the CPU the server needs on a small shared machine (httpx
    costs several times more per request)."""

    def __init__(self, url: str) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, token: str) -> tuple[int, bytes]:
        return (await self.pipeline([(method, path)], token))[0]

    async def pipeline(self, requests: list[tuple[str, str]], token: str
                       ) -> list[tuple[int, bytes]]:
        """Send the requests back to back (HTTP/1.1 pipelining), then read the answers
        in order: one round trip for several reads."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(b"".join(
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n".encode()
            for method, path in requests))
        out = []
        for _ in requests:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            out.append((int(head[9:12]), await self.reader.readexactly(length)))
        return out

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()


class Tally:
    def __init__(self) -> None:
        self.ops = 0
        self.failures: list[str] = []
        self.kids: set[str] = set()

    def check(self, response: httpx.Response, what: str) -> dict[str, Any]:
        return self.check_raw(response.status_code, response.content, what)

    def check_raw(self, status: int, body: bytes, what: str) -> dict[str, Any]:
        self.ops += 1
        if status != 200:
            self.failures.append(f"{what}: {status} {body[:200]!r}")
            return {}
        out: dict[str, Any] = json.loads(body)
        return out


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _kid(token: str) -> str:
    kid: str = pyjwt.get_unverified_header(token)["kid"]
    return kid


async def _login(http: httpx.AsyncClient, user: str, password: str) -> str:
    response = await http.post("/login", json={"username": user, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_clients_see_no_failure_through_all_four_rotations(node: str) -> None:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=node, timeout=10, limits=limits) as http:
        admin = _bearer(await _login(http, "admin", PASSWORD))
        assert (await http.post("/users", headers=admin, json={
            "username": "client", "password": CLIENT_PASSWORD, "roles": ["client"]})
            ).status_code == 201
        assert (await http.put("/secrets/app/db", headers=admin,
                               json={"value": SECRET_OLD})).status_code == 201
        for i in range(20):  # something for the KEK rotation to re-wrap
            assert (await http.put(f"/secrets/app/extra-{i}", headers=admin,
                                   json={"value": f"x{i}"})).is_success
        assert (await http.put("/schemas/typed", headers=admin, json={
            "schema": TYPED_SCHEMA, "bind": ["typed/"]})).is_success
        assert (await http.put("/configs/typed/db", headers=admin, json={
            "value": {"host": "db1", "password": FIELD_SECRET}})).status_code == 201
        assert (await http.put("/configs/svc/api", headers=admin,
                               json={"value": CONFIG_OLD})).status_code == 201
        tokens = [await _login(http, "client", CLIENT_PASSWORD)
                  for _ in range(STEADY + REFRESHING)]
        first_kid = _kid(tokens[0])

        tally = Tally()
        stop = asyncio.Event()
        newest_secret: dict[int, str] = {}

        async def reader(i: int, refresh: bool) -> None:
            token = tokens[i]
            conn = Conn(node)
            try:
                await read_loop(i, refresh, conn, token)
            finally:
                await conn.close()

        async def read_loop(i: int, refresh: bool, conn: Conn, token: str) -> None:
            n = 0
            config_path = f"/rollouts/config?name=svc/api&client=c-{i}"
            while not stop.is_set():
                n += 1
                secret_read, config_read, typed_read = await conn.pipeline(
                    [("GET", "/secrets/app/db/values"), ("GET", config_path),
                     ("GET", "/configs/typed/db?reveal=true")], token)
                typed = tally.check_raw(*typed_read, "typed config read")
                if typed and typed["value"] != {"host": "db1", "password": FIELD_SECRET}:
                    tally.failures.append("typed config read: wrong secret field")
                values = tally.check_raw(*secret_read, "secret read")
                if values:
                    seen = [v["value"] for v in values["values"]]
                    if seen[0] not in (SECRET_OLD, SECRET_NEW) or not set(seen) <= {
                            SECRET_OLD, SECRET_NEW}:
                        tally.failures.append(f"secret read: unexpected values {seen}")
                    if newest_secret.get(i) == SECRET_NEW and seen[0] == SECRET_OLD:
                        tally.failures.append("secret read: went back to the old value")
                    newest_secret[i] = seen[0]
                config = tally.check_raw(*config_read, "config read")
                if config and config["value"] not in (CONFIG_OLD, CONFIG_NEW):
                    tally.failures.append(f"config read: unexpected {config['value']}")
                if refresh and n % 10 == 0:
                    fresh = tally.check_raw(*await conn.request("POST", "/token/refresh",
                                                                token), "refresh")
                    if fresh:
                        token = fresh["access_token"]
                        tally.kids.add(_kid(token))
            tokens[i] = token

        async def relogin() -> None:
            while not stop.is_set():
                response = await http.post("/login", json={
                    "username": "client", "password": CLIENT_PASSWORD})
                body = tally.check(response, "login")
                if body:
                    tally.check(await http.get("/whoami",
                                               headers=_bearer(body["access_token"])),
                                "whoami after login")
                # A log-in costs an argon2id hash (64 MiB, by design): one a second, or
                # the hashing takes the CPU the readers need on a small shared machine.
                await asyncio.sleep(1.0)

        async def step(method: str, path: str, body: Any = None, status: int = 200
                       ) -> dict[str, Any]:
            response = await http.request(method, path, headers=admin, json=body)
            assert response.status_code == status, f"{method} {path}: {response.text}"
            out: dict[str, Any] = response.json()
            return out

        async def operator() -> None:
            pause = 0.4
            await asyncio.sleep(pause)
            # (a) secret rotation: stage, then promote.
            staged = await step("POST", "/secrets/app/db/stage", {"value": SECRET_NEW})
            await asyncio.sleep(pause)
            await step("POST", "/secrets/app/db/promote", {"version": staged["pending"]})
            await asyncio.sleep(pause)
            # (b) rollout with a rollback, then a rollout that is promoted.
            started = await step("POST", "/rollouts/",
                                 {"name": "svc/api", "value": CONFIG_NEW, "fraction": 0.3},
                                 status=201)
            await asyncio.sleep(pause)
            await step("POST", "/rollouts/widen", {"name": "svc/api", "fraction": 0.6})
            await asyncio.sleep(pause)
            await step("POST", "/acks/", {
                "name": "svc/api", "version": started["candidate_version"],
                "client": "canary", "status": "nack", "detail": "health check failed"},
                status=202)
            rolled = await step("GET", "/rollouts/?name=svc/api")
            assert rolled["state"] != "running", rolled
            await asyncio.sleep(pause)
            await step("POST", "/rollouts/", {"name": "svc/api", "value": CONFIG_NEW,
                                              "fraction": 0.5}, status=201)
            await asyncio.sleep(pause)
            await step("POST", "/rollouts/promote", {"name": "svc/api"})
            await asyncio.sleep(pause)
            # (d) JWT signing-key rotation.
            rotated = await step("POST", "/auth/keys/rotate", {"propagation_seconds": 1})
            assert rotated["signing_kid"] != first_kid
            tally.kids.add("rotated:" + rotated["signing_kid"])
            await asyncio.sleep(pause)
            # (c) key-encryption-key rotation: re-wraps every data key in the background.
            await step("POST", "/keys/rotate", status=202)
            async with asyncio.timeout(20):
                while True:
                    keys = await step("GET", "/keys/")
                    if not keys["rotating"] and keys["keyring"]["last"] is not None:
                        break
                    await asyncio.sleep(0.05)
            # 21 secrets and the signing keys (sealed under the same KEK) ...
            assert keys["keyring"]["last"]["rewrapped"] >= 22, keys
            # ... and the typed config's secret field: a version with the same value.
            typed_head = await step("GET", "/configs/typed/db")
            assert (typed_head["version"], typed_head["comment"]) == (2, "key rotation")
            await asyncio.sleep(1.0)  # refreshing clients now carry the new kid
            stop.set()

        started = time.perf_counter()
        async with asyncio.timeout(60):
            await asyncio.gather(operator(), relogin(),
                                 *(reader(i, refresh=i >= STEADY)
                                   for i in range(STEADY + REFRESHING)))
        elapsed = time.perf_counter() - started

        rate = tally.ops / elapsed
        print(f"{tally.ops} operations in {elapsed:.1f} s ({rate:.0f}/s), "
              f"{len(tally.failures)} failed")
        assert tally.failures == [], tally.failures[:5]
        assert rate >= MIN_RATE, f"{rate:.0f} operations/s, below {MIN_RATE}"

        # Every client ended on the new secret and the promoted config.
        assert set(newest_secret.values()) == {SECRET_NEW}
        final = await http.get("/configs/svc/api", headers=admin)
        assert final.json()["value"] == CONFIG_NEW
        # Tokens from before the signing-key rotation still work; refreshed ones moved to
        # the new key.
        new_kid = next(k.split(":", 1)[1] for k in tally.kids if k.startswith("rotated:"))
        assert new_kid in tally.kids
        for token in tokens[:STEADY]:
            assert _kid(token) == first_kid
            assert (await http.get("/whoami", headers=_bearer(token))).status_code == 200
        for token in tokens[STEADY:]:
            assert _kid(token) == new_kid
