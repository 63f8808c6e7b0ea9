"""The composite: separate databases per domain, shared engines, the session router, health,
and the shared column types on every backend (SPEC §3-§5)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL, event, func, inspect, make_url, select, text
from sqlalchemy.dialects.sqlite import DATETIME
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from composite_store import (
    CompositeStore,
    CompositeStoreError,
    ConfigurationError,
    ConflictError,
    DomainUnavailableError,
    Include,
    NotFoundError,
    engines,
)
from composite_store.models import (
    Agent,
    AgentVersion,
    Message,
    Resource,
    Score,
    Span,
    Thread,
    WorkflowRun,
)
from composite_store.sqltypes import UTCDateTime

MODELS_BY_DOMAIN = {
    "memory": (Thread, Message, Resource),
    "workflows": (WorkflowRun,),
    "scores": (Score,),
    "observability": (Span,),
    "agents": (Agent, AgentVersion),
}
T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
CLOSED_PORT_URL = "postgresql://app:pw-not-shown@127.0.0.1:1/nowhere"


async def _table_names(store: CompositeStore, domain: str) -> set[str]:
    async with store.engine(domain).connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_two_domains_on_two_databases_write_to_two_databases(
    backend: str, make_database: Callable[[str], Awaitable[str]]
) -> None:
    """Observability on its own database: spans land there, threads in the default one, and
    each database holds only its own domains' tables."""
    main_url, obs_url = await make_database(backend), await make_database(backend)
    async with CompositeStore(main_url, {"observability": obs_url}) as store:
        assert store.engine("memory") is not store.engine("observability")
        async with store.session() as session, session.begin():
            session.add(Thread(id="t1", resource_id="u1"))
            session.add(Span(trace_id="tr", span_id="sp", name="root", started_at=T0))
    # Look at each database directly, through composites that know only one URL each.
    async with CompositeStore(main_url) as only_main, CompositeStore(obs_url) as only_obs:
        main_tables = await _table_names(only_main, "memory")
        assert "memory_threads" in main_tables
        async with only_main.engine("memory").connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM memory_threads"))).scalar() == 1
            assert (await conn.execute(text("SELECT count(*) FROM spans"))).scalar() == 0
        async with only_obs.engine("memory").connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM spans"))).scalar() == 1
            assert (await conn.execute(text("SELECT count(*) FROM memory_threads"))).scalar() == 0


async def test_each_database_gets_only_its_domains_tables(
    backend: str, make_database: Callable[[str], Awaitable[str]]
) -> None:
    main_url, obs_url = await make_database(backend), await make_database(backend)
    async with CompositeStore(main_url, {"observability": obs_url}) as store:
        assert "spans" not in await _table_names(store, "memory")
        assert await _table_names(store, "observability") == {
            "spans",
            "alembic_version_observability",
        }


async def test_router_sends_each_model_to_its_domain(
    backend: str, make_database: Callable[[str], Awaitable[str]]
) -> None:
    """Every model resolves to its own domain's engine; a select really runs there."""
    urls = {d: await make_database(backend) for d in MODELS_BY_DOMAIN}
    default_url = await make_database(backend)
    async with CompositeStore(default_url, urls) as store, store.session() as session:
        for domain, models in MODELS_BY_DOMAIN.items():
            for model in models:
                bind = session.get_bind(mapper=model.__mapper__)
                assert bind is store.engine(domain).sync_engine, model
                count = await session.scalar(select(func.count()).select_from(model))
                assert count == 0
        # text() has no mapped class: it goes to the default database.
        assert session.get_bind() is store.sessionmaker.kw["bind"].sync_engine


