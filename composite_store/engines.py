"""One ``AsyncEngine`` per distinct database URL, set up for the backend behind it.

Backend tuning lives here and nowhere else:
- SQLite: sqlite3 called inline on the event loop's thread (``composite_store.sqlite_inline``;
  or aiosqlite's worker thread), WAL (readers never wait for the writer), a busy timeout
  (writers queue instead of failing), the settings in ``SQLITE_PRAGMAS`` (why each: there),
  and real transactions: pysqlite's implicit BEGIN is switched off and we emit ``BEGIN``
  ourselves, ``BEGIN IMMEDIATE`` for writes so that two writers never deadlock upgrading
  read locks.
- ClickHouse: the synchronous driver run in worker threads behind the async API (see
  ``composite_store.clickhouse``), with bounded connect/receive timeouts.
- PostgreSQL: asyncpg, a pre-ping that costs no round trip on the hot path (see
  ``_pre_ping_postgresql``) so a restarted server is survived, a bounded connect timeout so a
  down server fails fast, JIT off (it only slows the small queries we send), and large values
  compressed by lz4 (``_compress_with_lz4``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import await_only

from composite_store.config import DomainConfig, StoreConfig
from composite_store.errors import ConfigurationError
from composite_store.sqltypes import dumps

# Execution options carried by write transactions and by autocommit connections; only the
# SQLite hook reads them (PostgreSQL uses the AUTOCOMMIT isolation level, see ``autocommit``).
WRITE_TRANSACTION: dict[str, Any] = {"composite_store_write": True}
_AUTOCOMMIT: dict[str, Any] = {"composite_store_autocommit": True}


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The engine for statements that need no BEGIN/COMMIT around them: reads, and writes
    made of a single statement (atomic by itself).

    Under READ COMMITTED (PostgreSQL) and in WAL mode (SQLite) each statement sees its own
    consistent snapshot anyway; an explicit transaction would only add round trips.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine.execution_options(**_AUTOCOMMIT)


# Every SQLite connection's settings (with its busy timeout, set per engine).
SQLITE_PRAGMAS = (
    "journal_mode=WAL",  # readers never wait for the writer
    "foreign_keys=ON",
    # a commit is durable once the WAL holds it; the fsyncs come with checkpoints
    "synchronous=NORMAL",
    # Statement journals in memory: a statement inside a transaction that may fail halfway (a
    # multi-row upsert) journals the pages it changes, and past 64 KiB (20 messages touch
    # ~25 pages) SQLite spills that to a new temporary file: the sqlite3 floor's M1 call
    # went from ~470 to ~380 us without it.
    "temp_store=MEMORY",
    # A checkpoint costs ~3.5 ms of fsyncs plus ~3 us a page; every 4,000 pages (a 16 MB WAL)
    # instead of 1,000, M1 runs ~18% faster over 50,000 messages. Stalls come a quarter as
    # often and last ~17 ms instead of ~6.5.
    "wal_autocheckpoint=4000",
)


@dataclass(frozen=True)
class EngineOptions:
    connect_timeout: float = 5.0  # seconds before a down database counts as unavailable
    ping_after_idle: float = 5.0  # PostgreSQL: ping a pooled connection idle this long
    sqlite_busy_timeout: float = 30.0  # seconds a writer waits for SQLite's write lock
    # "inline": sqlite3 on the event loop's thread (composite_store.sqlite_inline), ~10x less
    # overhead a statement; "aiosqlite": a worker thread, for databases with long scans.
    sqlite_driver: str = "inline"
    pool_size: int = 5
    max_overflow: int = 10
    echo: bool = False

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "ping_after_idle", "sqlite_busy_timeout"):
            value = getattr(self, name)
            seconds = not isinstance(value, bool) and isinstance(value, int | float)
            if (
                not seconds
                or not 0 <= value < float("inf")
                or (name == "connect_timeout" and value == 0)
            ):
                raise ConfigurationError(f"{name} must be seconds, got {value!r}")


def create_engine_for(config: DomainConfig, options: EngineOptions) -> AsyncEngine:
    """An engine for one database, tuned for its backend."""
    if config.backend == "sqlite":
        return _sqlite_engine(config, options)
    if config.backend == "postgresql":
        engine = create_async_engine(
            config.url,
            pool_size=options.pool_size,
            max_overflow=options.max_overflow,
            json_serializer=dumps,
            echo=options.echo,
            connect_args={
                "timeout": options.connect_timeout,
                "server_settings": {"jit": "off", "application_name": "composite-store"},
            },
        )
        _pre_ping_postgresql(engine, options.ping_after_idle, options.connect_timeout)
        _compress_with_lz4(engine)
        return engine
    if config.backend == "clickhouse":
        return _clickhouse_engine(config, options)
    raise ConfigurationError(
        f"domain {config.domain!r}: the {config.backend} backend is not available in this build"
    )


def _clickhouse_engine(config: DomainConfig, options: EngineOptions) -> AsyncEngine:
    """clickhouse-sqlalchemy's synchronous driver in worker threads (composite_store.clickhouse),
    with bounded timeouts so a down server fails fast instead of hanging."""
    from composite_store.clickhouse import ASYNC_DRIVERS

    url = config.url.set(drivername=f"clickhouse+{ASYNC_DRIVERS[config.url.drivername]}")
    if config.url.drivername == "clickhouse+native":
        defaults = {
            "connect_timeout": str(options.connect_timeout),
            "send_receive_timeout": str(max(options.connect_timeout, 60.0)),
            # a server setting sent with each query: the store's reads are short and hit the
            # same newest granules (get_trace, list_traces), and decompressing a granule's
            # blocks again on every call was most of their time (list_traces at 1M spans:
            # 33 -> 18 ms). ClickHouse skips the cache by itself for big reads
            # (merge_tree_max_rows_to_use_cache), so scans do not evict it. A user whose
            # profile is readonly=1 may send no setting: its URL needs use_uncompressed_cache=0.
            "use_uncompressed_cache": "1",
        }
        url = url.update_query_dict({k: v for k, v in defaults.items() if k not in url.query})
    return create_async_engine(
        url,
        pool_size=options.pool_size,
        max_overflow=options.max_overflow,
        # no pool_pre_ping: its SELECT 1 cost ~0.8 ms a call on 18.16, and it is not needed.
        # The native driver pings (a Ping packet) before each query and reconnects if the
        # server has closed the socket; the HTTP driver's pool drops closed sockets itself.
        echo=options.echo,
    )


def _sqlite_engine(config: DomainConfig, options: EngineOptions) -> AsyncEngine:
    in_memory = config.url.database in (None, "", ":memory:")
    url = config.url
    inline = options.sqlite_driver == "inline"
    if inline:
        import composite_store.sqlite_inline  # noqa: F401  (registers the dialect)

        url = url.set(drivername="sqlite+composite_inline")
    elif options.sqlite_driver != "aiosqlite":
        raise ConfigurationError(f"unknown sqlite_driver {options.sqlite_driver!r}")
    busy_timeout = _sqlite_busy_timeout(config, options)
    engine = create_async_engine(
        url,
        json_serializer=dumps,
        echo=options.echo,
        # the inline driver takes it for its retry schedule (sqlite_inline), aiosqlite for
        # sqlite3's own wait; either way it overrides the URL's, so it is the resolved one
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
        **({"poolclass": StaticPool} if in_memory else {}),
    )
    # inline: SQLite's own busy wait would block the event loop; the driver retries instead
    busy_ms = 0 if inline else int(busy_timeout * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in (f"busy_timeout={busy_ms}", *SQLITE_PRAGMAS):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if (
            options.get("composite_store_autocommit")
            or options.get("isolation_level") == "AUTOCOMMIT"
        ):
            return  # statement-level autocommit
        write = options.get("composite_store_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _sqlite_busy_timeout(config: DomainConfig, options: EngineOptions) -> float:
    """Seconds a SQLite writer waits for the write lock: the URL's ``?timeout=`` for its
    database, else ``EngineOptions.sqlite_busy_timeout``."""
    given = config.url.query.get("timeout")
    if given is None:
        return options.sqlite_busy_timeout
    try:
        seconds = float(given if isinstance(given, str) else given[-1])
    except ValueError:
        seconds = float("nan")  # refused below, as a negative or infinite timeout is
    if not 0 <= seconds < float("inf"):
        raise ConfigurationError(
            f"domain {config.domain!r}: the SQLite URL's timeout must be seconds, got {given!r}"
        )
    return seconds


def _pre_ping_postgresql(engine: AsyncEngine, ping_after_idle: float, timeout: float) -> None:
    """Pre-ping that costs nothing on the hot path, so a restarted server is survived.

    SQLAlchemy's ``pool_pre_ping`` sends BEGIN/;/ROLLBACK (three round trips) at every
    checkout. Instead: a connection the server closed (a restart) is seen by asyncpg without
    any traffic (``is_closed()``); one idle for longer than ``ping_after_idle`` seconds (a
    silently dropped socket) gets one real round trip, bounded by ``timeout`` (a frozen
    server would otherwise hold the caller forever). Either way the pool replaces it.
    """

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = dbapi_connection.driver_connection
        if driver.is_closed():
            raise DisconnectionError("the server closed this connection")
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since > ping_after_idle:
            try:
                await_only(driver.execute("SELECT 1", timeout=timeout))
            except Exception as exc:
                raise DisconnectionError(f"ping failed: {exc}") from exc


# Values our sessions write compress with lz4 where the server has it (PostgreSQL 14+ built
# with lz4), else as before (pglz): one statement that cannot fail on any version.
LZ4_IF_AVAILABLE = (
    "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings "
    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


def _compress_with_lz4(engine: AsyncEngine) -> None:
    """TOAST values (a document past ~2 KB) compressed by lz4 instead of pglz. Upserting a
    10 KB workflow snapshot took ~365 us with pglz, which spent the time trying to compress
    it and kept nothing (it keeps only a saving of 25% or more); ~220 us with lz4 (22%
    smaller) or with no compression tried at all; read back as fast. Once per connection.
    A server that refuses the statement (one that speaks PostgreSQL's protocol without its
    catalog) keeps its own default: compression is an optimisation, never a reason to fail."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with contextlib.suppress(asyncpg.PostgresError):
            await_only(dbapi_connection.driver_connection.execute(LZ4_IF_AVAILABLE))


