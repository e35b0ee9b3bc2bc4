"""Entry point ``admin``: registers the admin API service. Nothing happens at import."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_services(register: Register) -> None:
    from aether_admin.service import AdminService

    register(AdminService)
