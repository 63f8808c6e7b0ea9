"""ObservabilityStore conformance: the same behaviour on SQLite, PostgreSQL and ClickHouse
(SPEC §5, §6 "ObservabilityStore", §7; observability issue).

Only the public API is used. No test relies on a backend's physical row order: ``get_trace``
promises ``started_at`` order (ties by span_id) and ``list_traces`` its ``order_by`` order
(ties by trace_id); everything else is compared as sets or through those orders.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from composite_store import (
    CompositeStore,
    CompositeStoreError,
    NotFoundError,
    Page,
    Trace,
    ValidationError,
)
from composite_store.domains.observability.store import ObservabilityStore
from composite_store.models import Span


@pytest.fixture
def backend(analytical_backend: str) -> str:
    return analytical_backend


T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
US = timedelta(microseconds=1)
MS = timedelta(milliseconds=1)
PLUS_TWO = timezone(timedelta(hours=2))
MINUS_FIVE_THIRTY = timezone(-timedelta(hours=5, minutes=30))
NAIVE = datetime(2026, 3, 1, 12, 0, 0)
FILTERS = (
    "span_type",
    "entity_type",
    "entity_id",
    "entity_name",
    "user_id",
    "resource_id",
    "run_id",
    "session_id",
    "thread_id",
    "environment",
    "service_name",
)
TIME_FIELDS = ("started_at", "ended_at", "created_at", "updated_at")
STATUSES = ("error", "running", "success")


@pytest.fixture
def obs(store: CompositeStore) -> ObservabilityStore:
    return store.observability


def span(trace_id: str, span_id: str = "root", **kw: Any) -> Span:
    """A span of ``trace_id``: a root unless ``parent_span_id`` is given."""
    fields: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "name": f"{trace_id}/{span_id}",
        "started_at": T0,
    }
    fields.update(kw)
    return Span(**fields)


def child(trace_id: str, span_id: str, parent: str = "root", **kw: Any) -> Span:
    """A child span, started 1 ms after its root unless ``started_at`` is given."""
    return span(trace_id, span_id, parent_span_id=parent, **{"started_at": T0 + MS, **kw})


def full_span(**kw: Any) -> Span:
    """A span with every field set: unicode, nested JSON, non-UTC zones, microseconds."""
    fields: dict[str, Any] = {
        "trace_id": "trace-ü-1",
        "span_id": "span-✓-1",
        "parent_span_id": "span-root-日本",
        "name": "llm call «Ünïcödé» 🎯\nline 2, 'quotes' \"and\" \\ backslash",
        "span_type": "LLM_GENERATION",
        "started_at": datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=PLUS_TWO),
        "ended_at": datetime(2026, 3, 1, 6, 30, 1, 654321, tzinfo=MINUS_FIVE_THIRTY),
        "error": {"message": "boom ✗", "details": {"code": 42, "stack": ["a", "b"]}},
        "attributes": {
            "model": "gpt-x",
            "usage": {"input": 12, "output": 34, "cost": 0.0125},
            "tags": ["é", "🎯", None, True, False, 2**53 + 1],
            "deep": {"a": {"b": {"c": [[], {}]}}},
        },
        "input": [{"role": "user", "content": "héllo 👋"}, {"role": "system", "content": ""}],
        "output": {"text": "résumé", "choices": [{"i": 0, "logprob": -0.5}]},
        "entity_type": "AGENT",
        "entity_id": "agent-ß",
        "entity_name": "Weather agent ☀",
        "user_id": "user-1",
        "resource_id": "resource-1",
        "run_id": "run-1",
        "session_id": "session-1",
        "thread_id": "thread-1",
        "environment": "production",
        "service_name": "api-ü",
        "created_at": datetime(2026, 3, 1, 13, 0, 2, 5, tzinfo=PLUS_TWO),
        "updated_at": datetime(2026, 3, 1, 12, 0, 3, 999999, tzinfo=UTC),
    }
    fields.update(kw)
    return Span(**fields)


def as_dict(s: Span) -> dict[str, Any]:
    return {f.name: getattr(s, f.name) for f in dataclasses.fields(Span)}


def changed(s: Span, **kw: Any) -> Span:
    """A new Span like ``s`` with some fields replaced (ids included)."""
    return Span(**{**as_dict(s), **kw})


def assert_utc(s: Span) -> None:
    for name in TIME_FIELDS:
        value = getattr(s, name)
        if value is not None:
            assert isinstance(value, datetime), name
            assert value.utcoffset() == timedelta(0), name


def keys(trace: Trace | None) -> list[str]:
    assert trace is not None
    return [s.span_id for s in trace.spans]


def trace_ids(page: Page[Span]) -> list[str]:
    return [s.trace_id for s in page.items]


async def both_ways(obs: ObservabilityStore, **kw: Any) -> Page[Span]:
    """``list_traces(**kw)``, after checking that the fast path (``with_total=False``, on
    ClickHouse another table) lists the same spans and agrees on ``has_more``."""
    counted = await obs.list_traces(**kw)
    fast = await obs.list_traces(**kw, with_total=False)
    assert (fast.items, fast.has_more, fast.total) == (counted.items, counted.has_more, None)
    return counted


async def everything(obs: ObservabilityStore, *also: str) -> tuple[Any, ...]:
    """What is stored, as the public API sees it: every root (and its status) and every span
    of those traces and of ``also`` (traces a failed call may have touched)."""
    roots = await obs.list_traces(per_page=None, order_by="started_at", descending=False)
    wanted = sorted({s.trace_id for s in roots.items} | set(also))
    traces = {t: await obs.get_trace(t) for t in wanted}
    return [(as_dict(s), s.status) for s in roots.items], roots.total, traces


# -- round trip -------------------------------------------------------------------------------
async def test_every_field_round_trips(obs: ObservabilityStore) -> None:
    """Every field comes back equal; timestamps as aware UTC with their microseconds."""
    await obs.create_span(full_span())
    got = await obs.get_span("trace-ü-1", "span-✓-1")
    assert got is not None
    assert as_dict(got) == as_dict(full_span())
    assert_utc(got)
    assert got.started_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert got.ended_at == datetime(2026, 3, 1, 12, 0, 1, 654321, tzinfo=UTC)
    assert got.created_at == datetime(2026, 3, 1, 11, 0, 2, 5, tzinfo=UTC)
    assert got.updated_at == datetime(2026, 3, 1, 12, 0, 3, 999999, tzinfo=UTC)
    assert [got.started_at.microsecond, got.ended_at.microsecond] == [123456, 654321]
    assert got.attributes["tags"][-1] == 2**53 + 1 and type(got.attributes["tags"][-1]) is int
    assert got.status == "error"
    trace = await obs.get_trace("trace-ü-1")
    assert trace is not None and trace.trace_id == "trace-ü-1"
    assert [as_dict(s) for s in trace.spans] == [as_dict(full_span())]
    assert_utc(trace.spans[0])


async def test_root_with_every_field_is_listed_as_stored(obs: ObservabilityStore) -> None:
    root = full_span(parent_span_id=None, error=None)
    await obs.create_span(root)
    page = await obs.list_traces()
    assert [as_dict(s) for s in page.items] == [as_dict(full_span(parent_span_id=None, error=None))]
    assert page.items[0].status == "success"
    assert_utc(page.items[0])


async def test_minimal_span_gets_defaults(obs: ObservabilityStore) -> None:
    before = datetime.now(UTC)
    await obs.create_span(Span(trace_id="t", span_id="s", name="n", started_at=T0))
    got = await obs.get_span("t", "s")
    assert got is not None
    assert [getattr(got, f) for f in FILTERS] == [None] * len(FILTERS)
    assert (got.parent_span_id, got.ended_at, got.error, got.input, got.output) == (None,) * 5
    assert got.attributes == {}
    assert got.status == "running"
    assert_utc(got)
    assert before - timedelta(seconds=5) <= got.created_at <= datetime.now(UTC)
    assert before - timedelta(seconds=5) <= got.updated_at <= datetime.now(UTC)


@pytest.mark.parametrize(
    "value",
    [
        "plain text ü 🎯",
        "",
        ["a", 1, 2.5, None, True, {"b": []}],
        [],
        {"k": {"nested": [1.5, False, None]}, "ü": "日本"},
        {},
        0,
        False,
        # bare numbers and number-like text: SQLite's NUMERIC affinity once stored 1.0 as 1
        # and 2**70 as a rounded float
        1.0,
        -2.5,
        0.1,
        2**70,
        "1.0",
        " 7 ",
        # bare strings the encoder must escape (they take a shortcut past the dict encoder)
        'say "hi" \\ back\\slash /',
        "line\nbreak\ttab\rreturn\x01\x1f\x7f",
        "\u2028\u2029 separators, é, 日本, 🎯",
        '"',
        "\\",
    ],
    ids=repr,
)
async def test_input_and_output_hold_any_json(obs: ObservabilityStore, value: Any) -> None:
    """A JSON string, list, dict or scalar comes back as it went in (not None, not text)."""
    await obs.create_span(span("t", input=value, output=value))
    got = await obs.get_span("t", "root")
    assert got is not None
    assert (got.input, got.output) == (value, value)
    assert (type(got.input), type(got.output)) == (type(value), type(value))


async def test_non_utc_timestamps_are_the_same_instant_in_utc(obs: ObservabilityStore) -> None:
    started = datetime(2026, 3, 1, 6, 30, 0, 1, tzinfo=MINUS_FIVE_THIRTY)
    ended = datetime(2026, 3, 1, 14, 0, 0, 2, tzinfo=PLUS_TWO)
    await obs.create_span(span("t", started_at=started, ended_at=ended))
    got = await obs.get_span("t", "root")
    assert got is not None
    assert got.started_at == datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert got.ended_at == datetime(2026, 3, 1, 12, 0, 0, 2, tzinfo=UTC)
    assert_utc(got)


async def test_get_span_and_get_trace_of_missing_return_none(obs: ObservabilityStore) -> None:
    await obs.create_span(span("t"))
    assert await obs.get_span("t", "nope") is None
    assert await obs.get_span("nope", "root") is None
    assert await obs.get_trace("nope") is None


# -- idempotent creation ----------------------------------------------------------------------
async def test_resending_a_batch_stores_each_span_once(obs: ObservabilityStore) -> None:
    batch = [span("t1"), *(child("t1", f"c{i}", started_at=T0 + (i + 1) * US) for i in range(5))]
    batch.append(span("t2"))
    await obs.batch_create_spans(batch)
    first = await everything(obs)
    await obs.batch_create_spans(batch)
    await obs.batch_create_spans(list(reversed(batch)))
    for s in batch:
        await obs.create_span(s)
    assert await everything(obs) == first
    assert keys(await obs.get_trace("t1")) == ["root", "c0", "c1", "c2", "c3", "c4"]
    assert keys(await obs.get_trace("t2")) == ["root"]
    page = await obs.list_traces()
    assert page.total == 2 and sorted(trace_ids(page)) == ["t1", "t2"]


async def test_batch_mixing_new_and_existing_spans(obs: ObservabilityStore) -> None:
    """In a batch, new spans are added, stored ones replaced by newer versions and kept
    against older ones; nothing is duplicated."""
    stored = [
        span("t", updated_at=T0 + timedelta(seconds=10)),
        child("t", "a", started_at=T0 + US, updated_at=T0 + timedelta(seconds=10)),
        child("t", "b", started_at=T0 + 2 * US, updated_at=T0 + timedelta(seconds=10)),
    ]
    await obs.batch_create_spans(stored)
    before = {s.span_id: as_dict(s) for s in stored}
    newer_a = child(
        "t",
        "a",
        name="renamed",
        started_at=T0 + US,
        attributes={"v": 2},
        updated_at=T0 + timedelta(seconds=11),
    )
    older_root = span(
        "t",
        name="stale root",
        ended_at=T0 + timedelta(seconds=1),
        updated_at=T0 + timedelta(seconds=9),
    )
    await obs.batch_create_spans(
        [
            newer_a,
            child("t", "c", started_at=T0 + 3 * US),
            older_root,
            child("t", "d", started_at=T0 + 4 * US),
        ]
    )
    trace = await obs.get_trace("t")
    assert keys(trace) == ["root", "a", "b", "c", "d"]
    assert trace is not None
    by_id = {s.span_id: as_dict(s) for s in trace.spans}
    assert by_id["a"] == as_dict(newer_a)  # a newer version replaces the whole span
    assert {k: by_id[k] for k in ("root", "b")} == {k: before[k] for k in ("root", "b")}
    assert (await obs.list_traces()).total == 1


async def test_a_re_created_span_is_replaced_only_by_a_newer_version(
    obs: ObservabilityStore,
) -> None:
    """Spans are versioned by updated_at: a re-create stamped older leaves the stored span;
    stamped the same or later, it replaces it (a span sent at its start, then at its end)."""
    original = full_span(parent_span_id=None, error=None)
    await obs.create_span(original)
    expected = as_dict(full_span(parent_span_id=None, error=None))
    other = changed(original, name="other", attributes={}, error={"x": 1}, ended_at=None)

    older = changed(other, updated_at=original.updated_at - timedelta(microseconds=1))
    await obs.create_span(older)
    await obs.batch_create_spans([older, span("t2")])
    got = await obs.get_span(original.trace_id, original.span_id)
    assert got is not None and as_dict(got) == expected

    for updated_at in (original.updated_at, original.updated_at + timedelta(seconds=1)):
        replacement = changed(other, updated_at=updated_at)
        await obs.batch_create_spans([replacement, span("t2")])
        got = await obs.get_span(original.trace_id, original.span_id)
        assert got is not None
        assert as_dict(got) == as_dict(replacement)
        page = await obs.list_traces(per_page=None)
        assert page.total == 2
        assert {s.trace_id: s.status for s in page.items} == {
            original.trace_id: "error",
            "t2": "running",
        }


@pytest.mark.parametrize("stamp", ["same", "newer"])
@pytest.mark.parametrize(
    "moved_to",
    [
        T0 + timedelta(days=62),
        T0 - timedelta(days=62),
        datetime(1901, 1, 1, tzinfo=UTC),
        datetime(2200, 1, 1, tzinfo=UTC),
    ],
    ids=["two-months-later", "two-months-earlier", "1901", "2200"],
)
async def test_a_span_rewritten_with_a_start_in_another_month_is_replaced(
    obs: ObservabilityStore, stamp: str, moved_to: datetime
) -> None:
    """A rewrite whose started_at falls in another month (or outside 1970-2106) still
    replaces the stored span: one span, the new version, everywhere it is read."""
    stored_at = T0 + timedelta(seconds=10)
    await obs.batch_create_spans([span("t", updated_at=stored_at), child("t", "c")])
    rewrite = span(
        "t",
        name="moved",
        started_at=moved_to,
        updated_at=stored_at if stamp == "same" else stored_at + US,
    )
    await obs.batch_create_spans([rewrite])
    got = await obs.get_span("t", "root")
    assert got is not None and as_dict(got) == as_dict(rewrite)
    trace = await obs.get_trace("t")
    assert trace is not None and sorted(keys(trace)) == ["c", "root"]
    page = await obs.list_traces(per_page=None)
    assert (page.total, [s.name for s in page.items]) == (1, ["moved"])
    updated = await obs.update_span("t", "root", started_at=T0)
    assert await obs.get_span("t", "root") == updated
    assert [s.started_at for s in (await obs.list_traces()).items] == [T0]


async def test_a_newer_version_that_leaves_fields_empty_clears_them(
    obs: ObservabilityStore,
) -> None:
    """A batch in which no span sets a field still stores that field as None: a replaced
    span keeps nothing of the old version (the fast paths leave such columns out of the
    INSERT, which must not mean "keep what is stored")."""
    stored = full_span(parent_span_id=None)
    await obs.create_span(stored)
    bare = Span(
        trace_id=stored.trace_id,
        span_id=stored.span_id,
        name="bare",
        started_at=stored.started_at,
        updated_at=stored.updated_at + timedelta(seconds=1),
    )
    await obs.batch_create_spans([bare, span("t2")])  # t2 sets none of bare's empty fields
    got = await obs.get_span(stored.trace_id, stored.span_id)
    assert got is not None and as_dict(got) == as_dict(bare)
    assert got.status == "running"
    for field in FILTERS:
        assert (await obs.list_traces(**{field: getattr(stored, field)})).items == [], field
    assert (await obs.list_traces(status="error")).items == []
    assert sorted(trace_ids(await both_ways(obs, status="running"))) == ["t2", stored.trace_id]


async def test_a_retried_batch_does_not_undo_an_update(obs: ObservabilityStore) -> None:
    """A batch re-sent after ``update_span`` (a writer retry) leaves the update in place."""
    batch = [span("t"), child("t", "c")]
    await obs.batch_create_spans(batch)
    updated = await obs.update_span("t", "root", ended_at=T0 + timedelta(seconds=3))
    await obs.batch_create_spans(batch)
    assert await obs.get_span("t", "root") == updated
    assert [s.status for s in (await obs.list_traces()).items] == ["success"]


async def test_duplicates_within_one_batch_last_one_wins(obs: ObservabilityStore) -> None:
    await obs.batch_create_spans(
        [
            span("t", name="first"),
            child("t", "c", name="c1"),
            span("t", name="second"),
            child("t", "c", name="c2", attributes={"n": 2}),
        ]
    )
    trace = await obs.get_trace("t")
    assert keys(trace) == ["root", "c"]
    assert trace is not None
    assert [s.name for s in trace.spans] == ["second", "c2"]
    assert trace.spans[1].attributes == {"n": 2}


async def test_same_span_id_in_two_traces_are_two_spans(obs: ObservabilityStore) -> None:
    await obs.batch_create_spans([span("t1", name="one"), span("t2", name="two")])
    got = [await obs.get_span(t, "root") for t in ("t1", "t2")]
    assert [s.name if s else None for s in got] == ["one", "two"]


async def test_batch_accepts_an_empty_list_and_any_iterable(obs: ObservabilityStore) -> None:
    await obs.batch_create_spans([])
    assert (await obs.list_traces()).total == 0
    await obs.batch_create_spans(span(f"t{i}") for i in range(3))
    assert sorted(trace_ids(await obs.list_traces())) == ["t0", "t1", "t2"]


# -- update_span ------------------------------------------------------------------------------
async def test_update_span_changes_only_the_given_fields(obs: ObservabilityStore) -> None:
    old = T0 - timedelta(days=30)
    await obs.create_span(full_span(error=None, ended_at=None, created_at=old, updated_at=old))
    ended = datetime(2026, 3, 1, 14, 0, 5, 7, tzinfo=PLUS_TWO)
    before_call = datetime.now(UTC)
    updated = await obs.update_span(
        "trace-ü-1", "span-✓-1", ended_at=ended, output={"answer": "42 ✓"}
    )
    expected = as_dict(full_span(error=None, created_at=old))
    expected.update(ended_at=ended, output={"answer": "42 ✓"})
    assert {k: v for k, v in as_dict(updated).items() if k != "updated_at"} == {
        k: v for k, v in expected.items() if k != "updated_at"
    }
    assert updated.updated_at >= before_call - timedelta(seconds=5)
    got = await obs.get_span("trace-ü-1", "span-✓-1")
    assert got == updated
    assert got is not None
    assert_utc(got)
    assert got.ended_at == datetime(2026, 3, 1, 12, 0, 5, 7, tzinfo=UTC)
    assert got.created_at == old


async def test_update_span_twice_keeps_the_first_change(obs: ObservabilityStore) -> None:
    await obs.create_span(span("t", attributes={"a": 1}, input="q"))
    await obs.update_span("t", "root", attributes={"b": 2})
    second = await obs.update_span("t", "root", output=["x", "y"], span_type="AGENT_RUN")
    got = await obs.get_span("t", "root")
    assert got == second
    assert got is not None
    assert (got.attributes, got.output, got.span_type, got.input) == (
        {"b": 2},
        ["x", "y"],
        "AGENT_RUN",
        "q",
    )
    assert (got.name, got.started_at, got.ended_at) == ("t/root", T0, None)


async def test_update_span_bumps_updated_at(obs: ObservabilityStore) -> None:
    old = T0 - timedelta(days=1)
    await obs.create_span(span("t", updated_at=old, created_at=old))
    first = await obs.update_span("t", "root", name="n1")
    assert first.updated_at > old and first.created_at == old
    second = await obs.update_span("t", "root", name="n2")
    assert second.updated_at >= first.updated_at
    got = await obs.get_span("t", "root")
    assert got is not None and (got.name, got.updated_at) == ("n2", second.updated_at)


async def test_update_span_of_a_span_stamped_in_the_future(obs: ObservabilityStore) -> None:
    """A client clock ahead of ours must not make an update invisible."""
    future = datetime.now(UTC) + timedelta(days=365)
    await obs.create_span(span("t", updated_at=future))
    await obs.update_span("t", "root", name="changed")
    got = await obs.get_span("t", "root")
    assert got is not None and got.name == "changed"
    await obs.update_span("t", "root", name="changed again")
    got = await obs.get_span("t", "root")
    assert got is not None and got.name == "changed again"
    assert keys(await obs.get_trace("t")) == ["root"]


async def test_update_span_can_clear_fields(obs: ObservabilityStore) -> None:
    await obs.create_span(
        span("t", user_id="u", error={"e": 1}, ended_at=T0 + US, input={"a": 1}, output="o")
    )
    got = await obs.update_span("t", "root", user_id=None, error=None, ended_at=None, input=None)
    assert (got.user_id, got.error, got.ended_at, got.input, got.output) == (
        None,
        None,
        None,
        None,
        "o",
    )
    assert await obs.get_span("t", "root") == got
    assert trace_ids(await obs.list_traces(user_id="u")) == []
    assert trace_ids(await obs.list_traces(status="running")) == ["t"]


async def test_status_transitions_show_in_list_traces(obs: ObservabilityStore) -> None:
    """running -> success -> error -> success again (error cleared)."""
    await obs.batch_create_spans([span("t"), child("t", "c")])

    async def statuses() -> tuple[list[str], dict[str, list[str]]]:
        listed = [s.status for s in (await obs.list_traces()).items]
        by_filter = {st: trace_ids(await obs.list_traces(status=st)) for st in STATUSES}
        return listed, by_filter

    assert await statuses() == (["running"], {"running": ["t"], "success": [], "error": []})
    await obs.update_span("t", "root", ended_at=T0 + timedelta(seconds=1))
    assert await statuses() == (["success"], {"running": [], "success": ["t"], "error": []})
    await obs.update_span("t", "root", error={"message": "late failure"})
    assert await statuses() == (["error"], {"running": [], "success": [], "error": ["t"]})
    await obs.update_span("t", "root", error=None)
    assert await statuses() == (["success"], {"running": [], "success": ["t"], "error": []})
    assert keys(await obs.get_trace("t")) == ["root", "c"]


async def test_update_span_can_make_a_child_a_root(obs: ObservabilityStore) -> None:
    await obs.batch_create_spans([span("t"), child("t", "c")])
    await obs.update_span("t", "root", parent_span_id="elsewhere")
    await obs.update_span("t", "c", parent_span_id=None)
    assert [(s.trace_id, s.span_id) for s in (await obs.list_traces()).items] == [("t", "c")]


async def test_update_missing_span_raises_not_found(obs: ObservabilityStore) -> None:
    await obs.create_span(span("t"))
    before = await everything(obs, "nope")
    with pytest.raises(NotFoundError):
        await obs.update_span("t", "nope", name="x")
    with pytest.raises(NotFoundError):
        await obs.update_span("nope", "root", name="x")
    assert await everything(obs, "nope") == before
    assert await obs.get_span("t", "nope") is None


BAD_UPDATES: list[dict[str, Any]] = [
    {"created_at": T0},
    {"updated_at": T0},
    {"status": "success"},
    {"bogus": 1},
    {"ended_at": T0 - US},  # before started_at
    {"started_at": T0 + timedelta(seconds=10) + US},  # after ended_at
    {"ended_at": NAIVE},
    {"started_at": NAIVE},
    {"started_at": None},
    {"ended_at": "2026-03-01T12:00:00Z"},
    {"name": ""},
    {"name": None},
    {"parent_span_id": "  "},
    {"user_id": ""},
    {"service_name": 3},
    {"attributes": {"s": {1, 2}}},
    {"attributes": {"x": float("nan")}},
    {"attributes": ["not", "a", "dict"]},
    {"attributes": None},
    {"error": "not a dict"},
    {"error": {"x": float("inf")}},
    {"input": {1, 2}},
    {"output": object()},
    {"name": "ok", "ended_at": T0 - US},  # one bad field spoils the whole update
]


@pytest.mark.parametrize("bad", BAD_UPDATES, ids=lambda b: f"{b!r:.50}")
async def test_update_span_rejects_bad_fields_and_changes_nothing(
    obs: ObservabilityStore, bad: dict[str, Any]
) -> None:
    await obs.batch_create_spans(
        [span("t", ended_at=T0 + timedelta(seconds=10), attributes={"a": 1}), child("t", "c")]
    )
    before = await everything(obs, "other")
    with pytest.raises(ValidationError):
        await obs.update_span("t", "root", **bad)
    assert await everything(obs, "other") == before


@pytest.mark.parametrize("bad_id", ["", "   ", None, 5, "a\x00b", "x" * 2000])
async def test_id_arguments_are_checked(obs: ObservabilityStore, bad_id: Any) -> None:
    await obs.create_span(span("t"))
    before = await everything(obs)
    for call in (
        obs.get_span(bad_id, "root"),
        obs.get_span("t", bad_id),
        obs.get_trace(bad_id),
        obs.update_span(bad_id, "root", name="x"),
        obs.update_span("t", bad_id, name="x"),
        obs.delete_traces([bad_id]),
        obs.delete_traces(["t", bad_id]),
    ):
        with pytest.raises(ValidationError):
            await call
    assert await everything(obs) == before


# -- get_trace --------------------------------------------------------------------------------
async def test_get_trace_orders_spans_by_started_at_then_span_id(obs: ObservabilityStore) -> None:
    """Microsecond-apart starts and equal starts (ties by span_id), whatever the write order."""
    expected = [
        ("root", T0),
        ("a", T0 + US),
        ("b", T0 + US),
        ("z", T0 + US),
        ("m", T0 + 2 * US),
        ("c", T0 + timedelta(milliseconds=1)),
        ("aa", T0 + timedelta(seconds=1)),
        ("0", T0 + timedelta(days=40)),  # another month (another ClickHouse partition)
    ]
    spans = [
        span("t", sid, started_at=at) if sid == "root" else child("t", sid, started_at=at)
        for sid, at in expected
    ]
    random.Random(7).shuffle(spans)
    await obs.batch_create_spans(spans[:4])
    for s in spans[4:]:
        await obs.create_span(s)
    await obs.create_span(child("other", "x", started_at=T0 + US))
    trace = await obs.get_trace("t")
    assert trace is not None and trace.trace_id == "t"
    assert [(s.span_id, s.started_at) for s in trace.spans] == expected
    assert keys(await obs.get_trace("other")) == ["x"]


async def test_started_at_order_uses_the_instant_not_the_zone(obs: ObservabilityStore) -> None:
    """12:00:00.000002 UTC written as 14:00 +02:00 sorts after 06:30:00.000001 -05:30."""
    await obs.batch_create_spans(
        [
            child("t", "a", started_at=datetime(2026, 3, 1, 14, 0, 0, 2, tzinfo=PLUS_TWO)),
            child("t", "b", started_at=datetime(2026, 3, 1, 6, 30, 0, 1, tzinfo=MINUS_FIVE_THIRTY)),
            child("t", "c", started_at=datetime(2026, 3, 1, 12, 0, 0, 3, tzinfo=UTC)),
        ]
    )
    assert keys(await obs.get_trace("t")) == ["b", "a", "c"]


# -- list_traces: roots, filters, status, range ------------------------------------------------


async def test_list_traces_lists_root_spans_only(obs: ObservabilityStore) -> None:
    await obs.batch_create_spans(
        [
            span("t1"),
            child("t1", "c1"),
            child("t1", "c2", parent="c1"),
            span("t2", started_at=T0 + US),
            child("t2", "c1"),
            child("t3", "orphan", parent="missing"),  # a trace whose root is not there (yet)
        ]
    )
    page = await both_ways(obs)
    assert [(s.trace_id, s.span_id) for s in page.items] == [("t2", "root"), ("t1", "root")]
    assert all(s.parent_span_id is None for s in page.items)
    assert (page.total, page.page, page.per_page, page.has_more) == (2, 0, 100, False)


@pytest.mark.parametrize("field", FILTERS)
async def test_each_filter_alone(obs: ObservabilityStore, field: str) -> None:
    """Matches the root's own value: not a child's, not another value, not NULL."""
    await obs.batch_create_spans(
        [
            span("hit", **{field: "wanted ü"}, started_at=T0),
            span("hit2", **{field: "wanted ü"}, started_at=T0 + US),
            span("other", **{field: "wanted"}),
            span("upper", **{field: "WANTED Ü"}),
            span("null"),
            span("child-only"),
            child("child-only", "c", **{field: "wanted ü"}),
            child("hit", "c", **{field: "something else"}),
        ]
    )
    page = await both_ways(obs, **{field: "wanted ü"})
    assert trace_ids(page) == ["hit2", "hit"]
    assert page.total == 2
    assert all(getattr(s, field) == "wanted ü" for s in page.items)
    assert trace_ids(await both_ways(obs, **{field: "absent"})) == []
    assert (await both_ways(obs, **{field: None})).total == 6  # None: no filter


async def test_filter_values_are_matched_whole(obs: ObservabilityStore) -> None:
    """A value holding "=" or quotes is one value: neither a prefix of it nor another field's
    value matches (ClickHouse's index keeps the filters as "name=value" tags)."""
    await obs.batch_create_spans(
        [
            span("eq", user_id="a=b", environment="user_id=a"),
            span("plain", user_id="a"),
            span("quoted", user_id="it's \\ 'x'"),
        ]
    )
    assert trace_ids(await both_ways(obs, user_id="a=b")) == ["eq"]
    assert trace_ids(await both_ways(obs, user_id="a")) == ["plain"]
    assert trace_ids(await both_ways(obs, environment="user_id=a")) == ["eq"]
    assert trace_ids(await both_ways(obs, user_id="it's \\ 'x'")) == ["quoted"]
    assert trace_ids(await both_ways(obs, environment="a")) == []


async def test_filters_combine_with_and(obs: ObservabilityStore) -> None:
    combos = [
        ("t1", "u1", "prod", "AGENT", "svc"),
        ("t2", "u1", "prod", "WORKFLOW", "svc"),
        ("t3", "u1", "dev", "AGENT", "svc"),
        ("t4", "u2", "prod", "AGENT", "svc"),
        ("t5", "u1", "prod", "AGENT", None),
        ("t6", "u1", "prod", "AGENT", "svc"),
    ]
    await obs.batch_create_spans(
        span(
            t, user_id=u, environment=env, entity_type=et, service_name=svc, started_at=T0 + i * US
        )
        for i, (t, u, env, et, svc) in enumerate(combos)
    )
    await obs.update_span("t6", "root", error={"e": 1})
    page = await both_ways(obs, user_id="u1", environment="prod", entity_type="AGENT")
    assert trace_ids(page) == ["t6", "t5", "t1"]
    page = await both_ways(
        obs, user_id="u1", environment="prod", entity_type="AGENT", service_name="svc"
    )
    assert trace_ids(page) == ["t6", "t1"]
    page = await both_ways(
        obs,
        user_id="u1",
        environment="prod",
        entity_type="AGENT",
        service_name="svc",
        status="error",
    )
    assert trace_ids(page) == ["t6"]
    assert trace_ids(await both_ways(obs, user_id="u2", environment="dev")) == []
    page = await both_ways(
        obs, user_id="u1", start=T0 + US, end=T0 + 3 * US, order_by="started_at", descending=False
    )
    assert trace_ids(page) == ["t2", "t3"]


@pytest.mark.parametrize("status", STATUSES)
async def test_status_filter(obs: ObservabilityStore, status: str) -> None:
    """error: error set (ended or not); running: no error, not ended; success: ended, no error."""
    end = T0 + timedelta(seconds=1)
    await obs.batch_create_spans(
        [
            span("running"),
            span("success", ended_at=end),
            span("error-ended", ended_at=end, error={"message": "x"}),
            span("error-running", error={"message": "y"}),
            span("error-empty", error={}, ended_at=end),  # an empty error dict is still an error
            span("child-error", ended_at=end),
            child("child-error", "c", error={"message": "child"}),  # the root decides
        ]
    )
    expected = {
        "error": {"error-ended", "error-running", "error-empty"},
        "running": {"running"},
        "success": {"success", "child-error"},
    }
    page = await both_ways(obs, status=status, per_page=None)
    assert set(trace_ids(page)) == expected[status]
    assert page.total == len(expected[status])
    assert {s.status for s in page.items} == {status}
    everyone = await both_ways(obs)
    assert {s.trace_id: s.status for s in everyone.items} == {
        t: st for st, ts in expected.items() for t in ts
    }


async def test_start_and_end_are_inclusive_on_started_at(obs: ObservabilityStore) -> None:
    def at(i: int) -> datetime:
        return T0 + timedelta(minutes=i, microseconds=i)

    await obs.batch_create_spans(
        [
            *(
                span(f"t{i}", started_at=at(i), ended_at=at(i) + timedelta(days=1))
                for i in range(6)
            ),
            child("t9", "late-child", started_at=at(3)),  # not a root: never listed
        ]
    )

    async def listed(**kw: Any) -> list[str]:
        return trace_ids(await both_ways(obs, order_by="started_at", descending=False, **kw))

    assert await listed(start=at(2), end=at(4)) == ["t2", "t3", "t4"]
    assert await listed(start=at(2) + US, end=at(4) - US) == ["t3"]
    assert await listed(start=at(2) - US, end=at(4) + US) == ["t2", "t3", "t4"]
    assert await listed(start=at(3), end=at(3)) == ["t3"]
    assert await listed(start=at(3) + US, end=at(3) + US) == []
    assert await listed(start=at(4)) == ["t4", "t5"]
    assert await listed(end=at(1)) == ["t0", "t1"]
    local = await listed(start=at(2).astimezone(PLUS_TWO), end=at(4).astimezone(MINUS_FIVE_THIRTY))
    assert local == ["t2", "t3", "t4"]
    page = await both_ways(obs, start=at(1), end=at(4), per_page=2)
    assert (trace_ids(page), page.total, page.has_more) == (["t4", "t3"], 4, True)


async def test_instants_before_1970_keep_their_microseconds(obs: ObservabilityStore) -> None:
    """Times before the epoch, with microseconds, round-trip and sort by instant (PostgreSQL's
    batches carry them as negative microseconds, whose division and remainder must agree)."""
    times = [
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(1901, 1, 1, 0, 0, 0, 500000, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    ]
    await obs.batch_create_spans(
        [span(f"t{i}", started_at=t, ended_at=t + US) for i, t in enumerate(times)]
    )
    for i, t in enumerate(times):
        got = await obs.get_span(f"t{i}", "root")
        assert got is not None and (got.started_at, got.ended_at) == (t, t + US)
    page = await obs.list_traces(order_by="started_at", descending=False)
    assert trace_ids(page) == ["t2", "t1", "t0", "t3"]


async def test_the_first_and_last_instants_are_found_and_compared_as_stored(
    obs: ObservabilityStore,
) -> None:
    """Spans at ``datetime.min``/``datetime.max`` (UTC) are found by filters at those
    instants, and a batch re-sent after ``update_span`` at ``datetime.max`` still replaces
    it (same ``updated_at``): every write path stores those instants alike (on PostgreSQL a
    parameter binds them as -/+infinity, so a batch's arrays must too)."""
    first, last = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    await obs.batch_create_spans(
        [span("first", started_at=first), span("mid"), span("last", started_at=last)]
    )

    async def listed(**kw: Any) -> list[str]:
        return trace_ids(await both_ways(obs, order_by="started_at", descending=False, **kw))

    assert await listed(start=last) == ["last"]
    assert await listed(end=first) == ["first"]
    assert await listed(start=first, end=last) == ["first", "mid", "last"]
    got = await obs.get_span("last", "root")
    assert got is not None and got.started_at == last

    await obs.batch_create_spans([span("u", updated_at=last)])
    await obs.update_span("u", "root", name="updated")  # updated_at stays at the last instant
    await obs.batch_create_spans([span("u", updated_at=last, name="re-sent")])
    got = await obs.get_span("u", "root")
    assert got is not None and (got.name, got.updated_at) == ("re-sent", last)


# -- list_traces: pages and order -------------------------------------------------------------
async def test_list_traces_pages(obs: ObservabilityStore) -> None:
    """7 traces at 3 a page: 3/3/1, has_more True/True/False, total 7, newest first."""
    await obs.batch_create_spans(
        [
            *(span(f"t{i}", started_at=T0 + timedelta(seconds=i)) for i in range(7)),
            *(child(f"t{i}", "c", started_at=T0 + timedelta(seconds=i)) for i in range(7)),
        ]
    )
    pages = [await obs.list_traces(page=p, per_page=3) for p in range(3)]
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert [p.has_more for p in pages] == [True, True, False]
    assert [p.total for p in pages] == [7, 7, 7]
    assert [(p.page, p.per_page) for p in pages] == [(0, 3), (1, 3), (2, 3)]
    assert [t for p in pages for t in trace_ids(p)] == [f"t{i}" for i in reversed(range(7))]
    beyond = await obs.list_traces(page=3, per_page=3)
    assert (trace_ids(beyond), beyond.total, beyond.has_more) == ([], 7, False)
    everything_ = await obs.list_traces(per_page=None)
    assert (len(everything_.items), everything_.total, everything_.has_more) == (7, 7, False)
    none = await obs.list_traces(per_page=0)
    assert (none.items, none.total) == ([], 7)
    exact = await obs.list_traces(per_page=7)
    assert (len(exact.items), exact.total, exact.has_more) == (7, 7, False)


async def test_list_traces_without_total(obs: ObservabilityStore) -> None:
    """with_total=False: the same items, no total, has_more from one row past the page."""
    await obs.batch_create_spans(
        [
            *(span(f"t{i}", started_at=T0 + timedelta(seconds=i)) for i in range(7)),
            *(child(f"t{i}", "c", started_at=T0 + timedelta(seconds=i)) for i in range(7)),
        ]
    )
    for number, more in ((0, True), (1, True), (2, False), (3, False)):
        counted = await obs.list_traces(page=number, per_page=3)
        fast = await obs.list_traces(page=number, per_page=3, with_total=False)
        assert trace_ids(fast) == trace_ids(counted)
        assert (fast.total, fast.has_more, fast.page, fast.per_page) == (None, more, number, 3)
    exact = await obs.list_traces(per_page=7, with_total=False)
    assert (len(exact.items), exact.total, exact.has_more) == (7, None, False)
    every = await obs.list_traces(per_page=None, with_total=False)
    assert (len(every.items), every.total, every.has_more) == (7, None, False)
    none = await obs.list_traces(per_page=0, with_total=False)
    assert (none.items, none.total, none.has_more) == ([], None, True)
    failed = await obs.list_traces(status="error", per_page=2, with_total=False)
    assert (failed.items, failed.total, failed.has_more) == ([], None, False)
    running = await obs.list_traces(status="running", per_page=6, with_total=False)
    assert (trace_ids(running), running.has_more) == (["t6", "t5", "t4", "t3", "t2", "t1"], True)
    oldest = await obs.list_traces(descending=False, per_page=2, with_total=False)
    assert (trace_ids(oldest), oldest.has_more) == (["t0", "t1"], True)


async def test_list_traces_counts_what_its_filters_match_past_a_full_page(
    obs: ObservabilityStore,
) -> None:
    """A full page does not tell the total, so it is counted: by every filter, and without
    a root rewritten as a child (on ClickHouse the page and the count read different
    tables; both must agree with the page's items and ``has_more``)."""
    await obs.batch_create_spans(
        [
            span("a", user_id="u1", started_at=T0),
            span("b", user_id="u1", started_at=T0 + US),
            span("c", user_id="u1", started_at=T0 + 2 * US),
            span("d", user_id="u2", started_at=T0 + 3 * US),
            span("gone", user_id="u1", started_at=T0 + 4 * US),
        ]
    )
    await obs.update_span("gone", "root", parent_span_id="elsewhere")  # a child now
    await obs.update_span("c", "root", error={"e": 1})
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"user_id": "u1"}, ["c", "b", "a"]),
        ({"user_id": "u1", "status": "error"}, ["c"]),
        ({"user_id": "u1", "status": "running"}, ["b", "a"]),
        ({"start": T0 + US, "end": T0 + 3 * US}, ["d", "c", "b"]),
        ({}, ["d", "c", "b", "a"]),
    ]
    for filters, expected in cases:
        for number in range(len(expected) + 1):
            page = await both_ways(obs, page=number, per_page=1, **filters)
            assert trace_ids(page) == expected[number : number + 1], (filters, number)
            assert page.total == len(expected), (filters, number)
            assert page.has_more == (number + 1 < len(expected)), (filters, number)


