"""Versioned schema migrations, applied at :meth:`PostgresStorage.open`.

Every node runs :func:`migrate` when it starts. A transaction-scoped advisory lock keyed
on the schema name makes concurrent starts take turns: the first applies what is
missing, the others then find nothing left to do. DDL in Postgres is transactional, so a
migration that fails leaves the schema as it was.

Never edit a migration that has shipped; append a new one.
"""

from __future__ import annotations

import hashlib
from typing import LiteralString

import psycopg
import structlog
from psycopg import sql
from psycopg.rows import TupleRow

from aether_core.errors import StorageFault

log = structlog.get_logger("aether.postgres")

# Templates for psycopg.sql: {s} becomes the quoted schema identifier, {channel} the
# notification channel as a string literal.
_V1: LiteralString = """
CREATE TABLE {s}.meta (
    id                 integer PRIMARY KEY CHECK (id = 1),
    revision           bigint  NOT NULL,
    applied_index      bigint  NOT NULL,
    compacted_revision bigint  NOT NULL
);
INSERT INTO {s}.meta VALUES (1, 0, 0, 0);

CREATE TABLE {s}.records (
    revision bigint  PRIMARY KEY,
    kind     text    COLLATE "C" NOT NULL,
    name     text    COLLATE "C" NOT NULL,
    version  bigint  NOT NULL,
    deleted  boolean NOT NULL,
    -- value, author, comment, timestamp, meta; json (not jsonb) keeps the text exactly
    -- as written, and accepts the escaped NUL character that jsonb refuses.
    body     json    NOT NULL,
    UNIQUE (kind, name, version)
);

CREATE TABLE {s}.heads (
    kind     text    COLLATE "C" NOT NULL,
    name     text    COLLATE "C" NOT NULL,
    version  bigint  NOT NULL,
    revision bigint  NOT NULL,
    deleted  boolean NOT NULL,
    PRIMARY KEY (kind, name)
);

-- One command, one round trip, one transaction. The row lock on meta serialises every
-- writer of the deployment (on any node), so revisions are gap-free and the version
-- check below reads heads as the previous commit left them.
CREATE FUNCTION {s}.commit_writes(
    p_writes json, p_log_index bigint,
    OUT o_status text, OUT o_first bigint, OUT o_at integer, OUT o_current bigint
) LANGUAGE plpgsql AS $fn$
DECLARE
    -- p_writes: [[kind, name, expected_version, deleted, body], ...]
    ws  json[] := ARRAY(SELECT json_array_elements(p_writes));
    n   integer := coalesce(array_length(ws, 1), 0);
    m   record;
    cur bigint;
    rev bigint;
BEGIN
    SELECT * INTO m FROM {s}.meta WHERE id = 1 FOR UPDATE;
    o_first := m.revision + 1;
    o_at := 0;
    o_current := 0;
    IF p_log_index IS NOT NULL THEN
        IF p_log_index <= m.applied_index THEN
            o_status := 'replayed';
            RETURN;
        END IF;
        UPDATE {s}.meta SET applied_index = p_log_index WHERE id = 1;
    END IF;
    FOR i IN 1 .. n LOOP
        SELECT h.version INTO cur FROM {s}.heads h
         WHERE h.kind = ws[i]->>0 AND h.name = ws[i]->>1;
        cur := coalesce(cur, 0);
        IF cur <> (ws[i]->>2)::bigint THEN
            o_status := 'conflict';
            o_at := i;
            o_current := cur;
            RETURN;
        END IF;
    END LOOP;
    rev := m.revision;
    FOR i IN 1 .. n LOOP
        rev := rev + 1;
        INSERT INTO {s}.records (revision, kind, name, version, deleted, body)
        VALUES (rev, ws[i]->>0, ws[i]->>1, (ws[i]->>2)::bigint + 1, (ws[i]->>3)::boolean,
                ws[i]->4);
        INSERT INTO {s}.heads AS h (kind, name, version, revision, deleted)
        VALUES (ws[i]->>0, ws[i]->>1, (ws[i]->>2)::bigint + 1, rev, (ws[i]->>3)::boolean)
        ON CONFLICT (kind, name) DO UPDATE
            SET version = excluded.version, revision = excluded.revision,
                deleted = excluded.deleted;
    END LOOP;
    IF n > 0 THEN
        UPDATE {s}.meta SET revision = rev WHERE id = 1;
        -- Delivered at commit, to every node listening; the payload is only a hint,
        -- listeners re-read the records table by revision.
        PERFORM pg_notify({channel}, rev::text);
    END IF;
    o_status := 'ok';
END
$fn$;
"""

