"""ScoresStore conformance: the same behaviour on every backend (SPEC §5, §6, §7; scores issue).

Only the public API is used and no test relies on a backend's physical row order: lists are
ordered by the store (newest ``created_at`` first, ties by id descending) and everything else
is compared as sets or against a plain Python computation over the same rows.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
from dataclasses import astuple
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from composite_store import CompositeStore, Page, ScoreStats, ValidationError
from composite_store.domains.scores.store import ScoresStore
from composite_store.models import Score

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
FILTERS = ("scorer_id", "run_id", "entity_id", "entity_type", "source", "trace_id", "span_id")
EMPTY = ScoreStats(0, None, None, None, None)


@pytest.fixture
def backend(analytical_backend: str) -> str:
    """Scores run on ClickHouse too."""
    return analytical_backend


@pytest.fixture
def scores(store: CompositeStore) -> ScoresStore:
    return store.scores


def ids(page: Page[Score]) -> list[str]:
    return [s.id for s in page.items]


async def everything(scores: ScoresStore) -> tuple[Any, ...]:
    """What is stored, as the public API sees it: for "nothing changed" checks."""
    return (
        await scores.list_scores(per_page=None),
        await scores.aggregate_scores(pass_threshold=0.5),
        await scores.aggregate_scores(pass_threshold=0.5, group_by="scorer_id"),
    )


# -- the Python reference for aggregates ------------------------------------------------------
def percentile_cont(values: list[float], q: float) -> float:
    """PostgreSQL's ``percentile_cont(q)``: position (n-1)*q in the sorted values, linear
    between its two neighbours."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def reference(values: list[float], threshold: float) -> ScoreStats:
    if not values:
        return EMPTY
    return ScoreStats(
        count=len(values),
        mean=math.fsum(values) / len(values),
        p50=percentile_cont(values, 0.5),
        p95=percentile_cont(values, 0.95),
        pass_rate=sum(1 for v in values if v >= threshold) / len(values),
    )


def assert_stats(actual: ScoreStats, expected: ScoreStats) -> None:
    assert isinstance(actual, ScoreStats)
    assert type(actual.count) is int and actual.count == expected.count
    if expected.count == 0:
        assert actual == EMPTY
        return
    for name in ("mean", "p50", "p95", "pass_rate"):
        assert isinstance(getattr(actual, name), float), name
    # rel as asked; abs only guards results that land on ~0 through different float paths
    assert astuple(actual)[1:] == pytest.approx(astuple(expected)[1:], rel=1e-9, abs=1e-12)