async def test_list_traces_without_total_follows_rewrites_updates_and_deletes(
    obs: ObservabilityStore,
) -> None:
    """The page without a total shows each trace's newest root version only: a root
    rewritten as a child leaves the list (the page is filled from older roots), a child
    rewritten as a root joins it, an update shows, a delete removes. (ClickHouse reads a
    table of root spans here, which must agree with the spans table.)"""
    await obs.batch_create_spans(
        [span(f"t{i}", started_at=T0 + timedelta(seconds=i)) for i in range(8)]
    )
    later = datetime.now(UTC) + timedelta(hours=1)  # newer than the first versions
    await obs.batch_create_spans(  # t7..t4's roots become children of another span
        [span(f"t{i}", parent_span_id="other", updated_at=later) for i in range(4, 8)]
    )
    await obs.batch_create_spans(
        [child("t9", "root", started_at=T0 - timedelta(days=1), updated_at=T0)]
    )  # stays a child: never listed
    await obs.batch_create_spans([span("t9", "root", started_at=T0 + US, updated_at=later)])
    await obs.update_span("t3", "root", name="renamed")
    await obs.delete_traces(["t2"])
    for fast in (False, True):
        with_total = not fast
        first = await obs.list_traces(per_page=2, with_total=with_total)
        second = await obs.list_traces(page=1, per_page=2, with_total=with_total)
        assert (trace_ids(first), first.has_more) == (["t3", "t1"], True)
        assert (trace_ids(second), second.has_more) == (["t9", "t0"], False)
        assert first.items[0].name == "renamed"
        every = await obs.list_traces(per_page=None, with_total=with_total)
        assert trace_ids(every) == ["t3", "t1", "t9", "t0"]