async def test_objects_a_store_returns_are_full_orm_instances(fresh_url: str) -> None:
    """Stores build their results without the ORM's loader (their ORM state is made on first
    use): those objects still compare, copy and pickle like constructed ones, and work with
    ``inspect()``, attribute changes and a ``Session``; constructed objects are untouched."""
    import copy
    import pickle

    from sqlalchemy import inspect as inspect_object

    async with CompositeStore(fresh_url) as store:
        await store.memory.save_thread(Thread(id="t", resource_id="r", title="first"))
        made = Message(id="m", thread_id="t", role="user", content={"a": 1}, created_at=T0)
        await store.memory.save_messages([made])
        (read,) = (await store.memory.list_messages("t")).items
        assert "_sa_instance_state" not in vars(read)  # reading it made no ORM state
        assert read == made and read is not made and read.content == {"a": 1}
        assert "_sa_instance_state" not in vars(read)  # nor did comparing and reading fields
        assert copy.copy(read) == made and pickle.loads(pickle.dumps(read)) == made
        # pickled before its state was made, unpickled in a process that never read one
        check = (
            "import pickle, sys\n"
            "from sqlalchemy import inspect\n"
            "message = pickle.loads(sys.stdin.buffer.read())\n"
            "assert inspect(message).transient\n"
            "message.content = {'a': 3}\n"
            "assert inspect(message).attrs.content.history.added == [{'a': 3}]\n"
        )
        other = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            check,
            stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await other.communicate(pickle.dumps(read))
        assert other.returncode == 0, err.decode()[-2000:]
        state = inspect_object(read)
        assert state.transient and state.object is read
        assert inspect_object(read) is state  # made once
        read.content = {"a": 2}  # an instrumented set: the change is seen
        assert state.attrs.content.history.added == [{"a": 2}]

        thread = await store.memory.get_thread("t")
        assert thread is not None
        thread.title = "renamed"
        async with store.session() as session, session.begin():
            merged = await session.merge(thread)  # the ORM takes it as any detached row
            assert merged.title == "renamed"
        async with store.session() as session:
            stored = await session.get(Thread, "t")
            assert stored is not None and stored.title == "renamed"
            assert inspect_object(stored).persistent

        inits: list[object] = []

        def on_init(target: object, _args: object, _kwargs: object) -> None:
            inits.append(target)

        event.listen(Thread, "init", on_init)  # fires in the ORM's own __init__
        try:
            constructed = Thread(id="u", resource_id="r")
        finally:
            event.remove(Thread, "init", on_init)
        assert inits == [constructed]
        assert inspect_object(constructed).transient
        assert constructed.metadata_ == {}


async def test_unconfigured_domains_fall_back_to_the_default(fresh_url: str) -> None:
    async with CompositeStore(fresh_url) as store:
        engines = {store.engine(d) for d in MODELS_BY_DOMAIN}
        assert len(engines) == 1
        assert all(info["is_default"] for info in store.describe().values())


async def test_timestamps_keep_microseconds_and_utc(
    store_at: Callable[..., CompositeStore],
) -> None:
    """Aware datetimes in any zone come back as the same instant, in UTC, to the microsecond."""
    store = store_at()
    await store.init()
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    async with store.session() as session, session.begin():
        session.add(Thread(id="t", resource_id="r", created_at=plus_two, updated_at=T0))
    async with store.session() as session:
        thread = (await session.execute(select(Thread))).scalar_one()
    assert thread.created_at == T0 and thread.created_at.tzinfo is not None
    assert thread.created_at.utcoffset() == timedelta(0)
    assert thread.updated_at.microsecond == 123456


async def test_json_columns_round_trip(store_at: Callable[..., CompositeStore]) -> None:
    store = store_at()
    await store.init()
    doc = {"nested": {"list": [1, 2.5, "x", None, True]}, "unicode": "héllo ✓", "quote": "'\""}
    async with store.session() as session, session.begin():
        session.add(Thread(id="t", resource_id="r", metadata_=doc))
    async with store.session() as session:
        assert (await session.execute(select(Thread.metadata_))).scalar_one() == doc


async def test_json_columns_bind_bytes_as_a_serialised_document(
    store_at: Callable[..., CompositeStore],
) -> None:
    """The stores pass the text their checks made as UTF-8 bytes (``sqltypes.JSONBytes``);
    through the ORM too, bytes are a document's serialised form, never a JSON string."""
    store = store_at()
    await store.init()
    async with store.session() as session, session.begin():
        serialised = '{"k":["é",1]}'.encode()
        session.add(Thread(id="t", resource_id="r", metadata_=serialised))  # type: ignore[arg-type]
    async with store.session() as session:
        assert (await session.execute(select(Thread.metadata_))).scalar_one() == {"k": ["é", 1]}
    assert (await store.memory.get_thread("t")).metadata_ == {"k": ["é", 1]}  # type: ignore[union-attr]


async def test_health_reports_a_down_domain_while_others_are_up(fresh_url: str) -> None:
    store = CompositeStore(fresh_url, {"observability": CLOSED_PORT_URL}, connect_timeout=2)
    try:
        health = await asyncio.wait_for(store.health(), timeout=20)  # hang guard, not a speed test
        assert health["observability"]["reachable"] is False
        assert health["observability"]["error"]
        assert "pw-not-shown" not in str(health)
        for domain in ("memory", "workflows", "scores", "agents"):
            assert health[domain] == {
                "reachable": True,
                "latency_ms": health[domain]["latency_ms"],
                "error": None,
            }
    finally:
        await store.close()


