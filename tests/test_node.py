"""A node builds what its manifest names, and a failed start leaves nothing running."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest

from aether_core import manifest
from aether_core.node import Node
from aether_core.plugins import hookimpl, make_plugins
from aether_core.services import Service

EVENTS: list[str] = []


class Recording(Service):
    name = "recording"

    async def start(self, node: Node) -> None:
        EVENTS.append(f"start {node.name} rev={await node.config.revision()}")

    async def stop(self) -> None:
        EVENTS.append("stop")


class Exploding(Service):
    name = "exploding"

    async def start(self, node: Node) -> None:
        raise RuntimeError("port in use")

    async def stop(self) -> None:
        EVENTS.append("stop exploding")


def _plugin() -> Any:
    module = types.ModuleType("test_services_plugin")

    @hookimpl
    def aether_register_services(register: Any) -> None:
        register(Recording)
        register(Exploding)

    module.aether_register_services = aether_register_services  # type: ignore[attr-defined]
    return module


def node_for(tmp_path: Path, services: list[str]) -> Node:
    entries = "".join(f'\n[[services]]\nuse = "{s}"\n' for s in services)
    path = tmp_path / "aether.toml"
    path.write_text(f'[node]\nname = "n1"\ndata_dir = "{tmp_path}/data"\n'
                    f'[storage]\nuse = "sqlite"\n[transport]\nuse = "local"\n{entries}')
    plugins = make_plugins(extra=[("services", _plugin())])
    return Node(manifest.resolve(manifest.read(path), plugins))


async def test_services_start_after_storage_and_stop_first(tmp_path: Path) -> None:
    EVENTS.clear()
    node = node_for(tmp_path, ["recording"])
    await node.start()
    await node.config.put("a", 1)
    await node.stop()
    assert EVENTS == ["start n1 rev=0", "stop"]
    assert (tmp_path / "data" / "aether.db").exists()


async def test_a_failed_start_stops_what_already_started(tmp_path: Path) -> None:
    EVENTS.clear()
    node = node_for(tmp_path, ["recording", "exploding"])
    with pytest.raises(RuntimeError, match="port in use"):
        await node.start()
    assert EVENTS == ["start n1 rev=0", "stop"]
    assert node.manager is None  # storage closed
