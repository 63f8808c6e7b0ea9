"""Conformance tests for ``store.workflows`` (SPEC §6 "WorkflowsStore", §7 errors).

Every test runs on each relational backend through the ``store`` fixture (a fresh database).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text

from composite_store.domains.workflows.models import WorkflowRun
from composite_store.errors import ConflictError, ValidationError
from composite_store.pagination import Page

# -- helpers ---------------------------------------------------------------------------------


def row_of(run: WorkflowRun) -> tuple[Any, ...]:
    """Every stored field of a run, for exact before/after comparisons."""
    return (
        run.workflow_name,
        run.run_id,
        run.snapshot,
        run.status,
        run.resource_id,
        run.version,
        run.created_at,
        run.updated_at,
    )


async def everything(store) -> list[tuple[Any, ...]]:
    """The whole table, in a stable order."""
    page = await store.workflows.list_runs(per_page=None)
    return sorted((row_of(r) for r in page.items), key=lambda r: (r[0], r[1]))


def ids(page: Page[WorkflowRun]) -> list[str]:
    return [r.run_id for r in page.items]


def assert_utc(value: datetime) -> None:
    assert isinstance(value, datetime)
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)


async def status_column(store, workflow_name: str, run_id: str) -> Any:
    """The raw ``status`` column, read with SQL (not through the store)."""
    async with store.workflows.engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT status FROM workflow_runs WHERE workflow_name = :w AND run_id = :r"),
                {"w": workflow_name, "r": run_id},
            )
        ).scalar_one()


# -- persist: versions and timestamps ---------------------------------------------------------


async def test_new_run_gets_version_1_and_each_persist_adds_1(store):
    """A new run is version 1; every later persist bumps it by exactly one."""
    wf = store.workflows
    versions = []
    for step in range(5):
        run = await wf.persist_snapshot("wf", "r1", {"step": step})
        versions.append(run.version)
        assert (await wf.get_run("r1", "wf")).version == step + 1
    assert versions == [1, 2, 3, 4, 5]
    assert await wf.load_snapshot("wf", "r1") == {"step": 4}


async def test_persist_returns_the_stored_run(store):
    """The returned run carries exactly what get_run reads back afterwards."""
    wf = store.workflows
    snapshot = {"status": "running", "context": {"a": [1, 2, {"b": None}]}}
    run = await wf.persist_snapshot("wf", "r1", snapshot, resource_id="user-1")
    assert isinstance(run, WorkflowRun)
    assert (run.workflow_name, run.run_id) == ("wf", "r1")
    assert run.snapshot == snapshot
    assert run.status == "running"
    assert run.resource_id == "user-1"
    assert run.version == 1
    assert_utc(run.created_at)
    assert_utc(run.updated_at)
    assert run.created_at == run.updated_at
    assert row_of(await wf.get_run("r1", "wf")) == row_of(run)


async def test_timestamps_are_aware_utc_and_taken_at_persist_time(store):
    before = datetime.now(UTC)
    run = await store.workflows.persist_snapshot("wf", "r1", {})
    after = datetime.now(UTC)
    assert before <= run.created_at <= after
    stored = await store.workflows.get_run("r1")
    assert_utc(stored.created_at)
    assert_utc(stored.updated_at)


async def test_upsert_keeps_created_at_and_moves_updated_at(store):
    wf = store.workflows
    first = await wf.persist_snapshot("wf", "r1", {"n": 1})
    second = await wf.persist_snapshot("wf", "r1", {"n": 2})
    third = await wf.persist_snapshot("wf", "r1", {"n": 3})
    assert second.created_at == first.created_at == third.created_at
    assert first.updated_at < second.updated_at < third.updated_at
    stored = await wf.get_run("r1", "wf")
    assert stored.created_at == first.created_at
    assert stored.updated_at == third.updated_at
    assert stored.snapshot == {"n": 3}
    # still one row, not three
    assert (await wf.list_runs()).total == 1


async def test_runs_are_keyed_by_workflow_name_and_run_id(store):
    """The same run_id under two workflow names is two independent runs."""
    wf = store.workflows
    await wf.persist_snapshot("wf_a", "r1", {"who": "a"})
    await wf.persist_snapshot("wf_a", "r1", {"who": "a2"})
    b = await wf.persist_snapshot("wf_b", "r1", {"who": "b"})
    assert b.version == 1
    assert await wf.load_snapshot("wf_a", "r1") == {"who": "a2"}
    assert await wf.load_snapshot("wf_b", "r1") == {"who": "b"}
    assert (await wf.get_run("r1", "wf_a")).version == 2
    assert (await wf.get_run("r1", "wf_b")).version == 1


async def test_persist_does_not_keep_a_reference_to_the_callers_dict(store):
    """Mutating the caller's dict after a persist changes nothing stored."""
    snapshot = {"status": "running", "n": 1}
    await store.workflows.persist_snapshot("wf", "r1", snapshot)
    snapshot["n"] = 2
    snapshot["status"] = "done"
    assert await store.workflows.load_snapshot("wf", "r1") == {"status": "running", "n": 1}