async def test_init_with_a_down_domain_raises_domain_unavailable(fresh_url: str) -> None:
    store = CompositeStore(fresh_url, {"observability": CLOSED_PORT_URL}, connect_timeout=2)
    try:
        with pytest.raises(DomainUnavailableError) as caught:
            await asyncio.wait_for(store.init(), timeout=20)
        assert caught.value.domain == "observability"
        assert "***" in str(caught.value) and "pw-not-shown" not in str(caught.value)
    finally:
        await store.close()


async def test_describe_and_close(fresh_url: str) -> None:
    store = CompositeStore(fresh_url)
    described = store.describe()
    assert set(described) == set(MODELS_BY_DOMAIN)
    assert {info["backend"] for info in described.values()} <= {"sqlite", "postgresql"}
    await store.close()
    await store.close()  # idempotent


async def test_pooled_connections_killed_by_the_server_are_replaced(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    """What a server restart does to a pool: every pooled connection is closed server-side.
    The next calls must succeed on fresh connections, not fail on dead ones."""
    import asyncpg

    from tests import backends

    url = await make_database("postgresql")
    async with CompositeStore(url) as store:
        # fill the pool with several connections
        await asyncio.gather(*(store.memory.get_thread(f"t{i}") for i in range(5)))
        admin = await asyncpg.connect(backends.pg_dsn(backends.availability("postgresql").url))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                store.config["memory"].url.database,
            )
        finally:
            await admin.close()
        assert killed >= 1
        await asyncio.sleep(0.2)  # let the loop see the closed sockets
        results = await asyncio.gather(*(store.memory.get_thread(f"t{i}") for i in range(5)))
        assert results == [None] * 5


@pytest.mark.parametrize("driver", ["inline", "aiosqlite"])
async def test_both_sqlite_drivers_serve_the_stores(driver: str, tmp_path: Path) -> None:
    """sqlite3 on the loop's thread (the default) or aiosqlite's worker thread: same data."""
    async with CompositeStore(f"sqlite:///{tmp_path / 'd.db'}", sqlite_driver=driver) as store:
        await store.memory.save_thread(Thread(id="t", resource_id="r", created_at=T0))
        thread = await store.memory.get_thread("t")
        assert thread is not None and thread.created_at == T0
        expected = {"inline": "composite_inline", "aiosqlite": "aiosqlite"}[driver]
        assert store.engine("memory").dialect.driver == expected


@pytest.mark.parametrize("driver", ["inline", "aiosqlite"])
async def test_sqlite_connections_run_with_the_store_settings(driver: str, tmp_path: Path) -> None:
    """WAL, foreign keys, commits that do not wait for the disk, statement journals in
    memory and rarer checkpoints (engines.SQLITE_PRAGMAS), on every pooled connection."""
    url = f"sqlite:///{tmp_path / 'd.db'}?timeout=7"
    names = ("journal_mode", "foreign_keys", "synchronous", "temp_store", "wal_autocheckpoint")
    async with (
        CompositeStore(url, sqlite_driver=driver) as store,
        store.engine("memory").connect() as conn,
    ):
        settings = {
            name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in (*names, "busy_timeout")
        }
    busy_ms = {"inline": 0, "aiosqlite": 7000}[driver]  # inline: the driver retries itself
    assert settings == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 1,  # NORMAL
        "temp_store": 2,  # MEMORY
        "wal_autocheckpoint": 4000,
        "busy_timeout": busy_ms,
    }


@pytest.mark.parametrize(("driver", "path"), [("inline", "sqlite"), ("aiosqlite", "sqlalchemy")])
async def test_hot_methods_on_the_fast_path_and_on_its_fallback(
    driver: str, path: str, tmp_path: Path
) -> None:
    """The inline driver runs the hot statements on sqlite3 directly; aiosqlite runs the same
    statements through SQLAlchemy. Both give the same results, including a batch too big for
    one multi-row statement."""
    async with CompositeStore(f"sqlite:///{tmp_path / 'd.db'}", sqlite_driver=driver) as store:
        assert store.memory._fast.kind == path
        memory, workflows, spans = store.memory, store.workflows, store.observability
        await memory.save_thread(Thread(id="t", resource_id="r"))
        batch = [
            Message(
                id=f"m{i:04d}",
                thread_id="t",
                role="user",
                content={"i": i},
                created_at=T0 + timedelta(milliseconds=i),
            )
            for i in range(1000)  # several statements of at most 2,000 parameters
        ]
        saved = await memory.save_messages(batch)
        assert [m.created_at for m in saved] == [m.created_at for m in batch]
        page = await memory.list_messages(
            "t", per_page=3, descending=True, include=[Include("m0500", previous=1, next=1)]
        )
        assert [m.id for m in page.items] == ["m0999", "m0998", "m0997", "m0501", "m0500", "m0499"]
        assert page.total == 1000 and page.items[0].content == {"i": 999}
        await memory.update_messages([{"id": "m0000", "content": {"j": 1}}])
        await memory.delete_messages([f"m{i:04d}" for i in range(1, 1000)])
        assert [m.content for m in (await memory.list_messages("t")).items] == [{"i": 0, "j": 1}]
        run = await workflows.persist_snapshot("w", "r", {"status": "ok"})
        assert (run.version, await workflows.load_snapshot("w", "r")) == (1, {"status": "ok"})
        with pytest.raises(ConflictError):
            await workflows.persist_snapshot("w", "r", {"status": "x"}, expected_version=5)
        await spans.batch_create_spans(
            [
                Span(
                    trace_id="tr",
                    span_id=f"s{i:03d}",
                    name="n",
                    started_at=T0 + timedelta(seconds=i),
                )
                for i in range(300)
            ]
        )
        trace = await spans.get_trace("tr")
        assert trace is not None and [s.span_id for s in trace.spans][:2] == ["s000", "s001"]
        assert len(trace.spans) == 300


