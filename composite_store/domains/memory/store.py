"""The memory domain's async store."""

from __future__ import annotations

from composite_store.domains.base import DomainStore


class MemoryStore(DomainStore):
    domain = "memory"
