"""ClickHouse: the newest traces without a FINAL over every span.

A trace list wants the newest root spans, but ClickHouse sorts spans by ``(trace_id,
span_id)``, the key its ReplacingMergeTree folds row versions by, and 18.16 cannot read a
table in another order or skip by index: ``list_traces`` read every span with FINAL (1.2 s
at 1M spans, 62x its time at 10k). Revision ``observability_0004`` adds ``root_spans``: same
columns and engine, fed every root-span version by a materialized view, a tenth of the rows.

The view sees each inserted version alone, so it cannot see a root span rewritten later as a
child (a new ``parent_span_id``): that span's last root version stays in ``root_spans``.
Each candidate is therefore checked against its newest version in ``spans`` (found by
``trace_id``, the sort key's prefix), and the candidates are read on until the page is full.
The COUNT behind ``total`` reads every root either way: ``with_total=True`` keeps the plain
query on ``spans``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, Row, Select, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from composite_store.dialects import final, id_batches, in_ids
from composite_store.domains.base import hydrate, table_of
from composite_store.domains.observability.models import Span
from composite_store.pagination import Page

spans = table_of(Span)
root_spans = Table(  # created by the migration (``AS spans``), not by the domain's metadata
    "root_spans",
    MetaData(),
    *(Column(c.name, c.type, key=c.key, nullable=c.nullable) for c in spans.c),
)


def kept_apart(dialect_name: str) -> bool:
    """Whether root spans also live in ``root_spans`` (ClickHouse)."""
    return dialect_name == "clickhouse"


def tables_of_spans(dialect_name: str) -> tuple[Table, ...]:
    """Every table a span is in: what a delete must reach."""
    return (spans, root_spans) if kept_apart(dialect_name) else (spans,)


async def newest_roots(
    conn: AsyncConnection,
    query: Callable[[Table], Select[Any]],
    page: int,
    per_page: int | None,
) -> Page[Span]:
    """One page of ``query(table)`` (filtered, ordered root spans) read from ``root_spans``,
    without a total; ``has_more`` from one root past the page, as ``fetch_page`` does.
    The candidates are found on the key columns alone (ClickHouse reads only the columns a
    query names: a FINAL over the JSON columns of every root grew with the table); only the
    page's rows are read whole."""
    keys = (root_spans.c.trace_id, root_spans.c.span_id, root_spans.c.updated_at)
    candidates = final(query(root_spans).with_only_columns(*keys), root_spans)
    start = page * (per_page or 0)
    wanted = None if per_page is None else start + per_page + 1
    limit = wanted
    while True:
        rows = (await conn.execute(candidates if limit is None else candidates.limit(limit))).all()
        kept = await _still_roots(conn, rows)
        if limit is None or wanted is None or len(rows) < limit or len(kept) >= wanted:
            break
        limit *= 2  # some candidates are children by now: read further
    end = None if per_page is None else start + per_page
    shown = [(trace_id, span_id) for trace_id, span_id, _ in kept[start:end]]
    items = await _whole(conn, query(root_spans), shown)
    return Page(items, None, page, per_page, has_more=end is not None and len(kept) > end)


async def _still_roots(conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Row[Any]]:
    """The rows (trace_id, span_id, updated_at) whose version is still the newest of their
    span, and a root."""
    newest: set[tuple[str, str, Any]] = set()
    check = final(
        select(spans.c.trace_id, spans.c.span_id, spans.c.updated_at, spans.c.parent_span_id).where(
            in_ids("clickhouse", spans.c.trace_id, "ids")
        ),
        spans,
    )
    async for trace_id, span_id, updated_at, parent in _by_trace(conn, check, rows):
        if parent is None:
            newest.add((trace_id, span_id, updated_at))
    return [row for row in rows if tuple(row) in newest]


async def _whole(
    conn: AsyncConnection, query: Select[Any], shown: list[tuple[str, str]]
) -> list[Span]:
    """The spans ``shown`` (keys, in page order), every column, from ``root_spans``."""
    rows = final(
        query.where(in_ids("clickhouse", root_spans.c.trace_id, "ids")).order_by(None),
        root_spans,
    )
    found = {(row.trace_id, row.span_id): row async for row in _by_trace(conn, rows, shown)}
    return [hydrate(Span, found[key]) for key in shown if key in found]


async def _by_trace(
    conn: AsyncConnection, stmt: Select[Any], keys: Sequence[Sequence[Any]]
) -> AsyncIterator[Row[Any]]:
    """``stmt``'s rows for the trace ids of ``keys`` (bound as ``ids``, in batches)."""
    trace_ids = sorted({key[0] for key in keys})
    for batch in id_batches("clickhouse", trace_ids):
        for row in await conn.execute(stmt, {"ids": batch}):
            yield row