def test_unknown_sqlite_driver_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="sqlite_driver"):
        CompositeStore("sqlite://", sqlite_driver="turbo")


async def test_objects_from_the_stores_work_with_the_orm(fresh_url: str) -> None:
    """Stores return plain model instances (no session): equal to constructed ones, and
    usable with a session, e.g. merged back after a change."""
    async with CompositeStore(fresh_url) as store:
        saved = Thread(id="t", resource_id="r", title="a", created_at=T0, updated_at=T0)
        await store.memory.save_thread(saved)
        loaded = await store.memory.get_thread("t")
        assert loaded == saved
        assert loaded is not None
        loaded.title = "b"
        async with store.session() as session, session.begin():
            await session.merge(loaded)
        again = await store.memory.get_thread("t")
        assert again is not None and again.title == "b"
        # a listed message: built as the ORM's loader builds one, its changes tracked
        message = Message(id="m", thread_id="t", role="user", content={"a": 1})
        await store.memory.save_messages([message])
        (message,) = (await store.memory.list_messages("t")).items
        assert inspect(message).transient and inspect(message).mapper.class_ is Message
        message.content = {"a": 2}
        assert inspect(message).attrs.content.history.added == [{"a": 2}]
        async with store.session() as session, session.begin():
            await session.merge(message)
        assert (await store.memory.get_messages(["m"]))[0].content == {"a": 2}


async def test_calls_to_a_down_domain_raise_domain_unavailable(fresh_url: str) -> None:
    """A down domain fails fast with DomainUnavailableError; the other domains keep working."""
    store = CompositeStore(fresh_url, {"observability": CLOSED_PORT_URL}, connect_timeout=2)
    try:
        with pytest.raises(DomainUnavailableError) as caught:
            await asyncio.wait_for(store.observability.get_span("t", "s"), timeout=20)
        assert caught.value.domain == "observability"
        assert "pw-not-shown" not in str(caught.value) and "***" in str(caught.value)
        from composite_store import schema

        await schema.upgrade(store.engine("memory"), ["memory"])
        assert await store.memory.get_thread("t") is None  # the other domain is unaffected
    finally:
        await store.close()


async def test_inline_sqlite_waits_for_a_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    """Another connection holds SQLite's write lock: our write waits for it with the event
    loop free (a ticker keeps running), then succeeds once the lock is released."""
    import sqlite3
    import threading

    path = tmp_path / "locked.db"
    async with CompositeStore(f"sqlite:///{path}") as store:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
        release.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        try:
            await store.memory.save_thread(Thread(id="t", resource_id="r"))
        finally:
            ticking.cancel()
            release.join()
            holder.close()
        assert ticks >= 20  # the loop ran while the write waited for ~0.5 s
        assert await store.memory.get_thread("t") is not None


@pytest.mark.parametrize("driver", ["inline", "aiosqlite"])
@pytest.mark.parametrize(
    ("query", "option"),
    [("?timeout=0.3", None), ("", 0.3), ("?timeout=0.3", 30.0)],
    ids=["url", "option", "url-over-option"],
)
async def test_sqlite_gives_up_on_a_lock_after_its_busy_timeout(
    tmp_path: Path, driver: str, query: str, option: float | None
) -> None:
    """A write lock held past the busy timeout (seconds: ``sqlite_busy_timeout=``, or the
    URL's ``?timeout=``, which wins for its database): the call fails with the database's
    error after about that long, stores nothing, and the same store works once the lock is
    gone. The option once reached neither driver: only the URL set the timeout."""
    import sqlite3

    path = tmp_path / "held.db"
    timeout = {} if option is None else {"sqlite_busy_timeout": option}
    async with CompositeStore(f"sqlite:///{path}{query}", sqlite_driver=driver, **timeout) as store:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        try:
            with pytest.raises(CompositeStoreError, match="database is locked"):
                await store.memory.save_thread(Thread(id="t", resource_id="r"))
            waited = time.perf_counter() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert 0.2 <= waited < 5
        assert await store.memory.get_thread("t") is None
        await store.memory.save_thread(Thread(id="t", resource_id="r"))
        assert await store.memory.get_thread("t") is not None


