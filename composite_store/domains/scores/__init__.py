from composite_store.domains.scores.models import Base, Score
from composite_store.domains.scores.store import ScoresStore

Store = ScoresStore
__all__ = ["Base", "Score", "ScoresStore", "Store"]
