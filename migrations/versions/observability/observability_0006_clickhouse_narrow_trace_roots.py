"""ClickHouse: trace_roots replaces root_spans, the key, times and filters of each root version

root_spans (observability_0004) copied every column of every root-span version, input and
output included, for ``list_traces`` to find the newest traces. trace_roots keeps what that
search reads: the version's key (trace_id, span_id, updated_at), started_at and ended_at
(the orders and the time range), whether it failed (the status) and its eleven id filters as
``name=value`` tags in one Array column (18.16 has no Map). The page's rows are read from
spans by version (``domains/observability/roots.py``). A root's copy shrinks from its full
size to about a hundred bytes, and each insert's second part from 23 columns to 7: the
store's batch_create_spans measured about 8% faster (the view writes that part on every
insert). Roots already stored are copied across after the view exists, so a root written
meanwhile is in trace_roots once or twice, never missing (the engine folds twice into once).
PostgreSQL and SQLite: nothing changes.

The view names each column: a later revision that adds a filter must make it again.

Revision ID: observability_0006
Revises: observability_0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "observability_0006"
down_revision: str | None = "observability_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Constant SQL (nothing from input). The tags are list_traces's eleven id filters; ids are
# never empty, so '' marks a missing one, and arrayFilter drops it.
ROOT_VERSIONS = (
    "SELECT trace_id, span_id, updated_at, started_at, ended_at, "
    "error IS NOT NULL AS failed, arrayFilter(tag -> tag != '', ["
    "ifNull(concat('span_type=', span_type), ''), "
    "ifNull(concat('entity_type=', entity_type), ''), "
    "ifNull(concat('entity_id=', entity_id), ''), "
    "ifNull(concat('entity_name=', entity_name), ''), "
    "ifNull(concat('user_id=', user_id), ''), "
    "ifNull(concat('resource_id=', resource_id), ''), "
    "ifNull(concat('run_id=', run_id), ''), "
    "ifNull(concat('session_id=', session_id), ''), "
    "ifNull(concat('thread_id=', thread_id), ''), "
    "ifNull(concat('environment=', environment), ''), "
    "ifNull(concat('service_name=', service_name), '')]) AS tags "
    "FROM spans WHERE parent_span_id IS NULL"
)
# Each step may run again after an interrupted run. 256-row granules: read by key.
UPGRADE = (
    "CREATE TABLE IF NOT EXISTS trace_roots (trace_id String, span_id String, "
    "updated_at Int64, started_at Int64, ended_at Nullable(Int64), failed UInt8, "
    "tags Array(String)) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (trace_id, span_id) "
    "SETTINGS index_granularity = 256",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS trace_roots_feed TO trace_roots AS " + ROOT_VERSIONS,
    "INSERT INTO trace_roots " + ROOT_VERSIONS,
    "DROP TABLE IF EXISTS root_spans_feed",
    "DROP TABLE IF EXISTS root_spans",
)
DOWNGRADE = (  # observability_0004's table and view, filled again from spans
    "CREATE TABLE IF NOT EXISTS root_spans AS spans ENGINE = ReplacingMergeTree(updated_at) "
    "ORDER BY (trace_id, span_id) SETTINGS index_granularity = 256",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS root_spans_feed TO root_spans "
    "AS SELECT * FROM spans WHERE parent_span_id IS NULL",
    "INSERT INTO root_spans SELECT * FROM spans WHERE parent_span_id IS NULL",
    "DROP TABLE IF EXISTS trace_roots_feed",
    "DROP TABLE IF EXISTS trace_roots",
)


def _run(statements: Sequence[str]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "clickhouse":
        for statement in statements:
            bind.execute(sa.text(statement))


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
