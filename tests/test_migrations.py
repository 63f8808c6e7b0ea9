"""Per-domain Alembic histories: upgrade/downgrade, models == migrations, shared databases,
concurrent init, and the CLI entry points (SPEC §5)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, insert, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from composite_store import DOMAINS, CompositeStore, SchemaOutOfDateError, schema
from composite_store.domains.base import row_values, table_of
from composite_store.domains.observability.store import FILTERS  # the tags' order
from composite_store.models import Span
from composite_store.registry import spec_for

REPO = Path(__file__).resolve().parent.parent


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _version_rows(conn: Connection) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for table in _tables(conn):
        if table.startswith("alembic_version_"):
            result = conn.exec_driver_sql(f"SELECT version_num FROM {table}")
            rows[table.removeprefix("alembic_version_")] = [r[0] for r in result]
    return rows


@pytest.mark.parametrize("domain", DOMAINS)
async def test_upgrade_downgrade_upgrade(domain: str, fresh_url: str) -> None:
    """Each domain's history goes to head, back to base (its tables gone), and up again."""
    store = CompositeStore(fresh_url, auto_migrate=False)
    engine = store.engine(domain)
    own_tables = set(spec_for(domain).base.metadata.tables)
    try:
        await schema.upgrade(engine, [domain])
        async with engine.connect() as conn:
            assert own_tables <= await conn.run_sync(_tables)
        assert (await schema.current_revisions(engine, [domain]))[domain] == schema.head_revision(
            domain
        )

        await schema.downgrade(engine, [domain], "base")
        async with engine.connect() as conn:
            assert not own_tables & await conn.run_sync(_tables)
        assert (await schema.current_revisions(engine, [domain]))[domain] is None

        await schema.upgrade(engine, [domain])
        async with engine.connect() as conn:
            assert own_tables <= await conn.run_sync(_tables)
    finally:
        await store.close()


async def test_models_and_migrations_agree(fresh_url: str) -> None:
    """Autogenerate finds nothing to do for any domain, with all five in one database (so each
    domain also ignores the others' tables instead of proposing to drop them)."""
    async with CompositeStore(fresh_url) as store:
        engine = store.engine("memory")

        def diffs(conn: Connection) -> dict[str, list[object]]:
            found = {}
            for domain in DOMAINS:
                ctx = MigrationContext.configure(conn, opts=schema.context_options(conn, domain))
                found[domain] = compare_metadata(ctx, spec_for(domain).base.metadata)
            return found

        async with engine.connect() as conn:
            assert await conn.run_sync(diffs) == {d: [] for d in DOMAINS}


async def test_shared_database_keeps_one_version_row_per_domain(fresh_url: str) -> None:
    """Domains sharing a database each keep their own version table; moving one domain's
    history leaves the others untouched."""
    async with CompositeStore(fresh_url) as store:
        engine = store.engine("memory")
        async with engine.connect() as conn:
            rows = await conn.run_sync(_version_rows)
        assert rows == {d: [schema.head_revision(d)] for d in DOMAINS}

        await schema.downgrade(engine, ["memory"], "base")
        async with engine.connect() as conn:
            rows = await conn.run_sync(_version_rows)
            tables = await conn.run_sync(_tables)
        assert rows["memory"] == []
        assert {d: rows[d] for d in DOMAINS if d != "memory"} == {
            d: [schema.head_revision(d)] for d in DOMAINS if d != "memory"
        }
        assert "memory_threads" not in tables and "workflow_runs" in tables


