"""``/cluster``: this node's view of the cluster (role, term, leader, peers), and the
membership operations of a replicated transport (admin role only):

- ``POST /cluster/members`` ``{"node", "address"}``: add a node (learner, then voter once
  it caught up): 201 a voter, 202 still a learner (run it again to promote);
- ``DELETE /cluster/members/{node}``: remove a node;
- ``POST /cluster/leader`` ``{"node"?}``: hand leadership to ``node`` (or the most
  up-to-date other voter).

Any node takes them: a follower forwards the operation to the leader, as it does writes.
Errors: 400 bad input, 404 unknown member, 409 a conflicting change (another one in
progress, already a member …), 503 no leader.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import JSONBody, PathParameter

from aether_admin.context import context
from aether_admin.security import requires
from aether_core.errors import BadRequest

Req = Request[Any, Any, Any]
ADMIN = [requires("cluster:admin", None)]


class MemberIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    node: str  #: the new node's name (its ``[node] name``)
    address: str  #: where it listens for peers (its ``[transport] listen``), host:port


class LeaderIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    node: str | None = None  #: the voter to lead; none: the most up-to-date other voter


async def _op(request: Req, op: str, node: str = "", address: str = "") -> dict[str, Any]:
    transport = context(request).transport
    run = getattr(transport, "cluster_op", None)
    if not callable(run):
        raise BadRequest(f"the {transport.name!r} transport has no cluster membership "
                         "to change (only raft has)")
    result: dict[str, Any] = await run(op, node, address)
    return result


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

    @post("/cluster/members", guards=ADMIN, status_code=201,
          summary="Add a node: a learner until it caught up, then a voter")
    async def add_member(self, request: Req, data: JSONBody[MemberIn]
                         ) -> Response[dict[str, Any]]:
        result = await _op(request, "add", data.node, data.address)
        return Response(result, status_code=201 if result.get("role") == "voter" else 202)

    @delete("/cluster/members/{node:str}", guards=ADMIN, status_code=200,
            summary="Remove a node from the cluster")
    async def remove_member(
        self, request: Req, node: Annotated[str, PathParameter(description="Node name")]
    ) -> dict[str, Any]:
        return await _op(request, "remove", node)

    @post("/cluster/leader", guards=ADMIN, status_code=200,
          summary="Hand leadership to a voter (default: the most up-to-date one)")
    async def transfer_leader(self, request: Req, data: JSONBody[LeaderIn]) -> dict[str, Any]:
        return await _op(request, "transfer", data.node or "")
