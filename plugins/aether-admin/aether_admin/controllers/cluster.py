"""``/cluster``: this node's view of the cluster (role, term, leader, peers)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from aether_admin.context import context

Req = Request[Any, Any, Any]


class ClusterController(Controller):
    tags = ["cluster"]

    @get("/cluster", summary="This node's view of the cluster: leader, role, term, peers")
    async def cluster(self, request: Req) -> dict[str, Any]:
        transport = context(request).transport
        leader = transport.leader()
        body: dict[str, Any] = {
            "transport": transport.name,
            "ready": transport.ready(),
            "leader": {"name": leader.name, "address": leader.address,
                       "is_self": leader.is_self, "term": leader.term},
        }
        # A replicating transport may describe itself further (role, commit, peers).
        status = getattr(transport, "status", None)
        if callable(status):
            extra = status()
            if isinstance(extra, dict):
                body.update({k: v for k, v in extra.items() if k != "leader"})
        return body
