"""The documentation site builds with no warnings (``mkdocs build --strict``), and every
code sample of "Getting started" runs: the README's two commands (``./dev up`` started
for real; ``./dev test`` is what CI runs) and the tour, block after block, in one
empty directory."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
BIN = Path(sys.executable).parent
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]


def test_the_site_builds_with_no_warnings(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-4000:]
    assert "WARNING" not in output, output[-4000:]
    site = tmp_path / "site"
    for page in ("getting-started", "reference/manifest", "reference/hooks",
                 "reference/http-api", "raft", "writing-a-plugin", "security"):
        assert (site / page / "index.html").exists(), page
    api = (site / "reference" / "http-api" / "index.html").read_text()
    assert "/configs/{name}" in api


def test_getting_started_quotes_the_readmes_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    two = readme.split("## Two commands", 1)[1]
    assert blocks(PAGE.read_text())[0] == blocks(two)[0]
    assert "./dev test" in (ROOT / ".ci" / "run").read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_dev_up_starts_a_node(tmp_path: Path) -> None:
    """The first command as written; $AETHER_MANIFEST points it at a free port and a
    temporary data directory instead of 8080 and the checkout's ./.aether."""
    language, code = blocks(PAGE.read_text())[0]
    assert language == "sh" and code.splitlines()[0].split("#")[0].strip() == "./dev up"
    port = _free_port()
    manifest = tmp_path / "aether.toml"
    manifest.write_text(
        f'[node]\ndata_dir = "{tmp_path / "data"}"\n[storage]\nuse = "sqlite"\n'
        '[transport]\nuse = "local"\n[auth]\nuse = "jwt"\n'
        f'[[services]]\nuse = "admin"\nlisten = "127.0.0.1:{port}"\n')
    env = {**os.environ, "AETHER_MANIFEST": str(manifest),
           "AETHER_ADMIN_PASSWORD": "getting-started-1", "AETHER_VENV": str(BIN.parent)}
    node = subprocess.Popen(["./dev", "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Seconds normally; minutes when ./dev must first reinstall a changed workspace.
        deadline = time.monotonic() + 200
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if node.poll() is not None or time.monotonic() > deadline:
                output = node.stdout.read().decode() if node.stdout else ""
                pytest.fail(f"./dev up did not serve on port {port}:\n{output[-3000:]}")
            time.sleep(0.1)
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(5)
    assert node.returncode == 0


def test_every_sample_of_the_tour_runs(tmp_path: Path) -> None:
    tour = blocks(PAGE.read_text())[1:]
    assert [language for language, _ in tour] == ["sh", "python", "sh"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("AETHER_MANIFEST", None)
    outputs = []
    for number, (language, code) in enumerate(tour, start=1):
        if language == "python":
            script = tmp_path / f"sample{number}.py"
            script.write_text(code)
            argv = [sys.executable, str(script)]
        else:
            argv = ["bash", "-euo", "pipefail", "-c", code]
        run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=60)
        assert run.returncode == 0, f"sample {number}:\n{code}\n{run.stdout}\n{run.stderr}"
        outputs.append(run.stdout)
    assert "storage" in outputs[0] and "sqlite" in outputs[0]
    assert "'op': 'replace', 'path': '/host', 'value': 'db2'" in outputs[1]
    assert outputs[1].splitlines()[-1] == "2 billing/database 1"
    assert outputs[2].strip().endswith("restored copy is identical")
    assert (tmp_path / ".aether-copy" / "aether.db").exists()
