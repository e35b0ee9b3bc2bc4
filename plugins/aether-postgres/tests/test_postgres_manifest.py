"""The ``[storage] use = "postgres"`` section: validation, secrets, and two nodes built
from manifests sharing one schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aether_postgres import PostgresSettings, PostgresStorage
from structlog.testing import capture_logs

from aether_core import manifest
from aether_core.errors import ConfigurationError, StorageFault, VersionConflict
from aether_core.node import Node

SECRET = "s3cr3t-Pa55word"


def write_manifest(tmp_path: Path, storage: str, node: str = "node-1") -> Path:
    path = tmp_path / f"{node}.toml"
    path.write_text(
        f'[node]\nname = "{node}"\ndata_dir = "{tmp_path / node}"\n\n'
        f'[storage]\nuse = "postgres"\n{storage}\n\n[transport]\nuse = "local"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(("storage", "message"), [
    ('pool_size = "ten"', '[storage] pool_size: expected int, got "ten"'),
    ('schema = "Bad-Name"', "[storage] schema: 'Bad-Name' is not a schema name"),
    ('sslmode = "sometimes"', "[storage] sslmode: Input should be"),
    ("pool_size = 2\npool_min_size = 5", "pool_min_size (5) is larger than pool_size (2)"),
    ("statement_timeout = 0", "[storage] statement_timeout: Input should be greater than 0"),
    ('poolsize = 3', "[storage] poolsize: unknown key"),
    (f'dsn = "host=db password={SECRET} oops"',
     "[storage] dsn: not a PostgreSQL connection string"),
    (f'password = "{SECRET}"', '[storage] password: must be a reference, "${env:NAME}"'),
    (f'dsn = "postgresql://postgres:{SECRET}@127.0.0.1/test"',
     "[storage] dsn: holds a password inline"),
])
def test_bad_settings_are_one_clear_line_naming_the_key(
    tmp_path: Path, storage: str, message: str
) -> None:
    path = write_manifest(tmp_path, storage)
    with pytest.raises(ConfigurationError) as info:
        manifest.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert SECRET not in str(info.value)
    if storage == 'pool_size = "ten"':
        assert str(info.value) == f'{path}: [storage] pool_size: expected int, got "ten"'


def test_the_password_comes_from_the_environment_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_dsn: str
) -> None:
    monkeypatch.setenv("AETHER_TEST_PG_PASSWORD", SECRET)
    path = write_manifest(
        tmp_path, f'dsn = "{pg_dsn}"\npassword = "${{env:AETHER_TEST_PG_PASSWORD}}"')
    settings = manifest.load(path).storage.settings
    assert isinstance(settings, PostgresSettings)
    assert settings.password is not None and settings.password.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_a_dsn_from_the_environment_may_carry_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AETHER_TEST_PG_URL", f"postgresql://postgres:{SECRET}@db:5432/app")
    (tmp_path / "pw").write_text(SECRET + "\n", encoding="utf-8")
    path = write_manifest(tmp_path, 'dsn = "${env:AETHER_TEST_PG_URL}"\n'
                                    f'password = "${{file:{tmp_path / "pw"}}}"')
    settings = manifest.load(path).storage.settings
    assert isinstance(settings, PostgresSettings)
    assert settings.password is not None and settings.password.get_secret_value() == SECRET
    assert PostgresStorage(settings).where.startswith("postgres postgres@db:5432/app")


def test_certificate_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    path = write_manifest(
        tmp_path, 'sslmode = "verify-full"\nsslrootcert = "certs/ca.pem"\nsslkey = "/abs/k.pem"')
    settings = manifest.load(path).storage.settings
    assert isinstance(settings, PostgresSettings)
    assert settings.sslrootcert == str(tmp_path / "certs" / "ca.pem")
    assert settings.sslkey == "/abs/k.pem"
    assert PostgresStorage(settings)._connect_kwargs()["sslmode"] == "verify-full"


async def test_a_password_in_the_dsn_stays_out_of_logs_and_errors(pg_dsn: str) -> None:
    dsn = f"postgresql://postgres:{SECRET}@127.0.0.1:1/test"  # nothing listens on port 1
    store = PostgresStorage(PostgresSettings(dsn=dsn, connect_timeout=2))
    assert SECRET not in store.where and SECRET not in repr(store.settings)
    with capture_logs() as logs, pytest.raises(StorageFault) as info:
        await store.open()
    assert "127.0.0.1:1/test" in info.value.detail
    assert SECRET not in info.value.detail and SECRET not in str(info.value.to_problem())
    assert SECRET not in repr(logs)
    await store.close()


async def test_two_nodes_from_manifests_share_state(
    tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    section = f'dsn = "{pg_dsn}"\nschema = "{pg_schema}"\npool_size = 3'
    a = Node(manifest.load(write_manifest(tmp_path, section, "node-a")))
    b = Node(manifest.load(write_manifest(tmp_path, section, "node-b")))
    await a.start()
    await b.start()
    try:
        assert isinstance(a.config.storage, PostgresStorage)
        watch = await b.config.watch("svc/")
        first = await a.config.put("svc/db", {"port": 5432}, author="ann")
        assert (await b.config.get("svc/db")).value == {"port": 5432}
        event = await asyncio.wait_for(anext(aiter(watch)), 10)
        assert (event.revision, event.name, event.value) == (first.revision, "svc/db",
                                                              {"port": 5432})

        # Compare-and-set through both nodes on the same version: exactly one wins.
        outcomes = await asyncio.gather(
            a.config.put("svc/db", {"port": 1}, expected_version=1),
            b.config.put("svc/db", {"port": 2}, expected_version=1),
            return_exceptions=True,
        )
        losers = [o for o in outcomes if isinstance(o, VersionConflict)]
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(losers) == 1 and len(winners) == 1
        assert losers[0].status == 409 and losers[0].extra["current_version"] == 2
        assert (await a.config.get("svc/db")).value == winners[0].value
        assert [r.version for r in await b.config.versions("svc/db")] == [1, 2]
    finally:
        await b.stop()
        await a.stop()
