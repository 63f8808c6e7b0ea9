"""ClickHouse behind the async API: everything ClickHouse needs, in one module.

- An async SQLAlchemy dialect over clickhouse-sqlalchemy's *synchronous* drivers (native and
  HTTP): every blocking driver call runs in a worker thread and is awaited through
  SQLAlchemy's greenlet bridge, exactly as the aiosqlite adapter does for sqlite3. The
  library's own async driver (asynch) is broken with every released version, so we do not
  use it. Subclasses only; nothing is patched.
- ``FINAL`` as a table hint (``dialects.final``), rendered by our compiler only.
- An Alembic implementation for ClickHouse: no transactions, a MergeTree version table ordered
  by its version, and version-row changes written as INSERT ... SELECT / DELETE mutations
  (18.16 has neither UPDATE of key columns nor inline ``INSERT ... VALUES`` over the native
  protocol), waiting until each mutation is done.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from alembic.ddl.impl import DefaultImpl
from clickhouse_driver import errors as driver_errors
from clickhouse_sqlalchemy import engines
from clickhouse_sqlalchemy import types as ch_types
from clickhouse_sqlalchemy.drivers.compilers.sqlcompiler import ClickHouseSQLCompiler
from clickhouse_sqlalchemy.drivers.http import connector as http_connector
from clickhouse_sqlalchemy.drivers.http.base import ClickHouseDialect_http
from clickhouse_sqlalchemy.drivers.native import connector as native_connector
from clickhouse_sqlalchemy.drivers.native.base import (
    ClickHouseDialect_native,
    ClickHouseNativeSQLCompiler,
)
from clickhouse_sqlalchemy.exceptions import DatabaseException
from sqlalchemy import Column, MetaData, Select, Table, pool, text
from sqlalchemy.dialects import registry
from sqlalchemy.engine import URL, AdaptedConnection, Connection
from sqlalchemy.exc import CompileError
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.util import await_only

T = TypeVar("T")
# The async native dialect's driver name: the one that takes batches as native blocks
NATIVE_DRIVER = "composite_native"
PREWHERE = "PREWHERE"  # the statement hint of ``dialects.prewhere``
MUTATION_TIMEOUT = 60.0  # seconds to wait for an ALTER ... DELETE to finish

# Errors meaning "the server is not there", as the driver raises them (possibly wrapped).
# What the driver raises when a statement is run on it directly (``insert_block``).
RAW_ERRORS: tuple[type[BaseException], ...] = (driver_errors.Error,)
NETWORK_ERRORS = (
    driver_errors.NetworkError,
    driver_errors.SocketTimeoutError,
    EOFError,
    OSError,
)


class _Cursor:
    """A DBAPI cursor whose execute() runs the query *and* reads all rows in the worker
    thread, so fetch*() never touch the socket from the event loop."""

    server_side = False
    lastrowid = None

    def __init__(self, connection: _AsyncConnection) -> None:
        self._connection = connection
        self._cursor = connection.sync_connection.cursor()
        self._rows: collections.deque[Any] = collections.deque()
        self._description: Sequence[Any] | None = None
        self._rowcount = -1
        self.arraysize = 1

    @property
    def description(self) -> Sequence[Any] | None:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    def _run(self, method: str, operation: str, parameters: Any, context: Any) -> None:
        cursor = self._cursor
        getattr(cursor, method)(operation, parameters, context=context)
        description = cursor.description
        rows = cursor.fetchall() if method == "execute" and description else []
        self._rows = collections.deque(rows)
        self._description = description or None
        self._rowcount = cursor.rowcount

    def execute(self, operation: str, parameters: Any = None, context: Any = None) -> None:
        await_only(self._connection.run(self._run, "execute", operation, parameters, context))

    def executemany(self, operation: str, seq_of_parameters: Any, context: Any = None) -> None:
        await_only(
            self._connection.run(self._run, "executemany", operation, seq_of_parameters, context)
        )

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(self.arraysize if size is None else size, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def _async_soft_close(self) -> None:
        """Rows are already buffered: nothing is pending on the socket."""

    def close(self) -> None:
        # The library's native cursor disconnects on close (one TCP connect per statement);
        # ours keeps the connection for the pool.
        self._rows.clear()

    def setinputsizes(self, *args: Any) -> None:
        pass

    def setoutputsize(self, *args: Any) -> None:
        pass


class _AsyncConnection(AdaptedConnection):
    """One pooled connection: a synchronous driver connection used by one thread at a time."""

    __slots__ = ("_lock", "dbapi", "sync_connection")

    def __init__(self, dbapi: _AsyncDBAPI, sync_connection: Any) -> None:
        self.dbapi = dbapi
        self.sync_connection = sync_connection
        self._connection = sync_connection
        self._lock = asyncio.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in a worker thread. The lock is released only when the thread is done,
        so a cancelled caller can never let a second query onto a busy socket."""
        await self._lock.acquire()
        try:
            future = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
        except BaseException:
            self._lock.release()
            raise

        def release(done: asyncio.Future[T]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved, even if nobody awaits it any more
            self._lock.release()

        future.add_done_callback(release)
        return await asyncio.shield(future)

    def cursor(self, server_side: bool = False) -> _Cursor:
        return _Cursor(self)

    async def insert_block(self, sql: str, columns: Sequence[Sequence[Any]]) -> None:
        """``INSERT INTO t (columns) VALUES`` and its values, one list a column, as one
        native block: clickhouse-driver's own columnar insert, without the DB-API layer."""
        execute = functools.partial(self.sync_connection.transport.execute, columnar=True)
        await self.run(execute, sql, columns)

    def commit(self) -> None:  # ClickHouse has no transactions
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        transport = getattr(self.sync_connection, "transport", None)
        if transport is not None and hasattr(transport, "disconnect"):
            await_only(self.run(transport.disconnect))


class _AsyncDBAPI:
    """A stand-in DBAPI module over one of clickhouse-sqlalchemy's synchronous connectors."""

    apilevel = "2.0"
    threadsafety = 2
    paramstyle = "pyformat"
    Error = DatabaseException
    DatabaseError = DatabaseException
    OperationalError = DatabaseException

    def __init__(self, sync_module: Any) -> None:
        self._sync = sync_module

    def connect(self, *args: Any, **kwargs: Any) -> _AsyncConnection:
        return _AsyncConnection(self, self._sync.connect(*args, **kwargs))  # lazy: no I/O yet


class _SelectHints(ClickHouseSQLCompiler):  # type: ignore[misc]
    """``dialects.final`` and ``dialects.prewhere``, rendered."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text  # ``FINAL``, after the table's name

    def get_statement_hint_text(self, hint_texts: list[str]) -> str:
        return " ".join(hint for hint in hint_texts if hint != PREWHERE)

    def _compose_select_body(
        self,
        text: str,
        select: Select[Any],
        compile_state: Any,
        inner_columns: list[str],
        froms: list[Any],
        byfrom: Any,
        toplevel: bool,
        kwargs: Any,
    ) -> str:
        body: str = super()._compose_select_body(
            text, select, compile_state, inner_columns, froms, byfrom, toplevel, kwargs
        )
        if (
            not select._where_criteria
            or (self.dialect.name, PREWHERE) not in select._statement_hints
        ):
            return body  # without a WHERE of its own, the first one is a subquery's
        if not all(isinstance(f, Table) for f in froms):  # a subquery's WHERE could come first
            raise CompileError("PREWHERE is for a SELECT from tables")
        # The FROM clause follows the columns and holds no WHERE: the first one after it is ours.
        where_at = body.index(_WHERE, len(text) + len(", ".join(inner_columns)))
        return f"{body[:where_at]} \nPREWHERE {body[where_at + len(_WHERE) :]}"


_WHERE = " \nWHERE "  # as SQLAlchemy's compiler (and clickhouse-sqlalchemy's) writes it


class _NativeCompiler(_SelectHints, ClickHouseNativeSQLCompiler):  # type: ignore[misc]
    """INSERT ... VALUES without a template: the native driver sends the rows as a block."""


class _HTTPCompiler(_SelectHints):
    """INSERT ... VALUES with its template, which the HTTP cursor fills in row by row: with
    the native compiler it sent an INSERT of no rows, and every write over HTTP was lost."""


class _AsyncMixin:
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool

    def get_driver_connection(self, connection: Any) -> Any:
        return connection.sync_connection

    def is_disconnect(self, e: Exception, connection: Any, cursor: Any) -> bool:
        """Network failures, as the driver raises them or as the library wraps them."""
        seen: BaseException | None = e
        while seen is not None:
            if isinstance(seen, NETWORK_ERRORS):
                return True
            seen = seen.__cause__ or seen.__context__
        message = str(e)
        return any(
            marker in message for marker in ("Connection refused", "Broken pipe", "Code: 210")
        )


class AsyncNativeDialect(_AsyncMixin, ClickHouseDialect_native):  # type: ignore[misc]
    driver = NATIVE_DRIVER
    statement_compiler = _NativeCompiler
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _AsyncDBAPI(native_connector)


class AsyncHTTPDialect(_AsyncMixin, ClickHouseDialect_http):  # type: ignore[misc]
    driver = "composite_http"
    statement_compiler = _HTTPCompiler
    supports_statement_cache = True

    def create_connect_args(self, url: URL) -> Any:
        """As the native driver has it: no user is ``default``, no password is empty (the
        HTTP transport would send the text "None" for either, and be refused)."""
        (db_url, db_name, username, password), kwargs = super().create_connect_args(url)
        return (db_url, db_name, username or "default", password or ""), kwargs

    @classmethod
    def import_dbapi(cls) -> Any:
        return _AsyncDBAPI(http_connector)


registry.register(f"clickhouse.{NATIVE_DRIVER}", __name__, "AsyncNativeDialect")
registry.register("clickhouse.composite_http", __name__, "AsyncHTTPDialect")
ASYNC_DRIVERS = {"clickhouse+native": NATIVE_DRIVER, "clickhouse+http": "composite_http"}


def wait_for_mutations(
    connection: Connection, table: str, timeout: float = MUTATION_TIMEOUT
) -> None:
    """Block until the table's ALTER ... DELETE/UPDATE mutations are applied (18.16 has no
    ``mutations_sync``). Runs inside ``run_sync``, in a worker greenlet."""
    query = text(
        "SELECT count() FROM system.mutations "
        "WHERE database = currentDatabase() AND table = :table AND is_done = 0"
    )
    deadline = time.monotonic() + timeout
    while connection.execute(query, {"table": table}).scalar():
        if time.monotonic() > deadline:
            raise TimeoutError(f"mutations on {table} not finished after {timeout} s")
        time.sleep(0.01)


# -- Alembic -----------------------------------------------------------------------------------
_UPDATE_VERSION = re.compile(
    r"UPDATE\s+version_num\s*=\s*'(?P<new>[^']*)'.*version_num\s*=\s*'(?P<old>[^']*)'", re.S
)


class ClickHouseImpl(DefaultImpl):
    """Alembic on ClickHouse; Alembic finds it by ``__dialect__``."""

    __dialect__ = "clickhouse"
    transactional_ddl = False

    def version_table_impl(
        self,
        *,
        version_table: str,
        version_table_schema: str | None,
        version_table_pk: bool,
        **kw: Any,
    ) -> Table:
        return Table(
            version_table,
            MetaData(),
            Column("version_num", ch_types.String(), nullable=False),  # String(n) = FixedString
            engines.MergeTree(order_by=("version_num",)),
            schema=version_table_schema,
        )

    def _exec(self, construct: Any, *args: Any, **kw: Any) -> Any:
        table = getattr(construct, "table", None)
        is_version_row = (
            not self.as_sql
            and isinstance(construct, Insert | Update | Delete)
            and isinstance(table, Table)
            and table.name == self.context_opts.get("version_table")
        )
        if not is_version_row:
            return super()._exec(construct, *args, **kw)
        assert self.connection is not None and isinstance(table, Table)
        sql = str(construct.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))
        if isinstance(construct, Insert):
            return self._insert_version(table, _literal_values(sql))
        if isinstance(construct, Update):  # the version is the sort key: delete + insert
            match = _UPDATE_VERSION.search(sql)
            if match is None:
                raise RuntimeError(f"unexpected version-table update: {sql!r}")
            self._delete_version(table, match["old"])
            return self._insert_version(table, match["new"])
        result = super()._exec(construct, *args, **kw)
        wait_for_mutations(self.connection, table.name)
        return result

    def _insert_version(self, table: Table, version: str) -> Any:
        assert self.connection is not None
        # INSERT ... VALUES with inline literals hangs over 18.16's native protocol.
        stmt = text(f"INSERT INTO {table.name} (version_num) SELECT :version")
        return self.connection.execute(stmt, {"version": version})

    def _delete_version(self, table: Table, version: str) -> None:
        assert self.connection is not None
        stmt = text(f"ALTER TABLE {table.name} DELETE WHERE version_num = :version")
        self.connection.execute(stmt, {"version": version})
        wait_for_mutations(self.connection, table.name)


def _literal_values(sql: str) -> str:
    match = re.search(r"VALUES\s*\('(?P<value>[^']*)'\)", sql)
    if match is None:
        raise RuntimeError(f"unexpected version-table insert: {sql!r}")
    return match["value"]


def create_table(connection: Connection, table: Table) -> None:
    """CREATE TABLE for a Core table carrying a ClickHouse engine (Alembic's
    ``op.create_table`` mistakes the engine for a constraint)."""
    table.create(connection)
