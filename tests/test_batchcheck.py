"""A batch checked a column at a time (``batchcheck``, ``model_rows``) is accepted or
refused exactly as the same spans checked one at a time (``span_row``, ``model_row``), and
makes the same rows: the column checks are a faster way to the same answer, never a second
opinion. Batches are plain spans with a few hostile values put in."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composite_store import ValidationError
from composite_store import validation as v
from composite_store.domains.base import model_row, model_rows
from composite_store.domains.observability import store as observability
from composite_store.domains.observability.models import Span

START = datetime(2026, 1, 1, tzinfo=UTC)


class Key(str):
    """A str subclass: not a plain document's key (its text is the standard encoder's)."""


class UnhashableUTC(tzinfo):
    """As dateutil's tzutc: equal to other UTCs, and unhashable."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnhashableUTC)

    __hash__ = None  # type: ignore[assignment]


class PosingAsUTC(tzinfo):
    """Naive (no offset), yet equal to UTC and hashed like it."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash(UTC)


class Level(enum.IntEnum):
    HIGH = 3


class Colour(enum.Enum):
    RED = "red"


ID_FIELDS = ("trace_id", "span_id", "name", *observability.OPTIONAL_IDS)
TIME_FIELDS = ("started_at", "ended_at", "created_at", "updated_at")
JSON_FIELDS = tuple(observability.JSON_FIELDS)

ODD_IDS: list[Any] = ["", " ", "\t", "a\x00b", "\ud800", "ü-span", "x" * v.MAX_ID_LENGTH]
ODD_IDS += ["x" * (v.MAX_ID_LENGTH + 1), 7, b"id", None, ["an", "unhashable", "list"]]
ODD_TIMES: list[Any] = [
    datetime(2026, 1, 1),  # naive
    datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),  # no UTC value
    START - timedelta(days=1),  # before the span started
    "2026-01-01",
    None,
    datetime(2026, 1, 1, tzinfo=UnhashableUTC()),
    datetime(2026, 1, 1, tzinfo=PosingAsUTC()),
]
ODD_DOCUMENTS: list[Any] = [
    "text with a \x00 NUL",
    "a \\u0000 that is only text",
    "\ud800",
    {"nested": {"a": [1, 2.5, None]}},
    {"n": float("nan")},
    {"n": float("inf")},
    {"n": 1.5, "m": -0.0},
    {"big": 2**70},
    {"big": 2**63},
    {1: "non-string key"},
    {"id": uuid.UUID(int=1)},
    {"ok": True, "none": None},
    {},
    [1, 2, 3],
    42,
    None,
    "",
    {"k\x00": 1},
    {"ü": "é"},
    {Key("k"): 1e-7},  # the standard encoder writes 1e-07, orjson 1e-7
    {"k": 1e-7},
    {"level": Level.HIGH},
    {"colour": Colour.RED},
    {"pair": (1, 2)},
    {"parts": [{"type": "text", "text": "hi"}], "format": 2},
    {"parts": [{"n": float("nan")}]},
    {"when": START},
    ["a", ("b",)],
]


def plain_span(i: int) -> dict[str, Any]:
    started = START + timedelta(milliseconds=i)
    return {
        "trace_id": f"{i // 10:032x}",
        "span_id": f"{i:016x}",
        "parent_span_id": None if i % 10 == 0 else f"{i - i % 10:016x}",
        "name": f"llm-call-{i % 10}",
        "span_type": "model_generation",
        "started_at": started,
        "ended_at": started + timedelta(microseconds=900),
        "attributes": {"model": "gpt-x", "tokens": i},
        "input": f"input {i}",
        "output": f"output {i}",
        "created_at": started,
        "updated_at": started,
    }


def odd_values(field: str) -> list[Any]:
    if field in ID_FIELDS:
        return ODD_IDS
    if field in TIME_FIELDS:
        return ODD_TIMES
    return ODD_DOCUMENTS


FIELDS = (*ID_FIELDS, *TIME_FIELDS, *JSON_FIELDS)
CHANGES = st.lists(
    st.tuples(
        st.integers(0, 39),
        st.sampled_from(FIELDS).flatmap(
            lambda field: st.tuples(st.just(field), st.sampled_from(odd_values(field)))
        ),
    ),
    max_size=3,
)


def batch_of(size: int, changes: list[tuple[int, tuple[str, Any]]]) -> list[dict[str, Any]]:
    spans = [plain_span(i) for i in range(size)]
    for index, (field, value) in changes:
        spans[index % size][field] = value
    return spans


def outcome(check: Callable[[], list[dict[str, Any]]]) -> list[list[tuple[str, Any]]] | str:
    """The rows (their items, in order) or the refusal's message."""
    try:
        return [list(row.items()) for row in check()]
    except ValidationError as exc:
        return f"refused: {exc}"


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.integers(1, 40), CHANGES)
def test_column_checks_decide_as_row_checks(size: int, changes: Any) -> None:
    spans = batch_of(size, changes)
    same_decision(
        outcome(partial(row_by_row, spans)),
        outcome(partial(observability.span_rows, spans)),
        odd_values=len(changes),
    )