# -- persist: resource_id ---------------------------------------------------------------------


async def test_persist_without_resource_id_keeps_the_runs_resource_id(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {"n": 1}, resource_id="user-1")
    kept = await wf.persist_snapshot("wf", "r1", {"n": 2})
    assert kept.resource_id == "user-1"
    assert (await wf.get_run("r1", "wf")).resource_id == "user-1"


async def test_persist_with_resource_id_replaces_it(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {}, resource_id="user-1")
    moved = await wf.persist_snapshot("wf", "r1", {}, resource_id="user-2")
    assert moved.resource_id == "user-2"
    assert (await wf.get_run("r1", "wf")).resource_id == "user-2"
    assert ids(await wf.list_runs(resource_id="user-1")) == []
    assert ids(await wf.list_runs(resource_id="user-2")) == ["r1"]


async def test_run_without_resource_id_has_none(store):
    run = await store.workflows.persist_snapshot("wf", "r1", {})
    assert run.resource_id is None
    assert (await store.workflows.get_run("r1")).resource_id is None


async def test_cas_persist_keeps_or_replaces_resource_id(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {}, resource_id="user-1", expected_version=0)
    kept = await wf.persist_snapshot("wf", "r1", {"n": 1}, expected_version=1)
    assert kept.resource_id == "user-1"
    moved = await wf.persist_snapshot("wf", "r1", {"n": 2}, resource_id="u2", expected_version=2)
    assert moved.resource_id == "u2"
    assert (await wf.get_run("r1", "wf")).resource_id == "u2"


# -- persist: status in its own column --------------------------------------------------------


async def test_status_is_read_from_the_snapshot_into_its_own_column(store):
    wf = store.workflows
    run = await wf.persist_snapshot("wf", "r1", {"status": "running", "x": 1})
    assert run.status == "running"
    assert await status_column(store, "wf", "r1") == "running"
    # the snapshot itself is stored whole, "status" key included
    assert await wf.load_snapshot("wf", "r1") == {"status": "running", "x": 1}


async def test_status_follows_the_latest_snapshot(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {"status": "running"})
    done = await wf.persist_snapshot("wf", "r1", {"status": "success"})
    assert done.status == "success"
    assert await status_column(store, "wf", "r1") == "success"
    assert ids(await wf.list_runs(status="running")) == []
    assert ids(await wf.list_runs(status="success")) == ["r1"]
    # a later snapshot without "status" clears it
    cleared = await wf.persist_snapshot("wf", "r1", {"other": 1})
    assert cleared.status is None
    assert await status_column(store, "wf", "r1") is None
    assert ids(await wf.list_runs(status="success")) == []


async def test_status_follows_cas_persists_too(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {"status": "pending"}, expected_version=0)
    assert await status_column(store, "wf", "r1") == "pending"
    await wf.persist_snapshot("wf", "r1", {"status": "failed"}, expected_version=1)
    assert await status_column(store, "wf", "r1") == "failed"
    assert (await wf.get_run("r1")).status == "failed"


@pytest.mark.parametrize("value", [None, 3, 1.5, True, ["running"], {"state": "running"}])
async def test_non_string_status_is_stored_as_none(store, value):
    """A "status" that is missing or not a string leaves the column NULL; the snapshot is kept."""
    wf = store.workflows
    run = await wf.persist_snapshot("wf", "r1", {"status": value})
    assert run.status is None
    assert await status_column(store, "wf", "r1") is None
    assert (await wf.get_run("r1")).status is None
    assert await wf.load_snapshot("wf", "r1") == {"status": value}


async def test_missing_status_is_none(store):
    run = await store.workflows.persist_snapshot("wf", "r1", {"step": 1})
    assert run.status is None
    assert await status_column(store, "wf", "r1") is None


# -- compare-and-set --------------------------------------------------------------------------


async def test_cas_with_0_creates_a_new_run(store):
    wf = store.workflows
    run = await wf.persist_snapshot("wf", "r1", {"n": 1}, expected_version=0)
    assert run.version == 1
    assert await wf.load_snapshot("wf", "r1") == {"n": 1}


async def test_cas_with_0_on_an_existing_run_conflicts_and_changes_nothing(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {"status": "a", "n": 1}, resource_id="u1")
    before = await everything(store)
    with pytest.raises(ConflictError):
        await wf.persist_snapshot(
            "wf", "r1", {"status": "b", "n": 2}, resource_id="u2", expected_version=0
        )
    assert await everything(store) == before


