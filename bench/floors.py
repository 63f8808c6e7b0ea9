"""Raw-driver floors for AW-1: the least code that does each step's work, straight on the
driver (asyncpg for PostgreSQL, the sqlite3 module for SQLite), on tables equivalent to
composite-store's (same columns, types and indexes) in tables of their own.

Each step does the same logical work as the store: a batch of messages is one multi-row
upsert plus the thread's updated_at in one transaction; a page returns decoded rows; a
snapshot persist is one upsert that bumps the version; a load decodes the JSON. What the
floor skips is what makes a library a library: argument checks, model objects, the total
count of a page, error translation.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

# the floor's databases are set up as composite-store sets up its own
from composite_store.engines import LZ4_IF_AVAILABLE, SQLITE_PRAGMAS

PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_threads (id text PRIMARY KEY, updated_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS floor_messages (
    id text PRIMARY KEY, thread_id text NOT NULL REFERENCES floor_threads(id) ON DELETE CASCADE,
    role text NOT NULL, content jsonb NOT NULL, resource_id text, type text NOT NULL,
    created_at timestamptz NOT NULL);
CREATE INDEX IF NOT EXISTS ix_floor_messages ON floor_messages (thread_id, created_at);
CREATE TABLE IF NOT EXISTS floor_runs (
    workflow_name text, run_id text, snapshot jsonb NOT NULL, resource_id text, status text,
    version integer NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
    PRIMARY KEY (workflow_name, run_id));
"""
PG_DROP = "DROP TABLE IF EXISTS floor_messages, floor_threads, floor_runs"

COLUMNS = "id, thread_id, role, content, resource_id, type, created_at"


def _upsert_messages_sql(rows: int, placeholder: Any) -> str:
    values = ", ".join(
        "(" + ", ".join(placeholder(r * 7 + c) for c in range(7)) + ")" for r in range(rows)
    )
    return (
        f"INSERT INTO floor_messages ({COLUMNS}) VALUES {values} ON CONFLICT (id) DO UPDATE SET "
        "thread_id = excluded.thread_id, role = excluded.role, content = excluded.content, "
        "resource_id = excluded.resource_id, type = excluded.type"
    )


def _page_sql(p: Any) -> str:
    return (
        f"SELECT {COLUMNS} FROM floor_messages WHERE thread_id = {p(0)} "
        f"ORDER BY created_at DESC, id DESC LIMIT {p(1)}"
    )


def _context_sql(p: Any) -> str:
    """The page and the include windows (anchor, 2 before, 2 after) in one statement; the
    anchor's thread and time are scalar subqueries so each window is an index range scan."""
    thread = f"(SELECT thread_id FROM floor_messages WHERE id = {p(2)})"
    at = f"(SELECT created_at FROM floor_messages WHERE id = {p(2)})"
    cols = "id, thread_id, role, content, resource_id, type, created_at"
    return (
        f"SELECT * FROM ({_page_sql(p)}) AS page UNION ALL "
        f"SELECT {cols} FROM floor_messages WHERE id = {p(2)} UNION ALL "
        f"SELECT * FROM (SELECT {cols} FROM floor_messages WHERE thread_id = {thread} "
        f"AND created_at <= {at} AND (created_at, id) < ({at}, {p(2)}) "
        f"ORDER BY created_at DESC, id DESC LIMIT 2) AS before UNION ALL "
        f"SELECT * FROM (SELECT {cols} FROM floor_messages WHERE thread_id = {thread} "
        f"AND created_at >= {at} AND (created_at, id) > ({at}, {p(2)}) "
        f"ORDER BY created_at, id LIMIT 2) AS after"
    )


PERSIST_SQL = (
    "INSERT INTO floor_runs (workflow_name, run_id, snapshot, status, version, created_at, "
    "updated_at) VALUES ({0}, {1}, {2}, {3}, 1, {4}, {4}) ON CONFLICT (workflow_name, run_id) "
    "DO UPDATE SET snapshot = excluded.snapshot, status = excluded.status, "
    "version = floor_runs.version + 1, updated_at = excluded.updated_at"
)
LOAD_SQL = "SELECT snapshot FROM floor_runs WHERE workflow_name = {0} AND run_id = {1}"


def _message_args(batch: list[dict[str, Any]], timestamp: Any) -> list[Any]:
    """The multi-row upsert's arguments, row by row in ``COLUMNS`` order."""
    return [
        value
        for m in batch
        for value in (
            m["id"],
            m["thread_id"],
            m["role"],
            json.dumps(m["content"]),
            m["resource_id"],
            m["type"],
            timestamp(m["created_at"]),
        )
    ]


