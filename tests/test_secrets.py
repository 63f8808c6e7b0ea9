"""Passwords never appear anywhere a user or an operator can read (SPEC §2, §7, §8).

``tests/test_config.py`` already shows that ``repr``/``describe()`` mask a password for
engines that never connect, that ``ConfigurationError`` never shows it, and that the
in-process ``status`` command masks it for a closed port. Here the URLs carry a real password
to a real server: a PostgreSQL role created with a password for this module (trust
authentication lets any password in, but it travels in the URL, through the engine and the
driver), and a ClickHouse URL with a password the server refuses. One test per surface:

- logs, every logger at DEBUG (``sqlalchemy.engine`` logs every statement), across init,
  writes, reads, health, a failing connection and the span writer's retry warnings;
- ``DomainUnavailableError`` for an unresolvable host, a server that never answers, a
  wrong port (PostgreSQL, ClickHouse native and HTTP): ``str``, ``repr``, ``args``, every
  ``__cause__``/``__context__`` in the chain and the formatted traceback;
- ``describe()``, ``health()``, ``repr``/``str`` of the composite, its config, each domain
  config, each domain store and each engine, on a live store;
- the ``composite-store`` command run as a subprocess (``status`` with servers up, with
  servers down, ``migrate``), configured only through the environment;
- the span writer's default outbox file name.

A password shows up in many spellings (raw, URL-quoted); every check looks for a random token
that is part of it, so any spelling is caught.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from composite_store import CompositeStore, CompositeStoreError, DomainUnavailableError
from composite_store.domains.observability.writer import default_outbox_path
from composite_store.models import Agent, Message, Score, Span, Thread
from tests.backends import pg_dsn
from tests.servers import free_port

TOKEN = secrets.token_hex(8)
# Characters that URL quoting changes, so that a raw and a quoted spelling both exist.
PASSWORD = f"s3cr3t-{TOKEN}-P@ss:w/rd%"
QUOTED = quote(PASSWORD, safe="")
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
LOGGERS = (
    "",
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.engine.Engine",
    "sqlalchemy.pool",
    "sqlalchemy.dialects",
    "sqlalchemy.orm",
    "alembic",
    "asyncio",
    "asyncpg",
    "clickhouse_driver",
    "clickhouse_sqlalchemy",
    "urllib3",
    "composite_store",
    "composite_store.span_writer",
)


def leaks(text: str) -> bool:
    return TOKEN in text or PASSWORD in text or QUOTED in text


def assert_no_password(where: str, text: str) -> None:
    assert not leaks(text), f"the password appears in {where}:\n{text[:3000]}"


@dataclass(frozen=True)
class Secret:
    """A PostgreSQL role with a password and a database it owns."""

    role: str
    database: str
    url: str  # postgresql://role:password@host:port/database (password URL-quoted)
    host: str
    port: int

    def at(self, host: str, port: int) -> str:
        """The same role and password, at another (unreachable) address."""
        return pg_url(self.role, self.database, host, port)


def pg_url(role: str, database: str, host: str, port: int) -> str:
    return f"postgresql://{role}:{QUOTED}@{host}:{port}/{database}"


def _run(coro: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:  # outside any running event loop
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def pg_secret() -> Iterator[Secret]:
    from tests.conftest import use_backend

    admin_url = use_backend("postgresql")
    role = f"cs_secret_{secrets.token_hex(4)}"
    database = f"{role}_db"
    literal = PASSWORD.replace("'", "''")

    async def admin(*statements: str) -> None:
        conn = await asyncpg.connect(pg_dsn(admin_url), timeout=10)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    _run(
        admin(
            f"CREATE ROLE {role} LOGIN PASSWORD '{literal}'",
            f'CREATE DATABASE "{database}" OWNER {role}',
        )
    )
    url = make_url(admin_url)
    host, port = url.host or "127.0.0.1", url.port or 5432
    yield Secret(role, database, pg_url(role, database, host, port), host, port)
    _run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', f"DROP ROLE IF EXISTS {role}"))


@pytest.fixture(scope="module")
def clickhouse_url() -> str:
    """The test ClickHouse server with a password it does not accept (its users are defined
    in its config files; 18.16 has no CREATE USER)."""
    from tests.conftest import use_backend

    url = make_url(use_backend("clickhouse"))
    return (
        f"clickhouse://{url.username or 'default'}:{QUOTED}@{url.host}:{url.port or 9000}/default"
    )


@pytest.fixture
async def keep() -> AsyncIterator[list[Any]]:
    """Stores (and servers) to close after the test, whatever happens."""
    stores: list[Any] = []
    yield stores
    for store in stores:
        await store.close()


async def everyday_work(store: CompositeStore) -> None:
    """Writes and reads in every domain."""
    await store.memory.save_thread(Thread(id="t1", resource_id="r1", title="hi"))
    await store.memory.save_messages(
        [Message(id="m1", thread_id="t1", role="user", content={"text": "hello"})]
    )
    await store.memory.list_messages("t1")
    await store.workflows.persist_snapshot("wf", "run1", {"status": "running"})
    await store.workflows.load_snapshot("wf", "run1")
    await store.scores.save_score(Score(id="s1", scorer_id="sc", score=0.5))
    await store.scores.aggregate_scores()
    await store.observability.create_span(
        Span(trace_id="tr1", span_id="sp1", name="root", started_at=T0)
    )
    await store.observability.list_traces()
    await store.agents.create_agent(Agent(id="a1", name="agent"))
    await store.agents.update_agent("a1", model="m2")
    await store.health()


# -- logs ------------------------------------------------------------------------------------
async def test_password_not_in_logs_at_debug(
    pg_secret: Secret,
    clickhouse_url: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    keep: list[Any],
    tmp_path: Path,
) -> None:
    """Every logger at DEBUG through a store's whole life and its failures: no password."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)

    live = CompositeStore(pg_secret.url)
    keep.append(live)
    await live.init()
    await everyday_work(live)

    down = CompositeStore(pg_secret.at("127.0.0.1", free_port()), connect_timeout=2)
    keep.append(down)
    with pytest.raises(DomainUnavailableError):
        await down.init()
    with pytest.raises(DomainUnavailableError):
        await down.memory.get_thread("t1")
    await down.health()

    refused = CompositeStore(
        f"sqlite:///{tmp_path / 'rest.db'}", {"scores": clickhouse_url}, connect_timeout=2
    )
    keep.append(refused)
    with pytest.raises(CompositeStoreError):
        await refused.init()
    await refused.health()

    writer = down.observability.span_writer(
        flush_interval=0.01, outbox_path=tmp_path / "outbox.db", max_backoff=0.05
    )
    writer.submit(Span(trace_id="tr", span_id="sp", name="n", started_at=T0))
    for _ in range(400):  # the writer logs a warning per failed attempt
        if writer.stats.retried >= 2:
            break
        await asyncio.sleep(0.01)
    await writer.close(timeout=0.5)
    assert writer.stats.retried >= 2

    statements = [r for r in caplog.records if r.name.startswith("sqlalchemy.engine")]
    assert statements, "sqlalchemy.engine logged nothing: the DEBUG capture is not working"
    assert any(r.name == "composite_store.span_writer" for r in caplog.records)
    for record in caplog.records:
        shown = f"{record.name} {record.getMessage()} {record.args!r} {record.exc_text or ''}"
        assert_no_password(f"the log record {record.name}:{record.lineno}", shown)
    assert_no_password("the formatted log", caplog.text)
    out, err = capfd.readouterr()
    assert_no_password("stdout/stderr", out + err)