async def test_cas_with_the_current_version_succeeds(store):
    wf = store.workflows
    first = await wf.persist_snapshot("wf", "r1", {"n": 1})
    second = await wf.persist_snapshot("wf", "r1", {"n": 2}, expected_version=1)
    assert second.version == 2
    third = await wf.persist_snapshot("wf", "r1", {"n": 3}, expected_version=2)
    assert third.version == 3
    assert third.created_at == first.created_at
    assert third.updated_at > second.updated_at > first.updated_at
    stored = await wf.get_run("r1", "wf")
    assert (stored.version, stored.snapshot) == (3, {"n": 3})


@pytest.mark.parametrize("expected", [1, 2, 4, 100, 2**31, 2**62])
async def test_cas_with_a_stale_or_future_version_conflicts_and_changes_nothing(store, expected):
    wf = store.workflows
    for n in range(3):  # version 3
        await wf.persist_snapshot("wf", "r1", {"status": "running", "n": n}, resource_id="u1")
    before = await everything(store)
    with pytest.raises(ConflictError):
        await wf.persist_snapshot(
            "wf", "r1", {"status": "done", "n": 99}, resource_id="u2", expected_version=expected
        )
    assert await everything(store) == before
    stored = await wf.get_run("r1", "wf")
    assert (stored.version, stored.snapshot, stored.status) == (
        3,
        {"status": "running", "n": 2},
        "running",
    )


async def test_cas_with_a_version_on_a_missing_run_conflicts_and_creates_nothing(store):
    wf = store.workflows
    with pytest.raises(ConflictError):
        await wf.persist_snapshot("wf", "ghost", {"n": 1}, expected_version=1)
    assert await wf.get_run("ghost") is None
    assert await wf.load_snapshot("wf", "ghost") is None
    assert (await wf.list_runs()).total == 0


async def test_unconditional_persist_after_cas_keeps_counting(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {}, expected_version=0)
    await wf.persist_snapshot("wf", "r1", {}, expected_version=1)
    assert (await wf.persist_snapshot("wf", "r1", {})).version == 3
    assert (await wf.persist_snapshot("wf", "r1", {}, expected_version=3)).version == 4


async def test_conflict_error_is_a_composite_store_error(store):
    from composite_store.errors import CompositeStoreError

    await store.workflows.persist_snapshot("wf", "r1", {})
    with pytest.raises(CompositeStoreError) as info:
        await store.workflows.persist_snapshot("wf", "r1", {}, expected_version=5)
    assert type(info.value) is ConflictError


# -- concurrency ------------------------------------------------------------------------------

ROUNDS = 8  # a race that is lost once in a while must still be caught


def split(results: list[Any]) -> tuple[list[WorkflowRun], list[BaseException]]:
    wins = [r for r in results if isinstance(r, WorkflowRun)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) + len(errors) == len(results)
    return wins, errors


@pytest.mark.parametrize("writers", [2, 10])
async def test_concurrent_cas_with_same_expected_version_has_exactly_one_winner(store, writers):
    """Round after round, writers race with the same expected_version: one wins each round."""
    wf = store.workflows
    for n in range(3):  # version 3
        await wf.persist_snapshot("wf", "r1", {"writer": None, "n": n})
    for expected in range(3, 3 + ROUNDS):
        results = await asyncio.gather(
            *(
                wf.persist_snapshot(
                    "wf", "r1", {"round": expected, "writer": i}, expected_version=expected
                )
                for i in range(writers)
            ),
            return_exceptions=True,
        )
        wins, errors = split(results)
        assert len(wins) == 1, (expected, results)
        assert all(type(e) is ConflictError for e in errors), errors
        assert len(errors) == writers - 1
        winner = wins[0]
        assert winner.version == expected + 1
        stored = await wf.get_run("r1", "wf")
        assert stored.version == expected + 1
        assert stored.snapshot == winner.snapshot
        assert stored.snapshot["round"] == expected


@pytest.mark.parametrize("writers", [2, 10])
async def test_concurrent_creates_with_expected_version_0_have_exactly_one_winner(store, writers):
    wf = store.workflows
    results = await asyncio.gather(
        *(
            wf.persist_snapshot("wf", "new", {"writer": i}, expected_version=0)
            for i in range(writers)
        ),
        return_exceptions=True,
    )
    wins, errors = split(results)
    assert len(wins) == 1, results
    assert len(errors) == writers - 1
    assert all(type(e) is ConflictError for e in errors), errors
    stored = await wf.get_run("new", "wf")
    assert stored.version == 1
    assert stored.snapshot == wins[0].snapshot


