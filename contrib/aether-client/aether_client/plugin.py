"""Entry point ``client``: the client commands of the ``aether`` CLI. Nothing happens at
import time; the commands are built when the CLI asks for them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aether_core.plugins import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def aether_register_commands(cli: click.Group) -> None:
    from aether_client.cli import COMMANDS
    from aether_client.rollout_cli import rollout

    for command in (*COMMANDS, rollout):
        cli.add_command(command)
