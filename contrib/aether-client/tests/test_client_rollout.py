"""``aether rollout`` and the SDK's client-aware ``get`` against ``aether up``: clients
inside the fraction get the candidate, a nack rolls it back, promote makes it everyone's."""

from __future__ import annotations

import asyncio
import json
import subprocess

from aether_client.client import AsyncAetherClient
from aether_client.credentials import Credentials
from aether_client.rollout_cli import rollout
from aether_client.sync import AetherClient
from aether_client_node import Node, client_env
from click.testing import CliRunner

from aether_core.cli import AetherGroup
from aether_core.rollout import bucket

NAME = "cli/rollout/web"


_TOKENS: dict[str, str] = {}


def token_env(node: Node) -> dict[str, str]:
    # A token, not a password: each command then skips the slow password check.
    if node.url not in _TOKENS:
        _TOKENS[node.url] = node.admin_headers()["Authorization"].removeprefix("Bearer ")
    return client_env(node.url, AETHER_TOKEN=_TOKENS[node.url], AETHER_USERNAME="",
                      AETHER_PASSWORD="")


def cli(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    group = AetherGroup(name="aether")
    group.add_command(rollout)
    result = CliRunner().invoke(group, list(args), env=token_env(node),
                                catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout,
                                       result.stderr)


def credentials(node: Node) -> Credentials:
    return Credentials(token=token_env(node)["AETHER_TOKEN"])


def client(node: Node, client_id: str) -> AetherClient:
    return AetherClient(node.url, credentials(node), client_id=client_id, cache_dir=False)


def nack(node: Node, client_id: str, version: int, detail: str) -> None:
    async def go() -> None:
        async with AsyncAetherClient(node.url, credentials(node), client_id=client_id,
                                     cache_dir=False) as sdk:
            await sdk.report(NAME, version, "nack", detail=detail)

    asyncio.run(go())


def test_rollout_through_cli_and_sdk(node: Node) -> None:
    ids = [f"sdk-{i}" for i in range(40)]
    inside = [c for c in ids if bucket(NAME, c) < 5000]
    outside = [c for c in ids if bucket(NAME, c) >= 5000]
    assert inside and outside
    with client(node, inside[0]) as a, client(node, outside[0]) as b:
        a.put(NAME, {"workers": 2})
        started = cli(node, "rollout", "start", NAME, '{"workers": 4}', "--fraction", "0.5")
        assert started.returncode == 0, started.stderr
        assert "running" in started.stdout and "50.00%" in started.stdout
        assert (a.get(NAME).version, a.get(NAME).value) == (2, {"workers": 4})
        assert b.get(NAME).version == 1
        assert a.get(NAME, 1).value == {"workers": 2}

        bad = cli(node, "rollout", "widen", NAME, "--fraction", "0.2")
        assert bad.returncode == 1 and "above the current 0.5" in bad.stderr
        nack(node, inside[0], 2, "too many workers")
        status = json.loads(cli(node, "rollout", "status", NAME, "--json").stdout)
        assert (status["state"], status["nacks"]) == ("rolled-back", 1)
        assert a.get(NAME).version == 1

        assert cli(node, "rollout", "start", NAME, '{"workers": 3}', "--fraction",
                   "0.1").returncode == 0
        assert cli(node, "rollout", "widen", NAME, "--fraction", "1").returncode == 0
        assert b.get(NAME).value == {"workers": 3}
        promoted = cli(node, "rollout", "promote", NAME)
        assert promoted.returncode == 0 and "promoted" in promoted.stdout
        head = b.get(NAME, 2)
        assert head.value == {"workers": 3}
        none = cli(node, "rollout", "abort", NAME)
        assert none.returncode == 1 and "no rollout" in none.stderr
