"""``aether users …``: manage the ``jwt`` auth's users without a running server.

The commands open the manifest's storage and transport directly (no admin API, no
watchers), so the first admin can be created before anything serves — the other way
is ``AETHER_ADMIN_PASSWORD`` at first start.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from aether_core import manifest as manifest_mod
from aether_core.errors import ConfigurationError

T = TypeVar("T")

_MANIFEST = click.option(
    "-m", "--manifest", "manifest_path", type=click.Path(path_type=Path), default=None,
    help="Manifest file (default: $AETHER_MANIFEST, else ./aether.toml, else the embedded "
    "default).",
)


async def _with_auth(manifest_path: Path | None, fn: Callable[[Any], Awaitable[T]]) -> T:
    from aether_core.auth.jwt import JwtAuth
    from aether_core.node import Node

    node = Node(manifest_mod.load(manifest_mod.find(manifest_path)))
    node.manifest.services = []
    node.manifest.watchers = []
    if node.manifest.auth is None or node.manifest.auth.use != "jwt":
        raise ConfigurationError(
            "aether users manages the built-in jwt auth; the manifest needs "
            '[auth] use = "jwt"'
        )
    await node.start()
    try:
        assert isinstance(node.auth, JwtAuth)
        await node.auth.attach(node.config, bootstrap=False, secrets=node.secrets)
        return await fn(node.auth)
    finally:
        await node.stop()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@click.group("users")
def users() -> None:
    """Users of the built-in jwt auth (works with the server stopped)."""


@users.command("add")
@_MANIFEST
@click.argument("username")
@click.option("--role", "roles", multiple=True, default=("viewer",), show_default=True,
              help="Role to give (repeat for several): admin, editor, viewer, or the "
              "manifest's own.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def add(manifest_path: Path | None, username: str, roles: tuple[str, ...],
        password_stdin: bool) -> None:
    """Create USERNAME."""
    password = _read_password(password_stdin)

    async def go(auth: Any) -> Any:
        return await auth.add_user(username, password, list(roles), author="cli")

    user = asyncio.run(_with_auth(manifest_path, go))
    click.echo(f"created user {user.name!r} with roles {', '.join(user.roles) or '-'}")


@users.command("passwd")
@_MANIFEST
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def passwd(manifest_path: Path | None, username: str, password_stdin: bool) -> None:
    """Set USERNAME's password."""
    password = _read_password(password_stdin)

    async def go(auth: Any) -> Any:
        return await auth.set_password(username, password, author="cli")

    asyncio.run(_with_auth(manifest_path, go))
    click.echo(f"password of {username!r} changed")


@users.command("list")
@_MANIFEST
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_users(manifest_path: Path | None, as_json: bool) -> None:
    """Every user and their roles."""

    async def go(auth: Any) -> list[dict[str, Any]]:
        return [{"username": u.name, "roles": list(u.roles)} for u in auth.list_users()]

    rows = asyncio.run(_with_auth(manifest_path, go))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['username']:<24} {', '.join(row['roles']) or '-'}")


@users.command("delete")
@_MANIFEST
@click.argument("username")
def delete(manifest_path: Path | None, username: str) -> None:
    """Delete USERNAME (their tokens stop working)."""

    async def go(auth: Any) -> None:
        await auth.delete_user(username, author="cli")

    asyncio.run(_with_auth(manifest_path, go))
    click.echo(f"deleted user {username!r}")


@click.group("auth")
def auth() -> None:
    """The jwt auth's signing keys (works with the server stopped or running)."""


def _print_status(status: Any, as_json: bool) -> None:
    import msgspec

    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(status), indent=2))
        return
    click.echo(f"algorithm {status.algorithm}, signing with {status.signing_kid}")
    for key in status.keys:
        until = f" until {key.retires_at:.0f}" if key.retires_at is not None else ""
        click.echo(f"{key.kid:<20} {key.state}{until}")


@auth.command("keys")
@_MANIFEST
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def keys(manifest_path: Path | None, as_json: bool) -> None:
    """The signing keys by key id, and which one signs (never the keys)."""

    async def go(auth: Any) -> Any:
        return await auth.signing_status()

    _print_status(asyncio.run(_with_auth(manifest_path, go)), as_json)


@auth.command("rotate-key")
@_MANIFEST
@click.option("--propagation", type=click.FloatRange(0, 300), default=5.0,
              show_default=True,
              help="Seconds between introducing the new key (every node verifies it) and "
              "signing with it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def rotate_key(manifest_path: Path | None, propagation: float, as_json: bool) -> None:
    """Rotate the JWT signing key online: the old key keeps verifying until the tokens
    it signed have expired, then it is retired."""

    async def go(auth: Any) -> Any:
        return await auth.rotate_signing_key(propagation=propagation, author="cli")

    _print_status(asyncio.run(_with_auth(manifest_path, go)), as_json)
