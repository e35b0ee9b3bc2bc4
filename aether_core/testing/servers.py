"""Real servers for tests, started by the test run itself and stopped afterwards."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def moto_server(script: Path, service: str) -> Iterator[str]:
    """Run ``script`` (a moto server that prints ``port N`` once it listens on loopback)
    and yield its endpoint URL. Fails, never skips, when moto is not installed."""
    if importlib.util.find_spec("moto") is None:
        pytest.fail(f"the {service} tests need moto's server: pip install 'moto[server]'")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port "):
            pytest.fail(f"the moto {service} server did not start (exit code {proc.poll()})")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _postgres_bindir() -> Path | None:
    """Debian's versioned server binaries (newest first), else initdb on PATH."""
    for bindir in sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


class PrivatePostgres:
    """A PostgreSQL server of the test's own (``initdb`` into a temporary directory, on a
    free loopback port), so a test can stop and start a real server without touching
    the shared one on 5432. Run as root (CI), the server runs as the ``postgres`` user,
    because PostgreSQL refuses to run as root. Fails, never skips, when the server
    binaries are not installed."""

    def __init__(self) -> None:
        bindir = _postgres_bindir()
        if bindir is None:
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) were not found under "
                        "/usr/lib/postgresql/*/bin or on PATH: install them with "
                        "`apt-get install postgresql` (scripts/services.sh does so when run "
                        "as root)", pytrace=False)
        self.bindir = bindir
        self._as_postgres = os.geteuid() == 0
        self.directory = Path(tempfile.mkdtemp(prefix="aether-pg-"))
        if self._as_postgres:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, the private PostgreSQL needs the `postgres` "
                            "user (created by `apt-get install postgresql`)", pytrace=False)
            os.chown(self.directory, pw.pw_uid, pw.pw_gid)
        self.data = self.directory / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.directory / "server.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            pytest.fail(f"{tool} {' '.join(args[:2])} failed ({done.returncode}): "
                        f"{done.stderr.strip()[-1500:]}\n{tail}", pytrace=False)

    def start(self) -> None:
        """Start and wait until it accepts connections (fsync on: acknowledged commits
        are durable, as on a real deployment)."""
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories='{self.directory}' -c fsync=on")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: disconnect clients, shut down cleanly; ``immediate``: abort, as in a
        crash (recovery from the WAL at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(BaseException):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
