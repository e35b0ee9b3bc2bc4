"""``aether get/put/history/rollback/diff/watch/run`` as processes against ``aether up``;
credentials come from the environment, never from the command line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from aether_client.cli import COMMANDS
from aether_client_node import Node, aether, client_env
from click.testing import CliRunner

from aether_core.cli import AetherGroup

_TOKENS: dict[str, str] = {}


def token_env(node: Node) -> dict[str, str]:
    """A token instead of a password: each command then skips the (deliberately slow)
    password check on the server."""
    if node.url not in _TOKENS:
        _TOKENS[node.url] = node.admin_headers()["Authorization"].removeprefix("Bearer ")
    return client_env(node.url, AETHER_TOKEN=_TOKENS[node.url], AETHER_USERNAME="",
                      AETHER_PASSWORD="")


def cli(node: Node, *args: str, stdin: str | None = None, **env: str
        ) -> subprocess.CompletedProcess[str]:
    """``aether ARGS`` in this process: the kernel's command group (its one-line errors
    and exit codes) with the client's commands, as ``aether`` builds it. Each real
    ``aether`` process costs a second of imports; the tests below start real ones where
    the process is the point (wiring, watch, run)."""
    base = client_env(node.url) if env else token_env(node)
    group = AetherGroup(name="aether")
    for command in COMMANDS:
        group.add_command(command)
    result = CliRunner().invoke(group, list(args), input=stdin, env={**base, **env},
                                catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout,
                                       result.stderr)


def test_the_aether_command_offers_the_client_commands(node: Node) -> None:
    put = subprocess.run([aether(), "put", "cli/real/db", '{"port": 1}'], env=token_env(node),
                         capture_output=True, text=True, timeout=60, cwd=node.directory)
    assert put.returncode == 0 and put.stdout.startswith("cli/real/db: version 1"), put.stderr
    missing = subprocess.run([aether(), "get", "cli/real/none"], env=token_env(node),
                             capture_output=True, text=True, timeout=60, cwd=node.directory)
    assert (missing.returncode, missing.stderr) == (
        1, "error: config 'cli/real/none' does not exist\n")


def test_get_put_history_rollback_diff(node: Node, tmp_path: Path) -> None:
    put = cli(node, "put", "cli/app/db", '{"host": "a", "port": 1}', "--comment", "first")
    assert put.returncode == 0, put.stderr
    revision = json.loads(cli(node, "get", "cli/app/db", "--json").stdout)["revision"]
    assert put.stdout.strip() == f"cli/app/db: version 1 (revision {revision})"
    (tmp_path / "v2.json").write_text('{"host": "b", "port": 2}')
    assert cli(node, "put", "cli/app/db", "--file", str(tmp_path / "v2.json"),
               "--if-match", "1").returncode == 0
    assert cli(node, "put", "cli/app/db", "-", stdin='{"host": "c", "port": 3}').returncode == 0
    assert json.loads(cli(node, "get", "cli/app/db").stdout) == {"host": "c", "port": 3}
    assert json.loads(cli(node, "get", "cli/app/db", "--version", "1").stdout)["host"] == "a"

    history = cli(node, "history", "cli/app/db", "--json")
    assert [v["version"] for v in json.loads(history.stdout)] == [1, 2, 3]
    assert "first" in cli(node, "history", "cli/app/db").stdout
    diff = cli(node, "diff", "cli/app/db", "1", "2")
    assert {"op": "replace", "path": "/host", "value": "b"} in json.loads(diff.stdout)
    rollback = cli(node, "rollback", "cli/app/db", "1")
    assert rollback.returncode == 0 and "version 4 = version 1" in rollback.stdout
    assert json.loads(cli(node, "get", "cli/app/db").stdout)["host"] == "a"


def test_errors_are_one_line_and_change_nothing(node: Node, tmp_path: Path) -> None:
    assert cli(node, "put", "cli/err/db", '{"port": 1}').returncode == 0
    cases = [
        (cli(node, "get", "cli/err/missing"), "config 'cli/err/missing' does not exist"),
        (cli(node, "put", "cli/err/db", '{"port": 2}', "--if-match", "7"),
         "If-Match names version 7, the current version is 1"),
        (cli(node, "put", "cli/err/db", "{not json"), "the value is not JSON"),
        (cli(node, "rollback", "cli/err/db", "9"), "9"),
        (cli(node, "get", "cli/err/db", AETHER_PASSWORD="wrong-password-here"), "password"),
        (cli(node, "get", "cli/err/db", AETHER_URL="http://127.0.0.1:9"),
         "cannot reach http://127.0.0.1:9"),
        (cli(node, "get", "cli/err/db", AETHER_USERNAME="", AETHER_PASSWORD=""),
         "no credentials"),
    ]
    for result, expected in cases:
        assert result.returncode == 1, (result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert expected.lower() in lines[0].lower(), lines[0]
        assert "wrong-password-here" not in result.stderr + result.stdout
    history = json.loads(cli(node, "history", "cli/err/db", "--json").stdout)
    assert [v["version"] for v in history] == [1]

    with_password = cli(node, "get", "cli/err/db", AETHER_URL=node.url)
    assert with_password.returncode == 0 and json.loads(with_password.stdout) == {"port": 1}
    password_file = tmp_path / "password"
    password_file.write_text(client_env(node.url)["AETHER_PASSWORD"] + "\n")
    from_file = cli(node, "get", "cli/err/db", AETHER_PASSWORD="",
                    AETHER_PASSWORD_FILE=str(password_file))
    assert from_file.returncode == 0, from_file.stderr


def test_watch_prints_events_and_stops_cleanly(node: Node) -> None:
    watch = subprocess.Popen([aether(), "watch", "cli/watch/", "--since", "0", "--json"],
                             env=token_env(node), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        for port in (1, 2, 3):
            assert cli(node, "put", "cli/watch/db", json.dumps({"port": port})).returncode == 0
        assert watch.stdout is not None
        events = [json.loads(watch.stdout.readline()) for _ in range(3)]
        assert [(e["name"], e["version"], e["value"]) for e in events] == [
            ("cli/watch/db", 1, {"port": 1}), ("cli/watch/db", 2, {"port": 2}),
            ("cli/watch/db", 3, {"port": 3})]
        assert events[0]["revision"] < events[1]["revision"] < events[2]["revision"]
    finally:
        watch.send_signal(signal.SIGTERM)
        code = watch.wait(timeout=10)
    assert code == 0, watch.stderr.read() if watch.stderr else ""


CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()} {os.environ.get('DB_PORT')} {os.environ.get('DB_HOST')} "
            f"{os.environ.get('AETHER_PASSWORD', '-')}\\n")
while True:
    time.sleep(0.05)
"""


