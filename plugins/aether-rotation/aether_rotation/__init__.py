"""Secret rotation: schedules and hooks that change the real credential before promotion."""

from aether_rotation.hooks import PostgresPassword, RandomToken, RotationHook
from aether_rotation.rotate import RotationFailed, rotate_secret
from aether_rotation.service import RotationService

__all__ = [
    "PostgresPassword",
    "RandomToken",
    "RotationFailed",
    "RotationHook",
    "RotationService",
    "rotate_secret",
]