async def test_list_traces_a_rewrite_with_the_same_updated_at_wins(obs: ObservabilityStore) -> None:
    """A span written again with an equal ``updated_at`` replaces the stored one (ClickHouse:
    the version inserted last, which only FINAL knows; its fast path reads without FINAL and
    must agree): a root rewritten as a child leaves the list, a child rewritten as a root
    joins it, a root rewritten under a new name shows it. With and without the total."""
    at = T0 + timedelta(hours=1)
    starts = {f"t{i}": T0 + timedelta(seconds=i) for i in range(5)}
    await obs.batch_create_spans(
        [span(t, started_at=starts[t], updated_at=at) for t in ("t0", "t1", "t2")]
    )
    await obs.batch_create_spans([child("t4", "root", started_at=starts["t4"], updated_at=at)])
    await obs.batch_create_spans(
        [span("t0", parent_span_id="other", started_at=starts["t0"], updated_at=at)]
    )
    await obs.batch_create_spans([span("t4", started_at=starts["t4"], updated_at=at)])
    await obs.batch_create_spans(
        [span("t1", name="renamed", started_at=starts["t1"], updated_at=at)]
    )
    for with_total in (True, False):
        listed = await obs.list_traces(per_page=None, with_total=with_total)
        assert trace_ids(listed) == ["t4", "t2", "t1"]
        assert [s.name for s in listed.items] == ["t4/root", "t2/root", "renamed"]
        first = await obs.list_traces(per_page=1, with_total=with_total)
        assert (trace_ids(first), first.has_more) == (["t4"], True)


