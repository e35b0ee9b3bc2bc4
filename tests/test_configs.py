"""Versioned configs: versions, compare-and-set, delete, rollback, diff, listing."""

from __future__ import annotations

import pytest

from aether_core import ConfigManager
from aether_core.errors import AlreadyExists, BadRequest, NotFound, VersionConflict


async def test_versions_count_up_and_carry_author_comment_and_time(
    manager: ConfigManager,
) -> None:
    v1 = await manager.put("billing/database", {"port": 5432}, author="ann", comment="first")
    v2 = await manager.put("billing/database", {"port": 6432}, author="bob")
    assert (v1.version, v2.version) == (1, 2)
    assert (v1.revision, v2.revision) == (1, 2)
    assert v1.author == "ann" and v1.comment == "first" and v2.timestamp > v1.timestamp
    latest = await manager.get("billing/database")
    assert latest.value == {"port": 6432} and latest.version == 2
    assert (await manager.get("billing/database", 1)).value == {"port": 5432}


async def test_compare_and_set_refuses_a_stale_version_and_changes_nothing(
    manager: ConfigManager,
) -> None:
    await manager.put("a", 1)
    await manager.put("a", 2, expected_version=1)
    with pytest.raises(VersionConflict) as info:
        await manager.put("a", 3, expected_version=1)
    assert info.value.current_version == 2 and info.value.expected_version == 1
    assert info.value.to_problem()["status"] == 409
    assert (await manager.get("a")).value == 2
    assert await manager.revision() == 2


async def test_create_refuses_an_existing_name(manager: ConfigManager) -> None:
    await manager.create("a", {})
    with pytest.raises(AlreadyExists):
        await manager.create("a", {"again": True})
    assert len(await manager.versions("a")) == 1


async def test_delete_is_a_tombstone_that_keeps_history(manager: ConfigManager) -> None:
    await manager.put("svc/x", {"v": 1})
    tomb = await manager.delete("svc/x")
    assert tomb.deleted and tomb.version == 2
    with pytest.raises(NotFound, match="deleted at version 2"):
        await manager.get("svc/x")
    assert (await manager.get("svc/x", 1)).value == {"v": 1}
    assert (await manager.list_configs("svc/")).items == []
    with pytest.raises(NotFound):
        await manager.delete("svc/x")
    again = await manager.put("svc/x", {"v": 3})
    assert again.version == 3  # versions are never reused
    assert [r.deleted for r in await manager.versions("svc/x")] == [False, True, False]


async def test_rollback_writes_a_new_version_equal_to_an_old_one(
    manager: ConfigManager,
) -> None:
    await manager.put("a", {"n": 1})
    await manager.put("a", {"n": 2})
    back = await manager.rollback("a", 1, author="ops")
    assert back.version == 3 and back.value == {"n": 1}
    assert back.comment == "rollback to version 1" and back.meta["rollback_of"] == 1
    with pytest.raises(NotFound):
        await manager.rollback("a", 9)
    with pytest.raises(VersionConflict):
        await manager.rollback("a", 2, expected_version=2)
    assert (await manager.get("a")).version == 3


async def test_diff_is_a_json_patch_between_two_versions(manager: ConfigManager) -> None:
    await manager.put("a", {"host": "db", "port": 5432, "tags": ["x"]})
    await manager.put("a", {"host": "db2", "tags": ["x", "y"]})
    diff = await manager.diff("a", 1, 2)
    ops = {(op["op"], op["path"]) for op in diff["patch"]}
    assert ops == {("replace", "/host"), ("remove", "/port"), ("add", "/tags/1")}
    assert (await manager.diff("a", 2, 2))["patch"] == []
    with pytest.raises(NotFound):
        await manager.diff("a", 1, 7)


async def test_listing_by_prefix_is_paginated_in_name_order(manager: ConfigManager) -> None:
    names = [f"app/{i:02d}" for i in range(7)] + ["apple", "other"]
    for name in names:
        await manager.put(name, {})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await manager.list_configs("app/", cursor=cursor, limit=3)
        seen += [r.name for r in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"app/{i:02d}" for i in range(7)] and pages == 3
    for bad in ("%%%", "%%%not-a-cursor", "bm90IGEgbmFtZQ", "Lw=="):
        with pytest.raises(BadRequest, match="cursor"):
            await manager.list_configs(cursor=bad)
    with pytest.raises(BadRequest):
        await manager.list_configs(limit=0)


@pytest.mark.parametrize(
    "name", ["", "/a", "a/", "a//b", "a b", "ü", "x" * 300, "a/../b", "..", "a/.", "./a"]
)
async def test_bad_names_are_refused_and_change_nothing(
    manager: ConfigManager, name: str
) -> None:
    with pytest.raises(BadRequest, match="name"):
        await manager.put(name, 1)
    assert await manager.revision() == 0


async def test_dots_inside_a_segment_are_fine(manager: ConfigManager) -> None:
    assert (await manager.put("svc/v1.2/.env", 1)).name == "svc/v1.2/.env"


async def test_values_that_are_not_json_are_refused(manager: ConfigManager) -> None:
    with pytest.raises(BadRequest, match="not JSON"):
        await manager.put("a", {"when": object()})
    assert await manager.revision() == 0


async def test_reading_what_never_existed_is_not_found(manager: ConfigManager) -> None:
    with pytest.raises(NotFound):
        await manager.get("nope")
    with pytest.raises(NotFound):
        await manager.versions("nope")
    await manager.put("a", 1)
    with pytest.raises(NotFound, match="version 5"):
        await manager.get("a", 5)
