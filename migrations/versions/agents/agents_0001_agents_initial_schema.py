"""agents initial schema

Revision ID: agents_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from composite_store.sqltypes import Id, JSONDocument, LongText, UTCDateTime

revision: str = "agents_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", Id(), nullable=False),
        sa.Column("name", LongText(), nullable=False),
        sa.Column("instructions", LongText(), nullable=False),
        sa.Column("model", LongText(), nullable=False),
        sa.Column("author_id", Id(nullable=True), nullable=True),
        sa.Column("metadata", JSONDocument(), nullable=False),
        sa.Column("active_version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
    )
    op.create_index("ix_agents_author_created", "agents", ["author_id", "created_at"], unique=False)

    op.create_table(
        "agent_versions",
        sa.Column("agent_id", Id(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("name", LongText(), nullable=False),
        sa.Column("instructions", LongText(), nullable=False),
        sa.Column("model", LongText(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            name=op.f("fk_agent_versions_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("agent_id", "version_number", name=op.f("pk_agent_versions")),
    )


def downgrade() -> None:
    op.drop_table("agent_versions")
    op.drop_index("ix_agents_author_created", "agents")

    op.drop_table("agents")
