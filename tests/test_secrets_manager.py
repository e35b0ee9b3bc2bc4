"""SecretManager: envelope encryption at rest, staging labels, redaction, tampering."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from aether_core import ConfigManager, MemoryStorage, SqliteStorage
from aether_core.commands import Command, encode
from aether_core.errors import AetherError, BadRequest, NotFound, VersionConflict
from aether_core.records import ChangeEvent, CommitResult, Write
from aether_core.secrets.errors import RotationRefused, SecretIntegrityError, UnknownKeyVersion
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager
from aether_core.secrets.sealed import SECRET, decode_state, encode_state
from aether_core.transport.local import LocalTransport

MARKER = "canary-5e1d0b-plaintext"


class RecordingTransport(LocalTransport):
    """The local transport, keeping the bytes of every command (what a Raft log holds)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[bytes] = []

    async def propose(self, command: Command) -> CommitResult:
        self.log.append(encode(command))
        return await super().propose(command)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "sqlite"])
async def secrets(request: pytest.FixtureRequest, tmp_path: Path,
                  clock: Clock) -> AsyncIterator[SecretManager]:
    storage = MemoryStorage() if request.param == "memory" else SqliteStorage(tmp_path / "a.db")
    config = ConfigManager(storage, RecordingTransport(), clock=clock)
    manager = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"),
                            overlap=600, window=3600)
    async with config:
        await manager.start()
        yield manager
        await manager.close()


@pytest.fixture
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event at every level (another test may have raised the level)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


def log_of(secrets: SecretManager) -> list[bytes]:
    transport = secrets.config.transport
    assert isinstance(transport, RecordingTransport)
    return transport.log


def assert_no_marker_in_files(root: Path) -> None:
    for file in root.rglob("*"):
        if file.is_file():
            assert MARKER.encode() not in file.read_bytes(), file


async def everything_stored(secrets: SecretManager) -> bytes:
    return b"".join([chunk async for chunk in secrets.config.export()])


async def test_put_and_reveal_round_trip_with_no_plaintext_at_rest(
    secrets: SecretManager, tmp_path: Path, capfd: pytest.CaptureFixture[str],
    captured_logs: list[dict[str, Any]],
) -> None:
    info = await secrets.put("billing/db-password", MARKER, author="ann")
    await secrets.put("billing/api", {"token": MARKER + "-2"}, author="ann")
    revealed = await secrets.reveal("billing/db-password")
    assert revealed.value == MARKER
    assert (revealed.version, revealed.labels) == (1, ("current",))
    assert (await secrets.reveal("billing/api")).value == {"token": MARKER + "-2"}
    assert info.current == 1 and info.versions[0].key_version == "1"
    assert MARKER not in repr(revealed) and MARKER not in repr(info)
    # Nothing that leaves the process or reaches disk holds the plaintext: the command
    # log, every stored record (the export), the change events, the logs, the files.
    assert all(MARKER.encode() not in entry for entry in log_of(secrets))
    assert log_of(secrets), "commands were proposed"
    assert MARKER.encode() not in await everything_stored(secrets)
    events = [ChangeEvent.from_record(r) for r in await secrets.config.storage.changes(0)]
    assert [e.name for e in events] == ["billing/db-password", "billing/api"]
    assert all(e.value is None for e in events)
    assert [e["event"] for e in captured_logs].count("secret written") == 2
    assert MARKER not in repr(captured_logs)
    assert_no_marker_in_files(tmp_path)
    out, err = capfd.readouterr()
    assert MARKER not in out + err


async def test_listing_and_metadata_carry_no_values(secrets: SecretManager) -> None:
    for name in ("app/a", "app/b", "other/c"):
        await secrets.put(name, MARKER)
    items, cursor = await secrets.list_secrets("app/", limit=1)
    assert [i.name for i in items] == ["app/a"] and cursor is not None
    items, cursor = await secrets.list_secrets("app/", cursor=cursor, limit=1)
    assert [i.name for i in items] == ["app/b"] and cursor is None
    encoded = msgspec.json.encode([await secrets.info("app/a"), items])
    assert MARKER.encode() not in encoded