async def test_concurrent_init_in_one_process(fresh_url: str) -> None:
    """Five composites (five pools) migrating one fresh database at once all succeed."""
    stores = [CompositeStore(fresh_url) for _ in range(5)]
    try:
        await asyncio.gather(*(s.init() for s in stores))
        revisions = await schema.current_revisions(stores[0].engine("memory"), list(DOMAINS))
        assert revisions == {d: schema.head_revision(d) for d in DOMAINS}
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_concurrent_init_in_five_processes(fresh_url: str) -> None:
    """Five processes calling init() on one fresh database all succeed."""
    code = (
        "import asyncio, sys\n"
        "from composite_store import CompositeStore\n"
        "async def main():\n"
        "    async with CompositeStore(sys.argv[1]):\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, fresh_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(5)
    ]
    results = await asyncio.gather(*(p.communicate() for p in procs))
    failures = [err.decode() for p, (_, err) in zip(procs, results, strict=True) if p.returncode]
    assert failures == []
    async with CompositeStore(fresh_url, auto_migrate=False) as store:  # check passes
        assert store.describe()["memory"]["backend"] in ("sqlite", "postgresql")


async def test_check_only_mode_names_the_command(fresh_url: str) -> None:
    """auto_migrate=False on an unmigrated database raises, naming the command to run."""
    store = CompositeStore(fresh_url, auto_migrate=False)
    try:
        with pytest.raises(SchemaOutOfDateError, match="composite-store migrate --domain"):
            await store.init()
        async with store.engine("memory").connect() as conn:
            assert "memory_threads" not in await conn.run_sync(_tables)  # nothing was created
    finally:
        await store.close()


async def test_init_twice_is_cheap_and_safe(fresh_url: str) -> None:
    """A second init() on the same store sends nothing; a new store on a database already at
    head only reads the version tables (no DDL, no version writes)."""

    def record(store: CompositeStore) -> list[str]:
        seen: list[str] = []
        for engine in {store.engine(d) for d in DOMAINS}:
            event.listen(
                engine.sync_engine,
                "before_cursor_execute",
                lambda _c, _cur, statement, *_a: seen.append(statement),
            )
        return seen

    async with CompositeStore(fresh_url) as store:
        sent = record(store)
        await store.init()
        assert sent == []
    fresh = CompositeStore(fresh_url)
    sent = record(fresh)
    try:
        await fresh.init()
    finally:
        await fresh.close()
    assert sent, "the revisions must be read"
    changes = ("CREATE", "ALTER", "INSERT", "UPDATE", "DELETE", "DROP")
    assert [s for s in sent if s.lstrip().upper().startswith(changes)] == []


def _cli_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_STORE_")}
    env["COMPOSITE_STORE_URL"] = url
    return env


