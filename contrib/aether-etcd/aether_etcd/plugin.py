"""Entry point ``etcd``: registers :class:`~aether_etcd.provider.EtcdStorage`.

A plugin module does nothing at import time but define hooks: the provider module is
imported only when the kernel collects the plugin.
"""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_storage(register: Register) -> None:
    from aether_etcd.provider import EtcdStorage

    register(EtcdStorage)
