"""What the API answers with, as plain typed objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

M = TypeVar("M")


@dataclass(frozen=True)
class ConfigRecord:
    """One version of a config (``GET /configs/{name}``)."""

    name: str
    version: int
    revision: int
    value: Any
    author: str = ""
    comment: str = ""
    timestamp: float = 0.0
    schema: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfigRecord:
        return cls(name=data["name"], version=int(data["version"]),
                   revision=int(data["revision"]), value=data.get("value"),
                   author=data.get("author", ""), comment=data.get("comment", ""),
                   timestamp=float(data.get("timestamp", 0.0)), schema=data.get("schema"))


@dataclass(frozen=True)
class VersionInfo:
    """A version's metadata (``GET /configs/{name}/versions``)."""

    version: int
    revision: int
    author: str
    timestamp: float
    comment: str
    deleted: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VersionInfo:
        return cls(version=int(data["version"]), revision=int(data["revision"]),
                   author=data.get("author", ""), timestamp=float(data.get("timestamp", 0)),
                   comment=data.get("comment", ""), deleted=bool(data.get("deleted")))


@dataclass(frozen=True)
class WatchEvent:
    """One change, as ``GET /watch`` streams it; ``revision`` orders all changes."""

    revision: int
    type: str
    kind: str
    name: str
    version: int
    value: Any = None
    author: str = ""
    comment: str = ""
    timestamp: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WatchEvent:
        return cls(revision=int(data["revision"]), type=data["type"], kind=data["kind"],
                   name=data["name"], version=int(data["version"]), value=data.get("value"),
                   author=data.get("author", ""), comment=data.get("comment", ""),
                   timestamp=float(data.get("timestamp", 0.0)))

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision, "type": self.type, "kind": self.kind,
                "name": self.name, "version": self.version, "value": self.value,
                "author": self.author, "comment": self.comment, "timestamp": self.timestamp}


@dataclass(frozen=True)
class Change(Generic[M]):
    """What an ``on_change`` callback receives: the new typed value and the one it
    replaced."""

    name: str
    version: int
    revision: int
    value: M
    previous: M | None = field(default=None)
