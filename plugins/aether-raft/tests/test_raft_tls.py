"""Mutual TLS between raft peers over real loopback sockets: who gets in, who is refused,
and that nothing a refused peer sends is ever delivered. Certificates are made per test
(``raft_tls_certs``); no key material is committed."""

from __future__ import annotations

import asyncio
import gc
import ssl
import struct
import warnings
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from aether_raft.forward import PeerFrame
from aether_raft.messages import Heartbeat, encode_message
from aether_raft.network import PeerNetwork
from aether_raft.tls import PeerTLS, load
from aether_raft.wire import MAX_FRAME, WireError, dial, frame, read_frame
from raft_tls_certs import NodeFiles, TestCA

from aether_core.testing.processes import free_ports as _ports

SECRET = b"s" * 32


def _network(name: str, listen: str, peers: dict[str, str], secret: bytes | None,
             deliver: Callable[[PeerFrame], None], tls: PeerTLS | None,
             handshake_seconds: float = 3.0) -> PeerNetwork:
    """A network with fast reconnects. The handshake limit is generous (a loaded CI
    machine must not turn a refusal for a reason into a timeout), except where a test
    waits for exactly that timeout."""
    return PeerNetwork(name, listen, peers, secret, deliver, tls=tls, backoff_min=0.01,
                       backoff_max=0.1, handshake_seconds=handshake_seconds)


def _tls(files: NodeFiles) -> PeerTLS:
    return load(str(files.cert), str(files.key), str(files.ca))


async def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110 - polls counters the network bumps
            await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("cluster-ca"))


@pytest.fixture(scope="module")
def rogue_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    # Same subject name as the real one: only the key tells them apart.
    return TestCA(tmp_path_factory.mktemp("rogue-ca"))


@pytest.fixture(scope="module")
def certs(ca: TestCA) -> dict[str, NodeFiles]:
    return {name: ca.issue(name) for name in ("a", "b", "c")}


async def _node(name: str, peers: dict[str, str], tls: PeerTLS | None,
                secret: bytes | None = SECRET, handshake_seconds: float = 3.0,
                ) -> tuple[PeerNetwork, list[PeerFrame]]:
    got: list[PeerFrame] = []
    node = _network(name, "127.0.0.1:0", peers, secret, got.append, tls, handshake_seconds)
    await node.start()
    return node, got


def _events(logs: Sequence[MutableMapping[str, Any]], event: str
            ) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event]




@pytest.mark.parametrize("secret", [SECRET, None], ids=["tls+secret", "tls-only"])
async def test_a_tls_cluster_exchanges_messages_in_order(
    certs: dict[str, NodeFiles], secret: bytes | None,
) -> None:
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip("abc", _ports(3), strict=True)}
    got: dict[str, list[PeerFrame]] = {n: [] for n in addresses}
    nodes = {n: _network(n, address, {p: a for p, a in addresses.items() if p != n},
                         secret, got[n].append, _tls(certs[n]))
             for n, address in addresses.items()}
    try:
        for node in nodes.values():
            await node.start()
        for n, node in nodes.items():
            for p in node.peers:
                for i in range(100):
                    node.send(Heartbeat(src=n, dst=p, term=1, commit=i))
        await _until(lambda: all(len(g) == 200 for g in got.values()))
        for n, g in got.items():
            for p in nodes[n].peers:
                seen = [m.commit for m in g if isinstance(m, Heartbeat) and m.src == p]
                assert seen == list(range(100)), (n, p)
            assert nodes[n].rejected == 0
            assert nodes[n].connected == set(nodes[n].peers)
    finally:
        for node in nodes.values():
            await node.close()


async def test_peers_speak_tls_1_2_or_later_and_require_a_client_certificate(
    certs: dict[str, NodeFiles],
) -> None:
    b, got = await _node("b", {"a": "127.0.0.1:1"}, _tls(certs["b"]))
    try:
        # A client that verifies b but shows no certificate of its own is refused.
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname = False
        anonymous.load_verify_locations(cafile=str(certs["b"].ca))
        with structlog.testing.capture_logs() as logs:
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                reader, writer = await asyncio.open_connection("127.0.0.1", b.port,
                                                               ssl=anonymous)
                # TLS 1.3 reports a missing client certificate after the handshake.
                await read_frame(reader)
            await _until(lambda: b.rejected >= 1)
        assert "did not return a certificate" in _events(logs, "raft.peer_rejected")[0]["error"]
        # A TLS 1.1 client (which OpenSSL is told to allow on its side) is refused.
        old = _tls(certs["a"]).client
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1_1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        before = b.rejected
        with structlog.testing.capture_logs() as logs:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.open_connection("127.0.0.1", b.port, ssl=old)
            await _until(lambda: b.rejected > before)
        assert "unsupported protocol" in _events(logs, "raft.peer_rejected")[0]["error"]
        # A proper member gets TLS 1.2 or 1.3 (1.3 on any current OpenSSL).
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port,
                                                       ssl=_tls(certs["a"]).client)
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        await dial(reader, writer, SECRET, "a")
        writer.write(frame(encode_message(Heartbeat(src="a", dst="b", term=1, commit=1))))
        await writer.drain()
        await _until(lambda: len(got) == 1)
        writer.close()
    finally:
        await b.close()


