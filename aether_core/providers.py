"""What every provider class has: a name, a settings model, a way to be built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import msgspec
from pydantic import BaseModel, ConfigDict


class ProviderSettings(BaseModel):
    """Base of a provider's manifest settings: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class NodeInfo(msgspec.Struct, kw_only=True):
    """What a provider may know about the node that builds it."""

    name: str = "node-1"
    data_dir: Path = Path(".aether")
    manifest_path: Path | None = None


def build(cls: type[Any], settings: BaseModel, node: NodeInfo) -> Any:
    """Build a provider: ``cls.from_settings(settings, node)`` when it has one, else
    ``cls(**settings)``."""
    factory = getattr(cls, "from_settings", None)
    if factory is not None:
        return factory(settings, node)
    return cls(**{key: getattr(settings, key) for key in type(settings).model_fields})


class Provider:
    """Optional mixin naming the class attributes the kernel reads from a provider."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]] = ProviderSettings

    @classmethod
    def from_settings(cls, settings: BaseModel, node: NodeInfo) -> Self:
        return cls(**{key: getattr(settings, key) for key in type(settings).model_fields})
