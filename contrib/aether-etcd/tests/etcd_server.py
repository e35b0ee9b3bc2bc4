"""A real etcd (Debian's ``etcd-server``) on free loopback ports, one per test session.

Each test uses a key prefix of its own, so tests share the server and never each
other's data. When the ``etcd`` binary is missing the fixture fails and says how to
install it — it never skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HOW_TO_INSTALL = (
    "the etcd tests need Debian's etcd server: run `scripts/services.sh` (it installs "
    "it as root) or `apt-get install -y etcd-server`"
)


@dataclass(frozen=True)
class EtcdServer:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=0.5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    binary = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd")
                                      else None)
    if binary is None:
        pytest.fail(f"etcd is not installed: {HOW_TO_INSTALL}")
    data_dir = Path(tempfile.mkdtemp(prefix="aether-etcd-test-"))
    client, peer = _free_port(), _free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = (data_dir / "etcd.log").open("wb")
    process = subprocess.Popen(
        [binary, "--name", "test", "--data-dir", str(data_dir / "data"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"test={peer_url}", "--initial-cluster-state", "new",
         "--logger", "zap", "--log-outputs", "stderr"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (data_dir / "etcd.log").read_text(errors="replace")[-1500:]
                pytest.fail(f"etcd did not start on {url} (exit {process.poll()}):\n{tail}")
            time.sleep(0.05)
        yield EtcdServer(url=url, data_dir=data_dir, process=process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