async def test_stage_promote_overlap_and_rollback(secrets: SecretManager, clock: Clock) -> None:
    await secrets.put("db", "v1-" + MARKER)
    staged = await secrets.stage("db", "v2-" + MARKER, comment="rotation")
    assert (staged.current, staged.pending) == (1, 2)
    # Staging changes nothing clients see.
    assert [r.value for r in await secrets.reveal_for_client("db")] == ["v1-" + MARKER]
    assert (await secrets.reveal("db", "pending")).value == "v2-" + MARKER

    promoted = await secrets.promote("db", 2)
    assert (promoted.current, promoted.previous, promoted.pending) == (2, 1, None)
    both = await secrets.reveal_for_client("db")
    assert [(r.version, r.labels, r.value) for r in both] == [
        (2, ("current",), "v2-" + MARKER), (1, ("previous",), "v1-" + MARKER)]
    clock.now += 601  # the overlap window (600 s) has closed
    assert [r.version for r in await secrets.reveal_for_client("db")] == [2]
    assert (await secrets.reveal("db", "previous")).value == "v1-" + MARKER

    rolled = await secrets.rollback("db")
    assert (rolled.current, rolled.previous) == (1, 2)
    assert (await secrets.reveal("db")).value == "v1-" + MARKER
    assert [r.version for r in await secrets.reveal_for_client("db")] == [1, 2]


async def test_a_put_moves_current_to_previous_and_drops_unlabelled_versions(
    secrets: SecretManager,
) -> None:
    for n in range(1, 5):
        info = await secrets.put("k", f"value-{n}")
    assert (info.current, info.previous) == (4, 3)
    assert [v.version for v in info.versions] == [3, 4]


async def test_promoting_a_version_that_is_not_pending_changes_nothing(
    secrets: SecretManager,
) -> None:
    await secrets.put("db", "one")
    await secrets.stage("db", "two")
    before = await secrets.config.storage.get(SECRET, "db")
    for version in (1, 3, 99):
        with pytest.raises(RotationRefused, match=f"version {version} is not pending"):
            await secrets.promote("db", version)
    await secrets.promote("db", 2)
    with pytest.raises(RotationRefused, match="no version is pending"):
        await secrets.promote("db", 2)
    history = await secrets.config.storage.history(SECRET, "db")
    assert before is not None and len(history) == before.version + 1


async def test_an_expired_rotation_window_refuses_promotion(
    secrets: SecretManager, clock: Clock,
) -> None:
    await secrets.put("db", "one")
    await secrets.stage("db", "two", window=60)
    clock.now += 61
    head = await secrets.config.storage.get(SECRET, "db")
    with pytest.raises(RotationRefused, match=r"rotation window .* closed"):
        await secrets.promote("db", 2)
    assert await secrets.config.storage.get(SECRET, "db") == head
    assert (await secrets.reveal("db")).value == "one"
    # Staging again opens a new window.
    staged = await secrets.stage("db", "two", window=60)
    assert (await secrets.promote("db", staged.pending or 0)).current == 3


async def test_rollback_without_previous_and_missing_secrets(secrets: SecretManager) -> None:
    await secrets.put("db", "one")
    with pytest.raises(RotationRefused, match="no previous version"):
        await secrets.rollback("db")
    with pytest.raises(NotFound):
        await secrets.reveal("nope")
    with pytest.raises(NotFound, match="no pending version"):
        await secrets.reveal("db", "pending")
    with pytest.raises(NotFound):
        await secrets.promote("nope", 1)


async def test_compare_and_set_on_the_record_version(secrets: SecretManager) -> None:
    info = await secrets.put("db", "one", expected_version=0)
    with pytest.raises(AetherError) as caught:
        await secrets.put("db", "two", expected_version=0)
    assert caught.value.status == 409
    with pytest.raises(VersionConflict):
        await secrets.put("db", "two", expected_version=info.record_version + 5)
    assert (await secrets.put("db", "two", expected_version=info.record_version)).current == 2


async def test_delete_then_recreate_never_reuses_a_version(secrets: SecretManager) -> None:
    await secrets.put("db", "one")
    await secrets.put("db", "two")
    await secrets.delete("db")
    with pytest.raises(NotFound, match="deleted"):
        await secrets.reveal("db")
    info = await secrets.put("db", "three")
    assert info.current == 3


async def test_diff_says_changed_or_unchanged_only(secrets: SecretManager) -> None:
    await secrets.put("db", MARKER)
    await secrets.put("db", MARKER)
    await secrets.put("db", MARKER + "-new")
    assert (await secrets.diff("db", 1, 2))["result"] == "unchanged"
    result = await secrets.diff("db", 2, 3)
    assert result == {"name": "db", "from": 2, "to": 3, "result": "changed"}
    with pytest.raises(NotFound, match="no version 9"):
        await secrets.diff("db", 1, 9)


