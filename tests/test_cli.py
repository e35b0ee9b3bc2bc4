"""The command line: readable output, --json for scripts, one-line errors, non-zero exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def aether(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "AETHER_DISABLE_PLUGINS": "admin", **(env or {})}
    full_env.pop("AETHER_MANIFEST", None)
    return subprocess.run([sys.executable, "-m", "aether_core", *args], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


MANIFEST = """
[node]
name = "cli-node"
data_dir = "data"

[storage]
use = "sqlite"

[transport]
use = "local"
"""


def test_init_writes_a_manifest_that_checks(tmp_path: Path) -> None:
    result = aether("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "aether.toml").exists()
    check = aether("manifest", "check", "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    summary = json.loads(check.stdout)
    assert (summary["storage"], summary["transport"]) == ("sqlite", "local")
    again = aether("init", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: aether.toml exists; pass --force to overwrite it"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[storage\n", "invalid TOML"),
        (MANIFEST.replace('use = "sqlite"', 'use = "nosuch"'), "plugin 'nosuch' is not installed"),
        (MANIFEST.replace('use = "local"', 'use = "local"\nspeed = 3'),
         "[transport] speed: unknown key"),
        (MANIFEST.replace('name = "cli-node"', 'name = "${env:AETHER_CLI_UNSET}"'),
         "[node] name: environment variable AETHER_CLI_UNSET is not set"),
    ],
)
def test_a_bad_manifest_is_one_line_non_zero_and_starts_nothing(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "aether.toml").write_text(text)
    for command in (["manifest", "check"], ["up"]):
        result = aether(*command, cwd=tmp_path)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: aether.toml: "), result.stderr
        assert message in lines[0]
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "aether.toml").write_text("[storage\n")
    result = aether("--debug", "manifest", "check", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_plugins_lists_builtins_with_what_they_provide(tmp_path: Path) -> None:
    result = aether("plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["aether-core"]["provides"]["storage"] == ["memory", "sqlite"]
    human = aether("plugins", cwd=tmp_path)
    assert "storage memory, sqlite" in human.stdout


def test_export_then_import_into_a_fresh_store(tmp_path: Path) -> None:
    (tmp_path / "aether.toml").write_text(MANIFEST)
    seed = (
        "import asyncio\n"
        "from aether_core import ConfigManager, SqliteStorage\n"
        "async def main():\n"
        "    async with ConfigManager(SqliteStorage('data/aether.db')) as m:\n"
        "        await m.put('a/b', {'v': 1}); await m.put('a/b', {'v': 2})\n"
        "        await m.delete('a/b'); await m.put('c', [1])\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", seed], cwd=tmp_path, check=True, timeout=60)
    exported = aether("export", "dump.jsonl", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "exported 4 records" in exported.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "aether.toml").write_text(MANIFEST)
    imported = aether("import", "--json", str(tmp_path / "dump.jsonl"), cwd=fresh)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["revision"] == 4
    again = aether("import", str(tmp_path / "dump.jsonl"), cwd=fresh)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "error: import needs an empty store: this one is at revision 4")
    assert aether("export", "-", cwd=fresh).stdout == (tmp_path / "dump.jsonl").read_text()


def test_importing_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "aether.toml").write_text(MANIFEST)
    (tmp_path / "bad.jsonl").write_text('{"format": "aether-snapshot", "records": 1}\nnope\n')
    result = aether("import", "bad.jsonl", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: snapshot line 2: bad record")
    assert aether("export", "-", cwd=tmp_path).stdout.count("\n") == 1  # header only


def test_up_serves_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "aether.toml").write_text(MANIFEST)
    env = {**os.environ, "AETHER_DISABLE_PLUGINS": "admin"}
    proc = subprocess.Popen([sys.executable, "-m", "aether_core", "up", "--log-format", "json"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        started = proc.stderr.readline()
        assert json.loads(started)["event"] == "node started"
        assert (tmp_path / "data" / "aether.db").exists()
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert json.loads(proc.stderr.readline())["event"] == "node stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
