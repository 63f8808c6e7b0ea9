"""The workflows domain's async store: one JSON snapshot per run, versioned.

Every persist is a single statement: an upsert that bumps ``version`` (unconditional), or a
conditional UPDATE/INSERT (compare-and-set with ``expected_version``), so that two writers of
one run can never both win.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, bindparam, delete, func, select, update

from composite_store import validation as v
from composite_store.dialects import upsert
from composite_store.domains.base import (
    DomainStore,
    hydrate,
    hydrate_values,
    model_columns,
    table_of,
)
from composite_store.domains.workflows.models import WorkflowRun
from composite_store.errors import ConflictError
from composite_store.pagination import Page, check_page, fetch_page
from composite_store.sqltypes import utcnow

runs = table_of(WorkflowRun)
# What a persist returns besides what the caller already holds (the snapshot is not re-read).
_RUN_FIELDS = (
    "workflow_name",
    "run_id",
    "snapshot",
    "status",
    "resource_id",
    "version",
    "created_at",
    "updated_at",
)
_PERSISTED = (runs.c.resource_id, runs.c.version, runs.c.created_at, runs.c.updated_at)


def _version_statement() -> Select[Any]:
    """The stored version of a run, to explain a failed compare-and-set."""
    return select(runs.c.version).where(
        runs.c.workflow_name == bindparam("workflow_name"), runs.c.run_id == bindparam("run_id")
    )


class WorkflowsStore(DomainStore):
    domain = "workflows"

    async def persist_snapshot(
        self,
        workflow_name: str,
        run_id: str,
        snapshot: Mapping[str, Any],
        *,
        resource_id: str | None = None,
        expected_version: int | None = None,
    ) -> WorkflowRun:
        """Store the run's snapshot; every persist bumps ``version`` (a new run gets 1).

        ``expected_version`` makes it a compare-and-set: ``0`` means "the run must not exist
        yet", ``n`` means "the stored version must still be n"; otherwise ``ConflictError``.
        """
        v.require_id(workflow_name, "workflow_name")
        v.require_id(run_id, "run_id")
        snapshot_text = v.json_text(snapshot, "snapshot")
        v.optional_id(resource_id, "resource_id")
        if expected_version is not None:
            v.require_int(expected_version, "expected_version", minimum=0)
        status = snapshot.get("status")
        status = status if isinstance(status, str) else None
        now = utcnow()
        document = dict(snapshot)
        row: dict[str, Any] = {
            "workflow_name": workflow_name,
            "run_id": run_id,
            "snapshot": snapshot_text,
            "resource_id": resource_id,
            "status": status,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        if expected_version is None:
            stmt = self._statement("persist", self._persist_statement)
        elif expected_version == 0:
            stmt = self._statement("persist_new", self._persist_new_statement)
        else:
            stmt = self._statement("persist_cas", self._persist_cas_statement)
            row = {f"b_{name}": value for name, value in row.items()}
            row["b_expected_version"] = expected_version
        # one statement (the version read only explains a conflict)
        async with self._connect() as conn:
            stored = await conn.rows(stmt, row)
            if not stored:
                key = {"workflow_name": workflow_name, "run_id": run_id}
                current = await conn.rows(self._statement("version", _version_statement), key)
                raise ConflictError(
                    f"run {workflow_name}/{run_id}: expected version {expected_version}, "
                    f"found {current[0][0] if current else 'no run'}"
                )
        resource, version, created_at, updated_at = stored[0]
        return hydrate_values(  # a new object without __init__'s attribute events
            WorkflowRun,
            _RUN_FIELDS,
            (workflow_name, run_id, document, status, resource, version, created_at, updated_at),
        )

    def _persist_statement(self) -> Any:
        """Upsert that bumps the version; a persist without resource_id keeps the run's."""
        return upsert(
            self.dialect,
            runs,
            key=["workflow_name", "run_id"],
            update=["snapshot", "status", "updated_at"],
            overrides={
                "version": lambda table, _: table.c.version + 1,
                "resource_id": lambda table, new: func.coalesce(
                    new.resource_id, table.c.resource_id
                ),
            },
        ).returning(*_PERSISTED)

    def _persist_new_statement(self) -> Any:
        """Insert only if the run does not exist (compare-and-set with version 0)."""
        return upsert(self.dialect, runs, key=["workflow_name", "run_id"]).returning(*_PERSISTED)

    def _persist_cas_statement(self) -> Any:
        """Update only if the stored version is still the expected one."""
        return (
            update(runs)
            .where(
                runs.c.workflow_name == bindparam("b_workflow_name"),
                runs.c.run_id == bindparam("b_run_id"),
                # 64-bit: an expected version past the 32-bit column's range is a conflict
                runs.c.version == bindparam("b_expected_version", type_=BigInteger()),
            )
            .values(
                snapshot=bindparam("b_snapshot", type_=runs.c.snapshot.type),
                status=bindparam("b_status", type_=runs.c.status.type),
                updated_at=bindparam("b_updated_at", type_=runs.c.updated_at.type),
                resource_id=func.coalesce(
                    bindparam("b_resource_id", type_=runs.c.resource_id.type), runs.c.resource_id
                ),
                version=runs.c.version + 1,
            )
            .returning(*_PERSISTED)
        )

    async def load_snapshot(self, workflow_name: str, run_id: str) -> dict[str, Any] | None:
        v.require_id(workflow_name, "workflow_name")
        v.require_id(run_id, "run_id")
        stmt = self._statement(
            "load_snapshot",
            lambda: select(runs.c.snapshot).where(
                runs.c.workflow_name == bindparam("workflow_name"),
                runs.c.run_id == bindparam("run_id"),
            ),
        )
        params = {"workflow_name": workflow_name, "run_id": run_id}
        async with self._connect() as conn:
            rows = await conn.rows(stmt, params)
        found: dict[str, Any] | None = rows[0][0] if rows else None
        return found

    async def get_run(self, run_id: str, workflow_name: str | None = None) -> WorkflowRun | None:
        """A run by id; without ``workflow_name``, the newest run with that id."""
        v.require_id(run_id, "run_id")
        v.optional_id(workflow_name, "workflow_name")
        stmt = select(*model_columns(WorkflowRun)).where(runs.c.run_id == run_id)
        if workflow_name is not None:
            stmt = stmt.where(runs.c.workflow_name == workflow_name)
        stmt = stmt.order_by(runs.c.created_at.desc()).limit(1)
        async with self._autocommit() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else hydrate(WorkflowRun, row)

    async def list_runs(
        self,
        *,
        workflow_name: str | None = None,
        resource_id: str | None = None,
        status: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        page: int = 0,
        per_page: int | None = 100,
    ) -> Page[WorkflowRun]:
        """Runs, newest first (by ``created_at``), filtered by any combination of arguments."""
        v.optional_id(workflow_name, "workflow_name")
        v.optional_id(resource_id, "resource_id")
        v.optional_id(status, "status")
        first, last = v.check_range(start, end)
        check_page(page, per_page)
        where: list[ColumnElement[bool]] = []
        for column, value in (
            (runs.c.workflow_name, workflow_name),
            (runs.c.resource_id, resource_id),
            (runs.c.status, status),
        ):
            if value is not None:
                where.append(column == value)
        if first is not None:
            where.append(runs.c.created_at >= first)
        if last is not None:
            where.append(runs.c.created_at <= last)
        stmt = (
            select(*model_columns(WorkflowRun))
            .where(*where)
            .order_by(runs.c.created_at.desc(), runs.c.run_id.desc())
        )
        async with self._autocommit() as conn:
            return await fetch_page(conn, WorkflowRun, stmt, page, per_page)

    async def delete_run(self, workflow_name: str, run_id: str) -> None:
        """Delete a run; deleting a missing run does nothing."""
        v.require_id(workflow_name, "workflow_name")
        v.require_id(run_id, "run_id")
        # one statement: atomic by itself
        async with self._autocommit() as conn:
            await conn.execute(
                delete(runs).where(runs.c.workflow_name == workflow_name, runs.c.run_id == run_id)
            )
