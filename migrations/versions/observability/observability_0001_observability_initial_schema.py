"""observability initial schema

Revision ID: observability_0001
Revises:
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from clickhouse_sqlalchemy import engines

from composite_store.clickhouse import create_table
from composite_store.sqltypes import Id, JSONDocument, UTCDateTime

revision: str = "observability_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("trace_id", Id(), nullable=False),
        sa.Column("span_id", Id(), nullable=False),
        sa.Column("name", Id(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("parent_span_id", Id(nullable=True), nullable=True),
        sa.Column("span_type", Id(nullable=True), nullable=True),
        sa.Column("ended_at", UTCDateTime(nullable=True), nullable=True),
        sa.Column("error", JSONDocument(nullable=True), nullable=True),
        sa.Column("attributes", JSONDocument(), nullable=False),
        sa.Column("input", JSONDocument(nullable=True), nullable=True),
        sa.Column("output", JSONDocument(nullable=True), nullable=True),
        sa.Column("entity_type", Id(nullable=True), nullable=True),
        sa.Column("entity_id", Id(nullable=True), nullable=True),
        sa.Column("entity_name", Id(nullable=True), nullable=True),
        sa.Column("user_id", Id(nullable=True), nullable=True),
        sa.Column("resource_id", Id(nullable=True), nullable=True),
        sa.Column("run_id", Id(nullable=True), nullable=True),
        sa.Column("session_id", Id(nullable=True), nullable=True),
        sa.Column("thread_id", Id(nullable=True), nullable=True),
        sa.Column("environment", Id(nullable=True), nullable=True),
        sa.Column("service_name", Id(nullable=True), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "clickhouse":
        # Updates insert a newer row version (updated_at, in microseconds); FINAL folds them.
        engine = engines.ReplacingMergeTree(
            version="updated_at",
            order_by=("trace_id", "span_id"),
            partition_by=sa.text("toYYYYMM(toDateTime(intDiv(started_at, 1000000)))"),
        )
        create_table(bind, sa.Table("spans", sa.MetaData(), *columns(), engine))
        return
    op.create_table(
        "spans", *columns(), sa.PrimaryKeyConstraint("trace_id", "span_id", name=op.f("pk_spans"))
    )
    op.create_index(
        "ix_spans_root_started",
        "spans",
        ["started_at"],
        unique=False,
        postgresql_where=sa.text("parent_span_id IS NULL"),
        sqlite_where=sa.text("parent_span_id IS NULL"),
    )
    op.create_index("ix_spans_trace_started", "spans", ["trace_id", "started_at"], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "clickhouse":
        op.drop_index("ix_spans_trace_started", "spans")
        op.drop_index(
            "ix_spans_root_started",
            "spans",
            postgresql_where=sa.text("parent_span_id IS NULL"),
            sqlite_where=sa.text("parent_span_id IS NULL"),
        )
    op.drop_table("spans")
