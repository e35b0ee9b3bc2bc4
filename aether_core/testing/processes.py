"""``aether up`` as a real process for end-to-end tests: one place for free ports, the
command, start/ready/stop/kill/pause and the log, so each test writes only its manifest.

httpx is imported where it is used: the kernel package imports no HTTP client.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import pytest


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def aether_command() -> str:
    """The ``aether`` script of this interpreter's environment (else the one on PATH)."""
    found = Path(sys.executable).with_name("aether")
    if found.exists():
        return str(found)
    which = shutil.which("aether")
    assert which, "the aether command is not installed (pip install -e .)"
    return which


def until(what: str, check: Callable[[], Any], seconds: float, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; fail the test naming ``what``.
    A connection error counts as "not yet"."""
    import httpx

    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.TransportError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"{what} within {seconds:g} s (last: {last!r})")


class AetherProcess:
    """``aether up -m aether.toml`` run in ``directory`` (the manifest is written there),
    its output appended to ``directory/out.log``. ``url`` is the admin API, if any."""

    def __init__(self, directory: Path, manifest: str | None = None, *,
                 env: Mapping[str, str] | None = None, url: str | None = None) -> None:
        self.directory = directory
        self.url = url or ""
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "out.log"
        self._log: IO[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        if manifest is not None:
            self.write_manifest(manifest)

    def write_manifest(self, text: str) -> None:
        (self.directory / "aether.toml").write_text(text)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def launch(self) -> AetherProcess:
        """Start the process without waiting for it to be ready."""
        assert not self.alive, "already running"
        env = {k: v for k, v in os.environ.items() if k != "AETHER_MANIFEST"}
        env.update(self.env)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [aether_command(), "up", "-m", "aether.toml", "--log-format", "json"],
            cwd=self.directory, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 30, path: str = "/ready") -> AetherProcess:
        """Wait until ``GET url+path`` answers 200; fail with the log if the process dies."""
        import httpx

        def ready() -> bool:
            if not self.alive:
                pytest.fail(f"aether up in {self.directory} exited: {self.output()[-3000:]}")
            return httpx.get(f"{self.url}{path}", timeout=2).status_code == 200

        until(f"aether up in {self.directory} ready", ready, timeout)
        return self

    def start(self, timeout: float = 30) -> AetherProcess:
        return self.launch().wait_ready(timeout)

    def stop(self, timeout: float = 15, *, check: bool = True) -> int | None:
        """SIGTERM and wait; a process that outlives ``timeout`` is killed and the test
        fails. With ``check``, a non-zero exit code fails the test too."""
        if self.proc is None or self.proc.poll() is not None:
            self._close_log()
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"aether up did not stop within {timeout:g} s of SIGTERM: "
                        f"{self.output()[-2000:]}")
        finally:
            self._close_log()
        if check:
            assert code == 0, self.output()[-2000:]
        return code

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def login(self, username: str, password: str) -> dict[str, str]:
        """Authorization headers for ``username``, from ``POST /login``."""
        import httpx

        response = httpx.post(f"{self.url}/login",
                              json={"username": username, "password": password}, timeout=10)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
