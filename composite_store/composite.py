"""``CompositeStore``: one object that owns every domain's engine, schema and store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, overload

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from composite_store import schema
from composite_store.config import StoreConfig
from composite_store.domains.agents.store import AgentsStore
from composite_store.domains.base import DRIVER_ERRORS, DomainStore, error_text, translate_error
from composite_store.domains.memory.store import MemoryStore
from composite_store.domains.observability.store import ObservabilityStore
from composite_store.domains.scores.store import ScoresStore
from composite_store.domains.workflows.store import WorkflowsStore
from composite_store.engines import EngineOptions, EngineSet
from composite_store.errors import ConfigurationError
from composite_store.registry import DOMAIN_SPECS, DOMAINS
from composite_store.router import session_factory


class CompositeStore:
    """Each domain in its own database, configured from one place, with one default.

    ``default`` is the URL of every domain not named in ``domains`` (unset: an embedded SQLite
    file, ``./composite_store.db``). SQLite is served by sqlite3 on the event loop's thread
    (``sqlite_driver="inline"``, fastest for small statements) or through aiosqlite's worker
    thread (``"aiosqlite"``, for databases with long-running scans). A SQLite writer waits
    up to ``sqlite_busy_timeout`` seconds for another's write lock (a URL's ``?timeout=``
    sets it for that database); the inline driver waits with ``asyncio.sleep``.
    """

    def __init__(
        self,
        default: str | URL | None = None,
        domains: Mapping[str, str | URL | None] | None = None,
        *,
        auto_migrate: bool = True,
        connect_timeout: float = 5.0,
        sqlite_driver: str = "inline",
        sqlite_busy_timeout: float = 30.0,
        _config: StoreConfig | None = None,
    ) -> None:
        self.config = _config or StoreConfig.build(default, domains)
        self.auto_migrate = auto_migrate
        options = EngineOptions(
            connect_timeout=connect_timeout,
            sqlite_driver=sqlite_driver,
            sqlite_busy_timeout=sqlite_busy_timeout,
        )
        self._engines = EngineSet(self.config, options)
        self._stores: dict[str, DomainStore] = {
            spec.name: spec.store_class(
                self._engines.engine(spec.name), masked_url=self.config[spec.name].masked_url
            )
            for spec in DOMAIN_SPECS
        }
        self._sessions = session_factory(self._engines)
        self._initialized = False
        self._closed = False
        self._init_lock = asyncio.Lock()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        auto_migrate: bool = True,
        connect_timeout: float = 5.0,
        sqlite_driver: str = "inline",
        sqlite_busy_timeout: float = 30.0,
    ) -> CompositeStore:
        """Configure from ``COMPOSITE_STORE_URL`` and ``COMPOSITE_STORE_<DOMAIN>_URL``."""
        return cls(
            auto_migrate=auto_migrate,
            connect_timeout=connect_timeout,
            sqlite_driver=sqlite_driver,
            sqlite_busy_timeout=sqlite_busy_timeout,
            _config=StoreConfig.from_env(environ),
        )

    # -- stores ---------------------------------------------------------------------------
    @overload
    def get_store(self, name: Literal["memory"]) -> MemoryStore: ...
    @overload
    def get_store(self, name: Literal["workflows"]) -> WorkflowsStore: ...
    @overload
    def get_store(self, name: Literal["scores"]) -> ScoresStore: ...
    @overload
    def get_store(self, name: Literal["observability"]) -> ObservabilityStore: ...
    @overload
    def get_store(self, name: Literal["agents"]) -> AgentsStore: ...
    @overload
    def get_store(self, name: str) -> DomainStore: ...
    def get_store(self, name: str) -> DomainStore:
        try:
            return self._stores[name]
        except (KeyError, TypeError):
            raise ConfigurationError(
                f"unknown domain {name!r} (domains: {', '.join(DOMAINS)})"
            ) from None

    @property
    def memory(self) -> MemoryStore:
        return self.get_store("memory")

    @property
    def workflows(self) -> WorkflowsStore:
        return self.get_store("workflows")

    @property
    def scores(self) -> ScoresStore:
        return self.get_store("scores")

    @property
    def observability(self) -> ObservabilityStore:
        return self.get_store("observability")

    @property
    def agents(self) -> AgentsStore:
        return self.get_store("agents")

    def engine(self, domain: str) -> AsyncEngine:
        self.get_store(domain)  # validates the name
        return self._engines.engine(domain)

    def session(self, **kwargs: Any) -> AsyncSession:
        """An ``AsyncSession`` routing each model to its domain's database.

        A transaction spans one database only: work touching two domains on two databases
        is committed per database, not atomically.
        """
        return self._sessions(**kwargs)

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions

    # -- lifecycle ------------------------------------------------------------------------
    async def init(self) -> None:
        """Bring every domain to head (or, with ``auto_migrate=False``, check it is there).

        Distinct databases migrate in parallel; a second call returns at once.
        """
        async with self._init_lock:
            if self._initialized:
                return
            step = schema.upgrade if self.auto_migrate else schema.check
            outcomes = await asyncio.gather(
                *(
                    self._guarded(domains[0], step(engine, domains))
                    for engine, domains in self._engines.databases()
                    if domains
                ),
                return_exceptions=True,  # let every database finish before reporting
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            self._initialized = True

    async def _guarded(self, domain: str, work: Any) -> None:
        try:
            await work
        except DRIVER_ERRORS as exc:
            raise translate_error(exc, domain, self.config[domain].masked_url) from exc

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                await asyncio.gather(
                    *(store.release() for store in self._stores.values()),
                    return_exceptions=True,  # a connection that fails to close is let go
                )
            finally:
                await self._engines.dispose()

    async def __aenter__(self) -> CompositeStore:
        await self.init()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- introspection --------------------------------------------------------------------
    def describe(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"backend": cfg.backend, "url": cfg.masked_url, "is_default": cfg.is_default}
            for name, cfg in self.config.domains.items()
        }

    async def health(self, timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Ping each distinct database once, in parallel; a down one never blocks the others."""
        limit = timeout if timeout is not None else self._engines.options.connect_timeout + 1

        async def ping(engine: AsyncEngine) -> tuple[bool, float, str | None]:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(limit), engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                error = None
            except Exception as exc:  # reported, not raised: that is health()'s job
                error = error_text(exc)
            return error is None, round((time.perf_counter() - started) * 1000, 3), error

        databases = [(e, d) for e, d in self._engines.databases() if d]
        results = await asyncio.gather(*(ping(engine) for engine, _ in databases))
        report: dict[str, dict[str, Any]] = {}
        for (_, domains), (ok, latency, error) in zip(databases, results, strict=True):
            for domain in domains:
                report[domain] = {"reachable": ok, "latency_ms": latency, "error": error}
        return {name: report[name] for name in DOMAINS}

    def __repr__(self) -> str:
        where = ", ".join(f"{d}={c.masked_url}" for d, c in self.config.domains.items())
        return f"CompositeStore({where})"
