"""Observability: trace spans, written in volume in the background and read by recent slices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clickhouse_sqlalchemy import engines
from sqlalchemy import Index, text
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column

from composite_store.dialects import relational_only
from composite_store.domains.base import domain_metadata
from composite_store.sqltypes import Id, JSONDocument, UTCDateTime, utcnow


class Base(MappedAsDataclass, DeclarativeBase, kw_only=True):
    metadata = domain_metadata("observability")


class Span(Base):
    __tablename__ = "spans"
    __table_args__ = (
        # Reads by trace use the primary key's prefix (no (trace_id, started_at) index since
        # observability_0007: a trace's few spans sort in no time, and inserts paid for it).
        # Root spans by start time: the list_traces query, without scanning child spans.
        relational_only(
            Index(
                "ix_spans_root_started",
                "started_at",
                postgresql_where=text("parent_span_id IS NULL"),
                sqlite_where=text("parent_span_id IS NULL"),
            )
        ),
        # ClickHouse only (the others ignore it): an update inserts a newer row version,
        # updated_at (microseconds) decides which one FINAL keeps. No partition key: versions
        # fold only within a partition, and a rewrite may move started_at to another month.
        # 256-row granules: a trace is read by key, and ClickHouse reads whole granules.
        engines.ReplacingMergeTree(
            version="updated_at", order_by=("trace_id", "span_id"), index_granularity=256
        ),
    )

    trace_id: Mapped[str] = mapped_column(Id(), primary_key=True)
    span_id: Mapped[str] = mapped_column(Id(), primary_key=True)
    name: Mapped[str] = mapped_column(Id())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    parent_span_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    span_type: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(nullable=True), default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument(nullable=True), default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONDocument(), default_factory=dict)
    input: Mapped[Any] = mapped_column(JSONDocument(nullable=True), nullable=True, default=None)
    output: Mapped[Any] = mapped_column(JSONDocument(nullable=True), nullable=True, default=None)
    entity_type: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    entity_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    entity_name: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    user_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    resource_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    run_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    session_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    thread_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    environment: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    service_name: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
    # Bumped by every write; on ClickHouse it is the ReplacingMergeTree row version.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)

    @property
    def status(self) -> str:
        """ "error" if the span failed, "running" until it ends, else "success"."""
        if self.error is not None:
            return "error"
        return "running" if self.ended_at is None else "success"
