"""``/acks``: clients report whether they applied a config version (ack) or refused it
(nack: the value failed the client's own, stricter model).

Reports are kept in memory on the node that received them, newest last, bounded to
:data:`MAX_REPORTS` (the oldest go first); they are an operator's view of a roll-out,
not replicated state, so a restart forgets them. One report per config, version and
client: a repeated report replaces the earlier one.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, QueryParameter
from msgspec import Meta

from aether_admin.bodies import Name, Version
from aether_admin.context import context, principal
from aether_admin.security import authorize
from aether_core.errors import NotFound, VersionConflict

Req = Request[Any, Any, Any]
STATE_KEY = "aether.acks"
MAX_REPORTS = 10_000
ClientId = Annotated[str, Meta(min_length=1, max_length=128)]
Message = Annotated[str, Meta(max_length=1024)]


class AckError(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: Annotated[str, Meta(max_length=256)] = ""
    message: Message


class AckIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    version: Version
    client: ClientId
    status: Literal["ack", "nack"]
    errors: Annotated[list[AckError], Meta(max_length=50)] = msgspec.field(
        default_factory=list)
    detail: Message = ""


class AckOut(msgspec.Struct, kw_only=True):
    name: str
    version: int
    client: str
    status: str
    errors: list[AckError]
    detail: str
    reported_by: str
    at: float


class AckListOut(msgspec.Struct, kw_only=True):
    items: list[AckOut]


class AckBook:
    """The reports, by (config, version, client), oldest first."""

    def __init__(self, limit: int = MAX_REPORTS) -> None:
        self.limit = limit
        self._reports: OrderedDict[tuple[str, int, str], AckOut] = OrderedDict()

    def record(self, report: AckOut) -> None:
        key = (report.name, report.version, report.client)
        self._reports.pop(key, None)
        self._reports[key] = report
        while len(self._reports) > self.limit:
            self._reports.popitem(last=False)

    def find(self, name: str, version: int | None, status: str | None) -> list[AckOut]:
        return [r for r in self._reports.values()
                if r.name == name and (version is None or r.version == version)
                and (status is None or r.status == status)]


def _book(request: Req) -> AckBook:
    state: Any = request.app.state
    book = state.get(STATE_KEY)
    if book is None:  # one per app, made on first use (one event loop: no race)
        book = state[STATE_KEY] = AckBook()
    assert isinstance(book, AckBook)
    return book


async def _tell_rollout(request: Req, data: AckIn) -> None:
    """A report of a running rollout's candidate is replicated state: a nack rolls the
    rollout back (see :mod:`aether_core.rollout`)."""
    # NotFound: no rollout of this config; VersionConflict: it ended since the read.
    with contextlib.suppress(NotFound, VersionConflict):
        await context(request).manager.rollouts.report(
            data.name, data.client, data.version, data.status, data.detail,
            author=principal(request).name)


class AckController(Controller):
    path = "/acks"
    tags = ["acks"]

    @post("/", status_code=202,
          summary="Report that a client applied (ack) or refused (nack) a config version")
    async def report(self, request: Req, data: JSONBody[AckIn]) -> Response[AckOut]:
        # Whoever may read a config may say what they did with it.
        authorize(request, "configs:read", data.name)
        out = AckOut(name=data.name, version=data.version, client=data.client,
                     status=data.status, errors=data.errors, detail=data.detail,
                     reported_by=principal(request).name, at=time.time())
        _book(request).record(out)
        await _tell_rollout(request, data)
        return Response(out, status_code=202)

    @get("/", summary="Reports for a config, optionally one version or one status")
    async def list_reports(
        self, request: Req, name: Annotated[str, QueryParameter(min_length=1, max_length=256)],
        version: Annotated[int | None, QueryParameter(ge=1)] = None,
        status: Annotated[Literal["ack", "nack"] | None, QueryParameter()] = None,
    ) -> AckListOut:
        authorize(request, "configs:read", name)
        return AckListOut(items=_book(request).find(name, version, status))
