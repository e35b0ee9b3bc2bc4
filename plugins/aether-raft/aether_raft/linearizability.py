"""A linearizability checker: Wing & Gong's search with Lowe's memoization (as porcupine).

A history is a list of :class:`Operation` — when the client called, when it got an
answer, what it asked and what it was told. It is linearizable when some order of the
operations, consistent with real time (an operation that returned before another was
called comes first), is a legal run of the sequential model.

An operation whose outcome is unknown (a timeout, a crash of the node that took it)
has ``returned = None``: it may have taken effect at any point after its call, or
never, and any answer it would have produced is accepted.

The key-value model is checked one key at a time (P-compositionality), which keeps
the search small.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

UNKNOWN: Any = object()  #: the ``output`` of an operation whose answer never came


@dataclass(frozen=True)
class Operation:
    client: int
    called: float
    returned: float | None  # None: outcome unknown (possibly applied, possibly not)
    op: str  # "get" | "put" | "cas"
    key: str
    value: Hashable = None  # put: the value; cas: the new value
    expected: Hashable = None  # cas: the value compared against
    output: Any = UNKNOWN  # get: the value read; cas: True/False; put: None
    id: int = 0  # the caller's name for the operation (reports only)
    #: Where the operation probably took effect (e.g. its log index). Only the order in
    #: which the search tries operations depends on it, never the verdict.
    order: float | None = None


def kv_step(state: Hashable, op: Operation) -> tuple[bool, Hashable]:
    """The sequential register of one key; ``None`` means absent."""
    if op.op == "get":
        return (op.output is UNKNOWN or op.output == state), state
    if op.op == "put":
        return True, op.value
    if op.op == "cas":
        swapped = state == op.expected
        if op.output is not UNKNOWN and op.output != swapped:
            return False, state
        return True, (op.value if swapped else state)
    raise ValueError(f"unknown operation {op.op!r}")


@dataclass
class Result:
    ok: bool
    key: str | None = None  # the first key whose history is not linearizable
    operations: int = 0


def check_register(ops: list[Operation], initial: Hashable = None) -> bool:
    """Whether one key's history is linearizable (an iterative depth-first search)."""
    ops = sorted(ops, key=lambda o: o.called)
    n = len(ops)
    inf = float("inf")
    rets = [inf if o.returned is None else o.returned for o in ops]
    orders = [inf if o.order is None else o.order for o in ops]
    known = 0
    for i, o in enumerate(ops):
        if o.returned is not None:
            known |= 1 << i
    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[int, Hashable]] = [(0, initial)]
    while stack:
        done, state = stack.pop()
        if done & known == known:
            return True
        # The earliest answer among pending operations bounds which may go next.
        horizon = inf
        candidates: list[int] = []
        for i in range(n):
            if done >> i & 1:
                continue
            if ops[i].called > horizon:
                break
            candidates.append(i)
            horizon = min(horizon, rets[i])
        # Depth first, the operation that answered first on top: a linearizable
        # history is then usually found without backtracking.
        candidates.sort(key=lambda i: (orders[i], rets[i], ops[i].called), reverse=True)
        for i in candidates:
            if ops[i].called > horizon:
                continue
            legal, after = kv_step(state, ops[i])
            if not legal:
                continue
            key = (done | 1 << i, after)
            if key not in seen:
                seen.add(key)
                stack.append(key)
    return False


def check_kv(history: Iterable[Operation]) -> Result:
    by_key: dict[str, list[Operation]] = defaultdict(list)
    count = 0
    for op in history:
        by_key[op.key].append(op)
        count += 1
    for key in sorted(by_key):
        if not check_register(by_key[key]):
            return Result(ok=False, key=key, operations=count)
    return Result(ok=True, operations=count)