def _decode(rows: list[Any]) -> int:
    return len([json.loads(row[3]) for row in rows])


async def _pg_pool(dsn: str) -> asyncpg.Pool:
    """A pool whose sessions compress large values as composite-store's do (lz4 where the
    server has it, engines._compress_with_lz4). Set at connection start, so that the pool's
    RESET ALL on release keeps it."""
    probe = await asyncpg.connect(dsn)
    try:
        lz4 = await probe.fetchval(LZ4_IF_AVAILABLE)  # "lz4", or None: no row
    finally:
        await probe.close()
    settings = {"default_toast_compression": "lz4"} if lz4 else {}
    return await asyncpg.create_pool(dsn, min_size=1, max_size=5, server_settings=settings)


class AsyncpgFloor:
    name = "asyncpg floor"
    backend = "postgresql"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def setup(self, thread_id: str) -> None:
        self.pool = await _pg_pool(self.dsn)
        async with self.pool.acquire() as conn:
            await conn.execute(PG_DROP)
            await conn.execute(PG_SCHEMA)
            await conn.executemany(
                "INSERT INTO floor_threads (id, updated_at) VALUES ($1, now())",
                [(thread_id,), (f"{thread_id}-warm",)],
            )

    def _pool(self) -> asyncpg.Pool:
        assert self.pool is not None
        return self.pool

    async def save_messages(self, batch: list[dict[str, Any]]) -> None:
        sql = _upsert_messages_sql(len(batch), lambda i: f"${i + 1}")
        args = _message_args(batch, lambda at: at)
        async with self._pool().acquire() as conn, conn.transaction():
            await conn.execute(sql, *args)
            await conn.execute(
                "UPDATE floor_threads SET updated_at = now() WHERE id = $1", batch[0]["thread_id"]
            )

    async def newest_page(self, thread_id: str, per_page: int, total: bool = False) -> int:
        rows = await self._pool().fetch(_page_sql(lambda i: f"${i + 1}"), thread_id, per_page)
        return _decode(rows)

    async def page_with_context(
        self, thread_id: str, per_page: int, include_id: str, total: bool = False
    ) -> int:
        sql = _context_sql(lambda i: f"${i + 1}")
        return _decode(await self._pool().fetch(sql, thread_id, per_page, include_id))

    async def persist(self, workflow: str, run_id: str, snapshot: dict[str, Any]) -> None:
        sql = PERSIST_SQL.format("$1", "$2", "$3", "$4", "$5")
        await self._pool().execute(
            sql, workflow, run_id, json.dumps(snapshot), snapshot.get("status"), datetime.now(UTC)
        )

    async def load(self, workflow: str, run_id: str) -> dict[str, Any] | None:
        text = await self._pool().fetchval(LOAD_SQL.format("$1", "$2"), workflow, run_id)
        return None if text is None else json.loads(text)

    async def teardown(self) -> None:
        pool = self._pool()
        async with pool.acquire() as conn:
            await conn.execute(PG_DROP)
        await pool.close()


SQLITE_SCHEMA = """
CREATE TABLE floor_threads (id TEXT PRIMARY KEY, updated_at TEXT NOT NULL);
CREATE TABLE floor_messages (
    id TEXT PRIMARY KEY, thread_id TEXT NOT NULL REFERENCES floor_threads(id) ON DELETE CASCADE,
    role TEXT NOT NULL, content TEXT NOT NULL, resource_id TEXT, type TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE INDEX ix_floor_messages ON floor_messages (thread_id, created_at);
CREATE TABLE floor_runs (
    workflow_name TEXT, run_id TEXT, snapshot TEXT NOT NULL, resource_id TEXT, status TEXT,
    version INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (workflow_name, run_id));
"""


