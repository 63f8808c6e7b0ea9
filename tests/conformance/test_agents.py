"""Conformance tests for ``store.agents`` (SPEC §5 Agent/AgentVersion, §6 "AgentsStore", §7).

Every test runs on each relational backend through the ``store`` fixture (a fresh database).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from composite_store.domains.agents.store import AgentsStore
from composite_store.errors import (
    CompositeStoreError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from composite_store.models import Agent, AgentVersion
from composite_store.pagination import Page

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def agents(store) -> AgentsStore:
    return store.agents


# -- helpers ---------------------------------------------------------------------------------


def make(agent_id: str = "a1", **kw: Any) -> Agent:
    fields: dict[str, Any] = {
        "id": agent_id,
        "name": f"name of {agent_id}",
        "instructions": f"instructions of {agent_id}",
        "model": "model-1",
    }
    fields.update(kw)
    return Agent(**fields)


def row_of(agent: Agent) -> tuple[Any, ...]:
    """Every stored field of an agent, for exact before/after comparisons."""
    return (
        agent.id,
        agent.name,
        agent.instructions,
        agent.model,
        agent.author_id,
        agent.metadata_,
        agent.active_version,
        agent.created_at,
        agent.updated_at,
    )


def config(obj: Agent | AgentVersion) -> tuple[str, str, str]:
    return (obj.name, obj.instructions, obj.model)


def ids(page: Page[Agent]) -> list[str]:
    return [a.id for a in page.items]


def numbers(page: Page[AgentVersion]) -> list[int]:
    return [v.version_number for v in page.items]


def assert_utc(value: datetime) -> None:
    assert isinstance(value, datetime)
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)


async def everything(store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Both tables whole, read with SQL (not through the store), in a stable order."""
    async with store.agents.engine.connect() as conn:
        agent_rows = (await conn.execute(select(Agent.__table__).order_by("id"))).all()
        version_rows = (
            await conn.execute(
                select(AgentVersion.__table__).order_by("agent_id", "version_number")
            )
        ).all()
    return [tuple(r) for r in agent_rows], [tuple(r) for r in version_rows]


async def seed_versions(agents: AgentsStore, agent_id: str = "a1", n: int = 3) -> Agent:
    """An agent with versions 1..n; version k has model ``model-k``."""
    agent = await agents.create_agent(make(agent_id, model="model-1"))
    for k in range(2, n + 1):
        agent = await agents.update_agent(agent_id, model=f"model-{k}")
    return agent


# -- create / get ----------------------------------------------------------------------------


async def test_every_field_round_trips(agents):
    original = make(
        "agent-1",
        name="Support bot ✓",
        instructions="Be kind.\n'single' \"double\" ; DROP TABLE agents;-- ünïcode " + "x" * 20_000,
        model="openai/gpt-4o",
        author_id="user-1",
        metadata_={"team": "support", "nested": {"a": [1, 2.5, None, True, "s"]}, "e": {}},
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1, microseconds=7),
    )
    created = await agents.create_agent(original)
    assert isinstance(created, Agent)
    assert row_of(created) == row_of(original)
    stored = await agents.get_agent("agent-1")
    assert isinstance(stored, Agent)
    assert row_of(stored) == row_of(original)
    assert stored.active_version == 1
    assert_utc(stored.created_at)
    assert_utc(stored.updated_at)


async def test_defaults_are_filled(agents):
    before = datetime.now(UTC)
    await agents.create_agent(Agent(id="a1", name="n"))
    after = datetime.now(UTC)
    stored = await agents.get_agent("a1")
    assert (stored.instructions, stored.model, stored.author_id, stored.metadata_) == (
        "",
        "",
        None,
        {},
    )
    assert stored.active_version == 1
    assert before <= stored.created_at <= after
    assert before <= stored.updated_at <= after
    assert_utc(stored.created_at)


async def test_timestamps_in_another_zone_are_stored_as_the_same_instant_in_utc(agents):
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 14, 0, 0, 654321, tzinfo=plus_two)
    await agents.create_agent(make(created_at=local, updated_at=local))
    stored = await agents.get_agent("a1")
    assert stored.created_at == local
    assert stored.created_at == datetime(2026, 3, 1, 12, 0, 0, 654321, tzinfo=UTC)
    assert_utc(stored.created_at)
    assert_utc(stored.updated_at)