# -- errors ----------------------------------------------------------------------------------
def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):
            stack += list(current.exceptions)


def assert_error_masks(exc: BaseException) -> None:
    for i, link in enumerate(chain(exc)):
        where = f"link {i} of the chain ({type(link).__name__})"
        assert_no_password(f"str() of {where}", str(link))
        assert_no_password(f"repr() of {where}", repr(link))
        assert_no_password(f"args of {where}", repr(link.args))
        assert_no_password(
            f"attributes of {where}", repr(vars(link)) if hasattr(link, "__dict__") else ""
        )
    assert_no_password("the formatted traceback", "".join(traceback.format_exception(exc)))


UNREACHABLE: dict[str, tuple[str, str, int | str | None]] = {  # port None: a free port
    "postgresql, unresolvable host": ("postgresql", "cs-secret-test.invalid", 5432),
    "postgresql, a server that never answers": ("postgresql", "127.0.0.1", "silent"),
    "postgresql, wrong port": ("postgresql", "127.0.0.1", None),
    "clickhouse native, wrong port": ("clickhouse", "127.0.0.1", None),
    "clickhouse http, wrong port": ("clickhouse+http", "127.0.0.1", None),
}


async def silent_server(keep: list[Any]) -> int:
    """A local port that accepts connections and never says a word (a hung server): the
    connect timeout, not the OS, has to give up."""
    stop = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stop.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    keep.append(_Silent(server, stop))
    return int(server.sockets[0].getsockname()[1])


@dataclass
class _Silent:
    server: asyncio.Server
    stop: asyncio.Event

    async def close(self) -> None:
        self.stop.set()
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("case", sorted(UNREACHABLE))
async def test_password_not_in_domain_unavailable_error(
    case: str, pg_secret: Secret, keep: list[Any], tmp_path: Path
) -> None:
    """An unreachable database is a ``DomainUnavailableError`` naming the domain and the
    masked URL; neither it nor anything chained to it shows the password."""
    scheme, host, where = UNREACHABLE[case]
    if where == "silent":
        port = await silent_server(keep)
    elif isinstance(where, int):
        port = where
    else:
        port = free_port()
    call: Callable[[], Awaitable[object]]
    if scheme == "postgresql":
        store = CompositeStore(pg_secret.at(host, port), connect_timeout=1)
        domain, call = "memory", lambda: store.memory.get_thread("t1")
    else:
        url = f"{scheme}://default:{QUOTED}@{host}:{port}/default"
        store = CompositeStore(
            f"sqlite:///{tmp_path / 'rest.db'}", {"scores": url}, connect_timeout=1
        )
        domain, call = "scores", lambda: store.scores.get_score("s1")
    keep.append(store)

    attempts: list[Callable[[], Awaitable[object]]] = [store.init, call]
    for attempt in attempts:
        with pytest.raises(DomainUnavailableError) as caught:
            await asyncio.wait_for(attempt(), 30)
        error = caught.value
        assert error.domain == domain
        assert "***" in error.masked_url and error.masked_url in str(error)
        assert_error_masks(error)

    health = await store.health(timeout=5)
    assert health[domain]["reachable"] is False
    assert_no_password("health()", repr(health))


