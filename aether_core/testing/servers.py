"""Real servers for tests, started by the test run itself and stopped afterwards."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
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
