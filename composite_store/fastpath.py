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
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from operator import itemgetter
from typing import Any

import asyncpg
from sqlalchemy import Insert, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from composite_store import clickhouse
from composite_store.dialects import insert_from_arrays
from composite_store.engines import WRITE_TRANSACTION, autocommit
from composite_store.errors import CompositeStoreError
from composite_store.sqlite_inline import busy_delays, is_busy
from composite_store.sqltypes import column_processor

Processor = Callable[[Any], Any] | None
# Connections a store's fast path keeps checked out between calls: enough for sequential
# callers; concurrent ones beyond it check out from the pool as usual.
KEEP_CONNECTIONS = 2

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
# Errors after which an asyncpg connection is known to be usable: the server reported a
# failed statement, or the store raised its own error between statements.
_CONNECTION_STILL_SANE = (asyncpg.exceptions.PostgresError, CompositeStoreError)
# What a fast path can raise from its driver, for the stores' error translation.
RAW_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    sqlite3.Error,
    *clickhouse.RAW_ERRORS,
)
RAW_DISCONNECTS: tuple[type[BaseException], ...] = (
    *_ASYNCPG_DISCONNECTS,
    *clickhouse.NETWORK_ERRORS,
)


def sent_columns(rows: Sequence[Mapping[str, Any]], left_null: frozenset[str]) -> tuple[str, ...]:
    """The columns a batch's INSERT names: the rows' keys, less the ``left_null`` columns no
    row sets. A span batch leaves 11 of its 23 columns empty; naming them cost a tenth of
    a PostgreSQL batch's time (an array of NULLs each to encode, send and unnest) and a
    fifth of a ClickHouse one's."""
    n = len(rows)
    return tuple(
        c
        for c in rows[0]
        if c not in left_null
        or rows[0][c] is not None
        or list(map(itemgetter(c), rows)).count(None) < n  # C loops: ~10 ns a row
    )


def _column_of(bind_name: str) -> str:
    """The column a multi-row VALUES bind is for: SQLAlchemy names them ``<column>_<row>``."""
    return bind_name.rsplit("_", 1)[0]


