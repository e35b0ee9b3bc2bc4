"""Staged config rollout: a candidate version served to a stable fraction of clients.

A rollout is one document of kind ``rollout`` per config. While it runs, the config's
own head stays the version everyone gets (``ConfigManager.get``); clients whose
bucket — ``sha256(name NUL client_id)`` mod 10,000 — is below the fraction get the
candidate from :meth:`ConfigManager.get_for_client`. The bucket never changes, so
widening only ever adds clients. Promotion writes the candidate as the config's next
version in the same commit that closes the rollout; a nack or a failed health signal
rolls it back through :class:`~aether_core.commands.AbortRollout` /
:class:`~aether_core.commands.ReportRollout`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import structlog

from aether_core.commands import (
    AbortRollout,
    PromoteRollout,
    ReportRollout,
    StartRollout,
    WidenRollout,
)
from aether_core.errors import BadRequest, NotFound
from aether_core.records import CommitResult, Record, Rejection, Write

if TYPE_CHECKING:
    from aether_core.manager import ConfigManager
    from aether_core.statemachine import Handler, StateMachine

ROLLOUT = "rollout"
_CONFIG = "config"  # statemachine.CONFIG; not imported, statemachine imports us
BUCKETS = 10_000
RUNNING, PROMOTED, ROLLED_BACK = "running", "promoted", "rolled-back"

log = structlog.get_logger(__name__)


class RolloutState(msgspec.Struct, kw_only=True):
    id: str
    state: str
    base_version: int
    candidate: Any
    fraction: int
    acks: int = 0
    nacks: int = 0
    reason: str = ""
    started: float = 0.0
    updated: float = 0.0
    #: client id -> "ack" | "nack"; a repeated report replaces the earlier one.
    reports: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def candidate_version(self) -> int:
        return self.base_version + 1


def bucket(name: str, client_id: str) -> int:
    """The client's stable bucket for config ``name``, in ``[0, BUCKETS)``."""
    digest = hashlib.sha256(f"{name}\0{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_fraction(name: str, client_id: str, fraction: int) -> bool:
    return bucket(name, client_id) < fraction


def basis_points(fraction: float) -> int:
    """A fraction in ``(0, 1]`` as basis points; anything else is a :class:`BadRequest`."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
            0 < fraction <= 1):
        raise BadRequest(f"fraction must be a number in (0, 1], not {fraction!r}")
    return max(1, round(fraction * BUCKETS))


def decode_state(record: Record | None) -> RolloutState | None:
    if record is None or record.deleted:
        return None
    return msgspec.convert(record.value, RolloutState)


# -- state machine handlers --------------------------------------------------------------


def _invalid(name: str, detail: str, head: Record | None,
             code: Literal["conflict", "not-found", "invalid"] = "invalid") -> Rejection:
    return Rejection(code=code, detail=detail, kind=ROLLOUT, name=name,
                     current_version=head.version if head else 0,
                     expected_version=head.version if head else 0)


def _running(name: str, rollout_id: str, head: Record | None) -> RolloutState | Rejection:
    state = decode_state(head)
    if state is None or state.state != RUNNING:
        return _invalid(name, f"no rollout of config {name!r} is running", head, "not-found")
    if state.id != rollout_id:
        return _invalid(name, f"rollout {rollout_id!r} of config {name!r} is not the one "
                              f"running ({state.id!r})", head, "conflict")
    return state


def _write(command: Any, head: Record | None, state: RolloutState) -> Write:
    state.updated = command.timestamp
    return Write(kind=ROLLOUT, name=command.name,
                 expected_version=head.version if head else 0,
                 value=msgspec.to_builtins(state), author=command.author,
                 comment=command.comment, timestamp=command.timestamp,
                 meta={"state": state.state, "fraction": state.fraction})


class RolloutHandlers:
    """Handlers registered into the :class:`StateMachine`'s table."""

    def __init__(self, machine: StateMachine) -> None:
        self.machine = machine

    def table(self) -> dict[type[Any], Handler]:
        return {
            StartRollout: self.start,
            WidenRollout: self.widen,
            PromoteRollout: self.promote,
            AbortRollout: self.abort,
            ReportRollout: self.report,
        }

    async def start(self, command: StartRollout, log_index: int | None) -> CommitResult:
        config = await self.machine.storage.get(_CONFIG, command.name)

        def build(head: Record | None) -> Write | Rejection:
            current = decode_state(head)
            if config is None or config.deleted:
                return _invalid(command.name, f"config {command.name!r} does not exist",
                                head, "not-found")
            if current is not None and current.state == RUNNING:
                return _invalid(command.name, f"rollout {current.id!r} of config "
                                f"{command.name!r} is still running; promote or abort it",
                                head, "conflict")
            if config.version != command.base_version:
                return _invalid(command.name, f"config {command.name!r} is at version "
                                f"{config.version}, the rollout expected "
                                f"{command.base_version}", head, "conflict")
            if not 0 < command.fraction <= BUCKETS:
                return _invalid(command.name, "fraction out of range", head)
            return _write(command, head, RolloutState(
                id=command.rollout_id, state=RUNNING, base_version=command.base_version,
                candidate=command.value, fraction=command.fraction,
                started=command.timestamp))

        return await self.machine._write_next(ROLLOUT, command.name, None, log_index, build)

    async def widen(self, command: WidenRollout, log_index: int | None) -> CommitResult:
        def build(head: Record | None) -> Write | Rejection:
            state = _running(command.name, command.rollout_id, head)
            if isinstance(state, Rejection):
                return state
            if not state.fraction < command.fraction <= BUCKETS:
                return _invalid(command.name, f"widen needs a fraction above the current "
                                f"{state.fraction / BUCKETS:g} (and at most 1), not "
                                f"{command.fraction / BUCKETS:g}", head)
            state.fraction = command.fraction
            return _write(command, head, state)

        return await self.machine._write_next(ROLLOUT, command.name, None, log_index, build)

    async def _close(self, command: Any, log_index: int | None, status: str, reason: str
                     ) -> CommitResult:
        def build(head: Record | None) -> Write | Rejection:
            state = _running(command.name, command.rollout_id, head)
            if isinstance(state, Rejection):
                return state
            state.state, state.reason = status, reason
            return _write(command, head, state)

        return await self.machine._write_next(ROLLOUT, command.name, None, log_index, build)

    async def abort(self, command: AbortRollout, log_index: int | None) -> CommitResult:
        return await self._close(command, log_index, ROLLED_BACK, command.reason or "aborted")

    async def report(self, command: ReportRollout, log_index: int | None) -> CommitResult:
        def build(head: Record | None) -> Write | Rejection:
            state = _running(command.name, command.rollout_id, head)
            if isinstance(state, Rejection):
                return state
            if command.status not in ("ack", "nack"):
                return _invalid(command.name, f"status must be ack or nack, not "
                                f"{command.status!r}", head)
            state.reports[command.client_id] = command.status
            state.acks = sum(1 for s in state.reports.values() if s == "ack")
            state.nacks = len(state.reports) - state.acks
            if command.status == "nack":
                state.state = ROLLED_BACK
                state.reason = f"client {command.client_id!r} rejected version " \
                               f"{state.candidate_version}: {command.detail}".rstrip(": ")
            return _write(command, head, state)

        return await self.machine._write_next(ROLLOUT, command.name, None, log_index, build)

    async def promote(self, command: PromoteRollout, log_index: int | None) -> CommitResult:
        storage = self.machine.storage
        head = await storage.get(ROLLOUT, command.name)
        state = _running(command.name, command.rollout_id, head)
        if isinstance(state, Rejection):
            return await self.machine._reject(log_index, state)
        config = await storage.get(_CONFIG, command.name)
        if config is None or config.deleted or config.version != state.base_version:
            at = config.version if config else 0
            return await self.machine._reject(log_index, _invalid(
                command.name, f"config {command.name!r} moved to version {at} during the "
                f"rollout (it started at {state.base_version}); abort it", head, "conflict"))
        state.state, state.fraction = PROMOTED, BUCKETS
        meta = {k: v for k, v in config.meta.items() if k == "schema"}
        meta["rollout"] = state.id
        # One commit for both documents: no reader ever sees the rollout closed and the
        # old version served, or the reverse.
        return await storage.commit([
            Write(kind=_CONFIG, name=command.name, expected_version=config.version,
                  value=state.candidate, author=command.author,
                  comment=command.comment or f"rollout {state.id} promoted",
                  timestamp=command.timestamp, meta=meta),
            _write(command, head, state),
        ], log_index)


# -- the manager side --------------------------------------------------------------------


class Rollouts:
    """Validates, stamps and proposes rollout commands for a :class:`ConfigManager`."""

    def __init__(self, manager: ConfigManager) -> None:
        self.manager = manager

    async def status(self, name: str) -> RolloutState:
        from aether_core.manager import check_name

        check_name(name)
        state = decode_state(await self.manager.storage.get(ROLLOUT, name))
        if state is None:
            raise NotFound(f"config {name!r} has no rollout")
        return state

    async def _running(self, name: str) -> RolloutState:
        state = await self.status(name)
        if state.state != RUNNING:
            raise NotFound(f"no rollout of config {name!r} is running "
                           f"(the last one {state.state})")
        return state

    async def start(self, name: str, value: Any, fraction: float, *, author: str = "",
                    comment: str = "") -> RolloutState:
        manager = self.manager
        current = await manager.get(name)
        points = basis_points(fraction)
        try:
            value = msgspec.json.decode(msgspec.json.encode(value))
        except (TypeError, msgspec.EncodeError) as exc:
            raise BadRequest(f"config {name!r}: value is not JSON ({exc})") from None
        await manager._validate(name, current.meta.get("schema"), value)
        await manager.propose(StartRollout(
            name=name, rollout_id=uuid.uuid4().hex[:12], value=value, fraction=points,
            base_version=current.version, author=author, comment=comment,
            timestamp=manager.now()))
        state = await self.status(name)
        log.info("rollout started", config=name, rollout=state.id, fraction=points)
        return state

    async def widen(self, name: str, fraction: float, *, author: str = "") -> RolloutState:
        points = basis_points(fraction)
        state = await self._running(name)
        await self.manager.propose(WidenRollout(
            name=name, rollout_id=state.id, fraction=points, author=author,
            timestamp=self.manager.now()))
        return await self.status(name)

    async def promote(self, name: str, *, author: str = "") -> RolloutState:
        state = await self._running(name)
        await self.manager.propose(PromoteRollout(
            name=name, rollout_id=state.id, author=author, timestamp=self.manager.now()))
        log.info("rollout promoted", config=name, rollout=state.id)
        return await self.status(name)

    async def abort(self, name: str, reason: str = "", *, author: str = "") -> RolloutState:
        state = await self._running(name)
        await self.manager.propose(AbortRollout(
            name=name, rollout_id=state.id, reason=reason, author=author,
            timestamp=self.manager.now()))
        log.info("rollout rolled back", config=name, rollout=state.id, reason=reason)
        return await self.status(name)

    async def report(self, name: str, client_id: str, version: int, status: str,
                     detail: str = "", *, author: str = "") -> RolloutState | None:
        """Record a client's ack or nack of ``version``; ``None`` if that version is not
        the running rollout's candidate (reports of other versions do not concern it)."""
        if status not in ("ack", "nack"):
            raise BadRequest(f"status must be ack or nack, not {status!r}")
        if not client_id:
            raise BadRequest("client id must not be empty")
        state = await self.status(name)
        if state.state != RUNNING or state.candidate_version != version:
            return None
        await self.manager.propose(ReportRollout(
            name=name, rollout_id=state.id, client_id=client_id, status=status,
            detail=detail, author=author, timestamp=self.manager.now()))
        if status == "nack":
            log.warning("rollout rolled back by a nack", config=name, rollout=state.id,
                        client=client_id)
        return await self.status(name)

    async def health(self, name: str, healthy: bool, detail: str = "", *, author: str = ""
                     ) -> RolloutState:
        """An operator's health signal; a failed one rolls the running rollout back."""
        state = await self._running(name)
        if healthy:
            return state
        return await self.abort(name, f"health check failed: {detail}".rstrip(": "),
                                author=author)

    async def get_for_client(self, name: str, client_id: str, *, consistent: bool = True
                             ) -> Record:
        if consistent:
            await self.manager.transport.read_barrier()
        # The rollout before the config: a promotion committing in between then shows
        # as a head past the base version (served as is), never as the old head served
        # after the client already had the candidate.
        state = decode_state(await self.manager.storage.get(ROLLOUT, name))
        record = await self.manager.get(name, consistent=False)
        if (state is None or state.state != RUNNING or state.base_version != record.version
                or not in_fraction(name, client_id, state.fraction)):
            return record
        return Record(kind=_CONFIG, name=name, version=state.candidate_version,
                      revision=record.revision, value=state.candidate,
                      author=record.author, timestamp=state.started,
                      meta={**record.meta, "rollout": state.id, "candidate": True})
