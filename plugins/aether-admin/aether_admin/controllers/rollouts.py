"""``/rollouts``: staged rollout of a new config version — start, widen, promote, abort,
report health, see the status, and read a config as one client would.

The config name travels in the body or the query (as for ``/acks``), not in the path,
so names with ``/`` need no routing tricks. Changing a rollout needs ``configs:write``
on the config, seeing it ``configs:read``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, QueryParameter
from msgspec import Meta

from aether_admin.bodies import Comment, ConfigOut, Name
from aether_admin.consistency import ConsistencyParam, consistent
from aether_admin.context import context, principal
from aether_admin.controllers.acks import Message
from aether_admin.controllers.common import config_out
from aether_admin.security import authorize
from aether_core.rollout import BUCKETS, RolloutState

Req = Request[Any, Any, Any]
Fraction = Annotated[float, Meta(gt=0, le=1)]
NameQuery = Annotated[str, QueryParameter(min_length=1, max_length=256)]


class _In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name


class RolloutStartIn(_In):
    value: Any
    fraction: Fraction
    comment: Comment = ""


class RolloutWidenIn(_In):
    fraction: Fraction


class RolloutAbortIn(_In):
    reason: Message = ""


class RolloutHealthIn(_In):
    healthy: bool
    detail: Message = ""


class RolloutNameIn(_In):
    pass


class RolloutOut(msgspec.Struct, kw_only=True):
    name: str
    id: str
    state: str
    base_version: int
    candidate_version: int
    candidate: Any
    fraction: float
    acks: int
    nacks: int
    reason: str
    started: float
    updated: float


def rollout_out(name: str, state: RolloutState) -> RolloutOut:
    return RolloutOut(
        name=name, id=state.id, state=state.state, base_version=state.base_version,
        candidate_version=state.candidate_version, candidate=state.candidate,
        fraction=state.fraction / BUCKETS, acks=state.acks, nacks=state.nacks,
        reason=state.reason, started=state.started, updated=state.updated,
    )


class RolloutController(Controller):
    path = "/rollouts"
    tags = ["rollouts"]

    @get("/", summary="The rollout of a config: candidate, fraction, acks, nacks, state")
    async def status(self, request: Req, name: NameQuery) -> RolloutOut:
        authorize(request, "configs:read", name)
        return rollout_out(name, await context(request).manager.rollouts.status(name))

    @get("/config", summary="A config as client ?client= gets it (the candidate if the "
                            "client is inside the running rollout's fraction)")
    async def for_client(
        self, request: Req, name: NameQuery,
        client: Annotated[str, QueryParameter(min_length=1, max_length=128)],
        consistency: ConsistencyParam = "linearizable",
    ) -> ConfigOut:
        authorize(request, "configs:read", name)
        return config_out(await context(request).manager.get_for_client(
            name, client, consistent=consistent(consistency)))

    @post("/", summary="Start a rollout: offer a new value to a fraction of clients")
    async def start(self, request: Req, data: JSONBody[RolloutStartIn]
                    ) -> Response[RolloutOut]:
        authorize(request, "configs:write", data.name)
        state = await context(request).manager.rollouts.start(
            data.name, data.value, data.fraction, author=principal(request).name,
            comment=data.comment)
        return Response(rollout_out(data.name, state), status_code=201)

    @post("/widen", status_code=200, summary="Raise the running rollout's fraction")
    async def widen(self, request: Req, data: JSONBody[RolloutWidenIn]) -> RolloutOut:
        authorize(request, "configs:write", data.name)
        state = await context(request).manager.rollouts.widen(
            data.name, data.fraction, author=principal(request).name)
        return rollout_out(data.name, state)

    @post("/promote", status_code=200,
          summary="The candidate becomes the config's next version, for everyone")
    async def promote(self, request: Req, data: JSONBody[RolloutNameIn]) -> RolloutOut:
        authorize(request, "configs:write", data.name)
        state = await context(request).manager.rollouts.promote(
            data.name, author=principal(request).name)
        return rollout_out(data.name, state)

    @post("/abort", status_code=200, summary="Roll the running rollout back")
    async def abort(self, request: Req, data: JSONBody[RolloutAbortIn]) -> RolloutOut:
        authorize(request, "configs:write", data.name)
        state = await context(request).manager.rollouts.abort(
            data.name, data.reason, author=principal(request).name)
        return rollout_out(data.name, state)

    @post("/health", status_code=200,
          summary="An operator's health signal; a failed one rolls the rollout back")
    async def health(self, request: Req, data: JSONBody[RolloutHealthIn]) -> RolloutOut:
        authorize(request, "configs:write", data.name)
        state = await context(request).manager.rollouts.health(
            data.name, data.healthy, data.detail, author=principal(request).name)
        return rollout_out(data.name, state)