def test_reference_percentile_matches_postgresql_examples() -> None:
    """The reference itself: known percentile_cont results."""
    assert percentile_cont([5.0], 0.95) == 5.0
    assert percentile_cont([1.0, 2.0], 0.5) == 1.5
    assert percentile_cont([1.0, 2.0], 0.95) == pytest.approx(1.95)
    assert percentile_cont([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert percentile_cont([float(i) for i in range(1, 11)], 0.95) == pytest.approx(9.55)
    assert percentile_cont([float(i) for i in range(101)], 0.95) == pytest.approx(95.0)


# -- round trip and upsert --------------------------------------------------------------------
def full_score(**kw: Any) -> Score:
    fields: dict[str, Any] = {
        "id": "score-1",
        "scorer_id": "relevance",
        "score": 0.8125,
        "run_id": "run-1",
        "entity_id": "agent-1",
        "entity_type": "AGENT",
        "source": "TEST",
        "trace_id": "trace-1",
        "span_id": "span-1",
        "reason": "Ünïcödé ✓ 日本語 🎯\nsecond line, 'quotes' \"and\" \\ backslash",
        "metadata_": {
            "model": "gpt-x",
            "nested": {"list": [1, 2.5, None, True, "ü"], "deep": {"k": {"z": []}}},
            "emoji": "🎯",
        },
        "created_at": datetime(2026, 3, 1, 12, 34, 56, 123456, tzinfo=UTC),
    }
    fields.update(kw)
    return Score(**fields)


async def test_every_field_round_trips(scores: ScoresStore) -> None:
    score = full_score()
    saved = await scores.save_score(score)
    assert saved == full_score()
    got = await scores.get_score("score-1")
    assert got == full_score()
    assert got is not None
    assert got.created_at.microsecond == 123456
    assert got.created_at.utcoffset() == timedelta(0)
    assert isinstance(got.score, float)


async def test_minimal_score_gets_defaults(scores: ScoresStore) -> None:
    before = datetime.now(UTC)
    await scores.save_score(Score(id="s", scorer_id="sc", score=0.0))
    got = await scores.get_score("s")
    assert got is not None
    assert (got.run_id, got.entity_id, got.entity_type, got.trace_id, got.span_id) == (None,) * 5
    assert (got.source, got.reason, got.metadata_, got.score) == ("LIVE", None, {}, 0.0)
    assert got.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=5) <= got.created_at <= datetime.now(UTC)


async def test_non_utc_created_at_comes_back_as_the_same_instant_in_utc(
    scores: ScoresStore,
) -> None:
    local = datetime(2026, 3, 1, 14, 0, 0, 7, tzinfo=PLUS_TWO)
    await scores.save_score(Score(id="s", scorer_id="sc", score=1.0, created_at=local))
    got = await scores.get_score("s")
    assert got is not None
    assert got.created_at == datetime(2026, 3, 1, 12, 0, 0, 7, tzinfo=UTC)
    assert got.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [0.0, -1.0, 1e-300, 5e-324, sys.float_info.max, -sys.float_info.max, 0.1 + 0.2, 7, 10**20],
)
async def test_any_finite_float_round_trips_exactly(
    scores: ScoresStore, backend: str, value: float
) -> None:
    if backend == "clickhouse-http" and 0 < abs(value) < 1e-320:
        pytest.xfail(  # 1e-310 is read exactly; the native protocol sends the double's bits
            "ClickHouse 18.16 reads the smallest subnormals (5e-324) in SQL text as 0.0"
        )
    await scores.save_score(Score(id="s", scorer_id="sc", score=value))
    got = await scores.get_score("s")
    assert got is not None
    assert isinstance(got.score, float) and got.score == float(value)


async def test_save_score_upserts_by_id(scores: ScoresStore) -> None:
    """A second save with the same id replaces every field; one score remains."""
    await scores.save_score(full_score())
    replacement = Score(
        id="score-1",
        scorer_id="toxicity",
        score=0.25,
        source="LIVE",
        reason=None,
        metadata_={"v": 2},
        created_at=T0,
    )
    assert await scores.save_score(replacement) == replacement
    assert await scores.get_score("score-1") == replacement
    listed = await scores.list_scores()
    assert (ids(listed), listed.total) == (["score-1"], 1)
    assert listed.items[0] == replacement
    assert await scores.list_scores(scorer_id="relevance") == Page([], 0, 0, 100, False)
    assert_stats(await scores.aggregate_scores(), reference([0.25], 1.0))
    assert await scores.aggregate_scores(group_by="scorer_id") == {
        "toxicity": ScoreStats(1, 0.25, 0.25, 0.25, 0.0)
    }


async def test_get_missing_score_is_none(scores: ScoresStore) -> None:
    assert await scores.get_score("missing") is None
    await scores.save_score(full_score())
    assert await scores.get_score("missing") is None
    assert await scores.get_score("SCORE-1") is None  # ids are case-sensitive


# -- list_scores: filters ---------------------------------------------------------------------
# id, scorer_id, run_id, entity_id, entity_type, source, trace_id, span_id
ROWS: list[tuple[str | None, ...]] = [
    ("a0", "relevance", "run-1", "agent-1", "AGENT", "LIVE", "tr-1", "sp-1"),
    ("a1", "relevance", "run-1", "agent-1", "AGENT", "TEST", "tr-1", "sp-2"),
    ("a2", "toxicity", "run-1", "x-1", "WORKFLOW", "LIVE", "tr-2", "sp-1"),
    ("a3", "toxicity", "run-2", "agent-1", "AGENT", "LIVE", "tr-2", "sp-3"),
    ("a4", "relevance", "run-2", "agent-2", "AGENT", "TEST", None, None),
    ("a5", "faithfulness", None, None, None, "LIVE", "tr-3", "sp-1"),
    ("a6", "relevance", "run-3", "x-1", "AGENT", "LIVE", "tr-1", "sp-1"),
    ("a7", "toxicity", "run-1", "agent-2", "AGENT", "TEST", "tr-3", "sp-2"),
    ("a8", "faithfulness", "run-3", "x-1", "WORKFLOW", "TEST", "tr-2", "sp-2"),
]


