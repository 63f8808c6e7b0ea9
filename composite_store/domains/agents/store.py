"""The agents domain's async store."""

from __future__ import annotations

from composite_store.domains.base import DomainStore


class AgentsStore(DomainStore):
    domain = "agents"
