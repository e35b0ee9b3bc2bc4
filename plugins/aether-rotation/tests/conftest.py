"""Fixtures for the rotation tests: the real Postgres at 127.0.0.1:5432, a throw-away role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    try:
        with psycopg.connect(ADMIN_DSN) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"the rotation tests need Postgres at 127.0.0.1:5432 (user postgres, "
                    f"db test, trust auth); start it with scripts/services.sh ({exc})")
    return ADMIN_DSN


@pytest.fixture
def pg_role(pg_admin_dsn: str) -> Iterator[str]:
    role = f"aether_rot_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'initial-password'").format(
            sql.Identifier(role)))
    yield role
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
