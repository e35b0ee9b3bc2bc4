"""Entry point ``raft``: registers :class:`~aether_raft.transport.RaftTransport`."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_transport(register: Register) -> None:
    from aether_raft.transport import RaftTransport

    register(RaftTransport)
