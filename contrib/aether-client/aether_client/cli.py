"""Client commands of the ``aether`` CLI, over the admin API: ``get``, ``put``,
``history``, ``rollback``, ``diff``, ``watch`` and ``run``.

The server is ``--url`` or ``$AETHER_URL``; who you are is ``$AETHER_TOKEN``, or
``--username``/``$AETHER_USERNAME`` with ``$AETHER_PASSWORD`` or a password file
(``--password-file``/``$AETHER_PASSWORD_FILE``) — there is deliberately no password
option, since command lines are visible to every user of the machine. Errors are the
server's problem ``detail`` on one line, with a non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from aether_client.errors import ApiError, ClientError
from aether_core.errors import AetherError

if TYPE_CHECKING:
    from aether_client.client import AsyncAetherClient
    from aether_client.records import WatchEvent

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(AetherError):
    """A client command failed; the kernel CLI prints ``error: <detail>`` and exits 1."""

    code, title = "client", "Client error"


def server_options(fn: F) -> F:
    for option in reversed([
        click.option("--url", envvar="AETHER_URL", default="http://127.0.0.1:8080",
                     show_default=True, help="The admin API ($AETHER_URL)."),
        click.option("--username", envvar="AETHER_USERNAME", default=None,
                     help="Log in as this user ($AETHER_USERNAME), with $AETHER_PASSWORD "
                     "or --password-file; without it $AETHER_TOKEN is used."),
        click.option("--password-file", envvar="AETHER_PASSWORD_FILE", default=None,
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="A file whose first line is the password ($AETHER_PASSWORD_FILE)."),
    ]):
        fn = option(fn)
    return fn


def _client(url: str, username: str | None, password_file: Path | None,
            **kwargs: Any) -> AsyncAetherClient:
    # Imported here: `aether --help` and the kernel's own commands need none of it.
    from aether_client.client import AsyncAetherClient
    from aether_client.credentials import Credentials

    credentials = Credentials.from_env(username=username, password_file=password_file)
    return AsyncAetherClient(url, credentials, cache_dir=False, **kwargs)


def _run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(make())
    except ApiError as exc:
        extra = exc.extra.get("errors")
        detail = exc.detail
        if isinstance(extra, list) and extra:
            detail += " (" + "; ".join(
                f"{e.get('path') or '/'}: {e.get('message')}" for e in extra[:5]
                if isinstance(e, dict)) + ")"
        raise CommandFailed(detail, status=exc.status) from None
    except ClientError as exc:
        raise CommandFailed(exc.detail) from None


def client_command(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Runs the async body with a client made from the server options."""

    @wraps(fn)
    def wrapper(url: str, username: str | None, password_file: Path | None,
                **kwargs: Any) -> Any:
        async def go() -> Any:
            async with _client(url, username, password_file) as client:
                return await fn(client, **kwargs)

        return _run(go)

    return wrapper


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def _read_value(value: str | None, file: Path | None) -> Any:
    if (value is None) == (file is None):
        raise CommandFailed("give the value as an argument (JSON, '-' for stdin) or "
                            "with --file, not both")
    if file is not None:
        text = file.read_text(encoding="utf-8")
        where = str(file)
    elif value == "-":
        text, where = sys.stdin.read(), "stdin"
    else:
        text, where = str(value), "the value"
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandFailed(f"{where} is not JSON: {exc}") from None


@click.command("get")
@server_options
@click.argument("name")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="An older version.")
@click.option("--json", "as_json", is_flag=True, help="The whole record as JSON.")
@client_command
async def get_command(client: AsyncAetherClient, name: str, version: int | None,
                      as_json: bool) -> None:
    """Print the value of config NAME."""
    record = await client.get(name, version)
    if as_json:
        click.echo(_dump({"name": record.name, "version": record.version,
                          "revision": record.revision, "value": record.value,
                          "author": record.author, "comment": record.comment,
                          "timestamp": record.timestamp, "schema": record.schema}))
    else:
        click.echo(_dump(record.value))


