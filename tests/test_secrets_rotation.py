"""Key rotation: every data key re-wrapped online, resumable after kill -9."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aether_core import ConfigManager, MemoryStorage, SqliteStorage
from aether_core.commands import RotateKey
from aether_core.secrets.errors import RotationRefused
from aether_core.secrets.local_keys import LocalKeyProvider
from aether_core.secrets.manager import SecretManager
from aether_core.secrets.rotation import KeyRotator
from aether_core.secrets.sealed import SECRET, KeyRotation, decode_state

MARKER = "canary-91b2-rotation"


@pytest.fixture
async def secrets(tmp_path: Path) -> AsyncIterator[SecretManager]:
    async with ConfigManager(MemoryStorage()) as config:
        manager = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        await manager.start()
        yield manager


async def fill(secrets: SecretManager, count: int) -> dict[str, str]:
    values = {}
    for n in range(count):
        name = f"svc-{n:03d}/password"
        values[name] = f"{MARKER}-{n}"
        await secrets.put(name, values[name] + "-old")
        await secrets.put(name, values[name])
        if n % 3 == 0:
            await secrets.stage(name, values[name] + "-pending")
    return values


async def key_versions_in_use(secrets: SecretManager) -> set[str]:
    heads = await secrets.config.storage.heads(SECRET, limit=1000)
    return {v.key_version for record in heads for v in decode_state(record.value).versions}


async def test_rotation_rewraps_every_data_key_and_retires_the_old_key(
    secrets: SecretManager, tmp_path: Path,
) -> None:
    values = await fill(secrets, 25)
    before = {name: [v.ciphertext for v in (await secrets.state(name)).versions]
              for name in values}
    assert await key_versions_in_use(secrets) == {"1"}

    finished = await KeyRotator(secrets, batch=7).rotate(author="ops")

    assert (finished.target, finished.retired, finished.rewrapped) == ("2", ["1"], 25)
    assert finished.finished is not None and finished.cursor == "svc-024/password"
    assert await key_versions_in_use(secrets) == {"2"}
    assert await secrets.keys.versions() == ["2"]
    for name, value in values.items():
        assert (await secrets.reveal(name)).value == value
        assert (await secrets.reveal(name, "previous")).value == value + "-old"
        # Only the wrapped keys changed: the ciphertexts are the same bytes.
        assert [v.ciphertext for v in (await secrets.state(name)).versions] == before[name]
    assert (await secrets.reveal("svc-003/password", "pending")).value.endswith("-pending")
    status = await KeyRotator(secrets).status()
    assert status.rotation is None and status.last is not None and status.last.id == finished.id


async def test_reads_and_writes_never_fail_during_a_rotation(secrets: SecretManager) -> None:
    values = await fill(secrets, 30)
    names = sorted(values)
    stop = asyncio.Event()
    reads = failures = writes = 0
    rng = random.Random(7)
    # A read that overlaps a write may see either value; a write is applied by the
    # transport's task, so there is always such a window.
    writing: dict[str, str] = {}

    async def reader() -> None:
        nonlocal reads, failures
        while not stop.is_set():
            name = rng.choice(names)
            try:
                allowed = {values[name], writing.get(name)}
                got = await secrets.reveal_for_client(name)
                assert got[0].value in allowed | {values[name], writing.get(name)}
                reads += 1
            except Exception:  # any failure is what this test counts
                failures += 1
            await asyncio.sleep(0)

    async def writer() -> None:
        nonlocal writes
        while not stop.is_set():
            name = rng.choice(names)
            writing[name] = f"{MARKER}-rewritten-{writes}"
            await secrets.put(name, writing[name])
            values[name] = writing.pop(name)
            writes += 1
            await asyncio.sleep(0.002)

    tasks = [asyncio.create_task(reader()) for _ in range(4)] + [asyncio.create_task(writer())]
    started = asyncio.get_running_loop().time()
    await KeyRotator(secrets, batch=3, pause=0.01).rotate()
    elapsed = asyncio.get_running_loop().time() - started
    stop.set()
    await asyncio.gather(*tasks)
    assert failures == 0
    assert writes > 5 and reads / elapsed >= 100, (reads, writes, elapsed)
    assert await key_versions_in_use(secrets) == {"2"}
    for name, value in values.items():
        assert (await secrets.reveal(name)).value == value


async def test_clients_never_fail_through_secret_and_key_rotations(
    secrets: SecretManager,
) -> None:
    """Clients follow the protocol (use current, accept previous during the overlap)
    while values are staged and promoted over and over and the KEK rotates."""
    names = [f"db-{n}" for n in range(4)]
    promoted: dict[str, list[str]] = {name: [f"{name}-v1"] for name in names}
    for name in names:
        await secrets.put(name, promoted[name][0])
    stop = asyncio.Event()
    reads = failures = 0

    async def client(seed: int) -> None:
        nonlocal reads, failures
        rng = random.Random(seed)
        while not stop.is_set():
            name = rng.choice(names)
            try:
                offered = [r.value for r in await secrets.reveal_for_client(name)]
                # The credential in force is the newest promoted one or, while its
                # promotion is reaching everyone, the one before it.
                assert offered[0] in promoted[name][-2:] and set(offered) <= set(promoted[name])
                reads += 1
            except Exception:  # any failure is what this test counts
                failures += 1
            await asyncio.sleep(0)

    async def rotate_values() -> None:
        for cycle in range(2, 12):
            for name in names:
                staged = await secrets.stage(name, f"{name}-v{cycle}")
                promoted[name].append(f"{name}-v{cycle}")
                await secrets.promote(name, staged.pending or 0)
            await asyncio.sleep(0.01)

    clients = [asyncio.create_task(client(seed)) for seed in range(4)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(rotate_values(), KeyRotator(secrets, batch=1, pause=0.02).rotate())
    await asyncio.sleep(0.05)
    elapsed = loop.time() - started
    stop.set()
    await asyncio.gather(*clients)
    assert failures == 0
    assert reads / elapsed >= 100, (reads, elapsed)
    for name in names:
        assert (await secrets.reveal(name)).value == f"{name}-v11"


async def test_a_rotation_interrupted_in_process_resumes_from_its_cursor(
    secrets: SecretManager,
) -> None:
    values = await fill(secrets, 12)
    seen: list[str] = []

    def crash_after_two_batches(rotation: KeyRotation) -> None:
        seen.append(rotation.cursor)
        if len(seen) == 2:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        await KeyRotator(secrets, batch=4, on_progress=crash_after_two_batches).rotate()
    running = (await KeyRotator(secrets).status()).rotation
    assert running is not None and running.cursor == seen[1] == "svc-007/password"
    assert await key_versions_in_use(secrets) == {"1", "2"}
    # Starting another rotation is refused while one is running; resuming finishes it.
    with pytest.raises(RotationRefused, match="still running"):
        await secrets.propose(RotateKey(rotation_id="x", key_provider="local",
                                        target_version="9"))
    finished = await KeyRotator(secrets).resume()
    assert finished is not None and finished.id == running.id and finished.retired == ["1"]
    assert finished.rewrapped == 12
    assert await KeyRotator(secrets).resume() is None
    for name, value in values.items():
        assert (await secrets.reveal(name)).value == value


async def test_rewrap_onto_an_environment_key(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    async with ConfigManager(MemoryStorage()) as config:
        first = SecretManager(config, LocalKeyProvider(keys={"1": old}))
        await first.put("db", MARKER)
        # The operator sets a new key as version 2 and keeps the old one as previous.
        second = SecretManager(config, LocalKeyProvider(keys={"1": old, "2": new}))
        finished = await KeyRotator(second).rotate(new_version=False)
        assert finished.target == "2" and finished.retired == []
        assert (await second.state("db")).versions[0].key_version == "2"
        # Without the old key the secret still reads: nothing uses version 1.
        third = SecretManager(config, LocalKeyProvider(keys={"2": new}))
        assert (await third.reveal("db")).value == MARKER


_WORKER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from aether_core import ConfigManager, SqliteStorage
    from aether_core.secrets.local_keys import LocalKeyProvider
    from aether_core.secrets.manager import SecretManager
    from aether_core.secrets.rotation import KeyRotator
    from aether_core.logging import configure

    async def main(root: Path) -> None:
        async with ConfigManager(SqliteStorage(root / "a.db")) as config:
            secrets = SecretManager(config, LocalKeyProvider(root / "secrets.keys"))
            await secrets.start()
            def progress(rotation):
                print("progress", rotation.cursor, flush=True)
            await KeyRotator(secrets, batch=4, pause=0.3, on_progress=progress).rotate()
            print("finished", flush=True)

    configure(json=True)  # logs to stderr; stdout carries progress only
    asyncio.run(main(Path(sys.argv[1])))
""")


