"""The ``aether`` command line (click). Plugins add commands through
``aether_register_commands``.

Errors print one line to stderr and exit 1 (2 for usage errors); ``--debug`` shows the
traceback. Commands a script reads take ``--json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from aether_core import manifest as manifest_mod
from aether_core.errors import AetherError, ConfigurationError
from aether_core.plugins import Plugins, make_plugins

T = TypeVar("T")

MANIFEST_OPTION = click.option(
    "-m", "--manifest", "manifest_path", type=click.Path(path_type=Path), default=None,
    help="Manifest file (default: $AETHER_MANIFEST, else ./aether.toml, else the embedded "
    "default).",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


class AetherGroup(click.Group):
    """Turns Aether errors into one line and a non-zero exit."""

    plugin_error: str | None = None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AetherError as exc:
            if ctx.meta.get("aether.debug"):
                raise
            click.echo(f"error: {exc.detail}", err=True)
            ctx.exit(1)
        except OSError as exc:
            if ctx.meta.get("aether.debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("aether.debug"):
                raise
            click.echo(f"error: internal error: {type(exc).__name__}: {exc} "
                       "(run with --debug for the traceback)", err=True)
            ctx.exit(70)  # EX_SOFTWARE

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and self.plugin_error:
            ctx.fail(f"no command {cmd_name!r}; plugins could not be loaded: {self.plugin_error}")
        return command


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def emit(as_json: bool, data: Any, human: str) -> None:
    click.echo(json.dumps(msgspec.to_builtins(data), indent=2) if as_json else human)


@click.group(cls=AetherGroup)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="aether-core", prog_name="aether")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Aether: versioned, typed configuration and secrets."""
    from aether_core.logging import configure

    ctx.meta["aether.debug"] = debug
    # One-shot commands log only what goes wrong; `up` raises the level to info.
    configure(level="debug" if debug else "warning")