async def test_create_makes_version_1_with_the_agents_configuration(agents):
    created = await agents.create_agent(make(active_version=7, created_at=T0, updated_at=T0))
    assert created.active_version == 1
    assert (await agents.get_agent("a1")).active_version == 1
    v1 = await agents.get_version("a1", 1)
    assert isinstance(v1, AgentVersion)
    assert (v1.agent_id, v1.version_number) == ("a1", 1)
    assert config(v1) == ("name of a1", "instructions of a1", "model-1")
    assert v1.created_at == T0
    assert_utc(v1.created_at)
    page = await agents.list_versions("a1")
    assert (numbers(page), page.total, page.has_more) == ([1], 1, False)


async def test_get_missing_agent_is_none(agents):
    assert await agents.get_agent("missing") is None
    await agents.create_agent(make("a1"))
    assert await agents.get_agent("a2") is None
    assert await agents.get_agent("A1") is None


async def test_create_existing_id_conflicts_and_changes_nothing(store, agents):
    await agents.create_agent(make("a1", author_id="u1", metadata_={"k": 1}))
    await agents.update_agent("a1", model="model-2")
    before = await everything(store)
    with pytest.raises(ConflictError):
        await agents.create_agent(make("a1", name="other", model="x", author_id="u2"))
    assert await everything(store) == before


async def test_concurrent_creates_of_one_id_have_exactly_one_winner(store, agents):
    """Racing creates of one id: one succeeds, every other raises ConflictError."""
    results = await asyncio.gather(
        *(agents.create_agent(make("race", model=f"m{i}")) for i in range(8)),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, Agent)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(wins) == 1, results
    assert [type(e) for e in errors] == [ConflictError] * 7, errors
    stored = await agents.get_agent("race")
    assert stored.model == wins[0].model
    assert numbers(await agents.list_versions("race")) == [1]


async def test_stored_agent_does_not_follow_the_callers_objects(agents):
    meta = {"k": [1]}
    agent = make(metadata_=meta)
    await agents.create_agent(agent)
    meta["k"].append(2)
    agent.name = "changed locally"
    stored = await agents.get_agent("a1")
    assert (stored.name, stored.metadata_) == ("name of a1", {"k": [1]})


# -- update_agent ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"name": "new name"},
        {"instructions": "new instructions"},
        {"model": "model-2"},
        {"name": "n2", "instructions": "i2", "model": "m2"},
    ],
)
async def test_config_change_creates_next_version_and_activates_it(agents, change):
    await agents.create_agent(make(created_at=T0, updated_at=T0, metadata_={"k": 1}))
    before = datetime.now(UTC)
    updated = await agents.update_agent("a1", **change)
    after = datetime.now(UTC)
    expected = {"name": "name of a1", "instructions": "instructions of a1", "model": "model-1"}
    expected.update(change)
    assert isinstance(updated, Agent)
    assert config(updated) == (expected["name"], expected["instructions"], expected["model"])
    assert updated.active_version == 2
    assert (updated.created_at, updated.metadata_) == (T0, {"k": 1})
    assert before <= updated.updated_at <= after
    assert row_of(await agents.get_agent("a1")) == row_of(updated)
    v2 = await agents.get_version("a1", 2)
    assert (v2.agent_id, v2.version_number) == ("a1", 2)
    assert config(v2) == config(updated)
    assert before <= v2.created_at <= after
    assert_utc(v2.created_at)
    # version 1 still holds the original configuration
    v1 = await agents.get_version("a1", 1)
    assert config(v1) == ("name of a1", "instructions of a1", "model-1")
    assert numbers(await agents.list_versions("a1")) == [2, 1]