async def test_kill_9_in_the_middle_of_a_rewrap_then_resume(tmp_path: Path) -> None:
    typed = {"host": "db1", "password": MARKER + "-field"}
    async with ConfigManager(SqliteStorage(tmp_path / "a.db")) as config:
        secrets = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        values = await fill(secrets, 24)
        # A typed config's secret field is wrapped under the same key.
        await config.put_schema("typed", {"type": "object", "properties": {
            "password": {"type": "string", "format": "password", "writeOnly": True}}},
            bind=["typed/"])
        await config.put("typed/svc", typed)
    script = tmp_path / "rotate.py"
    script.write_text(_WORKER)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(tmp_path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    lines = []
    async with asyncio.timeout(20):
        while len(lines) < 2:
            line = (await process.stdout.readline()).decode().strip()
            assert line, "the rotation worker exited early"
            lines.append(line)
    process.send_signal(signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL
    assert lines == ["progress svc-003/password", "progress svc-007/password"]
    assert process.stderr is not None
    worker_logs = await process.stderr.read()
    assert b"key rotation started" in worker_logs and MARKER.encode() not in worker_logs

    async with ConfigManager(SqliteStorage(tmp_path / "a.db")) as config:
        observer = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        rotator = KeyRotator(observer)  # not started: it only looks
        running = (await rotator.status()).rotation
        assert running is not None and running.cursor >= "svc-007/password"
        assert await key_versions_in_use(observer) == {"1", "2"}
        # The restarted node resumes the rotation by itself, serving reads meanwhile.
        secrets = SecretManager(config, LocalKeyProvider(tmp_path / "secrets.keys"))
        await secrets.start()
        assert secrets.resuming is not None
        for name, value in values.items():
            assert (await secrets.reveal(name)).value == value
        await secrets.resuming
        finished = (await rotator.status()).last
        assert finished is not None and finished.id == running.id
        assert finished.retired == ["1"]
        assert await key_versions_in_use(secrets) == {"2"}
        assert (await config.get("typed/svc")).meta["sealed"]["key_version"] == "2"
        assert (await config.reveal("typed/svc")).value == typed
        for name, value in values.items():
            assert (await secrets.reveal(name)).value == value
        raw = (tmp_path / "a.db").read_bytes() + b"".join(
            [chunk async for chunk in config.export()])
        assert MARKER.encode() not in raw
        assert base64.b64encode(MARKER.encode()) not in raw
