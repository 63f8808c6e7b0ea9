"""SQLite spans: JSON columns declared TEXT, so a bare number keeps its form

A SQLite column declared JSON has NUMERIC affinity: the document ``1.0`` was stored as the
integer 1 and ``2**70`` as a rounded float, so a span's input or output could come back as
another value. Declared TEXT, SQLite keeps the text as written. SQLite cannot change a column's
type in place: the table is rebuilt (Alembic's batch mode: a new table, every row copied, the
old one dropped, all in the migration's transaction). PostgreSQL (JSONB) and ClickHouse
(String) stored the text all along: nothing changes there. Values already stored keep what
SQLite made of them.

Revision ID: observability_0003
Revises: observability_0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "observability_0003"
down_revision: str | None = "observability_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_COLUMNS = {"error": True, "attributes": False, "input": True, "output": True}  # nullable?


def _declare_json_columns(type_: sa.types.TypeEngine[object]) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    declared = {c["name"]: c["type"] for c in sa.inspect(bind).get_columns("spans")}
    if all(isinstance(declared[name], type(type_)) for name in JSON_COLUMNS):
        return  # created so (a database made since this revision): no rebuild
    with op.batch_alter_table("spans", recreate="always") as batch:
        for name, nullable in JSON_COLUMNS.items():
            batch.alter_column(name, type_=type_, existing_nullable=nullable)


def upgrade() -> None:
    _declare_json_columns(sa.Text())


def downgrade() -> None:
    _declare_json_columns(sa.JSON())
