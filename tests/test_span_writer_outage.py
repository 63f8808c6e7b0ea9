"""The span writer while the observability database is down: submit() stays fast, nothing is
lost, nothing is stored twice (issue 5)."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from composite_store import CompositeStore
from composite_store.models import Span
from tests.servers import ClickHouseServer, PostgresServer

T0 = datetime(2026, 6, 1, tzinfo=UTC)
SPANS = 20_000


@pytest.fixture(params=["clickhouse", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[ClickHouseServer | PostgresServer]:
    from tests.conftest import use_backend

    use_backend(request.param)  # skipped (or failed, if required) like every backend test
    kind = ClickHouseServer if request.param == "clickhouse" else PostgresServer
    instance = kind(tmp_path / request.param)
    instance.start()
    yield instance
    instance.stop()
    if isinstance(instance, PostgresServer):
        instance.remove()


def span(i: int) -> Span:
    trace = i // 10
    return Span(
        trace_id=f"{trace:032x}",
        span_id=f"{i:016x}",
        parent_span_id=None if i % 10 == 0 else f"{trace * 10:016x}",
        name=f"llm-call-{i % 10}",
        span_type="model_generation",
        started_at=T0 + timedelta(microseconds=i),
        ended_at=T0 + timedelta(microseconds=i + 500),
        attributes={"model": "gpt-x", "tokens": 123},
        input="x" * 200,
        output="y" * 200,
    )


async def test_outage_loses_nothing_and_never_blocks_the_caller(
    server: ClickHouseServer | PostgresServer, tmp_path: Path
) -> None:
    store = CompositeStore(
        f"sqlite:///{tmp_path / 'rest.db'}", {"observability": server.url}, connect_timeout=1
    )
    await store.init()
    writer = store.observability.span_writer(
        max_batch=500,
        flush_interval=0.05,
        max_buffer=2_000,
        outbox_path=tmp_path / "outbox.db",
        max_backoff=0.5,
    )
    try:
        server.stop()
        durations = []
        # A full collection walks every object of the pytest process, which a whole suite
        # run has grown (one took 254 ms at the end of a CI run): freeze what is there, so the
        # collections during the loop see only what the loop and the writer make.
        gc.collect()
        gc.freeze()
        try:
            for i in range(SPANS):
                started = time.perf_counter()
                writer.submit(span(i))
                durations.append(time.perf_counter() - started)
                if i % 1000 == 0:
                    await asyncio.sleep(0)  # let the writer run: it must fail, retry and spill
        finally:
            gc.unfreeze()
        await asyncio.sleep(1.0)
        durations.sort()
        p99, slowest = durations[int(len(durations) * 0.99)], durations[-1]
        print(f"submit() during the outage: p99 {p99 * 1e3:.3f} ms, max {slowest * 1e3:.2f} ms")
        # Waiting on the database even once would take the connect timeout (1 s); the max
        # allows for a full garbage collection (~30 ms here), which can land in any call.
        assert p99 < 0.001 and slowest < 0.25
        assert writer.stats.retried > 0 and writer.stats.spilled > 0
        assert writer.stats.written == 0

        server.start()
        await asyncio.wait_for(writer.close(), timeout=120)
        assert writer.stats.submitted == SPANS and writer.stats.written == SPANS
    finally:
        await store.close()

    async with CompositeStore(
        f"sqlite:///{tmp_path / 'rest.db'}", {"observability": server.url}
    ) as check:
        page = await check.observability.list_traces(per_page=0)
        assert page.total == SPANS // 10  # every root span, once
        traces = await asyncio.gather(
            *(check.observability.get_trace(f"{t:032x}") for t in range(0, SPANS // 10, 97))
        )
        assert all(trace is not None and len(trace.spans) == 10 for trace in traces)
        total = 0
        for t in range(SPANS // 10):
            trace = await check.observability.get_trace(f"{t:032x}")
            assert trace is not None
            total += len({s.span_id for s in trace.spans})
            assert len(trace.spans) == len({s.span_id for s in trace.spans})
        assert total == SPANS


async def test_a_batch_the_database_refuses_is_parked_not_retried_forever(tmp_path: Path) -> None:
    """The database answers but refuses the batch (here: its table is gone). After a few
    tries the batch is parked in the outbox's rejected table, nothing is lost, close() returns."""
    import sqlite3

    database = tmp_path / "obs.db"
    async with CompositeStore(f"sqlite:///{database}") as store:
        with sqlite3.connect(database) as conn:
            conn.execute("DROP TABLE spans")
        outbox = tmp_path / "outbox.db"
        writer = store.observability.span_writer(
            max_batch=5, flush_interval=0.01, outbox_path=outbox, max_backoff=0.05
        )
        for i in range(10):
            writer.submit(span(i))
        await asyncio.wait_for(writer.close(), timeout=30)
    assert (writer.stats.written, writer.stats.rejected) == (0, 10)
    with sqlite3.connect(outbox) as conn:
        parked = conn.execute("SELECT rows FROM rejected").fetchall()
    assert sorted(row["span_id"] for batch in parked for row in json.loads(batch[0])) == [
        f"{i:016x}" for i in range(10)
    ]
