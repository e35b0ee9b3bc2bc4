"""Membership changes over mutual TLS: a node added with a certificate naming it joins
and catches up; a node added under a name its certificate does not carry is never let
in (it stays a learner that never caught up, and sees none of the log)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog
from aether_raft.transport import RaftSettings, RaftTransport
from raft_tls_certs import NodeFiles, TestCA

from aether_core import MemoryStorage
from aether_core.manager import ConfigManager
from aether_core.providers import NodeInfo
from aether_core.testing.processes import free_ports as _ports


def _manager(name: str, listen: str, peers: dict[str, str], files: NodeFiles,
             data: Path, *, join: bool = False) -> ConfigManager:
    settings = RaftSettings.model_validate({
        "listen": listen, "peers": peers, "join": join,
        "election_timeout_ms": 400, "heartbeat_interval_ms": 40, "leader_wait_ms": 20_000,
        **files.settings(),
    })
    return ConfigManager(MemoryStorage(),
                         RaftTransport(settings, NodeInfo(name=name, data_dir=data / name)))


def _raft(manager: ConfigManager) -> RaftTransport:
    transport = manager.transport
    assert isinstance(transport, RaftTransport)
    return transport


async def _leader(managers: dict[str, ConfigManager]) -> str:
    async with asyncio.timeout(20):
        while True:
            for name, m in managers.items():
                if _raft(m).leader().is_self:
                    return name
            await asyncio.sleep(0.02)


async def test_a_member_added_over_tls_needs_a_certificate_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = TestCA(tmp_path / "ca")
    ports = _ports(5)
    founders = {f"n{i}": f"127.0.0.1:{p}" for i, p in enumerate(ports[:3], 1)}
    managers = {n: _manager(n, a, {p: b for p, b in founders.items() if p != n},
                            ca.issue(n), tmp_path)
                for n, a in founders.items()}
    joiners: list[ConfigManager] = []
    try:
        for m in managers.values():
            await m.start()
        leader = await _leader(managers)
        follower = next(n for n in managers if n != leader)
        await managers[leader].put("app/members", {"n": 1})

        # n4, with a certificate for n4, joins through a follower's cluster_op.
        n4_address = f"127.0.0.1:{ports[3]}"
        n4 = _manager("n4", n4_address, founders, ca.issue("n4"), tmp_path, join=True)
        joiners.append(n4)
        start = asyncio.create_task(n4.start())
        added = await _raft(managers[follower]).cluster_op("add", "n4", n4_address)
        assert added["role"] == "voter", added
        await start
        assert (await n4.get("app/members")).value == {"n": 1}

        # n5 holds a valid cluster certificate, but for n3: added as n5, it never gets in.
        for m in managers.values():
            ops = _raft(m).cluster_ops
            assert ops is not None
            monkeypatch.setattr(ops, "catch_up_wait", 3.0)
        n5_address = f"127.0.0.1:{ports[4]}"
        n5 = _manager("n5", n5_address, founders, ca.issue("n3", file_stem="n3-for-n5"),
                      tmp_path, join=True)
        joiners.append(n5)
        await n5.start()  # a joiner's start-up does not wait for a leader
        with structlog.testing.capture_logs() as logs:
            result: dict[str, Any] = await _raft(managers[leader]).cluster_op(
                "add", "n5", n5_address)
            assert result["role"] == "learner", result  # it never caught up
            assert "n5" in result["learners"]

            # Both ways refused: founders drop its hello (it claims n5, its certificate
            # says n3), and refuse to send to it (the certificate at n5's address is not
            # n5's). Its dialer backs off up to 2 s between tries: wait for both.
            def errors(event: str) -> list[str]:
                return [e["error"] for e in logs if e["event"] == event]

            async with asyncio.timeout(20):
                while not (any("claims to be 'n5'" in e and "names n3" in e  # noqa: ASYNC110
                               for e in errors("raft.peer_rejected"))
                           and any("not 'n5'" in e for e in errors("raft.peer_refused"))):
                    await asyncio.sleep(0.05)
        # So it learnt nothing: no leader, no entry applied.
        n5_driver = _raft(n5).driver
        assert n5_driver is not None
        assert n5_driver.core.applied == 0 and n5_driver.core.leader is None
        assert not n5.transport.ready()
        # The cluster is unharmed: it still takes writes, and n4 sees them.
        await managers[follower].put("app/members", {"n": 2})
        assert (await n4.get("app/members")).value == {"n": 2}
    finally:
        for m in [*joiners, *managers.values()]:
            await m.close()
