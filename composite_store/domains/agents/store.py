"""The agents domain's async store: agent definitions and the versions of their configuration.

A version is an immutable copy of the configuration fields (name, instructions, model). A change
to any of them creates the next version and makes it active; ``activate_version`` rolls the
agent back (or forward) to any stored version. Version numbers are gap-free per agent: each
new one is taken under the agent row's lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, bindparam, delete, func, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from composite_store import validation as v
from composite_store.dialects import json_matches, upsert
from composite_store.domains.agents.models import Agent, AgentVersion
from composite_store.domains.base import (
    DomainStore,
    fetch_one,
    hydrate,
    model_columns,
    row_values,
    table_of,
    update_one,
)
from composite_store.errors import ConflictError, NotFoundError, ValidationError
from composite_store.pagination import Page, check_page, fetch_page
from composite_store.sqltypes import utcnow

agents = table_of(Agent)
versions = table_of(AgentVersion)
VERSIONED = ("name", "instructions", "model")  # a change to these makes a new version
UPDATABLE = (*VERSIONED, "author_id", "metadata")


class AgentsStore(DomainStore):
    domain = "agents"

    async def create_agent(self, agent: Agent) -> Agent:
        """Store a new agent and its version 1 (``ConflictError`` if the id is taken)."""
        row = _agent_row(agent)
        row["active_version"] = 1
        new_agent = upsert(self.dialect, agents, key=["id"]).returning(agents.c.id)  # DO NOTHING
        async with self._transaction() as conn:
            if (await conn.execute(new_agent, row)).first() is None:
                raise ConflictError(f"agent {agent.id!r} already exists")
            await conn.execute(insert(versions), _version_row(row, 1, row["created_at"]))
        agent.active_version = 1
        return agent

    async def get_agent(self, agent_id: str) -> Agent | None:
        v.require_id(agent_id, "agent_id")
        stmt = self._statement(
            "get_agent",
            lambda: select(*model_columns(Agent)).where(agents.c.id == bindparam("id")),
        )
        async with self._autocommit() as conn:
            row = (await conn.execute(stmt, {"id": agent_id})).first()
        return None if row is None else hydrate(Agent, row)

    async def update_agent(self, agent_id: str, **fields: Any) -> Agent:
        """Change fields; a change to name, instructions or model creates the next version
        and activates it. ``metadata`` is merged into the stored metadata."""
        v.require_id(agent_id, "agent_id")
        v.reject_unknown(fields, UPDATABLE, "update_agent")
        for name in VERSIONED:
            if name in fields:
                _check_config(name, fields[name])
        if "author_id" in fields:
            v.optional_id(fields["author_id"], "author_id")
        if "metadata" in fields:
            v.require_json(fields["metadata"], "metadata")
        async with self._transaction() as conn:
            current = await self._locked(conn, agent_id)
            values: dict[str, Any] = {"updated_at": utcnow()}
            changed = {
                k: fields[k] for k in VERSIONED if k in fields and fields[k] != getattr(current, k)
            }
            values.update(changed)
            if "author_id" in fields:
                values["author_id"] = fields["author_id"]
            if "metadata" in fields:
                values["metadata"] = {**current.metadata_, **fields["metadata"]}
            if changed:
                number = await self._next_version(conn, agent_id)
                config = {k: values.get(k, getattr(current, k)) for k in VERSIONED}
                await conn.execute(
                    insert(versions), _version_row(config | {"id": agent_id}, number, utcnow())
                )
                values["active_version"] = number
            return await update_one(conn, Agent, agents.c.id == agent_id, values)

    async def delete_agent(self, agent_id: str) -> None:
        """Delete an agent and its versions; deleting a missing agent does nothing."""
        v.require_id(agent_id, "agent_id")
        async with self._transaction() as conn:
            await conn.execute(delete(versions).where(versions.c.agent_id == agent_id))
            await conn.execute(delete(agents).where(agents.c.id == agent_id))

    async def list_agents(
        self,
        *,
        author_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        page: int = 0,
        per_page: int | None = 100,
        descending: bool = True,
    ) -> Page[Agent]:
        """Agents by creation time (newest first unless ``descending=False``)."""
        v.optional_id(author_id, "author_id")
        filters = v.metadata_filter(metadata)
        check_page(page, per_page)
        v.require_bool(descending, "descending")
        where: list[ColumnElement[bool]] = []
        if author_id is not None:
            where.append(agents.c.author_id == author_id)
        if filters:
            where.append(json_matches(self.dialect, agents.c.metadata, filters))
        order = (
            (agents.c.created_at.desc(), agents.c.id.desc())
            if descending
            else (agents.c.created_at, agents.c.id)
        )
        stmt = select(*model_columns(Agent)).where(*where).order_by(*order)
        async with self._autocommit() as conn:
            return await fetch_page(conn, Agent, stmt, page, per_page)

    async def list_versions(
        self, agent_id: str, *, page: int = 0, per_page: int | None = 100
    ) -> Page[AgentVersion]:
        """An agent's versions, newest first."""
        v.require_id(agent_id, "agent_id")
        check_page(page, per_page)
        stmt = (
            select(*model_columns(AgentVersion))
            .where(versions.c.agent_id == agent_id)
            .order_by(versions.c.version_number.desc())
        )
        async with self._autocommit() as conn:
            return await fetch_page(conn, AgentVersion, stmt, page, per_page)

    async def get_version(self, agent_id: str, version_number: int) -> AgentVersion | None:
        v.require_id(agent_id, "agent_id")
        v.require_int(version_number, "version_number", minimum=1)
        stmt = select(*model_columns(AgentVersion)).where(
            versions.c.agent_id == agent_id, versions.c.version_number == _number(version_number)
        )
        async with self._autocommit() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else hydrate(AgentVersion, row)

    async def activate_version(self, agent_id: str, version_number: int) -> Agent:
        """Make a stored version the active one: the agent takes that version's configuration."""
        v.require_id(agent_id, "agent_id")
        v.require_int(version_number, "version_number", minimum=1)
        async with self._transaction() as conn:
            await self._locked(conn, agent_id)
            stmt = select(*model_columns(AgentVersion)).where(
                versions.c.agent_id == agent_id,
                versions.c.version_number == _number(version_number),
            )
            row = (await conn.execute(stmt)).first()
            if row is None:
                raise NotFoundError(f"agent {agent_id!r} has no version {version_number}")
            version = hydrate(AgentVersion, row)
            values = {k: getattr(version, k) for k in VERSIONED}
            values |= {"active_version": version_number, "updated_at": utcnow()}
            return await update_one(conn, Agent, agents.c.id == agent_id, values)

    async def _locked(self, conn: AsyncConnection, agent_id: str) -> Agent:
        """The agent, its row locked until the transaction ends (SQLite: the write lock)."""
        agent = await fetch_one(conn, Agent, agents.c.id == agent_id, lock=True)
        if agent is None:
            raise NotFoundError(f"agent {agent_id!r} does not exist")
        return agent

    async def _next_version(self, conn: AsyncConnection, agent_id: str) -> int:
        stmt = select(func.max(versions.c.version_number)).where(versions.c.agent_id == agent_id)
        return int(await conn.scalar(stmt) or 0) + 1


