"""ETags, If-Match and record shapes shared by the controllers."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

from aether_admin.bodies import ConfigOut
from aether_admin.edge import reserved_suffix
from aether_admin.problems import PreconditionFailed
from aether_core.errors import BadRequest
from aether_core.records import Record

_ETAG = re.compile(r'^"(\d{1,18})"$|^(\d{1,18})$')
ANY = -1


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def if_match(request: Request[Any, Any, Any]) -> int | None:
    """The version ``If-Match`` names: ``None`` without the header, :data:`ANY` for ``*``."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    header = header.strip()
    if header == "*":
        return ANY
    match = _ETAG.match(header)
    if match is None:
        raise BadRequest(f'If-Match must be a version ETag such as "3" or *, not {header!r}')
    return int(match.group(1) or match.group(2))


def precondition(current: int, expected: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"If-Match names version {expected}, the current version is {current}"
        if expected != ANY else "If-Match: * but the resource does not exist",
        current_version=current, expected_version=expected,
    )


def creatable(name: str, what: str = "config") -> None:
    """Refuse names the API could not address again: URL paths drop ``.``/``..``
    segments, and a trailing sub-resource word names the sub-resource."""
    if any(segment in (".", "..") for segment in name.split("/")):
        raise BadRequest(f"{what} name {name!r}: '.' and '..' are not allowed as segments")
    word = reserved_suffix(name)
    if word is not None:
        raise BadRequest(
            f"{what} name {name!r} cannot end in '/{word}': that path is the {word} "
            "sub-resource"
        )


def config_out(record: Record) -> ConfigOut:
    return ConfigOut(
        name=record.name, version=record.version, revision=record.revision,
        value=record.value, author=record.author, timestamp=record.timestamp,
        comment=record.comment, schema=record.meta.get("schema"),
    )