def _lines(path: Path, count: int, timeout: float = 15) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [line.split() for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"expected {count} child starts, saw {path.read_text()}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_run_restarts_the_child_with_new_values_and_stops_it(node: Node, tmp_path: Path) -> None:
    assert cli(node, "put", "cli/run/db", '{"host": "db1", "port": 5432}').returncode == 0
    assert cli(node, "put", "cli-run-elsewhere/db", '{"port": 1}').returncode == 0
    (tmp_path / "child.py").write_text(CHILD)
    starts = tmp_path / "starts.txt"
    run = subprocess.Popen(
        [aether(), "run", "--prefix", "cli/run/", "--debounce", "0.1", "--",
         sys.executable, str(tmp_path / "child.py"), str(starts)],
        env=client_env(node.url), stderr=subprocess.PIPE, text=True)  # password: not passed on
    try:
        first = _lines(starts, 1)[0]
        assert first[1:] == ["5432", "db1", "-"]  # the client's password is not passed on
        assert cli(node, "put", "cli/run/db", '{"host": "db2", "port": 6543}').returncode == 0
        second = _lines(starts, 2)[1]
        assert second[1:3] == ["6543", "db2"]
        assert not _alive(int(first[0]))  # the old child was stopped, not left behind
        assert cli(node, "put", "cli-run-elsewhere/db", '{"port": 2}').returncode == 0
        time.sleep(0.5)
        assert len(_lines(starts, 2)) == 2  # other prefixes do not restart it
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=15)
    assert code == 0, run.stderr.read() if run.stderr else ""
    assert not _alive(int(second[0]))


def test_run_exits_with_the_childs_status(node: Node) -> None:
    result = subprocess.run(
        [aether(), "run", "--prefix", "cli/none/", "--", sys.executable, "-c",
         "import sys; sys.exit(3)"], env=token_env(node), capture_output=True, timeout=30)
    assert result.returncode == 3
    missing = subprocess.run(
        [aether(), "run", "--prefix", "cli/none/", "--", "/nonexistent/command"],
        env=token_env(node), capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: cannot start '/nonexistent/command': " \
        "No such file or directory"


SIGNALLED = """
import os, signal, sys, time
def hup(*_):
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()} HUP\\n")
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(sys.argv[1], "a") as f:
    f.write(f"{os.getpid()} {os.environ.get('DB_PORT')}\\n")
while True:
    time.sleep(0.05)
"""


def test_run_signals_the_child_instead_of_restarting(node: Node, tmp_path: Path) -> None:
    assert cli(node, "put", "cli/sig/db", '{"port": 1}').returncode == 0
    (tmp_path / "child.py").write_text(SIGNALLED)
    lines = tmp_path / "lines.txt"
    run = subprocess.Popen(
        [aether(), "run", "--prefix", "cli/sig/", "--signal", "hup", "--debounce", "0", "--",
         sys.executable, str(tmp_path / "child.py"), str(lines)],
        env=token_env(node), stderr=subprocess.PIPE, text=True)
    try:
        pid, port = _lines(lines, 1)[0]
        assert port == "1"
        assert cli(node, "put", "cli/sig/db", '{"port": 2}').returncode == 0
        assert _lines(lines, 2)[1] == [pid, "HUP"]  # the same process, signalled
    finally:
        run.send_signal(signal.SIGTERM)
        code = run.wait(timeout=15)
    assert code == 0, run.stderr.read() if run.stderr else ""
    assert not _alive(int(pid))
