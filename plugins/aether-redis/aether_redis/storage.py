"""``redis``: the storage contract on one Redis shared by several Aether nodes.

How each rule of :mod:`aether_core.storage.base` holds:

* **Atomic compare-and-set, gap-free revisions.** A commit is one Lua script
  (:data:`~aether_redis.scripts.COMMIT`): it checks every expected version, reads the
  revision counter, writes the records and moves the counter, and Redis runs no other
  command meanwhile — whichever node sends it. The idempotence check on the log index
  is inside the same script.
* **Exactly once over a flaky connection.** Each commit carries a random token; the
  script stores its outcome under that token, so when redis-py retries a commit whose
  reply was lost, the retry returns the first outcome instead of committing again.
* **Reads** are Lua scripts too, so a read never sees half of a commit.
* **Change feed.** Records are kept by revision (``rec``), so the feed is a range read
  by revision: a cursor is a revision, and a reconnect re-reads from it — nothing is
  lost or repeated. Each commit also appends ``<revision>-0`` to a Redis Stream; one
  listener task per instance blocks on ``XREAD`` from the last revision it saw and
  wakes :meth:`RedisStorage.wait_for_change`. After a lost connection it reads again
  from the same stream id, so a commit made while it was away still wakes it.
* **replace_all** builds the new data under staging keys, then one script renames them
  over the live keys (:data:`~aether_redis.scripts.SWAP`): other nodes see the old
  store or the new one, never a mix. Staging keys expire if the builder dies.
* **Durability** is Redis's: use ``appendonly yes`` with ``appendfsync always`` for
  the "acknowledged means durable" promise (see docs/storage-redis.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from aether_core.errors import StorageFault
from aether_core.providers import NodeInfo
from aether_core.records import CommitResult, Record, Write
from aether_core.storage.base import Storage
from aether_core.storage.memory import check_expectations
from aether_redis import scripts
from aether_redis.settings import RedisSettings

log = structlog.get_logger("aether.storage.redis")

T = TypeVar("T")

_decode = msgspec.json.Decoder(Record).decode
#: Staging keys of an interrupted replace_all disappear after this many seconds.
_STAGING_TTL = 3600


class _Body(msgspec.Struct, kw_only=True):
    """A record without its revision: the script appends ``"revision": N`` in place."""

    kind: str
    name: str
    version: int
    value: Any = None
    deleted: bool = False
    author: str = ""
    comment: str = ""
    timestamp: float = 0.0
    meta: dict[str, Any] = msgspec.field(default_factory=dict)


_encode_body = msgspec.json.Encoder().encode


def _body(write: Write) -> bytes:
    encoded = _encode_body(
        _Body(kind=write.kind, name=write.name, version=write.expected_version + 1,
              value=write.value, deleted=write.deleted, author=write.author,
              comment=write.comment, timestamp=write.timestamp, meta=write.meta)
    )
    return encoded[:-1]  # drop the closing brace; the script closes it after the revision


def _doc(kind: str, name: str) -> bytes:
    return kind.encode() + b"\0" + name.encode()


def _newest_revision(reply: Any) -> int | None:
    """The revision of the last entry of an XREAD reply (RESP2 list or RESP3 map)."""
    if not reply:
        return None
    entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
    if not entries:
        return None
    entry_id = entries[-1][0]
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(entry_id.split("-")[0])


@dataclass(frozen=True)
class Keys:
    """The deployment's keys. ``{prefix}`` is a hash tag: one Redis Cluster slot."""

    tag: str

    @classmethod
    def for_prefix(cls, prefix: str) -> Keys:
        return cls("{" + prefix + "}")

    def key(self, name: str) -> str:
        return self.tag + name

    @property
    def data(self) -> list[str]:
        """Every key that holds the store's state (what replace_all swaps)."""
        return [self.key(n) for n in ("meta", "rec", "ver", "head", "names", "feed")]

    def staging(self, token: str) -> list[str]:
        return [self.key(f"staging:{token}:{n}")
                for n in ("meta", "rec", "ver", "head", "names", "feed")]

    def token(self, token: str) -> str:
        return self.key("tok:" + token)


