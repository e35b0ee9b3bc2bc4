"""Peer wire format and the cluster-secret handshake.

A frame is a 4-byte big-endian length, then a version byte, then a msgspec msgpack
body. The handshake is a mutual HMAC-SHA256 challenge on the cluster secret: the
acceptor sends a nonce, the dialer answers with its name, its own nonce and a MAC
over both; the acceptor answers with a MAC over both in the other direction. Each side
proves it knows the secret without sending it, and neither accepts a Raft message
before the other is proven. The MACs are bound to a direction label and to the
claimed name, so a response can be neither reflected nor replayed to another node.

Over mutual TLS the same handshake runs inside the TLS session, and the acceptor also
requires the claimed name to be one its peer's certificate names (``certified``). With
TLS and no cluster secret (``secret=None``) the MACs are empty and not checked: the
certificates alone authenticate, and the hello only says which member is speaking.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct

import msgspec

VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")
_NONCE = 32
_LABEL = b"aether-raft/1 "


class WireError(Exception):
    """The peer sent something that is not a valid frame, or failed authentication."""


class Challenge(msgspec.Struct, frozen=True, tag="challenge"):
    nonce: bytes


class Hello(msgspec.Struct, frozen=True, tag="hello"):
    name: str
    nonce: bytes
    mac: bytes


class Welcome(msgspec.Struct, frozen=True, tag="welcome"):
    mac: bytes


_Handshake = Challenge | Hello | Welcome
_encoder = msgspec.msgpack.Encoder()
_handshake = msgspec.msgpack.Decoder(_Handshake)


def frame(body: bytes) -> bytes:
    return _HEADER.pack(len(body) + 1) + bytes((VERSION,)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The body of the next frame. ``IncompleteReadError`` at a clean end of stream."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size < 1 or size > MAX_FRAME:
        raise WireError(f"frame of {size} bytes (limit {MAX_FRAME})")
    data = await reader.readexactly(size)
    if data[0] != VERSION:
        raise WireError(f"wire version {data[0]}, this node speaks {VERSION}")
    return data[1:]


def _mac(secret: bytes | None, direction: bytes, name: str, first: bytes, second: bytes
         ) -> bytes:
    if secret is None:
        return b""
    message = _LABEL + direction + name.encode() + b"\x00" + first + second
    return hmac.new(secret, message, hashlib.sha256).digest()


async def _read_handshake(reader: asyncio.StreamReader) -> _Handshake:
    try:
        message: _Handshake = _handshake.decode(await read_frame(reader))
    except msgspec.DecodeError as exc:
        raise WireError(f"bad handshake frame: {exc}") from None
    return message


async def accept(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes | None,
    known: frozenset[str], certified: frozenset[str] | None = None,
) -> str:
    """Authenticate a dialer; returns its proven name.

    ``certified``: the (lower-case) names the dialer's verified TLS certificate carries;
    None on plain TCP, where the secret is then required.
    """
    if secret is None and certified is None:
        raise ValueError("a peer must be authenticated by a secret, a certificate or both")
    ours = os.urandom(_NONCE)
    writer.write(frame(_encoder.encode(Challenge(ours))))
    await writer.drain()
    hello = await _read_handshake(reader)
    if not isinstance(hello, Hello) or len(hello.nonce) != _NONCE:
        raise WireError("expected a hello")
    expected = _mac(secret, b"dial", hello.name, ours, hello.nonce)
    if not hmac.compare_digest(expected, hello.mac):
        raise WireError("authentication failed (wrong cluster secret?)")
    if hello.name not in known:
        raise WireError(f"{hello.name!r} is not a member of this cluster")
    if certified is not None and hello.name.lower() not in certified:
        raise WireError(f"the peer claims to be {hello.name!r} but its certificate names "
                        f"{', '.join(sorted(certified)) or 'no node'}")
    writer.write(frame(_encoder.encode(Welcome(_mac(secret, b"accept", hello.name,
                                                     hello.nonce, ours)))))
    await writer.drain()
    return hello.name


async def dial(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes | None,
    name: str,
) -> None:
    """Authenticate to an acceptor as ``name``, and check the acceptor knows the secret."""
    challenge = await _read_handshake(reader)
    if not isinstance(challenge, Challenge) or len(challenge.nonce) != _NONCE:
        raise WireError("expected a challenge")
    ours = os.urandom(_NONCE)
    writer.write(frame(_encoder.encode(
        Hello(name, ours, _mac(secret, b"dial", name, challenge.nonce, ours)))))
    await writer.drain()
    welcome = await _read_handshake(reader)
    if not isinstance(welcome, Welcome):
        raise WireError("expected a welcome")
    if not hmac.compare_digest(_mac(secret, b"accept", name, ours, challenge.nonce),
                               welcome.mac):
        raise WireError("the peer failed authentication (wrong cluster secret?)")