def created(i: int) -> datetime:
    """Row ``i`` is created ``i`` minutes (plus a few microseconds) after T0."""
    return T0 + timedelta(minutes=i, microseconds=i)


def row_dict(i: int) -> dict[str, Any]:
    return dict(zip(("id", *FILTERS), ROWS[i], strict=True))


async def seed_rows(scores: ScoresStore) -> None:
    # saved out of time order, so the store's order cannot come from insertion order
    for i in (4, 0, 8, 2, 6, 1, 7, 3, 5):
        await scores.save_score(Score(score=i / 10, created_at=created(i), **row_dict(i)))


def expected_ids(
    start: datetime | None = None, end: datetime | None = None, **filters: Any
) -> list[str]:
    """The Python answer: every filter must hold (AND); newest first."""
    found = [
        i
        for i in range(len(ROWS))
        if all(row_dict(i)[k] == v for k, v in filters.items())
        and (start is None or created(i) >= start)
        and (end is None or created(i) <= end)
    ]
    return [row_dict(i)["id"] for i in sorted(found, key=created, reverse=True)]


async def test_list_without_filters_is_everything_newest_first(scores: ScoresStore) -> None:
    await seed_rows(scores)
    listed = await scores.list_scores()
    assert ids(listed) == [f"a{i}" for i in reversed(range(9))]
    assert (listed.total, listed.page, listed.per_page, listed.has_more) == (9, 0, 100, False)
    assert [s.score for s in listed.items] == [i / 10 for i in reversed(range(9))]


async def test_list_on_empty_store(scores: ScoresStore) -> None:
    assert await scores.list_scores() == Page([], 0, 0, 100, False)
    assert await scores.list_scores(scorer_id="x", per_page=None) == Page([], 0, 0, None, False)


@pytest.mark.parametrize("name", FILTERS)
async def test_each_filter_alone(scores: ScoresStore, name: str) -> None:
    await seed_rows(scores)
    values = {row_dict(i)[name] for i in range(len(ROWS))} - {None}
    assert len(values) >= 2
    for value in sorted(values):
        listed = await scores.list_scores(**{name: value})
        assert ids(listed) == expected_ids(**{name: value}), value
        assert listed.total == len(listed.items) > 0
        assert all(getattr(s, name) == value for s in listed.items)
    if name != "source":  # source only takes LIVE/TEST (an unknown one is a ValidationError)
        assert ids(await scores.list_scores(**{name: "no-such-value"})) == []


async def test_filters_spelled_out(scores: ScoresStore) -> None:
    """A few filter results written by hand (not only via ``expected_ids``)."""
    await seed_rows(scores)
    assert ids(await scores.list_scores(scorer_id="relevance")) == ["a6", "a4", "a1", "a0"]
    assert ids(await scores.list_scores(source="TEST")) == ["a8", "a7", "a4", "a1"]
    assert ids(await scores.list_scores(entity_type="WORKFLOW")) == ["a8", "a2"]
    assert ids(await scores.list_scores(span_id="sp-1")) == ["a6", "a5", "a2", "a0"]
    assert ids(await scores.list_scores(scorer_id="relevance", source="LIVE")) == ["a6", "a0"]
    assert ids(await scores.list_scores(trace_id="tr-1", span_id="sp-1")) == ["a6", "a0"]
    assert ids(await scores.list_scores(entity_id="x-1", entity_type="AGENT")) == ["a6"]
    assert ids(await scores.list_scores(run_id="run-1", entity_id="agent-1", source="TEST")) == [
        "a1"
    ]


async def test_every_pair_of_filters_is_an_and(scores: ScoresStore) -> None:
    """Each pair of filters, with values taken from one row: that row is always found, and
    the result is exactly the rows matching both."""
    await seed_rows(scores)
    for first, second in itertools.combinations(FILTERS, 2):
        for i in range(len(ROWS)):
            row = row_dict(i)
            if row[first] is None or row[second] is None:
                continue
            given = {first: row[first], second: row[second]}
            found = ids(await scores.list_scores(**given))
            assert row["id"] in found, given
            assert found == expected_ids(**given), given


