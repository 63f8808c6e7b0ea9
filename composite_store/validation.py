"""Argument checks shared by every store. They run before anything is written, and raise
``ValidationError`` naming the argument, so bad input never reaches the database."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from composite_store.errors import ValidationError
from composite_store.sqltypes import JSONText, dumps

MAX_ID_LENGTH = 1024
MAX_JSON_DEPTH = 256  # deeper documents would exhaust the serialiser's stack on the way out
MAX_FILTER_VALUES = 1000  # each filter value is one condition in the statement
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NESTED = (dict, list, tuple)
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


def json_text(value: object, name: str, *, dict_only: bool = True) -> JSONText:
    """``require_json``, returning the document serialised for the database to bind as is."""
    if dict_only and not isinstance(value, dict):
        raise ValidationError(f"{name} must be a dict, got {_show(value)}")
    if type(value) is not str:  # a string holds no keys and no nesting
        _require_string_keys(value, name)
    try:
        text = dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{name} is not JSON-serialisable: {exc}") from None
    if "\\u0000" in text:  # the encoder writes a NUL character so, never bare
        raise ValidationError(f"{name} must not contain NUL characters (PostgreSQL rejects them)")
    if not text.isascii():  # ASCII text holds no surrogate: no need to encode it to know
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{name} is not valid unicode (a lone surrogate)") from None
    return JSONText(text)


def _require_string_keys(value: object, name: str) -> None:
    """JSON object keys are strings: ``{1: "x"}`` would come back as ``{"1": "x"}``. Also
    bounds the nesting depth, which the drivers' serialisers would otherwise overflow."""
    if isinstance(value, dict | list | tuple):
        _walk(value, name, 0)


def _walk(value: dict[Any, Any] | list[Any] | tuple[Any, ...], name: str, depth: int) -> None:
    """Recursion only into containers (a 10 KB snapshot: ~170 nodes, ~15 us); the depth
    bound keeps it far from Python's recursion limit. Exact-type tests first: they are the
    common case and cost less than ``isinstance``."""
    if depth > MAX_JSON_DEPTH:
        raise ValidationError(f"{name} is nested deeper than {MAX_JSON_DEPTH} levels")
    items: Iterable[Any] = value
    if type(value) is dict or isinstance(value, dict):
        for key in value:
            if type(key) is not str and not isinstance(key, str):
                raise ValidationError(f"{name}: JSON object keys must be strings")
        items = value.values()
    for item in items:
        kind = type(item)
        if kind is dict or kind is list or (kind not in _SCALARS and isinstance(item, _NESTED)):
            _walk(item, name, depth + 1)


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
