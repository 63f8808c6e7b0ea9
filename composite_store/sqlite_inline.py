"""SQLite without the thread hop: the sqlite3 module called on the event loop's own thread.

aiosqlite runs every call in a worker thread; a statement then costs several thread crossings
(cursor, execute, fetch, close: ~0.1 ms each on a small machine), ten times the statement
itself. An embedded database answers our small, indexed statements in microseconds, so this
driver calls sqlite3 directly, behind SQLAlchemy's async API (a dialect with ``is_async``).

What keeps the event loop free:
- SQLite's own busy wait is off (``timeout=0``): a statement that finds the database locked
  by another connection or process fails at once with SQLITE_BUSY, and the cursor retries it
  after an ``asyncio.sleep`` (other tasks run meanwhile) until the configured busy timeout.
  A busy statement has done nothing, so retrying it is safe.
- A unit of work in one process runs without yielding between its statements, so transactions
  of one event loop never wait for each other.
What it costs: a long statement (a scan of a huge table) holds the loop while it runs. Pick
``EngineOptions(sqlite_driver="aiosqlite")`` where that matters more than latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.util import await_only

BUSY_TIMEOUT = 30.0  # seconds; EngineOptions.sqlite_busy_timeout sets it per engine


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        _retry_while_busy(self.connection, lambda: super(_Cursor, self).execute(sql, parameters))
        _awaited()
        return self

    def executemany(self, sql: str, seq_of_parameters: Any) -> _Cursor:
        rows = list(seq_of_parameters)  # an iterator could not be replayed after a retry
        _retry_while_busy(self.connection, lambda: super(_Cursor, self).executemany(sql, rows))
        _awaited()
        return self

    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's async layer after a result is read; nothing is pending."""


async def _done() -> None:
    return None


def _awaited() -> None:
    """SQLAlchemy's async layer checks that a statement awaited something (a guard against
    sync drivers used by mistake); awaiting a coroutine that finishes at once costs a
    greenlet switch, not a trip through the event loop."""
    with contextlib.suppress(Exception):  # a synchronous caller: nothing to prove
        await_only(_done())


class _Connection(sqlite3.Connection):
    busy_timeout = BUSY_TIMEOUT

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)


_WAITABLE = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY/LOCKED: the statement did nothing, so running it again is safe.

    Python reports extended codes, so the primary code is the low byte: SQLITE_BUSY_RECOVERY
    (another connection rebuilding the log's index) is as busy as SQLITE_BUSY. Not so
    SQLITE_BUSY_SNAPSHOT: a transaction whose snapshot another commit overtook can never
    write, and waiting would only use up the timeout."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = exc.sqlite_errorcode
    return code & 0xFF in _WAITABLE and code != sqlite3.SQLITE_BUSY_SNAPSHOT


def busy_delays(connection: Any) -> Iterator[float]:
    """The waits between tries of a busy statement: doubling from 0.5 ms up to 50 ms, for
    as long as the connection's busy timeout allows. The caller tries once more after the
    last one and lets that error through."""
    deadline = time.monotonic() + getattr(connection, "busy_timeout", BUSY_TIMEOUT)
    delay = 0.0005
    while time.monotonic() + delay <= deadline:
        yield delay
        delay = min(delay * 2, 0.05)


def _retry_while_busy(connection: Any, run: Any) -> None:
    for delay in busy_delays(connection):
        try:
            run()
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        _pause(delay)
    run()


def _pause(seconds: float) -> None:
    """Yield to the event loop when called under SQLAlchemy's async API, else sleep."""
    try:
        await_only(asyncio.sleep(seconds))
    except Exception:  # not inside a greenlet: a plain synchronous caller
        time.sleep(seconds)


class InlineSQLiteDialect(SQLiteDialect_pysqlite):
    """``sqlite+composite_inline://``: pysqlite's dialect, declared async."""

    driver = "composite_inline"
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if url.database in (None, "", ":memory:"):
            return pool.StaticPool
        return pool.AsyncAdaptedQueuePool

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        kwargs["factory"] = _Connection
        kwargs["check_same_thread"] = False
        return args, kwargs

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        """``timeout`` (the URL's, or ``connect_args``' which override it) becomes the retry
        schedule's; SQLite's own busy wait is off, as it would block the loop."""
        busy_timeout = float(kwargs.pop("timeout", BUSY_TIMEOUT) or 0)
        connection = super().connect(*args, timeout=0, **kwargs)
        connection.busy_timeout = busy_timeout
        return connection

    def get_driver_connection(self, connection: Any) -> Any:
        return connection


registry.register("sqlite.composite_inline", __name__, "InlineSQLiteDialect")