async def test_list_traces_filters_see_a_rewrite_with_the_same_updated_at(
    obs: ObservabilityStore,
) -> None:
    """A root rewritten with an equal ``updated_at`` and other filter values or status is
    listed by what it holds now, not by the version it replaced (ClickHouse's index keeps
    both versions' filters; only FINAL knows which one was inserted last)."""
    at = T0 + timedelta(hours=1)
    await obs.batch_create_spans(
        [span(t, user_id="u1", ended_at=None, updated_at=at) for t in ("moved", "kept")]
    )
    await obs.batch_create_spans(
        [span("moved", user_id="u2", ended_at=T0 + timedelta(minutes=1), updated_at=at)]
    )
    assert trace_ids(await both_ways(obs, user_id="u1")) == ["kept"]
    assert trace_ids(await both_ways(obs, user_id="u2")) == ["moved"]
    assert trace_ids(await both_ways(obs, status="running")) == ["kept"]
    assert trace_ids(await both_ways(obs, status="success", user_id="u2")) == ["moved"]


async def test_order_by_started_at_both_ways_ties_by_trace_id(obs: ObservabilityStore) -> None:
    starts = {"a": T0 + US, "b": T0, "c": T0 + US, "d": T0 + 2 * US, "e": T0 - timedelta(days=40)}
    await obs.batch_create_spans(span(t, started_at=at) for t, at in starts.items())
    desc = await both_ways(obs)
    assert trace_ids(desc) == ["d", "c", "a", "b", "e"]
    assert trace_ids(await both_ways(obs, order_by="started_at", descending=True)) == trace_ids(
        desc
    )
    asc = await both_ways(obs, order_by="started_at", descending=False)
    assert trace_ids(asc) == ["e", "b", "a", "c", "d"]
    paged = [await both_ways(obs, descending=False, page=p, per_page=2) for p in range(3)]
    assert [t for p in paged for t in trace_ids(p)] == ["e", "b", "a", "c", "d"]


