"""composite-store: each agent-data domain in the database that suits it.

>>> store = CompositeStore.from_env()
>>> async with store:
...     await store.memory.save_thread(Thread(id="t1", resource_id="user-1"))
"""

from composite_store.composite import CompositeStore
from composite_store.domains.memory.store import Include
from composite_store.domains.observability.store import Trace
from composite_store.domains.scores.store import ScoreStats
from composite_store.errors import (
    CompositeStoreError,
    ConfigurationError,
    ConflictError,
    DomainUnavailableError,
    NotFoundError,
    SchemaOutOfDateError,
    ValidationError,
)
from composite_store.pagination import Page
from composite_store.registry import DOMAINS, install_lazy_states

__all__ = [
    "DOMAINS",
    "CompositeStore",
    "CompositeStoreError",
    "ConfigurationError",
    "ConflictError",
    "DomainUnavailableError",
    "Include",
    "NotFoundError",
    "Page",
    "SchemaOutOfDateError",
    "ScoreStats",
    "Trace",
    "ValidationError",
]
__version__ = "0.1.0"

install_lazy_states()
