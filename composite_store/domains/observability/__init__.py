from composite_store.domains.observability.models import Base, Span
from composite_store.domains.observability.store import ObservabilityStore

Store = ObservabilityStore
__all__ = ["Base", "ObservabilityStore", "Span", "Store"]
