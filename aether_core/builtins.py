"""The kernel's own providers, registered through the same hooks as any plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl

if TYPE_CHECKING:
    import click

    from aether_core.node import Node


@hookimpl
def aether_register_storage(register: Register) -> None:
    from aether_core.storage.memory import MemoryStorage
    from aether_core.storage.sqlite import SqliteStorage

    register(MemoryStorage)
    register(SqliteStorage)


@hookimpl
def aether_register_transport(register: Register) -> None:
    from aether_core.transport.local import LocalTransport

    register(LocalTransport)


@hookimpl
def aether_register_auth(register: Register) -> None:
    from aether_core.auth.jwt import JwtAuth

    register(JwtAuth)


@hookimpl
def aether_register_key_providers(register: Register) -> None:
    from aether_core.secrets.local_keys import LocalKeyProvider

    register(LocalKeyProvider)


@hookimpl
def aether_startup(node: Node) -> Any:
    from aether_core.auth.jwt import JwtAuth

    # Services (the admin API) attach the auth themselves when they start, creating the
    # bootstrap admin; this loads the users for a node without them. No bootstrap here:
    # with nothing to log in to, a generated password would help nobody, and `aether
    # users add` (which starts a node) must be able to create the first user itself.
    if isinstance(node.auth, JwtAuth):
        return node.auth.attach(node.config, bootstrap=False, secrets=node.secrets)
    return None


@hookimpl
def aether_register_commands(cli: click.Group) -> None:
    from aether_core.auth.cli import auth, users
    from aether_core.secrets.cli import secrets

    cli.add_command(users)
    cli.add_command(auth)
    cli.add_command(secrets)
