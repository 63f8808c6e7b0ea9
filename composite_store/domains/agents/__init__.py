from composite_store.domains.agents.models import Agent, AgentVersion, Base
from composite_store.domains.agents.store import AgentsStore

Store = AgentsStore
__all__ = ["Agent", "AgentVersion", "AgentsStore", "Base", "Store"]
