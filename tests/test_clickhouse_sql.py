"""The SQL our ClickHouse compiler writes for ``dialects.prewhere`` and ``dialects.by_key``,
and that the store's reads by key send it. What the reads return is the conformance suites'."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, event, select, text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError

from composite_store import CompositeStore
from composite_store.clickhouse import AsyncHTTPDialect, AsyncNativeDialect
from composite_store.dialects import by_key, final, prewhere
from composite_store.domains.base import table_of
from composite_store.domains.observability.roots import spans
from composite_store.models import Score, Span

CLICKHOUSE: list[Dialect] = [AsyncNativeDialect(), AsyncHTTPDialect()]
T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
scores = table_of(Score)


def _sql(stmt: Any, dialect: Dialect) -> str:
    return " ".join(str(stmt.compile(dialect=dialect)).split())


@pytest.mark.parametrize("dialect", CLICKHOUSE, ids=["native", "http"])
def test_prewhere_takes_the_place_of_where_and_keeps_the_rest(dialect: Dialect) -> None:
    stmt = by_key(
        select(spans.c.span_id)
        .where(spans.c.trace_id == bindparam("t"), spans.c.span_id != bindparam("s"))
        .order_by(spans.c.started_at)
        .limit(5),
        spans,
    )
    sql = _sql(stmt, dialect)
    assert " WHERE " not in sql
    assert "FROM spans FINAL PREWHERE spans.trace_id = " in sql
    assert " AND spans.span_id != " in sql
    assert sql.index("PREWHERE") < sql.index("ORDER BY spans.started_at") < sql.index("LIMIT")


@pytest.mark.parametrize("dialect", CLICKHOUSE, ids=["native", "http"])
def test_prewhere_leaves_a_where_inside_a_column_alone(dialect: Dialect) -> None:
    """A scalar subquery among the columns comes before FROM: its WHERE is not the one moved."""
    inner = select(spans.c.name).where(spans.c.span_id == "x").scalar_subquery()
    sql = _sql(prewhere(select(spans.c.trace_id, inner).where(spans.c.trace_id == "t")), dialect)
    assert sql.count(" WHERE ") == 1 and "(SELECT spans.name FROM spans WHERE" in sql
    assert sql.endswith("FROM spans PREWHERE spans.trace_id = %(trace_id_1)s")


@pytest.mark.parametrize("dialect", CLICKHOUSE, ids=["native", "http"])
def test_prewhere_without_a_where_changes_nothing(dialect: Dialect) -> None:
    stmt = select(spans.c.trace_id)
    assert _sql(prewhere(stmt), dialect) == _sql(stmt, dialect)


@pytest.mark.parametrize("dialect", CLICKHOUSE, ids=["native", "http"])
def test_prewhere_without_a_where_leaves_a_subquerys_where_alone(dialect: Dialect) -> None:
    """Without a WHERE of its own, the first WHERE after FROM would be a subquery's."""
    newest = select(spans.c.started_at).where(spans.c.span_id == "x").scalar_subquery()
    stmt = select(spans.c.trace_id).order_by(newest)
    assert _sql(prewhere(stmt), dialect) == _sql(stmt, dialect)


def test_by_key_refuses_a_where_on_other_columns() -> None:
    """PREWHERE runs before FINAL folds versions: a test of anything but the sort key could
    drop a row's newest version and keep an older one."""
    assert by_key(select(scores.c.id).where(scores.c.id == "s"), scores) is not None
    with pytest.raises(ValueError, match="name"):
        by_key(select(spans.c.span_id).where(spans.c.trace_id == "t", spans.c.name == "n"), spans)
    with pytest.raises(ValueError, match=r"scores\.id"):  # another table's column
        by_key(select(spans.c.span_id).where(spans.c.trace_id == scores.c.id), spans)


def test_prewhere_refuses_a_select_from_a_subquery() -> None:
    """Its WHERE could come before ours in the text; nothing of ours reads that way."""
    inner = select(spans.c.trace_id).where(spans.c.span_id == "x").subquery()
    with pytest.raises(CompileError, match="PREWHERE"):
        _sql(prewhere(select(inner.c.trace_id).where(inner.c.trace_id == "t")), CLICKHOUSE[0])