@cli.command()
@MANIFEST_OPTION
@click.option("--log-format", type=click.Choice(["auto", "json", "pretty"]), default="auto")
@click.pass_context
def up(ctx: click.Context, manifest_path: Path | None, log_format: str) -> None:
    """Start a node (the embedded default when no manifest is found)."""
    from aether_core.logging import configure
    from aether_core.node import Node

    configure(
        json={"auto": None, "json": True, "pretty": False}[log_format],
        level="debug" if ctx.meta.get("aether.debug") else "info",
    )
    manifest = manifest_mod.load(manifest_mod.find(manifest_path))
    run(Node(manifest).run())


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=manifest_mod.DEFAULT_PATH)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter manifest."""
    if path.exists() and not force:
        raise ConfigurationError(f"{path} exists; pass --force to overwrite it")
    text = resources.files("aether_core").joinpath("templates/aether.toml").read_text()
    path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {path}; check it with: aether manifest check -m {path}")


@cli.command("plugins")
@JSON_OPTION
def plugins_command(as_json: bool) -> None:
    """Installed plugins: name, version and the providers each registers."""
    from aether_core.plugins import BUILTIN, installed_plugins

    rows: list[dict[str, Any]] = []
    loaded = make_plugins()
    rows.append(_plugin_row(BUILTIN, loaded, BUILTIN))
    for name, ep in sorted(installed_plugins().items()):
        version = ep.dist.version if ep.dist else "?"
        try:
            one = make_plugins([name])
        except AetherError as exc:
            rows.append({"name": name, "version": version, "provides": {}, "error": exc.detail})
            continue
        rows.append(_plugin_row(name, one, version))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        provides = ", ".join(
            f"{kind} {', '.join(names)}" for kind, names in row["provides"].items()
        )
        line = f"{row['name']:<16} {row['version']:<10} {provides or '-'}"
        click.echo(line + (f"  BROKEN: {row['error']}" if row.get("error") else ""))


def _plugin_row(name: str, plugins: Plugins, version: str) -> dict[str, Any]:
    from importlib.metadata import version as dist_version

    provides: dict[str, list[str]] = {}
    for entry in plugins.by_plugin().get(name, []):
        provides.setdefault(entry.kind, []).append(entry.name)
    if version == "aether-core":
        version = dist_version("aether-core")
    return {"name": name, "version": version, "provides": provides}


@cli.group("manifest")
def manifest_group() -> None:
    """Inspect manifests."""


@manifest_group.command("check")
@MANIFEST_OPTION
@JSON_OPTION
def manifest_check(manifest_path: Path | None, as_json: bool) -> None:
    """Validate a manifest without starting anything."""
    path = manifest_mod.find(manifest_path)
    m = manifest_mod.load(path)
    summary = {
        "manifest": str(path) if path else None,
        "node": m.node.name,
        "storage": m.storage.use,
        "transport": m.transport.use,
        "auth": m.auth.use if m.auth else None,
        "services": [s.use for s in m.services],
        "watchers": [w.use for w in m.watchers],
    }
    emit(as_json, summary, f"{path or '(embedded default)'}: ok — node {m.node.name}, "
         f"storage {m.storage.use}, transport {m.transport.use}")


async def _with_manager(manifest_path: Path | None, fn: Any) -> Any:
    from aether_core.node import Node

    node = Node(manifest_mod.load(manifest_mod.find(manifest_path)))
    # Only storage and transport: an export must not start the admin API.
    node.manifest.services = []
    node.manifest.watchers = []
    await node.start()
    try:
        return await fn(node.config)
    finally:
        await node.stop()


@cli.command("export")
@MANIFEST_OPTION
@click.argument("output", type=click.Path(path_type=Path, allow_dash=True))
def export_command(manifest_path: Path | None, output: Path) -> None:
    """Write every config, schema and version, with revisions, to OUTPUT ('-': stdout)."""

    async def go(manager: Any) -> int:
        count = 0
        stream = sys.stdout.buffer if str(output) == "-" else output.open("wb")
        try:
            async for chunk in manager.export():
                stream.write(chunk)
                count += 1
        finally:
            if stream is not sys.stdout.buffer:
                stream.close()
        return count - 1

    records = run(_with_manager(manifest_path, go))
    if str(output) != "-":
        click.echo(f"exported {records} records to {output}", err=True)


@cli.command("import")
@MANIFEST_OPTION
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path, exists=True,
                                                               dir_okay=False))
@JSON_OPTION
def import_command(manifest_path: Path | None, input_path: Path, as_json: bool) -> None:
    """Load an export into an empty store (revisions and history are kept)."""

    async def chunks() -> AsyncIterator[bytes]:
        with input_path.open("rb") as f:
            while block := f.read(1 << 16):
                yield block

    async def go(manager: Any) -> Any:
        return await manager.import_(chunks())

    header = run(_with_manager(manifest_path, go))
    emit(as_json, header, f"imported {header.records} records up to revision {header.revision}")


#: Entry-point group of plugins that only add CLI commands (the client commands): the
#: CLI offers them whenever they are installed, as Flask does with ``flask.commands``.
#: A node never loads them; they name the same module as their ``aether`` entry point.
CLI_ENTRY_POINT_GROUP = "aether.cli"


def _cli_only_plugins(skip: set[str]) -> list[tuple[str, object]]:
    import importlib.metadata

    from aether_core.plugins import DISABLE_ENV, load_entry_point

    disabled = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    return [(ep.name, load_entry_point(ep.name))
            for ep in importlib.metadata.entry_points(group=CLI_ENTRY_POINT_GROUP)
            if ep.name not in skip and ep.name not in disabled]


def _load_plugin_commands() -> None:
    """Let the built-ins, the manifest's plugins and the installed CLI-only plugins add
    commands. A broken manifest must not stop ``aether --help`` or ``aether manifest
    check`` from explaining it."""
    try:
        path = manifest_mod.find(None)
        names = manifest_mod.read(path).plugin_names() if path else []
        plugins = make_plugins(names, extra=_cli_only_plugins(set(names)))
    except AetherError as exc:
        AetherGroup.plugin_error = exc.detail
        try:  # a client's commands work beside a manifest that cannot load here
            plugins = make_plugins(extra=_cli_only_plugins(set()))
        except AetherError:
            plugins = make_plugins()
    plugins.hook.aether_register_commands(cli=cli)


def main() -> None:
    _load_plugin_commands()
    cli(prog_name="aether")
