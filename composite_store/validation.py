"""Argument checks shared by every store. They run before anything is written, and raise
``ValidationError`` naming the argument, so bad input never reaches the database."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from composite_store.errors import ValidationError
from composite_store.sqltypes import JSONBytes, encode

MAX_ID_LENGTH = 1024
MAX_JSON_DEPTH = 256  # deeper documents would exhaust the serialiser's stack on the way out
MAX_FILTER_VALUES = 1000  # each filter value is one condition in the statement
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NESTED = (dict, list, tuple)
# ``\u0000`` after an even run of backslashes (none included): an escaped NUL, not the text
# ``\\u0000`` (a backslash, then "u0000") inside a string
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
MAX_INT = 2**62  # 64-bit columns, with room for the arithmetic done on them (offsets, +1)
T = TypeVar("T")


def require_instance(value: object, cls: type[T], name: str) -> T:
    if not isinstance(value, cls):
        raise ValidationError(f"{name}: expected a {cls.__name__}, got {type(value).__name__}")
    return value


def require_id(value: object, name: str) -> str:
    """A non-blank string without NUL bytes (PostgreSQL text cannot hold them)."""
    if not isinstance(value, str) or not value or value.isspace():
        raise ValidationError(f"{name} must be a non-empty string, got {_show(value)}")
    _storable_text(value, name)
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return value


def plain_id(value: object) -> bool:
    """Whether ``value`` is an id ``require_id`` accepts that is plain ASCII: the common
    case, told without building the argument's name for an error message. Bulk checks call
    this first and ``require_id`` only for what it does not pass."""
    return (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isascii()
        and "\x00" not in value
        and not value.isspace()
    )


def plain_count(value: object) -> bool:
    """Whether ``value`` is a count ``require_int(..., minimum=0)`` accepts, told without
    building the argument's name: the fast check before it, as ``plain_id`` is for ids."""
    return type(value) is int and 0 <= value <= MAX_INT


def _storable_text(value: str, name: str) -> None:
    """Text every backend can store: no NUL, valid UTF-8 (no lone surrogates)."""
    if "\x00" in value:
        raise ValidationError(f"{name} must not contain NUL bytes")
    if value.isascii():  # known without a scan: no surrogate can be in it
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{name} is not valid unicode (a lone surrogate)") from None


def optional_id(value: object, name: str) -> str | None:
    return None if value is None else require_id(value, name)


def require_ids(values: Iterable[object], name: str) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(f"{name} must be a list of ids, got {_show(values)}")
    return [require_id(v, f"{name}[{i}]") for i, v in enumerate(values)]


def optional_text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string or None, got {_show(value)}")
    _storable_text(value, name)
    return value


def require_json(value: object, name: str, *, dict_only: bool = True) -> Any:
    """A JSON document (a dict unless ``dict_only=False``) that every backend can store."""
    json_text(value, name, dict_only=dict_only)
    return value


def json_text(value: object, name: str, *, dict_only: bool = True) -> JSONBytes:
    """``require_json``, returning the document serialised (UTF-8) for the database to bind
    as is (``sqltypes.JSONBytes``).

    A document of plain JSON types only (``_walk`` tells, while it checks keys and depth)
    is serialised by orjson, ~10x faster than the standard encoder (a 10 KB workflow
    snapshot: 3 against 39 us). Anything else, and anything orjson refuses (an int beyond
    64 bits, a lone surrogate), goes to the standard encoder, which decides: orjson alone
    would write NaN as ``null`` and accept a UUID or an Enum. Either way the stored values
    are the same; the text may differ (orjson writes ``1e-7`` where the other writes
    ``1e-07``), and nothing compares stored documents as text."""
    if dict_only and not isinstance(value, dict):
        raise ValidationError(f"{name} must be a dict, got {_show(value)}")
    data = _plain_bytes(value) if _is_plain_json(value, name) else None
    if data is None:
        try:
            text = encode(value)  # not dumps: bytes are not a document
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValidationError(f"{name} is not JSON-serialisable: {exc}") from None
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{name} is not valid unicode (a lone surrogate)") from None
    if b"\\u0000" in data and _NUL_ESCAPE.search(data):  # how both encoders write a NUL
        raise ValidationError(f"{name} must not contain NUL characters (PostgreSQL rejects them)")
    return data


def _plain_bytes(value: object) -> bytes | None:
    """orjson's UTF-8 of a plain document, or None where it refuses one (orjson refuses a
    lone surrogate, so what it returns is valid UTF-8)."""
    try:
        # a copy: orjson's own bytes keep its oversized buffer, and a batch that holds
        # thousands of them costs ~1.9 us a document in fresh memory, against 0.4 copied
        return memoryview(orjson.dumps(value)).tobytes()
    except TypeError:  # orjson.JSONEncodeError: the standard encoder will say why
        return None