async def test_contradicting_filters_find_nothing(scores: ScoresStore) -> None:
    await seed_rows(scores)
    assert ids(await scores.list_scores(scorer_id="faithfulness", run_id="run-1")) == []
    assert ids(await scores.list_scores(trace_id="tr-3", span_id="sp-3")) == []
    every = {k: v for k, v in row_dict(3).items() if k != "id"}
    assert ids(await scores.list_scores(**every)) == ["a3"]
    assert ids(await scores.list_scores(**{**every, "source": "TEST"})) == []


async def test_start_and_end_are_inclusive(scores: ScoresStore) -> None:
    await seed_rows(scores)
    assert ids(await scores.list_scores(start=created(6))) == ["a8", "a7", "a6"]
    assert ids(await scores.list_scores(end=created(2))) == ["a2", "a1", "a0"]
    assert ids(await scores.list_scores(start=created(3), end=created(5))) == ["a5", "a4", "a3"]
    assert ids(await scores.list_scores(start=created(4), end=created(4))) == ["a4"]
    one_us = timedelta(microseconds=1)
    assert ids(await scores.list_scores(start=created(4) + one_us, end=created(5) - one_us)) == []
    assert ids(await scores.list_scores(start=created(8) + one_us)) == []
    assert ids(await scores.list_scores(end=created(0) - one_us)) == []


async def test_start_and_end_in_another_time_zone_mean_the_same_instants(
    scores: ScoresStore,
) -> None:
    await seed_rows(scores)
    start, end = created(3).astimezone(PLUS_TWO), created(5).astimezone(PLUS_TWO)
    assert ids(await scores.list_scores(start=start, end=end)) == ["a5", "a4", "a3"]


async def test_time_range_combines_with_filters(scores: ScoresStore) -> None:
    await seed_rows(scores)
    assert ids(
        await scores.list_scores(scorer_id="relevance", start=created(1), end=created(6))
    ) == ["a6", "a4", "a1"]
    for i, j in itertools.combinations(range(len(ROWS)), 2):
        for name in ("source", "entity_type"):
            value = row_dict(i)[name]
            if value is None:  # None means "no filter", not "IS NULL"
                continue
            found = ids(await scores.list_scores(start=created(i), end=created(j), **{name: value}))
            assert found == expected_ids(start=created(i), end=created(j), **{name: value})


# -- list_scores: pages and order -------------------------------------------------------------
async def seed_span(scores: ScoresStore) -> None:
    """Five scores of span (tr-1, sp-1), created 1 s apart, and noise around them."""
    for i in (3, 0, 4, 2, 1):
        await scores.save_score(
            Score(
                id=f"s{i}",
                scorer_id=f"scorer-{i % 2}",
                score=float(i),
                trace_id="tr-1",
                span_id="sp-1",
                created_at=T0 + timedelta(seconds=i),
            )
        )
    noise = [("n0", "tr-1", "sp-2"), ("n1", "tr-2", "sp-1"), ("n2", None, None)]
    for n, (sid, trace, span) in enumerate(noise):
        await scores.save_score(
            Score(
                id=sid,
                scorer_id="scorer-0",
                score=0.5,
                trace_id=trace,
                span_id=span,
                created_at=T0 + timedelta(seconds=2, milliseconds=n + 1),
            )
        )


async def test_five_scores_of_one_span_in_pages_of_two(scores: ScoresStore) -> None:
    await seed_span(scores)
    pages = [
        await scores.list_scores(trace_id="tr-1", span_id="sp-1", page=p, per_page=2)
        for p in range(3)
    ]
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [p.has_more for p in pages] == [True, True, False]
    assert [p.total for p in pages] == [5, 5, 5]
    assert [(p.page, p.per_page) for p in pages] == [(0, 2), (1, 2), (2, 2)]
    assert [ids(p) for p in pages] == [["s4", "s3"], ["s2", "s1"], ["s0"]]
    past = await scores.list_scores(trace_id="tr-1", span_id="sp-1", page=3, per_page=2)
    assert (past.items, past.total, past.has_more) == ([], 5, False)


async def test_span_id_alone_pages_across_traces(scores: ScoresStore) -> None:
    await seed_span(scores)
    pages = [await scores.list_scores(span_id="sp-1", page=p, per_page=2) for p in range(3)]
    assert [ids(p) for p in pages] == [["s4", "s3"], ["n1", "s2"], ["s1", "s0"]]
    assert [p.has_more for p in pages] == [True, True, False]
    assert {p.total for p in pages} == {6}