async def test_the_fast_path_keeps_a_few_connections_and_gives_them_back(fresh_url: str) -> None:
    """Between calls the fast path keeps at most KEEP_CONNECTIONS connections checked out
    (the pool's checkout costs more than a SQLite statement); concurrent callers beyond them
    use the pool as usual; release() and close() return them all."""
    from composite_store.fastpath import KEEP_CONNECTIONS

    store = CompositeStore(fresh_url)
    pool = store.engine("memory").sync_engine.pool
    try:
        await store.init()
        await store.memory.save_thread(Thread(id="t", resource_id="r"))
        for _ in range(3):
            assert await store.memory.list_messages("t") is not None
        assert pool.checkedout() == 1  # one kept connection served the sequential calls

        async def slow_page() -> None:
            async with store.memory._connect() as conn:
                await asyncio.sleep(0.05)  # all four hold a connection at once
                await conn.rows(select(text("1")))

        await asyncio.gather(*(slow_page() for _ in range(4)))
        assert pool.checkedout() == KEEP_CONNECTIONS
        await store.memory.release()
        assert pool.checkedout() == 0
        await store.workflows.persist_snapshot("wf", "r", {"n": 1})
        assert pool.checkedout() == 1
    finally:
        await store.close()
    assert pool.checkedout() == 0


def test_objects_built_without_init_in_a_fresh_process_are_usable(tmp_path: Path) -> None:
    """Results are built without __init__ (hydrate_values). In a fresh process whose first
    model objects are built that way (writes given mappings, schema already at head), their
    attributes must still work: nothing else has configured the mappers yet."""
    import subprocess
    import sys

    code = (
        "import asyncio\n"
        "from datetime import UTC, datetime\n"
        "from composite_store import CompositeStore\n"
        "async def main():\n"
        f"    async with CompositeStore('sqlite:///{tmp_path / 'fresh.db'}') as store:\n"
        "        run = await store.workflows.persist_snapshot('wf', 'r', {'status': 'done'})\n"
        "        await store.observability.batch_create_spans([{'trace_id': 't', 'span_id': 's',"
        " 'name': 'n', 'started_at': datetime(2026, 1, 1, tzinfo=UTC)}])\n"
        "        span = await store.observability.get_span('t', 's')\n"
        "        print(run.version, run.status, span.name, span.status)\n"
        "asyncio.run(main())\n"
    )
    migrate = (
        "import asyncio\n"
        "from composite_store import CompositeStore\n"
        f"asyncio.run(CompositeStore('sqlite:///{tmp_path / 'fresh.db'}').init())\n"
    )
    for script in (migrate, code):  # the second process finds the schema at head
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "done", "n", "running"]


