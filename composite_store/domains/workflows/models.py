"""Workflows: one JSON snapshot per workflow run, versioned for compare-and-set."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column

from composite_store.domains.base import domain_metadata
from composite_store.sqltypes import Id, JSONDocument, UTCDateTime, utcnow


class Base(MappedAsDataclass, DeclarativeBase, kw_only=True):
    metadata = domain_metadata("workflows")


class WorkflowRun(Base):
    __tablename__ = "workflow_runs"
    __table_args__ = (
        Index("ix_workflow_runs_name_created", "workflow_name", "created_at"),
        Index("ix_workflow_runs_resource_created", "resource_id", "created_at"),
        Index("ix_workflow_runs_run_id", "run_id"),
    )

    workflow_name: Mapped[str] = mapped_column(Id(), primary_key=True)
    run_id: Mapped[str] = mapped_column(Id(), primary_key=True)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONDocument())
    resource_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    status: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