async def test_order_by_ended_at_puts_running_first_descending_last_ascending(
    obs: ObservabilityStore,
) -> None:
    ends: dict[str, datetime | None] = {
        "a": T0 + timedelta(seconds=5),
        "b": None,
        "c": T0 + timedelta(seconds=5),
        "d": T0 + timedelta(seconds=5) + US,
        "e": None,
        "f": T0 + timedelta(seconds=1),
        "g": T0 + timedelta(seconds=9),
    }
    await obs.batch_create_spans(
        span(t, started_at=T0 + i * US if end is None else T0, ended_at=end)
        for i, (t, end) in enumerate(ends.items())
    )
    await obs.update_span("g", "root", error={"failed": True})  # ended with an error
    desc = await both_ways(obs, order_by="ended_at")
    assert trace_ids(desc) == ["e", "b", "g", "d", "c", "a", "f"]
    assert [s.status for s in desc.items][:3] == ["running", "running", "error"]
    asc = await both_ways(obs, order_by="ended_at", descending=False)
    assert trace_ids(asc) == ["f", "a", "c", "d", "g", "b", "e"]
    pages = [await both_ways(obs, order_by="ended_at", page=p, per_page=3) for p in range(3)]
    assert [t for p in pages for t in trace_ids(p)] == trace_ids(desc)
    assert [p.total for p in pages] == [7, 7, 7]
    running = await both_ways(obs, order_by="ended_at", status="running", descending=False)
    assert trace_ids(running) == ["b", "e"]