def _is_plain_json(value: object, name: str) -> bool:
    """Whether ``value`` holds only exact ``dict``/``list``/``tuple`` containers with ``str``
    keys, and ``str``, ``int``, ``bool``, ``None`` and finite ``float`` values: what both
    encoders write alike. Raises for keys that are not strings and for excessive depth."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return -math.inf < value < math.inf  # type: ignore[operator]  # NaN compares False
    if isinstance(value, dict | list | tuple):
        return _walk(value, name, 0)
    return False


def _walk(value: dict[Any, Any] | list[Any] | tuple[Any, ...], name: str, depth: int) -> bool:
    """``_is_plain_json`` of a container. Recursion only into containers (a 10 KB snapshot:
    ~170 nodes, ~20 us); the depth bound keeps it far from Python's recursion limit.
    Exact-type tests first: they are the common case and cost less than ``isinstance``."""
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(f"{name} is nested deeper than {MAX_JSON_DEPTH} levels")
    plain = type(value) is dict or type(value) is list or type(value) is tuple
    items: Iterable[Any] = value
    if isinstance(value, dict):
        for key in value:
            if type(key) is not str:
                if not isinstance(key, str):
                    raise ValidationError(f"{name}: JSON object keys must be strings")
                plain = False
        items = value.values()
    for item in items:
        kind = type(item)
        # _walk first in each ``and``: a container is checked even once ``plain`` is False
        if kind is dict or kind is list:
            plain = _walk(item, name, depth + 1) and plain
        elif kind is float:
            plain = plain and -math.inf < item < math.inf
        elif kind not in _SCALARS:
            if isinstance(item, _NESTED):
                plain = _walk(item, name, depth + 1) and plain and kind is tuple
            else:
                plain = False
    return plain


def optional_json(value: object, name: str, *, dict_only: bool = True) -> Any:
    return None if value is None else require_json(value, name, dict_only=dict_only)


def metadata_filter(value: object, name: str = "metadata") -> dict[str, Any] | None:
    """A filter on top-level metadata keys: ``{"key": json_value, ...}``."""
    if value is None:
        return None
    filters = require_json(value, name)
    _check_filter_keys(filters, name)
    return dict(filters)


def _check_filter_keys(value: Any, name: str) -> None:
    """Keys become JSON paths: non-empty strings without double quotes, at every level.
    Every value becomes a condition: their number and integer range are bounded."""
    pending = [value]
    seen = 0
    while pending:
        item = pending.pop()
        seen += 1
        if seen > MAX_FILTER_VALUES:
            raise ValidationError(f"{name} filter has more than {MAX_FILTER_VALUES} values")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            raise ValidationError(f"{name} filter integers must fit 64 bits")
        if isinstance(item, dict):
            for key, nested in item.items():
                if not isinstance(key, str) or not key or '"' in key:
                    raise ValidationError(
                        f"{name} filter keys must be non-empty strings without '\"'"
                    )
                pending.append(nested)
        elif isinstance(item, list):
            pending.extend(item)


def require_datetime(value: object, name: str) -> datetime:
    """An aware datetime (naive ones are ambiguous: we refuse to guess their zone)."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{name} must be a datetime, got {_show(value)}")
    if value.utcoffset() is None:
        raise ValidationError(f"{name} must be timezone-aware (e.g. datetime.now(UTC))")
    if not 1 < value.year < 9999:  # stored in UTC: year 1 at +05:00 or 9999-12-31 at
        try:  # -05:00 has no UTC value (only the first and last years can fall outside)
            value.astimezone(UTC)
        except OverflowError:
            raise ValidationError(f"{name} is outside the range of UTC datetimes") from None
    return value


def plain_datetime(value: object) -> bool:
    """Whether ``value`` is a datetime ``require_datetime`` accepts that is already in UTC
    (every UTC datetime has a UTC value): the fast check before it, as ``plain_id`` is."""
    return type(value) is datetime and value.tzinfo is UTC


def optional_datetime(value: object, name: str) -> datetime | None:
    return None if value is None else require_datetime(value, name)


def require_choice(value: object, name: str, choices: Iterable[str]) -> str:
    allowed = tuple(choices)
    if value not in allowed:
        raise ValidationError(f"{name} must be one of {', '.join(allowed)}; got {_show(value)}")
    return str(value)


def require_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be True or False, got {_show(value)}")
    return value


def require_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{name} must be a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValidationError(f"{name} is outside the float range") from None
    if not math.isfinite(number):
        raise ValidationError(f"{name} must be finite, got {number}")
    return number


def require_int(value: object, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value}")
    if abs(value) > MAX_INT:
        raise ValidationError(f"{name} does not fit a 64-bit integer column")
    return value


def check_range(start: object, end: object) -> tuple[datetime | None, datetime | None]:
    first, last = optional_datetime(start, "start"), optional_datetime(end, "end")
    if first and last and last < first:
        raise ValidationError("end is before start")
    return first, last


def reject_unknown(fields: Mapping[str, object], allowed: Iterable[str], what: str) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValidationError(f"{what}: unknown field(s) {', '.join(unknown)}")


def _show(value: object) -> str:
    try:
        text = repr(value)
    except RecursionError:  # a deeply nested document
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."
