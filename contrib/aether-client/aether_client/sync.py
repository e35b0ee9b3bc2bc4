"""``AetherClient``: the same client for code that is not async.

It runs an :class:`AsyncAetherClient` on a private event loop in a background thread
(one implementation, so the two never disagree). Bindings follow their configs in that
thread; ``on_change`` callbacks run there too.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from aether_client.binding import Binding
from aether_client.client import AsyncAetherClient
from aether_client.records import Change, ConfigRecord, VersionInfo, WatchEvent

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
_END = object()


class AetherClient:
    """Takes the arguments of :class:`AsyncAetherClient`; use it as a context manager or
    call :meth:`close`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="aether-client")
        self._thread.start()

        async def make() -> AsyncAetherClient:
            return AsyncAetherClient(*args, **kwargs)

        self.aio = self._run(make())

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> AetherClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.aio.close(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    @property
    def url(self) -> str:
        return self.aio.url

    def login(self) -> None:
        self._run(self.aio.login())

    def get(self, name: str, version: int | None = None) -> ConfigRecord:
        return self._run(self.aio.get(name, version))

    def put(self, name: str, value: Any, *, if_match: int | Literal["*"] | None = None,
            comment: str = "") -> ConfigRecord:
        return self._run(self.aio.put(name, value, if_match=if_match, comment=comment))

    def delete(self, name: str, *, if_match: int | None = None) -> int:
        return self._run(self.aio.delete(name, if_match=if_match))

    def list_configs(self, prefix: str = "") -> list[ConfigRecord]:
        return self._run(self.aio.list_configs(prefix))

    def history(self, name: str) -> list[VersionInfo]:
        return self._run(self.aio.history(name))

    def rollback(self, name: str, to_version: int, *, if_match: int | None = None,
                 comment: str = "") -> ConfigRecord:
        return self._run(self.aio.rollback(name, to_version, if_match=if_match,
                                           comment=comment))

    def diff(self, name: str, from_version: int, to_version: int) -> list[dict[str, Any]]:
        return self._run(self.aio.diff(name, from_version, to_version))

    def reports(self, name: str, *, version: int | None = None,
                status: str | None = None) -> list[dict[str, Any]]:
        return self._run(self.aio.reports(name, version=version, status=status))

    def bind(self, name: str, model: type[M], *, default: M | None = None,
             on_change: Callable[[Change[M]], Any] | None = None) -> Binding[M]:
        """See :meth:`AsyncAetherClient.bind`; callbacks run in the client's thread."""
        return self._run(self.aio.bind(name, model, default=default, on_change=on_change))

    def watch(self, prefix: str = "", since: int | None = None) -> Iterator[WatchEvent]:
        """See :meth:`AsyncAetherClient.watch`; stops when the iterator is closed."""
        # Unbounded: the loop thread must never block on a consumer that went away.
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()

        async def pump(stream: AsyncIterator[WatchEvent]) -> None:
            try:
                async for event in stream:
                    events.put(event)
            except Exception as exc:
                events.put(exc)
            finally:
                events.put(_END)

        task = asyncio.run_coroutine_threadsafe(pump(self.aio.watch(prefix, since)),
                                                self._loop)
        try:
            while True:
                item = events.get()
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            task.cancel()
