"""Secret fields of typed configs: a ``SecretStr`` field is encrypted at rest.

A schema marks a field secret the way Pydantic renders ``SecretStr``:
``{"type": "string", "format": "password", "writeOnly": true}`` (also inside ``anyOf``
for ``SecretStr | None``, and through ``$ref`` to ``$defs``). When a config bound to
such a schema is written, each secret field's value is sealed (AES-256-GCM under one
fresh data key per config version, wrapped by the key provider) and the stored value
holds :data:`PLACEHOLDER` in its place. The ciphertexts sit in the record's
``meta["sealed"]``, which no API response, event or watch stream carries, so every
read of the value is redacted unless it asks to reveal (``secrets:read``).

The associated data binds each ciphertext to the config's name, the version it was
sealed for and the field's JSON pointer: a ciphertext moved to another config, field
or version fails authentication. A key rotation re-wraps the data key (a new config
version with the same value); the sealed version stays the one bound at sealing, as
for whole secrets. Secret fields inside arrays are not supported (the schema is
refused).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aether_core.errors import BadRequest
from aether_core.secrets import envelope
from aether_core.secrets.errors import SecretIntegrityError

if TYPE_CHECKING:
    from aether_core.records import Record
    from aether_core.secrets.manager import SecretManager

#: What a secret field holds in every stored value, response and event.
PLACEHOLDER = "**********"
META = "sealed"
_AAD = b"aether-config-field/v1\x00"
_MISSING = object()

Path = tuple[str, ...]


class SealedFields(msgspec.Struct, frozen=True, kw_only=True):
    """``meta["sealed"]`` of a config record: one wrapped data key, a ciphertext per
    secret field (by JSON pointer)."""

    version: int
    key_provider: str
    key_version: str
    wrapped_key: str
    fields: dict[str, str]


# -- the schema side ---------------------------------------------------------------------


def _is_secret(node: dict[str, Any]) -> bool:
    return node.get("writeOnly") is True and node.get("format") == "password"


def _resolve(root: dict[str, Any], node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#/") or seen > 32:
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(
                target, dict) else None
        node, seen = target, seen + 1
    return node


def secret_paths(schema: dict[str, Any]) -> list[Path]:
    """The property paths a schema marks secret, sorted.

    :raises BadRequest: a secret field inside an array (not supported).
    """
    out: set[Path] = set()

    def walk(node: Any, path: Path, depth: int) -> None:
        node = _resolve(schema, node)
        if not isinstance(node, dict) or depth > 32:
            return
        if _is_secret(node):
            out.add(path)
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(key, []) or []:
                walk(branch, path, depth + 1)
        for name, child in (node.get("properties") or {}).items():
            walk(child, (*path, name), depth + 1)
        for key in ("items", "prefixItems", "additionalProperties"):
            child = node.get(key)
            children = child if isinstance(child, list) else [child]
            for item in children:
                if isinstance(item, dict) and _contains_secret(item, depth):
                    where = "/".join(path) or "the top level"
                    raise BadRequest(f"schema marks a secret field inside {key} at "
                                     f"{where}; secret fields must be object properties")

    def _contains_secret(node: Any, depth: int) -> bool:
        found: list[bool] = []

        def look(n: Any, d: int) -> None:
            n = _resolve(schema, n)
            if not isinstance(n, dict) or d > 32 or found:
                return
            if _is_secret(n):
                found.append(True)
                return
            for value in n.values():
                if isinstance(value, dict):
                    look(value, d + 1)
                elif isinstance(value, list):
                    for item in value:
                        look(item, d + 1)

        look(node, depth)
        return bool(found)

    walk(schema, (), 0)
    return sorted(out)


def pointer(path: Path) -> str:
    """RFC 6901 JSON pointer of a property path."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def unpointer(text: str) -> Path:
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in text.split("/")[1:])


def json_path(path: Path) -> str:
    """The ``$.a.b`` form that validation errors use."""
    return "$" + "".join(f".{p}" for p in path)


def get_at(value: Any, path: Path) -> Any:
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _set_at(value: Any, path: Path, new: Any) -> Any:
    """A copy of ``value`` with ``path`` set (containers on the way are copied)."""
    if not path:
        return new
    copy = dict(value)
    copy[path[0]] = _set_at(value[path[0]], path[1:], new)
    return copy


def present(value: Any, paths: list[Path]) -> list[Path]:
    """The secret paths that hold a value (``None`` counts as absent)."""
    return [p for p in paths if get_at(value, p) not in (_MISSING, None)]


