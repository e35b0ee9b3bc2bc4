"""``/watch``: change events as Server-Sent Events, resumable with ``Last-Event-ID``.

Each event's ``id`` is its revision; a client that reconnects with ``Last-Event-ID: N``
gets every change after N exactly once. A revision older than what the feed keeps is
refused with 410 (then re-read the configs and watch from the current revision).
Events the caller may not read are left out. Revoking the stream's token, or any change
to its user (roles, password, removal), ends the stream with an ``error`` event: the
client reconnects and is authenticated and authorized afresh.

With a thousand streams open, the per-event cost per stream is what matters: each event
is encoded once (not once per stream), each stream decides once per name whether its
caller may read it (its principal is fixed for the stream's life), and each stream is
one generator woken once for all the events that arrived meanwhile — sent in one write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import Stream

from aether_admin.context import AdminContext, context, principal
from aether_admin.problems import problem
from aether_core.auth.base import Principal
from aether_core.errors import AetherError, BadRequest, Compacted, Unauthorized
from aether_core.records import ChangeEvent
from aether_core.statemachine import REVOKED_TOKEN, USER
from aether_core.watch import Subscription

Req = Request[Any, Any, Any]
KINDS = frozenset({"config", "schema"})
_READ = {"config": "configs:read", "schema": "schemas:read"}
#: Decisions a stream remembers (by name) before it starts over.
_DECISIONS = 4096


#: Frames by revision: with many streams open, each event is encoded once, not per stream.
#: The hub hands every stream the same event object, so a hit is an identity check; the
#: event is kept with its frame because one process may serve several stores (tests,
#: embedding), whose revision numbers mean different events.
_FRAMES: dict[int, tuple[ChangeEvent, bytes]] = {}
_FRAME_CACHE = 4096


def _frame(event: ChangeEvent) -> bytes:
    cached = _FRAMES.get(event.revision)
    if cached is not None and (cached[0] is event or cached[0] == event):
        return cached[1]
    frame = (b"id: %d\nevent: %s\ndata: " % (event.revision, event.type.encode())
             + msgspec.json.encode(event) + b"\n\n")
    if cached is None and len(_FRAMES) >= _FRAME_CACHE:
        _FRAMES.pop(next(iter(_FRAMES)))  # oldest first: dicts keep insertion order
    _FRAMES[event.revision] = (event, frame)
    return frame


def _error_frame(exc: AetherError) -> bytes:
    return (b"event: error\ndata: "
            + msgspec.json.encode(problem(exc.status, exc.detail, **exc.extra)) + b"\n\n")


def _start_revision(request: Req, since: int | None) -> int | None:
    last = request.headers.get("last-event-id")
    if last is None:
        return since
    last = last.strip()
    if not last.isdigit() or len(last) > 18:
        raise BadRequest(f"Last-Event-ID must be a revision number, not {last[:40]!r}")
    return int(last)


def _credentials_changed(who: Principal, event: ChangeEvent) -> AetherError:
    if event.kind == REVOKED_TOKEN:
        return Unauthorized("the token of this stream was revoked; log in again")
    return Unauthorized(f"user {who.name!r} changed (roles, password or removal); "
                        "reconnect to be authorized again")


async def _events(
    ctx: AdminContext, who: Principal, subscription: Subscription, opened: int
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    keepalive = ctx.settings.watch_keepalive
    allowed: dict[tuple[str, str], bool] = {}
    last_sent = loop.time()
    ping = False
    timer: asyncio.TimerHandle | None = None

    def tick() -> None:
        # One timer per stream, re-armed when it fires (not per event): it wakes the
        # stream once it has been idle for ``keepalive`` seconds.
        nonlocal timer, ping
        now = loop.time()
        due = last_sent + keepalive
        if now >= due:
            ping = True
            subscription.wake()
            due = now + keepalive
        timer = loop.call_later(due - now, tick)

    async def on_close() -> None:
        await ctx.closing.wait()
        subscription.wake()

    timer = loop.call_later(keepalive, tick)
    closer = asyncio.create_task(on_close(), name="aether-admin-sse-close")
    ctx.metrics.streams.inc()
    try:
        yield b"retry: 1000\n\n"
        while not ctx.closing.is_set():
            try:
                batch = await subscription.next_batch()
            except AetherError as exc:
                yield _error_frame(exc)
                return
            if ctx.closing.is_set():
                return
            if not batch:
                if ping:
                    ping = False
                    last_sent = loop.time()
                    yield b": keep-alive\n\n"
                continue
            frames: list[bytes] = []
            for event in batch:
                kind = event.kind
                if kind not in KINDS:  # our user or token (``also``)
                    if event.revision > opened:
                        frames.append(_error_frame(_credentials_changed(who, event)))
                        yield b"".join(frames)
                        return
                    continue
                key = (kind, event.name)
                ok = allowed.get(key)
                if ok is None:
                    if len(allowed) >= _DECISIONS:
                        allowed.clear()
                    ok = allowed[key] = ctx.auth.authorize(who, _READ[kind], event.name).allowed
                if ok:
                    frames.append(_frame(event))
            if frames:
                last_sent = loop.time()
                yield frames[0] if len(frames) == 1 else b"".join(frames)
    finally:
        ctx.metrics.streams.dec()
        if timer is not None:
            timer.cancel()
        closer.cancel()
        subscription.close()


class WatchController(Controller):
    tags = ["watch"]

    @get("/watch", summary="Server-Sent Events of changes under a prefix",
         description="Resume with Last-Event-ID (or ?since=REVISION); 410 when that "
         "revision is compacted. Without either, events from now on. The stream ends "
         "with an `error` event when its token is revoked or its user changes.")
    async def watch(
        self, request: Req, prefix: Annotated[str, QueryParameter(max_length=256)] = "",
        since: Annotated[int | None, QueryParameter(ge=0)] = None,
    ) -> Stream:
        ctx = context(request)
        who = principal(request)
        start = _start_revision(request, since)
        if start is not None:
            oldest = await ctx.manager.storage.compacted_revision()
            if start < oldest:
                raise Compacted(
                    f"revision {start} is compacted; the oldest revision kept is {oldest}: "
                    "re-read the configs, then watch from the current revision",
                    oldest_revision=oldest,
                )
        # Follow the caller's user and token too: a change to either after now ends the
        # stream (the feed says so in order, so no revocation is missed between the
        # check the request passed and the subscription).
        also = {(USER, who.name)}
        if who.token_id:
            also.add((REVOKED_TOKEN, who.token_id))
        hub = ctx.manager.hub
        subscription = await hub.subscribe(prefix, start, kinds=KINDS, also=frozenset(also))
        opened = hub.head
        try:
            if isinstance(request.auth, str):
                await ctx.auth.verify_token(request.auth)  # revoked meanwhile?
        except Exception:
            subscription.close()
            raise
        return Stream(
            _events(ctx, who, subscription, opened),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
