"""What Raft nodes say to each other, and what a log holds: msgspec Structs.

Messages are a tagged union so that the wire codec of the network transport is one
``msgspec.msgpack`` encoder/decoder pair and an unknown tag is a decode error, never a
silently ignored message. Every message carries the sender's term.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec


class EntryKind(IntEnum):
    NORMAL = 0  #: ``data`` is ``aether_core.commands.encode(command)``
    NOOP = 1  #: the entry a new leader appends to commit the entries of earlier terms
    CONF = 2  #: ``data`` is an encoded :class:`ConfState`: the whole new configuration


class Entry(msgspec.Struct, frozen=True, array_like=True):
    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


class ConfState(msgspec.Struct, frozen=True, array_like=True):
    """A whole cluster configuration: voters decide, learners only receive the log."""

    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    #: ``(name, "host:port")`` of members added at run time (``aether cluster add``), so
    #: every node, and any later leader, can reach them; the founders' addresses come
    #: from each node's manifest. Last and defaulted: older encodings still decode.
    addresses: tuple[tuple[str, str], ...] = ()

    def members(self) -> tuple[str, ...]:
        return self.voters + self.learners


class SnapshotMeta(msgspec.Struct, frozen=True, array_like=True):
    index: int
    term: int
    conf: ConfState


class Snapshot(msgspec.Struct, frozen=True):
    meta: SnapshotMeta
    data: bytes


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="t"):
    src: str
    dst: str
    term: int


class VoteRequest(_Message, frozen=True, tag="vote"):
    """``pre`` asks "would you vote for me?" without anyone changing term (pre-vote)."""

    last_index: int
    last_term: int
    pre: bool = False
    #: Set when a leader handed over (TimeoutNow): voters skip the leader-lease check.
    transfer: bool = False


class VoteResponse(_Message, frozen=True, tag="vote_resp"):
    granted: bool
    pre: bool = False


class AppendEntries(_Message, frozen=True, tag="app"):
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int


class AppendResponse(_Message, frozen=True, tag="app_resp"):
    """On success ``index`` is the follower's last matching index; on a rejection,
    ``index`` is the rejected ``prev_index`` and (hint_index, hint_term) tell the leader
    where the follower's log may match, so it skips a whole term per round trip."""

    success: bool
    index: int
    hint_index: int = 0
    hint_term: int = 0


class Heartbeat(_Message, frozen=True, tag="hb"):
    commit: int
    #: Read-index context: acknowledgements of a context confirm leadership for it.
    ctx: int = 0


class HeartbeatResponse(_Message, frozen=True, tag="hb_resp"):
    ctx: int = 0


class InstallSnapshot(_Message, frozen=True, tag="snap"):
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool


class SnapshotResponse(_Message, frozen=True, tag="snap_resp"):
    """``offset``: the bytes received so far (where the next chunk starts);
    ``done``: the snapshot is installed and the follower's log ends at ``index``."""

    index: int
    offset: int
    done: bool


class TimeoutNow(_Message, frozen=True, tag="timeout_now"):
    """Leader transfer: start an election now, without pre-vote."""


class ReadIndexRequest(_Message, frozen=True, tag="read"):
    """A follower asks the leader for a read index on behalf of a client."""

    ctx: int


class ReadIndexResponse(_Message, frozen=True, tag="read_resp"):
    ctx: int
    index: int
    ok: bool


Message = (
    VoteRequest
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | SnapshotResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
)

_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(Message)
_conf_decoder = msgspec.msgpack.Decoder(ConfState)


def encode_message(message: Message) -> bytes:
    return _encoder.encode(message)


def decode_message(data: bytes) -> Message:
    message: Message = _message_decoder.decode(data)
    return message


def encode_conf(conf: ConfState) -> bytes:
    return _encoder.encode(conf)


def decode_conf(data: bytes) -> ConfState:
    conf: ConfState = _conf_decoder.decode(data)
    return conf
