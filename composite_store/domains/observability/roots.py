"""Which root spans ``list_traces`` shows, as SQL; on ClickHouse from an index of its own.

A trace list wants the newest root spans, but ClickHouse sorts spans by ``(trace_id,
span_id)``, the key its ReplacingMergeTree folds row versions by, and 18.16 cannot read a
table in another order or skip by index: ``list_traces`` read every span with FINAL (1.2 s
at 1M spans, 62x its time at 10k). ``trace_roots`` (revision ``observability_0006``, which
replaced 0004's ``root_spans``, a copy of every column) is fed by a materialized view with
every root-span version's key, times, failure and id filters (as ``name=value`` tags, made
by one ``arrayMap`` since ``observability_0008``): a tenth of the rows, seven small columns.

The view sees each inserted version alone, so it cannot see a root span rewritten later as a
child (a new ``parent_span_id``): that span's last root version stays in ``trace_roots``.
Each candidate is therefore checked against its newest version in ``spans`` (found by
``trace_id``, the sort key's prefix), and the candidates are read on until the page is full.
Since every candidate is checked that way, the reads need no FINAL (see ``newest_roots``).
The COUNT behind ``total`` reads every root either way, from ``spans`` (with FINAL: ~0.15 s
at 1M spans); the page comes from here with or without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clickhouse_sqlalchemy import types as ch_types
from sqlalchemy import Column, ColumnElement, MetaData, Row, Select, Table, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from composite_store.dialects import final, id_batches, in_ids, keeps_roots_apart, prewhere
from composite_store.domains.base import hydrate, model_columns, table_of
from composite_store.domains.observability.models import Span
from composite_store.pagination import Page

spans = table_of(Span)
trace_roots = Table(  # ClickHouse only, made by the migration (its view fills it)
    "trace_roots",
    MetaData(),
    *(
        Column(name, spans.c[name].type)
        for name in ("trace_id", "span_id", "updated_at", "started_at", "ended_at")
    ),
    Column("failed", ch_types.UInt8),
    Column("tags", ch_types.Array(ch_types.String)),  # "user_id=u1", ...: 18.16 has no Map
)


def tables_of_spans(dialect_name: str) -> tuple[Table, ...]:
    """Every table a span is in: what a delete must reach."""
    return (spans, trace_roots) if keeps_roots_apart(dialect_name) else (spans,)


@dataclass(frozen=True)
class TraceQuery:
    """``list_traces``'s filters and order (checked), as a query on ``spans`` or on
    ``trace_roots``: both find the same roots."""

    ids: Mapping[str, str]  # id filters given: column -> value
    status: str | None
    first: datetime | None  # started_at range, inclusive
    last: datetime | None
    order_by: str  # "started_at" or "ended_at"
    descending: bool

    def on_spans(self) -> Select[Any]:
        """The matching roots, every column, in order."""
        c = spans.c
        where = [c.parent_span_id.is_(None), *(c[k] == value for k, value in self.ids.items())]
        return self._ordered(select(*model_columns(Span)), spans, c.error.is_not(None), where)

    def on_index(self) -> Select[Any]:
        """The matching root versions' keys, in order (ClickHouse's ``trace_roots``)."""
        c = trace_roots.c
        where: list[ColumnElement[bool]] = [
            func.has(c.tags, f"{k}={value}") for k, value in self.ids.items()
        ]
        keys = select(c.trace_id, c.span_id, c.updated_at)
        return self._ordered(keys, trace_roots, c.failed == 1, where)

    def _ordered(
        self,
        stmt: Select[Any],
        table: Table,
        failed: ColumnElement[bool],
        where: list[ColumnElement[bool]],
    ) -> Select[Any]:
        c = table.c
        if self.status == "error":
            where.append(failed)
        elif self.status is not None:
            ended = c.ended_at.is_(None) if self.status == "running" else c.ended_at.is_not(None)
            where.append(and_(~failed, ended))
        if self.first is not None:
            where.append(c.started_at >= self.first)
        if self.last is not None:
            where.append(c.started_at <= self.last)
        order = (
            [c[self.order_by].desc().nulls_first(), c.trace_id.desc()]
            if self.descending
            else [c[self.order_by].asc().nulls_last(), c.trace_id.asc()]
        )
        return stmt.where(*where).order_by(*order)


async def newest_roots(
    conn: AsyncConnection, traces: TraceQuery, page: int, per_page: int | None
) -> Page[Span]:
    """One page of the roots ``traces`` finds, found in ``trace_roots``, without a total;
    ``has_more`` from one root past the page, as ``fetch_page`` does.

    No query here uses FINAL, which merges every part at read time (18.16 at 1M spans: 21-40
    ms a query with it, 4-14 without). The candidates are every version in ``trace_roots``
    that matches; one read of their traces' spans finds each span's newest version, and
    keeps the candidates that are it and a root, with their rows. Where two versions of a
    span share its newest ``updated_at`` and differ, only FINAL knows which one was inserted
    last: those are read again with FINAL, and with the filters, as ``with_total`` reads."""
    candidates = traces.on_index()
    start = page * (per_page or 0)
    wanted = None if per_page is None else start + per_page + 1
    limit = wanted
    while True:
        rows = (await conn.execute(candidates if limit is None else candidates.limit(limit))).all()
        versions = list(dict.fromkeys(map(_version_of, rows)))
        newest = await _newest(conn, traces, versions)
        kept = [  # the candidates that are their span's newest version, and a root
            row
            for version in versions
            if (row := newest.get(version[:2])) is not None
            and _version_of(row) == version
            and row.parent_span_id is None
        ]
        if limit is None or wanted is None or len(rows) < limit or len(kept) >= wanted:
            break
        limit *= 2  # stale versions, or spans that are children by now: read further
    end = None if per_page is None else start + per_page
    items = [hydrate(Span, row) for row in kept[start:end]]
    return Page(items, None, page, per_page, has_more=end is not None and len(kept) > end)


Version = tuple[str, str, Any]  # trace_id, span_id, updated_at
SpanKey = tuple[str, str]


async def _newest(
    conn: AsyncConnection, traces: TraceQuery, versions: list[Version]
) -> dict[SpanKey, Row[Any]]:
    """The newest version of every span of the traces of ``versions``, every column."""
    query = prewhere(_where_trace_in(conn, select(*model_columns(Span))))
    newest: dict[SpanKey, list[Row[Any]]] = {}
    async for row in _by_trace(conn, query, versions):
        found = newest.get((row.trace_id, row.span_id))
        if found is None or row.updated_at > found[0].updated_at:
            newest[row.trace_id, row.span_id] = [row]
        elif row.updated_at == found[0].updated_at and row not in found:
            found.append(row)  # equal copies (a batch written twice) count once
    tied = {key for key, found in newest.items() if len(found) > 1}
    if tied:  # different rows with one updated_at: the one FINAL keeps, as with_total reads it
        for key in tied:
            del newest[key]  # a child now, or a root the filters no longer match: not listed
        matching = _where_trace_in(conn, final(traces.on_spans(), spans))
        async for row in _by_trace(conn, matching, list(tied)):
            if (row.trace_id, row.span_id) in tied:
                newest[row.trace_id, row.span_id] = [row]
    return {key: found[0] for key, found in newest.items()}


def _where_trace_in(conn: AsyncConnection, query: Select[Any]) -> Select[Any]:
    return query.where(in_ids(conn.dialect.name, spans.c.trace_id, "ids")).order_by(None)


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
