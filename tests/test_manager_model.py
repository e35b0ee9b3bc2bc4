"""A hypothesis state machine: ConfigManager behaves like a plain in-memory model."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aether_core import ConfigManager, MemoryStorage
from aether_core.errors import AlreadyExists, NotFound, VersionConflict

NAMES = st.sampled_from(["a", "a/b", "a/c", "b", "b/x/y"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                                max_size=3),
    max_leaves=6,
)


class ManagerMatchesModel(RuleBasedStateMachine):
    """Model: name -> list of (value, deleted); revision = number of versions written."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.manager = ConfigManager(MemoryStorage())
        self.run(self.manager.start())
        self.model: dict[str, list[tuple[Any, bool]]] = {}
        self.revision = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def head(self, name: str) -> int:
        return len(self.model.get(name, []))

    def live(self, name: str) -> bool:
        return bool(self.model.get(name)) and not self.model[name][-1][1]

    def teardown(self) -> None:
        self.run(self.manager.close())
        self.loop.close()

    @rule(name=NAMES, value=VALUES, cas=st.none() | st.integers(0, 4))
    def put(self, name: str, value: Any, cas: int | None) -> None:
        if cas is not None and cas != self.head(name):
            expected_error: type[Exception] = AlreadyExists if cas == 0 else VersionConflict
            try:
                self.run(self.manager.put(name, value, expected_version=cas))
            except expected_error:
                return
            raise AssertionError("a stale expected version was accepted")
        record = self.run(self.manager.put(name, value, expected_version=cas))
        self.model.setdefault(name, []).append((value, False))
        self.revision += 1
        assert (record.version, record.revision) == (self.head(name), self.revision)

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        if not self.live(name):
            try:
                self.run(self.manager.delete(name))
            except NotFound:
                return
            raise AssertionError("deleting a missing config succeeded")
        self.run(self.manager.delete(name))
        self.model[name].append((None, True))
        self.revision += 1

    @rule(name=NAMES, to=st.integers(1, 6))
    def rollback(self, name: str, to: int) -> None:
        history = self.model.get(name, [])
        if to > len(history) or history[to - 1][1]:
            try:
                self.run(self.manager.rollback(name, to))
            except NotFound:
                return
            raise AssertionError("rollback to a missing version succeeded")
        record = self.run(self.manager.rollback(name, to))
        history.append((history[to - 1][0], False))
        self.revision += 1
        assert record.value == history[to - 1][0]

    @rule(name=NAMES, version=st.none() | st.integers(1, 6))
    def get(self, name: str, version: int | None) -> None:
        history = self.model.get(name, [])
        index = (version or len(history)) - 1
        if not 0 <= index < len(history) or history[index][1]:
            try:
                self.run(self.manager.get(name, version))
            except NotFound:
                return
            raise AssertionError("read a config the model does not have")
        assert self.run(self.manager.get(name, version)).value == history[index][0]

    @invariant()
    def listing_and_revision_match(self) -> None:
        page = self.run(self.manager.list_configs("", limit=1000))
        assert [r.name for r in page.items] == sorted(n for n in self.model if self.live(n))
        assert self.run(self.manager.revision()) == self.revision


ManagerMatchesModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30,
                                                 deadline=None)
test_manager_matches_model = ManagerMatchesModel.TestCase