class Sqlite3Floor:
    """The sqlite3 module, called directly on the event loop's thread (no thread hop)."""

    name = "sqlite3 floor"
    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def connect(self) -> sqlite3.Connection:
        """A connection set up as composite-store sets up its own (engines.py)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("busy_timeout=30000", *SQLITE_PRAGMAS):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    async def setup(self, thread_id: str) -> None:
        self.path.unlink(missing_ok=True)
        self.conn = self.connect()
        self.conn.executescript(SQLITE_SCHEMA)
        now = datetime.now(UTC).isoformat()
        self.conn.executemany(
            "INSERT INTO floor_threads VALUES (?, ?)",
            [(thread_id, now), (f"{thread_id}-warm", now)],
        )

    def _conn(self) -> sqlite3.Connection:
        assert self.conn is not None
        return self.conn

    async def save_messages(self, batch: list[dict[str, Any]]) -> None:
        conn = self._conn()
        args = _message_args(batch, datetime.isoformat)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_upsert_messages_sql(len(batch), lambda i: "?"), args)
        conn.execute(
            "UPDATE floor_threads SET updated_at = ? WHERE id = ?",
            (datetime.now(UTC).isoformat(), batch[0]["thread_id"]),
        )
        conn.execute("COMMIT")
        await asyncio.sleep(0)

    async def newest_page(self, thread_id: str, per_page: int, total: bool = False) -> int:
        rows = self._conn().execute(_page_sql(lambda i: "?"), (thread_id, per_page)).fetchall()
        return _decode(rows)

    async def page_with_context(
        self, thread_id: str, per_page: int, include_id: str, total: bool = False
    ) -> int:
        params = (thread_id, per_page) + (include_id,) * 9
        rows = self._conn().execute(_context_sql(lambda i: "?"), params).fetchall()
        return _decode(rows)

    async def persist(self, workflow: str, run_id: str, snapshot: dict[str, Any]) -> None:
        now = datetime.now(UTC).isoformat()
        self._conn().execute(
            PERSIST_SQL.format("?", "?", "?", "?", "?"),
            (workflow, run_id, json.dumps(snapshot), snapshot.get("status"), now, now),
        )

    async def load(self, workflow: str, run_id: str) -> dict[str, Any] | None:
        row = self._conn().execute(LOAD_SQL.format("?", "?"), (workflow, run_id)).fetchone()
        return None if row is None else json.loads(row[0])

    async def teardown(self) -> None:
        self._conn().close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


# -- spans (O1, O2) --------------------------------------------------------------------------
# Every column composite-store's spans table has: the floor stores and reads the same rows.
_EXTRA = (
    "error, entity_type, entity_id, entity_name, user_id, resource_id, run_id, session_id, "
    "thread_id, environment, service_name"
)
SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, name, span_type, started_at, ended_at, attributes, "
    f"input, output, created_at, updated_at, {_EXTRA}"
)
N_SPAN_COLUMNS = 23


def _span_values(row: dict[str, Any], time: Any) -> tuple[Any, ...]:
    return (
        row["trace_id"],
        row["span_id"],
        row["parent_span_id"],
        row["name"],
        row["span_type"],
        time(row["started_at"]),
        time(row["ended_at"]),
        json.dumps(row["attributes"]),
        json.dumps(row["input"]),
        json.dumps(row["output"]),
        time(row["created_at"]),
        time(row["updated_at"]),
        *([None] * 11),  # error and the ten filter columns: unset in AW-1's spans
    )


def _insert_spans_sql(rows: int, placeholder: Any) -> str:
    n = N_SPAN_COLUMNS
    values = ", ".join(
        "(" + ", ".join(placeholder(r * n + c) for c in range(n)) + ")" for r in range(rows)
    )
    updates = ", ".join(f"{c} = excluded.{c}" for c in SPAN_COLUMNS.replace(" ", "").split(",")[2:])
    return (  # spans are versioned by updated_at, as composite-store's are
        f"INSERT INTO floor_spans ({SPAN_COLUMNS}) VALUES {values} "
        f"ON CONFLICT (trace_id, span_id) DO UPDATE SET {updates} "
        "WHERE floor_spans.updated_at <= excluded.updated_at"
    )


def _decode_spans(rows: list[Any]) -> int:
    return len([[json.loads(row[i]) for i in (7, 8, 9)] for row in rows])


PG_SPANS = """
CREATE TABLE floor_spans (
    trace_id text, span_id text, parent_span_id text, name text NOT NULL, span_type text,
    started_at timestamptz NOT NULL, ended_at timestamptz, attributes jsonb NOT NULL,
    input jsonb, output jsonb, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
    error jsonb, entity_type text, entity_id text, entity_name text, user_id text,
    resource_id text, run_id text, session_id text, thread_id text, environment text,
    service_name text, PRIMARY KEY (trace_id, span_id));