class EngineSet:
    """The engines of one composite: domains with equal URLs share one engine (one pool)."""

    def __init__(self, config: StoreConfig, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self._by_key: dict[str, AsyncEngine] = {}
        self._domains_by_key: dict[str, list[str]] = {}
        self._key_by_domain: dict[str, str] = {}
        self._config = config
        for domain, cfg in config.domains.items():
            key = cfg.engine_key
            if key not in self._by_key:
                self._by_key[key] = create_engine_for(cfg, self.options)
                self._domains_by_key[key] = []
            self._domains_by_key[key].append(domain)
            self._key_by_domain[domain] = key
        default_key = config.default.engine_key
        if default_key not in self._by_key:  # the default serves unmapped statements only
            self._by_key[default_key] = create_engine_for(config.default, self.options)
            self._domains_by_key[default_key] = []
        self._default_key = default_key

    def engine(self, domain: str) -> AsyncEngine:
        return self._by_key[self._key_by_domain[domain]]

    @property
    def default(self) -> AsyncEngine:
        return self._by_key[self._default_key]

    def databases(self) -> Iterator[tuple[AsyncEngine, list[str]]]:
        """Each distinct database with the domains it holds (the default may hold none)."""
        for key, engine in self._by_key.items():
            yield engine, self._domains_by_key[key]

    async def dispose(self) -> None:
        for engine in self._by_key.values():
            await engine.dispose()