async def test_password_not_in_refused_login_error(
    clickhouse_url: str, keep: list[Any], tmp_path: Path
) -> None:
    """A server that answers and refuses the password: its error does not repeat it."""
    store = CompositeStore(f"sqlite:///{tmp_path / 'rest.db'}", {"scores": clickhouse_url})
    keep.append(store)
    with pytest.raises(CompositeStoreError) as caught:
        await store.init()
    assert_error_masks(caught.value)
    with pytest.raises(CompositeStoreError) as caught:
        await store.scores.get_score("s1")
    assert_error_masks(caught.value)


# -- describe(), health(), repr() on a live store ---------------------------------------------
async def test_password_not_in_describe_health_or_repr_of_a_live_store(
    pg_secret: Secret, clickhouse_url: str, keep: list[Any]
) -> None:
    """A store at work (one domain refused, one down): what it says about itself is masked."""
    store = CompositeStore(
        pg_secret.url,
        {"scores": clickhouse_url, "observability": pg_secret.at("127.0.0.1", free_port())},
        connect_timeout=2,
    )
    keep.append(store)
    live = CompositeStore(pg_secret.url)
    keep.append(live)
    await live.init()
    await live.memory.save_thread(Thread(id="t1", resource_id="r1"))

    health = await store.health()
    assert health["memory"]["reachable"] is True
    assert health["scores"]["reachable"] is False and health["scores"]["error"]
    assert health["observability"]["reachable"] is False and health["observability"]["error"]
    shown = {
        "describe()": repr(store.describe()),
        "health()": repr(health),
        "repr(store)": repr(store),
        "str(store)": str(store),
        "repr(live store)": repr(live),
        "repr(config)": repr(store.config),
        "repr(config.default)": repr(store.config.default),
    }
    for domain in store.config.domains:
        shown[f"repr(config[{domain}])"] = repr(store.config[domain])
        shown[f"repr(store.{domain})"] = repr(store.get_store(domain))
        shown[f"{domain} store masked_url"] = store.get_store(domain).masked_url
        engine = store.engine(domain)
        shown[f"repr(engine {domain})"] = repr(engine)
        shown[f"str(engine {domain}.url)"] = str(engine.url)
        shown[f"repr(engine {domain}.url)"] = repr(engine.url)
        shown[f"repr(sync pool {domain})"] = repr(engine.sync_engine.pool)
    for where, text in shown.items():
        assert_no_password(where, text)
    assert f"{pg_secret.role}:***@" in shown["describe()"]


def test_password_not_in_outbox_file_name(pg_secret: Secret, tmp_path: Path) -> None:
    """The span writer's default outbox is named after the masked URL, never the real one."""
    store = CompositeStore(pg_secret.url)
    path = default_outbox_path(store.observability)
    assert_no_password("the default outbox path", str(path))
    asyncio.run(store.close())


# -- the command line -------------------------------------------------------------------------
def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSITE_STORE_")}
    return subprocess.run(
        [sys.executable, "-m", "composite_store", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("situation", ["status, servers up", "status, servers down", "migrate"])
def test_password_not_in_cli_output(
    situation: str, pg_secret: Secret, clickhouse_url: str, tmp_path: Path
) -> None:
    """``composite-store`` configured through the environment prints masked URLs only, when
    the servers answer, when one refuses the password and when they are down."""
    if situation == "status, servers down":
        env = {
            "COMPOSITE_STORE_URL": pg_secret.at("127.0.0.1", free_port()),
            "COMPOSITE_STORE_SCORES_URL": clickhouse_url.replace(":9000/", f":{free_port()}/"),
            "COMPOSITE_STORE_OBSERVABILITY_URL": pg_secret.at("cs-secret-test.invalid", 5432),
        }
    else:
        env = {"COMPOSITE_STORE_URL": pg_secret.url}
        if situation.startswith("status"):
            env["COMPOSITE_STORE_SCORES_URL"] = clickhouse_url  # answers, refuses the password
    command = ["status"] if situation.startswith("status") else ["migrate"]

    done = run_cli(command, env, tmp_path)

    shown = done.stdout + done.stderr
    assert_no_password(f"`composite-store {' '.join(command)}` ({situation})", shown)
    assert f"{pg_secret.role}:***@" in shown, shown  # the URL is shown, masked
    if situation == "status, servers down":
        assert done.returncode != 0
        assert "NO" in done.stdout, shown
    if situation == "migrate":
        assert done.returncode == 0, shown
