"""What storage keeps: versioned records, the writes that create them, and change events.

Storage is a versioned document store. Each document is identified by ``(kind, name)``
— kinds are ``config``, ``schema``, ``user``, ``secret`` … — and every write appends a
new :class:`Record` with the next version of that document and the next global
revision. The meaning of each kind lives in the kernel's state machine, not in the
storage backends, so a new kind never needs a backend change.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

#: Kinds whose values may travel in change events. Everything else (secrets, users)
#: is announced by name and version only, so events never carry sensitive data.
PUBLIC_KINDS = frozenset({"config", "schema"})


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One version of one document. Immutable once written."""

    kind: str
    name: str
    version: int
    revision: int
    value: Any = None
    deleted: bool = False
    author: str = ""
    comment: str = ""
    timestamp: float = 0.0
    meta: dict[str, Any] = msgspec.field(default_factory=dict)


class Write(msgspec.Struct, frozen=True, kw_only=True):
    """A request to append the next version of ``(kind, name)``.

    ``expected_version`` is the version the document must have at commit time
    (0: it must not exist yet). Storage checks it inside the commit transaction and
    writes version ``expected_version + 1``.
    """

    kind: str
    name: str
    expected_version: int
    value: Any = None
    deleted: bool = False
    author: str = ""
    comment: str = ""
    timestamp: float = 0.0
    meta: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_record(self, revision: int) -> Record:
        return Record(
            kind=self.kind,
            name=self.name,
            version=self.expected_version + 1,
            revision=revision,
            value=self.value,
            deleted=self.deleted,
            author=self.author,
            comment=self.comment,
            timestamp=self.timestamp,
            meta=self.meta,
        )


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """A deterministic refusal: the same command on the same state is refused on every node."""

    code: Literal["conflict", "not-found", "invalid"]
    detail: str
    kind: str = ""
    name: str = ""
    expected_version: int = 0
    current_version: int = 0


class CommitResult(msgspec.Struct, kw_only=True):
    """What applying one command did: the records written, or why nothing was."""

    records: list[Record] = msgspec.field(default_factory=list)
    rejection: Rejection | None = None
    #: True when the log index had already been applied (a replay after a crash).
    replayed: bool = False


class ChangeEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One committed change, as watchers see it. ``value`` is ``None`` for secret kinds."""

    revision: int
    type: Literal["put", "delete"]
    kind: str
    name: str
    version: int
    author: str = ""
    comment: str = ""
    timestamp: float = 0.0
    value: Any = None

    @classmethod
    def from_record(cls, record: Record) -> ChangeEvent:
        return cls(
            revision=record.revision,
            type="delete" if record.deleted else "put",
            kind=record.kind,
            name=record.name,
            version=record.version,
            author=record.author,
            comment=record.comment,
            timestamp=record.timestamp,
            value=record.value if record.kind in PUBLIC_KINDS and not record.deleted else None,
        )


class Page(msgspec.Struct, kw_only=True):
    """One page of a listing; pass ``next_cursor`` back to get the next one."""

    items: list[Record]
    next_cursor: str | None = None