async def test_a_trace_that_ends_moves_in_ended_at_order(obs: ObservabilityStore) -> None:
    await obs.batch_create_spans(
        [span("a", ended_at=T0 + timedelta(seconds=1)), span("b"), span("c", ended_at=T0 + US)]
    )
    assert trace_ids(await both_ways(obs, order_by="ended_at")) == ["b", "a", "c"]
    await obs.update_span("b", "root", ended_at=T0 + timedelta(seconds=1))
    assert trace_ids(await both_ways(obs, order_by="ended_at")) == ["b", "a", "c"]
    await obs.update_span("b", "root", ended_at=T0 + 2 * US)
    assert trace_ids(await both_ways(obs, order_by="ended_at")) == ["a", "b", "c"]
    assert trace_ids(await both_ways(obs, order_by="ended_at", descending=False)) == [
        "c",
        "b",
        "a",
    ]


# -- delete_traces ----------------------------------------------------------------------------
async def test_delete_traces_removes_every_span_of_those_traces_only(
    obs: ObservabilityStore,
) -> None:
    await obs.batch_create_spans(
        [
            *(span(t) for t in ("t1", "t2", "t3", "t4")),
            *(child(t, f"c{i}") for t in ("t1", "t2", "t3", "t4") for i in range(3)),
            child("orphan", "x", parent="gone"),
        ]
    )
    keep = {t: await obs.get_trace(t) for t in ("t2", "t4", "orphan")}
    await obs.delete_traces(["t1", "t3", "missing"])
    assert await obs.get_trace("t1") is None and await obs.get_trace("t3") is None
    assert await obs.get_span("t1", "c0") is None
    assert {t: await obs.get_trace(t) for t in ("t2", "t4", "orphan")} == keep
    page = await both_ways(obs)
    assert sorted(trace_ids(page)) == ["t2", "t4"] and page.total == 2
    await obs.delete_traces(["t1", "t3"])  # again: nothing to do, no error
    await obs.delete_traces([])
    await obs.delete_traces(("orphan",))
    assert await obs.get_trace("orphan") is None
    assert {t: await obs.get_trace(t) for t in ("t2", "t4")} == {t: keep[t] for t in ("t2", "t4")}