async def test_each_version_holds_the_configuration_of_its_time(agents):
    await agents.create_agent(make(name="n1", instructions="i1", model="m1"))
    await agents.update_agent("a1", name="n2")
    await agents.update_agent("a1", instructions="i3", metadata={"x": 1})
    await agents.update_agent("a1", model="m4", author_id="u9")
    await agents.update_agent("a1", name="n5", model="m5")
    expected = {
        1: ("n1", "i1", "m1"),
        2: ("n2", "i1", "m1"),
        3: ("n2", "i3", "m1"),
        4: ("n2", "i3", "m4"),
        5: ("n5", "i3", "m5"),
    }
    for number, cfg in expected.items():
        version = await agents.get_version("a1", number)
        assert (version.version_number, config(version)) == (number, cfg)
    page = await agents.list_versions("a1")
    assert [(v.version_number, config(v)) for v in page.items] == sorted(
        expected.items(), reverse=True
    )
    assert all(v.agent_id == "a1" for v in page.items)
    created = [v.created_at for v in reversed(page.items)]
    assert created == sorted(created)
    stored = await agents.get_agent("a1")
    assert (config(stored), stored.active_version) == (("n5", "i3", "m5"), 5)
    assert (stored.author_id, stored.metadata_) == ("u9", {"x": 1})


async def test_metadata_only_update_merges_and_creates_no_version(agents):
    await agents.create_agent(
        make(metadata_={"a": 1, "b": {"x": 1}, "c": 3}, created_at=T0, updated_at=T0)
    )
    updated = await agents.update_agent("a1", metadata={"b": {"y": 2}, "c": None, "d": [4]})
    # shallow merge: top-level keys replaced or added, nested dicts not merged
    assert updated.metadata_ == {"a": 1, "b": {"y": 2}, "c": None, "d": [4]}
    assert updated.active_version == 1
    assert config(updated) == ("name of a1", "instructions of a1", "model-1")
    assert updated.created_at == T0
    assert updated.updated_at > T0
    assert row_of(await agents.get_agent("a1")) == row_of(updated)
    assert numbers(await agents.list_versions("a1")) == [1]
    assert await agents.get_version("a1", 2) is None
    again = await agents.update_agent("a1", metadata={"a": 2})
    assert again.metadata_ == {"a": 2, "b": {"y": 2}, "c": None, "d": [4]}
    assert again.updated_at >= updated.updated_at


async def test_author_only_update_creates_no_version(agents):
    await agents.create_agent(make(author_id="u1", created_at=T0, updated_at=T0))
    moved = await agents.update_agent("a1", author_id="u2")
    assert (moved.author_id, moved.active_version, moved.updated_at > T0) == ("u2", 1, True)
    cleared = await agents.update_agent("a1", author_id=None)
    assert cleared.author_id is None
    assert (await agents.get_agent("a1")).author_id is None
    assert numbers(await agents.list_versions("a1")) == [1]


async def test_setting_config_to_its_current_value_creates_no_version(agents):
    await agents.create_agent(make())
    same = await agents.update_agent(
        "a1", name="name of a1", instructions="instructions of a1", model="model-1"
    )
    assert (same.active_version, config(same)) == (1, config(make()))
    assert numbers(await agents.list_versions("a1")) == [1]
    # one changed field among unchanged ones: exactly one new version
    partly = await agents.update_agent("a1", name="name of a1", model="model-2")
    assert (partly.active_version, partly.model) == (2, "model-2")
    assert numbers(await agents.list_versions("a1")) == [2, 1]


async def test_mixed_update_versions_config_and_merges_metadata(agents):
    await agents.create_agent(make(author_id="u1", metadata_={"a": 1}))
    updated = await agents.update_agent("a1", instructions="new", author_id="u2", metadata={"b": 2})
    assert (updated.instructions, updated.author_id, updated.metadata_) == (
        "new",
        "u2",
        {"a": 1, "b": 2},
    )
    assert updated.active_version == 2
    assert config(await agents.get_version("a1", 2)) == ("name of a1", "new", "model-1")


async def test_update_missing_agent_raises_not_found_and_creates_nothing(store, agents):
    await agents.create_agent(make("a1"))
    before = await everything(store)
    for fields in ({"model": "m"}, {"metadata": {"k": 1}}, {"author_id": "u"}, {}):
        with pytest.raises(NotFoundError):
            await agents.update_agent("ghost", **fields)
    assert await agents.get_agent("ghost") is None
    assert await agents.get_version("ghost", 1) is None
    assert await everything(store) == before


