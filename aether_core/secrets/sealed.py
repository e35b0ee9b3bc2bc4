"""What a ``secret`` record holds, and the label transitions the state machine applies.

A secret is one document of kind ``secret``. Each stored version of that document is
the secret's whole state: the sealed values that carry a staging label and which
label each carries. Values are ciphertext and wrapped data keys only (base64 text, so
every storage backend keeps them as plain JSON); the plaintext never reaches a
command, the Raft log, storage or an event.

Labels follow AWS Secrets Manager: a new value is staged as ``pending``; promoting it
makes it ``current`` and the old current ``previous`` (clients that ask receive both
until ``previous_until``, the overlap window); rollback swaps ``current`` and
``previous`` back. A value that loses its last label is dropped from the head.

The functions here are pure: same state and command in, same state out, so every node
of a cluster applies a command identically.
"""

from __future__ import annotations

import msgspec

SECRET = "secret"
KEYRING = "secret-keyring"
KEYRING_NAME = "keyring"
LABELS = ("current", "previous", "pending")


class SealedVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One secret version: the value sealed under its own data key, and that data key
    wrapped by the key provider."""

    version: int
    ciphertext: str
    key_provider: str
    key_version: str
    wrapped_key: str
    created: float = 0.0
    author: str = ""
    comment: str = ""


class RewrappedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A data key wrapped again under another key version; the ciphertext is untouched."""

    version: int
    from_key_version: str
    key_provider: str
    key_version: str
    wrapped_key: str


class SecretState(msgspec.Struct, kw_only=True):
    versions: list[SealedVersion] = msgspec.field(default_factory=list)
    current: int | None = None
    previous: int | None = None
    pending: int | None = None
    next_version: int = 1
    #: Until when ``previous`` is handed to clients beside ``current``.
    previous_until: float | None = None
    #: The rotation window: ``pending`` must be promoted before this time.
    pending_until: float | None = None

    def find(self, version: int | None) -> SealedVersion | None:
        return next((v for v in self.versions if v.version == version), None)

    def labels_of(self, version: int) -> list[str]:
        return [label for label in LABELS if getattr(self, label) == version]


class KeyRotation(msgspec.Struct, kw_only=True):
    id: str
    key_provider: str
    target: str
    started: float = 0.0
    #: Secrets with names ``<= cursor`` have been re-wrapped.
    cursor: str = ""
    rewrapped: int = 0
    finished: float | None = None
    retired: list[str] = msgspec.field(default_factory=list)


class KeyringState(msgspec.Struct, kw_only=True):
    rotation: KeyRotation | None = None
    last: KeyRotation | None = None


class Refused(Exception):
    """A transition the state does not allow; the state machine turns it into a
    deterministic rejection."""

    def __init__(self, detail: str, code: str = "invalid") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


def decode_state(value: object) -> SecretState:
    return msgspec.convert(value, SecretState)


def encode_state(state: SecretState) -> dict[str, object]:
    out: dict[str, object] = msgspec.to_builtins(state)
    return out


def _prune(state: SecretState) -> SecretState:
    keep = {state.current, state.previous, state.pending}
    state.versions = [v for v in state.versions if v.version in keep]
    if state.previous is None:
        state.previous_until = None
    if state.pending is None:
        state.pending_until = None
    return state


def _check_new(state: SecretState, name: str, sealed: SealedVersion) -> None:
    # The version was chosen (and bound into the ciphertext) before proposing; a
    # concurrent writer that took it first makes this one stale.
    if sealed.version != state.next_version:
        raise Refused(
            f"secret {name!r}: sealed as version {sealed.version}, but the next version "
            f"is {state.next_version}", code="conflict",
        )


def put(state: SecretState, name: str, sealed: SealedVersion, now: float,
        overlap: float) -> SecretState:
    """A new value that is ``current`` at once; the old current becomes ``previous``."""
    _check_new(state, name, sealed)
    state.versions.append(sealed)
    state.previous, state.current = state.current, sealed.version
    state.previous_until = now + overlap if state.previous is not None else None
    state.next_version += 1
    return _prune(state)


def stage(state: SecretState, name: str, sealed: SealedVersion, now: float,
          window: float | None) -> SecretState:
    """A new ``pending`` value (replacing an earlier pending one)."""
    _check_new(state, name, sealed)
    state.versions.append(sealed)
    state.pending = sealed.version
    state.pending_until = now + window if window is not None else None
    state.next_version += 1
    return _prune(state)


def promote(state: SecretState, name: str, version: int, now: float,
            overlap: float) -> SecretState:
    if state.pending != version:
        what = f"version {state.pending} is" if state.pending is not None else "no version is"
        raise Refused(f"secret {name!r}: version {version} is not pending ({what} pending); "
                      "only a pending version can be promoted")
    if state.pending_until is not None and now > state.pending_until:
        raise Refused(
            f"secret {name!r}: the rotation window of version {version} closed at "
            f"{state.pending_until:.0f} (now {now:.0f}); stage the value again"
        )
    state.previous, state.current, state.pending = state.current, version, None
    state.previous_until = now + overlap if state.previous is not None else None
    return _prune(state)


def rollback(state: SecretState, name: str, now: float, overlap: float) -> SecretState:
    """``previous`` becomes ``current`` again (and the rolled-back value ``previous``)."""
    if state.previous is None:
        raise Refused(f"secret {name!r} has no previous version to roll back to")
    state.current, state.previous = state.previous, state.current
    state.previous_until = now + overlap
    return _prune(state)


def rewrap(state: SecretState, name: str, keys: list[RewrappedKey]) -> SecretState:
    by_version = {k.version: k for k in keys}
    versions: list[SealedVersion] = []
    for sealed in state.versions:
        new = by_version.pop(sealed.version, None)
        if new is None:
            versions.append(sealed)
            continue
        if sealed.key_version != new.from_key_version:
            raise Refused(
                f"secret {name!r} version {sealed.version} is wrapped under key version "
                f"{sealed.key_version!r}, not {new.from_key_version!r}", code="conflict",
            )
        versions.append(msgspec.structs.replace(
            sealed, key_provider=new.key_provider, key_version=new.key_version,
            wrapped_key=new.wrapped_key,
        ))
    if by_version:
        raise Refused(f"secret {name!r} has no version {min(by_version)} to re-wrap",
                      code="conflict")
    state.versions = versions
    return state
