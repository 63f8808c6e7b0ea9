"""The domain registry: the one list that says which domains exist.

A domain is a package ``composite_store.domains.<name>`` exporting ``Base`` (its declarative
base, with its own ``MetaData``) and ``Store`` (its async store class). Adding a sixth domain
is that package, one line below and one ``alembic.ini`` section.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import DeclarativeBase

    from composite_store.domains.base import DomainStore

RELATIONAL = frozenset({"sqlite", "postgresql"})
ANALYTICAL = RELATIONAL | {"clickhouse"}  # append-mostly data that needs no cheap upserts


@dataclass(frozen=True)
class DomainSpec:
    name: str
    backends: frozenset[str] = RELATIONAL

    @property
    def base(self) -> type[DeclarativeBase]:
        return _package(self.name).Base  # type: ignore[no-any-return]

    @property
    def store_class(self) -> type[DomainStore]:
        return _package(self.name).Store  # type: ignore[no-any-return]


DOMAIN_SPECS: tuple[DomainSpec, ...] = (
    DomainSpec("memory"),
    DomainSpec("workflows"),
    DomainSpec("scores", ANALYTICAL),
    DomainSpec("observability", ANALYTICAL),
    DomainSpec("agents"),
)

DOMAINS: tuple[str, ...] = tuple(spec.name for spec in DOMAIN_SPECS)
_BY_NAME = {spec.name: spec for spec in DOMAIN_SPECS}


def spec_for(domain: str) -> DomainSpec:
    return _BY_NAME[domain]


def backends_for(domain: str) -> frozenset[str]:
    return _BY_NAME[domain].backends


@cache
def _package(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"composite_store.domains.{name}")


def install_lazy_states() -> None:
    """Every domain's models get ``domains.base._LazyState`` as the package is imported (see
    ``install_lazy_state``): a stored object pickled in one process unpickles in another."""
    from composite_store.domains.base import install_lazy_state

    for spec in DOMAIN_SPECS:
        for mapper in spec.base.registry.mappers:
            install_lazy_state(mapper.class_)