def plaintexts(value: Any, paths: list[Path]) -> list[str]:
    """The secret values as text, to keep them out of error messages."""
    out = []
    for path in present(value, paths):
        found = get_at(value, path)
        out.append(found if isinstance(found, str) else msgspec.json.encode(found).decode())
    return [p for p in out if p]


def sealed_of(record: Record) -> SealedFields | None:
    raw = record.meta.get(META)
    if raw is None:
        return None
    try:
        return msgspec.convert(raw, SealedFields)
    except msgspec.ValidationError:
        raise SecretIntegrityError(
            f"config {record.name!r} version {record.version}: sealed fields are malformed; "
            "refused") from None


# -- sealing and opening -----------------------------------------------------------------


def associated_data(name: str, version: int, field: str) -> bytes:
    return _AAD + name.encode() + b"\x00" + str(version).encode() + b"\x00" + field.encode()


class FieldSealer:
    """Seals and opens the secret fields of configs with a :class:`SecretManager`'s key
    provider (and its data-key cache)."""

    def __init__(self, secrets: SecretManager) -> None:
        self.secrets = secrets

    async def seal(self, name: str, version: int, value: Any, paths: list[Path]
                   ) -> tuple[Any, SealedFields]:
        """``value`` with each present secret field replaced by :data:`PLACEHOLDER`, and
        the sealed fields."""
        from aether_core.secrets.manager import b64

        keys = self.secrets.keys
        data_key, key_version, wrapped = await keys.generate_data_key(envelope.DATA_KEY_BYTES)
        fields: dict[str, str] = {}
        redacted = value
        for path in present(value, paths):
            plaintext = get_at(value, path)
            if plaintext == PLACEHOLDER:
                raise BadRequest(
                    f"config {name!r}: {json_path(path)} holds the redaction placeholder, not "
                    "a value; send the secret itself (reads without secrets:read show the "
                    "placeholder)")
            field = pointer(path)
            nonce = os.urandom(envelope.NONCE_BYTES)
            ciphertext = nonce + AESGCM(data_key).encrypt(
                nonce, msgspec.json.encode(plaintext), associated_data(name, version, field))
            fields[field] = b64(ciphertext)
            redacted = _set_at(redacted, path, PLACEHOLDER)
        return redacted, SealedFields(version=version, key_provider=keys.name,
                                      key_version=key_version, wrapped_key=b64(wrapped),
                                      fields=fields)

    async def data_key(self, name: str, sealed: SealedFields) -> bytes:
        from aether_core.secrets.sealed import SealedVersion

        # The SecretManager's unwrap path (provider check, cache, integrity errors).
        return await self.secrets.data_key(name, SealedVersion(
            version=sealed.version, ciphertext="", key_provider=sealed.key_provider,
            key_version=sealed.key_version, wrapped_key=sealed.wrapped_key))

    async def open(self, record: Record) -> dict[str, Any]:
        """The plaintext of each sealed field of ``record``, by JSON pointer."""
        from aether_core.secrets.manager import _unb64

        sealed = sealed_of(record)
        if sealed is None:
            return {}
        data_key = await self.data_key(record.name, sealed)
        out: dict[str, Any] = {}
        for field, text in sealed.fields.items():
            raw = _unb64(text, record.name, sealed.version)
            if len(raw) < envelope.NONCE_BYTES + envelope.TAG_BYTES:
                raise SecretIntegrityError(
                    f"config {record.name!r} field {field}: ciphertext is truncated; refused")
            try:
                plaintext = AESGCM(data_key).decrypt(
                    raw[:envelope.NONCE_BYTES], raw[envelope.NONCE_BYTES:],
                    associated_data(record.name, sealed.version, field))
            except InvalidTag:
                raise SecretIntegrityError(
                    f"config {record.name!r} field {field}: ciphertext does not authenticate "
                    "(tampered with, or copied from another config, field or version); "
                    "refused") from None
            out[field] = msgspec.json.decode(plaintext)
        return out

    async def reveal(self, record: Record) -> Any:
        """``record.value`` with the plaintext in place of each placeholder."""
        value = record.value
        for field, plaintext in (await self.open(record)).items():
            path = unpointer(field)
            if get_at(value, path) is _MISSING:
                raise SecretIntegrityError(
                    f"config {record.name!r} version {record.version}: sealed field {field} "
                    "has no place in the value; refused")
            value = _set_at(value, path, plaintext)
        return value
