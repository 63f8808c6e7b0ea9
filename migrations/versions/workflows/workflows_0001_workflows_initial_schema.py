"""workflows initial schema

Revision ID: workflows_0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from composite_store.sqltypes import Id, JSONDocument, UTCDateTime

revision: str = "workflows_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflow_runs",
        sa.Column("workflow_name", Id(), nullable=False),
        sa.Column("run_id", Id(), nullable=False),
        sa.Column("snapshot", JSONDocument(), nullable=False),
        sa.Column("resource_id", Id(nullable=True), nullable=True),
        sa.Column("status", Id(nullable=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workflow_name", "run_id", name=op.f("pk_workflow_runs")),
    )
    op.create_index(
        "ix_workflow_runs_name_created",
        "workflow_runs",
        ["workflow_name", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_workflow_runs_resource_created",
        "workflow_runs",
        ["resource_id", "created_at"],
        unique=False,
    )
    op.create_index("ix_workflow_runs_run_id", "workflow_runs", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_workflow_runs_run_id", "workflow_runs")
    op.drop_index("ix_workflow_runs_resource_created", "workflow_runs")
    op.drop_index("ix_workflow_runs_name_created", "workflow_runs")

    op.drop_table("workflow_runs")