# -- concurrency -----------------------------------------------------------------------------


async def test_concurrent_updates_get_distinct_gap_free_versions(agents):
    """10 updates at once with distinct models: versions exactly 2..11, one per call."""
    await agents.create_agent(make("a1", model="m-initial"))
    results = await asyncio.gather(
        *(agents.update_agent("a1", model=f"m{i}") for i in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(r, Agent) for r in results), results
    assert sorted(r.active_version for r in results) == list(range(2, 12))
    for i, result in enumerate(results):
        assert result.model == f"m{i}"
        version = await agents.get_version("a1", result.active_version)
        assert config(version) == config(result)
    page = await agents.list_versions("a1", per_page=None)
    assert page.total == 11
    assert numbers(page) == list(range(11, 0, -1))
    assert sorted(v.model for v in page.items) == sorted(
        ["m-initial", *(f"m{i}" for i in range(10))]
    )
    stored = await agents.get_agent("a1")
    assert stored.active_version == 11
    last = next(r for r in results if r.active_version == 11)
    assert config(stored) == config(last)


async def test_concurrent_updates_of_two_agents_number_independently(agents):
    await agents.create_agent(make("a1"))
    await agents.create_agent(make("a2"))
    results = await asyncio.gather(
        *(agents.update_agent(a, model=f"m{i}") for i in range(5) for a in ("a1", "a2"))
    )
    for agent_id in ("a1", "a2"):
        mine = [r.active_version for r in results if r.id == agent_id]
        assert sorted(mine) == [2, 3, 4, 5, 6]
        assert numbers(await agents.list_versions(agent_id)) == [6, 5, 4, 3, 2, 1]


async def test_concurrent_metadata_merges_lose_nothing(agents):
    await agents.create_agent(make(metadata_={"base": True}))
    await asyncio.gather(*(agents.update_agent("a1", metadata={f"k{i}": i}) for i in range(10)))
    stored = await agents.get_agent("a1")
    assert stored.metadata_ == {"base": True, **{f"k{i}": i for i in range(10)}}
    assert stored.active_version == 1
    assert numbers(await agents.list_versions("a1")) == [1]


# -- versions: list / get / activate ---------------------------------------------------------


async def test_list_versions_pages_newest_first(agents):
    await seed_versions(agents, n=12)
    pages = [await agents.list_versions("a1", page=p, per_page=5) for p in range(3)]
    assert [numbers(p) for p in pages] == [[12, 11, 10, 9, 8], [7, 6, 5, 4, 3], [2, 1]]
    assert [p.has_more for p in pages] == [True, True, False]
    assert {p.total for p in pages} == {12}
    assert [(p.page, p.per_page) for p in pages] == [(0, 5), (1, 5), (2, 5)]
    beyond = await agents.list_versions("a1", page=3, per_page=5)
    assert (beyond.items, beyond.total, beyond.has_more) == ([], 12, False)
    everything_ = await agents.list_versions("a1", per_page=None)
    assert (len(everything_.items), everything_.total, everything_.has_more) == (12, 12, False)
    counted = await agents.list_versions("a1", per_page=0)
    assert (counted.items, counted.total, counted.has_more) == ([], 12, True)
    assert [v.model for v in pages[0].items] == [f"model-{k}" for k in (12, 11, 10, 9, 8)]


async def test_list_versions_of_one_agent_only(agents):
    await seed_versions(agents, "a1", n=3)
    await seed_versions(agents, "a2", n=2)
    assert numbers(await agents.list_versions("a2")) == [2, 1]
    assert {v.agent_id for v in (await agents.list_versions("a2")).items} == {"a2"}
    empty = await agents.list_versions("ghost")
    assert (empty.items, empty.total, empty.has_more) == ([], 0, False)


async def test_get_version_of_a_missing_number_or_agent_is_none(agents):
    await seed_versions(agents, n=2)
    assert await agents.get_version("a1", 3) is None
    assert await agents.get_version("a1", 10**9) is None
    assert await agents.get_version("a1", 2**31) is None  # past a 32-bit column
    assert await agents.get_version("a1", 2**62) is None
    assert await agents.get_version("ghost", 1) is None


async def test_activate_old_version_restores_its_configuration(agents):
    """Update, then activate the old version: get_agent returns the old configuration."""
    await agents.create_agent(
        make(name="n1", instructions="i1", model="m1", author_id="u1", metadata_={"k": 1})
    )
    await agents.update_agent("a1", name="n2", instructions="i2", model="m2")
    await agents.update_agent("a1", model="m3", metadata={"j": 2})
    before = (await agents.get_agent("a1")).updated_at
    activated = await agents.activate_version("a1", 1)
    assert isinstance(activated, Agent)
    assert (config(activated), activated.active_version) == (("n1", "i1", "m1"), 1)
    # not part of a version: kept as they are
    assert (activated.author_id, activated.metadata_) == ("u1", {"k": 1, "j": 2})
    assert activated.updated_at >= before
    stored = await agents.get_agent("a1")
    assert row_of(stored) == row_of(activated)
    # activating creates no version and leaves the stored versions alone
    page = await agents.list_versions("a1")
    assert numbers(page) == [3, 2, 1]
    assert [config(v) for v in page.items] == [
        ("n2", "i2", "m3"),
        ("n2", "i2", "m2"),
        ("n1", "i1", "m1"),
    ]
    forward = await agents.activate_version("a1", 3)
    assert (config(forward), forward.active_version) == (("n2", "i2", "m3"), 3)
    assert config(await agents.get_agent("a1")) == ("n2", "i2", "m3")


async def test_update_after_rollback_creates_max_plus_one(agents):
    await seed_versions(agents, n=4)
    await agents.activate_version("a1", 2)
    unchanged = await agents.update_agent("a1", model="model-2")  # the active config: no version
    assert unchanged.active_version == 2
    assert numbers(await agents.list_versions("a1")) == [4, 3, 2, 1]
    updated = await agents.update_agent("a1", model="model-3")  # equal to v3, still a new one
    assert updated.active_version == 5
    assert (updated.model, updated.name) == ("model-3", "name of a1")
    v5 = await agents.get_version("a1", 5)
    assert config(v5) == ("name of a1", "instructions of a1", "model-3")
    assert numbers(await agents.list_versions("a1")) == [5, 4, 3, 2, 1]
    # versions 3 and 4 were not overwritten
    assert (await agents.get_version("a1", 4)).model == "model-4"


async def test_activate_the_active_version_changes_no_configuration(agents):
    await seed_versions(agents, n=2)
    again = await agents.activate_version("a1", 2)
    assert (again.active_version, again.model) == (2, "model-2")
    assert numbers(await agents.list_versions("a1")) == [2, 1]


async def test_activate_missing_version_or_agent_raises_not_found(store, agents):
    await seed_versions(agents, "a1", n=2)
    await seed_versions(agents, "a2", n=3)
    before = await everything(store)
    for agent_id, number in (("a1", 3), ("a1", 99), ("a1", 2**31), ("a1", 2**62), ("ghost", 1)):
        with pytest.raises(NotFoundError):
            await agents.activate_version(agent_id, number)
    assert await everything(store) == before
    assert await agents.get_agent("ghost") is None


# -- delete ----------------------------------------------------------------------------------


async def test_delete_removes_agent_and_versions_and_is_idempotent(store, agents):
    await seed_versions(agents, "a1", n=3)
    await seed_versions(agents, "a2", n=2)
    await agents.delete_agent("a1")
    assert await agents.get_agent("a1") is None
    assert await agents.get_version("a1", 1) is None
    empty = await agents.list_versions("a1")
    assert (empty.items, empty.total) == ([], 0)
    agent_rows, version_rows = await everything(store)
    assert [r[0] for r in agent_rows] == ["a2"]
    assert [(r[0], r[1]) for r in version_rows] == [("a2", 1), ("a2", 2)]
    await agents.delete_agent("a1")  # again: nothing to do, no error
    await agents.delete_agent("never-existed")
    assert ids(await agents.list_agents()) == ["a2"]
    assert numbers(await agents.list_versions("a2")) == [2, 1]


async def test_recreated_agent_starts_again_at_version_1(agents):
    await seed_versions(agents, n=3)
    await agents.delete_agent("a1")
    created = await agents.create_agent(make(model="fresh"))
    assert created.active_version == 1
    page = await agents.list_versions("a1")
    assert numbers(page) == [1]
    assert page.items[0].model == "fresh"
    assert (await agents.update_agent("a1", model="next")).active_version == 2


async def test_update_and_activate_after_delete_raise_not_found(agents):
    await seed_versions(agents, n=2)
    await agents.delete_agent("a1")
    with pytest.raises(NotFoundError):
        await agents.update_agent("a1", model="x")
    with pytest.raises(NotFoundError):
        await agents.activate_version("a1", 1)
    assert await agents.get_agent("a1") is None


# -- list_agents -----------------------------------------------------------------------------


async def test_list_agents_pages_15_at_5_a_page(agents):
    """15 agents at 5 a page: 5/5/5, has_more True/True/False, newest first."""
    for i in range(15):
        await agents.create_agent(make(f"a{i:02d}", created_at=T0 + timedelta(seconds=i)))
    pages = [await agents.list_agents(page=p, per_page=5) for p in range(3)]
    assert [len(p.items) for p in pages] == [5, 5, 5]
    assert [p.has_more for p in pages] == [True, True, False]
    assert {p.total for p in pages} == {15}
    assert [(p.page, p.per_page) for p in pages] == [(0, 5), (1, 5), (2, 5)]
    assert [a for p in pages for a in ids(p)] == [f"a{i:02d}" for i in reversed(range(15))]
    oldest_first = [
        await agents.list_agents(page=p, per_page=5, descending=False) for p in range(3)
    ]
    assert [a for p in oldest_first for a in ids(p)] == [f"a{i:02d}" for i in range(15)]
    assert [p.has_more for p in oldest_first] == [True, True, False]
    beyond = await agents.list_agents(page=3, per_page=5)
    assert (beyond.items, beyond.total, beyond.has_more) == ([], 15, False)
    assert (await agents.list_agents()).per_page == 100
    assert len((await agents.list_agents()).items) == 15


async def test_list_agents_returns_full_agents(agents):
    original = make(author_id="u1", metadata_={"k": [1]}, created_at=T0, updated_at=T0)
    await agents.create_agent(original)
    await agents.update_agent("a1", model="model-2")
    (listed,) = (await agents.list_agents()).items
    assert row_of(listed) == row_of(await agents.get_agent("a1"))
    assert (listed.model, listed.active_version) == ("model-2", 2)


async def test_list_agents_per_page_none_and_zero(agents):
    for i in range(3):
        await agents.create_agent(make(f"a{i}", created_at=T0 + timedelta(seconds=i)))
    everything_ = await agents.list_agents(per_page=None)
    assert (ids(everything_), everything_.total, everything_.has_more) == (
        ["a2", "a1", "a0"],
        3,
        False,
    )
    counted = await agents.list_agents(per_page=0)
    assert (counted.items, counted.total, counted.has_more) == ([], 3, True)
    assert (await agents.list_agents(author_id="nobody")).total == 0


async def test_list_agents_by_author_and_metadata(agents):
    rows = [
        ("a0", "u1", {"team": "x", "tier": 1}),
        ("a1", "u1", {"team": "y", "tier": 1}),
        ("a2", "u2", {"team": "x", "tier": 2}),
        ("a3", None, {"team": "x", "tier": 1}),
        ("a4", "u2", {}),
    ]
    for i, (agent_id, author, meta) in enumerate(rows):
        await agents.create_agent(
            make(agent_id, author_id=author, metadata_=meta, created_at=T0 + timedelta(seconds=i))
        )
    assert ids(await agents.list_agents(author_id="u1")) == ["a1", "a0"]
    assert ids(await agents.list_agents(author_id="u2", descending=False)) == ["a2", "a4"]
    assert ids(await agents.list_agents(metadata={"team": "x"})) == ["a3", "a2", "a0"]
    assert ids(await agents.list_agents(metadata={"team": "x", "tier": 1})) == ["a3", "a0"]
    assert ids(await agents.list_agents(author_id="u1", metadata={"team": "x"})) == ["a0"]
    assert ids(await agents.list_agents(author_id="u2", metadata={"tier": 1})) == []
    assert ids(await agents.list_agents(metadata={"missing": "x"})) == []
    assert ids(await agents.list_agents(metadata={})) == ["a4", "a3", "a2", "a1", "a0"]
    filtered = await agents.list_agents(metadata={"team": "x"}, per_page=2)
    assert (ids(filtered), filtered.total, filtered.has_more) == (["a3", "a2"], 3, True)
    # filters follow updates
    await agents.update_agent("a1", metadata={"team": "x"}, author_id="u3")
    assert ids(await agents.list_agents(metadata={"team": "x", "tier": 1})) == ["a3", "a1", "a0"]
    assert ids(await agents.list_agents(author_id="u3")) == ["a1"]
    assert ids(await agents.list_agents(author_id="u1")) == ["a0"]


METADATA = {
    "m0": {
        "n": 1,
        "flag": True,
        "tags": ["a", "b"],
        "cfg": {"a": 1, "b": 2},
        "gone": None,
        "a.b": "dot",
    },
    "m1": {"n": "1", "flag": 1, "tags": ["b", "a"], "cfg": {"a": 1}},
}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"n": 1}, ["m0"]),
        ({"n": "1"}, ["m1"]),
        ({"flag": True}, ["m0"]),
        ({"flag": 1}, ["m1"]),
        ({"tags": ["a", "b"]}, ["m0"]),
        ({"tags": ["b", "a"]}, ["m1"]),
        ({"cfg": {"a": 1, "b": 2}}, ["m0"]),
        ({"cfg": {"b": 2, "a": 1}}, ["m0"]),
        ({"cfg": {"a": 1}}, ["m1"]),
        ({"gone": None}, ["m0"]),
        ({"a.b": "dot"}, ["m0"]),
    ],
)
async def test_metadata_filter_compares_json_values_exactly(agents, filters, expected):
    """A filter value equals a stored value as JSON: types count, object key order does not."""
    for i, (agent_id, meta) in enumerate(METADATA.items()):
        await agents.create_agent(
            make(agent_id, metadata_=meta, created_at=T0 + timedelta(seconds=i))
        )
    assert ids(await agents.list_agents(metadata=filters)) == expected


