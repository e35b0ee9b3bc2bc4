"""The checker on hand-made histories: it must accept the right ones and reject the wrong."""

from __future__ import annotations

from aether_raft.linearizability import UNKNOWN, Operation, check_kv


def op(
    called: float,
    returned: float | None,
    kind: str,
    key: str = "x",
    value: object = None,
    expected: object = None,
    output: object = UNKNOWN,
) -> Operation:
    return Operation(0, called, returned, kind, key, value, expected, output)  # type: ignore[arg-type]


def test_sequential_history_is_linearizable() -> None:
    history = [
        op(0, 1, "put", value=1, output=None),
        op(2, 3, "get", output=1),
        op(4, 5, "cas", value=2, expected=1, output=True),
        op(6, 7, "get", output=2),
    ]
    assert check_kv(history).ok


def test_stale_read_after_a_completed_write_is_not() -> None:
    history = [
        op(0, 1, "put", value=1, output=None),
        op(2, 3, "put", value=2, output=None),
        op(4, 5, "get", output=1),  # reads the overwritten value after the write returned
    ]
    result = check_kv(history)
    assert not result.ok and result.key == "x"


def test_concurrent_operations_may_take_either_order() -> None:
    history = [
        op(0, 10, "put", value=1, output=None),
        op(1, 11, "put", value=2, output=None),
        op(12, 13, "get", output=1),  # put 2 then put 1: fine
    ]
    assert check_kv(history).ok


def test_failed_cas_must_be_explained() -> None:
    history = [
        op(0, 1, "put", value=1, output=None),
        op(2, 3, "cas", value=5, expected=1, output=False),  # nothing could have changed x
    ]
    assert not check_kv(history).ok


def test_unknown_outcome_may_have_happened() -> None:
    history = [
        op(0, 1, "put", value=1, output=None),
        op(2, None, "put", value=2),  # timed out
        op(5, 6, "get", output=2),
    ]
    assert check_kv(history).ok


def test_unknown_outcome_may_not_have_happened() -> None:
    history = [
        op(0, 1, "put", value=1, output=None),
        op(2, None, "put", value=2),
        op(5, 6, "get", output=1),
    ]
    assert check_kv(history).ok


def test_unknown_outcome_cannot_take_effect_before_its_call() -> None:
    history = [
        op(0, 1, "get", output=2),
        op(2, None, "put", value=2),
    ]
    assert not check_kv(history).ok


def test_keys_are_independent_but_each_is_checked() -> None:
    history = [
        op(0, 1, "put", key="a", value=1, output=None),
        op(0, 1, "put", key="b", value=1, output=None),
        op(2, 3, "get", key="a", output=1),
        op(2, 3, "get", key="b", output=None),  # b was written before: not linearizable
    ]
    result = check_kv(history)
    assert not result.ok and result.key == "b"
