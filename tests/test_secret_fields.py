"""``SecretStr`` fields of typed configs: encrypted at rest, a placeholder in every
stored value, event and history entry, the plaintext only through ``reveal`` and
``get_typed``; tampering, swapping and placeholders written back are refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel, SecretStr

from aether_core import ConfigManager, MemoryStorage, SqliteStorage
from aether_core.errors import BadRequest, SchemaIncompatible, ValidationFailed
from aether_core.records import ChangeEvent, Write
from aether_core.secrets.errors import SecretIntegrityError
from aether_core.secrets.fields import PLACEHOLDER, secret_paths
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager
from aether_core.secrets.rotation import KeyRotator

PASSWORD, TOKEN, NEW_PASSWORD = (f"marker-{uuid.uuid4().hex}" for _ in range(3))


class Db(BaseModel):
    host: str
    password: SecretStr


class App(BaseModel):
    db: Db
    token: SecretStr | None = None
    workers: int = 4


def _value(password: str = PASSWORD, token: str | None = TOKEN) -> dict[str, Any]:
    return {"db": {"host": "db.internal", "password": password}, "token": token,
            "workers": 4}


@pytest.fixture(params=["memory", "sqlite"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path
                ) -> AsyncIterator[tuple[ConfigManager, SecretManager]]:
    storage = MemoryStorage() if request.param == "memory" else SqliteStorage(tmp_path / "a.db")
    async with ConfigManager(storage) as config:
        secrets = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        await secrets.start()
        await config.put_schema("app", App, bind=["app/"])
        try:
            yield config, secrets
        finally:
            await secrets.close()


def _dump(*items: Any) -> bytes:
    return b"".join(msgspec.json.encode(i) for i in items)


def test_the_schema_marks_secretstr_fields() -> None:
    assert secret_paths(App.model_json_schema()) == [("db", "password"), ("token",)]
    with pytest.raises(BadRequest, match="inside items"):
        secret_paths({"type": "object", "properties": {"keys": {
            "type": "array", "items": {"type": "string", "format": "password",
                                       "writeOnly": True}}}})


async def test_secret_fields_are_sealed_and_revealed_only_on_request(
        stack: tuple[ConfigManager, SecretManager]) -> None:
    config, _ = stack
    record = await config.put("app/svc", _value())
    assert record.value["db"]["password"] == PLACEHOLDER == record.value["token"]
    assert record.value["db"]["host"] == "db.internal"
    plain = await config.get("app/svc")
    assert plain.value == record.value
    typed = await config.get_typed("app/svc", App)
    assert typed.db.password.get_secret_value() == PASSWORD
    assert typed.token is not None and typed.token.get_secret_value() == TOKEN
    assert (await config.reveal("app/svc")).value == _value()

    # A second version changes the password only; the diff says so without values.
    await config.put("app/svc", _value(NEW_PASSWORD))
    diff = await config.diff("app/svc", 1, 2)
    assert diff["patch"] == []
    assert diff["secret_fields"] == {"/db/password": "changed", "/token": "unchanged"}
    # Rollback brings the old secret back (sealed for version 1, still authentic).
    await config.rollback("app/svc", 1)
    assert (await config.get_typed("app/svc", App)).db.password.get_secret_value() == PASSWORD
    assert (await config.diff("app/svc", 1, 3))["secret_fields"] == {
        "/db/password": "unchanged", "/token": "unchanged"}

    # No plaintext in stored records, history, events, listings or the export.
    history = await config.versions("app/svc")
    events = [ChangeEvent.from_record(r) for r in await config.storage.changes(0)]
    page = await config.list_configs("app/")
    export = b"".join([chunk async for chunk in config.export()])
    blob = _dump(history, events, page.items, diff) + export
    for marker in (PASSWORD, TOKEN, NEW_PASSWORD):
        assert marker.encode() not in blob
    assert b'"sealed"' in export  # the ciphertext is what is stored


async def test_a_placeholder_written_back_is_refused_and_changes_nothing(
        stack: tuple[ConfigManager, SecretManager]) -> None:
    config, _ = stack
    await config.put("app/svc", _value())
    revision = await config.revision()
    read_back = (await config.get("app/svc")).value  # what a reader without the secret sees
    with pytest.raises(BadRequest, match="placeholder"):
        await config.put("app/svc", {**read_back, "workers": 8})
    assert await config.revision() == revision
    # Leaving an optional secret field out (or null) is a plain write.
    await config.put("app/svc", _value(token=None))
    assert (await config.get_typed("app/svc", App)).token is None


async def test_tampered_or_swapped_ciphertexts_are_refused(
        stack: tuple[ConfigManager, SecretManager]) -> None:
    config, _ = stack
    a = await config.put("app/a", _value())
    b = await config.put("app/b", _value("other-password"))

    async def forge(name: str, meta: dict[str, Any]) -> None:
        head = await config.storage.get("config", name)
        assert head is not None
        await config.storage.commit([Write(kind="config", name=name,
                                           expected_version=head.version, value=head.value,
                                           meta=meta)], None)

    sealed = a.meta["sealed"]
    field = sealed["fields"]["/db/password"]
    flipped = field[:-6] + ("A" if field[-6] != "A" else "B") + field[-5:]
    await forge("app/a", {**a.meta, "sealed": {**sealed, "fields": {
        **sealed["fields"], "/db/password": flipped}}})
    with pytest.raises(SecretIntegrityError, match="does not authenticate"):
        await config.get_typed("app/a", App)
    # Another config's ciphertext (and data key) moved over: refused.
    await forge("app/a", {**a.meta, "sealed": b.meta["sealed"]})
    with pytest.raises(SecretIntegrityError, match="does not authenticate"):
        await config.reveal("app/a")
    # One field's ciphertext moved to another field of the same record: refused.
    await forge("app/a", {**a.meta, "sealed": {**sealed, "fields": {
        "/db/password": sealed["fields"]["/token"], "/token": sealed["fields"]["/token"]}}})
    with pytest.raises(SecretIntegrityError):
        await config.reveal("app/a")
    # Garbage where the sealed fields go.
    await forge("app/a", {**a.meta, "sealed": {"fields": 3}})
    with pytest.raises(SecretIntegrityError, match="malformed"):
        await config.reveal("app/a")


async def test_validation_errors_never_quote_a_secret(
        stack: tuple[ConfigManager, SecretManager]) -> None:
    config, _ = stack
    await config.put_schema("strict", {"type": "object", "properties": {
        "pin": {"type": "string", "format": "password", "writeOnly": True,
                "minLength": 40, "pattern": "^[0-9]+$"}}}, bind=["strict/"])
    with pytest.raises(ValidationFailed) as caught:
        await config.put("strict/x", {"pin": PASSWORD})
    assert PASSWORD not in repr(caught.value.to_problem())
    assert caught.value.errors[0]["path"] == "$.pin"
    assert await config.storage.get("config", "strict/x") is None


async def test_kek_rotation_rewraps_secret_fields_and_retires_the_old_key(
        stack: tuple[ConfigManager, SecretManager]) -> None:
    config, secrets = stack
    before = await config.put("app/svc", _value())
    old_key = before.meta["sealed"]["key_version"]
    rotation = await KeyRotator(secrets).rotate()
    assert old_key in rotation.retired
    head = await config.get("app/svc")
    assert head.version == 2 and head.value == before.value
    assert head.meta["sealed"]["key_version"] == rotation.target
    assert (await config.get_typed("app/svc", App)).db.password.get_secret_value() == PASSWORD
    # Version 1's data key was wrapped under the retired key: a rollback to it is a
    # clear error, not an undecryptable head.
    with pytest.raises(BadRequest, match="retired"):
        await config.rollback("app/svc", 1)
    assert (await config.get("app/svc")).version == 2


async def test_secret_fields_need_a_key_provider_and_stay_out_of_rollouts(
        stack: tuple[ConfigManager, SecretManager]) -> None:
    config, _ = stack
    await config.put("app/svc", _value())
    with pytest.raises(BadRequest, match="rollout would keep them unencrypted"):
        await config.rollouts.start("app/svc", _value(NEW_PASSWORD), 0.5)
    async with ConfigManager(MemoryStorage()) as bare:
        await bare.put_schema("app", App, bind=["app/"])
        with pytest.raises(BadRequest, match=r"no \[secrets\] key provider"):
            await bare.put("app/svc", _value())
        assert await bare.storage.get("config", "app/svc") is None


async def test_a_schema_that_makes_a_stored_field_secret_is_refused_unless_forced(
        stack: tuple[ConfigManager, SecretManager]) -> None:
    config, _ = stack
    await config.put("plain/svc", {"password": PASSWORD})
    secret_schema = {"type": "object", "properties": {
        "password": {"type": "string", "format": "password", "writeOnly": True}}}
    with pytest.raises(SchemaIncompatible) as caught:
        await config.put_schema("plain", secret_schema, bind=["plain/"])
    assert "stored unencrypted" in repr(caught.value.broken)
    await config.put_schema("plain", secret_schema, bind=["plain/"], force=True)
    rewritten = await config.put("plain/svc", {"password": PASSWORD})
    assert rewritten.value == {"password": PLACEHOLDER}
