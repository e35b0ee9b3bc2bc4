"""The plugin template end to end: generate a storage plugin, install it into this
environment, see ``aether plugins`` list it, start a node whose manifest names it and
round-trip a config over HTTP, and run the generated project's own tests (the kernel's
storage contract kit). The plugin is uninstalled afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "cookiecutter" / "aether-plugin"
NAME = "ccprobe"
DIST = f"aether-{NAME}"
AETHER = Path(sys.executable).parent / "aether"

pytestmark = pytest.mark.slow


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("generated")
    project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(out),
                                extra_context={"plugin_name": NAME, "kind": "storage"}))
    installed = _pip("install", "--quiet", "--no-deps", "-e", str(project))
    assert installed.returncode == 0, installed.stderr[-3000:]
    try:
        yield project
    finally:
        removed = _pip("uninstall", "--yes", "--quiet", DIST)
        assert removed.returncode == 0, removed.stderr[-2000:]


def test_the_template_generates_a_complete_project(generated: Path) -> None:
    package = generated / f"aether_{NAME}"
    assert sorted(p.name for p in package.iterdir() if not p.name.startswith("__py")) == [
        "__init__.py", "plugin.py", "provider.py", "py.typed"]
    pyproject = (generated / "pyproject.toml").read_text()
    assert f'{NAME} = "aether_{NAME}.plugin"' in pyproject
    assert "testing = [" in pyproject
    assert (generated / ".github" / "workflows" / "ci.yml").exists()
    assert (generated / "tests" / f"test_aether_{NAME}_contract.py").exists()
    assert not (generated / "tests" / "_kinds").exists()
    assert "class CcprobeStorage(Storage)" in (package / "provider.py").read_text()


def test_a_bad_plugin_name_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(FailedHookException):
        cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(tmp_path),
                     extra_context={"plugin_name": "Bad Name"})
    assert list(tmp_path.iterdir()) == []


def test_aether_plugins_lists_the_installed_plugin(generated: Path) -> None:
    listed = subprocess.run([str(AETHER), "plugins", "--json"], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows[NAME]["provides"] == {"storage": [NAME]}
    assert rows[NAME]["version"] == "0.1.0" and "error" not in rows[NAME]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_node_whose_manifest_names_it_serves_a_config_round_trip(
    generated: Path, tmp_path: Path
) -> None:
    port = _free_port()
    manifest = tmp_path / "aether.toml"
    manifest.write_text(f"""
[node]
data_dir = "{tmp_path / 'data'}"

[storage]
use = "{NAME}"
namespace = "probe"

[transport]
use = "local"

[auth]
use = "jwt"
signing_key = "${{env:PROBE_SIGNING_KEY}}"

[[services]]
use = "admin"
listen = "127.0.0.1:{port}"
""")
    env = {**os.environ, "PROBE_SIGNING_KEY": "k" * 40, "AETHER_ADMIN_PASSWORD": "probe-pass-1234"}
    env.pop("AETHER_MANIFEST", None)
    node = subprocess.Popen([str(AETHER), "up", "-m", str(manifest), "--log-format", "json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if node.poll() is not None or time.monotonic() > deadline:
                output = node.stdout.read().decode() if node.stdout else ""
                pytest.fail(f"aether up did not serve on {base}:\n{output[-3000:]}")
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as client:
            login = client.post("/login", json={"username": "admin",
                                                "password": "probe-pass-1234"})
            assert login.status_code == 200, login.text
            client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            value = {"host": "db", "port": 5432, "tags": ["a", "ü"]}
            created = client.post("/configs", json={"name": "probe/db", "value": value})
            assert created.status_code == 201, created.text
            read = client.get("/configs/probe/db")
            assert read.status_code == 200
            assert read.json()["value"] == value and read.json()["version"] == 1
            stale = client.put("/configs/probe/db", headers={"If-Match": '"0"'},
                               json={"value": {"host": "x"}})
            assert stale.status_code in (409, 412)
            assert client.get("/configs/probe/db").json()["value"] == value
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(5)
    assert node.returncode == 0


def test_the_generated_projects_own_tests_pass(generated: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=generated, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = run.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 19, summary  # the storage contract kit and the discovery tests