"""
SPAN_SELECT = f"SELECT {SPAN_COLUMNS} FROM floor_spans WHERE trace_id = {{0}} ORDER BY started_at"


async def _pg_setup_spans(floor: AsyncpgFloor) -> None:
    floor.pool = floor.pool or await _pg_pool(floor.dsn)
    async with floor.pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS floor_spans")
        await conn.execute(PG_SPANS)


class _PgSpans:
    async def setup_spans(self: Any) -> None:
        await _pg_setup_spans(self)

    async def create_spans(self: Any, batch: list[dict[str, Any]]) -> None:
        args = [v for row in batch for v in _span_values(row, lambda t: t)]
        sql = _insert_spans_sql(len(batch), lambda i: f"${i + 1}")
        await self._pool().execute(sql, *args)

    async def get_trace(self: Any, trace_id: str) -> int:
        return _decode_spans(await self._pool().fetch(SPAN_SELECT.format("$1"), trace_id))

    async def teardown_spans(self: Any) -> None:
        async with self._pool().acquire() as conn:
            await conn.execute("DROP TABLE IF EXISTS floor_spans")
        await self._pool().close()
        self.pool = None


SQLITE_SPANS = (
    PG_SPANS.replace("timestamptz", "TEXT").replace("jsonb", "TEXT").replace("text", "TEXT")
)


class _SqliteSpans:
    async def setup_spans(self: Any) -> None:
        if self.conn is None:
            self.path.unlink(missing_ok=True)
            self.conn = self.connect()
        self.conn.executescript("DROP TABLE IF EXISTS floor_spans;" + SQLITE_SPANS)

    async def create_spans(self: Any, batch: list[dict[str, Any]]) -> None:
        args = [v for row in batch for v in _span_values(row, lambda t: t.isoformat())]
        # 23 parameters a row: stay under SQLite's 32,766 bound parameters per statement
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        step, n = 1000, N_SPAN_COLUMNS
        for start in range(0, len(batch), step):
            part = args[start * n : (start + step) * n]
            conn.execute(_insert_spans_sql(len(part) // n, lambda i: "?"), part)
        conn.execute("COMMIT")
        await asyncio.sleep(0)

    async def get_trace(self: Any, trace_id: str) -> int:
        rows = self._conn().execute(SPAN_SELECT.format("?"), (trace_id,)).fetchall()
        return _decode_spans(rows)

    async def teardown_spans(self: Any) -> None:
        await self.teardown()
        self.conn = None


class AsyncpgSpanFloor(_PgSpans, AsyncpgFloor):
    pass


class Sqlite3SpanFloor(_SqliteSpans, Sqlite3Floor):
    pass


class ClickHouseFloor:
    """clickhouse-driver's native block INSERT and a FINAL select, called directly."""

    name = "clickhouse-driver floor"
    backend = "clickhouse"
    TABLE = (
        "CREATE TABLE floor_spans (trace_id String, span_id String, "
        "parent_span_id Nullable(String), name String, span_type Nullable(String), "
        "started_at Int64, ended_at Nullable(Int64), attributes String, "
        "input Nullable(String), output Nullable(String), created_at Int64, updated_at Int64, "
        "error Nullable(String), entity_type Nullable(String), entity_id Nullable(String), "
        "entity_name Nullable(String), user_id Nullable(String), resource_id Nullable(String), "
        "run_id Nullable(String), session_id Nullable(String), thread_id Nullable(String), "
        "environment Nullable(String), service_name Nullable(String)) "
        "ENGINE = ReplacingMergeTree(updated_at) ORDER BY (trace_id, span_id)"
    )

    def __init__(self, url: str) -> None:
        from clickhouse_driver import Client

        self.client = Client.from_url(url.replace("clickhouse+native://", "clickhouse://"))

    async def setup_spans(self) -> None:
        self.client.execute("DROP TABLE IF EXISTS floor_spans")
        self.client.execute(self.TABLE)

    async def create_spans(self, batch: list[dict[str, Any]]) -> None:
        from composite_store.sqltypes import to_micros

        rows = [_span_values(row, to_micros) for row in batch]
        self.client.execute(f"INSERT INTO floor_spans ({SPAN_COLUMNS}) VALUES", rows)
        await asyncio.sleep(0)

    async def get_trace(self, trace_id: str) -> int:
        sql = SPAN_SELECT.replace("FROM floor_spans", "FROM floor_spans FINAL")
        rows = self.client.execute(sql.format("%(t)s"), {"t": trace_id})
        await asyncio.sleep(0)
        return _decode_spans(rows)

    async def teardown_spans(self) -> None:
        self.client.execute("DROP TABLE IF EXISTS floor_spans")
        self.client.disconnect()
