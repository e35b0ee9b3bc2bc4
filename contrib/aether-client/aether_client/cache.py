"""The last good value of each bound config, on disk, so a service starts while the
server is down.

Only values that passed the client's model are written. Each write is atomic — a
temporary file in the same directory, fsync, rename, fsync of the directory — so a
crash leaves the old file or the new one, never half of one. (A dozen lines of our own:
the one library for this, ``atomicwrites``, is archived.)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import structlog

log = structlog.get_logger("aether.client")


@dataclass(frozen=True)
class CachedValue:
    name: str
    version: int
    revision: int
    value: Any


def default_cache_dir(url: str) -> Path:
    """``$AETHER_CACHE_DIR``, else ``$XDG_CACHE_HOME/aether-client`` (``~/.cache/…``),
    with one folder per server so two servers' values never mix."""
    base = os.environ.get("AETHER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "aether-client")
    return Path(base) / quote(urlsplit(url).netloc or url, safe="")


class ValueCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        return self.directory / (quote(name, safe="") + ".json")

    def load(self, name: str) -> CachedValue | None:
        path = self.path(name)
        try:
            data = json.loads(path.read_bytes())
            return CachedValue(name=data["name"], version=int(data["version"]),
                               revision=int(data["revision"]), value=data["value"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("cached value unreadable; ignored", config=name, path=str(path),
                        error=type(exc).__name__)
            return None

    def discard(self, name: str) -> None:
        """Forget the value of ``name`` (no file: nothing to do)."""
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove a cached value", config=name,
                        error=type(exc).__name__)

    def save(self, entry: CachedValue) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        body = json.dumps({"name": entry.name, "version": entry.version,
                           "revision": entry.revision, "value": entry.value}).encode()
        target = self.path(entry.name)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp makes it 0600
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
