"""One rotation: stage → apply → test → promote.

The new value is staged (encrypted, ``pending``) *before* the hook changes the real
credential, so a crash between the two never loses the password now in force: it is
the pending value, and the next run stages a fresh one and applies it again. A hook
failure stops the rotation with nothing promoted; clients keep using ``current``.
"""

from __future__ import annotations

import structlog

from aether_core.errors import AetherError, NotFound
from aether_core.secrets.manager import SecretInfo, SecretManager
from aether_rotation.hooks import RotationHook

log = structlog.get_logger("aether.rotation")


class RotationFailed(AetherError):
    """A rotation hook refused; the secret's ``current`` value is unchanged."""

    status, code, title = 502, "rotation-failed", "Secret rotation failed"


async def rotate_secret(secrets: SecretManager, name: str, hook: RotationHook, *,
                        author: str = "rotation", window: float | None = 3600.0
                        ) -> SecretInfo:
    try:
        current = (await secrets.reveal(name)).value
    except NotFound:
        current = None
    new = await hook.generate(current)
    staged = await secrets.stage(name, new, window=window, author=author,
                                 comment=f"rotation by {hook.name}")
    version = staged.pending
    assert version is not None
    step = "apply"
    try:
        await hook.apply(new, current)
        step = "test"
        await hook.test(new)
    except Exception as exc:
        # The type, and messages hooks make themselves; a driver's message might quote
        # a value.
        reason = str(exc) if isinstance(exc, LookupError | PermissionError) else ""
        log.warning("secret rotation failed", secret=name, hook=hook.name, step=step,
                    error=type(exc).__name__)
        raise RotationFailed(
            f"rotation of secret {name!r} stopped at {step} ({hook.name}): "
            f"{type(exc).__name__}{': ' + reason if reason else ''}; version {version} "
            "stays pending, current is unchanged"
        ) from None
    promoted = await secrets.promote(name, version, author=author,
                                     comment=f"rotation by {hook.name}")
    log.info("secret rotated", secret=name, hook=hook.name, version=version)
    return promoted