# -- bad input -------------------------------------------------------------------------------

BAD_IDS = ["", "   ", None, 42, "nul\x00byte", "x" * 1025]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_ids_are_rejected_and_change_nothing(store, agents, bad):
    await seed_versions(agents, "a1", n=2)
    before = await everything(store)
    calls = [
        agents.get_agent(bad),
        agents.update_agent(bad, model="x"),
        agents.delete_agent(bad),
        agents.list_versions(bad),
        agents.get_version(bad, 1),
        agents.activate_version(bad, 1),
        agents.create_agent(make(bad)),
    ]
    if bad is not None:  # None is a valid author_id: "no author"
        calls += [
            agents.create_agent(make("new", author_id=bad)),
            agents.update_agent("a1", author_id=bad),
            agents.list_agents(author_id=bad),
        ]
    for call in calls:
        with pytest.raises(ValidationError):
            await call
    assert await everything(store) == before


@pytest.mark.parametrize("name", ["", "   ", None, 7, "nul\x00byte"])
async def test_agent_without_a_usable_name_is_rejected(store, agents, name):
    await agents.create_agent(make("a1"))
    before = await everything(store)
    with pytest.raises(ValidationError):
        await agents.create_agent(make("new", name=name))
    with pytest.raises(ValidationError):
        await agents.update_agent("a1", name=name)
    assert await agents.get_agent("new") is None
    assert await agents.get_version("new", 1) is None
    assert await everything(store) == before


