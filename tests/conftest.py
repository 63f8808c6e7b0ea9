"""Test backends: real SQLite files, a real PostgreSQL server, a real ClickHouse server.

``scripts/test`` starts the servers and exports ``COMPOSITE_STORE_TEST_POSTGRES`` /
``COMPOSITE_STORE_TEST_CLICKHOUSE`` (admin URLs) and ``COMPOSITE_STORE_TEST_CLICKHOUSE_HTTP``
(the same ClickHouse over HTTP); without them we probe the usual local ports.
A backend that cannot be reached is skipped with the reason, unless it is listed in
``COMPOSITE_STORE_REQUIRE_BACKENDS``: then every test that needed it fails.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from composite_store import CompositeStore
from tests import backends

MakeDatabase = Callable[[], Awaitable[str]]


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for name in backends.ALL:
        state = backends.availability(name)
        lines.append(
            f"backend {name}: {state.url_masked if state.ok else 'SKIPPED: ' + state.reason}"
        )
    if backends.REQUIRED:
        lines.append(f"required backends: {', '.join(sorted(backends.REQUIRED))}")
    return lines


def pytest_configure(config: pytest.Config) -> None:
    missing = [n for n in backends.REQUIRED if not backends.availability(n).ok]
    if missing:
        reasons = "; ".join(f"{n}: {backends.availability(n).reason}" for n in missing)
        raise pytest.UsageError(f"required backends unavailable: {reasons}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    backends.drop_templates()


def use_backend(name: str) -> str:
    """Skip (or, if required, fail) unless ``name`` can be tested here; returns its admin URL."""
    state = backends.availability(name)
    if not state.ok:
        message = f"{name} unavailable: {state.reason}"
        if name in backends.REQUIRED:
            pytest.fail(message + " (and COMPOSITE_STORE_REQUIRE_BACKENDS requires it)")
        pytest.skip(message)
    return state.url


@pytest.fixture(params=backends.RELATIONAL)
def backend(request: pytest.FixtureRequest) -> str:
    """A relational backend: every domain can live there."""
    use_backend(request.param)
    return str(request.param)


@pytest.fixture
async def make_database(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Factory: a fresh, empty database on a backend; dropped after the test."""
    created: list[tuple[str, str]] = []

    async def make(name: str) -> str:
        admin = use_backend(name)
        url = await backends.create_database(name, admin, tmp_path, f"cs_{uuid.uuid4().hex[:12]}")
        created.append((name, url))
        return url

    yield make
    for name, url in created:
        await backends.drop_database(name, backends.availability(name).url, url)


@pytest.fixture
async def fresh_url(backend: str, make_database: Callable[[str], Awaitable[str]]) -> str:
    return await make_database(backend)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No composite-store variables and a scratch working directory (for the default file)."""
    for var in list(os.environ):
        if var.startswith("COMPOSITE_STORE_") and var.endswith("_URL"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
async def store_at(fresh_url: str) -> AsyncIterator[Callable[..., CompositeStore]]:
    """Factory of composites on the fresh database; all closed after the test."""
    stores: list[CompositeStore] = []

    def make(**kwargs: object) -> CompositeStore:
        store = CompositeStore(fresh_url, **kwargs)  # type: ignore[arg-type]
        stores.append(store)
        return store

    yield make
    await asyncio.gather(*(s.close() for s in stores))


@pytest.fixture
async def store(backend: str, tmp_path: Path) -> AsyncIterator[CompositeStore]:
    """A composite whose domains are in one empty database at head (``migrated_copy``); on
    ClickHouse, the domains it can hold go there and the others to a SQLite file."""
    use_backend(backend)
    db_name = f"cs_{uuid.uuid4().hex[:12]}"
    url = await backends.migrated_copy(backend, tmp_path, db_name)
    if backend in backends.CLICKHOUSE:
        rest = await backends.migrated_copy("sqlite", tmp_path, f"{db_name}_rest")
        composite = CompositeStore(rest, dict.fromkeys(backends.CLICKHOUSE_DOMAINS, url))
    else:
        composite = CompositeStore(url)
    await composite.init()
    yield composite
    await composite.close()
    await backends.give_back(backend, url)


@pytest.fixture(params=backends.ANALYTICAL)
def analytical_backend(request: pytest.FixtureRequest) -> str:
    """Any backend, ClickHouse included: for the scores and observability domains."""
    use_backend(request.param)
    return str(request.param)
