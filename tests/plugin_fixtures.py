"""Fake installed plugins: a module plus a dist-info with an ``aether`` entry point."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def install_fake_plugin(site: Path, name: str, source: str, module: str | None = None) -> str:
    """Write ``module`` (default ``fake_<name>``) and a dist-info naming it as plugin
    ``name``; return the module name. ``site`` must be on ``sys.path``."""
    module = module or f"fake_{name.replace('-', '_')}"
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    dist = site / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[aether]\n{name} = {module}\n")
    sys.modules.pop(module, None)
    return module


STORAGE_PLUGIN = """
    from aether_core.plugins import hookimpl
    from aether_core.storage.memory import MemoryStorage, MemorySettings

    class Settings(MemorySettings):
        pool_size: int = 4

    class {cls}(MemoryStorage):
        name = {provider!r}
        Settings = Settings

        @classmethod
        def from_settings(cls, settings, node):
            return cls()

    @hookimpl
    def aether_register_storage(register):
        register({cls})
"""


def storage_plugin(provider: str, cls: str = "FakeStorage") -> str:
    return STORAGE_PLUGIN.format(provider=provider, cls=cls)