async def test_delete_traces_takes_a_long_list(obs: ObservabilityStore) -> None:
    """40,000 ids of 200 characters (8 MB of id text, past ClickHouse's 256 KiB query size
    limit): the listed traces at both ends of the list go, the others stay."""
    ids = [f"{i:0200d}" for i in range(40_000)]
    await obs.batch_create_spans([span(ids[0]), span(ids[-1]), span("kept"), child("kept", "c")])
    await obs.delete_traces(ids)
    assert await obs.get_trace(ids[0]) is None and await obs.get_trace(ids[-1]) is None
    assert trace_ids(await both_ways(obs)) == ["kept"]
    assert keys(await obs.get_trace("kept")) == ["root", "c"]


async def test_a_deleted_trace_can_be_created_again(obs: ObservabilityStore) -> None:
    await obs.batch_create_spans([span("t", name="old"), child("t", "c")])
    await obs.delete_traces(["t"])
    await obs.create_span(span("t", name="new"))
    trace = await obs.get_trace("t")
    assert keys(trace) == ["root"]
    assert trace is not None and trace.spans[0].name == "new"


async def test_delete_traces_rejects_a_single_string(obs: ObservabilityStore) -> None:
    await obs.create_span(span("t"))
    with pytest.raises(ValidationError):
        await obs.delete_traces("t")
    assert keys(await obs.get_trace("t")) == ["root"]


# -- bad input: ValidationError, nothing written ----------------------------------------------
BAD_SPAN_FIELDS: list[dict[str, Any]] = [
    {"trace_id": None},
    {"trace_id": ""},
    {"trace_id": "   "},
    {"trace_id": 7},
    {"trace_id": "a\x00b"},
    {"span_id": None},
    {"span_id": ""},
    {"span_id": "\t\n"},
    {"span_id": "x" * 2000},
    {"name": ""},
    {"name": None},
    {"parent_span_id": ""},
    {"span_type": " "},
    {"user_id": ""},
    {"environment": 3},
    {"ended_at": T0 - US},  # before started_at
    {"ended_at": T0 - timedelta(days=1)},
    {"started_at": datetime(2026, 3, 1, 14, 0, 0, 123457, tzinfo=PLUS_TWO), "ended_at": T0},
    {"started_at": NAIVE},
    {"ended_at": NAIVE},
    {"created_at": NAIVE},
    {"updated_at": NAIVE},
    {"started_at": None},
    {"started_at": "2026-03-01T12:00:00Z"},
    {"ended_at": 1_700_000_000},
    {"attributes": {"tags": {"a", "b"}}},
    {"attributes": {"x": float("nan")}},
    {"attributes": {"x": float("inf")}},
    {"attributes": {"x": object()}},
    {"attributes": ["not", "a", "dict"]},
    {"attributes": "text"},
    {"attributes": None},
    {"attributes": {"nul": "a\x00b"}},
    {"error": "not a dict"},
    {"error": {"x": float("nan")}},
    {"input": {1, 2}},
    {"input": float("nan")},
    {"input": "a\x00b"},  # a bare string: NUL, which PostgreSQL refuses, still caught
    {"output": "lone \ud800 surrogate"},
    {"output": b"bytes"},
    {"output": {"when": T0}},
]


def bad_id(bad: dict[str, Any]) -> str:
    return f"{bad!r:.60}"


def new_spans() -> list[Span]:
    """A good batch around the bad span: a new root, a child of it, a span of a stored trace."""
    return [span("new"), child("new", "c1"), child("keep", "c-new")]


async def seed_small(obs: ObservabilityStore) -> None:
    await obs.batch_create_spans([span("keep", ended_at=T0 + US), child("keep", "c")])


@pytest.mark.parametrize("bad", BAD_SPAN_FIELDS, ids=bad_id)
async def test_create_span_rejects_bad_spans(obs: ObservabilityStore, bad: dict[str, Any]) -> None:
    await seed_small(obs)
    before = await everything(obs, "new")
    with pytest.raises(ValidationError):
        await obs.create_span(changed(span("new"), **bad))
    with pytest.raises(ValidationError):  # the same on a stored key: nothing replaced
        await obs.create_span(changed(span("keep"), **bad))
    assert await everything(obs, "new") == before
    assert await obs.get_trace("new") is None


@pytest.mark.parametrize("form", ["Span", "mapping"])
@pytest.mark.parametrize("bad", BAD_SPAN_FIELDS, ids=bad_id)
async def test_batch_with_one_bad_span_writes_none_of_it(
    obs: ObservabilityStore, bad: dict[str, Any], form: str
) -> None:
    await seed_small(obs)
    before = await everything(obs, "new")
    for position in (0, 1, 3):  # first, in the middle, last
        batch: list[Span | dict[str, Any]] = list(new_spans())
        bad_span = changed(child("new", "bad"), **bad)
        batch.insert(position, bad_span if form == "Span" else as_dict(bad_span))
        with pytest.raises(ValidationError):
            await obs.batch_create_spans(batch)
    assert await everything(obs, "new") == before
    assert await obs.get_trace("new") is None
    assert keys(await obs.get_trace("keep")) == ["root", "c"]


@pytest.mark.parametrize("bad", BAD_SPAN_FIELDS, ids=bad_id)
async def test_writer_submit_rejects_bad_spans_at_once(
    obs: ObservabilityStore, tmp_path: Path, bad: dict[str, Any]
) -> None:
    """submit() raises in the caller; the bad span is not counted, queued or written."""
    await seed_small(obs)
    before = await everything(obs, "new")
    writer = obs.span_writer(max_batch=10, flush_interval=0.05, outbox_path=tmp_path / "outbox.db")
    try:
        writer.submit(span("new"))
        assert writer.stats.submitted == 1
        with pytest.raises(ValidationError):
            writer.submit(changed(child("new", "bad"), **bad))
        assert writer.stats.submitted == 1
        await writer.flush()
    finally:
        await writer.close()
    assert (writer.stats.submitted, writer.stats.written) == (1, 1)
    assert keys(await obs.get_trace("new")) == ["root"]
    _roots, total, traces = before
    assert traces.pop("new") is None
    assert await obs.get_trace("keep") == traces["keep"]
    assert (await obs.list_traces()).total == total + 1


NOT_SPANS: list[Any] = [None, "span", 3, {"trace_id": "t", "span_id": "s", "name": "n"}]


