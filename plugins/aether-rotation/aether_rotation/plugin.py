"""Entry point ``secret-rotation``: registers the rotation scheduler service."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_services(register: Register) -> None:
    from aether_rotation.service import RotationService

    register(RotationService)
