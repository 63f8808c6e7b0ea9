"""ClickHouse spans: 256-row granules, so a lookup by trace reads 256 rows, not 8,192

ClickHouse reads whole granules. A trace's spans sit in one granule of each part, so
get_trace, and the check list_traces makes of each candidate root, read 8,192 rows a part
for ten spans: at 1M spans on 18.16, 153 ms a get_trace and 91 ms to check a page of 21
roots; with 256-row granules 14 and 16 ms. Inserts and full scans measured the same. The
granularity of a table cannot be changed in place on 18.16: the table is rebuilt as in
observability_0002, and the root_spans_feed view (observability_0004) is made again on the
new table, since a view follows a renamed table on newer servers and stays with the name on
18.16. PostgreSQL and SQLite: nothing changes.

Revision ID: observability_0005
Revises: observability_0004
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision: str = "observability_0005"
down_revision: str | None = "observability_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENGINE = "ReplacingMergeTree(updated_at) ORDER BY (trace_id, span_id) SETTINGS index_granularity = "
SMALL, DEFAULT = 256, 8192
FEED = (
    "CREATE MATERIALIZED VIEW IF NOT EXISTS root_spans_feed TO root_spans "
    "AS SELECT * FROM spans WHERE parent_span_id IS NULL"
)


def _rebuild_spans(granularity: int) -> None:
    """observability_0002's swap-then-copy, with the view taken off the old table before
    the swap and put on the new one right after it. Roots written in between go to the new
    table without the view: they are copied to root_spans before the old rows come across
    (through the view; a root in root_spans twice folds into one). Each step looks at what
    is there, so an interrupted or concurrent run finishes the job. Constant SQL only."""
    bind = op.get_bind()
    if bind.dialect.name != "clickhouse":
        return
    if "spans_replaced" not in _tables(bind) and _granularity(bind) != granularity:
        bind.execute(sa.text("DROP TABLE IF EXISTS root_spans_feed"))
        bind.execute(
            sa.text(
                f"CREATE TABLE IF NOT EXISTS spans_rebuilt AS spans ENGINE = {ENGINE}{granularity}"
            )
        )
        try:
            bind.execute(sa.text("RENAME TABLE spans TO spans_replaced, spans_rebuilt TO spans"))
        except sa.exc.DBAPIError:
            if "spans_replaced" not in _tables(bind):
                raise  # not another process swapping first
    if "spans_replaced" in _tables(bind):
        bind.execute(sa.text(FEED))
        bind.execute(
            sa.text("INSERT INTO root_spans SELECT * FROM spans WHERE parent_span_id IS NULL")
        )
        try:
            bind.execute(sa.text("INSERT INTO spans SELECT * FROM spans_replaced"))
            bind.execute(sa.text("DROP TABLE IF EXISTS spans_replaced"))
        except sa.exc.DBAPIError:
            if "spans_replaced" in _tables(bind):
                raise  # not another process that copied and dropped it first
    bind.execute(sa.text(FEED))  # a run stopped between dropping and making it again
    bind.execute(sa.text("DROP TABLE IF EXISTS spans_rebuilt"))  # a concurrent run's leftover


def _tables(bind: Connection) -> set[str]:
    query = "SELECT name FROM system.tables WHERE database = currentDatabase()"
    return {str(name) for name in bind.execute(sa.text(query)).scalars()}


def _granularity(bind: Connection) -> int:
    query = (
        "SELECT engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'spans'"
    )
    found = re.search(r"index_granularity = (\d+)", str(bind.execute(sa.text(query)).scalar_one()))
    return int(found[1]) if found else DEFAULT


def upgrade() -> None:
    _rebuild_spans(SMALL)


def downgrade() -> None:
    _rebuild_spans(DEFAULT)