@pytest.mark.parametrize("thing", NOT_SPANS, ids=repr)
async def test_what_is_not_a_span_is_rejected(
    obs: ObservabilityStore, tmp_path: Path, thing: Any
) -> None:
    await seed_small(obs)
    before = await everything(obs, "new")
    with pytest.raises(ValidationError):
        await obs.create_span(thing)
    with pytest.raises(ValidationError):
        await obs.batch_create_spans([span("new"), thing])
    writer = obs.span_writer(outbox_path=tmp_path / "outbox.db")
    with pytest.raises(ValidationError):
        writer.submit(thing)
    assert writer.stats.submitted == 0
    await writer.close()
    assert await everything(obs, "new") == before


async def test_spans_given_as_mappings_are_stored_like_span_objects(
    obs: ObservabilityStore, tmp_path: Path
) -> None:
    """A mapping of Span fields is a span: the missing fields take Span's defaults."""
    full = full_span()
    await obs.batch_create_spans(
        [as_dict(full), {"trace_id": "m", "span_id": "r", "name": "n", "started_at": T0}]
    )
    got = await obs.get_span(full.trace_id, full.span_id)
    assert got is not None and as_dict(got) == as_dict(full)
    minimal = await obs.get_span("m", "r")
    assert minimal is not None
    assert (minimal.attributes, minimal.parent_span_id, minimal.ended_at) == ({}, None, None)
    assert minimal.updated_at >= minimal.created_at and minimal.created_at.tzinfo is not None
    writer = obs.span_writer(outbox_path=tmp_path / "outbox.db")
    writer.submit({"trace_id": "w", "span_id": "r", "name": "n", "started_at": T0, "input": "x"})
    await writer.close()
    written = await obs.get_span("w", "r")
    assert written is not None and written.input == "x"


async def test_checked_rows_bind_by_column_name_whatever_their_key_order(
    obs: ObservabilityStore,
) -> None:
    """insert_rows (the span writer's path) binds each value to its column by name: a row
    whose keys come in another order (an outbox replay, say) is stored the same."""
    from composite_store.domains.observability.store import span_row

    full = full_span()
    row = span_row(full, "span")
    await obs.insert_rows([dict(reversed(list(row.items())))])
    got = await obs.get_span(full.trace_id, full.span_id)
    assert got is not None and as_dict(got) == as_dict(full)


@pytest.mark.parametrize(
    "fields",
    [
        {"trace_id": "t", "span_id": "r", "name": "n"},  # no started_at
        {"trace_id": "t", "span_id": "r", "started_at": T0},  # no name
        {"trace_id": "t", "span_id": "r", "name": "n", "started_at": T0, "colour": "red"},
        {"trace_id": "t", "span_id": "r", "name": "n", "started_at": T0, 7: "x"},
        {"trace_id": "t", "span_id": "r", "name": "n", "started_at": T0, "status": "error"},
    ],
    ids=repr,
)
async def test_mappings_with_missing_or_unknown_fields_are_rejected(
    obs: ObservabilityStore, fields: dict[Any, Any]
) -> None:
    await seed_small(obs)
    before = await everything(obs, "t")
    with pytest.raises(ValidationError):
        await obs.batch_create_spans([span("t"), fields])
    assert await everything(obs, "t") == before


async def test_batch_create_spans_wants_a_list(obs: ObservabilityStore) -> None:
    for thing in (span("new"), None, 5):
        with pytest.raises(ValidationError):
            await obs.batch_create_spans(thing)  # type: ignore[arg-type]
    assert await obs.get_trace("new") is None


BAD_LIST_ARGS: list[dict[str, Any]] = [
    *({name: ""} for name in FILTERS),
    *({name: "  "} for name in FILTERS),
    {"user_id": 3},
    {"run_id": "a\x00b"},
    {"status": "ok"},
    {"status": "ERROR"},
    {"status": ""},
    {"order_by": "created_at"},
    {"order_by": "name"},
    {"order_by": ""},
    {"order_by": None},
    {"start": NAIVE},
    {"end": NAIVE},
    {"start": "2026-03-01"},
    {"start": T0, "end": T0 - US},
    {"page": -1},
    {"per_page": -1},
    {"page": 1.0},
    {"page": None},
    {"page": True},
    {"per_page": "2"},
    {"with_total": "no"},
    {"with_total": None},
]


@pytest.mark.parametrize("bad", BAD_LIST_ARGS, ids=lambda b: f"{b!r:.50}")
async def test_list_traces_rejects_bad_arguments(
    obs: ObservabilityStore, bad: dict[str, Any]
) -> None:
    await seed_small(obs)
    before = await everything(obs)
    with pytest.raises(ValidationError):
        await obs.list_traces(**bad)
    assert await everything(obs) == before


# -- the span writer --------------------------------------------------------------------------
async def test_span_writer_stores_2000_spans_exactly_once(
    obs: ObservabilityStore, tmp_path: Path
) -> None:
    """2,000 spans over 40 traces (a root and 49 children each) in batches of 100."""
    writer = obs.span_writer(max_batch=100, outbox_path=tmp_path / "outbox.db")
    for i in range(2000):
        trace, n = f"trace-{i % 40:02d}", i // 40
        started = T0 + timedelta(seconds=i % 40, microseconds=n)
        if n == 0:
            writer.submit(span(trace, started_at=started, ended_at=started + timedelta(seconds=1)))
        else:
            writer.submit(child(trace, f"s{n:02d}", started_at=started, attributes={"i": i}))
    assert writer.stats.submitted == 2000
    await writer.close()
    stats = writer.stats
    assert (stats.submitted, stats.written, stats.spilled) == (2000, 2000, 0)
    page = await obs.list_traces(per_page=None, order_by="started_at", descending=False)
    assert trace_ids(page) == [f"trace-{t:02d}" for t in range(40)]
    assert page.total == 40 and {s.status for s in page.items} == {"success"}
    for t in range(40):
        trace = await obs.get_trace(f"trace-{t:02d}")
        assert keys(trace) == ["root", *(f"s{n:02d}" for n in range(1, 50))]
        assert trace is not None
        assert [s.attributes.get("i") for s in trace.spans[1:]] == [
            t + 40 * n for n in range(1, 50)
        ]


async def test_span_writer_replays_an_outbox_from_before_documents_were_kept_as_text(
    obs: ObservabilityStore, tmp_path: Path
) -> None:
    """Outbox rows used to hold the JSON documents themselves; now they hold their text.
    A batch spilled by the older writer is replayed as it was: strings stay strings."""
    from composite_store.domains.base import row_values
    from composite_store.domains.observability.writer import Outbox

    old = full_span(trace_id="old", input="just text", output=["a", {"b": 1}])
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.append([row_values(old)])  # a row as the older writer spilled it
    outbox.close()
    writer = obs.span_writer(outbox_path=tmp_path / "outbox.db")
    writer.submit(full_span(trace_id="new", input="more text"))
    await writer.close()
    got = await obs.get_span("old", old.span_id)
    assert got is not None and as_dict(got) == as_dict(old)
    new = await obs.get_span("new", old.span_id)
    assert new is not None and new.input == "more text"


async def test_span_writer_flush_then_more(obs: ObservabilityStore, tmp_path: Path) -> None:
    """flush() makes what was submitted readable; the writer keeps working after it."""
    writer = obs.span_writer(max_batch=500, flush_interval=60, outbox_path=tmp_path / "outbox.db")
    try:
        writer.submit(span("a"))
        writer.submit(child("a", "c"))
        await writer.flush()
        assert keys(await obs.get_trace("a")) == ["root", "c"]
        writer.submit(span("b"))
        writer.submit(span("a"))  # a duplicate of a stored span: still stored once
        await writer.flush()
        assert sorted(trace_ids(await obs.list_traces())) == ["a", "b"]
        assert keys(await obs.get_trace("a")) == ["root", "c"]
    finally:
        await writer.close()
    assert (writer.stats.submitted, writer.stats.written) == (4, 4)


async def test_span_writer_refuses_spans_after_close(
    obs: ObservabilityStore, tmp_path: Path
) -> None:
    writer = obs.span_writer(outbox_path=tmp_path / "outbox.db")
    writer.submit(span("a"))
    await writer.close()
    with pytest.raises(CompositeStoreError):
        writer.submit(span("b"))
    assert writer.stats.submitted == 1
    assert sorted(trace_ids(await obs.list_traces())) == ["a"]