class RedisStorage(Storage):
    name = "redis"
    Settings = RedisSettings
    shared = True

    def __init__(self, settings: RedisSettings | None = None, *, node_name: str = "node-1"
                 ) -> None:
        super().__init__()
        self.settings = settings or RedisSettings()
        self.keys = Keys.for_prefix(self.settings.prefix)
        # Client names may not hold spaces; the random tail tells instances apart.
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node_name)
        self.feed_client_name = f"aether-feed-{safe}-{uuid.uuid4().hex[:8]}"
        self._client: aioredis.Redis | None = None
        self._feed: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listener_lock = asyncio.Lock()
        self._wake_event = asyncio.Event()
        self._closing = False

    @classmethod
    def from_settings(cls, settings: RedisSettings, node: NodeInfo) -> RedisStorage:
        return cls(settings, node_name=node.name)

    # -- connections -----------------------------------------------------------------

    def _connect(self, *, pool_size: int, socket_timeout: float, name: str | None
                 ) -> aioredis.Redis:
        s = self.settings
        kwargs: dict[str, Any] = {
            "username": s.username,
            "password": s.password.get_secret_value() if s.password else None,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": s.connect_timeout,
            "max_connections": pool_size,
            # Wait for a free connection rather than fail when every one is busy.
            "timeout": s.connect_timeout + s.socket_timeout,
            "client_name": name,
            "retry": Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), s.retries),
        }
        if s.uses_tls:
            kwargs.update(
                ssl=True,
                ssl_ca_certs=s.tls_ca_file,
                ssl_certfile=s.tls_cert_file,
                ssl_keyfile=s.tls_key_file,
                ssl_cert_reqs=ssl.CERT_REQUIRED if s.tls_verify else ssl.CERT_NONE,
                ssl_check_hostname=s.tls_verify,
            )
        url = s.url
        if s.uses_tls and url.startswith("redis://"):
            # from_url picks the connection class by scheme: ``tls = true`` means rediss.
            url = "rediss://" + url.removeprefix("redis://")
        return aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(url, **kwargs))

    def _fault(self, action: str, exc: BaseException) -> StorageFault:
        # redis-py messages name host and port at most; never the password.
        return StorageFault(f"redis storage {self.settings.where()}: {action} failed: "
                            f"{type(exc).__name__}: {exc}")

    async def _call(self, action: str, fn: Callable[[], Awaitable[T]]) -> T:
        if self._client is None:
            raise StorageFault(f"redis storage {self.settings.where()} is not open")
        try:
            # Shielded: a cancelled caller (a watcher that went away) returns at once
            # while the command finishes on its own, so redis-py is never cancelled
            # mid-command; it has had bugs there that swallowed the cancellation or left
            # the connection unusable (redis/redis-py#2028, #2579).
            return await asyncio.shield(fn())
        except RedisError as exc:
            raise self._fault(action, exc) from exc
        except OSError as exc:
            raise self._fault(action, exc) from exc

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._call(name.lower(), lambda: self._scripts[name](keys=keys, args=args))

    async def open(self) -> None:
        s = self.settings
        self._client = self._connect(pool_size=s.pool_size, socket_timeout=s.socket_timeout,
                                     name=None)
        # The feed connection blocks in XREAD for feed_block seconds at a time.
        self._feed = self._connect(pool_size=1, socket_timeout=s.socket_timeout + s.feed_block,
                                   name=self.feed_client_name)
        self._closing = False
        client = self._client
        self._scripts = {
            name: client.register_script(getattr(scripts, name))
            for name in ("COMMIT", "GET", "HISTORY", "HEADS", "SINCE", "COMPACT", "SWAP")
        }
        try:
            await self._call("connect", client.ping)
        except StorageFault:
            await self.close()
            raise
        await self._warn_if_not_durable()
        log.info("redis storage open", server=s.where(), prefix=s.prefix)

    async def _warn_if_not_durable(self) -> None:
        assert self._client is not None
        try:
            config: Any = await self._client.config_get("appendonly")
        except (RedisError, OSError):
            return  # managed Redis often forbids CONFIG; nothing to learn then
        if b"yes" not in config.values() and "yes" not in config.values():
            log.warning("redis has appendonly=no: an acknowledged write can be lost "
                        "if Redis restarts", server=self.settings.where())

    async def close(self) -> None:
        self._closing = True
        listener, self._listener = self._listener, None
        if listener is not None:
            # Let the listener finish its current XREAD rather than cancel it mid-read:
            # cancelling a blocked redis-py read can leave the pool waiting forever.
            done, _ = await asyncio.wait({listener}, timeout=self.settings.feed_block + 1)
            if not done:
                listener.cancel()
                await asyncio.wait({listener}, timeout=1)
            if listener.done() and not listener.cancelled():
                listener.exception()  # retrieved, so asyncio does not warn about it
        for client in (self._client, self._feed):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
        self._client = self._feed = None

    # -- writes ----------------------------------------------------------------------

    async def commit(self, writes: Sequence[Write], log_index: int | None = None) -> CommitResult:
        args: list[Any] = [
            self.settings.commit_token_ttl,
            "" if log_index is None else log_index,
            self.settings.stream_maxlen,
            len(writes),
        ]
        for w in writes:
            args += [_doc(w.kind, w.name), w.expected_version, int(w.deleted), _body(w)]
        keys = [*self.keys.data[:6], self.keys.token(uuid.uuid4().hex)]
        reply = (await self._script("COMMIT", keys, args)).decode()
        if reply == "replayed":
            return CommitResult(replayed=True)
        outcome, _, rest = reply.partition(":")
        if outcome == "conflict":
            index, current = (int(x) for x in rest.split(":"))
            bad = writes[index]
            rejection = check_expectations([bad], {(bad.kind, bad.name): current})
            return CommitResult(rejection=rejection)
        first = int(rest)
        records = [w.to_record(first + i) for i, w in enumerate(writes)]
        if records:
            self._notify()
        return CommitResult(records=records)

    # -- reads -----------------------------------------------------------------------

    @staticmethod
    def _records(rows: Iterable[bytes | None]) -> list[Record]:
        out = []
        for row in rows:
            if row is None:
                raise StorageFault("redis storage: an index points at a missing record")
            out.append(_decode(row))
        return out

    async def get(self, kind: str, name: str, version: int | None = None) -> Record | None:
        k = self.keys.data
        row = await self._script("GET", [k[1], k[2], k[3]],
                                 [_doc(kind, name), "" if version is None else version])
        return _decode(row) if row else None

    async def history(self, kind: str, name: str) -> list[Record]:
        k = self.keys.data
        return self._records(await self._script("HISTORY", [k[1], k[2], k[3]],
                                                [_doc(kind, name)]))

    async def heads(
        self, kind: str, prefix: str = "", *, after: str | None = None, limit: int = 100
    ) -> list[Record]:
        if limit <= 0:
            return []
        base = _doc(kind, prefix)
        start_after = after is not None and after >= prefix
        low = b"(" + _doc(kind, after) if start_after and after is not None else b"[" + base
        # 0xFF never occurs in UTF-8, so it sorts after every name that starts with prefix.
        high = b"(" + base + b"\xff"
        k = self.keys.data
        return self._records(await self._script("HEADS", [k[1], k[2], k[3], k[4]],
                                                [low, high, limit]))

    async def _meta(self, field: str) -> int:
        client = self._client
        value = await self._call(
            f"read {field}",
            lambda: client.hget(self.keys.data[0], field),  # type: ignore[union-attr]
        )
        return int(value) if value else 0

    async def revision(self) -> int:
        return await self._meta("revision")

    async def applied_index(self) -> int:
        return await self._meta("applied")

    async def compacted_revision(self) -> int:
        return await self._meta("compacted")

    async def records_since(self, revision: int, limit: int = 1000) -> list[Record]:
        if limit <= 0:
            return []
        k = self.keys.data
        return self._records(await self._script("SINCE", [k[0], k[1]], [revision, limit]))

    async def compact(self, revision: int) -> None:
        await self._script("COMPACT", [self.keys.data[0]], [revision])

    # -- change feed -----------------------------------------------------------------

    def _notify(self) -> None:
        event, self._wake_event = self._wake_event, asyncio.Event()
        event.set()

    async def wait_for_change(self, revision: int, timeout: float) -> None:
        await self._ensure_listener()
        # Take the event before reading the revision: a commit after the read sets it.
        event = self._wake_event
        if await self.revision() > revision:
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
        # that arrives as the event fires, and the cancelled feed would wait on forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.done():
            return
        async with self._listener_lock:
            if self._listener is not None and not self._listener.done():
                return
            # The cursor is read before any waiter reads the revision, so a commit
            # after it appears in the stream after the cursor and wakes the waiter.
            cursor = await self.revision()
            self._listener = asyncio.create_task(
                self._listen(cursor), name=f"aether-redis-feed-{self.feed_client_name}"
            )

    async def _listen(self, cursor: int) -> None:
        assert self._feed is not None
        feed, stream, meta = self._feed, self.keys.data[5], self.keys.data[0]
        block_ms = int(self.settings.feed_block * 1000)
        backoff = 0.05
        while not self._closing:
            try:
                reply = await feed.xread({stream: f"{cursor}-0"}, count=1000, block=block_ms)
                newest = _newest_revision(reply)
                if newest is not None:
                    cursor = newest
                    self._notify()
                else:
                    # A restore may have moved the top below our cursor: follow it down.
                    top = int(await feed.hget(meta, "revision") or 0)
                    if top < cursor:
                        cursor = top
                        self._notify()
                if backoff > 0.05:
                    log.info("redis change feed reconnected", server=self.settings.where())
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._closing:
                    return
                log.warning("redis change feed connection lost; retrying",
                            server=self.settings.where(), error=type(exc).__name__,
                            retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    # -- snapshots -------------------------------------------------------------------

    async def replace_all(
        self, records: Iterable[Record], *, applied_index: int, compacted_revision: int
    ) -> None:
        token = uuid.uuid4().hex
        staged = self.keys.staging(token)
        meta, rec, ver, head, names, feed = staged
        client = self._client

        async def build() -> None:
            assert client is not None
            top = 0
            heads: dict[bytes, Record] = {}
            async with client.pipeline(transaction=False) as pipe:
                for record in records:
                    doc = _doc(record.kind, record.name)
                    pipe.hset(rec, str(record.revision), msgspec.json.encode(record))
                    pipe.hset(ver, doc + b"\0" + str(record.version).encode(),
                              str(record.revision))
                    heads[doc] = record
                    top = record.revision
                    if len(pipe) >= 2000:
                        await pipe.execute()
                for doc, record in heads.items():
                    pipe.hset(head, doc, str(record.version))
                    if not record.deleted:
                        pipe.zadd(names, {doc: 0})
                pipe.hset(meta, mapping={"revision": top, "applied": applied_index,
                                         "compacted": compacted_revision})
                if top:
                    pipe.xadd(feed, {"first": top, "last": top}, id=f"{top}-0")
                for key in staged:
                    pipe.expire(key, _STAGING_TTL)
                await pipe.execute()

        try:
            await self._call("stage replacement", build)
            await self._script("SWAP", [*self.keys.data, *staged], [])
        except BaseException:
            with contextlib.suppress(RedisError, OSError, StorageFault):
                await self._call("drop staging", lambda: client.delete(*staged))  # type: ignore[union-attr]
            raise
        self._notify()

    # -- test and tool support -------------------------------------------------------

    async def destroy(self) -> int:
        """Delete every key of this deployment (its prefix). For tests and tear-down."""
        client = self._client
        assert client is not None
        pattern = self.keys.tag.replace("{", "\\{").replace("}", "\\}") + "*"
        deleted = 0
        batch: list[Any] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.delete(*batch)
                batch = []
        if batch:
            deleted += await client.delete(*batch)
        return deleted

