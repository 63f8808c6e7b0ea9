"""Finding, creating and dropping test databases on each backend."""

from __future__ import annotations

import asyncio
import os
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from composite_store.config import mask_url

ALL = ("sqlite", "postgresql", "clickhouse", "clickhouse-http")
RELATIONAL = ("sqlite", "postgresql")
# for the scores and observability domains; "clickhouse-http" is the same server through
# clickhouse+http:// URLs (statements as text) instead of the native protocol (blocks)
ANALYTICAL = ("sqlite", "postgresql", "clickhouse", "clickhouse-http")
CLICKHOUSE = ("clickhouse", "clickhouse-http")
CLICKHOUSE_DOMAINS = ("scores", "observability")
_REQUESTED = {
    b.strip()
    for b in os.environ.get("COMPOSITE_STORE_REQUIRE_BACKENDS", "").split(",")
    if b.strip()
}
# scripts/test starts one ClickHouse server for both protocols: requiring it requires both
REQUIRED = frozenset(_REQUESTED | ({"clickhouse-http"} if "clickhouse" in _REQUESTED else set()))
_ENV = {
    "postgresql": "COMPOSITE_STORE_TEST_POSTGRES",
    "clickhouse": "COMPOSITE_STORE_TEST_CLICKHOUSE",
    "clickhouse-http": "COMPOSITE_STORE_TEST_CLICKHOUSE_HTTP",
}
_PROBE = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/postgres",
    "clickhouse": "clickhouse://default@127.0.0.1:9000/default",
    "clickhouse-http": "clickhouse+http://default@127.0.0.1:8123/default",
}


@dataclass(frozen=True)
class Availability:
    ok: bool
    url: str = ""
    reason: str = ""

    @property
    def url_masked(self) -> str:
        return mask_url(self.url) if self.url else "(embedded)"


@cache
def availability(name: str) -> Availability:
    if name == "sqlite":
        return Availability(True)
    url = os.environ.get(_ENV[name]) or _PROBE[name]
    source = _ENV[name] if os.environ.get(_ENV[name]) else f"probe of {mask_url(url)}"
    try:  # in a thread of its own: the caller may already be inside an event loop
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _ping(name, url)).result()
    except Exception as exc:
        return Availability(False, reason=f"{source}: {type(exc).__name__}: {exc}")
    return Availability(True, url)


async def _ping(name: str, url: str) -> None:
    if name == "postgresql":
        conn = await asyncpg.connect(pg_dsn(url), timeout=3)
        await conn.close()
    elif name == "clickhouse-http":
        u = make_url(url)
        request = urllib.request.Request(
            f"http://{u.host}:{u.port or 8123}/", data=b"SELECT 1", method="POST"
        )
        await asyncio.to_thread(lambda: urllib.request.urlopen(request, timeout=3).read())
        native = availability("clickhouse")  # its databases are made through the native protocol
        if not native.ok:
            raise RuntimeError(f"the native protocol is needed too: {native.reason}")
    else:
        from clickhouse_driver import Client

        u = make_url(url)
        client = Client(
            host=u.host,
            port=u.port or 9000,
            user=u.username or "default",
            password=u.password or "",
            connect_timeout=3,
        )
        await asyncio.to_thread(client.execute, "SELECT 1")
        client.disconnect()


def _clickhouse(url: str, *statements: str) -> list[Any]:
    """Run ``statements`` in order on one connection; the last one's rows."""
    from clickhouse_driver import Client

    u = make_url(url)
    client = Client(
        host=u.host or "127.0.0.1",
        port=u.port or 9000,
        user=u.username or "default",
        password=u.password or "",
        connect_timeout=3,
    )
    rows: list[Any] = []
    try:
        for sql in statements:
            rows = client.execute(sql)
    finally:
        client.disconnect()
    return rows