async def test_postgresql_saves_a_batch_of_messages_in_one_statement(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    """On PostgreSQL ``save_messages`` locks and touches the threads and upserts the messages
    in one statement (one round trip), not BEGIN, UPDATE, INSERT, COMMIT; the conformance
    suite checks that the two ways behave alike, this that the one-statement way is taken.
    A missing thread is found by the same statement, and nothing follows it but the query
    that names the missing threads."""
    async with CompositeStore(await make_database("postgresql")) as store:
        await store.memory.save_thread(Thread(id="t", resource_id="r"))
        await store.memory.list_messages("t")  # the fast path now keeps a connection
        batch = [{"id": f"m{i}", "thread_id": "t", "role": "user", "content": {}} for i in range(5)]
        ghost = [{**batch[0], "id": "x", "thread_id": "ghost"}]
        await store.memory.save_messages(batch)  # once first: asyncpg looks up types once
        with pytest.raises(NotFoundError):
            await store.memory.save_messages(ghost)
        ((_, fast, _),) = store.memory._fast._kept
        sent: list[str] = []
        fast._driver.add_query_logger(lambda logged: sent.append(logged.query))
        await store.memory.save_messages(batch)
        await asyncio.sleep(0)  # asyncpg calls the logger soon after, not at once
        assert len(sent) == 1 and sent[0].lstrip().upper().startswith("WITH"), sent
        # one thread: its UPDATE is the only lock; several: locked in id order first
        assert "FOR UPDATE" not in sent[0].upper(), sent
        await store.memory.save_thread(Thread(id="u", resource_id="r"))
        sent.clear()
        await store.memory.save_messages([*batch, {**batch[0], "id": "y", "thread_id": "u"}])
        await asyncio.sleep(0)
        assert len(sent) == 1 and "FOR UPDATE" in sent[0].upper(), sent
        sent.clear()
        with pytest.raises(NotFoundError):
            await store.memory.save_messages(ghost)
        await asyncio.sleep(0)
        assert len(sent) == 2 and "BEGIN" not in " ".join(sent).upper(), sent


async def test_postgresql_compresses_large_documents_with_lz4(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    """Every pooled session writes TOAST values with lz4 (pglz tried to compress a 10 KB
    snapshot's JSONB and kept nothing, storing it as it was): what the store and its
    fast path write, on a server that has lz4, as the CI's PostgreSQL does."""
    snapshot = {"context": {f"step-{i}": {"output": {"text": "x" * 200}} for i in range(40)}}
    thread = Thread(id="t", resource_id="r", metadata_={"notes": ["y" * 100] * 100})
    async with CompositeStore(await make_database("postgresql")) as store:
        await store.workflows.persist_snapshot("wf", "run", snapshot)  # the fast path
        await store.memory.save_thread(thread)
        query = text(
            "SELECT pg_column_compression(snapshot) FROM workflow_runs UNION ALL "
            "SELECT pg_column_compression(metadata) FROM memory_threads"
        )
        async with store.engine("workflows").connect() as conn:
            methods = [row[0] for row in await conn.execute(query)]
        assert methods == ["lz4", "lz4"]
        assert await store.workflows.load_snapshot("wf", "run") == snapshot


async def test_postgresql_serves_the_store_where_lz4_cannot_be_set(
    make_database: Callable[[str], Awaitable[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that refuses the lz4 statement (a PostgreSQL-compatible one without the
    catalog it reads) keeps its own compression and serves the store all the same."""
    monkeypatch.setattr(engines, "LZ4_IF_AVAILABLE", "SELECT no_such_function()")
    snapshot = {"notes": ["y" * 100] * 100}
    async with CompositeStore(await make_database("postgresql")) as store:
        await store.workflows.persist_snapshot("wf", "run", snapshot)
        assert await store.workflows.load_snapshot("wf", "run") == snapshot
        async with store.engine("workflows").connect() as conn:
            query = text("SELECT pg_column_compression(snapshot) FROM workflow_runs")
            stored = (await conn.execute(query)).scalar()
            # the server's configured default, which a session's set_config does not change
            default = (
                await conn.execute(
                    text(
                        "SELECT reset_val FROM pg_settings WHERE name = 'default_toast_compression'"
                    )
                )
            ).scalar()
        if default == "lz4":
            pytest.skip("this server compresses with lz4 by default: nothing to tell apart")
        assert stored == default  # pglz: the statement was refused, the store still serves


class _CuttableProxy:
    """A TCP proxy that can close every connection through it at once: what a server
    restart does to a pool, for a server whose connections cannot be killed from SQL."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> int:
        """Close both ends of every connection; how many client connections there were."""
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.close()
        return len(writers) // 2

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_pooled_clickhouse_connections_closed_by_the_server_are_replaced(
    make_database: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    """The ClickHouse pool sends no SELECT 1 at checkout (the driver pings before each query
    on its own): a connection the server has closed must still be replaced, so the calls
    after a restart succeed. Fails when neither ping is made."""
    url = make_url(await make_database("clickhouse"))
    proxy = _CuttableProxy(url.host or "127.0.0.1", url.port or 9000)
    through_proxy = url.set(host="127.0.0.1", port=await proxy.start())
    store = CompositeStore(
        f"sqlite:///{tmp_path / 'rest.db'}",
        dict.fromkeys(("observability", "scores"), through_proxy.render_as_string(False)),
    )
    try:
        await store.init()
        calls = [store.observability.get_span("t", f"s{i}") for i in range(3)]
        assert await asyncio.gather(*calls) == [None] * 3  # several pooled connections
        assert proxy.cut() >= 1
        await asyncio.sleep(0.2)  # the closes reach the pooled sockets
        calls = [store.observability.get_span("t", f"s{i}") for i in range(3)]
        assert await asyncio.gather(*calls) == [None] * 3
        page = await store.scores.list_scores(run_id="r")
        assert page.items == []
    finally:
        await store.close()
        await proxy.close()


async def test_clickhouse_batches_take_the_block_insert_path(
    make_database: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    """Span batches on ClickHouse go to the driver as one native block (fast path kind
    "clickhouse"), not through SQLAlchemy's executemany; what they store reads back whole."""
    url = await make_database("clickhouse")
    async with CompositeStore(f"sqlite:///{tmp_path / 'r.db'}", {"observability": url}) as store:
        assert store.observability._fast.kind == "clickhouse"
        spans = [
            {"trace_id": "t", "span_id": f"s{i}", "name": "n", "started_at": T0, "input": i}
            for i in range(700)  # more than one batch of the writer's size
        ]
        await store.observability.batch_create_spans(spans)
        trace = await store.observability.get_trace("t")
        assert trace is not None
        assert sorted(s.input for s in trace.spans) == list(range(700))


async def test_json_written_by_other_tools_reads_back(tmp_path: Path) -> None:
    """Documents are read with a shortcut for our own compact JSON; text with whitespace
    (another tool's writes) and SQLite's bare numbers must still read back exactly."""
    async with CompositeStore(f"sqlite:///{tmp_path / 'd.db'}") as store:
        await store.memory.save_thread(Thread(id="t", resource_id="r", metadata_={"a": 1}))
        async with store.engine("memory").begin() as conn:
            await conn.execute(
                text("UPDATE memory_threads SET metadata = :doc WHERE id = 't'"),
                {"doc": ' { "a" : [1, 2] ,\n "b": "x y" } '},
            )
        thread = await store.memory.get_thread("t")
        assert thread is not None and thread.metadata_ == {"a": [1, 2], "b": "x y"}
        await store.observability.create_span(
            {"trace_id": "t", "span_id": "s", "name": "n", "started_at": T0, "input": 7}
        )
        span = await store.observability.get_span("t", "s")
        assert span is not None and span.input == 7


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2026-03-01 12:00:00.000001", datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC)),
        ("2026-03-01 12:00:00", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01T17:30:00+05:30", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
async def test_sqlite_timestamps_written_by_other_tools_read_back_in_utc(
    tmp_path: Path, stored: str, expected: datetime
) -> None:
    """Timestamps are read with a shortcut for the naive UTC text we write; text with its own
    offset, a Z, no microseconds or no time (another tool's writes) must read the long way,
    as the same instant in UTC."""
    async with CompositeStore(f"sqlite:///{tmp_path / 'd.db'}") as store:
        await store.memory.save_thread(Thread(id="t", resource_id="r"))
        async with store.engine("memory").begin() as conn:
            await conn.execute(
                text("UPDATE memory_threads SET created_at = :at WHERE id = 't'"), {"at": stored}
            )
        thread = await store.memory.get_thread("t")
        assert thread is not None
        assert (thread.created_at, thread.created_at.utcoffset()) == (expected, timedelta(0))


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 3, 1, 12, tzinfo=UTC),  # no microseconds: still written with ".000000"
        datetime(2026, 3, 1, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1, 1, 2, tzinfo=UTC),
        datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_sqlite_timestamps_are_written_as_sqlalchemy_writes_them(instant: datetime) -> None:
    """The SQLite bind shortcut must write exactly SQLAlchemy's DATETIME text (naive UTC,
    always six fraction digits): stored rows are compared and ordered as text."""
    dialect = sqlite_dialect()
    ours = UTCDateTime().bind_processor(dialect)
    theirs = DATETIME().bind_processor(dialect)
    assert ours(instant) == theirs(instant.astimezone(UTC).replace(tzinfo=None))


@pytest.mark.parametrize(("query", "expected"), [({}, "1"), ({"use_uncompressed_cache": "0"}, "0")])
async def test_clickhouse_reads_use_the_uncompressed_cache_unless_the_url_says_not(
    make_database: Callable[[str], Awaitable[str]],
    tmp_path: Path,
    query: dict[str, str],
    expected: str,
) -> None:
    """The store's ClickHouse reads are short and hit the newest granules again and again:
    they go through the server's cache of decompressed blocks, and a URL can turn it off."""
    url = make_url(await make_database("clickhouse")).update_query_dict(query)
    rest = f"sqlite:///{tmp_path / 'r.db'}"
    async with CompositeStore(rest, {"observability": url.render_as_string(False)}) as store:
        setting = text("SELECT value FROM system.settings WHERE name = 'use_uncompressed_cache'")
        async with store.engine("observability").connect() as conn:
            assert (await conn.execute(setting)).scalar_one() == expected


@pytest.mark.parametrize(
    "options",
    [
        {"sqlite_busy_timeout": -1},
        {"sqlite_busy_timeout": float("nan")},
        {"sqlite_busy_timeout": "30"},
        {"connect_timeout": 0},
        {"connect_timeout": float("inf")},
        {"connect_timeout": True},
    ],
)
def test_timeouts_that_are_not_seconds_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="must be seconds"):
        CompositeStore(f"sqlite:///{tmp_path / 'db'}", **options)


@pytest.mark.parametrize("timeout", ["soon", "-1", "nan"])
def test_a_sqlite_url_timeout_that_is_not_seconds_is_refused(tmp_path: Path, timeout: str) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be seconds"):
        CompositeStore(f"sqlite:///{tmp_path / 'db'}?timeout={timeout}")


@pytest.mark.parametrize(
    ("database", "driver"),
    [("file", "inline"), ("file", "aiosqlite"), (":memory:", "inline"), (":memory:", "aiosqlite")],
)
async def test_save_messages_tells_new_from_stored_on_every_sqlite_driver(
    tmp_path: Path, database: str, driver: str
) -> None:
    """``save_messages`` writes an all-new batch without RETURNING, trusting the count of rows
    the insert took; that count comes from the fast path or from SQLAlchemy's result,
    depending on the driver and the database. A re-saved message must keep its first
    ``created_at`` on each."""
    url = f"sqlite:///{tmp_path / 'db' if database == 'file' else database}"
    first, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)

    def message(i: int, at: datetime) -> Message:
        return Message(id=f"m{i}", thread_id="t", role="user", content={"i": i}, created_at=at)

    async with CompositeStore(url, sqlite_driver=driver) as store:
        await store.memory.save_thread(Thread(id="t", resource_id="r"))
        await store.memory.save_messages([message(0, first), message(1, first)])
        saved = await store.memory.save_messages([message(1, later), message(2, later)])
        assert [m.created_at for m in saved] == [first, later]
        stored = await store.memory.get_messages(["m0", "m1", "m2"])
        assert [m.created_at for m in stored] == [first, first, later]


async def _counts_of(store: CompositeStore) -> tuple[str, int, int, int]:
    """What the fast path's row counts say, on the memory domain's database: an UPDATE of
    two threads (one missing), and ON CONFLICT DO NOTHING inserts of new and taken ids."""
    from sqlalchemy import bindparam, update

    from composite_store.dialects import in_ids, upsert
    from composite_store.domains.memory.store import messages, threads

    memory = store.memory
    await memory.save_thread(Thread(id="t", resource_id="r"))
    touch = update(threads).where(in_ids(memory.dialect, threads.c.id, "ids"))
    touch = touch.values(updated_at=bindparam("now", type_=UTCDateTime()))
    insert_new = upsert(memory.dialect, messages, key=["id"])

    def row(i: int) -> dict[str, Any]:
        return {
            "id": f"m{i}",
            "thread_id": "t",
            "role": "user",
            "content": '{"i": 1}',
            "resource_id": None,
            "type": "v2",
            "created_at": T0,
        }

    async with memory._connect(transaction=True) as conn:
        touched = await conn.count(touch, {"ids": ["t", "ghost"], "now": T0})
        all_new = await conn.insert_new(insert_new, [row(0), row(1)])
        one_new = await conn.insert_new(insert_new, [row(1), row(2), row(0)])
        return type(conn).__name__, touched, all_new, one_new


async def test_the_fast_path_counts_the_rows_a_statement_changed(fresh_url: str) -> None:
    """``count`` and ``insert_new`` report the rows changed. ``save_messages`` skips its
    RETURNING when every row was new and touches threads by count: a wrong count would
    hand back the wrong created_at, or cost an extra query, with no error to show it."""
    async with CompositeStore(fresh_url) as store:
        kind = {"sqlite": "_SQLiteConnection", "postgresql": "_AsyncpgConnection"}
        assert await _counts_of(store) == (kind[store.memory.dialect], 1, 2, 1)


@pytest.mark.parametrize(
    ("database", "driver"),
    [("file", "aiosqlite"), (":memory:", "inline"), (":memory:", "aiosqlite")],
)
async def test_the_sqlalchemy_fallback_counts_the_rows_a_statement_changed(
    tmp_path: Path, database: str, driver: str
) -> None:
    url = f"sqlite:///{tmp_path / 'db' if database == 'file' else database}"
    async with CompositeStore(url, sqlite_driver=driver) as store:
        assert await _counts_of(store) == ("_SQLAlchemyConnection", 1, 2, 1)


async def test_a_clickhouse_http_url_without_user_or_password_connects() -> None:
    """As on the native protocol: no user is ``default``, no password is empty. The HTTP
    transport sent the text "None" for either, and the server refused it."""
    from tests.conftest import use_backend

    given = make_url(use_backend("clickhouse-http"))
    bare = URL.create(given.drivername, host=given.host, port=given.port, database="default")
    store = CompositeStore("sqlite://", {"observability": bare})  # health() needs no schema
    try:
        health = await store.health()
    finally:
        await store.close()
    assert health["observability"]["error"] is None