def test_alembic_command_line_per_domain(fresh_url: str) -> None:
    """`alembic --name <domain> upgrade head` / `downgrade base` work from the repository."""
    alembic = [sys.executable, "-m", "alembic"]
    env = _cli_env(fresh_url)
    for domain in DOMAINS:
        up = subprocess.run(
            [*alembic, "--name", domain, "upgrade", "head"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert up.returncode == 0, up.stderr
    current = subprocess.run(
        [*alembic, "--name", "agents", "current"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert schema.head_revision("agents") in current.stdout
    down = subprocess.run(
        [*alembic, "--name", "memory", "downgrade", "base"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert down.returncode == 0, down.stderr


def test_cli_migrate_one_domain(fresh_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "composite_store", "migrate", "--domain", "workflows"],
        env=_cli_env(fresh_url),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"workflows      at {schema.head_revision('workflows')}" in out.stdout
    assert "memory" not in out.stdout


@pytest.mark.parametrize("domain", ["scores", "observability"])
async def test_clickhouse_migrations(
    domain: str, make_database: Callable[[str], Awaitable[str]]
) -> None:
    """On ClickHouse: upgrade, downgrade, upgrade again; MergeTree-family tables, and a
    MergeTree version table ordered by the version."""
    url = await make_database("clickhouse")
    store = CompositeStore("sqlite://", {domain: url}, auto_migrate=False)
    engine = store.engine(domain)
    try:
        await schema.upgrade(engine, [domain])
        assert (await schema.current_revisions(engine, [domain]))[domain] == schema.head_revision(
            domain
        )
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
                )
            )
            engines = {name: engine_full for name, engine_full in result}
        table = spec_for(domain).base.metadata.sorted_tables[0].name
        assert engines[table].startswith("ReplacingMergeTree")
        assert engines[f"alembic_version_{domain}"].startswith("MergeTree")
        assert "ORDER BY version_num" in engines[f"alembic_version_{domain}"]

        await schema.downgrade(engine, [domain], "base")
        assert (await schema.current_revisions(engine, [domain]))[domain] is None
        await schema.upgrade(engine, [domain])
        await schema.check(engine, [domain])  # what init(auto_migrate=False) runs: passes
    finally:
        await store.close()


async def test_clickhouse_spans_keep_their_rows_when_unpartitioned(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    """observability_0002 rebuilds the month-partitioned spans table without partitions: every
    row survives, and a span whose two versions sat in two months reads as its newest one."""
    url = await make_database("clickhouse")
    store = CompositeStore("sqlite://", {"observability": url}, auto_migrate=False)
    engine = store.engine("observability")
    january, march = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)
    older = Span(trace_id="t", span_id="root", name="old", started_at=march, updated_at=january)
    newer = Span(trace_id="t", span_id="root", name="new", started_at=january, updated_at=march)
    child = Span(trace_id="t", span_id="c", name="c", started_at=march, parent_span_id="root")
    try:
        await schema.upgrade(engine, ["observability"], "observability_0001")
        async with engine.connect() as conn:
            for span in (older, child, newer):  # separate inserts: separate parts
                await conn.execute(insert(table_of(Span)), [row_values(span)])
        await schema.upgrade(engine, ["observability"])
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT engine_full FROM system.tables "
                    "WHERE database = currentDatabase() AND name = 'spans'"
                )
            )
            assert "PARTITION BY" not in result.scalar_one()
        trace = await store.observability.get_trace("t")
        assert trace is not None
        assert [(s.span_id, s.name) for s in trace.spans] == [("root", "new"), ("c", "c")]
        # observability_0004 copied the root spans across: the trace list reads them there
        listed = await store.observability.list_traces(with_total=False)
        assert [(s.trace_id, s.name) for s in listed.items] == [("t", "new")]
        await schema.downgrade(engine, ["observability"], "observability_0001")
        trace = await store.observability.get_trace("t")
        assert trace is not None and len(trace.spans) == 2
    finally:
        await store.close()


REBUILD_STEPS = [  # observability_0002's steps, in order
    (
        "create",
        "CREATE TABLE spans_rebuilt AS spans "
        "ENGINE = ReplacingMergeTree(updated_at) ORDER BY (trace_id, span_id)",
    ),
    ("swap", "RENAME TABLE spans TO spans_replaced, spans_rebuilt TO spans"),
    ("copy", "INSERT INTO spans SELECT * FROM spans_replaced"),
]


@pytest.mark.parametrize("stopped_after", [name for name, _ in REBUILD_STEPS])
async def test_clickhouse_spans_rebuild_finishes_a_run_that_stopped(
    make_database: Callable[[str], Awaitable[str]], stopped_after: str
) -> None:
    """ClickHouse has no transactions: observability_0002 stopped after any step (or a second
    process half-way) is finished by the next run, and no span is lost."""
    url = await make_database("clickhouse")
    store = CompositeStore("sqlite://", {"observability": url}, auto_migrate=False)
    engine = store.engine("observability")
    spans = [
        Span(
            trace_id="t", span_id=f"s{i}", name="n", started_at=datetime(2026, 1 + i, 5, tzinfo=UTC)
        )
        for i in range(3)
    ]
    try:
        await schema.upgrade(engine, ["observability"], "observability_0001")
        async with engine.connect() as conn:
            await conn.execute(insert(table_of(Span)), [row_values(s) for s in spans])
            for name, statement in REBUILD_STEPS:  # a run stopped after ``stopped_after``
                await conn.execute(text(statement))
                if name == stopped_after:
                    break
        await schema.upgrade(engine, ["observability"])
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT name FROM system.tables WHERE database = currentDatabase()")
            )
            tables = set(result.scalars())
        assert not tables & {"spans_rebuilt", "spans_replaced"}
        trace = await store.observability.get_trace("t")
        assert trace is not None and [s.span_id for s in trace.spans] == ["s0", "s1", "s2"]
    finally:
        await store.close()


GRANULES_STEPS = [  # observability_0005's steps, in order
    ("drop view", "DROP TABLE IF EXISTS root_spans_feed"),
    (
        "create",
        "CREATE TABLE spans_rebuilt AS spans ENGINE = ReplacingMergeTree(updated_at) "
        "ORDER BY (trace_id, span_id) SETTINGS index_granularity = 256",
    ),
    ("swap", "RENAME TABLE spans TO spans_replaced, spans_rebuilt TO spans"),
    (
        "view",
        "CREATE MATERIALIZED VIEW root_spans_feed TO root_spans "
        "AS SELECT * FROM spans WHERE parent_span_id IS NULL",
    ),
    ("copy", "INSERT INTO spans SELECT * FROM spans_replaced"),
]


@pytest.mark.parametrize("stopped_after", ["nothing", *(name for name, _ in GRANULES_STEPS)])
async def test_clickhouse_spans_get_small_granules_and_keep_the_root_feed(
    make_database: Callable[[str], Awaitable[str]], stopped_after: str
) -> None:
    """observability_0005 rebuilds spans with 256-row granules, from a clean start or after a
    run stopped after any step: no span is lost, and the root index is fed by the new table (a
    root written after the upgrade to head is listed by the fast path; after the downgrade to
    observability_0004, root_spans holds one written then)."""
    url = await make_database("clickhouse")
    store = CompositeStore("sqlite://", {"observability": url}, auto_migrate=False)
    engine = store.engine("observability")
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    before = [
        Span(
            trace_id=f"t{i}",
            span_id=f"s{j}",
            parent_span_id=None if j == 0 else "s0",
            name="n",
            started_at=t0.replace(day=1 + i, second=j),
        )
        for i in range(3)
        for j in range(3)
    ]

    async def granularity() -> str:
        async with engine.connect() as conn:
            query = (
                "SELECT engine_full FROM system.tables "
                "WHERE database = currentDatabase() AND name = 'spans'"
            )
            return str((await conn.execute(text(query))).scalar_one())

    try:
        await schema.upgrade(engine, ["observability"], "observability_0004")
        async with engine.connect() as conn:
            for span in before:  # one part each
                await conn.execute(insert(table_of(Span)), [row_values(span)])
            for name, statement in GRANULES_STEPS if stopped_after != "nothing" else ():
                await conn.execute(text(statement))
                if name == stopped_after:
                    break
        await schema.upgrade(engine, ["observability"])
        assert "index_granularity = 256" in await granularity()
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT name FROM system.tables WHERE database = currentDatabase()")
            )
            assert not set(result.scalars()) & {"spans_rebuilt", "spans_replaced"}
        for i in range(3):
            trace = await store.observability.get_trace(f"t{i}")
            assert trace is not None and [s.span_id for s in trace.spans] == ["s0", "s1", "s2"]
        await store.observability.create_span(
            Span(trace_id="t9", span_id="s0", name="after", started_at=t0.replace(day=20))
        )
        listed = await store.observability.list_traces(with_total=False)
        assert [s.trace_id for s in listed.items] == ["t9", "t2", "t1", "t0"]
        await schema.downgrade(engine, ["observability"], "observability_0004")
        assert "index_granularity = 8192" in await granularity()
        await store.observability.create_span(
            Span(trace_id="t8", span_id="s0", name="down", started_at=t0.replace(day=25))
        )
        async with engine.connect() as conn:  # the code reads observability_0006's index now
            query = "SELECT trace_id FROM root_spans FINAL ORDER BY started_at DESC"
            fed = list((await conn.execute(text(query))).scalars())
        assert fed == ["t8", "t9", "t2", "t1", "t0"]
    finally:
        await store.close()