async def test_a_certificate_from_another_ca_is_refused_both_ways(
    certs: dict[str, NodeFiles], rogue_ca: TestCA,
) -> None:
    # The impostor has the right name, the right secret, and a cert from another CA.
    impostor_files = rogue_ca.issue("a")
    b, got = await _node("b", {"a": "127.0.0.1:1"}, _tls(certs["b"]))
    impostor, impostor_got = await _node("a", {"b": f"127.0.0.1:{b.port}"},
                                         _tls(impostor_files))
    # b dials the impostor too, and must refuse the certificate it presents.
    b_dialer, _ = await _node("b", {"a": f"127.0.0.1:{impostor.port}"}, _tls(certs["b"]))
    try:
        with structlog.testing.capture_logs() as logs:
            for i in range(20):
                impostor.send(Heartbeat(src="a", dst="b", term=5, commit=i))
                b_dialer.send(Heartbeat(src="b", dst="a", term=5, commit=i))
            await _until(lambda: b.rejected >= 2 and impostor.rejected >= 2 and {
                e["peer"] for e in _events(logs, "raft.peer_refused")} == {"a", "b"})
            await asyncio.sleep(0.3)  # time for anything that wrongly got through
        assert got == [] and impostor_got == []
        assert impostor.connected == set() and b_dialer.connected == set()
        # TLS has the dialer check the acceptor's certificate first: each side's dialer
        # says why (the acceptors only see the connection dropped).
        refused = _events(logs, "raft.peer_refused")
        assert {e["peer"] for e in refused} == {"a", "b"}
        assert all("certificate verify failed" in e["error"] for e in refused), refused
        # A dialer that trusts the cluster CA but shows the rogue certificate: now the
        # acceptor's own check refuses it.
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.load_verify_locations(cafile=str(certs["b"].ca))
        client.load_cert_chain(str(impostor_files.cert), str(impostor_files.key))
        with structlog.testing.capture_logs() as logs:
            before = b.rejected
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                reader, writer = await asyncio.open_connection("127.0.0.1", b.port,
                                                               ssl=client)
                await dial(reader, writer, SECRET, "a")  # TLS 1.3: refused after connect
            # (The impostor's own retries keep being dropped meanwhile: look for ours.)
            await _until(lambda: b.rejected > before and any(
                "certificate verify failed" in e["error"]
                for e in _events(logs, "raft.peer_rejected")))
        assert got == []
    finally:
        for node in (impostor, b_dialer, b):
            await node.close()


async def test_a_cluster_certificate_for_another_node_cannot_impersonate(
    certs: dict[str, NodeFiles],
) -> None:
    # c is a real member with a valid certificate and the secret, and claims to be a.
    b, got = await _node("b", {"a": "127.0.0.1:1", "c": "127.0.0.1:1"}, _tls(certs["b"]))
    try:
        with structlog.testing.capture_logs() as logs:
            liar, _ = await _node("a", {"b": f"127.0.0.1:{b.port}"}, _tls(certs["c"]))
            try:
                for i in range(20):
                    liar.send(Heartbeat(src="a", dst="b", term=7, commit=i))
                await _until(lambda: b.rejected >= 2)
                await asyncio.sleep(0.3)
                assert liar.connected == set()
            finally:
                await liar.close()
        assert got == []
        errors = [e["error"] for e in _events(logs, "raft.peer_rejected")]
        assert any("claims to be 'a'" in e and "names c" in e for e in errors), errors
        # Under its own name c is let in: the refusal was about the name, not the cert.
        honest, _ = await _node("c", {"b": f"127.0.0.1:{b.port}"}, _tls(certs["c"]))
        try:
            honest.send(Heartbeat(src="c", dst="b", term=7, commit=1))
            await _until(lambda: len(got) == 1)
        finally:
            await honest.close()
    finally:
        await b.close()


