"""The ``admin`` service: the admin API served by uvicorn inside the node's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn

from aether_admin.app import admin_context, create_app
from aether_admin.context import AdminContext
from aether_admin.settings import AdminSettings
from aether_core.auth.jwt import JwtAuth
from aether_core.errors import ConfigurationError
from aether_core.providers import NodeInfo
from aether_core.services import Service

if TYPE_CHECKING:
    from aether_core.node import Node

log = structlog.get_logger("aether.admin")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The node owns SIGINT/SIGTERM; uvicorn must not take them over.
        yield


class Listener:
    """A uvicorn server for one ASGI app on a socket bound here (so a busy port is a
    clear error, not uvicorn's ``sys.exit``), in the running event loop."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto
        # says TCP, and accepted sockets inherit the listener's 0. Without it a response
        # written in two parts waits for the client's delayed ACK: 40 ms per request.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                             socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f'[[services]] use = "admin": cannot listen on {self.host}:{self.port} '
                f"({exc.strerror})"
            ) from None
        sock.listen(2048)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, lifespan="on", log_config=None, access_log=False, server_header=False,
            timeout_graceful_shutdown=2, http="httptools",
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]),
                                         name="aether-admin")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise ConfigurationError("the admin API stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = None
        self._task = None


class AdminService(Service):
    name = "admin"
    Settings = AdminSettings

    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings
        self.listener: Listener | None = None
        self.context: AdminContext | None = None

    @classmethod
    def from_settings(cls, settings: AdminSettings, node: NodeInfo) -> AdminService:
        return cls(settings)

    async def start(self, node: Node) -> None:
        if node.auth is None:
            raise ConfigurationError(
                '[[services]] use = "admin" needs an [auth] section (e.g. use = "jwt")'
            )
        if isinstance(node.auth, JwtAuth):
            await node.auth.attach(node.config, secrets=node.secrets)
        app = create_app(node.config, node.config.transport, node.auth, settings=self.settings,
                         secrets=node.secrets)
        self.context = admin_context(app)
        self.listener = Listener(app, self.settings.host, self.settings.port)
        await self.listener.start()
        log.info("admin API listening", url=self.listener.url, docs=f"{self.listener.url}/docs")

    async def stop(self) -> None:
        if self.context is not None:
            self.context.closing.set()  # end open watch streams now
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