def pg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(name: str, admin_url: str, tmp_path: Path, db_name: str) -> str:
    """A fresh database; returns the URL composite-store should use."""
    if name == "sqlite":
        return f"sqlite:///{tmp_path / (db_name + '.db')}"
    if name == "postgresql":
        conn = await asyncpg.connect(pg_dsn(admin_url), timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{db_name}"')
        finally:
            await conn.close()
        return make_url(admin_url).set(database=db_name).render_as_string(hide_password=False)
    if name == "clickhouse":
        await asyncio.to_thread(_clickhouse, admin_url, f"CREATE DATABASE {db_name}")
        return make_url(admin_url).set(database=db_name).render_as_string(hide_password=False)
    if name == "clickhouse-http":  # made through the native protocol, used over HTTP
        await create_database("clickhouse", availability("clickhouse").url, tmp_path, db_name)
        return make_url(admin_url).set(database=db_name).render_as_string(hide_password=False)
    raise NotImplementedError(name)


async def drop_database(name: str, admin_url: str, url: str) -> None:
    if name == "clickhouse-http":
        name, admin_url = "clickhouse", availability("clickhouse").url
    if name == "clickhouse":
        db_name = make_url(url).database
        await asyncio.to_thread(_clickhouse, admin_url, f"DROP DATABASE IF EXISTS {db_name}")
    if name == "postgresql":
        db_name = make_url(url).database
        conn = await asyncpg.connect(pg_dsn(admin_url), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        finally:
            await conn.close()


# -- migrated templates: each conformance test gets its own copy of a database at head -------
_templates: dict[str, str] = {}
# PostgreSQL copies given back emptied, for the next test: a CREATE DATABASE from the template
# costs ~0.4 s here (the new database's catalog goes through the WAL), emptying one ~3 ms
_emptied: list[str] = []
_template_schema: dict[str, tuple[Any, ...]] = {}  # PostgreSQL: what an emptied copy must match


async def migrated_copy(name: str, tmp_path: Path, db_name: str) -> str:
    """A fresh database already at head: a copy of a template migrated once per session."""
    from composite_store import CompositeStore

    if name == "clickhouse-http":  # the native protocol's copy, read and written over HTTP
        native = await migrated_copy("clickhouse", tmp_path, db_name)
        http = make_url(availability("clickhouse-http").url)
        return http.set(database=make_url(native).database).render_as_string(hide_password=False)

    admin = availability(name).url
    if name not in _templates:
        template = await create_database(name, admin, tmp_path.parent, f"cs_tmpl_{db_name}")
        if name == "clickhouse":  # the domains ClickHouse can hold; the rest in a scratch file
            rest = f"sqlite:///{tmp_path.parent / f'cs_tmpl_{db_name}_rest.db'}"
            store = CompositeStore(rest, dict.fromkeys(CLICKHOUSE_DOMAINS, template))
        else:
            store = CompositeStore(template)
        try:
            await store.init()
        finally:
            await store.close()
        _templates[name] = template
    template = _templates[name]
    if name == "clickhouse":
        await asyncio.to_thread(_copy_clickhouse_database, admin, template, db_name)
        return make_url(admin).set(database=db_name).render_as_string(hide_password=False)
    if name == "sqlite":
        source = Path(make_url(template).database or "")
        target = tmp_path / f"{db_name}.db"
        shutil.copyfile(source, target)
        return f"sqlite:///{target}"
    if name == "postgresql":
        if name not in _template_schema:
            conn = await asyncpg.connect(pg_dsn(template), timeout=10)
            try:
                _template_schema[name] = await _pg_schema(conn)
            finally:
                await conn.close()
        if _emptied:
            return _emptied.pop()
        conn = await asyncpg.connect(pg_dsn(admin), timeout=10)
        try:
            template_db = make_url(template).database
            await conn.execute(f'CREATE DATABASE "{db_name}" TEMPLATE "{template_db}"')
        finally:
            await conn.close()
        return make_url(admin).set(database=db_name).render_as_string(hide_password=False)
    raise NotImplementedError(name)


async def give_back(name: str, url: str) -> None:
    """A test is done with its ``migrated_copy``. A PostgreSQL copy is emptied (every table
    but the version tables) and kept for the next test if its schema and versions are still
    the template's; anything else is dropped, and so is a copy that cannot be emptied at once
    (a lock the test left behind)."""
    if name == "clickhouse-http":
        name = "clickhouse"
    admin = availability(name).url
    if name == "postgresql":
        conn = await asyncpg.connect(pg_dsn(url), timeout=10)
        try:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT LIKE 'alembic_version_%'"
            )
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '1s'")
                await conn.execute("SET LOCAL session_replication_role = replica")  # no FK order
                for (table,) in tables:
                    await conn.execute(f'DELETE FROM "{table}"')
            unchanged = await _pg_schema(conn) == _template_schema[name]
        except asyncpg.PostgresError:
            pass
        else:
            if unchanged:
                _emptied.append(url)
                return
        finally:
            await conn.close()
    await drop_database(name, admin, url)


_PG_SCHEMA = """
SELECT md5(concat_ws('|',
  (SELECT string_agg(concat_ws(' ', a.attrelid::regclass, a.attname,
                               format_type(a.atttypid, a.atttypmod), a.attnotnull,
                               pg_get_expr(d.adbin, d.adrelid)), ',' ORDER BY 1)
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT string_agg(indexdef, ',' ORDER BY indexdef) FROM pg_indexes
    WHERE schemaname = 'public'),
  (SELECT string_agg(conrelid::regclass || ' ' || pg_get_constraintdef(oid), ',' ORDER BY 1)
     FROM pg_constraint WHERE connamespace = 'public'::regnamespace)))
"""


async def _pg_schema(conn: asyncpg.Connection) -> tuple[Any, ...]:
    """A digest of the public schema's columns, indexes and constraints, and the version
    rows: two round trips."""
    versions = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename LIKE 'alembic_version_%' ORDER BY 1"
    )
    rows = " UNION ALL ".join(
        f"SELECT '{table}', version_num FROM \"{table}\"" for (table,) in versions
    )
    digest = await conn.fetchval(_PG_SCHEMA)
    return (digest, *[tuple(row) for row in await conn.fetch(rows + " ORDER BY 1, 2")])


def _copy_clickhouse_database(admin: str, template: str, db_name: str) -> None:
    """ClickHouse has no database templates: each table (and view) is made again from the
    template's own CREATE statement, views last, and the version rows are copied."""
    source = make_url(template).database
    tables = _clickhouse(
        admin,
        f"SELECT name FROM system.tables WHERE database = '{source}' "
        "ORDER BY engine = 'MaterializedView', name",
    )
    statements = [f"CREATE DATABASE {db_name}"]
    for (table,) in tables:
        ((create,),) = _clickhouse(admin, f"SHOW CREATE TABLE {source}.{table}")
        statements.append(create.replace(f"{source}.", f"{db_name}."))
        if table.startswith("alembic_version_"):
            statements.append(f"INSERT INTO {db_name}.{table} SELECT * FROM {source}.{table}")
    _clickhouse(admin, *statements)


def drop_templates() -> None:
    kept = [("postgresql", url) for url in _emptied] + list(_templates.items())
    for name, url in kept:
        asyncio.run(drop_database(name, availability(name).url, url))
    _templates.clear()
    _emptied.clear()
    _template_schema.clear()
