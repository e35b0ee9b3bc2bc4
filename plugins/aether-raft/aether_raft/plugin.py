"""Entry point ``raft``: registers :class:`~aether_raft.transport.RaftTransport`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def aether_register_transport(register: Register) -> None:
    from aether_raft.transport import RaftTransport

    register(RaftTransport)


@hookimpl
def aether_register_commands(cli: click.Group) -> None:
    from aether_raft.cli import cluster

    cli.add_command(cluster)
