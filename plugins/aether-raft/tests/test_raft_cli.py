"""``aether cluster …`` without a reachable node: one readable line on stderr and a
non-zero exit, never a traceback (the live behaviour is in test_raft_cluster_ops.py)."""

from __future__ import annotations

import socket

import pytest
from aether_raft.cli import cluster
from click.testing import CliRunner


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("args", [
    ["status"], ["add", "node-4", "127.0.0.1:7404"], ["remove", "node-4"],
    ["transfer-leader"], ["transfer-leader", "node-2", "--json"],
])
def test_an_unreachable_node_is_one_error_line(args: list[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(cluster, [*args, "--url", url],
                                env={"AETHER_TOKEN": "some-token-value"})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {url}: ConnectError"), lines
    assert "some-token-value" not in result.output


def test_a_token_is_required() -> None:
    result = CliRunner().invoke(cluster, ["remove", "node-4", "--url", "http://x"],
                                env={"AETHER_TOKEN": None})
    assert result.exit_code == 2 and "--token" in result.output
