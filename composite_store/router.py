"""The session router: one ``AsyncSession`` whose bind follows each mapped class's domain.

SQLAlchemy resolves a mapped class to a bind by walking its MRO through ``binds``; since every
model of a domain inherits that domain's declarative base, binding the five bases routes every
model. Statements with no mapped class (``text()``) go to the default engine.

A transaction spans one database only. A unit of work that touches two databases commits
each database separately: it is not atomic across them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from composite_store.engines import EngineSet
from composite_store.registry import DOMAIN_SPECS


def session_factory(engines: EngineSet) -> async_sessionmaker[AsyncSession]:
    binds: dict[type, AsyncEngine] = {spec.base: engines.engine(spec.name) for spec in DOMAIN_SPECS}
    return async_sessionmaker(bind=engines.default, binds=binds, expire_on_commit=False)
