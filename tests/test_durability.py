"""Nothing acknowledged is lost: a writer killed with SIGKILL at random moments."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import select
import signal
import time
from pathlib import Path

from aether_core import ConfigManager, SqliteStorage


def _writer(path: str, round_no: int, ack_fd: int) -> None:
    """Child: write forever, acknowledging each write only after put() returned."""

    async def main() -> None:
        async with ConfigManager(SqliteStorage(path)) as manager:
            i = 0
            while True:
                record = await manager.put(f"k/{round_no}/{i % 5}", {"round": round_no, "i": i})
                os.write(ack_fd, f"{record.name} {record.version} {i}\n".encode())
                i += 1

    asyncio.run(main())


def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    path = str(tmp_path / "aether.db")
    rng = random.Random(20261126)
    ctx = multiprocessing.get_context("fork")
    acked: list[tuple[str, int, int, int]] = []
    for round_no in range(20):
        read_fd, write_fd = os.pipe()
        child = ctx.Process(target=_writer, args=(path, round_no, write_fd), daemon=True)
        child.start()
        os.close(write_fd)
        buffer = b""
        deadline = time.monotonic() + 20
        kill_at: float | None = None
        while True:
            now = time.monotonic()
            assert now < deadline, f"round {round_no}: the writer acknowledged nothing"
            if kill_at is not None and now >= kill_at:
                break
            ready, _, _ = select.select([read_fd], [], [], 0.01)
            if ready:
                buffer += os.read(read_fd, 65536)
                if kill_at is None and b"\n" in buffer:
                    kill_at = time.monotonic() + rng.uniform(0.0, 0.3)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        # Acks still in the pipe were written before the kill: they count too.
        while chunk := os.read(read_fd, 65536):
            buffer += chunk
        os.close(read_fd)
        # Only whole lines are acknowledgements (the text after the last newline is not).
        for line in buffer.decode().split("\n")[:-1]:
            name, version, i = line.split()
            acked.append((name, int(version), int(i), round_no))

    async def check() -> None:
        store = SqliteStorage(path)
        await store.open()
        try:
            for name, version, i, round_no in acked:
                record = await store.get("config", name, version)
                assert record is not None, f"acknowledged {name} v{version} is gone"
                assert record.value == {"round": round_no, "i": i}
            revisions = [r.revision for r in await store.records_since(0, limit=10**9)]
            assert revisions == list(range(1, len(revisions) + 1))  # still gap-free
        finally:
            await store.close()

    asyncio.run(check())
    assert len({a[3] for a in acked}) == 20  # every round acknowledged something
