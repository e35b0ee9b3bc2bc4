"""Entry point ``webhook``: registers :class:`~aether_webhook.watcher.WebhookWatcher`."""

from __future__ import annotations

from aether_core.hookspecs import Register
from aether_core.plugins import hookimpl


@hookimpl
def aether_register_watchers(register: Register) -> None:
    from aether_webhook.watcher import WebhookWatcher

    register(WebhookWatcher)
