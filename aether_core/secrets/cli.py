"""``aether secrets …`` and ``aether secrets rotate-key``: secrets without a running server.

The commands open the manifest's storage, transport and key provider directly (no
services, no watchers). Values go in on stdin, never as arguments (which ``ps`` and
shell history would keep); ``get`` prints a value to stdout for a script to read.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from aether_core import manifest as manifest_mod
from aether_core.errors import BadRequest, ConfigurationError
from aether_core.secrets.manager import SecretInfo, SecretManager

T = TypeVar("T")

_MANIFEST = click.option(
    "-m", "--manifest", "manifest_path", type=click.Path(path_type=Path), default=None,
    help="Manifest file (default: $AETHER_MANIFEST, else ./aether.toml, else the embedded "
    "default).",
)
_JSON_VALUE = click.option("--json-value", is_flag=True,
                           help="stdin holds a JSON document (default: one line of text).")


async def _with_secrets(manifest_path: Path | None,
                        fn: Callable[[SecretManager], Awaitable[T]]) -> T:
    from aether_core.node import Node

    node = Node(manifest_mod.load(manifest_mod.find(manifest_path)))
    node.manifest.services = []
    node.manifest.watchers = []
    await node.start()
    try:
        if node.secrets is None:
            raise ConfigurationError("the manifest configures no [secrets] key provider")
        return await fn(node.secrets)
    finally:
        await node.stop()


def _run(manifest_path: Path | None, fn: Callable[[SecretManager], Awaitable[T]]) -> T:
    return asyncio.run(_with_secrets(manifest_path, fn))


def _read_value(as_json: bool) -> Any:
    text = sys.stdin.read() if as_json else sys.stdin.readline().rstrip("\r\n")
    if not as_json:
        if not text:
            raise BadRequest("no value on stdin")
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise BadRequest("stdin is not a JSON document") from None


def _summary(info: SecretInfo) -> str:
    labels = ", ".join(f"{label} v{getattr(info, label)}" for label in
                       ("current", "previous", "pending") if getattr(info, label) is not None)
    return f"{info.name}: {labels or 'no versions'}"


@click.group("secrets")
def secrets() -> None:
    """Encrypted secrets with staging labels (works with the server stopped)."""


@secrets.command("list")
@_MANIFEST
@click.option("--prefix", default="", help="Only names that start with this.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON metadata for scripts.")
def list_secrets(manifest_path: Path | None, prefix: str, as_json: bool) -> None:
    """Secret names and labels (never values)."""

    async def go(s: SecretManager) -> list[SecretInfo]:
        out: list[SecretInfo] = []
        cursor: str | None = None
        while True:
            items, cursor = await s.list_secrets(prefix, cursor=cursor, limit=1000)
            out.extend(items)
            if cursor is None:
                return out

    items = _run(manifest_path, go)
    if as_json:
        click.echo(msgspec.json.encode(items).decode())
        return
    for info in items:
        click.echo(_summary(info))


@secrets.command("put")
@_MANIFEST
@click.argument("name")
@_JSON_VALUE
@click.option("--comment", default="")
def put(manifest_path: Path | None, name: str, json_value: bool, comment: str) -> None:
    """Write NAME's new current value, read from stdin."""
    value = _read_value(json_value)
    info = _run(manifest_path, lambda s: s.put(name, value, author="cli", comment=comment))
    click.echo(_summary(info))


@secrets.command("stage")
@_MANIFEST
@click.argument("name")
@_JSON_VALUE
@click.option("--window", type=float, default=None,
              help="Seconds to promote it (default: [secrets] window).")
def stage(manifest_path: Path | None, name: str, json_value: bool,
          window: float | None) -> None:
    """Stage a new value for NAME (from stdin) as pending."""
    value = _read_value(json_value)

    async def go(s: SecretManager) -> SecretInfo:
        return await s.stage(name, value, window=window if window is not None else s.window,
                             author="cli")

    click.echo(_summary(_run(manifest_path, go)))


@secrets.command("promote")
@_MANIFEST
@click.argument("name")
@click.argument("version", type=int)
def promote(manifest_path: Path | None, name: str, version: int) -> None:
    """Make pending VERSION of NAME current."""
    click.echo(_summary(_run(manifest_path, lambda s: s.promote(name, version, author="cli"))))


@secrets.command("rollback")
@_MANIFEST
@click.argument("name")
def rollback(manifest_path: Path | None, name: str) -> None:
    """Make NAME's previous value current again."""
    click.echo(_summary(_run(manifest_path, lambda s: s.rollback(name, author="cli"))))


@secrets.command("get")
@_MANIFEST
@click.argument("name")
@click.option("--label", type=click.Choice(["current", "previous", "pending"]),
              default="current", show_default=True)
def get(manifest_path: Path | None, name: str, label: str) -> None:
    """Print NAME's value (text as is, anything else as JSON) to stdout."""

    async def go(s: SecretManager) -> Any:
        return (await s.reveal(name, label)).value  # type: ignore[arg-type]

    value = _run(manifest_path, go)
    click.echo(value if isinstance(value, str) else json.dumps(value))


@secrets.command("rotate-key")
@_MANIFEST
@click.option("--no-new-version", is_flag=True,
              help="Re-wrap onto the current key version (keys from the environment).")
def rotate_key(manifest_path: Path | None, no_new_version: bool) -> None:
    """Rotate the key-encryption key: re-wrap every data key, retire unused versions.
    Resumes an interrupted rotation."""
    from aether_core.secrets.rotation import KeyRotator

    async def go(s: SecretManager) -> Any:
        if s.resuming is not None:  # the start found an interrupted rotation
            await s.resuming
            return (await KeyRotator(s).status()).last
        return await KeyRotator(s).rotate(new_version=not no_new_version, author="cli")

    done = _run(manifest_path, go)
    click.echo(f"key version {done.target}: {done.rewrapped} secret(s) re-wrapped; "
               f"retired: {', '.join(done.retired) or 'none'}")