async def test_concurrent_unconditional_persists_lose_no_update(store):
    """20 concurrent persists of one new run: versions 1..20, each handed out once."""
    wf = store.workflows
    results = await asyncio.gather(
        *(wf.persist_snapshot("wf", "busy", {"writer": i}) for i in range(20)),
        return_exceptions=True,
    )
    wins, errors = split(results)
    assert errors == []
    assert sorted(r.version for r in wins) == list(range(1, 21))
    assert len({r.created_at for r in wins}) == 1  # one row, created once
    stored = await wf.get_run("busy", "wf")
    assert stored.version == 20
    last = next(r for r in wins if r.version == 20)
    assert stored.snapshot == last.snapshot
    assert (await wf.list_runs()).total == 1


# -- load_snapshot / get_run / delete_run -----------------------------------------------------


async def test_load_snapshot_of_a_missing_run_is_none(store):
    wf = store.workflows
    assert await wf.load_snapshot("wf", "nope") is None
    await wf.persist_snapshot("wf", "r1", {"a": 1})
    assert await wf.load_snapshot("other_wf", "r1") is None
    assert await wf.load_snapshot("wf", "r2") is None


async def test_load_snapshot_returns_a_dict(store):
    await store.workflows.persist_snapshot("wf", "r1", {"a": {"b": [1, "x"]}})
    loaded = await store.workflows.load_snapshot("wf", "r1")
    assert type(loaded) is dict
    assert loaded == {"a": {"b": [1, "x"]}}


async def test_empty_snapshot_round_trips(store):
    await store.workflows.persist_snapshot("wf", "r1", {})
    assert await store.workflows.load_snapshot("wf", "r1") == {}


async def test_get_run_missing_is_none(store):
    wf = store.workflows
    assert await wf.get_run("nope") is None
    await wf.persist_snapshot("wf", "r1", {})
    assert await wf.get_run("r1", "other_wf") is None
    assert await wf.get_run("r2", "wf") is None


async def test_get_run_without_workflow_name_returns_the_newest_by_created_at(store):
    wf = store.workflows
    older = await wf.persist_snapshot("wf_old", "shared", {"who": "old"})
    newer = await wf.persist_snapshot("wf_new", "shared", {"who": "new"})
    assert newer.created_at > older.created_at
    assert (await wf.get_run("shared")).workflow_name == "wf_new"
    # touching the older run moves its updated_at, not its created_at
    await wf.persist_snapshot("wf_old", "shared", {"who": "old2"})
    found = await wf.get_run("shared")
    assert (found.workflow_name, found.snapshot) == ("wf_new", {"who": "new"})
    # with a workflow_name, exactly that run
    picked = await wf.get_run("shared", "wf_old")
    assert (picked.workflow_name, picked.snapshot, picked.version) == ("wf_old", {"who": "old2"}, 2)


async def test_delete_run_removes_only_that_run(store):
    wf = store.workflows
    await wf.persist_snapshot("wf_a", "r1", {"a": 1})
    await wf.persist_snapshot("wf_b", "r1", {"b": 1})
    await wf.persist_snapshot("wf_a", "r2", {"a": 2})
    await wf.delete_run("wf_a", "r1")
    assert await wf.load_snapshot("wf_a", "r1") is None
    assert await wf.get_run("r1", "wf_a") is None
    assert await wf.load_snapshot("wf_b", "r1") == {"b": 1}
    assert await wf.load_snapshot("wf_a", "r2") == {"a": 2}
    assert sorted((r.workflow_name, r.run_id) for r in (await wf.list_runs()).items) == [
        ("wf_a", "r2"),
        ("wf_b", "r1"),
    ]


async def test_delete_missing_run_is_a_no_op(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {"a": 1})
    before = await everything(store)
    assert await wf.delete_run("wf", "nope") is None
    assert await wf.delete_run("other", "r1") is None
    assert await everything(store) == before
    await wf.delete_run("wf", "r1")
    await wf.delete_run("wf", "r1")  # twice: still fine
    assert await everything(store) == []


async def test_a_deleted_run_starts_again_at_version_1(store):
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {})
    await wf.persist_snapshot("wf", "r1", {})
    await wf.delete_run("wf", "r1")
    with pytest.raises(ConflictError):
        await wf.persist_snapshot("wf", "r1", {}, expected_version=2)
    again = await wf.persist_snapshot("wf", "r1", {"fresh": True}, expected_version=0)
    assert again.version == 1


# -- list_runs: filters -----------------------------------------------------------------------


