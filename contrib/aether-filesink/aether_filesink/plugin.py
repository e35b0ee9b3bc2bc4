"""Entry point ``file``: registers :class:`~aether_filesink.watcher.FileSinkWatcher`."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_watchers(register: Register) -> None:
    from aether_filesink.watcher import FileSinkWatcher

    register(FileSinkWatcher)
