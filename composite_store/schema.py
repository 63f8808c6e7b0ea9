"""Alembic, per domain: one version history and one version table (``alembic_version_<domain>``)
per domain, so domains sharing a database never see each other's revisions or tables.

The same code serves ``alembic --name <domain> ...`` (through ``migrations/env.py``),
``composite-store migrate`` and ``CompositeStore.init()``. Migrations of one database run under
a lock that waits: PostgreSQL's advisory lock, SQLite's write lock (``BEGIN IMMEDIATE``), so
several processes calling ``init()`` at once all succeed.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from composite_store.dialects import take_migration_lock
from composite_store.engines import WRITE_TRANSACTION
from composite_store.errors import SchemaOutOfDateError
from composite_store.registry import spec_for
from composite_store.resources import shipped_folder

_LOCK_KEY = zlib.crc32(b"composite_store.migrations")  # one advisory lock per database


def migrations_dir() -> Path:
    """The Alembic scripts: inside the installed wheel, else the source checkout's folder."""
    return shipped_folder("migrations", "env.py")


def version_table(domain: str) -> str:
    return f"alembic_version_{domain}"


def alembic_config(domain: str, connection: Connection | None = None) -> Config:
    """A programmatic config equal to the ``[domain]`` section of alembic.ini."""
    scripts = migrations_dir()
    cfg = Config(ini_section=domain)
    cfg.set_main_option("script_location", str(scripts))
    cfg.set_main_option("version_locations", str(scripts / "versions" / domain))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision(domain: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(domain)).get_current_head()


def upgrade_command(domain: str) -> str:
    return f"composite-store migrate --domain {domain}  (or: alembic --name {domain} upgrade head)"


def context_options(connection: Connection, domain: str) -> dict[str, Any]:
    """Alembic's options for one domain: its version table, its own tables only."""
    metadata = spec_for(domain).base.metadata

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        # Autogenerate must never see (and so never drop) another domain's tables.
        return type_ != "table" or name in metadata.tables

    return {
        "target_metadata": metadata,
        "version_table": version_table(domain),
        "include_name": include_name,
        "render_as_batch": connection.dialect.name == "sqlite",
        "compare_type": True,
    }


def configure_context(context: EnvironmentContext, connection: Connection, domain: str) -> None:
    context.configure(connection=connection, **context_options(connection, domain))


def run_env(context: EnvironmentContext) -> None:
    """Body of ``migrations/env.py``: migrate on the caller's connection or open our own."""
    config = context.config
    domain = config.config_ini_section
    connection = config.attributes.get("connection")
    if connection is not None:
        configure_context(context, connection, domain)
        context.run_migrations()
        return
    # Invoked by the alembic CLI: resolve the domain's URL like the library does.
    import asyncio

    from composite_store.config import StoreConfig
    from composite_store.engines import EngineOptions, create_engine_for

    async def run() -> None:
        engine = create_engine_for(StoreConfig.from_env()[domain], EngineOptions())
        try:
            async with locked_transaction(engine) as conn:
                await conn.run_sync(_run_in_context, context, domain)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _run_in_context(connection: Connection, context: EnvironmentContext, domain: str) -> None:
    configure_context(context, connection, domain)
    context.run_migrations()


class locked_transaction:
    """A transaction holding the database's migration lock until it commits."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.execution_options(**WRITE_TRANSACTION)
        self._ctx: Any = None

    async def __aenter__(self) -> Any:
        self._ctx = self._engine.begin()
        conn = await self._ctx.__aenter__()
        await take_migration_lock(conn, _LOCK_KEY)
        return conn

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._ctx.__aexit__(*exc)


def _upgrade(connection: Connection, domain: str, revision: str) -> None:
    command.upgrade(alembic_config(domain, connection), revision)


def _downgrade(connection: Connection, domain: str, revision: str) -> None:
    command.downgrade(alembic_config(domain, connection), revision)


def _current(connection: Connection, domain: str) -> str | None:
    return MigrationContext.configure(
        connection, opts=context_options(connection, domain)
    ).get_current_revision()


# Alembic's ``op`` and ``context`` are module-level proxies: two migrations interleaving in one
# process would overwrite each other's. So actual migration runs take turns per process (and
# per database, across processes, through ``locked_transaction``); the check that a database
# is already at head -- init()'s usual case -- runs for all databases in parallel.
_alembic_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _alembic_turn() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    if loop not in _alembic_turns:
        _alembic_turns[loop] = asyncio.Lock()
    return _alembic_turns[loop]


async def upgrade(engine: AsyncEngine, domains: list[str], revision: str = "head") -> None:
    """Bring ``domains`` (all on ``engine``'s database) to ``revision`` under the lock."""
    if revision == "head":
        current = await current_revisions(engine, domains)
        if all(current[d] == head_revision(d) for d in domains):
            return
    async with _alembic_turn(), locked_transaction(engine) as conn:
        for domain in domains:
            await conn.run_sync(_upgrade, domain, revision)


async def downgrade(engine: AsyncEngine, domains: list[str], revision: str = "base") -> None:
    async with _alembic_turn(), locked_transaction(engine) as conn:
        for domain in domains:
            await conn.run_sync(_downgrade, domain, revision)


async def current_revisions(engine: AsyncEngine, domains: list[str]) -> dict[str, str | None]:
    async with engine.connect() as conn:
        return {domain: await conn.run_sync(_current, domain) for domain in domains}


async def check(engine: AsyncEngine, domains: list[str]) -> None:
    """Raise ``SchemaOutOfDateError`` naming the command to run if a domain is behind head."""
    current = await current_revisions(engine, domains)
    for domain in domains:
        head = head_revision(domain)
        if current[domain] != head:
            raise SchemaOutOfDateError(
                f"domain {domain!r} is at revision {current[domain] or 'none'}, head is {head}; "
                f"run: {upgrade_command(domain)}"
            )
