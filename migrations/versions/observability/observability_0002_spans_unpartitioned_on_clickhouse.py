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


def _rebuild_spans(engine: str) -> None:
    """Create the new table beside the old one (same columns), copy every row version, swap,
    drop the old one. Nothing here comes from input: the SQL is constant."""
    bind = op.get_bind()
    if bind.dialect.name != "clickhouse":
        return
    bind.execute(sa.text("DROP TABLE IF EXISTS spans_rebuilt"))  # left by an interrupted run
    bind.execute(sa.text(f"CREATE TABLE spans_rebuilt AS spans ENGINE = {engine}"))
    bind.execute(sa.text("INSERT INTO spans_rebuilt SELECT * FROM spans"))
    bind.execute(sa.text("RENAME TABLE spans TO spans_replaced, spans_rebuilt TO spans"))
    bind.execute(sa.text("DROP TABLE spans_replaced"))


def upgrade() -> None:
    _rebuild_spans(UNPARTITIONED)


def downgrade() -> None:
    _rebuild_spans(BY_MONTH_OF_START)
