"""TLS settings of ``[transport] use = "raft"`` through the manifest loader (errors name
file, section and key; key material is never echoed), and three ``RaftTransport``s built
from those settings replicating over mutual TLS with no cluster secret."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aether_raft.transport import RaftSettings, RaftTransport
from raft_tls_certs import TestCA

from aether_core import MemoryStorage
from aether_core.errors import ConfigurationError
from aether_core.manager import ConfigManager
from aether_core.manifest import read, resolve
from aether_core.providers import NodeInfo
from aether_core.testing.processes import free_ports as _ports

SECRET = "cluster-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    ca = TestCA(tmp_path_factory.mktemp("manifest-ca"))
    for name in ("n1", "n2", "n3"):
        ca.issue(name)
    return ca


def _manifest(directory: Path, transport: str) -> Path:
    path = directory / "aether.toml"
    path.write_text(f"""
[node]
name = "n1"
data_dir = "data"

[storage]
use = "memory"

[transport]
use = "raft"
listen = "127.0.0.1:7501"
peers = {{ n2 = "127.0.0.1:7502" }}
{transport}
""")
    return path


def test_tls_without_a_secret_loads_with_paths_next_to_the_manifest(ca: TestCA) -> None:
    # The manifest sits beside the certificates and names them relatively.
    manifest = resolve(read(_manifest(ca.directory, 'tls_cert_file = "n1.pem"\n'
                                                    'tls_key_file = "n1.key"\n'
                                                    'tls_ca_file = "ca.pem"')))
    settings = manifest.transport.settings
    assert isinstance(settings, RaftSettings)
    assert settings.cluster_secret is None
    assert settings.tls == (str(ca.directory / "n1.pem"), str(ca.directory / "n1.key"),
                            str(ca.directory / "ca.pem"))


def test_tls_and_a_secret_together_load(ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFT_SECRET", SECRET)
    manifest = resolve(read(_manifest(ca.directory, 'cluster_secret = "${env:RAFT_SECRET}"\n'
                                                    'tls_cert_file = "n1.pem"\n'
                                                    'tls_key_file = "n1.key"\n'
                                                    'tls_ca_file = "ca.pem"')))
    settings = manifest.transport.settings
    assert isinstance(settings, RaftSettings)
    assert settings.cluster_secret is not None and settings.tls is not None


@pytest.mark.parametrize(("body", "message"), [
    ('tls_cert_file = "n1.pem"\ntls_ca_file = "ca.pem"',
     r"aether.toml: \[transport\]: .*tls_cert_file, tls_key_file and tls_ca_file go together"),
    ('tls_cert_file = "n1.pem"\ntls_key_file = "n1.key"\ntls_ca_file = "nowhere/ca.pem"',
     r"aether.toml: \[transport\] tls_ca_file: .*no such file: .*nowhere/ca.pem"),
    ('tls_cert_file = "n1.pem"\ntls_key_file = "n2.key"\ntls_ca_file = "ca.pem"',
     r"\[transport\]: .*tls_cert_file .*n1.pem with tls_key_file .*n2.key: not usable"),
    ('tls_cert_file = "n1.pem"\ntls_key_file = "n1.key"\ntls_ca_file = "n1.key"',
     r"\[transport\]: .*tls_ca_file .*n1.key: not usable"),
    ('tls_cert_file = "n1.pem"\ntls_key_file = 42\ntls_ca_file = "ca.pem"',
     r"\[transport\] tls_key_file: expected str, got 42"),
    ('tls_cert = "n1.pem"', r"\[transport\] tls_cert: unknown key"),
    ("", r"\[transport\]: .*cluster_secret is required when there are peers and no TLS"),
])
def test_bad_tls_settings_name_the_key(ca: TestCA, body: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve(read(_manifest(ca.directory, body)))


def test_key_material_in_the_manifest_is_refused_and_not_echoed(ca: TestCA) -> None:
    key = (ca.directory / "n1.key").read_text()
    inline = key.strip().replace("\n", "\\n")
    body = f'tls_cert_file = "n1.pem"\ntls_key_file = "{inline}"\ntls_ca_file = "ca.pem"'
    with pytest.raises(ConfigurationError, match="path of a PEM file, not its contents") as e:
        resolve(read(_manifest(ca.directory, body)))
    assert "[transport] tls_key_file" in str(e.value)
    # A ${file:} reference pulls the key itself into the value: refused the same way.
    body = 'tls_cert_file = "n1.pem"\ntls_key_file = "${file:n1.key}"\ntls_ca_file = "ca.pem"'
    with pytest.raises(ConfigurationError, match="not its contents") as e2:
        resolve(read(_manifest(ca.directory, body)))
    body_lines = key.strip().splitlines()[1:-1]
    for caught in (e, e2):
        assert not any(line in str(caught.value) for line in body_lines)
        assert "PRIVATE KEY" not in str(caught.value)




async def _leader(managers: dict[str, ConfigManager]) -> str:
    async with asyncio.timeout(20):
        while True:
            for name, m in managers.items():
                t = m.transport
                assert isinstance(t, RaftTransport)
                if t.leader().is_self:
                    return name
            await asyncio.sleep(0.02)


async def test_three_transports_replicate_over_mutual_tls_without_a_secret(
    ca: TestCA, tmp_path: Path,
) -> None:
    addresses = {f"n{i}": f"127.0.0.1:{p}" for i, p in enumerate(_ports(3), 1)}
    managers: dict[str, ConfigManager] = {}
    for name, address in addresses.items():
        settings = RaftSettings.model_validate({
            "listen": address,
            "peers": {n: a for n, a in addresses.items() if n != name},
            "election_timeout_ms": 400, "heartbeat_interval_ms": 40,
            "tls_cert_file": str(ca.directory / f"{name}.pem"),
            "tls_key_file": str(ca.directory / f"{name}.key"),
            "tls_ca_file": str(ca.ca_file),
        })
        transport = RaftTransport(settings, NodeInfo(name=name, data_dir=tmp_path / name))
        managers[name] = ConfigManager(MemoryStorage(), transport)
    try:
        for m in managers.values():
            await m.start()
        leader = await _leader(managers)
        follower = next(n for n in managers if n != leader)
        assert (await managers[follower].put("app/tls", {"on": True})).version == 1
        for m in managers.values():
            assert (await m.get("app/tls")).value == {"on": True}
            t = m.transport
            assert isinstance(t, RaftTransport) and t.network is not None
            assert t.network.rejected == 0
    finally:
        for m in managers.values():
            await m.close()
