"""``/watch``: change events as Server-Sent Events, resumable with ``Last-Event-ID``.

Each event's ``id`` is its revision; a client that reconnects with ``Last-Event-ID: N``
gets every change after N exactly once. A revision older than what the feed keeps is
refused with 410 (then re-read the configs and watch from the current revision).
Events the caller may not read are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import Stream

from aether_admin.context import AdminContext, context, principal
from aether_admin.problems import problem
from aether_core.auth.base import Principal
from aether_core.errors import AetherError, BadRequest, Compacted
from aether_core.records import ChangeEvent
from aether_core.watch import Subscription

Req = Request[Any, Any, Any]
KINDS = frozenset({"config", "schema"})
_READ = {"config": "configs:read", "schema": "schemas:read"}
_END = object()


#: Frames by revision: with many streams open, each event is encoded once, not per stream.
_FRAMES: dict[int, bytes] = {}
_FRAME_CACHE = 4096


def _frame(event: ChangeEvent) -> bytes:
    frame = _FRAMES.get(event.revision)
    if frame is None:
        frame = (b"id: %d\nevent: %s\ndata: " % (event.revision, event.type.encode())
                 + msgspec.json.encode(event) + b"\n\n")
        if len(_FRAMES) >= _FRAME_CACHE:
            _FRAMES.pop(next(iter(_FRAMES)))  # oldest first: dicts keep insertion order
        _FRAMES[event.revision] = frame
    return frame


def _start_revision(request: Req, since: int | None) -> int | None:
    last = request.headers.get("last-event-id")
    if last is None:
        return since
    last = last.strip()
    if not last.isdigit() or len(last) > 18:
        raise BadRequest(f"Last-Event-ID must be a revision number, not {last[:40]!r}")
    return int(last)


async def _events(
    ctx: AdminContext, who: Principal, subscription: Subscription
) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[Any] = asyncio.Queue(256)

    async def pump() -> None:
        try:
            async for event in subscription:
                await queue.put(event)
        except AetherError as exc:
            await queue.put(exc)
        finally:
            await queue.put(_END)

    async def on_close() -> None:
        await ctx.closing.wait()
        task.cancel()  # the pump's finally puts _END, which ends this stream

    task = asyncio.create_task(pump(), name="aether-admin-sse")
    closer = asyncio.create_task(on_close(), name="aether-admin-sse-close")
    ctx.metrics.streams.inc()
    try:
        yield b"retry: 1000\n\n"
        while True:
            # One plain get per event; the keep-alive timer only when nothing is ready.
            if queue.empty():
                try:
                    async with asyncio.timeout(ctx.settings.watch_keepalive):
                        item = await queue.get()
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
            else:
                item = queue.get_nowait()
            frames: list[bytes] = []
            while True:  # send every frame that is ready in one write
                if item is _END:
                    if frames:
                        yield b"".join(frames)
                    return
                if isinstance(item, AetherError):
                    frames.append(b"event: error\ndata: " + msgspec.json.encode(
                        problem(item.status, item.detail, **item.extra)) + b"\n\n")
                    yield b"".join(frames)
                    return
                if ctx.auth.authorize(who, _READ[item.kind], item.name).allowed:
                    frames.append(_frame(item))
                if queue.empty():
                    break
                item = queue.get_nowait()
            if frames:
                yield b"".join(frames)
    finally:
        ctx.metrics.streams.dec()
        closer.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        subscription.close()


class WatchController(Controller):
    tags = ["watch"]

    @get("/watch", summary="Server-Sent Events of changes under a prefix",
         description="Resume with Last-Event-ID (or ?since=REVISION); 410 when that "
         "revision is compacted. Without either, events from now on.")
    async def watch(
        self, request: Req, prefix: Annotated[str, QueryParameter(max_length=256)] = "",
        since: Annotated[int | None, QueryParameter(ge=0)] = None,
    ) -> Stream:
        ctx = context(request)
        start = _start_revision(request, since)
        if start is not None:
            oldest = await ctx.manager.storage.compacted_revision()
            if start < oldest:
                raise Compacted(
                    f"revision {start} is compacted; the oldest revision kept is {oldest}: "
                    "re-read the configs, then watch from the current revision",
                    oldest_revision=oldest,
                )
        subscription = await ctx.manager.watch(prefix, start, kinds=KINDS)
        return Stream(
            _events(ctx, principal(request), subscription),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
