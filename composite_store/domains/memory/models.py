"""Memory: conversation threads, their messages, and per-resource working memory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column

from composite_store.domains.base import domain_metadata
from composite_store.sqltypes import Id, JSONDocument, LongText, UTCDateTime, utcnow


class Base(MappedAsDataclass, DeclarativeBase, kw_only=True):
    metadata = domain_metadata("memory")


class Thread(Base):
    __tablename__ = "memory_threads"
    __table_args__ = (Index("ix_memory_threads_resource_created", "resource_id", "created_at"),)

    id: Mapped[str] = mapped_column(Id(), primary_key=True)
    resource_id: Mapped[str] = mapped_column(Id())
    title: Mapped[str | None] = mapped_column(LongText(nullable=True), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONDocument(), default_factory=dict
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)


class Message(Base):
    __tablename__ = "memory_messages"
    # Serves the newest page, date ranges and every include window (Mastra's include query
    # scanned the table without it).
    __table_args__ = (Index("ix_memory_messages_thread_created", "thread_id", "created_at"),)

    id: Mapped[str] = mapped_column(Id(), primary_key=True)
    thread_id: Mapped[str] = mapped_column(
        Id(), ForeignKey("memory_threads.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(Id())
    content: Mapped[dict[str, Any]] = mapped_column(JSONDocument())
    resource_id: Mapped[str | None] = mapped_column(Id(nullable=True), default=None)
    type: Mapped[str] = mapped_column(Id(), default="v2")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)


class Resource(Base):
    __tablename__ = "memory_resources"

    id: Mapped[str] = mapped_column(Id(), primary_key=True)
    working_memory: Mapped[str | None] = mapped_column(LongText(nullable=True), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONDocument(), default_factory=dict
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default_factory=utcnow)