async def seed_for_filters(store) -> None:
    """Five runs, persisted in order r1..r5 (so newest first is r5..r1)."""
    wf = store.workflows
    await wf.persist_snapshot("wf_a", "r1", {"status": "running"}, resource_id="u1")
    await wf.persist_snapshot("wf_a", "r2", {"status": "done"}, resource_id="u2")
    await wf.persist_snapshot("wf_b", "r3", {"status": "running"}, resource_id="u1")
    await wf.persist_snapshot("wf_b", "r4", {"step": 1})
    await wf.persist_snapshot("wf_a", "r5", {"status": "running"}, resource_id="u1")


async def test_list_runs_without_filters_is_newest_first(store):
    await seed_for_filters(store)
    page = await store.workflows.list_runs()
    assert ids(page) == ["r5", "r4", "r3", "r2", "r1"]
    assert (page.total, page.page, page.per_page, page.has_more) == (5, 0, 100, False)
    created = [r.created_at for r in page.items]
    assert created == sorted(created, reverse=True)
    for run in page.items:
        assert_utc(run.created_at)
        assert_utc(run.updated_at)


async def test_list_runs_returns_full_runs(store):
    wf = store.workflows
    run = await wf.persist_snapshot("wf", "r1", {"status": "ok", "k": [1]}, resource_id="u")
    await wf.persist_snapshot("wf", "r1", {"status": "ok", "k": [2]})
    (listed,) = (await wf.list_runs()).items
    stored = await wf.get_run("r1", "wf")
    assert row_of(listed) == row_of(stored)
    assert (listed.snapshot, listed.status, listed.resource_id, listed.version) == (
        {"status": "ok", "k": [2]},
        "ok",
        "u",
        2,
    )
    assert listed.created_at == run.created_at


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"workflow_name": "wf_a"}, ["r5", "r2", "r1"]),
        ({"workflow_name": "wf_b"}, ["r4", "r3"]),
        ({"resource_id": "u1"}, ["r5", "r3", "r1"]),
        ({"resource_id": "u2"}, ["r2"]),
        ({"status": "running"}, ["r5", "r3", "r1"]),
        ({"status": "done"}, ["r2"]),
        ({"workflow_name": "wf_a", "status": "running"}, ["r5", "r1"]),
        ({"workflow_name": "wf_a", "resource_id": "u1"}, ["r5", "r1"]),
        ({"resource_id": "u1", "status": "running"}, ["r5", "r3", "r1"]),
        ({"workflow_name": "wf_b", "resource_id": "u1", "status": "running"}, ["r3"]),
        ({"workflow_name": "wf_a", "resource_id": "u1", "status": "done"}, []),
        ({"workflow_name": "wf_b", "status": "done"}, []),
        ({"workflow_name": "nope"}, []),
        ({"resource_id": "nope"}, []),
        ({"status": "nope"}, []),
    ],
)
async def test_list_runs_filters_combine_with_and(store, filters, expected):
    await seed_for_filters(store)
    page = await store.workflows.list_runs(**filters)
    assert ids(page) == expected
    assert page.total == len(expected)
    assert page.has_more is False
    for run in page.items:
        for key, value in filters.items():
            assert getattr(run, key) == value


async def test_list_runs_status_filter_sees_status_changes(store):
    await seed_for_filters(store)
    wf = store.workflows
    await wf.persist_snapshot("wf_a", "r1", {"status": "done"})
    assert ids(await wf.list_runs(status="done")) == ["r2", "r1"]
    assert ids(await wf.list_runs(status="running")) == ["r5", "r3"]


async def created_sequence(store, count: int, workflow_name: str = "wf") -> list[WorkflowRun]:
    """``count`` runs persisted one after another: strictly increasing created_at."""
    runs = [
        await store.workflows.persist_snapshot(workflow_name, f"t{i}", {"i": i})
        for i in range(count)
    ]
    assert all(a.created_at < b.created_at for a, b in itertools.pairwise(runs))
    return runs


async def test_list_runs_date_range_is_inclusive_on_created_at(store):
    wf = store.workflows
    runs = await created_sequence(store, 5)
    t = [r.created_at for r in runs]
    assert ids(await wf.list_runs(start=t[1], end=t[3])) == ["t3", "t2", "t1"]
    assert ids(await wf.list_runs(start=t[3])) == ["t4", "t3"]
    assert ids(await wf.list_runs(end=t[1])) == ["t1", "t0"]
    assert ids(await wf.list_runs(start=t[2], end=t[2])) == ["t2"]
    assert ids(await wf.list_runs(start=t[4] + timedelta(microseconds=1))) == []
    assert ids(await wf.list_runs(end=t[0] - timedelta(microseconds=1))) == []
    page = await wf.list_runs(start=t[1], end=t[3])
    assert page.total == 3