@pytest.mark.parametrize("value, message", [
    (object(), "value of type object is not JSON"),
    (None, "must not be null"),
    ("x" * 70_000, "at most"),
])
async def test_bad_values_are_refused_without_echoing_them(
    secrets: SecretManager, value: Any, message: str,
) -> None:
    with pytest.raises(BadRequest, match=message) as caught:
        await secrets.put("db", value)
    assert "xxxx" not in caught.value.detail
    assert await secrets.config.storage.get(SECRET, "db") is None


async def test_bad_names_are_refused(secrets: SecretManager) -> None:
    for name in ("", "a//b", "a b", "/x"):
        with pytest.raises(BadRequest, match="secret name"):
            await secrets.put(name, "v")


# -- tampering -----------------------------------------------------------------------


async def overwrite(secrets: SecretManager, name: str, value: dict[str, Any]) -> None:
    """Write a raw record behind the kernel's back, as an attacker with storage access."""
    head = await secrets.config.storage.get(SECRET, name)
    assert head is not None
    result = await secrets.config.storage.commit([Write(
        kind=SECRET, name=name, expected_version=head.version, value=value, meta=head.meta)])
    assert result.rejection is None


def flip(text: str, index: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index % len(raw)] ^= 0x80
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("field", ["ciphertext", "wrapped_key"])
@pytest.mark.parametrize("index", [0, 13, -1])
async def test_a_flipped_bit_is_refused_never_decrypted(
    secrets: SecretManager, field: str, index: int,
) -> None:
    await secrets.put("db", MARKER)
    state = await secrets.state("db")
    sealed = state.versions[0]
    state.versions[0] = msgspec.structs.replace(
        sealed, **{field: flip(getattr(sealed, field), index)})
    await overwrite(secrets, "db", encode_state(state))
    secrets._data_keys.clear()
    with pytest.raises(SecretIntegrityError) as caught:
        await secrets.reveal("db")
    assert MARKER not in str(caught.value) and MARKER not in repr(caught.value.to_problem())


async def test_a_ciphertext_swapped_between_secrets_is_refused(secrets: SecretManager) -> None:
    await secrets.put("alice/password", MARKER + "-alice")
    await secrets.put("bob/password", MARKER + "-bob")
    alice = await secrets.config.storage.get(SECRET, "alice/password")
    assert alice is not None
    await overwrite(secrets, "bob/password", alice.value)
    with pytest.raises(SecretIntegrityError, match="copied from another"):
        await secrets.reveal("bob/password")


async def test_versions_swapped_within_a_secret_are_refused(secrets: SecretManager) -> None:
    await secrets.put("db", "old")
    await secrets.put("db", "new")
    state = await secrets.state("db")
    one, two = state.versions
    state.versions = [msgspec.structs.replace(one, version=2),
                      msgspec.structs.replace(two, version=1)]
    await overwrite(secrets, "db", encode_state(state))
    with pytest.raises(SecretIntegrityError):
        await secrets.reveal("db")
    with pytest.raises(SecretIntegrityError):
        await secrets.reveal("db", "previous")


async def test_an_unknown_key_version_is_a_clear_error(secrets: SecretManager) -> None:
    await secrets.put("db", MARKER)
    state = await secrets.state("db")
    state.versions[0] = msgspec.structs.replace(state.versions[0], key_version="42")
    await overwrite(secrets, "db", encode_state(state))
    with pytest.raises(UnknownKeyVersion, match="'42'"):
        await secrets.reveal("db")


async def test_a_wrong_key_file_is_refused(secrets: SecretManager, tmp_path: Path) -> None:
    await secrets.put("db", MARKER)
    other = SecretManager(secrets.config, LocalKeyProvider(tmp_path / "another.keys"))
    await other.keys.wrap(b"\0" * 32)  # the other file now exists with its own version 1
    with pytest.raises(SecretIntegrityError, match="wrong key file"):
        await other.reveal("db")


async def test_stored_state_round_trips(secrets: SecretManager) -> None:
    await secrets.put("db", "one")
    head = await secrets.config.storage.get(SECRET, "db")
    assert head is not None
    assert encode_state(decode_state(head.value)) == head.value
    assert head.meta["labels"] == {"current": 1}
    assert head.meta["key_versions"] == ["1"]
