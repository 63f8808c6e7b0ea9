"""The SQL that differs between backends, in one place. Stores call these helpers instead of
branching on the dialect themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    Column,
    ColumnElement,
    Index,
    Insert,
    Integer,
    Select,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY as PG_ARRAY
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import visitors
from sqlalchemy.types import TypeEngine

from composite_store.clickhouse import PREWHERE
from composite_store.sqltypes import (
    EpochMicros,
    JSONDocument,
    JSONText,
    UTCDateTime,
    encode,
    to_micros,
)


def upsert(
    dialect_name: str,
    table: Table,
    *,
    key: Sequence[str],
    update: Sequence[str] = (),
    overrides: Mapping[str, Callable[[Table, Any], Any]] | None = None,
    newer: str | None = None,
) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` (or ``DO NOTHING`` with nothing to update).

    The rows are execute() parameters, not part of the statement: SQLAlchemy then caches the
    compiled statement (see ``_Upsert``) and sends a list of rows as multi-row INSERTs
    ("insertmanyvalues").
    ``update`` columns take the new row's value; ``overrides`` build a column's new value
    from ``(table, excluded)``. With ``newer="updated_at"`` the stored row is replaced only
    by a row at least as new (what a ClickHouse ReplacingMergeTree versioned by that column
    does by itself).

    On ClickHouse an upsert is a plain INSERT: its tables are ReplacingMergeTrees, where the
    newest row version of a key wins (read with ``final``). ``DO NOTHING`` cannot be had there.
    """
    if dialect_name == "clickhouse":
        return insert(table)
    dialect = _DIALECTS[dialect_name]
    quote = dialect.identifier_preparer.quote
    target = ", ".join(quote(name) for name in key)
    if not update and not overrides:
        return _Upsert(table, f"ON CONFLICT ({target}) DO NOTHING")
    excluded = table.alias("excluded").c
    new_values: dict[str, Any] = {name: excluded[name] for name in update}
    for name, build in (overrides or {}).items():
        new_values[name] = build(table, excluded)
    assignments = ", ".join(f"{quote(name)} = {_sql(dialect, v)}" for name, v in new_values.items())
    clause = f"ON CONFLICT ({target}) DO UPDATE SET {assignments}"
    if newer:
        clause += f" WHERE {_sql(dialect, table.c[newer] <= excluded[newer])}"
    return _Upsert(table, clause)


class _Upsert(Insert):
    """An ``INSERT ... ON CONFLICT`` that SQLAlchemy 2.0 can cache.

    SQLAlchemy 2.0's own PostgreSQL/SQLite ``insert().on_conflict_do_update()`` has no cache
    key (``inherit_cache = False``; fixed in 2.1, which clickhouse-sqlalchemy does not allow),
    so every upsert was compiled again: ~0.3 ms a call, on the hottest write paths. Here the
    ON CONFLICT clause is SQL text, built once from the same expressions, cacheable by its
    string, and rendered by the standard compiler right after VALUES, where both databases
    expect it. Rows still go in as parameters; a list of rows still becomes multi-row INSERTs.
    """

    inherit_cache = True

    def __init__(self, table: Table, on_conflict: str) -> None:
        super().__init__(table)
        self._post_values_clause = text(on_conflict.replace(":", "\\:"))


_DIALECTS: dict[str, Dialect] = {
    "postgresql": PGDialect(),  # type: ignore[no-untyped-call]
    "sqlite": SQLiteDialect(),
}


