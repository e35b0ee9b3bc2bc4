"""``aether run``: start a command with the configs under a prefix as environment
variables, and restart it (or signal it) when they change — envconsul's job.

The child gets this process's environment less the client's own credentials
(``AETHER_TOKEN``, ``AETHER_PASSWORD``, ``AETHER_PASSWORD_FILE``), plus the configs'
variables (:mod:`aether_client.env`). Changes that come within ``debounce`` seconds of
each other cause one restart. When ``aether run`` is told to stop (SIGTERM, SIGINT), it
stops the child — SIGTERM, then SIGKILL after ``kill_timeout`` — and exits; when the
child exits on its own, ``aether run`` exits with its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import structlog

from aether_client.client import AsyncAetherClient
from aether_client.env import config_env
from aether_client.errors import ClientError, Compacted

log = structlog.get_logger("aether.client")
HIDDEN = ("AETHER_TOKEN", "AETHER_PASSWORD", "AETHER_PASSWORD_FILE")


@dataclass
class RunOptions:
    prefix: str
    argv: list[str]
    #: Send this signal on a change instead of restarting (the child re-reads its
    #: configuration some other way: its environment cannot change).
    reload_signal: int | None = None
    kill_timeout: float = 5.0
    debounce: float = 0.2
    var_prefix: str = ""


@dataclass
class _Configs:
    values: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)


def _say(text: str) -> None:
    print(f"aether run: {text}", file=sys.stderr, flush=True)


async def _snapshot(client: AsyncAetherClient, prefix: str) -> tuple[_Configs, int]:
    """The configs under ``prefix`` and a revision to watch from without a gap.

    Each page is read at once; a change to a config after its page was read has a
    revision above that page's highest, so the lowest of the pages' highest revisions is
    a safe start (events already seen are told apart by version).
    """
    configs = _Configs()
    since: int | None = None
    async for page in client.pages(prefix):
        for record in page:
            configs.values[record.name] = record.value
            configs.versions[record.name] = record.version
        if page:
            top = max(record.revision for record in page)
            since = top if since is None else min(since, top)
    if since is None:
        since = await client.revision()
    return configs, since


async def _follow(client: AsyncAetherClient, prefix: str, configs: _Configs, since: int,
                  changed: asyncio.Event) -> None:
    while True:
        try:
            async for event in client.watch(prefix, since):
                since = event.revision
                if event.version <= configs.versions.get(event.name, 0):
                    continue
                configs.versions[event.name] = event.version
                if event.type == "delete":
                    configs.values.pop(event.name, None)
                else:
                    configs.values[event.name] = event.value
                changed.set()
        except Compacted:
            fresh, since = await client.backoff.call(lambda: _snapshot(client, prefix))
            configs.values, configs.versions = fresh.values, fresh.versions
            changed.set()


async def _start(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    base = {k: v for k, v in os.environ.items() if k not in HIDDEN}
    try:
        return await asyncio.create_subprocess_exec(*argv, env={**base, **env})
    except OSError as exc:
        raise ClientError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None


async def _stop(child: asyncio.subprocess.Process, timeout: float) -> int:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
        try:
            await asyncio.wait_for(child.wait(), timeout)
        except TimeoutError:
            _say(f"child {child.pid} ignored SIGTERM for {timeout:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    assert child.returncode is not None
    return child.returncode


async def supervise(client: AsyncAetherClient, options: RunOptions, stop: asyncio.Event) -> int:
    """Run the child until it exits (its status) or ``stop`` is set (0, or the child's
    status when it did not end cleanly on SIGTERM)."""
    configs, since = await client.backoff.call(lambda: _snapshot(client, options.prefix))
    env = config_env(options.prefix, configs.values, var_prefix=options.var_prefix)
    changed = asyncio.Event()
    follower = client.spawn(_follow(client, options.prefix, configs, since, changed),
                            "aether-run-watch")
    child = await _start(options.argv, env)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while True:
            exited = asyncio.ensure_future(child.wait())
            woken = asyncio.ensure_future(changed.wait())
            await asyncio.wait({exited, woken, stopping, follower},
                               return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            if stopping.done():
                exited.cancel()
                code = await _stop(child, options.kill_timeout)
                return 0 if code in (0, -signal.SIGTERM) else code
            if exited.done():
                return child.returncode if child.returncode is not None else 1
            exited.cancel()
            if follower.done():
                await _stop(child, options.kill_timeout)
                follower.result()  # raises what stopped the watch
                raise ClientError("the watch ended")
            await asyncio.sleep(options.debounce)
            changed.clear()
            new_env = config_env(options.prefix, configs.values, var_prefix=options.var_prefix)
            if new_env == env:
                continue
            env = new_env
            if options.reload_signal is not None:
                _say(f"{options.prefix} changed; sending "
                     f"{signal.Signals(options.reload_signal).name} to {child.pid}")
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(options.reload_signal)
                continue
            _say(f"{options.prefix} changed; restarting {options.argv[0]}")
            await _stop(child, options.kill_timeout)
            child = await _start(options.argv, env)
    finally:
        stopping.cancel()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower
        if child.returncode is None:
            await _stop(child, options.kill_timeout)