def _check_config(name: str, value: object) -> None:
    if name == "name":
        v.require_id(value, "name")
    elif not isinstance(value, str):
        raise ValidationError(f"{name} must be a string")
    else:
        v.optional_text(value, name)  # no NUL, no lone surrogates


def _agent_row(agent: object) -> dict[str, Any]:
    agent = v.require_instance(agent, Agent, "agent")
    v.require_id(agent.id, "agent.id")
    for name in VERSIONED:
        _check_config(name, getattr(agent, name))
    v.optional_id(agent.author_id, "agent.author_id")
    metadata = v.json_text(agent.metadata_, "agent.metadata")
    v.require_datetime(agent.created_at, "agent.created_at")
    v.require_datetime(agent.updated_at, "agent.updated_at")
    return {**row_values(agent), "metadata": metadata}  # bound as checked: serialised once


def _number(version_number: int) -> ColumnElement[int]:
    """A version number bound as a 64-bit integer: any number require_int accepts can be
    compared with the 32-bit column (and simply matches nothing past its range)."""
    return literal(version_number, BigInteger())


def _version_row(config: Mapping[str, Any], number: int, created_at: datetime) -> dict[str, Any]:
    return {
        "agent_id": config["id"],
        "version_number": number,
        **{k: config[k] for k in VERSIONED},
        "created_at": created_at,
    }