async def test_ties_on_created_at_are_ordered_by_id_descending(scores: ScoresStore) -> None:
    for sid in ("b", "d", "a", "c"):
        await scores.save_score(Score(id=sid, scorer_id="x", score=1.0, created_at=T0))
    await scores.save_score(Score(id="e", scorer_id="x", score=1.0, created_at=T0 - timedelta(1)))
    await scores.save_score(Score(id="0", scorer_id="x", score=1.0, created_at=T0 + timedelta(1)))
    assert ids(await scores.list_scores()) == ["0", "d", "c", "b", "a", "e"]
    pages = [await scores.list_scores(page=p, per_page=4) for p in range(2)]
    assert [ids(p) for p in pages] == [["0", "d", "c", "b"], ["a", "e"]]


async def test_per_page_none_lists_everything(scores: ScoresStore) -> None:
    await seed_span(scores)
    everything_ = await scores.list_scores(per_page=None)
    assert ids(everything_) == ["s4", "s3", "n2", "n1", "n0", "s2", "s1", "s0"]
    assert (everything_.total, everything_.per_page, everything_.has_more) == (8, None, False)


async def test_per_page_zero_counts_without_items(scores: ScoresStore) -> None:
    await seed_span(scores)
    counted = await scores.list_scores(span_id="sp-1", per_page=0)
    assert (counted.items, counted.total, counted.per_page, counted.has_more) == ([], 6, 0, True)
    none = await scores.list_scores(scorer_id="nobody", per_page=0)
    assert (none.items, none.total, none.has_more) == ([], 0, False)


async def test_more_than_a_hundred_scores_default_to_pages_of_100(scores: ScoresStore) -> None:
    for i in range(103):
        await scores.save_score(
            Score(id=f"s{i:03d}", scorer_id="x", score=1.0, created_at=T0 + timedelta(seconds=i))
        )
    first = await scores.list_scores()
    assert (len(first.items), first.total, first.per_page, first.has_more) == (100, 103, 100, True)
    assert ids(first)[:2] == ["s102", "s101"]
    assert ids(await scores.list_scores(page=1)) == ["s002", "s001", "s000"]


# -- aggregate_scores -------------------------------------------------------------------------
def random_values(rng: random.Random, n: int) -> list[float]:
    """Scores in [-0.5, 1.5], rounded to 2 decimals so that some repeat (ties)."""
    return [round(rng.uniform(-0.5, 1.5), 2) for _ in range(n)]


