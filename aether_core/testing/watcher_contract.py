"""The watcher contract suite. Subclass :class:`WatcherContract` and provide:

* ``watcher_class`` — a fixture returning the :class:`~aether_core.watch.Watcher` class
  (installed as an entry point in group ``aether``, so a manifest can name it);
* ``watcher_settings`` — a fixture returning the ``[[watchers]]`` keys (without ``use``)
  that point the watcher at a destination the test can look at;
* :meth:`WatcherContract.observe` — what that destination holds now, as
  ``(config name, value)`` pairs in the order it received them.

A destination that keeps every change (a webhook receiver, a log) sets
``keeps_every_change = True`` and is held to "every change after start, once, in
order"; one that keeps only the latest state (a rendered file) sets it to ``False``
and is held to "it ends up showing the last committed value".

Every test builds a real node from a manifest (memory storage, local transport), so
the settings model, ``from_settings``, ``start``, delivery through the watch hub and
``close`` are all exercised the way ``aether up`` would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from aether_core.errors import ConfigurationError
from aether_core.manifest import load
from aether_core.node import Node
from aether_core.records import ChangeEvent
from aether_core.watch import Watcher, WatcherSettings

#: Configs the kit writes; a watcher under test must be pointed at this prefix.
PREFIX = "contract/"
NAME = "contract/app"


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (strings, numbers, booleans, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        # A JSON string is a valid TOML basic string (same escapes).
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def write_manifest(path: Path, use: str | None, settings: dict[str, Any], *,
                   storage: str = "memory") -> Path:
    """Write a manifest with one watcher (none if ``use`` is None) to ``path``; the
    node's data directory is ``data`` beside it. Settings are written as a manifest
    author would, so ``${env:…}`` references are interpolated by the kernel."""
    data_dir = toml_value(path.parent.absolute() / "data")
    lines = ["[node]", 'name = "contract"', f"data_dir = {data_dir}", "",
             "[storage]", f"use = {toml_value(storage)}", "",
             "[transport]", 'use = "local"', ""]
    if use is not None:
        lines += ["[[watchers]]", f"use = {toml_value(use)}"]
        lines += [f"{json.dumps(key)} = {toml_value(value)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class WatcherContract:
    """Every watcher passes these tests unchanged."""

    #: ``False`` for destinations that keep only the latest state (see the module doc).
    keeps_every_change: ClassVar[bool] = True
    #: Seconds a change may take to reach the destination.
    delivery_timeout: ClassVar[float] = 10.0

    @pytest.fixture
    def watcher_class(self) -> type[Watcher]:
        pytest.fail("a WatcherContract subclass must provide a watcher_class fixture")

    @pytest.fixture
    def watcher_settings(self) -> dict[str, Any]:
        pytest.fail("a WatcherContract subclass must provide a watcher_settings fixture")

    async def observe(self, watcher_settings: dict[str, Any]) -> list[tuple[str, Any]]:
        """What the destination holds now: ``(name, value)`` pairs, oldest first."""
        pytest.fail("a WatcherContract subclass must implement observe()")

    @pytest.fixture
    async def node(
        self, watcher_class: type[Watcher], watcher_settings: dict[str, Any], tmp_path: Path
    ) -> AsyncIterator[Node]:
        node = Node(load(write_manifest(tmp_path / "aether.toml", watcher_class.name,
                                        watcher_settings)))
        await node.start()
        try:
            yield node
        finally:
            await node.stop()

    async def _until(self, watcher_settings: dict[str, Any], want: Any) -> list[tuple[str, Any]]:
        """Poll the destination until ``want(observed)`` holds; the last observation."""
        deadline = time.monotonic() + self.delivery_timeout
        seen = await self.observe(watcher_settings)
        while not want(seen):
            if time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.05)
            seen = await self.observe(watcher_settings)
        return seen

    # -- the class ---------------------------------------------------------------------

    def test_the_class_is_named_and_has_a_strict_settings_model(
        self, watcher_class: type[Watcher], watcher_settings: dict[str, Any]
    ) -> None:
        assert issubclass(watcher_class, Watcher)
        assert isinstance(watcher_class.name, str) and watcher_class.name
        assert issubclass(watcher_class.Settings, WatcherSettings)
        watcher_class.Settings.model_validate(watcher_settings)
        with pytest.raises(ValidationError, match="no_such_key"):
            watcher_class.Settings.model_validate({**watcher_settings, "no_such_key": 1})

    def test_a_manifest_with_an_unknown_key_names_it_and_builds_nothing(
        self, watcher_class: type[Watcher], watcher_settings: dict[str, Any], tmp_path: Path
    ) -> None:
        path = write_manifest(tmp_path / "aether.toml", watcher_class.name,
                              {**watcher_settings, "no_such_key": 1})
        with pytest.raises(ConfigurationError,
                           match=r"aether.toml: \[\[watchers\]\] #1 no_such_key: unknown key"):
            load(path)
        assert not (tmp_path / "data").exists()

    # -- delivery ----------------------------------------------------------------------

    async def test_changes_reach_the_destination_in_commit_order(
        self, node: Node, watcher_settings: dict[str, Any]
    ) -> None:
        values = [{"seq": n, "text": f"value {n} ✓"} for n in range(1, 6)]
        for value in values:
            await node.config.put(NAME, value)
        if self.keeps_every_change:
            expected = [(NAME, value) for value in values]
            seen = await self._until(watcher_settings, lambda s: len(s) >= len(expected))
            assert seen == expected
        else:
            seen = await self._until(watcher_settings, lambda s: s and s[-1] == (NAME, values[-1]))
            assert seen and seen[-1] == (NAME, values[-1])

    async def test_changes_outside_the_prefix_and_before_start_are_not_delivered(
        self, watcher_class: type[Watcher], watcher_settings: dict[str, Any], tmp_path: Path
    ) -> None:
        # A first node writes while no watcher runs: a sqlite store keeps it for the next.
        path = tmp_path / "aether.toml"
        first = Node(load(write_manifest(path, None, {}, storage="sqlite")))
        await first.start()
        try:
            await first.config.put(NAME, {"seq": 0})
        finally:
            await first.stop()
        node = Node(load(write_manifest(path, watcher_class.name, watcher_settings,
                                        storage="sqlite")))
        await node.start()
        try:
            await node.config.put("elsewhere/app", {"seq": -1})
            await node.config.put(NAME, {"seq": 1})
            seen = await self._until(watcher_settings, lambda s: (NAME, {"seq": 1}) in s)
        finally:
            await node.stop()
        assert (NAME, {"seq": 1}) in seen
        assert (NAME, {"seq": 0}) not in seen
        assert all(name.startswith(PREFIX) for name, _ in seen)
        if self.keeps_every_change:
            assert seen == [(NAME, {"seq": 1})]

    async def test_deletes_and_secret_events_are_delivered_without_error(
        self, node: Node
    ) -> None:
        [watcher] = node.watchers
        for event in (
            ChangeEvent(revision=10**6, type="delete", kind="config", name=NAME, version=9),
            ChangeEvent(revision=10**6 + 1, type="put", kind="secret", name=PREFIX + "pw",
                        version=1, value=None),
        ):
            await asyncio.wait_for(watcher.deliver(event), self.delivery_timeout)

    async def test_close_is_idempotent(self, node: Node) -> None:
        [watcher] = node.watchers
        await watcher.close()
        await watcher.close()
