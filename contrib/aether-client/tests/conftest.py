"""One ``aether up`` process shared by the client tests that do not restart it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aether_client_node import Node


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    server = Node(Path(tmp_path_factory.mktemp("client-node"))).start()
    try:
        yield server
    finally:
        server.stop()
