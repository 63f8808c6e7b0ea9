"""Agents: stored agent definitions and the immutable versions of their configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column

from composite_store.domains.base import domain_metadata
from composite_store.sqltypes import Id, JSONDocument, LongText, UTCDateTime, utcnow


class Base(MappedAsDataclass, DeclarativeBase, kw_only=True):
    metadata = domain_metadata("agents")


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (Index("ix_agents_author_created", "author_id", "created_at"),)

    id: Mapped[str] = mapped_column(Id(), primary_key=True)
    name: Mapped[str] = mapped_column(LongText())
    instructions: Mapped[str] = mapped_column(LongText(), default="")
    model: Mapped[str] = mapped_column(LongText(), default="")
    author_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONDocument(), default_factory=dict
    )
    active_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)


class AgentVersion(Base):
    __tablename__ = "agent_versions"

    agent_id: Mapped[str] = mapped_column(
        Id(), ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    version_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(LongText())
    instructions: Mapped[str] = mapped_column(LongText(), default="")
    model: Mapped[str] = mapped_column(LongText(), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
