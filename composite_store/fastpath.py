"""Hot statements run straight on the driver connection.

SQLAlchemy compiles each statement once per engine: its SQL text, the order of its bound
parameters and the type conversions it would apply on the way in and out. Running that on
the driver connection skips SQLAlchemy's per-call execution context and result machinery,
which cost more than the statement itself for the small, indexed statements on the critical
path (~0.1 ms each against asyncpg's ~0.2 ms round trip, ~30 µs against SQLite's ~10 µs).

Connections still come from SQLAlchemy's pool (its checkout hooks, pre-ping and invalidation
stay in charge); only the execution is ours. PostgreSQL (asyncpg) and the inline SQLite
driver have a fast path; on any other driver the same statement goes through SQLAlchemy, so
a store writes one code path for all of them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Insert, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from composite_store.engines import WRITE_TRANSACTION, autocommit
from composite_store.errors import CompositeStoreError

Processor = Callable[[Any], Any] | None

# Driver exceptions that mean "this connection is gone": the pool must forget it.
_ASYNCPG_DISCONNECTS = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InternalClientError,  # the protocol is stuck: a killed backend
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InvalidCatalogNameError,  # no such database
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # login refused
    ConnectionError,
    OSError,
    TimeoutError,
)
_SQLITE_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
# Errors after which an asyncpg connection is known to be usable: the server reported a
# failed statement, or the store raised its own error between statements.
_CONNECTION_STILL_SANE = (asyncpg.exceptions.PostgresError, CompositeStoreError)
# What a fast path can raise from its driver, for the stores' error translation.
RAW_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    sqlite3.Error,
)
RAW_DISCONNECTS: tuple[type[BaseException], ...] = _ASYNCPG_DISCONNECTS


class Compiled:
    """One statement compiled for one dialect, with SQLAlchemy's own type processors."""

    __slots__ = ("_binds", "_results", "keys", "sql", "statement")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if "POSTCOMPILE" in compiled.string:
            raise TypeError("fast-path statements take no expanding parameters")
        self.statement = statement
        self.sql = compiled.string
        binds = compiled.binds
        order = compiled.positiontup or []
        self._binds: list[tuple[str, Any, Processor]] = [
            (
                name,
                binds[name].effective_value,
                binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in order
        ]
        columns = list(getattr(statement, "exported_columns", ()))
        self.keys: tuple[str, ...] = tuple(str(col.key) for col in columns)
        self._results: list[Processor] = [
            col.type.dialect_impl(dialect).result_processor(dialect, None) for col in columns
        ]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """Positional driver arguments, converted as SQLAlchemy would convert them."""
        out = []
        for name, default, process in self._binds:
            value = params.get(name, default)
            out.append(value if process is None or value is None else process(value))
        return out

    def convert(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Driver rows to Python values, as SQLAlchemy's result would give them."""
        processors = self._results
        if not any(processors):
            return [tuple(row) for row in rows]
        pairs = list(enumerate(processors))
        return [
            tuple(
                value if p is None or value is None else p(value)
                for (_, p), value in zip(pairs, row, strict=False)
            )
            for row in rows
        ]


class FastConnection:
    """A pooled connection that runs statements: ``rows()`` for one statement,
    ``insert_many()`` for a batch of rows."""

    # bound parameters per statement: both PostgreSQL and SQLite stop at 32,766
    MAX_PARAMETERS = 30_000

    def __init__(self, dialect: Dialect, cache: dict[Any, Compiled]) -> None:
        self.dialect = dialect
        self._cache = cache

    def compiled(self, statement: ClauseElement) -> Compiled:
        found = self._cache.get(id(statement))
        if found is None:  # the statement is kept alive by Compiled, so its id stays unique
            found = self._cache[id(statement)] = Compiled(statement, self.dialect)
        return found

    async def rows(
        self, statement: ClauseElement, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        compiled = self.compiled(statement)
        return compiled.convert(await self._execute(compiled.sql, compiled.arguments(params or {})))

    async def insert_many(
        self, statement: Insert, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """``statement`` (an INSERT, upsert or not) for every row, as multi-row VALUES
        statements of up to ``MAX_PARAMETERS`` parameters; returns what it RETURNs."""
        if not rows:
            return []
        columns = tuple(rows[0])
        per_statement = max(1, self.MAX_PARAMETERS // len(columns))
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            compiled = self._multi_row(statement, columns, len(chunk))
            params = {f"{c}_{i}": row[c] for i, row in enumerate(chunk) for c in columns}
            out += compiled.convert(await self._execute(compiled.sql, compiled.arguments(params)))
        return out

    def _multi_row(self, statement: Insert, columns: tuple[str, ...], count: int) -> Compiled:
        key = (id(statement), columns, count)
        found = self._cache.get(key)
        if found is None:
            table = statement.table
            values = [
                {c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns}
                for i in range(count)
            ]
            found = self._cache[key] = Compiled(statement.values(values), self.dialect)
        return found

    async def _execute(self, sql: str, arguments: Sequence[Any]) -> Sequence[Sequence[Any]]:
        raise NotImplementedError


class _SQLAlchemyConnection(FastConnection):
    """The fallback: statements run through SQLAlchemy as usual."""

    def __init__(self, conn: AsyncConnection, cache: dict[Any, Compiled]) -> None:
        super().__init__(conn.dialect, cache)
        self._conn = conn

    async def rows(
        self, statement: ClauseElement, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        result = await self._conn.execute(statement, dict(params or {}))  # type: ignore[call-overload]
        return [tuple(row) for row in result.all()] if result.returns_rows else []

    async def insert_many(
        self, statement: Insert, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        if not rows:
            return []
        result = await self._conn.execute(statement, list(rows))
        return [tuple(row) for row in result.all()] if result.returns_rows else []


class _AsyncpgConnection(FastConnection):
    """asyncpg. A batch goes in as one array per column (``INSERT ... SELECT FROM unnest``):
    the statement text is the same for any batch size, so the server prepares and plans it
    once. (asyncpg does not cache statements over 15 KB, which a multi-row VALUES of a few
    hundred rows is: it would be parsed and planned on every call.)"""

    def __init__(self, driver: Any, dialect: Dialect, cache: dict[Any, Compiled]) -> None:
        super().__init__(dialect, cache)
        self._driver = driver

    async def insert_many(
        self, statement: Insert, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        if not rows:
            return []
        columns = tuple(rows[0])
        key = (id(statement), columns, "unnest")
        compiled = self._cache.get(key)
        if compiled is None:
            table: Any = statement.table
            arrays = [
                bindparam(f"{c}_all", type_=ARRAY(table.c[c].type, dimensions=1)) for c in columns
            ]
            unnested = func.unnest(*arrays).table_valued(*columns).render_derived()
            source = select(*(unnested.c[c] for c in columns))
            compiled = self._cache[key] = Compiled(
                statement.from_select(columns, source), self.dialect
            )
        params = {f"{c}_all": [row[c] for row in rows] for c in columns}
        return compiled.convert(await self._execute(compiled.sql, compiled.arguments(params)))

    async def _execute(self, sql: str, arguments: Sequence[Any]) -> Sequence[Sequence[Any]]:
        records: Sequence[Sequence[Any]] = await self._driver.fetch(sql, *arguments)
        return records


class _SQLiteConnection(FastConnection):
    """sqlite3 on the loop's thread; a locked database is retried after an asyncio sleep,
    so the loop stays free (see ``composite_store.sqlite_inline``)."""

    def __init__(self, driver: Any, dialect: Dialect, cache: dict[Any, Compiled]) -> None:
        super().__init__(dialect, cache)
        self._driver = driver

    async def _execute(self, sql: str, arguments: Sequence[Any] = ()) -> Sequence[Sequence[Any]]:
        deadline = time.monotonic() + getattr(self._driver, "busy_timeout", 30.0)
        delay = 0.0005
        while True:
            try:
                # the base class's execute: sqlite_inline's cursor would retry synchronously
                cursor = sqlite3.Cursor(self._driver)
                return cursor.execute(sql, arguments).fetchall()
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", None) in _SQLITE_BUSY
                if not busy or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


class FastPath:
    """Per engine: how to open fast connections, and the compiled-statement cache."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(**WRITE_TRANSACTION)
        self._autocommit_engine = autocommit(engine)
        self._cache: dict[Any, Compiled] = {}
        driver = engine.dialect.driver
        self.kind = (
            "asyncpg"
            if driver == "asyncpg"
            else "sqlite"
            if driver == "composite_inline" and engine.url.database not in (None, "", ":memory:")
            else "sqlalchemy"
        )

    @asynccontextmanager
    async def connect(self, *, transaction: bool) -> AsyncIterator[FastConnection]:
        """A connection for one call: ``transaction`` makes its statements one atomic unit
        (SQLite: with the write lock taken up front); otherwise each commits on its own."""
        if self.kind == "sqlalchemy":
            source = (
                self._write_engine.begin() if transaction else self._autocommit_engine.connect()
            )
            async with source as conn:
                yield _SQLAlchemyConnection(conn, self._cache)
            return
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                if self.kind == "asyncpg":
                    fast: Any = _AsyncpgConnection(driver, conn.dialect, self._cache)
                    if transaction:
                        async with driver.transaction():
                            yield fast
                    else:
                        yield fast
                else:
                    fast = _SQLiteConnection(driver, conn.dialect, self._cache)
                    if transaction:
                        await fast._execute("BEGIN IMMEDIATE")
                        try:
                            yield fast
                        except BaseException:
                            driver.rollback()
                            raise
                        await fast._execute("COMMIT")
                    else:
                        yield fast
            except BaseException as exc:
                sane = isinstance(exc, _CONNECTION_STILL_SANE) and not isinstance(
                    exc, _ASYNCPG_DISCONNECTS
                )
                if self.kind == "asyncpg" and not sane:
                    # a dropped connection, or one cancelled mid-statement: its protocol
                    # state is unknown, so the pool must not hand it out again
                    await conn.invalidate()
                raise