async def test_a_dialer_refuses_an_acceptor_whose_certificate_names_another_node(
    certs: dict[str, NodeFiles],
) -> None:
    # Whoever listens at b's address holds c's (valid) certificate: a must not talk to it.
    fake_b, fake_got = await _node("b", {"a": "127.0.0.1:1"}, _tls(certs["c"]))
    a, _ = await _node("a", {"b": f"127.0.0.1:{fake_b.port}"}, _tls(certs["a"]))
    try:
        with structlog.testing.capture_logs() as logs:
            for i in range(10):
                a.send(Heartbeat(src="a", dst="b", term=1, commit=i))
            await _until(lambda: len(_events(logs, "raft.peer_refused")) >= 2)
        assert fake_got == [] and a.connected == set()
        assert "not 'b'" in _events(logs, "raft.peer_refused")[0]["error"]
    finally:
        await a.close()
        await fake_b.close()


async def test_a_certificate_naming_no_node_is_refused(ca: TestCA,
                                                       certs: dict[str, NodeFiles]) -> None:
    unnamed = ca.issue("a", dns=[], file_stem="a-no-san")  # CN=a only: not enough
    wildcard = ca.issue("a", dns=["*"], file_stem="a-wildcard")
    b, got = await _node("b", {"a": "127.0.0.1:1"}, _tls(certs["b"]))
    try:
        for files in (unnamed, wildcard):
            before = b.rejected
            a, _ = await _node("a", {"b": f"127.0.0.1:{b.port}"}, _tls(files))
            try:
                a.send(Heartbeat(src="a", dst="b", term=1, commit=0))
                await _until(lambda before=before: b.rejected >= before + 2)  # type: ignore[misc]
            finally:
                await a.close()
        assert got == []
    finally:
        await b.close()


async def test_plain_tcp_and_tls_peers_refuse_each_other(certs: dict[str, NodeFiles]) -> None:
    # A plain dialer waits for a challenge, the TLS acceptor for a client hello: the
    # handshake timeout (1 s here) ends it on both sides.
    tls_b, tls_got = await _node("b", {"a": "127.0.0.1:1"}, _tls(certs["b"]),
                                 handshake_seconds=1.0)
    plain_b, plain_got = await _node("b", {"a": "127.0.0.1:1"}, None)
    plain_a, _ = await _node("a", {"b": f"127.0.0.1:{tls_b.port}"}, None,
                             handshake_seconds=1.0)
    # A TLS dialer's client hello is no frame to a plain acceptor, and its challenge no
    # TLS record to the dialer.
    tls_a, _ = await _node("a", {"b": f"127.0.0.1:{plain_b.port}"}, _tls(certs["a"]))
    try:
        for i in range(10):
            plain_a.send(Heartbeat(src="a", dst="b", term=1, commit=i))
            tls_a.send(Heartbeat(src="a", dst="b", term=1, commit=i))
        await _until(lambda: tls_b.rejected >= 1 and plain_b.rejected >= 1)
        # Raw plain-text protocol bytes straight at the TLS port: refused at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", tls_b.port)
        writer.write(frame(b"\x81\xa1t\xa5hello"))
        await writer.drain()
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
        await asyncio.sleep(0.3)
        assert tls_got == [] and plain_got == []
        assert plain_a.connected == set() and tls_a.connected == set()
    finally:
        for node in (plain_a, tls_a, tls_b, plain_b):
            await node.close()


async def test_a_wrong_secret_is_refused_even_with_a_valid_certificate(
    certs: dict[str, NodeFiles],
) -> None:
    b, got = await _node("b", {"a": "127.0.0.1:1"}, _tls(certs["b"]), secret=b"x" * 32)
    a, _ = await _node("a", {"b": f"127.0.0.1:{b.port}"}, _tls(certs["a"]))
    try:
        with structlog.testing.capture_logs() as logs:
            for i in range(10):
                a.send(Heartbeat(src="a", dst="b", term=1, commit=i))
            await _until(lambda: b.rejected >= 2)
            await asyncio.sleep(0.3)
        assert got == [] and a.connected == set()
        assert any("wrong cluster secret" in e["error"]
                   for e in _events(logs, "raft.peer_rejected"))
        # Nothing about the secret itself is logged.
        assert all(SECRET.decode() not in repr(e) and "x" * 32 not in repr(e) for e in logs)
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack(">I", MAX_FRAME + 1) + b"\x01",  # oversized frame
        struct.pack(">I", 3) + b"\x09ab",  # a wrong version byte
        frame(b"\xc1garbage"),  # not msgpack
        b"\x00" * 64,  # a zero-length frame
    ],
    ids=["oversized", "version", "not-msgpack", "zero"],
)
async def test_garbage_from_an_authenticated_tls_peer_disconnects_it_and_the_node_serves_on(
    certs: dict[str, NodeFiles], payload: bytes,
) -> None:
    b, got = await _node("b", {"a": "127.0.0.1:1", "c": "127.0.0.1:1"}, _tls(certs["b"]))
    try:
        with structlog.testing.capture_logs() as logs:
            reader, writer = await asyncio.open_connection("127.0.0.1", b.port,
                                                           ssl=_tls(certs["c"]).client)
            await dial(reader, writer, SECRET, "c")
            writer.write(frame(encode_message(Heartbeat(src="c", dst="b", term=1, commit=1))))
            writer.write(payload)
            await writer.drain()
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # b closed the connection
            writer.close()
        assert len(got) == 1 and b.rejected == 1
        assert [e["peer"] for e in _events(logs, "raft.peer_rejected")] == ["c"]
        # b still serves its other peer.
        a, _ = await _node("a", {"b": f"127.0.0.1:{b.port}"}, _tls(certs["a"]))
        try:
            a.send(Heartbeat(src="a", dst="b", term=1, commit=2))
            await _until(lambda: len(got) == 2)
        finally:
            await a.close()
    finally:
        await b.close()


