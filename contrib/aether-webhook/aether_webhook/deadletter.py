"""The dead-letter file: one JSON line per event given up on, appended and fsynced.

Each line is a :class:`DeadLetter`. Lines are written with one ``write`` on a file
opened with ``O_APPEND``, so lines from several watchers sharing a file do not mix, and
the file is fsynced before the watcher moves on: an event is in the file or still being
retried, never lost in between.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import msgspec

from aether_core.records import ChangeEvent


class DeadLetter(msgspec.Struct, kw_only=True):
    """An event the receiver never accepted."""

    #: The endpoint, without query string.
    url: str
    #: The ``Aether-Webhook-Id`` it was sent with.
    id: str
    attempts: int
    #: The last failure: ``HTTP 503``, ``ConnectError``, ``ReadTimeout`` …
    error: str
    #: Unix time of the last failure.
    failed_at: float
    event: ChangeEvent


_encode = msgspec.json.Encoder().encode
_decode_line = msgspec.json.Decoder(DeadLetter).decode


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        # A new file's directory entry is durable only once the directory is synced.
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


async def append(path: Path, letter: DeadLetter) -> None:
    """Append ``letter`` to ``path`` and fsync it (off the event loop)."""
    await asyncio.to_thread(_append, path, _encode(letter) + b"\n")


def read(path: Path) -> list[DeadLetter]:
    """Every dead letter in ``path``, oldest first (for replay tools and tests)."""
    if not path.exists():
        return []
    return [_decode_line(line) for line in path.read_bytes().splitlines() if line.strip()]
