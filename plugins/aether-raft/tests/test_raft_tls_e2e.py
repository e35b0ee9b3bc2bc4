"""Three ``aether up`` processes whose peers talk mutual TLS (and the cluster secret's
HMAC inside it): a write through a follower, read through every node; a stranger with a
certificate from another CA, and plain TCP, are refused at a node's raft port, logged,
and the cluster keeps serving."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path

import httpx
import pytest
from aether_raft.wire import dial
from raft_cluster_harness import Cluster, until
from raft_tls_certs import TestCA

#: The same lines in every manifest: each node's files sit in its own directory.
TLS = """tls_cert_file = "tls/node.pem"
tls_key_file = "tls/node.key"
tls_ca_file = "tls/ca.pem"
"""


def _install_certificates(cluster: Cluster, ca: TestCA) -> None:
    for member in cluster.members.values():
        files = ca.issue(member.name)
        target = member.directory / "tls"
        target.mkdir()
        shutil.copy(files.cert, target / "node.pem")
        shutil.copy(files.key, target / "node.key")
        shutil.copy(files.ca, target / "ca.pem")


async def _stranger_is_refused(port: int, rogue: ssl.SSLContext) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=rogue)
            await dial(reader, writer, None, "node-1")  # TLS 1.3: refused after connect
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\x00\x00\x05\x01hello")  # plain-text frames at a TLS port
        await writer.drain()
        assert await reader.read() == b""
        writer.close()


def test_three_aether_up_processes_replicate_over_mutual_tls(tmp_path: Path) -> None:
    (tmp_path / "cluster").mkdir()
    cluster = Cluster(tmp_path / "cluster", 3, extra=TLS)
    ca = TestCA(tmp_path / "ca")
    _install_certificates(cluster, ca)
    rogue_files = TestCA(tmp_path / "rogue").issue("node-1")
    cluster.start()
    try:
        leader = cluster.leader(60)
        auth = cluster.auth()
        follower = next(m for m in cluster.members.values() if m is not leader)
        written = httpx.post(f"{follower.url}/configs", headers=auth, timeout=15,
                             json={"name": "tls/db", "value": {"port": 5432}})
        assert written.status_code == 201, written.text
        for m in cluster.members.values():
            got = m.get("/configs/tls/db", auth)
            assert got.status_code == 200 and got.json()["value"] == {"port": 5432}, m.name

        # A stranger that trusts the cluster CA but shows a certificate from another CA
        # (for a member's name), and plain TCP, at the leader's raft port.
        rogue = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        rogue.check_hostname = False
        rogue.load_verify_locations(cafile=str(ca.ca_file))
        rogue.load_cert_chain(str(rogue_files.cert), str(rogue_files.key))
        asyncio.run(_stranger_is_refused(int(leader.listen.rpartition(":")[2]), rogue))
        until("the refusals logged", lambda: leader.output().count("raft.peer_rejected") >= 2,
              10)
        assert "certificate verify failed" in leader.output()

        # The cluster still serves: a second write, through the leader this time.
        again = httpx.put(f"{leader.url}/configs/tls/db", headers=auth, timeout=15,
                          json={"value": {"port": 6543}})
        assert again.status_code == 200 and again.json()["version"] == 2, again.text
        assert follower.get("/configs/tls/db", auth).json()["value"] == {"port": 6543}
    finally:
        outputs = cluster.stop_all()
    # Every peer link came up over TLS 1.2+ (each node logs the version it got).
    connected = [line for line in outputs.splitlines() if "raft.peer_connected" in line]
    assert len(connected) >= 6, connected
    assert all('"tls": "TLSv1.3"' in line or '"tls": "TLSv1.2"' in line
               for line in connected), connected
    key_body = (tmp_path / "cluster" / "node-1" / "tls" / "node.key").read_text()
    assert key_body.splitlines()[1] not in outputs
