"""``validation.json_text`` serialises plain documents with orjson and everything else with
the standard encoder. Whichever encoder runs, a document must come back as the standard
encoder would store it, and be refused exactly when the standard rules refuse it: orjson on
its own writes NaN as ``null`` and accepts UUIDs and Enums."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import random
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composite_store.benchmark import make_messages, make_snapshot, make_spans
from composite_store.errors import ValidationError
from composite_store.validation import _is_plain_json, json_text

REFUSED = object()


def _string_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value) and all(map(_string_keys, value.values()))
    if isinstance(value, list | tuple):
        return all(map(_string_keys, value))
    return True


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(map(_has_nul, value)) or any(map(_has_nul, value.values()))
    if isinstance(value, list | tuple):
        return any(map(_has_nul, value))
    return False


def standard(value: Any) -> Any:
    """The rules, with the standard encoder only: keys are strings, no NaN/Infinity, no NUL,
    no lone surrogate. Returns the document as read back, or REFUSED."""
    if not _string_keys(value) or _has_nul(value):
        return REFUSED
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (TypeError, ValueError):
        return REFUSED
    return json.loads(text)


def stored(value: Any) -> Any:
    try:
        return json.loads(json_text(value, "doc", dict_only=False))
    except ValidationError:
        return REFUSED


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


class Tone(enum.StrEnum):
    WARM = "chaleureux é"


class Touchy(enum.Enum):
    """An Enum whose comparison raises: reading back must not let it out."""

    A = "a"

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("compared")

    __hash__ = enum.Enum.__hash__


@dataclasses.dataclass
class Point:
    x: int


class Agreeable(enum.Enum):
    """An Enum equal to its value: orjson writes the value, which reads back equal to it."""

    RED = "red"

    def __eq__(self, other: object) -> bool:
        return self.value == other if isinstance(other, str) else super().__eq__(other)

    __hash__ = enum.Enum.__hash__


@dataclasses.dataclass(eq=False)
class Anything:
    a: int = 1

    def __eq__(self, other: object) -> bool:
        return True


class Ratio(float):
    pass


ODD = [
    {"k": math.nan},
    {"k": [1, -math.inf]},
    (1, (2, math.inf)),
    math.nan,
    {"k": uuid.UUID(int=7)},
    uuid.UUID(int=7),
    {"k": Colour.RED},
    Colour.RED,
    {"k": Level.HIGH},
    Level.HIGH,
    {"k": [Tone.WARM, {"n": Level.HIGH}]},
    {"k": Touchy.A},
    {"k": Agreeable.RED},
    {"k": Anything()},
    {"k": Point(1)},
    {"k": [1, (2, {"t": (3,)})]},
    {"deep": {"er": [{"n": math.nan}]}},
    {"k": {"nested": OrderedDict(a=1)}},
    {Name("k"): Name("v")},
    {"k": Ratio(0.5)},
    {"k": Ratio("nan")},
    OrderedDict(a=[1, 2]),
    {"k": datetime(2026, 1, 1, tzinfo=UTC)},
    {"k": Decimal("1.5")},
    {"k": b"bytes"},
    b"bytes",  # bytes are how a serialised document travels, never a document to store
    b'{"k": 1}',
    {"k": {1, 2}},
    {1: "int key"},
    {"k": {None: 1}},
    {"k": 2**63},
    {"k": 2**64},
    {"k": -(2**63) - 1},
    {"k": 10**30},
    {"k": "lone \ud800"},
    {"\udfff": 1},
    {"k": "a\x00b"},
    {"k": "\\u0000"},  # a backslash, then "u0000": text, not a NUL
    {"k": "\\\\u0000", "\\\x00": 1},
    {"k": '\u2028 \x1f " \\ é 🙂'},
]


@pytest.mark.parametrize("value", ODD, ids=lambda value: repr(value)[:40])
def test_odd_documents_are_stored_or_refused_as_the_standard_encoder_says(value: Any) -> None:
    assert stored(value) == standard(value)


LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(st.characters(exclude_categories=())),
    st.text(st.characters(categories=["Cs"]), max_size=2),
)
DOCUMENTS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=3),
    ),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(DOCUMENTS)
def test_any_document_is_stored_or_refused_as_the_standard_encoder_says(value: Any) -> None:
    result = stored(value)
    expected = standard(value)
    if result is REFUSED or expected is REFUSED:
        assert result is expected
    else:  # NaN never gets here, so equality is exact
        assert json.dumps(result, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_the_documents_agents_write_take_the_fast_encoder() -> None:
    """Snapshots, message contents and span attributes are plain: they must reach orjson
    (a walk that called every document non-plain would still pass every test above)."""
    rng = random.Random(1)
    documents = [
        make_snapshot(rng),
        make_messages("t", 1, rng)[0]["content"],
        make_spans(1, rng)[0]["attributes"],
        "a bare string",
        [1, 2.5, None, True, ("a", {"b": []})],
    ]
    for document in documents:
        assert _is_plain_json(document, "doc"), document
    for odd in ({"k": math.nan}, {"k": Level.HIGH}, {Name("k"): 1}, OrderedDict(a=1)):
        assert not _is_plain_json(odd, "doc"), odd
