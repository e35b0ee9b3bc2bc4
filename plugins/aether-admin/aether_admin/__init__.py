"""Aether's admin HTTP API: a Litestar app over a ConfigManager, served by the ``admin``
service or embedded in any ASGI deployment with :func:`create_app`."""

from aether_admin.app import create_app
from aether_admin.settings import AdminSettings

__all__ = ["AdminSettings", "create_app"]