async def test_list_runs_date_range_accepts_any_aware_timezone(store):
    wf = store.workflows
    runs = await created_sequence(store, 4)
    plus5 = timezone(timedelta(hours=5))
    minus8 = timezone(timedelta(hours=-8))
    start = runs[1].created_at.astimezone(plus5)
    end = runs[2].created_at.astimezone(minus8)
    assert ids(await wf.list_runs(start=start, end=end)) == ["t2", "t1"]


async def test_list_runs_date_range_ignores_updated_at(store):
    """Re-persisting an old run moves updated_at, not the run into a later range."""
    wf = store.workflows
    runs = await created_sequence(store, 3)
    touched = await wf.persist_snapshot("wf", "t0", {"i": "again"})
    assert touched.updated_at > runs[2].created_at
    assert ids(await wf.list_runs(start=runs[1].created_at)) == ["t2", "t1"]
    # order stays by created_at, too
    assert ids(await wf.list_runs()) == ["t2", "t1", "t0"]


async def test_list_runs_date_range_combines_with_other_filters(store):
    wf = store.workflows
    a = await created_sequence(store, 3, "wf_a")
    await wf.persist_snapshot("wf_b", "b0", {"status": "running"})
    await wf.persist_snapshot("wf_a", "late", {"status": "running"})
    page = await wf.list_runs(workflow_name="wf_a", start=a[1].created_at)
    assert ids(page) == ["late", "t2", "t1"]
    assert page.total == 3
    page = await wf.list_runs(status="running", start=a[1].created_at)
    assert ids(page) == ["late", "b0"]


# -- list_runs: pagination --------------------------------------------------------------------


async def test_list_runs_pages_of_three_over_seven_runs(store):
    wf = store.workflows
    runs = await created_sequence(store, 7, "paged")
    await wf.persist_snapshot("noise", "n1", {})
    await wf.persist_snapshot("noise", "n2", {})
    newest_first = [r.run_id for r in reversed(runs)]

    pages = [await wf.list_runs(workflow_name="paged", page=p, per_page=3) for p in range(3)]
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert [p.has_more for p in pages] == [True, True, False]
    assert [p.total for p in pages] == [7, 7, 7]
    assert [p.page for p in pages] == [0, 1, 2]
    assert [p.per_page for p in pages] == [3, 3, 3]
    assert [rid for p in pages for rid in ids(p)] == newest_first

    beyond = await wf.list_runs(workflow_name="paged", page=3, per_page=3)
    assert (beyond.items, beyond.total, beyond.has_more) == ([], 7, False)


async def test_list_runs_pagination_without_filters_counts_everything(store):
    wf = store.workflows
    await created_sequence(store, 7)
    await wf.persist_snapshot("other", "x", {})
    first = await wf.list_runs(page=0, per_page=3)
    last = await wf.list_runs(page=2, per_page=3)
    assert (first.total, first.has_more, len(first)) == (8, True, 3)
    assert (last.total, last.has_more, len(last)) == (8, False, 2)
    exact = await wf.list_runs(page=1, per_page=4)
    assert (exact.total, exact.has_more, len(exact)) == (8, False, 4)


async def test_list_runs_per_page_none_returns_everything(store):
    wf = store.workflows
    runs = await created_sequence(store, 7)
    page = await wf.list_runs(per_page=None)
    assert ids(page) == [r.run_id for r in reversed(runs)]
    assert (page.total, page.page, page.per_page, page.has_more) == (7, 0, None, False)


async def test_list_runs_per_page_0_returns_no_items_but_the_real_total(store):
    wf = store.workflows
    await created_sequence(store, 7)
    page = await wf.list_runs(per_page=0)
    assert page.items == []
    assert (page.total, page.page, page.per_page, page.has_more) == (7, 0, 0, True)
    filtered = await wf.list_runs(per_page=0, workflow_name="nope")
    assert (filtered.items, filtered.total, filtered.has_more) == ([], 0, False)


async def test_list_runs_on_an_empty_store(store):
    page = await store.workflows.list_runs()
    assert (page.items, page.total, page.has_more) == ([], 0, False)
    page = await store.workflows.list_runs(page=5, per_page=10)
    assert (page.items, page.total, page.has_more) == ([], 0, False)


# -- bad input: ValidationError before anything is written ------------------------------------


class Unserialisable:
    pass


BAD_IDS = ["", " ", "   ", "\t\n", None, 42, "a\x00b", "x" * 1025]

BAD_SNAPSHOTS = [
    [],
    [{"status": "running"}],
    "a string",
    '{"status": "running"}',
    None,
    42,
    {"x": float("nan")},
    {"x": float("inf")},
    {"deep": {"list": [1, float("-inf")]}},
    {"x": {1, 2}},
    {"x": Unserialisable()},
    {"x": b"bytes"},
    {"x": datetime.now(UTC)},
    {"x": "nul \x00 char"},
]

BAD_VERSIONS = [-1, -100, 1.0, "1", True]


