"""Entry point ``postgres`` in group ``aether``: registers :class:`PostgresStorage`."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_storage(register: Register) -> None:
    # Imported here so that loading the plugin module opens nothing and imports no driver.
    from aether_postgres.storage import PostgresStorage

    register(PostgresStorage)
