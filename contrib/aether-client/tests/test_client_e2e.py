"""End to end with real processes: ``aether up`` and a service process bound to a model
(client_probe.py) — changes arrive typed, a client-invalid version is refused and
nacked, a server restart loses no revision, and a server that is down at start leaves
the service on its cached value."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from aether_client_node import Node, client_env

PROBE = str(Path(__file__).with_name("client_probe.py"))
NAME = "billing/database"


class Probe:
    def __init__(self, url: str, cache: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, PROBE, NAME], env=client_env(url, AETHER_CACHE_DIR=str(cache)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.stderr.append(f"(stdout) {line}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def next(self, timeout: float = 15) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the probe said nothing for {timeout} s; stderr: "
                                 f"{''.join(self.stderr)[-3000:]}") from None

    def quiet(self, timeout: float) -> bool:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected probe line {line}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(timeout=10) == 0, "".join(self.stderr)[-3000:]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def put(node: Node, headers: dict[str, str], value: dict[str, Any]) -> int:
    response = httpx.put(f"{node.url}/configs/{NAME}", headers=headers,
                         json={"value": value}, timeout=10)
    assert response.status_code in (200, 201), response.text
    return int(response.json()["version"])


def test_service_process_follows_refuses_resumes_and_starts_from_cache(tmp_path: Path) -> None:
    node = Node(tmp_path / "node").start()
    cache = tmp_path / "cache"
    try:
        node.put_schema("database", ["billing/"])
        admin = node.admin_headers()
        assert put(node, admin, {"host": "db1", "port": 5432}) == 1

        probe = Probe(node.url, cache)
        try:
            ready = probe.next()
            assert ready == {"event": "ready", "version": 1, "source": "server",
                             "value": {"host": "db1", "port": 5432}}

            # A write: the callback fires with the new typed value.
            assert put(node, admin, {"host": "db2", "port": 5433}) == 2
            change = probe.next()
            assert change["event"] == "change" and change["version"] == 2
            assert change["value"] == change["running"] == {"host": "db2", "port": 5433}

            # Schema-valid on the server, refused by the client's model: not applied, a nack.
            assert put(node, admin, {"host": "db3", "port": 80}) == 3
            assert probe.quiet(1.0)
            deadline = time.monotonic() + 10
            while True:  # the probe reports the nack in the background
                nacks = httpx.get(f"{node.url}/acks", params={"name": NAME, "status": "nack"},
                                  headers=admin, timeout=10).json()["items"]
                if nacks or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert [(n["version"], n["client"]) for n in nacks] == [(3, "probe-1")]
            assert nacks[0]["errors"][0]["path"] == "port"
            assert "80" not in json.dumps(nacks[0]["errors"])  # no input values echoed
            assert put(node, admin, {"host": "db4", "port": 6000}) == 4
            change = probe.next()
            assert change["version"] == 4 and change["value"]["host"] == "db4"

            # The server restarts; versions written before the probe reconnects arrive
            # all the same, in order, each once.
            node.stop()
            node.start()
            admin = node.admin_headers()
            for version, port in ((5, 7001), (6, 7002), (7, 7003)):
                assert put(node, admin, {"host": "after-restart", "port": port}) == version
            seen = [probe.next()["version"] for _ in range(3)]
            assert seen == [5, 6, 7]
            assert probe.quiet(0.5)
        finally:
            probe.stop()

        # The server is down when the service starts: it runs on the cached value.
        node.stop()
        probe = Probe(node.url, cache)
        try:
            ready = probe.next()
            assert ready == {"event": "ready", "version": 7, "source": "cache",
                             "value": {"host": "after-restart", "port": 7003}}
            node.start()
            assert put(node, node.admin_headers(), {"host": "back", "port": 8000}) == 8
            change = probe.next(timeout=20)
            assert change["version"] == 8 and change["value"]["host"] == "back"
        finally:
            probe.stop()
    finally:
        node.stop()
