from composite_store.domains.memory.models import Base, Message, Resource, Thread
from composite_store.domains.memory.store import MemoryStore

Store = MemoryStore
__all__ = ["Base", "MemoryStore", "Message", "Resource", "Store", "Thread"]
