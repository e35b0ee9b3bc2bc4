"""``?consistency=`` on the read endpoints.

``linearizable`` (the default): the read reflects every write acknowledged before it
started, on whichever node serves it (a read barrier first: Raft ReadIndex, a no-op on
the local transport). ``stale``: this node answers from its own store at once, with no
barrier — faster, served even while the node has no leader, and possibly behind the
leader by what it has not applied yet.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request
from litestar.params import Parameter

from aether_admin.context import context

ConsistencyParam = Annotated[
    Literal["linearizable", "stale"],
    Parameter(query="consistency", description="linearizable (default): a read barrier "
              "first; stale: this node's copy at once, possibly behind the leader"),
]


def consistent(consistency: str) -> bool:
    return consistency != "stale"


async def barrier(request: Request[Any, Any, Any], consistency: str) -> None:
    """For reads the manager does not barrier itself (listings, history)."""
    if consistent(consistency):
        await context(request).transport.read_barrier()
