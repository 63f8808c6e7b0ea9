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
Since every candidate is checked that way, the reads need no FINAL (see ``newest_roots``).
The COUNT behind ``total`` reads every root either way: ``with_total=True`` keeps the plain
query on ``spans``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, Row, Select, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from composite_store.dialects import final, id_batches, in_ids, keeps_roots_apart
from composite_store.domains.base import hydrate, table_of
from composite_store.domains.observability.models import Span
from composite_store.pagination import Page

spans = table_of(Span)
root_spans = Table(  # created by the migration (``AS spans``), not by the domain's metadata
    "root_spans",
    MetaData(),
    *(Column(c.name, c.type, key=c.key, nullable=c.nullable) for c in spans.c),
)


def tables_of_spans(dialect_name: str) -> tuple[Table, ...]:
    """Every table a span is in: what a delete must reach."""
    return (spans, root_spans) if keeps_roots_apart(dialect_name) else (spans,)


async def newest_roots(
    conn: AsyncConnection,
    query: Callable[[Table], Select[Any]],
    page: int,
    per_page: int | None,
) -> Page[Span]:
    """One page of ``query(table)`` (filtered, ordered root spans) read from ``root_spans``,
    without a total; ``has_more`` from one root past the page, as ``fetch_page`` does.

    No query here uses FINAL, which merges every part at read time (18.16: 28, 21 and 40 ms
    of the three queries at 1M spans, against 4, 9 and 14 without). The candidates are every
    version in ``root_spans`` that matches, on the key columns alone; the check keeps the
    ones that are their span's newest version in ``spans``; the page's rows are read whole
    by that version. Where two versions of a span share its newest ``updated_at`` and
    differ, only FINAL knows which one was inserted last: those are read with FINAL."""
    keys = (root_spans.c.trace_id, root_spans.c.span_id, root_spans.c.updated_at)
    candidates = query(root_spans).with_only_columns(*keys)
    start = page * (per_page or 0)
    wanted = None if per_page is None else start + per_page + 1
    limit = wanted
    while True:
        rows = (await conn.execute(candidates if limit is None else candidates.limit(limit))).all()
        kept = await _still_roots(conn, list(dict.fromkeys(map(_version_of, rows))))
        if limit is None or wanted is None or len(rows) < limit or len(kept) >= wanted:
            break
        limit *= 2  # stale versions, or spans that are children by now: read further
    end = None if per_page is None else start + per_page
    items = await _whole(conn, query(root_spans), kept[start:end])
    return Page(items, None, page, per_page, has_more=end is not None and len(kept) > end)


Version = tuple[str, str, Any]  # trace_id, span_id, updated_at


async def _still_roots(conn: AsyncConnection, versions: list[Version]) -> list[Version]:
    """The versions that are still the newest of their span, and a root (in order)."""
    columns = (spans.c.trace_id, spans.c.span_id, spans.c.updated_at, spans.c.parent_span_id)
    check = select(*columns).where(in_ids(conn.dialect.name, spans.c.trace_id, "ids"))
    newest: dict[tuple[str, str], tuple[Any, set[str | None]]] = {}
    async for trace_id, span_id, updated_at, parent in _by_trace(conn, check, versions):
        found = newest.get((trace_id, span_id))
        if found is None or updated_at > found[0]:
            newest[trace_id, span_id] = (updated_at, {parent})
        elif updated_at == found[0]:
            found[1].add(parent)
    tied = [v for v in versions if len(newest.get(v[:2], (None, ()))[1]) > 1]
    if tied:  # a root and a child version with one updated_at: FINAL decides
        async for trace_id, span_id, updated_at, parent in _by_trace(
            conn, final(check, spans), tied
        ):
            newest[trace_id, span_id] = (updated_at, {parent})
    return [v for v in versions if newest.get(v[:2]) == (v[2], {None})]


async def _whole(conn: AsyncConnection, query: Select[Any], shown: list[Version]) -> list[Span]:
    """The versions ``shown``, every column, from ``root_spans``, in page order."""
    rows = query.where(in_ids(conn.dialect.name, root_spans.c.trace_id, "ids")).order_by(None)
    found: dict[Version, list[Row[Any]]] = {version: [] for version in shown}
    async for row in _by_trace(conn, rows, shown):
        copies = found.get(_version_of(row))
        if copies is not None and row not in copies:  # the view and a back-fill: equal copies
            copies.append(row)
    tied = [version for version, copies in found.items() if len(copies) > 1]
    if tied:  # copies of one version that differ: the one FINAL keeps
        async for row in _by_trace(conn, final(rows, root_spans), tied):
            if _version_of(row) in found:
                found[_version_of(row)] = [row]
    return [hydrate(Span, found[version][0]) for version in shown if found[version]]


def _version_of(row: Row[Any]) -> Version:
    return (row.trace_id, row.span_id, row.updated_at)


async def _by_trace(
    conn: AsyncConnection, stmt: Select[Any], keys: Sequence[Sequence[Any]]
) -> AsyncIterator[Row[Any]]:
    """``stmt``'s rows for the trace ids of ``keys`` (bound as ``ids``, in batches)."""
    trace_ids = sorted({key[0] for key in keys})
    for batch in id_batches(conn.dialect.name, trace_ids):
        for row in await conn.execute(stmt, {"ids": batch}):
            yield row