async def save_values(scores: ScoresStore, scorer_id: str, values: list[float], **kw: Any) -> None:
    """Value ``i`` gets id ``{scorer_id}-{entity_id or ''}-{i}``, created at T0 + i seconds."""
    for i, value in enumerate(values):
        await scores.save_score(
            Score(
                id=f"{scorer_id}-{kw.get('entity_id') or ''}-{i}",
                scorer_id=scorer_id,
                score=value,
                created_at=T0 + timedelta(seconds=i),
                **kw,
            )
        )


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101])
async def test_aggregates_equal_a_python_computation(scores: ScoresStore, n: int) -> None:
    rng = random.Random(1000 + n)
    values = random_values(rng, n)
    await save_values(scores, "relevance", values)
    for threshold in (-1.0, 0.0, 0.5, 1.0, 2.0, min(values), max(values), values[n // 2]):
        stats = await scores.aggregate_scores(pass_threshold=threshold)
        assert_stats(stats, reference(values, threshold))
    assert_stats(await scores.aggregate_scores(), reference(values, 1.0))  # default threshold


async def test_aggregates_of_hand_picked_values(scores: ScoresStore) -> None:
    """1..10 unordered: mean 5.5, p50 5.5, p95 9.55; threshold 7 passes 7, 8, 9, 10."""
    await save_values(scores, "x", [7.0, 3.0, 10.0, 1.0, 5.0, 9.0, 2.0, 8.0, 4.0, 6.0])
    stats = await scores.aggregate_scores(pass_threshold=7)
    assert stats.count == 10
    assert (stats.mean, stats.p50, stats.p95, stats.pass_rate) == pytest.approx(
        (5.5, 5.5, 9.55, 0.4), rel=1e-9
    )


async def test_threshold_equal_to_a_stored_score_counts_as_pass(scores: ScoresStore) -> None:
    await save_values(scores, "x", [0.1, 0.7, 0.7, 0.9])
    assert (await scores.aggregate_scores(pass_threshold=0.7)).pass_rate == 0.75
    assert (await scores.aggregate_scores(pass_threshold=0.9)).pass_rate == 0.25
    assert (await scores.aggregate_scores(pass_threshold=0.1)).pass_rate == 1.0
    assert (await scores.aggregate_scores(pass_threshold=0.9000000001)).pass_rate == 0.0
    assert (await scores.aggregate_scores()).pass_rate == 0.0  # default threshold 1.0


async def test_default_threshold_is_one(scores: ScoresStore) -> None:
    await save_values(scores, "x", [1.0, 0.999999, 1.5, 0.0])
    assert (await scores.aggregate_scores()).pass_rate == 0.5


async def test_single_score_aggregates(scores: ScoresStore) -> None:
    await save_values(scores, "x", [-2.5])
    assert await scores.aggregate_scores(pass_threshold=-2.5) == ScoreStats(
        1, -2.5, -2.5, -2.5, 1.0
    )


async def test_empty_aggregate(scores: ScoresStore) -> None:
    assert await scores.aggregate_scores() == EMPTY
    assert await scores.aggregate_scores(group_by="scorer_id") == {}
    await save_values(scores, "x", [0.5, 0.6])
    assert await scores.aggregate_scores(scorer_id="nobody") == EMPTY
    assert await scores.aggregate_scores(scorer_id="nobody", group_by="scorer_id") == {}
    assert await scores.aggregate_scores(start=T0 + timedelta(days=1)) == EMPTY


async def seed_groups(scores: ScoresStore) -> dict[tuple[str, str], list[float]]:
    """Three scorers x two entities, random counts and values; created one second apart
    per (scorer, entity)."""
    rng = random.Random(42)
    data: dict[tuple[str, str], list[float]] = {}
    for scorer, entity in itertools.product(("relevance", "toxicity", "f-1"), ("e1", "e2")):
        values = random_values(rng, rng.choice([1, 2, 3, 7, 20]))
        data[(scorer, entity)] = values
        await save_values(scores, scorer, values, entity_id=entity)
    return data


def values_where(
    data: dict[tuple[str, str], list[float]],
    scorer_id: str | None = None,
    entity_id: str | None = None,
    first: int = 0,
    last: int = 10**9,
) -> list[float]:
    """The reference selection; value ``i`` of a group was created at T0 + i seconds."""
    return [
        v
        for (scorer, entity), values in data.items()
        if scorer_id in (None, scorer) and entity_id in (None, entity)
        for i, v in enumerate(values)
        if first <= i <= last
    ]


async def test_grouped_by_scorer_equals_python_per_scorer(scores: ScoresStore) -> None:
    data = await seed_groups(scores)
    for threshold in (0.0, 0.5, 1.0):
        grouped = await scores.aggregate_scores(group_by="scorer_id", pass_threshold=threshold)
        assert set(grouped) == {"relevance", "toxicity", "f-1"}
        for scorer, stats in grouped.items():
            assert_stats(stats, reference(values_where(data, scorer), threshold))
            alone = await scores.aggregate_scores(scorer_id=scorer, pass_threshold=threshold)
            assert_stats(alone, stats)  # equal up to float summation order
        overall = await scores.aggregate_scores(pass_threshold=threshold)
        assert_stats(overall, reference(values_where(data), threshold))
        assert overall.count == sum(s.count for s in grouped.values())


async def test_aggregate_filters_equal_python_selection(scores: ScoresStore) -> None:
    data = await seed_groups(scores)
    start, end = T0 + timedelta(seconds=1), T0 + timedelta(seconds=5)
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"entity_id": "e1"}, {"entity_id": "e1"}),
        (
            {"scorer_id": "toxicity", "entity_id": "e2"},
            {"scorer_id": "toxicity", "entity_id": "e2"},
        ),
        ({"start": start}, {"first": 1}),
        ({"end": end}, {"last": 5}),
        (
            {"start": start, "end": end, "entity_id": "e2"},
            {"first": 1, "last": 5, "entity_id": "e2"},
        ),
        ({"start": end, "end": end}, {"first": 5, "last": 5}),
    ]
    for given, selection in cases:
        stats = await scores.aggregate_scores(pass_threshold=0.5, **given)
        assert_stats(stats, reference(values_where(data, **selection), 0.5))
        grouped = await scores.aggregate_scores(pass_threshold=0.5, group_by="scorer_id", **given)
        expected = {
            scorer: reference(values_where(data, **{**selection, "scorer_id": scorer}), 0.5)
            for scorer in ("relevance", "toxicity", "f-1")
            if selection.get("scorer_id") in (None, scorer)
        }
        expected = {k: v for k, v in expected.items() if v.count}
        assert set(grouped) == set(expected), given
        for scorer, stats in grouped.items():
            assert_stats(stats, expected[scorer])