def test_agent_model_requires_a_name():
    with pytest.raises(TypeError):
        Agent(id="a1")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "fields",
    [
        {"instructions": "nul\x00byte"},
        {"instructions": None},
        {"instructions": 5},
        {"model": "nul\x00byte"},
        {"model": None},
        {"model": ["gpt"]},
        {"metadata_": "not a dict"},
        {"metadata_": ["a", "b"]},
        {"metadata_": None},
        {"metadata_": {"x": float("nan")}},
        {"metadata_": {"x": float("inf")}},
        {"metadata_": {"x": {1, 2}}},
        {"metadata_": {"x": "nul\x00"}},
        {"created_at": datetime(2026, 1, 1)},
        {"updated_at": "2026-01-01T00:00:00Z"},
    ],
)
async def test_create_rejects_bad_values_and_stores_nothing(store, agents, fields):
    await agents.create_agent(make("a1"))
    before = await everything(store)
    with pytest.raises(ValidationError):
        await agents.create_agent(make("new", **fields))
    assert await agents.get_agent("new") is None
    assert await everything(store) == before


async def test_create_rejects_what_is_not_an_agent(store, agents):
    for thing in ({"id": "a1", "name": "n"}, None, "a1"):
        with pytest.raises(ValidationError):
            await agents.create_agent(thing)  # type: ignore[arg-type]
    assert await everything(store) == ([], [])


