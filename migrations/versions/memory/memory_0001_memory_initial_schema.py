"""memory initial schema

Revision ID: memory_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from composite_store.sqltypes import Id, JSONDocument, LongText, UTCDateTime

revision: str = "memory_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "memory_resources",
        sa.Column("id", Id(), nullable=False),
        sa.Column("working_memory", LongText(nullable=True), nullable=True),
        sa.Column("metadata", JSONDocument(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_resources")),
    )
    op.create_table(
        "memory_threads",
        sa.Column("id", Id(), nullable=False),
        sa.Column("resource_id", Id(), nullable=False),
        sa.Column("title", LongText(nullable=True), nullable=True),
        sa.Column("metadata", JSONDocument(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_threads")),
    )
    op.create_index(
        "ix_memory_threads_resource_created",
        "memory_threads",
        ["resource_id", "created_at"],
        unique=False,
    )

    op.create_table(
        "memory_messages",
        sa.Column("id", Id(), nullable=False),
        sa.Column("thread_id", Id(), nullable=False),
        sa.Column("role", Id(), nullable=False),
        sa.Column("content", JSONDocument(), nullable=False),
        sa.Column("resource_id", Id(nullable=True), nullable=True),
        sa.Column("type", Id(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["memory_threads.id"],
            name=op.f("fk_memory_messages_thread_id_memory_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_messages")),
    )
    op.create_index(
        "ix_memory_messages_thread_created",
        "memory_messages",
        ["thread_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_memory_messages_thread_created", "memory_messages")

    op.drop_table("memory_messages")
    op.drop_index("ix_memory_threads_resource_created", "memory_threads")

    op.drop_table("memory_threads")
    op.drop_table("memory_resources")
