"""Hot reload: from "write acknowledged" to "the client's callback ran", through Aether
(``aether up`` + the client SDK's typed bindings) and through etcd's watch, in one run.

    .venv/bin/python bench/hot_reload_bench.py [--writes 1000] [--many 1000]
        [--many-writes 200] [--procs 1] [--readers sdk,raw] [--skip-one] [--no-etcd]

For each write the writer notes the moment its PUT was answered (the write is durable
and acknowledged), then waits until every watcher's callback has seen that version
before it writes again — so each figure is one change's latency, with no queue behind
it. Latency = callback time - acknowledgement time, on CLOCK_MONOTONIC (shared by every
process on the machine). A callback can run before the writer has read its own answer;
such a latency counts as 0 and the count is reported.

Aether: ``aether up`` (SQLite, ``local`` transport, the admin API) in its own process;
watchers are ``client.bind(name, Model)`` bindings (a pydantic model validated on every
change), each with its own SSE stream; with one watcher the last-good cache on disk is
on, with many it is off (one machine, one disk: a thousand fsyncs per change would
measure the disk). etcd (Debian's etcd-server 3.4, started by ../shared/bench/etcd_up.sh)
is driven through its JSON gateway with the same HTTP client: ``POST /v3/kv/put``, and
one ``POST /v3/watch`` stream per watcher, callback on each event.

Watchers live in ``--procs`` processes (default 1) besides the server and the writer,
all on the same cores: with many watchers the watchers' own parsing is part of what is
measured. Say so next to any figure. ``--readers raw`` replaces the HTTP clients with
bare asyncio socket readers that only find each event's version in the bytes (for
Aether and etcd alike), so what is left is the server's cost; each row also reports the
CPU the server and the watcher processes spent per write.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx

PASSWORD = "bench-hot-reload-password"
SIGNING_KEY = "bench-hot-reload-signing-key-0123456789abcdef"
NAME = "bench/hot"
ETCD_SCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "bench"
ETCD_URL = "http://127.0.0.1:22379"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- servers -----------------------------------------------------------------------------


def start_aether(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (directory / "aether.toml").write_text(f"""
[node]
name = "bench"
data_dir = "data"
[storage]
use = "sqlite"
[transport]
use = "local"
[auth]
use = "jwt"
signing_key = "${{env:AETHER_SIGNING_KEY}}"
[[services]]
use = "admin"
listen = "127.0.0.1:{port}"
docs = false
""")
    aether = Path(sys.executable).with_name("aether")
    env = {**os.environ, "AETHER_ADMIN_PASSWORD": PASSWORD, "AETHER_SIGNING_KEY": SIGNING_KEY}
    proc = subprocess.Popen([str(aether), "up", "-m", "aether.toml", "--log-format", "json"],
                            cwd=directory, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("aether up did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def etcd(action: str) -> bool:
    script = ETCD_SCRIPTS / "etcd_up.sh"
    if not script.exists() or shutil.which("etcd") is None:
        return False
    result = subprocess.run(["bash", str(script), action, *(["single"] if action == "start"
                                                             else [])],
                            capture_output=True, text=True, timeout=60)
    return result.returncode == 0


# -- watchers (each set in its own process) ----------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def _aether_watchers(url: str, count: int, cache: str | None, ready: Any,
                           times: Any, target: Any) -> None:
    from aether_client import AsyncAetherClient, Backoff, Change, Credentials
    from pydantic import BaseModel

    class Hot(BaseModel):
        seq: int
        payload: str

    client = AsyncAetherClient(url, Credentials(username="admin", password=PASSWORD),
                               cache_dir=cache if cache else False,
                               backoff=Backoff(initial=0.05, maximum=1))
    seen: dict[int, list[float]] = {}
    done = asyncio.Event()

    def callback(change: Change[Hot]) -> None:
        now = time.monotonic()
        got = seen.setdefault(change.version, [])
        got.append(now)
        if change.version == target.value and len(got) == count:
            done.set()

    async with client:
        await client.login()
        for _ in range(count):
            binding = await client.bind(NAME, Hot)
            binding.on_change(callback)
        ready.put(count)
        await _serve(seen, count, done, times, target)


async def _etcd_watchers(count: int, ready: Any, times: Any, target: Any) -> None:
    from pydantic import BaseModel

    class Hot(BaseModel):  # the model the Aether bindings validate against
        seq: int
        payload: str

    seen: dict[int, list[float]] = {}
    done = asyncio.Event()
    key = _b64(NAME)

    async def watch(http: httpx.AsyncClient, started: asyncio.Event) -> None:
        body = {"create_request": {"key": key}}
        async with http.stream("POST", "/v3/watch", json=body) as response:
            async for line in response.aiter_lines():
                data = json.loads(line).get("result", {})
                if data.get("created"):
                    started.set()
                for event in data.get("events", []):
                    # What a typed client does with the change, as the Aether binding
                    # does before its callback: decode the value and validate it.
                    Hot.model_validate_json(base64.b64decode(event["kv"]["value"]))
                    now = time.monotonic()
                    version = int(event["kv"].get("version", 0))
                    got = seen.setdefault(version, [])
                    got.append(now)
                    if version == target.value and len(got) == count:
                        done.set()

    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(base_url=ETCD_URL, timeout=None, limits=limits) as http:
        starts = [asyncio.Event() for _ in range(count)]
        tasks = [asyncio.create_task(watch(http, s)) for s in starts]
        await asyncio.gather(*(s.wait() for s in starts))
        ready.put(count)
        try:
            await _serve(seen, count, done, times, target)
        finally:
            for task in tasks:
                task.cancel()


_VERSION_RE = re.compile(rb'"version":"?(\d+)"?[,}]')


class _RawReader(asyncio.Protocol):
    """One watch stream read off the socket with no HTTP client and no parsing beyond
    finding each event's version: what a watcher costs is then a few microseconds, so
    the figure is the server's (and the kernel's network stack's), not Python's client."""

    def __init__(self, request: bytes, ready_marker: bytes, on_version: Any,
                 started: asyncio.Event) -> None:
        self.request = request
        self.ready_marker = ready_marker
        self.on_version = on_version
        self.started = started
        self.buffer = b""

    def connection_made(self, transport: Any) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buffer = self.buffer + data
        if not self.started.is_set():
            if self.ready_marker not in buffer:
                self.buffer = buffer
                return
            self.started.set()
            buffer = buffer[buffer.index(self.ready_marker) + len(self.ready_marker):]
        end = 0
        for match in _VERSION_RE.finditer(buffer):
            self.on_version(int(match.group(1)), now)
            end = match.end()
        self.buffer = buffer[end:]


async def _raw_watchers(kind: str, url: str, count: int, ready: Any, times: Any,
                        target: Any, token: str) -> None:
    seen: dict[int, list[float]] = {}
    done = asyncio.Event()
    host, port = url.removeprefix("http://").split(":")
    if kind == "aether":
        request = (f"GET /watch?prefix={NAME} HTTP/1.1\r\nHost: {host}\r\n"
                   f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                   ).encode()
        marker = b"retry: 1000\n\n"
    else:
        body = json.dumps({"create_request": {"key": _b64(NAME)}}).encode()
        request = (f"POST /v3/watch HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                   f"application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        marker = b'"created":true'

    def on_version(version: int, now: float) -> None:
        got = seen.setdefault(version, [])
        got.append(now)
        if version == target.value and len(got) == count:
            done.set()

    loop = asyncio.get_running_loop()
    transports = []
    for _ in range(count):
        started = asyncio.Event()
        transport, _ = await loop.create_connection(
            partial(_RawReader, request, marker, on_version, started), host, int(port))
        transports.append(transport)
        await asyncio.wait_for(started.wait(), 30)
    ready.put(count)
    try:
        await _serve(seen, count, done, times, target)
    finally:
        for transport in transports:
            transport.close()


async def _serve(seen: dict[int, list[float]], count: int, done: asyncio.Event, times: Any,
                 target: Any) -> None:
    """Answer the writer: for each version it names, the callback times, once all
    ``count`` watchers here have it."""
    loop = asyncio.get_running_loop()
    while True:
        version = await loop.run_in_executor(None, target.get_request)
        if version < 0:
            return
        done.clear()
        if len(seen.get(version, [])) < count:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 30)
        times.put((version, seen.pop(version, [])))


class _Target:
    """The version the writer waits for, shared with a watcher process."""

    def __init__(self, ctx: Any) -> None:
        self._value = ctx.Value("q", 0)
        self._requests: Any = ctx.Queue()

    @property
    def value(self) -> int:
        return int(self._value.value)

    def ask(self, version: int) -> None:
        self._value.value = version
        self._requests.put(version)

    def get_request(self) -> int:
        return int(self._requests.get())


def _watcher_process(kind: str, reader: str, url: str, count: int, cache: str | None,
                     ready: Any, times: Any, target: _Target) -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if reader == "raw":
        token = "" if kind != "aether" else httpx.post(
            f"{url}/login", json={"username": "admin", "password": PASSWORD}
        ).json()["access_token"]
        asyncio.run(_raw_watchers(kind, url, count, ready, times, target, token))
    elif kind == "aether":
        asyncio.run(_aether_watchers(url, count, cache, ready, times, target))
    else:
        asyncio.run(_etcd_watchers(count, ready, times, target))


# -- the writer --------------------------------------------------------------------------


def _put_aether(url: str) -> Any:
    http = httpx.Client(base_url=url, timeout=30)
    token = http.post("/login", json={"username": "admin", "password": PASSWORD}
                      ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def put(seq: int) -> int:
        response = http.put(f"/configs/{NAME}", headers=headers,
                            json={"value": {"seq": seq, "payload": "x" * 100}})
        response.raise_for_status()
        return int(response.json()["version"])

    return put


def _put_etcd() -> Any:
    http = httpx.Client(base_url=ETCD_URL, timeout=30)
    key = _b64(NAME)

    def put(seq: int) -> None:
        if seq == 0:  # start over: a recreated key counts its versions from 1
            http.post("/v3/kv/deleterange", json={"key": key}).raise_for_status()
        value = _b64(json.dumps({"seq": seq, "payload": "x" * 100}))
        response = http.post("/v3/kv/put", json={"key": key, "value": value})
        response.raise_for_status()

    return put


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _etcd_pid() -> int | None:
    try:
        return int(Path("/tmp/aether-bench-etcd/pids").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def measure(kind: str, reader: str, url: str, watchers: int, writes: int, procs: int,
            cache_dir: str | None, server_pid: int | None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, times = ctx.Queue(), ctx.Queue()
    put = _put_aether(url) if kind == "aether" else _put_etcd()
    # The config exists before the watchers start; etcd's put(0) recreates the key, so
    # its version is 1 again.
    _VERSION[kind] = put(0) or 1
    shares = [watchers // procs + (1 if i < watchers % procs else 0) for i in range(procs)]
    targets = [_Target(ctx) for _ in shares]
    workers = [ctx.Process(target=_watcher_process, daemon=True, args=(
        kind, reader, url, share, cache_dir, ready, times, target))
        for share, target in zip(shares, targets, strict=True) if share]
    for worker in workers:
        worker.start()
    connecting = time.monotonic()
    for _ in workers:
        ready.get(timeout=600)
    print(f"[{time.strftime('%H:%M:%S')}] {kind} ({reader}): {watchers} watchers connected "
          f"in {time.monotonic() - connecting:.1f} s; {writes} writes", file=sys.stderr,
          flush=True)
    latencies: list[float] = []
    from_send: list[float] = []
    last: list[float] = []
    early = missing = 0
    started = time.monotonic()
    # CPU spent while writing, per write: the server's, and the watcher processes' (the
    # load generator's share of the two cores).
    cpu_server = _cpu_seconds(server_pid)
    cpu_watchers = sum(_cpu_seconds(w.pid) for w in workers)
    for seq in range(1, writes + 1):
        # Ask for the version the write will make before writing, so the watchers'
        # wait begins before the change can reach them.
        version = _next_version(kind)
        for target in targets:
            target.ask(version)
        sent = time.monotonic()
        written = put(seq)
        acked = time.monotonic()
        assert written in (None, version), (written, version)
        got: list[float] = []
        for _ in workers:
            _, stamps = times.get(timeout=60)
            got.extend(stamps)
        missing += watchers - len(got)
        early += sum(1 for t in got if t < acked)
        deltas = [max(0.0, t - acked) * 1000 for t in got]
        latencies.extend(deltas)
        from_send.extend((t - sent) * 1000 for t in got)
        if deltas:
            last.append(max(deltas))
    elapsed = time.monotonic() - started
    cpu_server = (_cpu_seconds(server_pid) - cpu_server) * 1000 / writes
    cpu_watchers = (sum(_cpu_seconds(w.pid) for w in workers) - cpu_watchers) * 1000 / writes
    for target in targets:
        target.ask(-1)
    for worker in workers:
        worker.join(timeout=30)
        if worker.is_alive():
            worker.terminate()
    return {
        "system": kind, "reader": reader, "watchers": watchers, "writes": writes,
        "procs": len(workers),
        "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "all_watchers_p50_ms": _pct(last, 50), "all_watchers_p99_ms": _pct(last, 99),
        "from_send_p50_ms": _pct(from_send, 50), "from_send_p99_ms": _pct(from_send, 99),
        "before_ack": early, "missing": missing, "seconds": round(elapsed, 1),
        "server_cpu_ms_per_write": round(cpu_server, 1),
        "watchers_cpu_ms_per_write": round(cpu_watchers, 1),
    }


_VERSION: dict[str, int] = {}


def _next_version(kind: str) -> int:
    # Writes are sequential and nobody else writes: the next version is one more (etcd
    # counts a key's versions from 1 at creation too).
    _VERSION[kind] = _VERSION.get(kind, 1) + 1
    return _VERSION[kind]


def _pct(values: list[float], p: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[p - 1], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000, help="writes with one watcher")
    parser.add_argument("--many", type=int, default=1000, help="watchers in the second row")
    parser.add_argument("--many-writes", type=int, default=200,
                        help="writes with many watchers (each reaches every watcher)")
    parser.add_argument("--procs", type=int, default=1, help="processes for the watchers")
    parser.add_argument("--readers", default="sdk,raw",
                        help="watchers to run: sdk (client bindings), raw (socket readers)")
    parser.add_argument("--skip-one", action="store_true", help="only the many-watcher rows")
    parser.add_argument("--no-etcd", action="store_true")
    args = parser.parse_args()
    readers = [r for r in args.readers.split(",") if r]
    if not readers or set(readers) - {"sdk", "raw"}:
        parser.error("--readers: a comma-separated list of sdk and raw")

    rows: list[dict[str, Any]] = []
    plan = [("many", args.many, args.many_writes)]
    if not args.skip_one:
        plan.insert(0, ("one", 1, args.writes))
    with tempfile.TemporaryDirectory(prefix="aether-hot-bench-") as tmp:
        for label, watchers, writes in plan:
            procs = 1 if watchers == 1 else args.procs
            directory = Path(tmp) / f"aether-{label}"
            directory.mkdir()
            proc, url = start_aether(directory)
            try:
                for reader in readers:
                    cache = str(Path(tmp) / "cache") if watchers == 1 else None
                    rows.append(measure("aether", reader, url, watchers, writes, procs, cache,
                                        proc.pid))
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                stop(proc)
            if args.no_etcd:
                continue
            if not etcd("start"):
                print("etcd: not available (apt-get install etcd-server; "
                      f"{ETCD_SCRIPTS}/etcd_up.sh)", flush=True)
                continue
            try:
                for reader in readers:
                    rows.append(measure("etcd", reader, ETCD_URL, watchers, writes, procs,
                                        None, _etcd_pid()))
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                etcd("stop")
    print(f"\nmachine: nproc={os.cpu_count()}, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| system | watchers (reader, processes) | writes | ack→callback p50 / p99 ms | "
          "last watcher p50 / p99 ms | request sent→callback p50 / p99 ms | "
          "callbacks before ack | missing | CPU ms per write: server / watchers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['watchers']} ({r['reader']}, {r['procs']}) | "
              f"{r['writes']} | {r['p50_ms']} / {r['p99_ms']} | {r['all_watchers_p50_ms']} / "
              f"{r['all_watchers_p99_ms']} | {r['from_send_p50_ms']} / "
              f"{r['from_send_p99_ms']} | {r['before_ack']} | {r['missing']} | "
              f"{r['server_cpu_ms_per_write']} / {r['watchers_cpu_ms_per_write']} |")


if __name__ == "__main__":
    main()
