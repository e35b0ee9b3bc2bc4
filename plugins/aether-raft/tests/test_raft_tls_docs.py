"""The OpenSSL commands docs/raft.md gives for making a cluster CA and node certificates
work as written: run them, then connect two nodes with what they made."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from aether_raft.forward import PeerFrame
from aether_raft.messages import Heartbeat
from aether_raft.network import PeerNetwork
from aether_raft.tls import load

DOC = Path(__file__).resolve().parents[3] / "docs" / "raft.md"


def _openssl_block() -> str:
    text = DOC.read_text()
    section = text[text.index("## Mutual TLS between peers"):]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "docs/raft.md: no ```sh block in the mutual TLS section"
    return match.group(1)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """The documented commands, run in an empty directory; what they made is there."""
    assert shutil.which("openssl"), "the openssl command is needed for this test"
    script = _openssl_block()
    assert "subjectAltName=DNS:" in script
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "node-1.pem: OK" in done.stdout and "DNS:node-1" in done.stdout
    assert oct((tmp_path / "node-2.key").stat().st_mode & 0o777) == "0o600"
    return tmp_path


async def test_the_documented_openssl_commands_make_a_working_cluster_pki(pki: Path) -> None:
    tmp_path = pki
    got: list[PeerFrame] = []
    b = PeerNetwork("node-2", "127.0.0.1:0", {"node-1": "127.0.0.1:1"}, None, got.append,
                    tls=load(str(tmp_path / "node-2.pem"), str(tmp_path / "node-2.key"),
                             str(tmp_path / "ca.pem")))
    await b.start()
    a = PeerNetwork("node-1", "127.0.0.1:0", {"node-2": f"127.0.0.1:{b.port}"}, None,
                    lambda m: None, backoff_min=0.01, backoff_max=0.1,
                    tls=load(str(tmp_path / "node-1.pem"), str(tmp_path / "node-1.key"),
                             str(tmp_path / "ca.pem")))
    await a.start()
    try:
        a.send(Heartbeat(src="node-1", dst="node-2", term=1, commit=3))
        async with asyncio.timeout(10):
            while not got:  # noqa: ASYNC110 - polls what the network delivered
                await asyncio.sleep(0.01)
        assert isinstance(got[0], Heartbeat) and got[0].commit == 3
        assert b.rejected == 0
    finally:
        await a.close()
        await b.close()