@pytest.mark.parametrize("dialect", [PGDialect(), SQLiteDialect()], ids=["pg", "sqlite"])
def test_other_backends_ignore_prewhere(dialect: Dialect) -> None:
    stmt = final(select(spans.c.span_id).where(spans.c.trace_id == "t"), spans)
    assert _sql(prewhere(stmt), dialect) == _sql(stmt, dialect)


async def test_clickhouse_reads_by_key_send_prewhere(
    make_database: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    """get_trace, get_span, get_score and list_traces's read of its candidates' traces test
    the sort key only, and send it as PREWHERE (with FINAL where they fold versions)."""
    url = await make_database("clickhouse")
    domains = dict.fromkeys(("observability", "scores"), url)
    async with CompositeStore(f"sqlite:///{tmp_path / 'r.db'}", domains) as store:
        root = Span(trace_id="t", span_id="r", name="root", started_at=T0)
        await store.observability.batch_create_spans([root])
        await store.scores.save_score(Score(id="s", run_id="r", scorer_id="x", score=1.0))
        sent: list[str] = []

        def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            sent.append(" ".join(statement.split()))

        engines = {store.engine(domain).sync_engine for domain in domains}
        for engine in engines:
            event.listen(engine, "before_cursor_execute", log)
        try:
            assert (await store.observability.get_trace("t")) is not None
            assert (await store.observability.get_span("t", "r")) is not None
            assert (await store.scores.get_score("s")) is not None
            page = await store.observability.list_traces(with_total=False)
            assert [s.span_id for s in page.items] == ["r"]
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", log)
        by_key_reads = [sql.split(" FROM ")[1] for sql in sent if "PREWHERE" in sql]
        assert by_key_reads == [
            "spans FINAL PREWHERE spans.trace_id = %(trace_id)s ORDER BY spans.started_at, "
            "spans.span_id",
            "spans FINAL PREWHERE spans.trace_id = %(trace_id)s AND spans.span_id = %(span_id)s",
            "scores FINAL PREWHERE scores.id = %(id)s",
            "spans PREWHERE spans.trace_id IN (%(ids_1)s)",
        ], sent


async def test_clickhouse_reads_by_key_find_the_newest_of_unmerged_versions(
    make_database: Callable[[str], Awaitable[str]], tmp_path: Path
) -> None:
    """FINAL with PREWHERE, on versions ClickHouse has not merged (merges stopped): each read
    by key gives the newest, including a root rewritten as a child, which is no trace root."""
    url = await make_database("clickhouse")
    async with CompositeStore(f"sqlite:///{tmp_path / 'r.db'}", {"observability": url}) as store:
        obs = store.observability
        async with store.engine("observability").connect() as conn:
            await conn.execute(text("SYSTEM STOP MERGES spans"))
        await obs.batch_create_spans(
            [
                Span(trace_id="t", span_id="r", name="v1", started_at=T0),
                Span(trace_id="t", span_id="c", parent_span_id="r", name="c", started_at=T0),
                Span(trace_id="u", span_id="x", name="root at first", started_at=T0),
            ]
        )
        await obs.update_span("t", "r", name="v2")
        await obs.update_span("t", "r", name="v3")
        later = T0 + timedelta(seconds=1)
        await obs.batch_create_spans(
            [Span(trace_id="u", span_id="x", parent_span_id="y", name="a child", started_at=later)]
        )
        async with store.engine("observability").connect() as conn:
            versions = "SELECT count() FROM spans WHERE trace_id = 't' AND span_id = 'r'"
            assert (await conn.execute(text(versions))).scalar_one() == 3  # none merged

        got = await obs.get_span("t", "r")
        assert got is not None and got.name == "v3"
        trace = await obs.get_trace("t")
        assert trace is not None and [s.name for s in trace.spans] == ["c", "v3"]  # ties by id
        moved_trace = await obs.get_trace("u")
        assert moved_trace is not None
        assert [s.parent_span_id for s in moved_trace.spans] == ["y"]
        page = await obs.list_traces(with_total=False)
        assert [(s.trace_id, s.name) for s in page.items] == [("t", "v3")]
