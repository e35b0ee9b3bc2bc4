"""``[[watchers]] use = "{{ cookiecutter.plugin_name }}"``: {{ cookiecutter.description }}.

The template starts you with a watcher that appends each change event, as one JSON
line, to a file. Replace :meth:`deliver` with your destination's call. The watch hub
calls it once per event, in revision order, from its own task: it may be slow or raise
(the hub retries with back-off) without ever delaying a commit. Secret events carry a
name and a version, never a value.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import msgspec
from aether_core.providers import NodeInfo
from aether_core.records import ChangeEvent
from aether_core.watch import Watcher, WatcherSettings
from pydantic import Field

if TYPE_CHECKING:
    from aether_core.node import Node


class {{ cookiecutter.class_name }}Settings(WatcherSettings):
    """The ``[[watchers]]`` keys besides ``use``; unknown keys are manifest errors."""

    #: JSON-lines file the events go to; relative paths are in the node's data directory.
    path: str = Field(default="{{ cookiecutter.plugin_name }}-events.jsonl", min_length=1)
    #: Only events whose name starts with this are delivered.
    prefix: str = ""


class {{ cookiecutter.class_name }}(Watcher):
    name: ClassVar[str] = "{{ cookiecutter.plugin_name }}"
    Settings = {{ cookiecutter.class_name }}Settings

    def __init__(self, path: Path, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix

    @classmethod
    def from_settings(
        cls, settings: {{ cookiecutter.class_name }}Settings, node: NodeInfo
    ) -> {{ cookiecutter.class_name }}:
        path = Path(settings.path).expanduser()
        return cls(path if path.is_absolute() else Path(node.data_dir) / path, settings.prefix)

    async def start(self, node: Node) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def deliver(self, event: ChangeEvent) -> None:
        line = msgspec.json.encode(event) + b"\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        with self.path.open("ab") as file:
            file.write(line)

    async def close(self) -> None:
        """Nothing to release: each delivery opens and closes the file."""