class Compiled:
    """One statement compiled for one dialect, with SQLAlchemy's own type processors."""

    __slots__ = ("_binds", "_converted", "_reader", "_reader_width", "keys", "sql", "statement")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if "POSTCOMPILE" in compiled.string:
            raise TypeError("fast-path statements take no expanding parameters")
        self.statement = statement
        self.sql = compiled.string
        binds = compiled.binds
        self._binds: list[tuple[str, Any, Processor]] = [
            (
                name,
                binds[name].effective_value,
                binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            # positional drivers: in the SQL's order; named ones (ClickHouse): as compiled
            for name in (compiled.positiontup if compiled.positiontup is not None else binds)
        ]
        columns = list(getattr(statement, "exported_columns", ()))
        self.keys: tuple[str, ...] = tuple(str(col.key) for col in columns)
        results = [
            col.type.dialect_impl(dialect).result_processor(dialect, None) for col in columns
        ]
        self._converted = [(index, p) for index, p in enumerate(results) if p is not None]
        self._reader: Callable[[Mapping[str, Any]], list[Any]] | None = None
        self._reader_width = 0

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """Positional driver arguments, converted as SQLAlchemy would convert them."""
        out = []
        for name, default, process in self._binds:
            value = params.get(name, default)
            out.append(value if process is None or value is None else process(value))
        return out

    def row_arguments(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[Any]:
        """``arguments`` for a multi-row VALUES (see ``FastConnection._values_for``), read
        straight from the rows: no parameter dict of rows x columns names."""
        width = len(columns)
        if len(self._binds) != width * len(rows):
            raise TypeError("row_arguments takes the rows of a multi-row VALUES, no other binds")
        read = self._row_reader(width)
        out: list[Any] = []
        for row in rows:
            out += read(row)
        return out

    def column_lists(
        self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
    ) -> list[list[Any]]:
        """Each column's converted values, one list a column in the order of the SQL's
        column list, for a one-row INSERT compiled with ``columns``: a driver's columnar
        block. Rows would each cost a tuple here, taken apart again in the driver."""
        if len(self._binds) != len(columns):
            raise TypeError("column_lists takes a one-row INSERT of exactly these columns")
        out = []
        for name, _, process in self._binds:
            values = list(map(itemgetter(_column_of(name)), rows))
            out.append(values if process is None else column_processor(process)(values))
        return out

    def _row_reader(self, width: int) -> Callable[[Mapping[str, Any]], list[Any]]:
        """One row mapping -> its converted values, in the order the SQL binds the first
        row's columns (binds are named ``<column>_<row>``). The values are picked by one
        ``itemgetter`` and only the columns with a processor are converted: a span batch's
        rows cost 5.8 us each instead of 7.2 with a generator over every column."""
        if self._reader is None:  # one width a statement: its cache key holds the columns
            first = self._binds[:width]
            order = [_column_of(name) for name, _, _ in first]
            converted = [(i, process) for i, (_, _, process) in enumerate(first) if process]
            pick = itemgetter(*order) if width > 1 else lambda row: (row[order[0]],)

            def read(row: Mapping[str, Any]) -> list[Any]:
                values = list(pick(row))
                for index, process in converted:
                    value = values[index]
                    if value is not None:
                        values[index] = process(value)
                return values

            self._reader = read
            self._reader_width = width
        if width != self._reader_width:
            raise TypeError(f"rows of {width} columns for a statement of {self._reader_width}")
        return self._reader

    def convert(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Driver rows to Python values, as SQLAlchemy's result would give them."""
        converted = self._converted
        if not converted:
            return [tuple(row) for row in rows]
        out = []
        for row in rows:
            values = list(row)
            for index, process in converted:  # only the columns that need it
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            out.append(tuple(values))
        return out


class StatementCache:
    """Compiled statements of one engine, the least recently used dropped past ``size``.
    Keyed by the statement object's identity: an entry holds its statement alive, so an id
    is never reused while its entry exists."""

    def __init__(self, dialect: Dialect, size: int = 256) -> None:
        self.dialect = dialect
        self._size = size
        self._entries: OrderedDict[Any, Compiled] = OrderedDict()
        self._left_null: dict[Any, frozenset[str]] = {}

    def get(self, key: Any, build: Callable[[], ClauseElement]) -> Compiled:
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = Compiled(build(), self.dialect)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        return found

    def __len__(self) -> int:
        return len(self._entries)

    def left_null(self, statement: Insert) -> frozenset[str]:
        """The columns an INSERT into ``statement``'s table may leave out when no row sets
        them: nullable, no default of any kind, not in the key. Left out, they are NULL all
        the same, and so is an upsert's ``excluded.<column>``."""
        table: Any = statement.table
        found = self._left_null.get(table)  # a Table hashes by identity
        if found is None:
            found = self._left_null[table] = frozenset(
                c.key
                for c in table.c
                if c.nullable
                and not c.primary_key
                and c.default is None
                and c.server_default is None
            )
        return found


class FastConnection:
    """A pooled connection that runs statements: ``rows()`` for one statement,
    ``insert_many()`` for a batch of rows."""

    # Bound parameters and rows in one multi-row VALUES: they bound the SQL text, and the
    # cache, which holds one statement for each row count a batch's last chunk has (so at
    # most MAX_ROWS for each set of columns); past ~100 rows, more a statement save nothing.
    MAX_PARAMETERS = 2_000
    MAX_ROWS = 100

    def __init__(self, cache: StatementCache) -> None:
        self._cache = cache

    async def rows(
        self, statement: ClauseElement, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        compiled = self._cache.get(id(statement), lambda: statement)
        return compiled.convert(await self._execute(compiled.sql, compiled.arguments(params or {})))

    async def count(self, statement: ClauseElement, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement that returns no rows (an UPDATE, say); how many rows it changed."""
        compiled = self._cache.get(id(statement), lambda: statement)
        return await self._execute_count(compiled.sql, compiled.arguments(params or {}))

    async def insert_many(
        self, statement: Insert, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        """``statement`` (an INSERT, upsert or not) for every row (all with the same keys),
        as multi-row VALUES statements; returns what it RETURNs."""
        out: list[tuple[Any, ...]] = []
        for compiled, arguments in self._values_statements(statement, rows):
            out += compiled.convert(await self._execute(compiled.sql, arguments))
        return out

    async def insert_new(self, statement: Insert, rows: Sequence[Mapping[str, Any]]) -> int:
        """``statement``, an ``INSERT ... ON CONFLICT DO NOTHING`` without RETURNING, for
        every row as ``insert_many`` sends them; returns how many rows went in (the others'
        keys were taken). Cheaper than RETURNING when the caller only needs to know whether
        every row was new (SQLite: ~30 us less a call of 20 rows)."""
        count = 0
        for compiled, arguments in self._values_statements(statement, rows):
            count += await self._execute_count(compiled.sql, arguments)
        return count

    def _values_statements(
        self, statement: Insert, rows: Sequence[Mapping[str, Any]]
    ) -> Iterator[tuple[Compiled, list[Any]]]:
        """The multi-row VALUES statements for ``rows``, with their arguments."""
        if not rows:
            return
        columns = sent_columns(rows, self._cache.left_null(statement))
        per_statement = max(1, min(self.MAX_ROWS, self.MAX_PARAMETERS // len(columns)))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            compiled = self._cache.get(
                (id(statement), columns, len(chunk)),
                partial(self._values_for, statement, columns, len(chunk)),
            )
            yield compiled, compiled.row_arguments(chunk, columns)

    @staticmethod
    def _values_for(statement: Insert, columns: tuple[str, ...], count: int) -> Insert:
        """``statement`` with ``count`` rows of VALUES, parameters row by row in ``columns``
        order (which ``Compiled.row_arguments`` relies on)."""
        table: Any = statement.table
        return statement.values(
            [
                {c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns}
                for i in range(count)
            ]
        )

    async def _execute(self, sql: str, arguments: Sequence[Any]) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    async def _execute_count(self, sql: str, arguments: Sequence[Any]) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        raise NotImplementedError

    def atomic(self) -> AbstractAsyncContextManager[None]:
        """Make the statements run inside it one unit: committed on success, else rolled back."""
        raise NotImplementedError


class _SQLAlchemyConnection(FastConnection):
    """The fallback: statements run through SQLAlchemy as usual."""

    def __init__(self, conn: AsyncConnection, cache: StatementCache) -> None:
        super().__init__(cache)
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

    async def count(self, statement: ClauseElement, params: Mapping[str, Any] | None = None) -> int:
        result = await self._conn.execute(statement, dict(params or {}))  # type: ignore[call-overload]
        return int(result.rowcount)

    async def insert_new(self, statement: Insert, rows: Sequence[Mapping[str, Any]]) -> int:
        if not rows:
            return 0
        result = await self._conn.execute(statement, list(rows))
        return int(result.rowcount)


class _ClickHouseConnection(_SQLAlchemyConnection):
    """ClickHouse's native driver: a batch goes in as one block of columns (the SQLAlchemy
    path builds a parameter dict per row and converts it again in the driver, ~4x the
    driver's own cost); other statements run through SQLAlchemy."""

    def __init__(self, conn: AsyncConnection, raw: Any, cache: StatementCache) -> None:
        super().__init__(conn, cache)
        self._raw = raw

    async def insert_many(
        self, statement: Insert, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        if not rows:
            return []
        columns = sent_columns(rows, self._cache.left_null(statement))
        compiled = self._cache.get(
            (id(statement), columns, 1), partial(self._values_for, statement, columns, 1)
        )  # the one-row VALUES statement, shared with insert_many's single-row chunks
        # the block INSERT's text stops at VALUES: the rows travel as a native block
        sql = compiled.sql[: compiled.sql.index(" VALUES") + len(" VALUES")]
        await self._raw.insert_block(sql, compiled.column_lists(rows, columns))
        return []


class _AsyncpgConnection(FastConnection):
    """asyncpg; a batch goes in as one array per column (``dialects.insert_from_arrays``)."""

    # Kept between calls this long at most: past it the pool's checkout pings the server
    # first (engines.EngineOptions.ping_after_idle), which a kept connection would skip.
    KEEP_FOR: float | None = 5.0

    def __init__(self, driver: Any, cache: StatementCache) -> None:
        super().__init__(cache)
        self._driver = driver

    def usable(self) -> bool:
        """Not closed by the server (a restart), seen without any traffic."""
        return not self._driver.is_closed() and not self._driver.is_in_transaction()

    def abandon(self) -> None:
        """Drop the socket at once: a graceful close waits on a server that may not answer."""
        self._driver.terminate()

    async def insert_many(
        self, statement: Insert, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Any, ...]]:
        if not rows:
            return []
        columns = sent_columns(rows, self._cache.left_null(statement))
        compiled = self._cache.get(
            (id(statement), columns, "arrays"), lambda: insert_from_arrays(statement, columns)
        )
        params = {f"{c}_all": list(map(itemgetter(c), rows)) for c in columns}
        return compiled.convert(await self._execute(compiled.sql, compiled.arguments(params)))

    async def _execute(self, sql: str, arguments: Sequence[Any]) -> Sequence[Sequence[Any]]:
        records: Sequence[Sequence[Any]] = await self._driver.fetch(sql, *arguments)
        return records

    async def _execute_count(self, sql: str, arguments: Sequence[Any]) -> int:
        status: str = await self._driver.execute(sql, *arguments)  # e.g. "INSERT 0 20"
        return int(status.rsplit(" ", 1)[-1])

    def atomic(self) -> AbstractAsyncContextManager[None]:
        transaction: AbstractAsyncContextManager[None] = self._driver.transaction()
        return transaction


class _SQLiteConnection(FastConnection):
    """sqlite3 on the loop's thread; a locked database is retried after an asyncio sleep,
    so the loop stays free (the schedule is ``sqlite_inline.busy_delays``)."""

    # a file connection has no server to lose it: kept for as long as the store lives
    KEEP_FOR: float | None = None

    def __init__(self, driver: Any, cache: StatementCache) -> None:
        super().__init__(cache)
        self._driver = driver

    def usable(self) -> bool:
        return not self._driver.in_transaction

    def abandon(self) -> None:
        """Nothing to drop: a file connection is closed by the pool as usual."""

    async def _execute(self, sql: str, arguments: Sequence[Any] = ()) -> Sequence[Sequence[Any]]:
        try:  # the usual case, without the retry schedule's clock reads (1% of a read)
            return self._run(sql, arguments).fetchall()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            busy = exc
        return (await self._retry_while_busy(sql, arguments, busy)).fetchall()

    async def _execute_count(self, sql: str, arguments: Sequence[Any]) -> int:
        try:
            return self._run(sql, arguments).rowcount
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            busy = exc
        return (await self._retry_while_busy(sql, arguments, busy)).rowcount

    async def _retry_while_busy(
        self, sql: str, arguments: Sequence[Any], busy: sqlite3.OperationalError
    ) -> sqlite3.Cursor:
        """Run a statement that found the database locked again, after a sleep each time,
        until it runs or the busy timeout is up (then the last busy error is raised)."""
        for delay in busy_delays(self._driver):
            await asyncio.sleep(delay)
            try:
                return self._run(sql, arguments)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                busy = exc
        raise busy

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE: the write lock up front, so two writers never deadlock."""
        await self._execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._driver.rollback()
            raise
        await self._execute("COMMIT")

    def _run(self, sql: str, arguments: Sequence[Any]) -> sqlite3.Cursor:
        # the base cursor class: sqlite_inline's own cursor would retry synchronously
        return sqlite3.Cursor(self._driver).execute(sql, arguments)


class FastPath:
    """Per store: its engine's ways to connect, and the compiled-statement cache."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(**WRITE_TRANSACTION)
        self._autocommit_engine = autocommit(engine)
        self._cache = StatementCache(engine.dialect)
        file_database = engine.url.database not in (None, "", ":memory:")
        self._driver_class: type[_AsyncpgConnection | _SQLiteConnection] | None = {
            "asyncpg": _AsyncpgConnection,
            "composite_inline": _SQLiteConnection if file_database else None,
        }.get(engine.dialect.driver)
        self._block_inserts = engine.dialect.driver == clickhouse.NATIVE_DRIVER
        # (connection, its fast form, when it was kept): used last in, first out
        self._kept: list[tuple[AsyncConnection, _AsyncpgConnection | _SQLiteConnection, float]] = []

    @property
    def kind(self) -> str:
        """Which driver runs the statements: "asyncpg", "sqlite", "clickhouse" (batches on the
        native driver, the rest through SQLAlchemy), or "sqlalchemy" (the fallback)."""
        if self._block_inserts:
            return "clickhouse"
        return {_AsyncpgConnection: "asyncpg", _SQLiteConnection: "sqlite", None: "sqlalchemy"}[
            self._driver_class
        ]

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A SQLAlchemy connection in one atomic unit, committed on success. On SQLite it
        takes the write lock up front (``BEGIN IMMEDIATE``), so two writers never deadlock."""
        return self._write_engine.begin()

    def autocommit(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A SQLAlchemy connection whose every statement commits on its own: for reads and
        single-statement writes (atomic by themselves), without BEGIN/COMMIT round trips."""
        return self._autocommit_engine.connect()

    async def _checkout(self) -> tuple[AsyncConnection, _AsyncpgConnection | _SQLiteConnection]:
        """The most recently kept connection if it is still good, else one from the pool."""
        assert self._driver_class is not None
        while self._kept:
            conn, fast, kept_at = self._kept.pop()
            keep_for = fast.KEEP_FOR
            if fast.usable() and (keep_for is None or time.monotonic() - kept_at < keep_for):
                return conn, fast
            fast.abandon()  # the pool opens a fresh one rather than trust this one
            await _discard(conn)
        conn = await self.engine.connect()
        raw = await conn.get_raw_connection()
        return conn, self._driver_class(raw.driver_connection, self._cache)

    async def _checkin(
        self, conn: AsyncConnection, fast: _AsyncpgConnection | _SQLiteConnection
    ) -> None:
        if len(self._kept) < KEEP_CONNECTIONS:
            self._kept.append((conn, fast, time.monotonic()))
        else:
            await conn.close()

    async def release(self) -> None:
        """Give the kept connections back to the pool (before the engine is disposed)."""
        kept, self._kept = self._kept, []
        for conn, _, _ in kept:
            await conn.close()

    def connect(self, *, transaction: bool) -> AbstractAsyncContextManager[FastConnection]:
        """A fast connection for one call: ``transaction`` as ``transaction()``, otherwise
        as ``autocommit()``. Between calls the connection is kept checked out (up to
        ``KEEP_CONNECTIONS``): the pool's checkout and return cost ~40 us a call, more than a
        SQLite statement and a fifth of a PostgreSQL round trip."""
        if self._driver_class is None:
            return self._through_sqlalchemy(transaction)
        return _KeptConnection(self, transaction)

    @asynccontextmanager
    async def _through_sqlalchemy(self, transaction: bool) -> AsyncIterator[FastConnection]:
        async with self.transaction() if transaction else self.autocommit() as conn:
            if not self._block_inserts:
                yield _SQLAlchemyConnection(conn, self._cache)
                return
            raw = await conn.get_raw_connection()
            try:
                yield _ClickHouseConnection(conn, raw.dbapi_connection, self._cache)
            except clickhouse.NETWORK_ERRORS:
                await conn.invalidate()  # raised by the driver itself: SQLAlchemy never saw it
                raise

    async def _release(
        self,
        conn: AsyncConnection,
        fast: _AsyncpgConnection | _SQLiteConnection,
        exc: BaseException | None,
    ) -> None:
        """Keep the connection for the next call, unless ``exc`` left it in doubt."""
        if exc is not None and isinstance(fast, _AsyncpgConnection) and not _still_sane(exc):
            # a dropped connection, or one cancelled mid-statement: its protocol state is
            # unknown, so neither we nor the pool may hand it out again
            fast.abandon()
            await _discard(conn)
        else:
            await self._checkin(conn, fast)


class _KeptConnection:
    """``FastPath.connect`` on a fast driver. A class rather than an ``asynccontextmanager``:
    every hot call enters one, and a generator-based one costs ~1.3 us more a call."""

    __slots__ = ("_atomic", "_conn", "_fast", "_path", "_transaction")

    def __init__(self, path: FastPath, transaction: bool) -> None:
        self._path = path
        self._transaction = transaction
        self._atomic: AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> FastConnection:
        self._conn, self._fast = await self._path._checkout()
        if self._transaction:
            atomic = self._fast.atomic()
            try:
                await atomic.__aenter__()
            except BaseException as exc:
                await self._path._release(self._conn, self._fast, exc)
                raise
            self._atomic = atomic
        return self._fast

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if self._atomic is not None:
            try:  # commits, or rolls back and lets ``exc`` go on
                await self._atomic.__aexit__(exc_type, exc, tb)
            except BaseException as raised:
                await self._path._release(self._conn, self._fast, raised)
                raise
        await self._path._release(self._conn, self._fast, exc)


async def _discard(conn: AsyncConnection) -> None:
    """Close the physical connection: the pool forgets it and opens a new one when needed."""
    await conn.invalidate()
    await conn.close()


def _still_sane(exc: BaseException) -> bool:
    """After ``exc``, is an asyncpg connection known to be usable?"""
    return isinstance(exc, _CONNECTION_STILL_SANE) and not isinstance(exc, _ASYNCPG_DISCONNECTS)
