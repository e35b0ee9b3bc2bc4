"""Every Aether hook, in one place. Each docstring is the hook's contract.

Hooks are cheap, synchronous factories (pluggy is synchronous): a plugin *registers
provider classes* and the objects the kernel builds from them do the async work. A
plugin module must do nothing at import time beyond defining its hook implementations.

Implement a hook with the marker from :mod:`aether_core.plugins`::

    from aether_core.plugins import hookimpl

    @hookimpl
    def aether_register_storage(register):
        register(RedisStorage)

and expose the module as an entry point in group ``aether``, named after the provider
(``redis = "aether_redis.plugin"``): the kernel loads a plugin when the manifest names
one of its providers, never merely because it is installed.

All hooks are new in Aether 0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from aether_core.node import Node

hookspec = pluggy.HookspecMarker("aether")

#: The callback passed to every ``aether_register_*`` hook: call it once per provider
#: class. The class's ``name`` attribute is the name the manifest uses with ``use``.
Register = Callable[[type[Any]], None]

# ---------------------------------------------------------------------------------
# Providers
# ---------------------------------------------------------------------------------


@hookspec
def aether_register_storage(register: Register) -> None:
    """Register storage provider classes.

    :param register: call ``register(cls)`` for each class. ``cls`` subclasses
        :class:`aether_core.storage.base.Storage`, has a unique ``name`` and a
        ``Settings`` pydantic model for its ``[storage]`` manifest section, and passes
        the contract suite in :mod:`aether_core.testing.contract`.

    Called once per plugin manager, when the plugins are collected; two providers with
    one name (across all plugins) stop start-up. Must not open connections or files.
    """


@hookspec
def aether_register_transport(register: Register) -> None:
    """Register transport provider classes (:class:`aether_core.transport.base.Transport`).

    :param register: call ``register(cls)`` for each class; ``cls.name`` is the value of
        ``[transport] use``. A transport that cannot run over a shared store sets
        ``supports_shared_storage = False`` and the kernel refuses that combination.
        One that fsyncs each command to a log of its own and replays it after a crash
        sets ``keeps_durable_log = True``; storage then need not fsync each commit.

    Called once when plugins are collected. Must not bind sockets.
    """


@hookspec
def aether_register_auth(register: Register) -> None:
    """Register auth provider classes (:class:`aether_core.auth.base.Auth`).

    :param register: call ``register(cls)``; ``cls.name`` is the value of ``[auth] use``.

    Called once when plugins are collected.
    """


@hookspec
def aether_register_watchers(register: Register) -> None:
    """Register watcher classes (:class:`aether_core.watch.Watcher`).

    :param register: call ``register(cls)``; ``cls.name`` is the value of
        ``[[watchers]] use``. A manifest may configure one watcher class many times.

    Watchers receive events after commit, in revision order; they may be slow or fail
    without delaying commits.
    """


@hookspec
def aether_register_services(register: Register) -> None:
    """Register service classes (:class:`aether_core.services.Service`).

    :param register: call ``register(cls)``; ``cls.name`` is the value of
        ``[[services]] use`` (``admin`` for the HTTP API, …).

    Called once when plugins are collected.
    """


@hookspec
def aether_register_key_providers(register: Register) -> None:
    """Register key-provider classes (:class:`aether_core.services.KeyProvider`).

    :param register: call ``register(cls)``; ``cls.name`` is the value of
        ``[secrets] key_provider``.

    Called once when plugins are collected.
    """


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


@hookspec
def aether_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``aether`` command line.

    :param cli: the root ``click`` group; call ``cli.add_command(...)``.

    Called when the CLI starts, for the built-ins and the plugins the manifest names.
    A command that fails prints one line and exits non-zero (raise
    :class:`aether_core.errors.AetherError` or ``click.ClickException``).
    """


# ---------------------------------------------------------------------------------
# Node life cycle
# ---------------------------------------------------------------------------------


@hookspec
def aether_startup(node: Node) -> Any:
    """Called once the node is serving: storage open, transport started, services up.

    :param node: the running :class:`aether_core.node.Node`.
    :returns: ``None`` or an awaitable, which the kernel awaits before it reports the
        node as started. An exception stops start-up.
    """


@hookspec
def aether_shutdown(node: Node) -> Any:
    """Called once when the node stops, before services, transport and storage close.

    :returns: ``None`` or an awaitable, which the kernel awaits. Exceptions are logged
        and do not stop the shutdown.
    """
