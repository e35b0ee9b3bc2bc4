"""The few file operations the log store needs, real and simulated.

:class:`OsFileSystem` is the real one (its ``fsync`` is injectable so a test can make
it fail the way a dying disk does). :class:`SimFileSystem` keeps files in memory and
models what a crash keeps: only what was fsynced (file data) and dir-fsynced (names)
is certain; of the writes since the last fsync, a prefix survives, the last of it
possibly torn; each file decides on its own, so unsynced writes to different files
survive out of order. It can also crash on purpose at its N-th operation.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class FileSystem(Protocol):
    def listdir(self, directory: str) -> list[str]: ...
    def read(self, path: str) -> bytes: ...
    def write_new(self, path: str, data: bytes) -> None:
        """Create (or truncate) ``path`` and write ``data``; no fsync."""

    def append(self, path: str, data: bytes) -> None: ...
    def fsync(self, path: str) -> None: ...
    def fsync_dir(self, directory: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def truncate(self, path: str, size: int) -> None: ...
    def size(self, path: str) -> int: ...
    def close(self) -> None: ...


class OsFileSystem:
    def __init__(self, fsync: Callable[[int], None] = os.fsync) -> None:
        self._fsync = fsync
        self._fds: dict[str, int] = {}

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fds[path] = fd
        return fd

    def _forget(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def listdir(self, directory: str) -> list[str]:
        return sorted(os.listdir(directory))

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def write_new(self, path: str, data: bytes) -> None:
        self._forget(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def append(self, path: str, data: bytes) -> None:
        view = memoryview(data)
        fd = self._fd(path)
        while view:
            view = view[os.write(fd, view) :]

    def fsync(self, path: str) -> None:
        if path in self._fds:
            self._fsync(self._fds[path])
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    def fsync_dir(self, directory: str) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        self._forget(src)
        self._forget(dst)
        os.rename(src, dst)

    def remove(self, path: str) -> None:
        self._forget(path)
        os.remove(path)

    def truncate(self, path: str, size: int) -> None:
        self._forget(path)
        os.truncate(path, size)

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def close(self) -> None:
        for path in list(self._fds):
            self._forget(path)


class SimulatedCrash(Exception):
    """Raised by :class:`SimFileSystem` at the operation chosen to crash on."""


@dataclass
class _Inode:
    synced: bytes = b""
    writes: list[bytes] = field(default_factory=list)  # since the last fsync, in order

    def data(self) -> bytes:
        return self.synced + b"".join(self.writes)


class SimFileSystem:
    def __init__(self, crash_at: int | None = None) -> None:
        self.names: dict[str, _Inode] = {}  # what a reader sees now
        self.durable_names: dict[str, dict[str, _Inode]] = {}  # per directory, dir-fsynced
        self.ops = 0
        self.crash_at = crash_at

    def _op(self) -> None:
        self.ops += 1
        if self.crash_at is not None and self.ops >= self.crash_at:
            raise SimulatedCrash(f"crash at operation {self.ops}")

    def listdir(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        return sorted(p[len(prefix) :] for p in self.names if p.startswith(prefix))

    def read(self, path: str) -> bytes:
        try:
            return self.names[path].data()
        except KeyError:
            raise FileNotFoundError(path) from None

    def write_new(self, path: str, data: bytes) -> None:
        self._op()
        self.names[path] = _Inode(writes=[data] if data else [])

    def append(self, path: str, data: bytes) -> None:
        self._op()
        self.names.setdefault(path, _Inode()).writes.append(data)

    def fsync(self, path: str) -> None:
        self._op()
        inode = self.names[path]
        inode.synced, inode.writes = inode.data(), []

    def fsync_dir(self, directory: str) -> None:
        self._op()
        prefix = directory.rstrip("/") + "/"
        self.durable_names[directory.rstrip("/")] = {
            p: inode for p, inode in self.names.items() if p.startswith(prefix)
        }

    def rename(self, src: str, dst: str) -> None:
        self._op()
        self.names[dst] = self.names.pop(src)

    def remove(self, path: str) -> None:
        self._op()
        del self.names[path]

    def truncate(self, path: str, size: int) -> None:
        self._op()
        inode = self.names[path]
        data = inode.data()[:size]
        inode.synced, inode.writes = data, []  # modelled as durable at once (it shrinks)

    def size(self, path: str) -> int:
        return len(self.read(path))

    def close(self) -> None:
        pass

    def crash(self, rng: random.Random) -> SimFileSystem:
        """The file system a restarted machine finds."""
        after = SimFileSystem()
        seen: dict[int, _Inode] = {}
        for entries in self.durable_names.values():
            for path, inode in entries.items():
                if id(inode) not in seen:
                    keep = rng.randrange(len(inode.writes) + 1)
                    data = inode.synced + b"".join(inode.writes[:keep])
                    if keep < len(inode.writes) and rng.random() < 0.5:
                        torn = inode.writes[keep]
                        data += torn[: rng.randrange(len(torn) + 1)]
                    seen[id(inode)] = _Inode(synced=data)
                after.names[path] = seen[id(inode)]
        for directory, entries in self.durable_names.items():
            after.durable_names[directory] = {p: after.names[p] for p in entries}
        return after