async def test_aggregate_ignores_other_columns_and_counts_every_source(
    scores: ScoresStore,
) -> None:
    await save_values(scores, "x", [0.2, 0.4], source="TEST", run_id="r1")
    await save_values(scores, "y", [0.6], source="LIVE", trace_id="t", span_id="s")
    assert_stats(await scores.aggregate_scores(pass_threshold=0.3), reference([0.2, 0.4, 0.6], 0.3))


async def test_aggregate_counts_a_re_saved_score_once_with_its_new_value(
    scores: ScoresStore,
) -> None:
    await save_values(scores, "x", [0.1, 0.2, 0.3])
    await scores.save_score(Score(id="x--1", scorer_id="x", score=0.9, created_at=T0))
    assert_stats(await scores.aggregate_scores(pass_threshold=0.5), reference([0.1, 0.9, 0.3], 0.5))
    await scores.save_score(Score(id="x--2", scorer_id="z", score=0.3, created_at=T0))
    grouped = await scores.aggregate_scores(group_by="scorer_id", pass_threshold=0.5)
    assert set(grouped) == {"x", "z"}
    assert_stats(grouped["x"], reference([0.1, 0.9], 0.5))
    assert grouped["z"] == ScoreStats(1, 0.3, 0.3, 0.3, 0.0)


# -- bad input: ValidationError, nothing stored changes ---------------------------------------
async def seed_small(scores: ScoresStore) -> None:
    await scores.save_score(full_score(id="keep", score=0.75))
    await scores.save_score(Score(id="other", scorer_id="tox", score=0.25, created_at=T0))


BAD_SCORE_FIELDS: list[dict[str, Any]] = [
    {"score": float("nan")},
    {"score": float("inf")},
    {"score": float("-inf")},
    {"score": 10**400},
    {"score": -(10**400)},
    {"score": "0.5"},
    {"score": True},
    {"score": False},
    {"score": None},
    {"source": "PROD"},
    {"source": "live"},
    {"source": ""},
    {"source": None},
    {"id": ""},
    {"id": "   "},
    {"id": None},
    {"id": 17},
    {"id": "x" * 2000},
    {"id": "a\x00b"},
    {"id": "x\ud800"},  # a lone surrogate: a str that no UTF-8 database can store
    {"scorer_id": ""},
    {"scorer_id": " \t\n"},
    {"scorer_id": None},
    {"scorer_id": "\udfff"},
    {"run_id": ""},
    {"entity_id": "  "},
    {"entity_type": ""},
    {"trace_id": ""},
    {"span_id": " "},
    {"reason": 3},
    {"reason": "nul \x00 inside"},
    {"reason": "lone \ud800 surrogate"},
    {"metadata_": ["not", "a", "dict"]},
    {"metadata_": {"x": float("nan")}},
    {"metadata_": {"x": object()}},
    {"metadata_": {"x": "lone \ud800 surrogate"}},
    {"metadata_": {"\udfff": 1}},
    {"metadata_": None},
    {"created_at": datetime(2026, 3, 1, 12, 0, 0)},  # naive
    {"created_at": "2026-03-01T12:00:00Z"},
    {"created_at": None},
]


