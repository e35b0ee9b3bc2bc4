"""``[[services]] use = "secret-rotation"``: rotate secrets on a schedule.

```toml
[[services]]
use = "secret-rotation"
check_every = 60
schedules = [
  { secret = "billing/db-password", every_days = 30, hook = "postgres-password",
    role = "billing", admin_dsn = "${env:AETHER_PG_ADMIN_DSN}" },
  { secret = "billing/api-token", every_days = 7 },
]
```

Each check rotates the secrets whose ``current`` version is older than their period
(a secret that does not exist yet is created). A failed rotation is logged (no value)
and tried again at the next check; ``current`` stays in force meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from aether_core.errors import AetherError, ConfigurationError, NotFound
from aether_core.providers import NodeInfo, ProviderSettings
from aether_core.secrets.manager import SecretManager
from aether_core.services import Service
from aether_rotation.hooks import PostgresPassword, RandomToken, RotationHook
from aether_rotation.rotate import rotate_secret

if TYPE_CHECKING:
    from aether_core.node import Node

log = structlog.get_logger("aether.rotation")
DAY = 86_400.0


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str = Field(min_length=1, max_length=256)
    every_days: float | None = Field(default=None, gt=0)
    #: For tests and very short-lived credentials.
    every_seconds: float | None = Field(default=None, gt=0)
    hook: Literal["random", "postgres-password"] = "random"
    length: int = Field(default=32, ge=16, le=256)
    role: str | None = None
    admin_dsn: SecretStr | None = None
    test_dsn: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Schedule:
        if (self.every_days is None) == (self.every_seconds is None):
            raise ValueError("give every_days (or every_seconds), exactly one")
        if self.hook == "postgres-password" and (self.role is None or self.admin_dsn is None):
            raise ValueError('hook = "postgres-password" needs role and admin_dsn')
        return self

    @property
    def period(self) -> float:
        return self.every_seconds if self.every_seconds is not None else (
            (self.every_days or 0) * DAY)

    def make_hook(self) -> RotationHook:
        if self.hook == "postgres-password":
            assert self.role is not None and self.admin_dsn is not None
            return PostgresPassword(self.admin_dsn.get_secret_value(), self.role,
                                    test_dsn=self.test_dsn, length=self.length)
        return RandomToken(self.length)


class RotationSettings(ProviderSettings):
    schedules: list[Schedule] = Field(min_length=1)
    check_every: float = Field(default=60.0, gt=0, le=DAY)


class RotationService(Service):
    name = "secret-rotation"
    Settings = RotationSettings

    def __init__(self, settings: RotationSettings) -> None:
        self.settings = settings
        self.rotations = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: RotationSettings, node: NodeInfo) -> RotationService:
        return cls(settings)

    async def start(self, node: Node) -> None:
        if node.secrets is None:
            raise ConfigurationError('[[services]] use = "secret-rotation" needs secrets '
                                     "(a [secrets] key provider)")
        self._task = asyncio.create_task(self._run(node.secrets), name="aether-rotation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def due(self, secrets: SecretManager, schedule: Schedule) -> bool:
        try:
            info = await secrets.info(schedule.secret)
        except NotFound:
            return True
        current = next((v for v in info.versions if v.version == info.current), None)
        return current is None or secrets.config.now() - current.created >= schedule.period

    async def check(self, secrets: SecretManager) -> None:
        """One pass over the schedules."""
        for schedule in self.settings.schedules:
            if not await self.due(secrets, schedule):
                continue
            try:
                await rotate_secret(secrets, schedule.secret, schedule.make_hook(),
                                    author=self.name)
                self.rotations += 1
            except AetherError as exc:
                self.failures += 1
                log.warning("scheduled rotation failed", secret=schedule.secret,
                            detail=exc.detail)

    async def _run(self, secrets: SecretManager) -> None:
        while True:
            try:
                await self.check(secrets)
            except Exception as exc:
                self.failures += 1
                log.error("rotation check failed", error=type(exc).__name__)
            await asyncio.sleep(self.settings.check_every)


__all__ = ["RotationService", "RotationSettings", "Schedule"]
