"""``/health`` (liveness), ``/ready`` (storage answers, a leader is known), ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from litestar import Controller, Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST

from aether_admin.bodies import HealthOut, ReadyOut
from aether_admin.context import context
from aether_core.errors import Unavailable

Req = Request[Any, Any, Any]
PUBLIC = {"exclude_from_auth": True}


class HealthController(Controller):
    tags = ["health"]

    @get("/health", opt=PUBLIC, summary="Liveness: the process answers")
    async def health(self) -> HealthOut:
        return HealthOut(status="ok")

    @get("/ready", opt=PUBLIC, summary="Readiness: storage answers and a leader is known")
    async def ready(self, request: Req) -> ReadyOut:
        ctx = context(request)
        if not ctx.transport.ready():
            raise Unavailable("the transport is not ready (no leader known)")
        leader = ctx.transport.leader()
        if leader.name is None:
            raise Unavailable("no leader is known")
        try:
            revision = await asyncio.wait_for(ctx.manager.revision(), 2.0)
        except Exception as exc:
            raise Unavailable(f"storage does not answer ({type(exc).__name__})") from None
        return ReadyOut(status="ready", revision=revision, leader=leader.name)

    @get("/metrics", opt=PUBLIC, summary="Prometheus metrics", include_in_schema=True)
    async def metrics(self, request: Req) -> Response[bytes]:
        ctx = context(request)
        with contextlib.suppress(Exception):  # /metrics answers even when storage does not
            ctx.metrics.revision.set(await ctx.manager.revision())
        ctx.metrics.watchers.set(ctx.manager.hub.subscriber_count)
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