def same_decision(one_by_one: object, by_column: object, *, odd_values: int) -> None:
    """Both refused or both the same rows; with one odd value, refused with one message
    (with more, each way may name a different one first)."""
    if isinstance(one_by_one, str) or isinstance(by_column, str):
        assert isinstance(one_by_one, str) and isinstance(by_column, str)
        if odd_values == 1:
            assert by_column == one_by_one
    else:
        assert by_column == one_by_one


COLUMNWISE_FROM = observability.COLUMNWISE_FROM  # as shipped, before the fixture below


def test_a_workload_batch_takes_the_column_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The threshold as shipped: one span is checked alone, AW-1's batch of 500 a column at
    a time (the tests above force the column path, so they would not tell)."""
    monkeypatch.setattr(observability, "COLUMNWISE_FROM", COLUMNWISE_FROM)
    by_row: list[Any] = []
    monkeypatch.setattr(observability, "span_row", lambda *args: by_row.append(args) or {})
    observability.span_rows(batch_of(1, []))
    assert len(by_row) == 1
    by_row.clear()
    assert len(observability.span_rows([plain_span(i) for i in range(500)])) == 500
    assert by_row == []


@pytest.fixture(autouse=True)
def columns_from_the_first_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch goes the column way, however small."""
    monkeypatch.setattr(observability, "COLUMNWISE_FROM", 0)


def test_a_plain_batch_goes_the_column_way_and_matches() -> None:
    spans = batch_of(40, [])
    assert outcome(partial(observability.span_rows, spans)) == outcome(partial(row_by_row, spans))


@pytest.mark.parametrize("field", FIELDS)
def test_each_odd_value_is_named_as_row_checks_name_it(field: str) -> None:
    for value in odd_values(field):
        spans = batch_of(20, [(13, (field, value))])
        assert outcome(partial(observability.span_rows, spans)) == outcome(
            partial(row_by_row, spans)
        )


def row_by_row(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [observability.span_row(span, f"spans[{i}]") for i, span in enumerate(spans)]


@pytest.mark.parametrize(
    "odd",
    [
        {**plain_span(3), "unknown_field": 1},
        {key: value for key, value in plain_span(3).items() if key != "trace_id"},
        {**plain_span(3)} | {5: "not a field name"},
        [("trace_id", "t")],
    ],
)
def test_model_rows_refuse_as_model_row(odd: object) -> None:
    spans: list[object] = list(batch_of(5, []))
    spans[3] = odd
    with pytest.raises(ValidationError) as by_row:
        [model_row(span, Span, f"spans[{i}]") for i, span in enumerate(spans)]
    with pytest.raises(ValidationError) as by_batch:
        model_rows(spans, Span, "spans")
    assert str(by_batch.value) == str(by_row.value)


def test_model_rows_of_plain_mappings_fill_defaults_as_model_row() -> None:
    """The batch's C path (every value a dict): fields left out take the model's defaults,
    a factory's once a row, where model_row would put them."""
    spans = batch_of(20, [])
    for i in (3, 7, 8):
        del spans[i]["attributes"], spans[i]["created_at"], spans[i]["ended_at"]
    del spans[11]["parent_span_id"]
    rows = model_rows(spans, Span, "spans")
    for i, (row, span) in enumerate(zip(rows, spans, strict=True)):
        alone = model_row(span, Span, f"spans[{i}]")
        assert list(row) == list(alone)
        made = {"created_at", "updated_at"} - set(span)
        assert {k: v for k, v in row.items() if k not in made} == {
            k: v for k, v in alone.items() if k not in made
        }
        for key in made:
            assert row[key].tzinfo is UTC and abs(row[key] - alone[key]) < timedelta(seconds=5)
    assert rows[3]["attributes"] == {} and rows[3]["attributes"] is not rows[7]["attributes"]
    assert rows[3]["ended_at"] is None and rows[11]["parent_span_id"] is None


def test_model_rows_fill_defaults_and_take_span_objects() -> None:
    missing = plain_span(1)
    del missing["attributes"], missing["created_at"], missing["ended_at"]
    span = Span(**plain_span(2))
    rows = model_rows([plain_span(0), missing, span, "not a span"][:3], Span, "spans")
    assert rows[1]["attributes"] == {} and rows[1]["ended_at"] is None
    assert rows[1]["created_at"].tzinfo is UTC
    assert [list(row) for row in rows] == [list(model_row(plain_span(0), Span, "s"))] * 3
    with pytest.raises(ValidationError, match=r"spans\[1\]: expected a Span or a mapping"):
        model_rows([plain_span(0), "not a span"], Span, "spans")
