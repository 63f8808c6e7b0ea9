"""scores initial schema

Revision ID: scores_0001
Revises:
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from clickhouse_sqlalchemy import engines

from composite_store.clickhouse import create_table
from composite_store.sqltypes import Id, JSONDocument, LongText, UTCDateTime

revision: str = "scores_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", Id(), nullable=False),
        sa.Column("scorer_id", Id(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("run_id", Id(nullable=True), nullable=True),
        sa.Column("entity_id", Id(nullable=True), nullable=True),
        sa.Column("entity_type", Id(nullable=True), nullable=True),
        sa.Column("source", Id(), nullable=False),
        sa.Column("trace_id", Id(nullable=True), nullable=True),
        sa.Column("span_id", Id(nullable=True), nullable=True),
        sa.Column("reason", LongText(nullable=True), nullable=True),
        sa.Column("metadata", JSONDocument(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "clickhouse":
        # A re-saved score is a new row version; FINAL keeps the last one per id.
        engine = engines.ReplacingMergeTree(order_by=("id",))
        create_table(bind, sa.Table("scores", sa.MetaData(), *columns(), engine))
        return
    op.create_table("scores", *columns(), sa.PrimaryKeyConstraint("id", name=op.f("pk_scores")))
    op.create_index("ix_scores_entity", "scores", ["entity_id", "entity_type"], unique=False)
    op.create_index("ix_scores_run_id", "scores", ["run_id"], unique=False)
    op.create_index("ix_scores_scorer_created", "scores", ["scorer_id", "created_at"], unique=False)
    op.create_index("ix_scores_trace_span", "scores", ["trace_id", "span_id"], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "clickhouse":
        op.drop_index("ix_scores_trace_span", "scores")
        op.drop_index("ix_scores_scorer_created", "scores")
        op.drop_index("ix_scores_run_id", "scores")
        op.drop_index("ix_scores_entity", "scores")
    op.drop_table("scores")
