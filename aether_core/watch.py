"""The watch hub: change events, in revision order, to every subscriber.

One pump reads the storage change feed and fans each event out to bounded per-subscriber
queues. A new subscriber registers its queue *before* it reads the stored history after
its start revision, then drops from the queue what the history already gave it — so it
sees every change after ``since`` exactly once, in order, with no gap between history and
live. A subscriber whose queue fills is cut off with a reason; writers never wait on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from aether_core.errors import AetherError, Compacted, StorageFault
from aether_core.providers import ProviderSettings
from aether_core.records import ChangeEvent, Record
from aether_core.storage.base import Storage

if TYPE_CHECKING:
    from aether_core.node import Node

log = structlog.get_logger("aether.watch")


class SubscriberDropped(AetherError):
    """The subscriber fell too far behind and was cut off; resume from its last revision."""

    status, code, title = 503, "subscriber-dropped", "Watch stream dropped"


class Subscription:
    """Events after ``since`` whose name starts with ``prefix`` (and whose kind is in
    ``kinds``, when given), plus any whose ``(kind, name)`` is in ``also``.

    Read them one at a time (``async for``) or as every ready event at once
    (:meth:`next_batch`, what a server with many streams wants: one wake-up per stream
    for all the events that arrived meanwhile). Close it with :meth:`close` when not
    iterating it to the end.
    """

    def __init__(
        self,
        hub: WatchHub,
        *,
        prefix: str,
        since: int,
        kinds: frozenset[str] | None,
        queue_size: int,
        also: frozenset[tuple[str, str]] | None = None,
    ) -> None:
        self.hub = hub
        self.prefix = prefix
        self.kinds = kinds
        self.also = also or None
        self.cursor = since
        self.limit = queue_size
        # Live events wait here; the hub appends, the reader takes them all at once. A
        # plain deque and one future per wait: the fan-out costs an append and, for an
        # idle reader, one set_result — no queue getters, no extra tasks.
        self._pending: deque[ChangeEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._woken = False
        self._live = False
        self.dropped: str | None = None

    def matches(self, event: ChangeEvent) -> bool:
        if event.name.startswith(self.prefix) and (
            self.kinds is None or event.kind in self.kinds
        ):
            return True
        return self.also is not None and (event.kind, event.name) in self.also

    def _offer(self, event: ChangeEvent) -> None:
        if self.dropped or not self.matches(event):
            return
        if len(self._pending) >= self.limit:
            self.dropped = (
                f"subscriber fell {self.limit} events behind at revision "
                f"{event.revision}; resume from revision {self.cursor}"
            )
            self.hub._unregister(self)
            # What is buffered is never delivered (the subscriber resumes from its cursor
            # and reads it again).
            self._pending.clear()
        else:
            self._pending.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self) -> None:
        """Make a waiting :meth:`next_batch` return now, with no events if none are
        ready (a server's keep-alive timer or shutdown uses this)."""
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[ChangeEvent]:
        return self._events()

    async def _history(self) -> list[Record]:
        """The next stored batch; a storage fault is waited out like the hub's pump does,
        so an outage delays a subscriber and never ends it. ``Compacted`` still ends it."""
        delay = 0.1
        while True:
            try:
                return await self.hub.storage.changes(self.cursor)
            except AetherError as exc:
                if not isinstance(exc, StorageFault):
                    raise
                error: Exception = exc
            except Exception as exc:
                error = exc
            log.warning("watch history read failed; retrying", resume_from=self.cursor,
                        error=f"{type(error).__name__}: {error}", retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def next_batch(self) -> list[ChangeEvent]:
        """Every event ready now, in revision order; waits until there is at least one
        (or :meth:`wake` is called: then possibly none).

        Stored history after ``since`` comes first, straight from storage (raises
        ``Compacted`` if it is gone); then live events, those the history already covered
        skipped. Raises :class:`SubscriberDropped` once the subscriber fell behind.
        """
        while not self._live:
            records = await self._history()
            if not records:
                self._live = True
                break
            found: list[ChangeEvent] = []
            for record in records:
                if self.dropped:
                    raise SubscriberDropped(self.dropped, resume_from=self.cursor)
                event = ChangeEvent.from_record(record)
                self.cursor = event.revision
                if self.matches(event):
                    found.append(event)
            if found:
                return found
        pending = self._pending
        while True:
            if self.dropped:
                raise SubscriberDropped(self.dropped, resume_from=self.cursor)
            if pending:
                cursor = self.cursor
                ready = [event for event in pending if event.revision > cursor]
                pending.clear()
                if ready:
                    self.cursor = ready[-1].revision
                    return ready
                continue
            if self._woken:
                self._woken = False
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def _events(self) -> AsyncIterator[ChangeEvent]:
        try:
            while True:
                for event in await self.next_batch():
                    yield event
        finally:
            self.hub._unregister(self)

    def close(self) -> None:
        self.hub._unregister(self)


class WatcherSettings(ProviderSettings):
    """Base of every watcher provider's manifest settings (unknown keys are errors)."""


class Watcher:
    """A watcher plugin: receives committed events in revision order.

    :meth:`deliver` may be slow or raise; the hub retries it with back-off and never
    lets it delay a commit. It sees each event after its start at least once; with a
    successful delivery exactly once.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[WatcherSettings]] = WatcherSettings
    #: Only events whose name starts with this are delivered.
    prefix: str = ""

    async def start(self, node: Node) -> None:
        """Called once before the first delivery."""

    async def deliver(self, event: ChangeEvent) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """Called once at shutdown."""


class WatchHub:
    """Fans the storage change feed out to subscribers and watcher plugins."""

    def __init__(self, storage: Storage, *, queue_size: int = 1024) -> None:
        self.storage = storage
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self.head = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        self.head = await self.storage.revision()
        self._tasks.append(asyncio.create_task(self._pump(self.head), name="aether-watch-pump"))

    async def _pump(self, since: int) -> None:
        """Fan the feed out; a storage fault pauses it, never ends it (resume from head)."""
        self.head = since
        delay = 0.1
        while True:
            try:
                async for event in self.storage.feed(self.head):
                    self.head = event.revision
                    delay = 0.1
                    for subscriber in list(self._subscribers):
                        subscriber._offer(event)
            except Compacted as exc:
                # The store was compacted or restored past the pump's cursor (an import).
                # Subscribers read their own history, so the pump just moves on.
                log.warning("change feed compacted past the hub; moving on",
                            head=self.head, resume_from=exc.oldest_revision)
                self.head = exc.oldest_revision
                continue
            except Exception as exc:
                log.error("change feed failed; retrying", error=f"{type(exc).__name__}: {exc}",
                          resume_from=self.head, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def subscribe(
        self,
        prefix: str = "",
        since: int | None = None,
        *,
        kinds: frozenset[str] | None = None,
        queue_size: int | None = None,
        also: frozenset[tuple[str, str]] | None = None,
    ) -> Subscription:
        """Events after revision ``since`` (now, when ``None``) for names under ``prefix``,
        and those whose ``(kind, name)`` is in ``also`` whatever their name (a server
        follows its caller's user and token this way).

        Iterating raises :class:`~aether_core.errors.Compacted` if ``since`` is older than
        the feed keeps, and :class:`SubscriberDropped` if the subscriber falls behind.
        """
        start = await self.storage.revision() if since is None else since
        subscription = Subscription(
            self, prefix=prefix, since=start, kinds=kinds,
            queue_size=queue_size or self.queue_size, also=also,
        )
        self._subscribers.add(subscription)
        return subscription

    def _unregister(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def add_watcher(self, watcher: Watcher, *, since: int | None = None) -> None:
        """Deliver every event after ``since`` (the hub's head now, when ``None``) to
        ``watcher``, retrying failures."""
        # The start is read here, not when the task first runs: by then the pump may have
        # moved the head past a write committed in between, which would never be delivered.
        cursor = self.head if since is None else since
        self._tasks.append(
            asyncio.create_task(self._drive(watcher, cursor), name=f"aether-watcher-{watcher.name}")
        )

    async def _drive(self, watcher: Watcher, cursor: int) -> None:
        """Feed one watcher forever; no failure of the feed ends it silently."""
        while True:
            subscription = await self.subscribe(watcher.prefix, cursor)
            try:
                async for event in subscription:
                    await self._deliver_with_retry(watcher, event)
                    cursor = event.revision
            except SubscriberDropped as exc:
                log.warning("watcher fell behind; resuming", watcher=watcher.name, reason=str(exc))
            except Compacted as exc:
                # The changes it missed are gone from the feed: say so loudly, go on from
                # the oldest kept revision rather than stop delivering for good.
                log.error("watcher missed compacted changes; resuming after them",
                          watcher=watcher.name, missed_from=cursor,
                          resume_from=exc.oldest_revision)
                cursor = exc.oldest_revision
            except Exception as exc:
                log.error("watcher feed failed; retrying", watcher=watcher.name,
                          error=f"{type(exc).__name__}: {exc}", resume_from=cursor)
                await asyncio.sleep(1.0)

    async def _deliver_with_retry(self, watcher: Watcher, event: ChangeEvent) -> None:
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                await watcher.deliver(event)
                return
            except Exception as exc:
                log.warning(
                    "watcher delivery failed; retrying",
                    watcher=watcher.name, revision=event.revision, attempt=attempt,
                    error=type(exc).__name__, retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        """Cancel the pump and the watcher tasks and wait for them to end.

        A task may swallow one cancellation (code that uses ``asyncio.wait_for`` on 3.11
        does when its inner future completes at the same moment), so cancel again until
        it ends rather than wait forever.
        """
        pending = {task for task in self._tasks if not task.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
            for task in pending:
                log.warning("watch task ignored a cancellation; cancelling again",
                            task=task.get_name())
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        self._tasks.clear()
        self._subscribers.clear()
