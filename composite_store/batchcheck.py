"""A batch's checks, a column at a time.

The ``validation`` module checks one value per Python call: for a 500-span batch that is
~10,000 calls, about a third of what writing the batch costs the client. Here the common
case (plain ASCII ids, datetimes in UTC, documents that are strings or flat objects) is told
for a whole column by C loops (``set(map(type, ...))``, ``str.join``, ``orjson``). A column
this fast test does not pass is checked value by value by ``validation`` itself, which also
writes the error message: so a batch is accepted or refused exactly as it would be row by
row, and stored the same (``tests/test_batchcheck.py`` holds the two side by side).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from itertools import chain, repeat
from operator import attrgetter, is_, is_not, itemgetter, lt
from typing import Any

import orjson

from composite_store import validation as v
from composite_store.sqltypes import JSONBytes

Row = dict[str, Any]

_NONE = type(None)
_STR = frozenset({str})
_DATETIME = frozenset({datetime})
_FLAT_LEAVES = frozenset({str, int, bool, float, _NONE})  # what both JSON encoders write alike
_present = partial(filter, partial(is_not, None))  # the values that are not None, in C
_tzinfo = attrgetter("tzinfo")


def column(rows: Sequence[Row], name: str) -> list[Any]:
    return list(map(itemgetter(name), rows))


def ids(rows: Sequence[Row], names: tuple[str, ...], batch: str, *, optional: bool = False) -> None:
    """``validation.require_id`` (or ``optional_id``) of some columns. Each distinct value
    is told once: a batch's ids repeat (its trace ids, span names, mostly-empty filters)."""
    pick = itemgetter(*names)
    values = list(chain.from_iterable(map(pick, rows)) if len(names) > 1 else map(pick, rows))
    # every value a str (or None): only then can equal values be told once (a set keeps one
    # of each, and an object of another type may compare equal to a str)
    if set(map(type, values)) <= ({str, _NONE} if optional else _STR):
        distinct = set(values)
        distinct.discard(None)
        if not distinct or _plain_ids(list(distinct)):
            return
    for name in names:
        values = column(rows, name)
        for index, value in enumerate(values):
            if not (optional and value is None) and not v.plain_id(value):
                v.require_id(value, f"{batch}[{index}].{name}")


def _plain_ids(values: list[Any]) -> bool:
    """Whether each of some values (at least one) passes ``validation.plain_id``."""
    if set(map(type, values)) != _STR:
        return False
    joined = "".join(values)
    return (
        joined.isascii()
        and "\x00" not in joined
        and min(map(len, values)) > 0
        and max(map(len, values)) <= v.MAX_ID_LENGTH
        and not any(map(str.isspace, values))
    )


def datetimes(rows: Sequence[Row], name: str, batch: str, *, optional: bool = False) -> None:
    """``validation.require_datetime`` (or ``optional_datetime``) of a column."""
    values = column(rows, name)
    if _plain_datetimes(values, optional):
        return
    for index, value in enumerate(values):
        if not (optional and value is None) and not v.plain_datetime(value):
            v.require_datetime(value, f"{batch}[{index}].{name}")


def _plain_datetimes(values: list[Any], optional: bool) -> bool:
    """Whether each value passes ``validation.plain_datetime`` (or is None, if optional)."""
    kinds = set(map(type, values))
    if kinds != _DATETIME:
        if not optional or not kinds <= {datetime, _NONE}:
            return False
        values = list(_present(values))
    # by identity, as plain_datetime: a tzinfo may be unhashable, or compare equal to UTC
    return all(map(is_, map(_tzinfo, values), repeat(UTC)))


def first_before(rows: Sequence[Row], later: str, earlier: str) -> int | None:
    """The index of the first row whose ``later`` (a checked datetime, or None: no bound)
    is before its ``earlier``, if any."""
    ends, starts = column(rows, later), column(rows, earlier)
    if _NONE not in set(map(type, ends)) and not any(map(lt, ends, starts)):
        return None  # the usual case, told in one C loop
    for index, (end, start) in enumerate(zip(ends, starts, strict=True)):
        if end is not None and end < start:
            return index
    return None


def json_documents(
    rows: Sequence[Row],
    name: str,
    batch: str,
    *,
    dict_only: bool = True,
    optional: bool = False,
) -> None:
    """``validation.json_text`` of a column, each row's document replaced by its text (None
    stays None where ``optional``)."""
    values = column(rows, name)
    texts = _plain_texts(values, dict_only, optional)
    if texts is None:
        texts = [
            None
            if optional and value is None
            else v.json_text(value, f"{batch}[{index}].{name}", dict_only=dict_only)
            for index, value in enumerate(values)
        ]
    for row, text in zip(rows, texts, strict=True):
        row[name] = text


def _plain_texts(
    values: list[Any], dict_only: bool, optional: bool
) -> list[JSONBytes | None] | None:
    """The documents' texts if each is a string (unless ``dict_only``) or a flat object of
    plain values (``validation._is_plain_json`` of depth one, told by the types of all its
    values at once) that orjson writes; else None."""
    kinds = set(map(type, values))
    present = values
    if optional and _NONE in kinds:
        kinds.discard(_NONE)
        present = list(_present(values))
        if not present:
            return values
    if kinds == _STR and not dict_only:
        pass
    elif kinds == {dict}:
        # keys: orjson refuses any but exact str (below), as validation._walk has them
        leaves = list(chain.from_iterable(map(dict.values, present)))
        kinds_of_leaves = set(map(type, leaves))
        if not kinds_of_leaves <= _FLAT_LEAVES or (
            float in kinds_of_leaves
            and not all(map(math.isfinite, (leaf for leaf in leaves if type(leaf) is float)))
        ):  # nested, or NaN or Infinity (orjson would write null), or some other type
            return None
    else:
        return None
    try:
        # copies, as validation._plain_bytes makes: orjson's own bytes keep its buffer
        texts = list(map(bytes, map(memoryview, map(orjson.dumps, present))))  # type: ignore[arg-type]
    except TypeError:  # orjson.JSONEncodeError: an int beyond 64 bits, a lone surrogate
        return None
    return _in_place(values, present, texts)


def _in_place(
    values: list[Any], present: list[Any], texts: list[JSONBytes]
) -> list[JSONBytes | None] | None:
    """``texts`` (of ``present``) where ``values`` has documents, None where it has None;
    None if a text may hold a NUL (validation decides)."""
    if b"\\u0000" in b"".join(texts):
        return None
    if present is values:
        return texts  # type: ignore[return-value]
    written = iter(texts)
    return [None if value is None else next(written) for value in values]
