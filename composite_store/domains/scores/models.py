"""Scores: evaluation results of agent outputs; append-mostly, filtered and aggregated."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clickhouse_sqlalchemy import engines
from sqlalchemy import Double, Index
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column

from composite_store.dialects import relational_only
from composite_store.domains.base import domain_metadata
from composite_store.sqltypes import Id, JSONDocument, LongText, UTCDateTime, utcnow


class Base(MappedAsDataclass, DeclarativeBase, kw_only=True):
    metadata = domain_metadata("scores")


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (
        relational_only(Index("ix_scores_scorer_created", "scorer_id", "created_at")),
        relational_only(Index("ix_scores_run_id", "run_id")),
        relational_only(Index("ix_scores_entity", "entity_id", "entity_type")),
        relational_only(Index("ix_scores_trace_span", "trace_id", "span_id")),
        # ClickHouse only (the others ignore it): a re-saved score is a new row version.
        engines.ReplacingMergeTree(order_by=("id",)),
    )

    id: Mapped[str] = mapped_column(Id(), primary_key=True)
    scorer_id: Mapped[str] = mapped_column(Id())
    score: Mapped[float] = mapped_column(Double)
    run_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    entity_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    entity_type: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    source: Mapped[str] = mapped_column(Id(), default="LIVE")
    trace_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    span_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    reason: Mapped[str | None] = mapped_column(LongText(nullable=True), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONDocument(), default_factory=dict
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
