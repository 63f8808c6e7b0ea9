from composite_store.domains.workflows.models import Base, WorkflowRun
from composite_store.domains.workflows.store import WorkflowsStore

Store = WorkflowsStore
__all__ = ["Base", "Store", "WorkflowRun", "WorkflowsStore"]
