"""ConfigManager: the API every front end uses — Python callers, the CLI, the admin API.

It validates (names, JSON, schemas), stamps commands with author and time, proposes
them through the transport and turns deterministic rejections into errors. Reads go
to storage, after a read barrier when they must be linearizable.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import jsonpatch
import msgspec
from pydantic import BaseModel

from aether_core.commands import (
    Command,
    DeleteConfig,
    PutConfig,
    PutSchema,
    RollbackConfig,
)
from aether_core.errors import (
    AlreadyExists,
    BadRequest,
    NotFound,
    SchemaIncompatible,
    VersionConflict,
)
from aether_core.records import PUBLIC_KINDS, CommitResult, Page, Record
from aether_core.rollout import Rollouts
from aether_core.schemas import binding_for, check_schema_document, schema_errors, validate
from aether_core.secrets import fields
from aether_core.secrets.errors import UnknownKeyVersion
from aether_core.statemachine import CONFIG, SCHEMA, StateMachine
from aether_core.storage.base import SnapshotHeader, Storage
from aether_core.transport.base import Transport
from aether_core.transport.local import LocalTransport
from aether_core.watch import Subscription, WatchHub

if TYPE_CHECKING:
    from aether_core.secrets.fields import FieldSealer

M = TypeVar("M", bound=BaseModel)

# Segments of letters, digits, '_', '-', '.'; a segment of dots only ('.', '..') is
# refused because URLs and file sinks would resolve it as a path step.
_SEGMENT = r"(?!\.+(?:/|$))[A-Za-z0-9_.-]+"
_NAME = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
MAX_NAME = 256
MAX_PAGE = 1000


def check_name(name: str, what: str = "config") -> None:
    if not isinstance(name, str) or len(name) > MAX_NAME or not _NAME.match(name):
        raise BadRequest(
            f"{what} name {name!r} is invalid: use letters, digits, '_', '-', '.' in "
            f"segments separated by '/' (not '.' or '..'), at most {MAX_NAME} characters"
        )


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        name = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
        check_name(name)
    except (ValueError, UnicodeDecodeError, BadRequest):
        raise BadRequest(f"cursor {cursor!r} is not one this server issued") from None
    return name


class ConfigManager:
    """Versioned, typed configuration over any storage and transport.

    ``ConfigManager(MemoryStorage())`` is a complete embedded store: with no transport
    given, commands are applied locally. Call :meth:`start` (or use ``async with``)
    before anything else.
    """

    def __init__(
        self,
        storage: Storage,
        transport: Transport | None = None,
        *,
        clock: Callable[[], float] = time.time,
        watch_queue_size: int = 1024,
    ) -> None:
        self.storage = storage
        self.transport = transport or LocalTransport()
        self.state_machine = StateMachine(storage)
        self.hub = WatchHub(storage, queue_size=watch_queue_size)
        self._clock = clock
        self._started = False
        #: Seals the secret fields of typed configs; set by a :class:`SecretManager`
        #: over this manager (without one, such writes are refused).
        self.sealer: FieldSealer | None = None

    async def start(self) -> None:
        if self._started:
            return
        await self.storage.open()
        if self.transport.keeps_durable_log:
            await self.storage.rely_on_log()
        await self.transport.start(self.state_machine)
        await self.hub.start()
        self._started = True

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.hub.stop()
        await self.transport.close()
        await self.storage.close()

    async def __aenter__(self) -> ConfigManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- proposing -----------------------------------------------------------------

    async def _propose(self, command: Command) -> CommitResult:
        result = await self.transport.propose(command)
        rejection = result.rejection
        if rejection is None:
            return result
        if rejection.code == "conflict":
            if rejection.expected_version == 0:
                raise AlreadyExists(
                    f"{rejection.kind} {rejection.name!r} already exists "
                    f"(version {rejection.current_version})",
                    current_version=rejection.current_version,
                )
            raise VersionConflict(
                rejection.detail,
                current_version=rejection.current_version,
                expected_version=rejection.expected_version,
            )
        if rejection.code == "not-found":
            raise NotFound(rejection.detail)
        raise BadRequest(rejection.detail)

    def _stamp(self) -> float:
        return self._clock()

    async def propose(self, command: Command) -> CommitResult:
        """Propose a command built elsewhere in the kernel (the ``jwt`` auth's user and
        token commands); rejections become errors exactly as for config writes."""
        return await self._propose(command)

    def now(self) -> float:
        """The manager's clock (the time commands are stamped with)."""
        return self._stamp()

    # -- configs -------------------------------------------------------------------

    async def put(
        self,
        name: str,
        value: Any,
        *,
        expected_version: int | None = None,
        schema: str | None = None,
        author: str = "",
        comment: str = "",
    ) -> Record:
        """Write the next version of ``name`` and return it.

        :param expected_version: compare-and-set: the version ``name`` must be at now
            (0: it must not exist). A mismatch raises :class:`VersionConflict`.
        :param schema: bind the config to this schema (it stays bound for later versions).
        :raises ValidationFailed: the value breaks the config's schema (nothing written).
        """
        check_name(name)
        if expected_version is not None and expected_version < 0:
            raise BadRequest("expected_version must be 0 or more")
        try:
            value = msgspec.json.decode(msgspec.json.encode(value))
        except (TypeError, msgspec.EncodeError) as exc:
            raise BadRequest(f"config {name!r}: value is not JSON ({exc})") from None
        if schema is not None:
            check_name(schema, "schema")
        head = await self.storage.get(CONFIG, name)
        explicit = schema or (head.meta.get("schema") if head else None)
        paths = await self._checked(name, explicit, value)
        if not fields.present(value, paths):
            result = await self._propose(
                PutConfig(
                    name=name, value=value, expected_version=expected_version, schema=schema,
                    author=author, comment=comment, timestamp=self._stamp(),
                )
            )
            return result.records[0]
        return await self._put_sealed(name, value, paths, expected_version, schema, author,
                                      comment)

    async def _put_sealed(self, name: str, value: Any, paths: list[fields.Path],
                          expected_version: int | None, schema: str | None, author: str,
                          comment: str) -> Record:
        """Seal the secret fields for the version this write creates, then propose; when
        another writer takes that version first (and no version was expected), seal again
        for the next one."""
        if self.sealer is None:
            raise BadRequest(
                f"config {name!r} has secret fields ({', '.join(map(fields.json_path, paths))}) "
                "and this node has no [secrets] key provider to encrypt them")
        for _ in range(16):
            head = await self.storage.get(CONFIG, name)
            current = head.version if head else 0
            if expected_version is not None and expected_version != current:
                raise VersionConflict(
                    f"config {name!r} is at version {current}, the write expected "
                    f"{expected_version}", current_version=current,
                    expected_version=expected_version)
            redacted, sealed = await self.sealer.seal(name, current + 1, value, paths)
            try:
                result = await self._propose(PutConfig(
                    name=name, value=redacted, expected_version=current, schema=schema,
                    sealed=msgspec.to_builtins(sealed), author=author, comment=comment,
                    timestamp=self._stamp()))
            except (VersionConflict, AlreadyExists):
                if expected_version is not None:
                    raise
                continue
            return result.records[0]
        raise VersionConflict(f"config {name!r} changed 16 times while this write was "
                              "sealed; try again", current_version=0, expected_version=0)

    async def _checked(self, name: str, explicit: str | None, value: Any,
                       ignore: frozenset[str] = frozenset(), *, stored: bool = False
                       ) -> list[fields.Path]:
        """Validate ``value`` against the config's schema; the schema's secret paths.

        Messages never quote a secret value; errors at ``ignore`` paths (placeholders of
        sealed fields) do not count. A placeholder where a secret goes is refused,
        unless ``value`` is a stored one (a rollback's target).
        """
        schemas = await self._all_heads(SCHEMA)
        bound = binding_for(name, explicit, schemas)
        if explicit is not None and bound is None:
            raise NotFound(f"schema {explicit!r} does not exist")
        if bound is None:
            return []
        document = bound.value["schema"]
        paths = fields.secret_paths(document)
        if not stored:
            for path in fields.present(value, paths):
                if fields.get_at(value, path) == fields.PLACEHOLDER:
                    raise BadRequest(
                        f"config {name!r}: {fields.json_path(path)} holds the redaction "
                        "placeholder, not a value; send the secret itself (reads without "
                        "secrets:read show the placeholder)")
        validate(name, bound.name, document, value, hide=fields.plaintexts(value, paths),
                 ignore=ignore)
        return paths

    async def create(self, name: str, value: Any, **kwargs: Any) -> Record:
        """Like :meth:`put`, but :class:`AlreadyExists` if ``name`` exists."""
        return await self.put(name, value, expected_version=0, **kwargs)

    async def _validate(self, name: str, explicit: str | None, value: Any) -> None:
        """Validation for a value that is stored as it is (a rollout's candidate): one
        with secret fields is refused, since they would be kept in plaintext."""
        paths = await self._checked(name, explicit, value)
        if fields.present(value, paths):
            raise BadRequest(
                f"config {name!r} has secret fields ({', '.join(map(fields.json_path, paths))});"
                " a rollout would keep them unencrypted: write the config instead")

    async def get(
        self, name: str, version: int | None = None, *, consistent: bool = True
    ) -> Record:
        """The latest version of ``name`` (or ``version``).

        :param consistent: linearizable read (a read barrier first); ``False`` serves
            this node's possibly stale copy.
        :raises NotFound: no such config or version, or the config is deleted.
        """
        check_name(name)
        if consistent:
            await self.transport.read_barrier()
        record = await self.storage.get(CONFIG, name, version)
        if record is None:
            what = f"version {version} of config" if version else "config"
            raise NotFound(f"{what} {name!r} does not exist")
        if record.deleted:
            raise NotFound(
                f"config {name!r} was deleted at version {record.version}",
                deleted_version=record.version,
            )
        return record

    @property
    def rollouts(self) -> Rollouts:
        """Staged rollouts of new config versions (see :mod:`aether_core.rollout`)."""
        return Rollouts(self)

    async def get_for_client(self, name: str, client_id: str, *, consistent: bool = True
                             ) -> Record:
        """What client ``client_id`` should run: the candidate of a running rollout if
        the client is inside its fraction, else the same as :meth:`get`."""
        return await Rollouts(self).get_for_client(name, client_id, consistent=consistent)

    async def reveal(self, name: str, version: int | None = None, *, consistent: bool = True
                     ) -> Record:
        """Like :meth:`get`, with the plaintext of secret fields in place of the
        placeholders (callers check ``secrets:read``)."""
        record = await self.get(name, version, consistent=consistent)
        if fields.META not in record.meta:
            return record
        if self.sealer is None:
            raise BadRequest(f"config {name!r} has secret fields and this node has no "
                             "[secrets] key provider to decrypt them")
        return msgspec.structs.replace(record, value=await self.sealer.reveal(record))

    async def get_typed(self, name: str, model: type[M], version: int | None = None) -> M:
        """The config parsed into a Pydantic model; ``SecretStr`` fields hold the
        plaintext (use ``get_secret_value()``)."""
        return model.model_validate((await self.reveal(name, version)).value)

    async def versions(self, name: str) -> list[Record]:
        """Every version, oldest first, tombstones included."""
        check_name(name)
        history = await self.storage.history(CONFIG, name)
        if not history:
            raise NotFound(f"config {name!r} does not exist")
        return history

    async def list_configs(
        self, prefix: str = "", *, cursor: str | None = None, limit: int = 100
    ) -> Page:
        """Live configs whose name starts with ``prefix``, by name, a page at a time."""
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
        after = _decode_cursor(cursor) if cursor else None
        items = await self.storage.heads(CONFIG, prefix, after=after, limit=limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next_cursor=_encode_cursor(items[-1].name) if more else None)

    async def delete(
        self, name: str, *, expected_version: int | None = None, author: str = "",
        comment: str = "",
    ) -> Record:
        """Write a tombstone; history stays and the name can be created again."""
        check_name(name)
        result = await self._propose(
            DeleteConfig(
                name=name, expected_version=expected_version, author=author,
                comment=comment, timestamp=self._stamp(),
            )
        )
        return result.records[0]

    async def rollback(
        self, name: str, to_version: int, *, expected_version: int | None = None,
        author: str = "", comment: str = "",
    ) -> Record:
        """Write a new version whose value equals ``to_version``'s (checked by its schema)."""
        check_name(name)
        target = await self.storage.get(CONFIG, name, to_version)
        if target is None or target.deleted:
            raise NotFound(f"config {name!r} has no version {to_version} to roll back to")
        sealed = fields.sealed_of(target)
        ignore = frozenset(fields.json_path(fields.unpointer(f)) for f in sealed.fields
                           ) if sealed else frozenset()
        await self._checked(name, target.meta.get("schema"), target.value, ignore,
                            stored=True)
        if sealed is not None and self.sealer is not None:
            try:
                await self.sealer.data_key(name, sealed)
            except UnknownKeyVersion:
                raise BadRequest(
                    f"config {name!r} version {to_version}: its secret fields are wrapped "
                    f"under key version {sealed.key_version!r}, which was retired; write the "
                    "value again instead") from None
        result = await self._propose(
            RollbackConfig(
                name=name, to_version=to_version, expected_version=expected_version,
                author=author, comment=comment, timestamp=self._stamp(),
            )
        )
        return result.records[0]

    async def diff(self, name: str, from_version: int, to_version: int) -> dict[str, Any]:
        """An RFC 6902 JSON Patch that turns ``from_version`` into ``to_version``."""
        check_name(name)
        old = await self.storage.get(CONFIG, name, from_version)
        new = await self.storage.get(CONFIG, name, to_version)
        for version, record in ((from_version, old), (to_version, new)):
            if record is None:
                raise NotFound(f"config {name!r} has no version {version}")
        assert old is not None and new is not None
        patch = jsonpatch.make_patch(old.value, new.value).patch
        out = {"name": name, "from": from_version, "to": to_version, "patch": patch}
        secret = await self._diff_secret_fields(old, new)
        if secret:
            out["secret_fields"] = secret
        return out

    async def _diff_secret_fields(self, old: Record, new: Record) -> dict[str, str]:
        """``"changed"``/``"unchanged"`` per secret field (never the values): the
        placeholders hide the change from the patch."""
        sealed = [fields.sealed_of(r) if not r.deleted else None for r in (old, new)]
        if sealed[0] is None and sealed[1] is None:
            return {}
        names = sorted({f for s in sealed if s is not None for f in s.fields})
        if (sealed[0] is not None and sealed[1] is not None
                and sealed[0].version == sealed[1].version):
            return dict.fromkeys(names, "unchanged")  # one sealing (a re-wrap, a rollback)
        if self.sealer is None:
            return dict.fromkeys(names, "changed")
        values = [await self.sealer.open(r) for r in (old, new)]
        missing = object()
        return {f: "unchanged" if values[0].get(f, missing) == values[1].get(f, missing)
                else "changed" for f in names}

    # -- schemas -------------------------------------------------------------------

    async def _all_heads(self, kind: str) -> list[Record]:
        out: list[Record] = []
        after: str | None = None
        while batch := await self.storage.heads(kind, after=after, limit=MAX_PAGE):
            out.extend(batch)
            after = batch[-1].name
        return out

    async def check_schema(
        self, name: str, schema: dict[str, Any], bind: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Dry run: the live configs that ``schema`` (as ``name``) would reject.

        Each entry is ``{"name", "version", "errors": [{"path", "message"}]}``.
        """
        check_name(name, "schema")
        check_schema_document(name, schema)
        current = await self.storage.get(SCHEMA, name)
        if bind is None:
            bind = list(current.value.get("bind", [])) if current and not current.deleted else []
        candidate = Record(
            kind=SCHEMA, name=name, version=0, revision=0,
            value={"schema": schema, "bind": bind},
        )
        others = [s for s in await self._all_heads(SCHEMA) if s.name != name]
        broken: list[dict[str, Any]] = []
        paths = fields.secret_paths(schema)
        for config in await self._all_heads(CONFIG):
            bound = binding_for(config.name, config.meta.get("schema"), [*others, candidate])
            if bound is not candidate:
                continue
            sealed = fields.sealed_of(config)
            sealed_fields = set(sealed.fields) if sealed else set()
            # Placeholders of sealed fields were validated in plaintext when written.
            errors = [e for e in schema_errors(schema, config.value)
                      if not any(e["path"] == fields.json_path(fields.unpointer(f))
                                 for f in sealed_fields)]
            errors += [
                {"path": fields.json_path(path),
                 "message": "secret in this schema but stored unencrypted: put the schema "
                            "with force, then write the config again"}
                for path in fields.present(config.value, paths)
                if fields.pointer(path) not in sealed_fields
            ]
            if errors:
                broken.append({"name": config.name, "version": config.version, "errors": errors})
        return broken

    async def put_schema(
        self,
        name: str,
        schema: dict[str, Any] | type[BaseModel],
        *,
        bind: list[str] | None = None,
        force: bool = False,
        expected_version: int | None = None,
        author: str = "",
        comment: str = "",
    ) -> Record:
        """Register the next version of a schema (JSON Schema, or a Pydantic model class).

        :param bind: name prefixes the schema governs (configs may also name it).
        :param force: write even if live configs would break; otherwise
            :class:`SchemaIncompatible` lists them and nothing changes.
        """
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            schema = schema.model_json_schema()
        for prefix in bind or []:
            if not isinstance(prefix, str) or (prefix and not _NAME.match(prefix.rstrip("/"))):
                raise BadRequest(f"schema {name!r}: bind prefix {prefix!r} is not a name prefix")
        broken = await self.check_schema(name, schema, bind)
        if broken and not force:
            names = ", ".join(f"{b['name']} (v{b['version']})" for b in broken)
            raise SchemaIncompatible(
                f"schema {name!r} would reject {len(broken)} live config(s): {names}",
                broken=broken,
            )
        current = await self.storage.get(SCHEMA, name)
        if bind is None:
            bind = list(current.value.get("bind", [])) if current else []
        result = await self._propose(
            PutSchema(
                name=name, schema=schema, bind=bind, expected_version=expected_version,
                author=author, comment=comment, timestamp=self._stamp(),
            )
        )
        return result.records[0]

    async def get_schema(self, name: str, version: int | None = None) -> Record:
        check_name(name, "schema")
        record = await self.storage.get(SCHEMA, name, version)
        if record is None:
            raise NotFound(f"schema {name!r} does not exist")
        return record

    async def list_schemas(self) -> list[Record]:
        return await self._all_heads(SCHEMA)

    # -- watch, export, import -----------------------------------------------------

    async def watch(
        self, prefix: str = "", since: int | None = None, *,
        kinds: frozenset[str] | None = PUBLIC_KINDS,
    ) -> Subscription:
        """Change events after revision ``since`` (now, if ``None``); see :class:`WatchHub`.

        By default configs and schemas, what a user of Aether watches; the kernel's own
        followers name the kinds they need (users, revoked tokens, secrets), and ``None``
        means every kind."""
        return await self.hub.subscribe(prefix, since, kinds=kinds)

    async def revision(self) -> int:
        return await self.storage.revision()

    def export(self) -> AsyncIterator[bytes]:
        """Everything, with history and revisions, as a portable JSON-lines file."""
        return self.storage.snapshot()

    async def import_(self, chunks: AsyncIterable[bytes]) -> SnapshotHeader:
        """Load an export into this store, which must be empty. Revisions are kept."""
        if await self.storage.revision() != 0:
            raise BadRequest(
                "import needs an empty store: this one is at revision "
                f"{await self.storage.revision()}"
            )
        return await self.storage.restore(chunks)