async def seeded(store) -> list[tuple[Any, ...]]:
    """Two runs to check that bad input leaves them alone; returns the stored state."""
    wf = store.workflows
    await wf.persist_snapshot("wf", "r1", {"status": "running", "n": 1}, resource_id="u1")
    await wf.persist_snapshot("wf", "r1", {"status": "running", "n": 2})
    await wf.persist_snapshot("wf", "r2", {"status": "done"})
    return await everything(store)


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_persist_rejects_bad_workflow_name(store, bad):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.persist_snapshot(bad, "r1", {"status": "x"})
    with pytest.raises(ValidationError):
        await store.workflows.persist_snapshot(bad, "new", {"status": "x"}, expected_version=0)
    assert await everything(store) == before


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_persist_rejects_bad_run_id(store, bad):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.persist_snapshot("wf", bad, {"status": "x"})
    with pytest.raises(ValidationError):
        await store.workflows.persist_snapshot("wf", bad, {"status": "x"}, expected_version=2)
    assert await everything(store) == before


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if b is not None])
async def test_persist_rejects_bad_resource_id(store, bad):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.persist_snapshot("wf", "r1", {"status": "x"}, resource_id=bad)
    with pytest.raises(ValidationError):
        await store.workflows.persist_snapshot(
            "wf", "r1", {"status": "x"}, resource_id=bad, expected_version=2
        )
    with pytest.raises(ValidationError):
        await store.workflows.persist_snapshot("wf", "new", {}, resource_id=bad)
    assert await everything(store) == before
    assert await store.workflows.get_run("new") is None


@pytest.mark.parametrize("bad", BAD_SNAPSHOTS, ids=repr)
async def test_persist_rejects_bad_snapshot(store, bad):
    """Non-dicts and values JSON cannot hold: rejected, on an existing and on a new run."""
    before = await seeded(store)
    wf = store.workflows
    with pytest.raises(ValidationError):
        await wf.persist_snapshot("wf", "r1", bad)
    with pytest.raises(ValidationError):
        await wf.persist_snapshot("wf", "r1", bad, expected_version=2)
    with pytest.raises(ValidationError):
        await wf.persist_snapshot("wf", "new", bad)
    with pytest.raises(ValidationError):
        await wf.persist_snapshot("wf", "new", bad, expected_version=0)
    assert await everything(store) == before
    assert await wf.get_run("new") is None


@pytest.mark.parametrize("bad", BAD_VERSIONS, ids=repr)
async def test_persist_rejects_bad_expected_version(store, bad):
    before = await seeded(store)
    wf = store.workflows
    with pytest.raises(ValidationError):
        await wf.persist_snapshot("wf", "r1", {"status": "x"}, expected_version=bad)
    with pytest.raises(ValidationError):
        await wf.persist_snapshot("wf", "new", {"status": "x"}, expected_version=bad)
    assert await everything(store) == before
    assert await wf.get_run("new") is None


async def test_validation_comes_before_the_version_check(store):
    """A bad snapshot with a stale expected_version is a ValidationError, not a conflict."""
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.persist_snapshot("wf", "r1", ["x"], expected_version=99)
    assert await everything(store) == before


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_load_snapshot_rejects_bad_ids(store, bad):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.load_snapshot(bad, "r1")
    with pytest.raises(ValidationError):
        await store.workflows.load_snapshot("wf", bad)
    assert await everything(store) == before


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_get_run_rejects_bad_ids(store, bad):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.get_run(bad)
    with pytest.raises(ValidationError):
        await store.workflows.get_run(bad, "wf")
    if bad is not None:  # workflow_name=None is allowed: "newest run with that id"
        with pytest.raises(ValidationError):
            await store.workflows.get_run("r1", bad)
    assert await everything(store) == before


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_delete_run_rejects_bad_ids_and_deletes_nothing(store, bad):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.delete_run(bad, "r1")
    with pytest.raises(ValidationError):
        await store.workflows.delete_run("wf", bad)
    assert await everything(store) == before


@pytest.mark.parametrize("bad", [b for b in BAD_IDS if b is not None])
@pytest.mark.parametrize("field", ["workflow_name", "resource_id", "status"])
async def test_list_runs_rejects_bad_filter_ids(store, field, bad):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.list_runs(**{field: bad})
    assert await everything(store) == before


@pytest.mark.parametrize(
    "paging",
    [
        {"page": -1},
        {"page": -5, "per_page": 10},
        {"per_page": -1},
        {"page": 0, "per_page": -3},
        {"page": -1, "per_page": -1},
        {"page": "0"},
        {"page": 1.0},
        {"page": None},
        {"per_page": "10"},
        {"per_page": 2.5},
        {"page": True},
        {"per_page": False},
    ],
    ids=repr,
)
async def test_list_runs_rejects_bad_paging(store, paging):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.list_runs(**paging)
    assert await everything(store) == before


