"""``aether secrets …`` with the server stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from aether_core.cli import cli
from aether_core.secrets.cli import secrets

MARKER = "canary-cli-5b0e"
MANIFEST = """
[node]
data_dir = "{data}"

[storage]
use = "sqlite"

[transport]
use = "local"
"""


Invoke = Callable[..., str]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    manifest = tmp_path / "aether.toml"
    manifest.write_text(MANIFEST.format(data=tmp_path / "data"))
    monkeypatch.setenv("AETHER_DISABLE_PLUGINS", "admin")
    cli.add_command(secrets)  # what `aether` does at start through the built-in plugin
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None, ok: bool = True) -> str:
        result = runner.invoke(cli, ["secrets", *args, "-m", str(manifest)], input=stdin)
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return invoke


def test_the_secrets_commands(run: Invoke) -> None:
    out = run("put", "app/db", stdin=MARKER + "-1\n")
    assert out.strip() == "app/db: current v1" and MARKER not in out
    assert run("get", "app/db").strip() == MARKER + "-1"
    out = run("stage", "app/db", stdin=MARKER + "-2\n")
    assert out.strip() == "app/db: current v1, pending v2"
    assert run("get", "app/db", "--label", "pending").strip() == MARKER + "-2"
    refused = run("promote", "app/db", "1", ok=False)
    assert "version 1 is not pending" in refused and MARKER not in refused
    assert run("promote", "app/db", "2").strip() == "app/db: current v2, previous v1"
    assert run("rollback", "app/db").strip() == "app/db: current v1, previous v2"
    run("put", "app/cfg", "--json-value", stdin=json.dumps({"token": MARKER}))
    assert json.loads(run("get", "app/cfg")) == {"token": MARKER}
    listing = json.loads(run("list", "--json"))
    assert [i["name"] for i in listing] == ["app/cfg", "app/db"]
    assert MARKER not in run("list")
    out = run("rotate-key")
    assert out.strip() == "key version 2: 2 secret(s) re-wrapped; retired: 1"
    assert run("get", "app/db").strip() == MARKER + "-1"


def test_bad_input_is_one_clear_line(run: Invoke) -> None:
    assert "no value on stdin" in run("put", "app/x", stdin="", ok=False)
    assert "not a JSON document" in run("put", "app/x", "--json-value", stdin="{nope",
                                        ok=False)
    assert "does not exist" in run("get", "app/missing", ok=False)


def test_the_built_in_plugin_registers_the_command() -> None:
    from aether_core.plugins import make_plugins

    group = click.Group("aether")
    make_plugins().hook.aether_register_commands(cli=group)
    assert group.commands["secrets"] is secrets
