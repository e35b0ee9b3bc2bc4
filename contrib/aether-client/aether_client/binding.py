"""``Binding``: one config as a live, typed value.

``binding.value`` is always a complete, validated instance of the model: a new version
is validated first and, when valid, replaces the old one in a single reference
assignment, so a reader (in any thread) sees the old object or the new one, never a mix.
An invalid version is not applied; it is logged and reported to the server as a nack.

A model with ``SecretStr`` fields (at any depth) is read revealed: the server shows
``**********`` in their place everywhere else, events included, so each version is read
again with ``?version=N&reveal=true`` (``secrets:read``). A version that cannot be
revealed (403) is refused like an invalid one, and the placeholder is never applied as
a secret. Such bindings are never cached on disk (no plaintext secret on disk).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from aether_client.cache import CachedValue
from aether_client.errors import ApiError, ClientError, Compacted
from aether_client.records import Change, ConfigRecord, WatchEvent
from aether_client.secret_fields import has_secret_fields, placeholder_paths
from aether_client.stream import transient

if TYPE_CHECKING:
    from aether_client.client import AsyncAetherClient

log = structlog.get_logger("aether.client")
M = TypeVar("M", bound=BaseModel)
Source = Literal["server", "cache", "default"]


@dataclass(frozen=True)
class _Current(Generic[M]):
    value: M
    version: int
    revision: int
    source: Source


def model_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Field paths and messages, never the offending input (it may be sensitive)."""
    return [{"path": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
            for error in exc.errors(include_input=False, include_url=False)]


class Binding(Generic[M]):
    """A live view of config ``name`` as ``model``; made by ``client.bind()``."""

    def __init__(self, name: str, model: type[M], client: AsyncAetherClient) -> None:
        self.name = name
        self.model = model
        self._client = client
        self._current: _Current[M] | None = None
        self._callbacks: list[Callable[[Change[M]], Any]] = []
        #: The highest version looked at, applied or refused.
        self.seen_version = 0
        #: Versions refused by the model, with their errors (the latest 16).
        self.refused: dict[int, list[dict[str, str]]] = {}
        #: True after the config was deleted on the server (the value stays).
        self.deleted = False
        #: The model has ``SecretStr`` fields: values are read revealed, never cached.
        self.secret = has_secret_fields(model)

    def __repr__(self) -> str:
        return f"Binding({self.name!r}, {self.model.__name__}, version={self.version})"

    @property
    def value(self) -> M:
        current = self._current
        if current is None:
            raise ClientError(f"config {self.name!r} has no value yet")
        return current.value

    @property
    def version(self) -> int:
        return self._current.version if self._current else 0

    @property
    def revision(self) -> int:
        return self._current.revision if self._current else 0

    @property
    def source(self) -> Source | None:
        """Where the running value came from: the server, the disk cache, ``default``."""
        return self._current.source if self._current else None

    def on_change(self, callback: Callable[[Change[M]], Any]) -> Callable[[Change[M]], Any]:
        """Call ``callback(change)`` after each new value is applied, in order. A plain
        function runs on the client's event loop (keep it quick); an ``async def`` one is
        awaited there. Exceptions are logged and do not stop the binding. Usable as a
        decorator."""
        self._callbacks.append(callback)
        return callback

    # -- loading -----------------------------------------------------------------------

    async def load(self, default: M | None) -> int | None:
        """The first value: the server's, else the cache's, else ``default``. Returns the
        revision to follow from (None: read the server again when it answers)."""
        if self.secret:
            self._discard_cache()
        try:
            record, refusal = await self._latest()
        except ClientError as exc:
            if not transient(exc):
                raise
            cached = self._from_cache()
            if cached is not None:
                log.warning("server unreachable; starting from the cached value",
                            config=self.name, version=cached.version, error=exc.detail)
                return cached.revision
            if default is not None:
                self._set(default, 0, 0, "default")
                return None
            never = " (a model with secret fields is never cached)" if self.secret else ""
            raise ClientError(f"config {self.name!r}: {exc.detail}, and no cached value "
                              f"to start from{never}") from None
        if record is not None:
            self.seen_version = record.version
            if refusal is not None:
                self._refuse(record.version, self._unrevealed(refusal))
            elif self._accept(record.value, record.version, record.revision, "server"):
                self._save(record.version, record.revision)
                return record.revision
            if self._from_cache() is not None:
                return record.revision
            if default is None and refusal is not None:
                raise ClientError(
                    f"config {self.name!r}: {self.model.__name__} has secret fields and "
                    f"this client may not reveal them (needs secrets:read on the name): "
                    f"{refusal.detail}")
            if default is None:
                errors = "; ".join(f"{e['path']}: {e['message']}"
                                   for e in self.refused[record.version])
                raise ClientError(f"config {self.name!r} version {record.version} does not "
                                  f"match {self.model.__name__}: {errors}")
            self._set(default, 0, 0, "default")
            return record.revision
        if default is None:
            raise ClientError(f"config {self.name!r} does not exist on {self._client.url}")
        self._set(default, 0, 0, "default")
        return None

    async def _latest(self) -> tuple[ConfigRecord | None, ApiError | None]:
        """The latest record (None: no such config), revealed when the model has secret
        fields; when the reveal is refused (403), the redacted record with the refusal."""
        if not self.secret:
            return await self._client.snapshot(self.name), None
        try:
            return await self._client.snapshot(self.name, reveal=True), None
        except ApiError as exc:
            if exc.status != 403:
                raise
            return await self._client.snapshot(self.name), exc

    def _unrevealed(self, exc: ApiError) -> list[dict[str, str]]:
        why = " (needs secrets:read)" if exc.status == 403 else ""
        return [{"path": "", "message": f"{self.model.__name__} has secret fields and "
                 f"their values could not be revealed{why}: {exc.detail}"}]

    def _discard_cache(self) -> None:
        """A file from before the model had secret fields holds placeholders (or, from an
        older SDK, anything): never start from it, and do not keep it."""
        cache = self._client.cache
        if cache is not None:
            cache.discard(self.name)

    def _from_cache(self) -> CachedValue | None:
        cache = self._client.cache
        if self.secret:  # never written for such a model, see _save
            return None
        cached = cache.load(self.name) if cache else None
        if cached is None:
            return None
        try:
            value = self.model.model_validate(cached.value)
        except ValidationError:
            log.warning("cached value does not match the model; ignored", config=self.name)
            return None
        self._set(value, cached.version, cached.revision, "cache")
        self.seen_version = max(self.seen_version, cached.version)
        return cached

    def _set(self, value: M, version: int, revision: int, source: Source) -> None:
        self._current = _Current(value, version, revision, source)  # one atomic swap

    def _accept(self, raw: Any, version: int, revision: int, source: Source) -> bool:
        try:
            value = self.model.model_validate(raw)
        except ValidationError as exc:
            self._refuse(version, model_errors(exc))
            return False
        if self.secret:
            unrevealed = placeholder_paths(value)
            if unrevealed:  # a redacted value: applying it would replace the secrets
                self._refuse(version, [{"path": path, "message": "holds the server's "
                                        "placeholder, not a secret (value not revealed)"}
                                       for path in unrevealed])
                return False
        self._set(value, version, revision, source)
        self.deleted = False
        return True

    def _refuse(self, version: int, errors: list[dict[str, str]]) -> None:
        self.refused[version] = errors
        while len(self.refused) > 16:
            del self.refused[min(self.refused)]
        log.warning("config version refused by the client's model; the running value stays",
                    config=self.name, version=version, model=self.model.__name__,
                    running_version=self.version, errors=errors)
        self._client.spawn(self._report(version, "nack", errors), f"aether-nack-{self.name}")

    async def _report(self, version: int, status: Literal["ack", "nack"],
                      errors: list[dict[str, str]]) -> None:
        try:
            await self._client.report(
                self.name, version, status, errors=errors,
                detail="" if status == "ack" else f"refused by {self.model.__name__}")
        except ClientError as exc:
            log.warning("could not report to the server", config=self.name, version=version,
                        status=status, error=exc.detail)

    def _save(self, version: int, revision: int) -> None:
        cache, current = self._client.cache, self._current
        if cache is None or current is None or self.secret:
            return  # secret plaintext never goes to disk (and the placeholder is no value)
        try:
            cache.save(CachedValue(self.name, version, revision,
                                   current.value.model_dump(mode="json")))
        except OSError as exc:
            log.warning("could not cache the value", config=self.name, error=str(exc))

    # -- following ---------------------------------------------------------------------

    async def follow(self, since: int | None) -> None:
        """Apply every later version, for as long as the client is open."""
        backoff = self._client.backoff
        while True:
            try:
                if since is None:
                    since = await self._resync()
                async for event in self._client.watch(self.name, since):
                    if event.name == self.name:  # the prefix also matches longer names
                        await self.offer(event)
                    since = event.revision  # after the offer: a failed one is read again
            except Compacted as exc:
                log.info("resume point compacted; re-reading the config", config=self.name,
                         oldest=exc.oldest_revision)
                since = None
            except ApiError as exc:  # refused (403 …): say so, try again later
                log.error("cannot watch the config", config=self.name, error=exc.detail)
                await asyncio.sleep(backoff.maximum)
            except Exception:  # a bug or a malformed event must not end hot reload
                log.exception("watching the config failed; retrying", config=self.name)
                await asyncio.sleep(backoff.maximum)

    async def _resync(self) -> int:
        backoff = self._client.backoff
        revision = await backoff.call(self._client.revision)  # before the read: no gap
        record, refusal = await backoff.call(self._latest)
        if record is None:
            return revision
        await self.offer(WatchEvent(revision=record.revision, type="put", kind="config",
                                    name=record.name, version=record.version,
                                    value=record.value), revealed=refusal is None)
        return record.revision

    async def offer(self, event: WatchEvent, *, revealed: bool = False) -> None:
        """Apply ``event`` if it is newer than anything seen and valid for the model.
        With secret fields, the version is read again revealed unless ``revealed`` says
        ``event.value`` already is (an event carries placeholders)."""
        if event.version <= self.seen_version:
            return
        if event.type == "delete":
            self.seen_version = event.version
            self.deleted = True
            log.warning("config deleted on the server; the running value stays",
                        config=self.name, version=event.version)
            return
        value = event.value
        if self.secret and not revealed:
            try:  # transient failures are retried; they escape only with give_up_after
                record = await self._client.backoff.call(
                    lambda: self._client.get(self.name, event.version, reveal=True))
            except ApiError as exc:
                if transient(exc):
                    raise
                self.seen_version = event.version
                self._refuse(event.version, self._unrevealed(exc))
                return
            value = record.value
        self.seen_version = event.version
        previous = self._current.value if self._current else None
        if not self._accept(value, event.version, event.revision, "server"):
            return
        change = Change(self.name, event.version, event.revision, self.value, previous)
        for callback in list(self._callbacks):
            try:
                result = callback(change)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_change callback failed", config=self.name,
                              callback=getattr(callback, "__qualname__", repr(callback)))
        if self._client.cache is not None:  # no thread hop per event without a cache
            await asyncio.to_thread(self._save, event.version, event.revision)
        if self._client.report_acks:
            self._client.spawn(self._report(event.version, "ack", []),
                               f"aether-ack-{self.name}")
