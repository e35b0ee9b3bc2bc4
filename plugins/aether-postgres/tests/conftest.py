"""Fixtures for the Postgres storage tests: a real server, a schema of each test's own.

Postgres must be running on 127.0.0.1:5432 (or at ``$AETHER_TEST_POSTGRES_DSN``); when
it is not, every test here FAILS with how to start it — never skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest
from aether_postgres import PostgresSettings, PostgresStorage
from psycopg import sql

DSN = os.environ.get("AETHER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
HOW_TO_START = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start "
    "(or run scripts/services.sh, which also installs it where it can)"
)

MakeStorage = Callable[..., Awaitable[PostgresStorage]]


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    try:
        with psycopg.connect(DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {DSN} ({str(exc).strip().splitlines()[0]}); "
                    f"{HOW_TO_START}", pytrace=False)
    return DSN


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A schema name no other test uses; dropped afterwards."""
    schema = f"aether_t_{uuid.uuid4().hex[:12]}"
    yield schema
    drop_schema(pg_dsn, schema)


@pytest.fixture
async def make_storage(pg_dsn: str, pg_schema: str) -> AsyncIterator[MakeStorage]:
    """Open instances over the test's schema (each one a separate "node")."""
    opened: list[PostgresStorage] = []

    async def make(**overrides: Any) -> PostgresStorage:
        values: dict[str, Any] = {"dsn": pg_dsn, "schema": pg_schema, "pool_size": 4,
                                  "pool_min_size": 1, **overrides}
        store = PostgresStorage(PostgresSettings(**values), node_name=f"n{len(opened) + 1}")
        opened.append(store)
        await store.open()
        return store

    yield make
    for store in opened:
        await store.close()