@pytest.mark.parametrize(
    "window",
    [
        {"start": datetime(2024, 1, 1)},  # naive
        {"end": datetime(2024, 1, 1)},  # naive
        {"start": "2024-01-01T00:00:00+00:00"},
        {"end": 1700000000},
        {"start": datetime(2024, 1, 2, tzinfo=UTC), "end": datetime(2024, 1, 1, tzinfo=UTC)},
    ],
    ids=repr,
)
async def test_list_runs_rejects_bad_date_range(store, window):
    before = await seeded(store)
    with pytest.raises(ValidationError):
        await store.workflows.list_runs(**window)
    assert await everything(store) == before


async def test_validation_error_is_a_value_error(store):
    """SPEC §7: ValidationError is a CompositeStoreError (and a ValueError)."""
    from composite_store.errors import CompositeStoreError

    with pytest.raises(CompositeStoreError):
        await store.workflows.persist_snapshot("", "r1", {})
    with pytest.raises(ValueError):
        await store.workflows.persist_snapshot("wf", "r1", [])


# -- snapshot contents ------------------------------------------------------------------------


def big_unicode_snapshot() -> dict[str, Any]:
    texts = [
        "héllo wörld",
        "日本語のテキスト",
        "emoji 🚀🔥👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
        "RTL: שלום עולם / مرحبا بالعالم",
        "combining: e\u0301 a\u0308 n\u0303",
        "quotes \" and \\ backslash and ' apostrophe",
        "control: tab\tnewline\ncr\r form\x0c bell\x07",
        "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠜎𠜱",
        "zero-width \u200b joiner \u200d bom \ufeff",
        "</script><!-- -->&amp;",
    ]
    steps = {
        f"step-{i:03d}-{texts[i % len(texts)][:8]}": {
            "status": ["success", "failed", "running"][i % 3],
            "output": texts[i % len(texts)] * 2,
            "attempt": i,
            "ratio": i / 8,
            "ok": i % 2 == 0,
            "error": None,
            "tags": [texts[(i + 1) % len(texts)], i, -i, [], {}],
        }
        for i in range(60)
    }
    return {
        "status": "running",
        "värde": "ünïcödé key",
        "🔑": "emoji key",
        "nested": {"a": {"b": {"c": {"d": [1, [2, [3, [4, {"e": "深い"}]]]]}}}},
        "numbers": [0, -1, 2**31, -(2**53), 2**62, 0.5, -2.25, 3.14159, 1e-7, 1.0],
        "empty": {"dict": {}, "list": [], "string": ""},
        "steps": steps,
    }


async def test_large_unicode_snapshot_round_trips_exactly(store):
    wf = store.workflows
    snapshot = big_unicode_snapshot()
    assert len(json.dumps(snapshot, ensure_ascii=False)) >= 10_000
    expected = json.loads(json.dumps(snapshot))  # an independent deep copy
    run = await wf.persist_snapshot("wf-ünï", "run-日本-🚀", snapshot, resource_id="ресурс")
    assert run.status == "running"
    loaded = await wf.load_snapshot("wf-ünï", "run-日本-🚀")
    assert loaded == expected
    # exact: same JSON text once keys are sorted (types and number forms preserved)
    assert json.dumps(loaded, sort_keys=True) == json.dumps(expected, sort_keys=True)
    stored = await wf.get_run("run-日本-🚀", "wf-ünï")
    assert stored.snapshot == expected
    assert stored.resource_id == "ресурс"
    (listed,) = (await wf.list_runs(resource_id="ресурс")).items
    assert listed.snapshot == expected


async def test_unicode_ids_and_status_work_as_keys_and_filters(store):
    wf = store.workflows
    await wf.persist_snapshot("流程", "运行-1", {"status": "進行中"}, resource_id="ユーザー")
    await wf.persist_snapshot("流程", "运行-2", {"status": "完了"})
    assert ids(await wf.list_runs(workflow_name="流程", status="進行中")) == ["运行-1"]
    assert ids(await wf.list_runs(resource_id="ユーザー")) == ["运行-1"]
    assert (await wf.get_run("运行-2")).status == "完了"


async def test_ids_at_the_maximum_length_are_accepted(store):
    wf = store.workflows
    long_name, long_id = "w" * 1024, "r" * 1024
    run = await wf.persist_snapshot(long_name, long_id, {"ok": True}, resource_id="u" * 1024)
    assert run.version == 1
    assert await wf.load_snapshot(long_name, long_id) == {"ok": True}
    assert (await wf.get_run(long_id)).resource_id == "u" * 1024