def test_alembic_command_line_on_clickhouse(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    """`alembic --name observability upgrade head` against ClickHouse."""
    url = asyncio.run(make_database("clickhouse"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_STORE_")}
    env["COMPOSITE_STORE_OBSERVABILITY_URL"] = url
    env["COMPOSITE_STORE_URL"] = "sqlite://"
    for args in (["upgrade", "head"], ["current"], ["downgrade", "base"], ["upgrade", "head"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "--name", "observability", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr


SPAN_JSON_COLUMNS = ("error", "attributes", "input", "output")


async def test_sqlite_spans_json_columns_become_text(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    """observability_0003 rebuilds SQLite's spans table with TEXT JSON columns (declared JSON
    they had NUMERIC affinity: the document 1.0 came back as 1): stored spans and both indexes
    survive, and a bare number written afterwards keeps its form."""
    url = await make_database("sqlite")
    store = CompositeStore(url, auto_migrate=False)
    engine = store.engine("observability")

    def declared(conn: Connection) -> tuple[dict[str, str], set[str]]:
        columns = {c["name"]: str(c["type"]) for c in inspect(conn).get_columns("spans")}
        indexes = {i["name"] for i in inspect(conn).get_indexes("spans")}
        return {n: columns[n] for n in SPAN_JSON_COLUMNS}, indexes

    old = Span(
        trace_id="t",
        span_id="root",
        name="n",
        started_at=datetime(2026, 1, 5, tzinfo=UTC),
        attributes={"k": [1, "ü"]},
        input={"q": 1.5},
        output="answer",
        error={"message": "boom"},
    )
    indexes = {"ix_spans_trace_started", "ix_spans_root_started"}
    try:
        await schema.upgrade(engine, ["observability"])
        await schema.downgrade(engine, ["observability"], "observability_0002")
        async with engine.connect() as conn:
            assert await conn.run_sync(declared) == (
                dict.fromkeys(SPAN_JSON_COLUMNS, "JSON"),
                indexes,
            )
        await store.observability.create_span(old)

        await schema.upgrade(engine, ["observability"])
        async with engine.connect() as conn:  # the rebuild kept both; observability_0007
            assert await conn.run_sync(declared) == (  # drops (trace_id, started_at)
                dict.fromkeys(SPAN_JSON_COLUMNS, "TEXT"),
                indexes - {"ix_spans_trace_started"},
            )
        got = await store.observability.get_span("t", "root")
        assert got is not None
        assert (got.attributes, got.input, got.output, got.error) == (
            old.attributes,
            old.input,
            old.output,
            old.error,
        )
        await store.observability.update_span("t", "root", input=1.0, output=2**70)
        got = await store.observability.get_span("t", "root")
        assert got is not None and (got.input, got.output) == (1.0, 2**70)
        assert (type(got.input), type(got.output)) == (float, int)
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_spans_lose_the_trace_started_index_and_keep_their_rows(
    backend: str, make_database: Callable[[str], Awaitable[str]]
) -> None:
    """observability_0007 drops (trace_id, started_at); reads by trace go by the primary key.
    Downgraded, the index is back; either way the stored spans are read as before."""
    store = CompositeStore(await make_database(backend), auto_migrate=False)
    engine = store.engine("observability")

    def indexes(conn: Connection) -> set[str]:
        return {i["name"] for i in inspect(conn).get_indexes("spans")}

    spans = [
        Span(
            trace_id="t",
            span_id=f"s{i}",
            name="n",
            started_at=datetime(2026, 1, 5, 0, i, tzinfo=UTC),
        )
        for i in (3, 1, 2)
    ]
    try:
        await schema.upgrade(engine, ["observability"])
        await schema.downgrade(engine, ["observability"], "observability_0006")
        async with engine.connect() as conn:
            assert "ix_spans_trace_started" in await conn.run_sync(indexes)
        await store.observability.batch_create_spans(spans)
        await schema.upgrade(engine, ["observability"])
        async with engine.connect() as conn:
            assert await conn.run_sync(indexes) == {"ix_spans_root_started"}
        trace = await store.observability.get_trace("t")
        assert trace is not None and [s.span_id for s in trace.spans] == ["s1", "s2", "s3"]
    finally:
        await store.close()


def _upgrade_statements(revision_file: str) -> tuple[str, ...]:
    """An observability revision's UPGRADE statements, read from the revision itself."""
    import importlib.util

    path = REPO / "migrations" / "versions" / "observability" / revision_file
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.UPGRADE)


async def _run_until(
    conn: AsyncConnection, statements: tuple[str, ...], stopped_after: int | None
) -> None:
    """A revision's statements up to and with ``stopped_after`` (none if None): an
    upgrade that a crash stopped there."""
    if stopped_after is not None:
        for statement in statements[: stopped_after + 1]:
            await conn.execute(text(statement))


def _narrow_roots_upgrade() -> tuple[str, ...]:
    return _upgrade_statements("observability_0006_clickhouse_narrow_trace_roots.py")


def _one_map_upgrade() -> tuple[str, ...]:
    return _upgrade_statements("observability_0008_clickhouse_cheaper_root_tags.py")


@pytest.mark.parametrize("stopped_after", [None, *range(len(_narrow_roots_upgrade()))])
async def test_clickhouse_trace_roots_replace_root_spans(
    make_database: Callable[[str], Awaitable[str]], stopped_after: int | None
) -> None:
    """observability_0006, from a clean start or after a run stopped after any step: every
    root stored before it is listed by the fast path, with its filters and status, and
    root_spans is gone; a downgrade brings root_spans back with every root."""
    url = await make_database("clickhouse")
    store = CompositeStore("sqlite://", {"observability": url}, auto_migrate=False)
    engine = store.engine("observability")
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    before = [
        Span(trace_id="ok", span_id="r", name="n", started_at=t0, ended_at=t0, user_id="u1"),
        Span(trace_id="ok", span_id="c", parent_span_id="r", name="n", started_at=t0),
        Span(trace_id="bad", span_id="r", name="n", started_at=t0.replace(day=6), error={"m": 1}),
        Span(trace_id="open", span_id="r", name="n", started_at=t0.replace(day=7), user_id="u1"),
    ]

    async def listed(**kw: Any) -> list[str]:
        page = await store.observability.list_traces(with_total=False, **kw)
        return [s.trace_id for s in page.items]

    async def tables() -> set[str]:
        async with engine.connect() as conn:
            query = "SELECT name FROM system.tables WHERE database = currentDatabase()"
            return set((await conn.execute(text(query))).scalars())

    try:
        await schema.upgrade(engine, ["observability"], "observability_0005")
        async with engine.connect() as conn:
            await conn.execute(insert(table_of(Span)), [row_values(s) for s in before])
            await _run_until(conn, _narrow_roots_upgrade(), stopped_after)
        await schema.upgrade(engine, ["observability"])
        assert {"root_spans", "root_spans_feed"}.isdisjoint(await tables())
        assert await listed() == ["open", "bad", "ok"]
        assert await listed(user_id="u1") == ["open", "ok"]
        assert await listed(status="error") == ["bad"]
        assert await listed(status="running") == ["open"]
        assert await listed(status="success", user_id="u1") == ["ok"]
        after = Span(trace_id="after", span_id="r", name="n", started_at=t0.replace(day=8))
        await store.observability.create_span(after)  # the view feeds trace_roots
        assert await listed() == ["after", "open", "bad", "ok"]

        await schema.downgrade(engine, ["observability"], "observability_0005")
        assert {"trace_roots", "trace_roots_feed"}.isdisjoint(await tables())
        down = Span(trace_id="down", span_id="r", name="n", started_at=t0.replace(day=9))
        await store.observability.create_span(down)  # root_spans' view is back
        async with engine.connect() as conn:
            query = "SELECT DISTINCT trace_id FROM root_spans ORDER BY started_at DESC"
            fed = list((await conn.execute(text(query))).scalars())
        assert fed == ["down", "after", "open", "bad", "ok"]
        await schema.upgrade(engine, ["observability"])
        assert await listed(user_id="u1") == ["open", "ok"]
        assert await listed() == ["down", "after", "open", "bad", "ok"]
    finally:
        await store.close()


@pytest.mark.parametrize("stopped_after", [None, *range(len(_one_map_upgrade()))])
async def test_clickhouse_root_tags_from_one_map_are_the_old_ones(
    make_database: Callable[[str], Awaitable[str]], stopped_after: int | None
) -> None:
    """observability_0008, from a clean start or after a run stopped after any step: the new
    view writes each root's tags as the old one did, for every combination of filters set,
    and list_traces finds roots written under either by each filter; a downgrade brings the
    old view back."""
    url = await make_database("clickhouse")
    store = CompositeStore("sqlite://", {"observability": url}, auto_migrate=False)
    engine = store.engine("observability")
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    filters = ("span_type", "user_id", "session_id", "service_name")  # in the view's order

    def roots(prefix: str, day: int) -> list[Span]:
        """A root with each subset of four filters set, and one child."""
        made = [
            Span(
                trace_id=f"{prefix}{mask:02}",
                span_id="r",
                name="n",
                started_at=t0.replace(day=day, minute=mask),
                **{name: f"{name}-v" for bit, name in enumerate(filters) if mask >> bit & 1},
            )
            for mask in range(16)
        ]
        every = Span(  # all eleven filters: their tags in the view's order
            trace_id=f"{prefix}all",
            span_id="r",
            name="n",
            started_at=t0.replace(day=day, hour=1),
            **{name: f"{name}-v" for name in FILTERS},
        )
        child = Span(
            trace_id=f"{prefix}15", span_id="c", parent_span_id="r", name="n", started_at=t0
        )
        return [*made, every, child]

    async def tags() -> dict[str, list[str]]:
        async with engine.connect() as conn:
            query = "SELECT trace_id, tags FROM trace_roots FINAL ORDER BY trace_id"
            return {trace_id: list(tags) for trace_id, tags in await conn.execute(text(query))}

    async def tables() -> set[str]:
        async with engine.connect() as conn:
            query = "SELECT name FROM system.tables WHERE database = currentDatabase()"
            return set((await conn.execute(text(query))).scalars())

    async def listed(**kw: Any) -> list[str]:
        page = await store.observability.list_traces(with_total=False, **kw)
        return sorted(s.trace_id for s in page.items)

    try:
        await schema.upgrade(engine, ["observability"], "observability_0007")
        await store.observability.batch_create_spans(roots("old", 5))
        async with engine.connect() as conn:
            await _run_until(conn, _one_map_upgrade(), stopped_after)
        await schema.upgrade(engine, ["observability"])
        assert "trace_roots_feed_0008" in await tables()
        assert "trace_roots_feed" not in await tables()
        await store.observability.batch_create_spans(roots("new", 6))
        found = await tags()
        assert len(found) == 34
        for mask in range(16):
            assert found[f"new{mask:02}"] == found[f"old{mask:02}"]
        assert found["new15"] == [f"{name}={name}-v" for name in filters]
        assert found["newall"] == found["oldall"] == [f"{k}={k}-v" for k in FILTERS]
        for name in filters:
            expected = sorted(
                [
                    f"{prefix}{mask:02}"
                    for prefix in ("old", "new")
                    for mask in range(16)
                    if mask >> filters.index(name) & 1
                ]
                + ["oldall", "newall"]
            )
            assert await listed(**{name: f"{name}-v"}, per_page=None) == expected

        await schema.downgrade(engine, ["observability"], "observability_0007")
        assert "trace_roots_feed" in await tables()
        assert "trace_roots_feed_0008" not in await tables()
        await store.observability.batch_create_spans(roots("down", 7))
        found = await tags()
        assert all(found[f"down{mask:02}"] == found[f"new{mask:02}"] for mask in range(16))
        assert found["downall"] == found["newall"]
    finally:
        await store.close()
