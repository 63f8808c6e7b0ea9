"""Every ORM model, importable from one place; query them through ``store.session()``."""

from composite_store.domains.agents.models import Agent, AgentVersion
from composite_store.domains.memory.models import Message, Resource, Thread
from composite_store.domains.observability.models import Span
from composite_store.domains.scores.models import Score
from composite_store.domains.workflows.models import WorkflowRun

__all__ = [
    "Agent",
    "AgentVersion",
    "Message",
    "Resource",
    "Score",
    "Span",
    "Thread",
    "WorkflowRun",
]
