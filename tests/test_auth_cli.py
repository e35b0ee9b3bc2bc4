"""``aether auth keys|rotate-key``: the JWT signing keys from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from aether_core.auth.cli import auth
from aether_core.cli import cli

SIGNING_KEY = "cli-signing-key-0123456789abcdef0123456789"
MANIFEST = """
[node]
data_dir = "{data}"

[storage]
use = "sqlite"

[transport]
use = "local"

[auth]
use = "jwt"
signing_key = "${{env:AETHER_TEST_SIGNING_KEY}}"
token_ttl = 60
"""

Invoke = Callable[..., str]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    manifest = tmp_path / "aether.toml"
    manifest.write_text(MANIFEST.format(data=tmp_path / "data"))
    monkeypatch.setenv("AETHER_DISABLE_PLUGINS", "admin")
    monkeypatch.setenv("AETHER_TEST_SIGNING_KEY", SIGNING_KEY)
    cli.add_command(auth)  # what `aether` does at start through the built-in plugin
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> str:
        result = runner.invoke(cli, ["auth", *args, "-m", str(manifest)])
        assert (result.exit_code == 0) == ok, result.output
        assert SIGNING_KEY not in result.output
        return result.output

    return invoke


def test_rotate_key_then_a_second_rotation_inside_the_overlap_is_refused(run: Invoke) -> None:
    before = json.loads(run("keys", "--json"))
    assert before["signing_kid"] == "k1" and before["stored"] is False
    out = json.loads(run("rotate-key", "--propagation", "0", "--json"))
    new_kid = out["signing_kid"]
    assert new_kid != "k1"
    assert {(k["kid"], k["state"]) for k in out["keys"]} == {
        ("k1", "previous"), (new_kid, "current")}
    # The rotation is stored: a later command (another process) sees it.
    assert json.loads(run("keys", "--json"))["signing_kid"] == new_kid
    refused = run("rotate-key", "--propagation", "0", ok=False)
    assert "previous signing key verifies tokens until" in refused
    assert len(refused.strip().splitlines()) == 1
    assert json.loads(run("keys", "--json"))["signing_kid"] == new_kid
    assert "--propagation" in run("rotate-key", "--propagation", "-1", ok=False)