def _sql(dialect: Any, expression: ColumnElement[Any]) -> str:
    return str(expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def final(stmt: Select[Any], table: Table) -> Select[Any]:
    """Read ``table`` deduplicated: ClickHouse's ReplacingMergeTree keeps older versions of a
    row until a merge, ``FINAL`` folds them at read time. Other backends ignore the hint."""
    return stmt.with_hint(table, "FINAL", dialect_name="clickhouse")


def prewhere(stmt: Select[Any]) -> Select[Any]:
    """ClickHouse: run ``stmt``'s WHERE as PREWHERE, which reads the condition's columns first
    and the others only for the granules holding a row that passes. ClickHouse moves most
    conditions there itself, but not one on the sort key: the index narrows it to granules,
    one per id in every part, and those are read whole. At 1M spans, 21 traces' spans took
    12.9 ms with WHERE and 5.0 with PREWHERE (clickhouse-driver alone). With ``final`` use
    ``by_key``. Other backends ignore the hint."""
    return stmt.with_statement_hint(PREWHERE, dialect_name="clickhouse")


def by_key(stmt: Select[Any], table: Table) -> Select[Any]:
    """Rows of ``table`` picked by its sort key, each in its newest version: ``final`` and
    ``prewhere``. The WHERE may test nothing else (our ClickHouse tables are sorted by their
    primary key), or PREWHERE could drop a row's newest version and keep an older one."""
    key = {column.name for column in table.primary_key.columns}
    tested = [] if stmt.whereclause is None else list(visitors.iterate(stmt.whereclause))
    other = sorted(
        str(column)
        for column in tested
        if isinstance(column, Column) and (column.table is not table or column.name not in key)
    )
    if other:
        raise ValueError(f"by_key reads {table.name} by its key, but the WHERE tests {other}")
    return prewhere(final(stmt, table))


def in_ids(dialect_name: str, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``column IN <the list bound to name>``, as one parameter: the statement is the same for
    any number of ids, so it is compiled (and prepared by the server) once. PostgreSQL binds
    an array, SQLite a JSON array read back with ``json_each``; others expand the list."""
    if dialect_name == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(String())))
    if dialect_name == "sqlite":
        listed = func.json_each(bindparam(name, type_=JSON())).table_valued("value")
        return column.in_(select(listed.c.value))
    return column.in_(bindparam(name, expanding=True))


# ClickHouse parses at most max_query_size (256 KiB) of SQL text, and its driver writes an IN
# list into the text: longer lists go in several statements of this much id text each.
CLICKHOUSE_ID_TEXT = 100_000


def id_batches(dialect_name: str, ids: list[str]) -> Iterator[list[str]]:
    """``ids`` in lists that ``in_ids`` can bind in one statement: all of them, except on
    ClickHouse, where a long list is split to stay under the server's query size limit."""
    if dialect_name != "clickhouse":
        yield ids
        return
    batch: list[str] = []
    size = 0
    for id_ in ids:
        cost = 4 * len(id_) + 4  # quoted and escaped: at most 4 bytes a character
        if batch and size + cost > CLICKHOUSE_ID_TEXT:
            yield batch
            batch, size = [], 0
        batch.append(id_)
        size += cost
    if batch:
        yield batch


def insert_from_arrays(
    statement: Insert, columns: Sequence[str], *, only_if: ColumnElement[bool] | None = None
) -> Insert:
    """PostgreSQL: ``statement`` (an INSERT or upsert) fed by one array per column, bound
    as ``<column>_all`` and read back row by row with ``unnest``. The text is the same for
    any number of rows, so the server prepares and plans it once; a multi-row VALUES of a
    few hundred rows is a new statement per size, and asyncpg will not even cache one over
    15 KB. With ``only_if``, no row goes in unless it holds."""
    table: Any = statement.table
    sent = [_as_array_element(table.c[c].type) for c in columns]
    arrays = [
        bindparam(f"{c}_all", type_=PG_ARRAY(element, dimensions=1))
        for c, (element, _) in zip(columns, sent, strict=True)
    ]
    rows = func.unnest(*arrays).table_valued(*columns).render_derived()
    source = select(*(read(rows.c[c]) for c, (_, read) in zip(columns, sent, strict=True)))
    if only_if is not None:
        source = source.where(only_if)
    return statement.from_select(list(columns), source)


def _as_array_element(
    type_: TypeEngine[Any],
) -> tuple[TypeEngine[Any], Callable[[ColumnElement[Any]], ColumnElement[Any]]]:
    """How a column's values travel in ``insert_from_arrays``: the array's element type and
    the SQL that reads an element back as the column's type. JSON documents go as text and
    timestamps as microseconds since the epoch, which asyncpg encodes in C
    (``sqltypes.JSONText``, ``sqltypes.EpochMicros``); everything else as it is."""
    if isinstance(type_, JSONDocument):
        return JSONText(), lambda element: cast(element, JSONB)
    if isinstance(type_, UTCDateTime):
        return EpochMicros(), _timestamptz_of_micros
    return type_, lambda element: element


def _timestamptz_of_micros(micros: ColumnElement[Any]) -> ColumnElement[Any]:
    """Microseconds since the epoch as timestamptz, exactly: whole seconds through
    ``to_timestamp`` (a float8 that holds them, and their product with 10^6, exactly), the
    rest as an interval. Integer division truncates, and the remainder keeps the sign.
    ``datetime.max`` and ``datetime.min`` become +/-infinity, as asyncpg binds them in every
    other statement (a filter at ``datetime.max`` must find what a batch stored there)."""
    million: ColumnElement[Any] = literal_column("1000000")
    seconds = func.to_timestamp(micros.op("/")(million))
    exact = seconds + micros.op("%")(million) * literal_column("interval '1 microsecond'")
    return case(
        (micros == literal_column(str(_MAX_MICROS)), literal_column("'infinity'::timestamptz")),
        (micros == literal_column(str(_MIN_MICROS)), literal_column("'-infinity'::timestamptz")),
        else_=exact,
    )


_MAX_MICROS = to_micros(datetime.max.replace(tzinfo=UTC))
_MIN_MICROS = to_micros(datetime.min.replace(tzinfo=UTC))


def writes_in_one_statement(dialect_name: str) -> bool:
    """Whether several writes can be one statement: PostgreSQL runs INSERT and UPDATE inside
    WITH (data-modifying CTEs), and takes a batch of any size as one INSERT of arrays
    (``insert_from_arrays``), so writes that must all happen or none take one round trip
    and no BEGIN/COMMIT. SQLite and ClickHouse cannot."""
    return dialect_name == "postgresql"


def keeps_roots_apart(dialect_name: str) -> bool:
    """Whether root spans are also indexed in a table of their own, ``trace_roots``
    (ClickHouse: it cannot read spans in time order; the others have a partial index)."""
    return dialect_name == "clickhouse"


def for_update(dialect_name: str, stmt: Select[Any]) -> Select[Any]:
    """Lock the selected rows for the rest of the transaction. SQLite needs no row lock (its
    write transaction holds the database lock); ClickHouse has neither locks nor
    transactions, and its writes are new row versions that cannot conflict."""
    return stmt if dialect_name == "clickhouse" else stmt.with_for_update()


async def after_delete(conn: AsyncConnection, table: Table) -> None:
    """ClickHouse deletes are asynchronous mutations: wait until this one is applied, so a
    read after delete_* never sees the deleted rows."""
    if conn.dialect.name == "clickhouse":
        from composite_store.clickhouse import wait_for_mutations

        await conn.run_sync(wait_for_mutations, table.name)


def relational_only(index: Index) -> Index:
    """An index for PostgreSQL and SQLite only: ClickHouse has no secondary B-tree indexes
    (its sort key does that job) and would refuse the DDL."""
    return index.ddl_if(callable_=_not_clickhouse)


def _not_clickhouse(
    ddl: Any,
    target: Any,
    bind: Any,
    tables: Any = None,
    state: Any = None,
    *,
    dialect: Any,
    compiler: Any = None,
    checkfirst: bool,
) -> bool:
    return bool(dialect.name != "clickhouse")


async def take_migration_lock(conn: AsyncConnection, key: int) -> None:
    """Hold the database's migration lock until the transaction ends. PostgreSQL: an advisory
    lock. SQLite: the write transaction's BEGIN IMMEDIATE already holds the write lock.
    ClickHouse has no locks; its DDL is idempotent (IF NOT EXISTS) where it matters."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _percentile(dialect_name: str, value: ColumnElement[float], q: float) -> Any:
    if dialect_name == "clickhouse":
        # quantileExactInclusive does not exist on 18.16; quantile() interpolates the same way
        # (exactly, for up to 8192 values per group; sampled beyond)
        return func.quantile(q, value)
    return func.percentile_cont(q).within_group(value)


def score_stats_select(
    dialect_name: str,
    table: Table,
    value: ColumnElement[float],
    where: Sequence[ColumnElement[bool]],
    group: ColumnElement[Any] | None,
    threshold: float,
    *,
    final_table: Table | None = None,
) -> Select[Any]:
    """count, mean, p50, p95 and pass_rate (share of values >= threshold) of ``value``,
    optionally per ``group`` (labelled "group"), as one statement.

    The percentiles interpolate like PostgreSQL's ``percentile_cont``. PostgreSQL has it;
    SQLite has no percentile function, so there the rows are ranked with window functions
    and the two ranks around each percentile are interpolated, still in the database.
    """
    passed = func.avg(case((value >= threshold, 1.0), else_=0.0))
    if dialect_name in ("postgresql", "clickhouse"):
        columns = [
            func.count().label("count"),
            func.avg(value).label("mean"),
            _percentile(dialect_name, value, 0.5).label("p50"),
            _percentile(dialect_name, value, 0.95).label("p95"),
            passed.label("pass_rate"),
        ]
        stmt = select(*columns).select_from(table).where(*where)
        if final_table is not None:
            stmt = final(stmt, final_table)
        if group is not None:
            stmt = stmt.add_columns(group.label("group")).group_by(group)
        return stmt
    group_key = group if group is not None else literal(1)
    ranked = (
        select(
            group_key.label("g"),
            value.label("v"),
            (func.row_number().over(partition_by=group_key, order_by=value) - 1).label("rn"),
            func.count().over(partition_by=group_key).label("n"),
        )
        .select_from(table)
        .where(*where)
        .subquery()
    )

    def percentile(q: float) -> ColumnElement[Any]:
        position = (ranked.c.n - 1) * q
        low = cast(position, Integer)  # floor: positions are >= 0
        weight = position - low
        return func.sum(
            case(
                (ranked.c.rn == low, ranked.c.v * (1 - weight)),
                (ranked.c.rn == low + 1, ranked.c.v * weight),
                else_=0.0,
            )
        )

    stmt = select(
        func.count().label("count"),
        func.avg(ranked.c.v).label("mean"),
        percentile(0.5).label("p50"),
        percentile(0.95).label("p95"),
        func.avg(case((ranked.c.v >= threshold, 1.0), else_=0.0)).label("pass_rate"),
    )
    if group is not None:
        stmt = stmt.add_columns(ranked.c.g.label("group")).group_by(ranked.c.g)
    return stmt


def json_field_equals(
    dialect_name: str, column: ColumnElement[Any], key: str, value: Any
) -> ColumnElement[bool]:
    """``column[key] == value`` for a JSON document column, compared as JSON values (``true``
    is not ``1``, ``null`` matches ``null``, object key order does not matter)."""
    if dialect_name == "postgresql":
        return column.op("->")(literal(key)) == func.cast(literal(encode(value)), JSONB)
    return _sqlite_json_equals(column, f'$."{key}"', value)


def _sqlite_json_equals(column: ColumnElement[Any], path: str, value: Any) -> ColumnElement[bool]:
    """SQLite's json_extract flattens types (true -> 1, null -> NULL, objects -> text in stored
    key order), so compare JSON type and value, leaf by leaf. Paths are bound parameters."""
    kind = func.json_type(column, path)
    if value is None:
        return kind == "null"
    if isinstance(value, bool):
        return kind == ("true" if value else "false")
    if isinstance(value, int | float):
        return and_(kind.in_(("integer", "real")), func.json_extract(column, path) == value)
    if isinstance(value, str):
        return and_(kind == "text", func.json_extract(column, path) == value)
    if isinstance(value, list):
        return and_(
            kind == "array",
            func.json_array_length(column, path) == len(value),
            *(_sqlite_json_equals(column, f"{path}[{i}]", item) for i, item in enumerate(value)),
        )
    members = select(func.count()).select_from(func.json_each(column, path)).scalar_subquery()
    return and_(
        kind == "object",
        members == len(value),
        *(_sqlite_json_equals(column, f'{path}."{k}"', item) for k, item in value.items()),
    )


def json_matches(
    dialect_name: str, column: ColumnElement[Any], filters: Mapping[str, Any]
) -> ColumnElement[bool]:
    """Every top-level key of ``filters`` equals the document's value for it."""
    return and_(*(json_field_equals(dialect_name, column, k, v) for k, v in filters.items()))
