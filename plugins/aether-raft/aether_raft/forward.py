"""Writes (and membership operations) a follower forwards to the leader, on the same
peer connections as Raft.

They share the wire's tagged union with the Raft messages (same ``t`` tag field), but
never reach the core: the transport handles them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from aether_raft.messages import Message


class Forward(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="fwd"):
    src: str
    dst: str
    id: int
    #: ``aether_core.commands.encode(command)``
    data: bytes


class ForwardReply(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="fwd_resp"):
    """Where the leader appended the write, or why it did not."""

    src: str
    dst: str
    id: int
    index: int = 0
    term: int = 0
    error: str | None = None
    leader: str | None = None


class ClusterOp(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="op"):
    """A membership operation (``add``, ``remove``, ``transfer``) for the leader to run."""

    src: str
    dst: str
    id: int
    op: str
    node: str = ""
    address: str = ""


class ClusterOpReply(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="op_resp"):
    """What the operation did (``result``) or why not: an HTTP ``status`` and ``detail``."""

    src: str
    dst: str
    id: int
    status: int = 200
    detail: str = ""
    result: dict[str, Any] = {}


class Removed(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="removed"):
    """The leader to a node whose removal it committed: stop serving (the node would
    not learn it from the log, which it no longer receives)."""

    src: str
    dst: str
    term: int


PeerFrame = Message | Forward | ForwardReply | ClusterOp | ClusterOpReply | Removed

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(PeerFrame)


def encode_frame(message: PeerFrame) -> bytes:
    return _encoder.encode(message)


def decode_frame(data: bytes) -> PeerFrame:
    message: PeerFrame = _decoder.decode(data)
    return message