@pytest.mark.parametrize(
    "fields",
    [
        {"instructions": "nul\x00byte"},
        {"instructions": None},
        {"model": None},
        {"model": 3},
        {"metadata": "nope"},
        {"metadata": ["a"]},
        {"metadata": None},
        {"metadata": {"x": float("nan")}},
        {"metadata": {"x": {1, 2}}},
        {"colour": "red"},
        {"metadata_": {"k": 1}},
        {"active_version": 1},
        {"id": "other"},
        {"created_at": T0},
        {"updated_at": T0},
        {"model": "m2", "colour": "red"},  # a valid change beside an unknown field: nothing
        {"model": "m2", "metadata": {"x": float("nan")}},
    ],
)
async def test_update_rejects_bad_fields_and_changes_nothing(store, agents, fields):
    await agents.create_agent(make("a1", metadata_={"k": 0}))
    before = await everything(store)
    with pytest.raises(ValidationError):
        await agents.update_agent("a1", **fields)
    assert await everything(store) == before


@pytest.mark.parametrize("number", [0, -1, "2", True, False, 1.0, None])
async def test_bad_version_numbers_are_rejected(store, agents, number):
    await seed_versions(agents, n=2)
    before = await everything(store)
    with pytest.raises(ValidationError):
        await agents.get_version("a1", number)
    with pytest.raises(ValidationError):
        await agents.activate_version("a1", number)
    assert await everything(store) == before
    assert (await agents.get_agent("a1")).active_version == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page": -1},
        {"per_page": -5},
        {"page": 1.5},
        {"per_page": "10"},
        {"page": None},
        {"metadata": ["not", "a", "dict"]},
        {"metadata": "team=x"},
        {"metadata": {"x": float("nan")}},
        {"author_id": ""},
    ],
)
async def test_bad_list_arguments(agents, kwargs):
    await agents.create_agent(make("a1"))
    with pytest.raises(ValidationError):
        await agents.list_agents(**kwargs)
    assert ids(await agents.list_agents()) == ["a1"]


@pytest.mark.parametrize("kwargs", [{"page": -1}, {"per_page": -1}, {"per_page": 2.0}])
async def test_bad_list_versions_arguments(agents, kwargs):
    await agents.create_agent(make("a1"))
    with pytest.raises(ValidationError):
        await agents.list_versions("a1", **kwargs)
    assert numbers(await agents.list_versions("a1")) == [1]


async def test_errors_are_the_spec_types(agents):
    """ValidationError is a ValueError, NotFoundError a LookupError; all CompositeStoreErrors."""
    with pytest.raises(ValidationError) as invalid:
        await agents.update_agent("a1", colour="red")
    with pytest.raises(NotFoundError) as missing:
        await agents.update_agent("a1", model="m")
    await agents.create_agent(make("a1"))
    with pytest.raises(ConflictError) as conflict:
        await agents.create_agent(make("a1"))
    assert isinstance(invalid.value, ValueError)
    assert isinstance(missing.value, LookupError)
    for error in (invalid.value, missing.value, conflict.value):
        assert isinstance(error, CompositeStoreError)
    assert "colour" in str(invalid.value)