# Group commit: the commands one node has queued while its previous transaction was
# flushing, committed in one transaction (one meta row lock, one WAL flush, one NOTIFY
# for all of them). Each command is checked and applied in turn, exactly as if it had
# been its own commit_writes() call: a command's version checks all run before any of
# its rows are written, so a conflict leaves nothing to undo and the others go on;
# revisions stay gap-free because only applied commands take any. Returns one row per
# command (o_i: its 1-based position in p_batch). commit_writes() stays, so nodes of the
# previous release keep working beside this one: both take the same lock.
_V2: LiteralString = """
CREATE FUNCTION {s}.commit_batch(p_batch json)
RETURNS TABLE (o_i integer, o_status text, o_first bigint, o_at integer, o_current bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    -- p_batch: [[log_index or null, [[kind, name, expected_version, deleted, body], ...]], ...]
    m       record;
    rev     bigint;
    applied bigint;
    item    json;
    pos     bigint;
    idx     bigint;
    ws      json[];
    n       integer;
    cur     bigint;
BEGIN
    SELECT * INTO m FROM {s}.meta WHERE id = 1 FOR UPDATE;
    rev := m.revision;
    applied := m.applied_index;
    FOR item, pos IN SELECT e.value, e.ordinality
                       FROM json_array_elements(p_batch) WITH ORDINALITY e LOOP
        o_i := pos;
        o_first := rev + 1;
        o_at := 0;
        o_current := 0;
        o_status := 'ok';
        idx := (item->>0)::bigint;
        IF idx IS NOT NULL THEN
            IF idx <= applied THEN
                o_status := 'replayed';
                RETURN NEXT;
                CONTINUE;
            END IF;
            applied := idx;
        END IF;
        ws := ARRAY(SELECT json_array_elements(item->1));
        n := coalesce(array_length(ws, 1), 0);
        FOR i IN 1 .. n LOOP
            SELECT h.version INTO cur FROM {s}.heads h
             WHERE h.kind = ws[i]->>0 AND h.name = ws[i]->>1;
            cur := coalesce(cur, 0);
            IF cur <> (ws[i]->>2)::bigint THEN
                o_status := 'conflict';
                o_at := i;
                o_current := cur;
                EXIT;
            END IF;
        END LOOP;
        IF o_status = 'ok' THEN
            FOR i IN 1 .. n LOOP
                rev := rev + 1;
                INSERT INTO {s}.records (revision, kind, name, version, deleted, body)
                VALUES (rev, ws[i]->>0, ws[i]->>1, (ws[i]->>2)::bigint + 1,
                        (ws[i]->>3)::boolean, ws[i]->4);
                INSERT INTO {s}.heads AS h (kind, name, version, revision, deleted)
                VALUES (ws[i]->>0, ws[i]->>1, (ws[i]->>2)::bigint + 1, rev,
                        (ws[i]->>3)::boolean)
                ON CONFLICT (kind, name) DO UPDATE
                    SET version = excluded.version, revision = excluded.revision,
                        deleted = excluded.deleted;
            END LOOP;
        END IF;
        RETURN NEXT;
    END LOOP;
    IF rev <> m.revision OR applied <> m.applied_index THEN
        UPDATE {s}.meta SET revision = rev, applied_index = applied WHERE id = 1;
    END IF;
    IF rev <> m.revision THEN
        PERFORM pg_notify({channel}, rev::text);
    END IF;
END
$fn$;
"""

#: (version, description, SQL template). Append only.
MIGRATIONS: list[tuple[int, str, LiteralString]] = [
    (1, "records, heads, meta and commit_writes()", _V1),
    (2, "commit_batch(): group commit of several commands", _V2),
]
LATEST = MIGRATIONS[-1][0]


def lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``schema`` (hashtext is not stable
    across Postgres versions, so the key is computed here)."""
    digest = hashlib.blake2b(f"aether-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def channel_for(schema: str) -> str:
    return f"aether_{schema}"


def _render(template: LiteralString, schema: str) -> sql.Composed:
    return sql.SQL(template).format(
        s=sql.Identifier(schema), channel=sql.Literal(channel_for(schema))
    )


async def migrate(conn: psycopg.AsyncConnection[TupleRow], schema: str) -> list[int]:
    """Bring ``schema`` to :data:`LATEST`; returns the versions this call applied."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema),))
        await conn.execute(_render("CREATE SCHEMA IF NOT EXISTS {s}", schema))
        await conn.execute(_render(
            "CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())", schema))
        cur = await conn.execute(_render("SELECT version FROM {s}.schema_migrations", schema))
        done = {int(row[0]) for row in await cur.fetchall()}
        newest = max(done, default=0)
        if newest > LATEST:
            raise StorageFault(
                f"postgres schema {schema!r} is at migration {newest}, newer than this "
                f"aether-postgres knows ({LATEST}); upgrade aether-postgres on this node"
            )
        for version, description, template in MIGRATIONS:
            if version in done:
                continue
            await conn.execute(_render(template, schema))
            await conn.execute(
                _render("INSERT INTO {s}.schema_migrations (version, description) "
                        "VALUES (%s, %s)", schema),
                (version, description),
            )
            applied.append(version)
    if applied:
        log.info("postgres schema migrated", schema=schema, applied=applied)
    return applied