@pytest.mark.parametrize("bad", BAD_SCORE_FIELDS, ids=lambda b: f"{next(iter(b))}={b!r:.40}")
async def test_save_score_rejects_bad_input_and_changes_nothing(
    scores: ScoresStore, bad: dict[str, Any]
) -> None:
    await seed_small(scores)
    before = await everything(scores)
    with pytest.raises(ValidationError):
        await scores.save_score(full_score(**{"id": "new", **bad}))
    with pytest.raises(ValidationError):  # the same on an existing id: no partial replace
        await scores.save_score(full_score(**{"id": "keep", **bad}))
    assert await everything(scores) == before
    assert await scores.get_score("keep") == full_score(id="keep", score=0.75)
    assert await scores.get_score("new") is None


async def test_save_score_rejects_what_is_not_a_score(scores: ScoresStore) -> None:
    await seed_small(scores)
    before = await everything(scores)
    for thing in (None, {"id": "d", "scorer_id": "x", "score": 1.0}, "score"):
        with pytest.raises(ValidationError):
            await scores.save_score(thing)  # type: ignore[arg-type]
    assert await everything(scores) == before


@pytest.mark.parametrize("bad_id", ["", "   ", None, 5, "x" * 2000, "a\x00b", "x\ud800"])
async def test_get_score_rejects_bad_ids(scores: ScoresStore, bad_id: Any) -> None:
    with pytest.raises(ValidationError):
        await scores.get_score(bad_id)


NAIVE = datetime(2026, 3, 1, 12, 0, 0)
BAD_FILTERS: list[dict[str, Any]] = [
    *({name: ""} for name in FILTERS),
    *({name: "  "} for name in FILTERS),
    {"scorer_id": 3},
    {"span_id": "a\x00b"},
    {"run_id": "r\ud800"},
    {"source": "PROD"},
    {"source": "live"},
    {"start": NAIVE},
    {"end": NAIVE},
    {"start": "2026-03-01"},
    {"start": T0, "end": T0 - timedelta(microseconds=1)},
]


@pytest.mark.parametrize("bad", BAD_FILTERS, ids=repr)
async def test_list_scores_rejects_bad_filters(scores: ScoresStore, bad: dict[str, Any]) -> None:
    await seed_small(scores)
    before = await everything(scores)
    with pytest.raises(ValidationError):
        await scores.list_scores(**bad)
    assert await everything(scores) == before


@pytest.mark.parametrize(
    "bad",
    [
        {"page": -1},
        {"per_page": -1},
        {"page": 1.0},
        {"per_page": "2"},
        {"page": True},
        {"page": None},
    ],
    ids=repr,
)
async def test_list_scores_rejects_bad_pages(scores: ScoresStore, bad: dict[str, Any]) -> None:
    await seed_small(scores)
    with pytest.raises(ValidationError):
        await scores.list_scores(**bad)


AGGREGATE_BAD: list[dict[str, Any]] = [
    {"scorer_id": ""},
    {"scorer_id": "   "},
    {"entity_id": ""},
    {"entity_id": 1},
    {"entity_id": "e\ud800"},
    {"start": NAIVE},
    {"end": NAIVE},
    {"start": T0, "end": T0 - timedelta(seconds=1)},
    {"pass_threshold": float("nan")},
    {"pass_threshold": "0.5"},
    {"pass_threshold": None},
    {"pass_threshold": 10**400},
    {"group_by": "entity_id"},
    {"group_by": "scorer"},
    {"group_by": ""},
]


@pytest.mark.parametrize("bad", AGGREGATE_BAD, ids=repr)
async def test_aggregate_scores_rejects_bad_arguments(
    scores: ScoresStore, bad: dict[str, Any]
) -> None:
    await seed_small(scores)
    before = await everything(scores)
    with pytest.raises(ValidationError):
        await scores.aggregate_scores(**bad)
    assert await everything(scores) == before


async def test_validation_error_names_the_argument(scores: ScoresStore) -> None:
    with pytest.raises(ValidationError, match="score"):
        await scores.save_score(full_score(score=float("nan")))
    with pytest.raises(ValidationError, match="source"):
        await scores.save_score(full_score(source="PROD"))
    with pytest.raises(ValidationError, match="source"):
        await scores.list_scores(source="live")
    with pytest.raises(ValidationError, match="pass_threshold"):
        await scores.aggregate_scores(pass_threshold=float("nan"))
    with pytest.raises(ValidationError, match="group_by"):
        await scores.aggregate_scores(group_by="entity_id")  # type: ignore[call-overload]
