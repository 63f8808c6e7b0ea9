"""ClickHouse spans: one partition, so FINAL folds every version of a span

ReplacingMergeTree folds row versions only within a partition. Spans were partitioned by month
of started_at, so a span rewritten with a started_at in another month kept both versions, and
toYYYYMM wrapped for dates outside 1970-2106. The table is rebuilt with no partition key and
its rows copied, every version, so FINAL picks the newest as before. PostgreSQL and SQLite
have no partitions: nothing changes there.

Revision ID: observability_0002
Revises: observability_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision: str = "observability_0002"
down_revision: str | None = "observability_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Updates insert a newer row version (updated_at, in microseconds); FINAL folds them.
UNPARTITIONED = "ReplacingMergeTree(updated_at) ORDER BY (trace_id, span_id)"
BY_MONTH_OF_START = (
    "ReplacingMergeTree(updated_at) "
    "PARTITION BY toYYYYMM(toDateTime(intDiv(started_at, 1000000))) ORDER BY (trace_id, span_id)"
)


def _rebuild_spans(engine: str, partitioned: bool) -> None:
    """Swap a new, empty table (same columns, ``engine``) in for spans first, so that writers
    go to it at once, then copy every row version of the old one across and drop it; the
    ReplacingMergeTree keeps the newest version of a span whichever copy lands last.
    ClickHouse has no transactions and no migration lock: each step looks at what is there,
    so a run interrupted half-way, or a second process running it too, finishes the job
    instead of dropping data. Nothing here comes from input: the SQL is constant."""
    bind = op.get_bind()
    if bind.dialect.name != "clickhouse":
        return
    if "spans_replaced" not in _tables(bind) and _partitioned(bind) != partitioned:
        bind.execute(
            sa.text(f"CREATE TABLE IF NOT EXISTS spans_rebuilt AS spans ENGINE = {engine}")
        )
        try:
            bind.execute(sa.text("RENAME TABLE spans TO spans_replaced, spans_rebuilt TO spans"))
        except sa.exc.DBAPIError:
            if "spans_replaced" not in _tables(bind):
                raise  # not another process swapping first
    if "spans_replaced" in _tables(bind):
        try:
            bind.execute(sa.text("INSERT INTO spans SELECT * FROM spans_replaced"))
            bind.execute(sa.text("DROP TABLE IF EXISTS spans_replaced"))
        except sa.exc.DBAPIError:
            if "spans_replaced" in _tables(bind):
                raise  # not another process that copied and dropped it first
    bind.execute(sa.text("DROP TABLE IF EXISTS spans_rebuilt"))  # a concurrent run's leftover


def _tables(bind: Connection) -> set[str]:
    query = "SELECT name FROM system.tables WHERE database = currentDatabase()"
    return {str(name) for name in bind.execute(sa.text(query)).scalars()}


def _partitioned(bind: Connection) -> bool:
    query = (
        "SELECT engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'spans'"
    )
    return "PARTITION BY" in str(bind.execute(sa.text(query)).scalar_one())


def upgrade() -> None:
    _rebuild_spans(UNPARTITIONED, partitioned=False)


def downgrade() -> None:
    _rebuild_spans(BY_MONTH_OF_START, partitioned=True)
