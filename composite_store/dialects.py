"""The SQL that differs between backends, in one place. Stores call these helpers instead of
branching on the dialect themselves."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

from composite_store.sqltypes import dumps


def upsert(
    dialect_name: str,
    table: Table,
    *,
    key: Sequence[str],
    update: Sequence[str] = (),
    overrides: Mapping[str, Callable[[Table, Any], Any]] | None = None,
) -> postgresql.Insert | sqlite.Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` (or ``DO NOTHING`` with nothing to update).

    The rows are execute() parameters, not part of the statement: SQLAlchemy then caches the
    compiled statement and sends a list of rows as multi-row INSERTs ("insertmanyvalues").
    ``update`` columns take the new row's value; ``overrides`` build a column's new value
    from ``(table, excluded)``.
    """
    stmt = _insert(dialect_name, table)
    if not update and not overrides:
        return stmt.on_conflict_do_nothing(index_elements=list(key))
    excluded = stmt.excluded
    set_: dict[str, Any] = {name: excluded[name] for name in update}
    for name, build in (overrides or {}).items():
        set_[name] = build(table, excluded)
    return stmt.on_conflict_do_update(index_elements=list(key), set_=set_)


def _insert(dialect_name: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upsert on {dialect_name}")


def json_field_equals(
    dialect_name: str, column: ColumnElement[Any], key: str, value: Any
) -> ColumnElement[bool]:
    """``column[key] == value`` for a JSON document column, compared as JSON."""
    if dialect_name == "postgresql":
        return column.op("->")(literal(key)) == func.cast(literal(dumps(value)), JSONB)
    # SQLite: extract the same path from both sides, so scalars compare as SQL values and
    # objects/arrays as canonical JSON text. The path is a bound parameter, never SQL text.
    path = f'$."{key}"'  # keys are checked to hold no double quote
    return func.json_extract(column, path) == func.json_extract(literal(dumps({key: value})), path)


def json_matches(
    dialect_name: str, column: ColumnElement[Any], filters: Mapping[str, Any]
) -> ColumnElement[bool]:
    """Every top-level key of ``filters`` equals the document's value for it."""
    return and_(*(json_field_equals(dialect_name, column, k, v) for k, v in filters.items()))
