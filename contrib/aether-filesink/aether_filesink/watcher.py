"""The ``file`` watcher: keep a file rendered from configs, and reload its service.

Like consul-template, but driven by Aether's ordered change events. At start it reads
the configs it renders and writes the file if it differs from what is on disk; then,
for each change event that touches those configs (in revision order, from the watch
hub), it re-renders at that revision, replaces the file atomically when the bytes
differ, and runs the reload once. A change that does not alter the file (another
config under the prefix that the template ignores, an identical value) reloads
nothing.

Failures: a template that cannot render (it uses a config that is gone) is logged and
the file keeps its last good content until a later change renders; a failed write
raises, so the hub retries it; a failed reload is logged (see :mod:`.reload`).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import structlog

from aether_core.errors import NotFound
from aether_core.manager import ConfigManager
from aether_core.providers import NodeInfo
from aether_core.records import ChangeEvent
from aether_core.statemachine import CONFIG
from aether_core.watch import Watcher
from aether_filesink import reload
from aether_filesink.atomic import write_atomic
from aether_filesink.render import TemplateProblem, compile_template, render_json, render_template
from aether_filesink.settings import FileSinkSettings, resolve_path, signal_number

if TYPE_CHECKING:
    from aether_core.node import Node

log = structlog.get_logger("aether.filesink")


class FileSinkWatcher(Watcher):
    """Render ``config`` (as JSON) or ``template`` (over ``configs``/``prefix``) to ``target``."""

    name = "file"
    Settings = FileSinkSettings

    def __init__(
        self,
        target: str | Path,
        *,
        config: str | None = None,
        template: str | Path | None = None,
        configs: list[str] | None = None,
        prefix: str | None = None,
        mode: int = 0o644,
        reload_command: list[str] | None = None,
        reload_signal: signal.Signals | None = None,
        pid_file: str | Path | None = None,
        reload_timeout: float = 30.0,
    ) -> None:
        if (config is None) == (template is None):
            raise ValueError("give exactly one of config or template")
        self.target = Path(target)
        self.config = config
        self.template_path = Path(template) if template is not None else None
        self.names = frozenset(configs or ())
        self.name_prefix = prefix
        self.mode = mode
        self.reload_command = reload_command
        self.reload_signal = reload_signal
        self.pid_file = Path(pid_file) if pid_file is not None else None
        self.reload_timeout = reload_timeout
        # The hub filters on one prefix; narrow it to what all watched names share.
        watched = [config] if config is not None else [*self.names]
        if prefix is not None:
            watched.append(prefix)
        self.prefix = _shared_start(watched)
        self._template: jinja2.Template | None = None
        self._values: dict[str, Any] = {}
        self._versions: dict[str, int] = {}
        self._written: bytes | None = None
        self._lock = asyncio.Lock()
        #: How many times the file was replaced / the reload ran (tests and metrics).
        self.writes = 0
        self.reloads = 0

    def __repr__(self) -> str:
        return f"FileSinkWatcher(target={str(self.target)!r})"

    @classmethod
    def from_settings(cls, settings: FileSinkSettings, node: NodeInfo) -> FileSinkWatcher:
        def path(value: str | None) -> Path | None:
            return None if value is None else resolve_path(value, node.manifest_path)

        return cls(
            resolve_path(settings.target, node.manifest_path),
            config=settings.config,
            template=path(settings.template),
            configs=list(settings.configs),
            prefix=settings.prefix,
            mode=int(settings.mode, 8),
            reload_command=settings.reload_command,
            reload_signal=(signal_number(settings.reload_signal)
                           if settings.reload_signal else None),
            pid_file=path(settings.pid_file),
            reload_timeout=settings.reload_timeout,
        )

    def wants(self, name: str) -> bool:
        if self.config is not None:
            return name == self.config
        return name in self.names or (
            self.name_prefix is not None and name.startswith(self.name_prefix)
        )

    # -- life cycle ------------------------------------------------------------------

    async def start(self, node: Node) -> None:
        await self.start_with(node.config)

    async def start_with(self, manager: ConfigManager) -> None:
        """Read the watched configs from ``manager`` and bring the file up to date."""
        if self.template_path is not None:
            self._template = compile_template(self.template_path)
        self._values.clear()
        self._versions.clear()
        wanted = [self.config] if self.config is not None else sorted(self.names)
        for name in wanted:
            try:
                record = await manager.get(name)
            except NotFound:
                continue
            self._values[name], self._versions[name] = record.value, record.version
        if self.name_prefix is not None:
            cursor: str | None = None
            while True:
                page = await manager.list_configs(self.name_prefix, cursor=cursor, limit=1000)
                for record in page.items:
                    self._values[record.name] = record.value
                    self._versions[record.name] = record.version
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        try:
            self._written = await asyncio.to_thread(self.target.read_bytes)
        except FileNotFoundError:
            self._written = None
        log.info("file watcher started", target=str(self.target), configs=len(self._values))
        await self._apply(await manager.revision())

    async def close(self) -> None:
        """Nothing to release: each write and reload finishes inside :meth:`deliver`."""

    # -- delivery --------------------------------------------------------------------

    async def deliver(self, event: ChangeEvent) -> None:
        if event.kind != CONFIG or not self.wants(event.name):
            return
        if event.version > self._versions.get(event.name, 0):
            # Older or repeated events (a resume after the hub dropped us) change nothing.
            self._versions[event.name] = event.version
            if event.type == "delete":
                self._values.pop(event.name, None)
            else:
                self._values[event.name] = event.value
        await self._apply(event.revision)

    async def _apply(self, revision: int) -> None:
        async with self._lock:
            content = self._render(revision)
            if content is None or content == self._written:
                return
            await asyncio.to_thread(write_atomic, self.target, content, self.mode)
            self._written = content
            self.writes += 1
            log.info("file rendered", target=str(self.target), revision=revision,
                     bytes=len(content))
            await self._reload(revision)

    def _render(self, revision: int) -> bytes | None:
        """The file's bytes at ``revision``, or ``None`` to leave the file as it is."""
        if self.config is not None:
            if self.config not in self._values:
                log.warning("config is missing or deleted; file left as it is",
                            config=self.config, target=str(self.target), revision=revision)
                return None
            return render_json(self._values[self.config])
        assert self._template is not None
        try:
            return render_template(self._template, dict(self._values), revision)
        except TemplateProblem as exc:
            log.error("template did not render; file left as it is", target=str(self.target),
                      revision=revision, error=str(exc))
            return None

    async def _reload(self, revision: int) -> None:
        done = False
        if self.reload_command is not None:
            done = await reload.run_command(
                self.reload_command, timeout=self.reload_timeout, target=self.target,
                env={"AETHER_TARGET": str(self.target), "AETHER_REVISION": str(revision)},
            )
        elif self.reload_signal is not None and self.pid_file is not None:
            done = reload.send_signal(self.pid_file, self.reload_signal, target=self.target)
        if done:
            self.reloads += 1


def _shared_start(names: list[str]) -> str:
    """The longest string every name starts with (character-wise, not per segment)."""
    if not names:
        return ""
    first, last = min(names), max(names)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]
