"""Admin API throughput: GET and PUT of a config with a valid token, through Aether's
admin API and through a bare Litestar app doing the same in the same run.

    .venv/bin/python bench/admin_bench.py [--duration 6] [--conns 16]

Each server runs in its own process (uvicorn + httptools, one worker); the load comes
from a third process: a small asyncio HTTP/1.1 client with keep-alive connections, each
sending one request at a time. The bare app checks the same HS256 token with pyjwt on
every request and keeps configs in a dict (no versioning, no durability): the framework
ceiling. Aether writes through ConfigManager to SQLite with an fsync per put.
"""

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSWORD = "bench-admin-password"
KEY = "bench-signing-key-0123456789abcdef0123456789"
VALUE = {"name": "cfg", "owner": "team-bench", "enabled": True, "replicas": 3, "data": "y" * 100}
NAME = "bench/cfg-00001"


# -- servers (run in child processes) ---------------------------------------------


def serve_aether(port: int, data_dir: str) -> None:
    import uvicorn
    from aether_admin import AdminSettings, create_app

    from aether_core import ConfigManager, SqliteStorage
    from aether_core.auth.jwt import JwtAuth
    from aether_core.auth.keys import KeySet

    os.environ["AETHER_ADMIN_PASSWORD"] = PASSWORD
    manager = ConfigManager(SqliteStorage(Path(data_dir) / "aether.db"))
    app = create_app(manager, auth=JwtAuth(KeySet.build("HS256", "k1", KEY)),
                     settings=AdminSettings(docs=False))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                http="httptools")


def serve_bare(port: int) -> None:
    from typing import Annotated

    import jwt
    import uvicorn
    from litestar import Litestar, get, post, put
    from litestar.exceptions import NotAuthorizedException, NotFoundException
    from litestar.params import HeaderParameter

    store: dict[str, Any] = {}
    Auth = Annotated[str | None, HeaderParameter(name="Authorization")]

    def check(header: str | None) -> None:
        if not header or not header.startswith("Bearer "):
            raise NotAuthorizedException()
        try:
            jwt.decode(header[7:], KEY, algorithms=["HS256"], audience="aether")
        except jwt.PyJWTError:
            raise NotAuthorizedException() from None

    @post("/login", status_code=200)
    async def login() -> dict[str, Any]:
        now = int(time.time())
        token = jwt.encode({"sub": "admin", "aud": "aether", "iat": now, "exp": now + 3600},
                           KEY, algorithm="HS256")
        return {"access_token": token}

    @get("/configs/{name:path}")
    async def read(name: str, authorization: Auth = None) -> dict[str, Any]:
        check(authorization)
        try:
            value: dict[str, Any] = store[name]
        except KeyError:
            raise NotFoundException() from None
        return value

    @put("/configs/{name:path}")
    async def write(name: str, data: dict[str, Any], authorization: Auth = None) -> dict[str, Any]:
        check(authorization)
        store[name] = {"name": name, "value": data["value"]}
        return store[name]

    uvicorn.run(Litestar([login, read, write]), host="127.0.0.1", port=port,
                log_level="warning", access_log=False, http="httptools")


# -- load generator (runs in its own process) --------------------------------------


async def _connection(port: int, request: bytes, deadline: float,
                      latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 300:
                errors.append(status)
    finally:
        writer.close()


async def _load(port: int, method: str, token: str, conns: int, duration: float) -> dict[str, Any]:
    body = json.dumps({"value": VALUE}).encode() if method == "PUT" else b""
    request = (
        f"{method} /configs/{NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        + (f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
           if body else "")
        + "\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(_connection(port, request, deadline, latencies, errors)
                           for _ in range(conns)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": len(errors),
    }


# -- the run ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int) -> None:
    import httpx

    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/configs/x", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not start")


def _token(port: int, aether: bool) -> str:
    import httpx

    body = {"username": "admin", "password": PASSWORD} if aether else {}
    response = httpx.post(f"http://127.0.0.1:{port}/login", json=body, timeout=10)
    response.raise_for_status()
    token = str(response.json()["access_token"])
    # Seed the config both servers are read from.
    seeded = httpx.put(f"http://127.0.0.1:{port}/configs/{NAME}", json={"value": VALUE},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    seeded.raise_for_status()
    return token


def _measure(port: int, method: str, token: str, conns: int, duration: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "load", str(port), method, token, str(conns), str(duration)],
        check=True, capture_output=True, text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--conns", type=int, default=16)
    args = parser.parse_args()
    here = Path(__file__).resolve()
    servers: list[subprocess.Popen[bytes]] = []
    rows: list[tuple[str, str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as data_dir:
        try:
            bare_port, aether_port = _free_port(), _free_port()
            # Server output (Aether's audit log: one line per write) goes to /dev/null.
            quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL}
            servers.append(subprocess.Popen([sys.executable, str(here), "serve-bare",
                                             str(bare_port)], **quiet))
            servers.append(subprocess.Popen([sys.executable, str(here), "serve-aether",
                                             str(aether_port), data_dir], **quiet))
            _wait(bare_port)
            _wait(aether_port)
            tokens = {bare_port: _token(bare_port, False), aether_port: _token(aether_port, True)}
            for method in ("GET", "PUT"):
                for label, port in (("bare Litestar", bare_port), ("Aether", aether_port)):
                    result = _measure(port, method, tokens[port], args.conns, args.duration)
                    rows.append((method, label, result))
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
    print(f"# {time.strftime('%Y-%m-%d')}  nproc={os.cpu_count()}  cpu={_cpu()}  "
          f"python={platform.python_version()}  conns={args.conns}  "
          f"duration={args.duration}s per row")
    print("| request | server | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|")
    for method, label, r in rows:
        print(f"| {method} /configs/{{name}} | {label} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
              f"| {r['p99_ms']:.2f} | {r['errors']} |")
    by = {(m, label): r["rps"] for m, label, r in rows}
    for method in ("GET", "PUT"):
        print(f"{method}: Aether at {by[(method, 'Aether')] / by[(method, 'bare Litestar')]:.0%}"
              " of the bare app")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve-aether":
        serve_aether(int(sys.argv[2]), sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "serve-bare":
        serve_bare(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        port, method, token, conns, duration = sys.argv[2:7]
        print(json.dumps(asyncio.run(_load(int(port), method, token, int(conns),
                                           float(duration)))))
    else:
        main()