@click.command("put")
@server_options
@click.argument("name")
@click.argument("value", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the JSON value from this file.")
@click.option("--if-match", type=click.IntRange(min=1), default=None,
              help="Write only if the current version is this one.")
@click.option("--comment", default="", help="Why (kept in the history).")
@client_command
async def put_command(client: AsyncAetherClient, name: str, value: str | None,
                      file: Path | None, if_match: int | None, comment: str) -> None:
    """Write VALUE (JSON; '-' reads stdin) as the next version of config NAME."""
    record = await client.put(name, _read_value(value, file), if_match=if_match,
                              comment=comment)
    click.echo(f"{record.name}: version {record.version} (revision {record.revision})")


@click.command("history")
@server_options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@client_command
async def history_command(client: AsyncAetherClient, name: str, as_json: bool) -> None:
    """Every version of config NAME, oldest first."""
    versions = await client.history(name)
    if as_json:
        click.echo(_dump([v.__dict__ for v in versions]))
        return
    for v in versions:
        mark = " (deleted)" if v.deleted else ""
        click.echo(f"{v.version:>5}  rev {v.revision:<8} {v.author or '-':<12} "
                   f"{v.comment}{mark}".rstrip())


@click.command("rollback")
@server_options
@click.argument("name")
@click.argument("to_version", type=click.IntRange(min=1))
@click.option("--if-match", type=click.IntRange(min=1), default=None)
@click.option("--comment", default="")
@client_command
async def rollback_command(client: AsyncAetherClient, name: str, to_version: int,
                           if_match: int | None, comment: str) -> None:
    """Write a new version of NAME equal to version TO_VERSION."""
    record = await client.rollback(name, to_version, if_match=if_match, comment=comment)
    click.echo(f"{record.name}: version {record.version} = version {to_version} "
               f"(revision {record.revision})")


@click.command("diff")
@server_options
@click.argument("name")
@click.argument("from_version", type=click.IntRange(min=1))
@click.argument("to_version", type=click.IntRange(min=1))
@client_command
async def diff_command(client: AsyncAetherClient, name: str, from_version: int,
                       to_version: int) -> None:
    """The RFC 6902 JSON Patch from one version of NAME to another."""
    click.echo(_dump(await client.diff(name, from_version, to_version)))


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)


async def _until(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        return None
    finally:
        stopper.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _line(event: WatchEvent) -> str:
    value = "" if event.type == "delete" else " " + json.dumps(
        event.value, separators=(",", ":"), sort_keys=True)
    return f"{event.revision} {event.type} {event.kind} {event.name} v{event.version}{value}"


@click.command("watch")
@server_options
@click.argument("prefix", default="")
@click.option("--since", type=click.IntRange(min=0), default=None,
              help="Start after this revision (default: from now).")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
@client_command
async def watch_command(client: AsyncAetherClient, prefix: str, since: int | None,
                        as_json: bool) -> None:
    """Print changes under PREFIX as they happen, until stopped (resumes by itself
    after a disconnect)."""
    stop = asyncio.Event()
    _stop_on_signals(stop)

    async def follow() -> None:
        async for event in client.watch(prefix, since):
            click.echo(json.dumps(event.to_json(), separators=(",", ":")) if as_json
                       else _line(event))
            sys.stdout.flush()

    await _until(stop, follow())


@click.command("run", context_settings={"ignore_unknown_options": True})
@server_options
@click.option("--prefix", required=True, help="Configs under this prefix become variables.")
@click.option("--signal", "reload_signal", default=None,
              help="On a change send this signal (e.g. HUP) instead of restarting.")
@click.option("--kill-timeout", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL when stopping the command.")
@click.option("--debounce", type=click.FloatRange(min=0), default=0.2, show_default=True,
              help="Seconds to wait for more changes before restarting.")
@click.option("--var-prefix", default="", help="Put this before every variable name.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(url: str, username: str | None, password_file: Path | None, prefix: str,
                reload_signal: str | None, kill_timeout: float, debounce: float,
                var_prefix: str, command: tuple[str, ...]) -> None:
    """Run COMMAND with the configs under --prefix as environment variables; restart it
    (or signal it) when they change.  aether run --prefix billing/ -- ./serve --port 80"""
    sig: int | None = None
    if reload_signal is not None:
        name = reload_signal.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        try:
            sig = signal.Signals[name]
        except KeyError:
            raise CommandFailed(f"--signal {reload_signal!r} is not a signal name") from None
    from aether_client.run import RunOptions, supervise

    options = RunOptions(prefix=prefix, argv=list(command), reload_signal=sig,
                         kill_timeout=kill_timeout, debounce=debounce, var_prefix=var_prefix)

    async def go() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        async with _client(url, username, password_file) as client:
            return await supervise(client, options, stop)

    code = _run(go)
    sys.exit(code if 0 <= code < 256 else 128 + (-code if code < 0 else 1))


COMMANDS = (get_command, put_command, history_command, rollback_command, diff_command,
            watch_command, run_command)
