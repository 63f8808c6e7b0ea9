"""PostgreSQL and SQLite: spans lose the (trace_id, started_at) index

Every read by trace (get_trace, get_span, delete_traces, update_span) finds its spans by the
primary key's prefix, trace_id; get_trace sorts a trace's spans by start time, a few rows.
The second index did nothing for them and cost every insert a third B-tree entry: the
server's execution of a 500-span batch on PostgreSQL went from ~7.1 to ~5.4 us a span
(EXPLAIN ANALYZE), and SQLite's O1 rose 15-25%, get_trace's time unchanged on both.
ClickHouse never had it.

Revision ID: observability_0007
Revises: observability_0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "observability_0007"
down_revision: str | None = "observability_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "clickhouse":
        op.drop_index("ix_spans_trace_started", "spans", if_exists=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "clickhouse":
        op.create_index(
            "ix_spans_trace_started", "spans", ["trace_id", "started_at"], if_not_exists=True
        )