async def test_a_dial_with_a_wrong_secret_raises_over_tls(certs: dict[str, NodeFiles]) -> None:
    b, got = await _node("b", {"a": "127.0.0.1:1"}, _tls(certs["b"]), secret=None)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", b.port,
                                                       ssl=_tls(certs["a"]).client)
        # b has no secret (TLS only): a dialer that sends a MAC disagrees with it.
        with pytest.raises((WireError, asyncio.IncompleteReadError, ConnectionError)):
            await dial(reader, writer, SECRET, "a")
        writer.close()
        await _until(lambda: b.rejected >= 1)
        assert got == []
    finally:
        await b.close()


def test_a_network_needs_a_secret_or_tls() -> None:
    with pytest.raises(ValueError, match="never neither"):
        PeerNetwork("a", "127.0.0.1:0", {"b": "127.0.0.1:1"}, None, lambda m: None)


def test_unusable_tls_files_name_the_file(certs: dict[str, NodeFiles], tmp_path: Path) -> None:
    a, b = certs["a"], certs["b"]
    with pytest.raises(ValueError, match=r"tls_cert_file .* with tls_key_file"):
        load(str(a.cert), str(b.key), str(a.ca))  # a's certificate, b's key
    with pytest.raises(ValueError, match="tls_ca_file"):
        load(str(a.cert), str(a.key), str(a.key))  # a key is no CA
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match="no such file"):
        load(str(a.cert), str(a.key), str(missing))


async def test_a_peer_hanging_up_right_after_the_handshake_is_a_clean_refusal(
    certs: dict[str, NodeFiles], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CPython 3.11's start_tls returns no transport when the connection is lost between
    # the end of the handshake and the caller resuming (seen under load): inject that.
    loop = asyncio.get_running_loop()
    real = loop.start_tls

    async def lost_after_handshake(transport: Any, protocol: Any, context: ssl.SSLContext,
                                   **kwargs: Any) -> Any:
        tls_transport = await real(transport, protocol, context, **kwargs)
        if kwargs.get("server_side"):
            tls_transport.abort()
            return None
        return tls_transport

    b, got = await _node("b", {"a": "127.0.0.1:1"}, _tls(certs["b"]))
    try:
        monkeypatch.setattr(loop, "start_tls", lost_after_handshake)
        with structlog.testing.capture_logs() as logs:
            a, _ = await _node("a", {"b": f"127.0.0.1:{b.port}"}, _tls(certs["a"]))
            try:
                a.send(Heartbeat(src="a", dst="b", term=1, commit=0))
                await _until(lambda: b.rejected >= 2)
                monkeypatch.undo()
                # The same peer gets in once connections stop being lost.
                await _until(lambda: len(got) >= 1)
            finally:
                await a.close()
        errors = [e["error"] for e in _events(logs, "raft.peer_rejected")]
        assert errors and all(e == "the peer hung up after the TLS handshake" for e in errors)
        gc.collect()  # a writer left without a transport would fail in __del__ here
    finally:
        await b.close()


def test_an_encrypted_key_is_refused_without_a_prompt(certs: dict[str, NodeFiles],
                                                      tmp_path: Path) -> None:
    # OpenSSL would otherwise ask for a pass phrase on the terminal and hang a service.
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(certs["a"].key.read_bytes(), password=None)
    encrypted = tmp_path / "a-encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase 0123456789")))
    with pytest.raises(ValueError, match=r"a-encrypted\.key is encrypted: give the node an "
                                          r"unencrypted key"):
        load(str(certs["a"].cert), str(encrypted), str(certs["a"].ca))
