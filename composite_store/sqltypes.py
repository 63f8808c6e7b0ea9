"""Column types shared by every domain: the one place that knows how each backend stores them.

- ``UTCDateTime``: aware UTC datetimes with microseconds everywhere. PostgreSQL keeps
  ``timestamptz``; SQLite stores naive UTC text (it would drop tzinfo anyway) and gets UTC back;
  ClickHouse stores Int64 microseconds since the epoch, because Debian's 18.16 server has no
  DateTime64 and DateTime keeps only seconds.
- ``JSONDocument``: any JSON value; JSONB on PostgreSQL, TEXT on SQLite (a column declared
  JSON has NUMERIC affinity, which stores the document ``1.0`` as the integer 1 and ``2**70``
  as a rounded float), String on ClickHouse (whose generic JSON type cannot be rendered).
  A ``bytes`` value is bound as the UTF-8 of a document serialised already (``JSONBytes``):
  how the stores pass the text their checks made.
- ``Id``/``LongText``: strings; on ClickHouse ``String`` (``String(n)`` would be FixedString).

ClickHouse ignores ``nullable=True`` unless the type itself is ``Nullable``: every type here
takes ``nullable=True`` for that.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from clickhouse_sqlalchemy import types as ch
from sqlalchemy import JSON, BigInteger, DateTime, Dialect, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from composite_store.clickhouse import NATIVE_DRIVER

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch, exact (timedelta's own integer division, no float)."""
    return (value - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def as_stored(value: datetime) -> datetime:
    """An aware datetime as a ``UTCDateTime`` column reads it back: the same instant, a
    plain ``datetime`` in UTC. What a write that skips RETURNING hands its caller."""
    if type(value) is datetime and value.tzinfo is UTC:
        return value
    return from_micros(to_micros(value))


# A document already checked and serialised (``validation.json_text``) travels as its UTF-8
# ``bytes``: no encoder takes bytes for a document, so the type alone tells ``dumps`` that it
# is serialised, and a write serialises each document once, not once to check it and once to
# bind it. Bytes, not a ``str`` subclass: an instance of a class defined in Python is tracked
# by the garbage collector, and three a span made a 50,000-span bulk write run one or two
# full collections (90-150 ms; O1 on ClickHouse takes ~1.3 s); built-in bytes are not.
JSONBytes: TypeAlias = bytes


# one encoder for every call: json.dumps with options builds a new one each time
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
# ... and so does JSONEncoder.encode, below it: its C encoder, made once here instead (a
# small document encodes in less time than making one takes: 2.5 -> 0.65 us for a span's
# attributes). Without the circular-reference markers, a document that contains itself
# ends in RecursionError rather than ValueError; the checks in ``validation`` turn either
# into ValidationError before anything reaches here unchecked.
_MAKE_C_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # None without the C module
_C_ENCODE: Any = (
    _MAKE_C_ENCODER(
        None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _MAKE_C_ENCODER is not None
    else None
)


_ENCODE_STRING: Callable[[str], str] = json.encoder.encode_basestring


def dumps(value: Any) -> str:
    """What a JSON column binds: ``JSONBytes`` as their text, anything else ``encode``d."""
    if type(value) is bytes:  # JSONBytes: checked and serialised already
        return value.decode()
    return encode(value)


def encode(value: Any) -> str:
    """Strict, compact JSON: NaN/Infinity are not JSON and PostgreSQL would refuse them."""
    if type(value) is str:  # a bare string document (span input/output): the encoder's own quoting
        return _ENCODE_STRING(value)
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


_JSON_AS_TEXT = ("clickhouse", "sqlite")  # dialects whose JSON columns store the text


def _dumps_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _clickhouse_json(value: Any) -> str | bytes | None:
    """The native driver writes bytes to a String column as they are: JSONBytes need no
    decode."""
    if value is None or type(value) is bytes:
        return value
    return dumps(value)


def _clickhouse_impl(dialect: Dialect, type_: TypeEngine[Any], nullable: bool) -> TypeEngine[Any]:
    return dialect.type_descriptor(ch.Nullable(type_) if nullable else type_)


class _PortableType(TypeDecorator[Any]):
    """A type whose ClickHouse form must say whether it is ``Nullable`` (the only backend
    that ignores ``nullable=True`` on the column)."""

    cache_ok = True

    def __init__(self, *, nullable: bool = False) -> None:
        super().__init__()
        self.nullable = nullable

    def __repr__(self) -> str:  # how Alembic renders the type in a revision
        return f"{type(self).__name__}({'nullable=True' if self.nullable else ''})"


class Id(_PortableType):
    """A short string: ids, names, enum-like values (String on ClickHouse, not FixedString)."""

    impl = String()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "clickhouse":
            return _clickhouse_impl(dialect, ch.String(), self.nullable)
        return dialect.type_descriptor(String())


class LongText(_PortableType):
    """Free text of any length."""

    impl = Text()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "clickhouse":
            return _clickhouse_impl(dialect, ch.String(), self.nullable)
        return dialect.type_descriptor(Text())


class UTCDateTime(_PortableType):
    """An aware UTC ``datetime`` with microsecond precision on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "clickhouse":
            return _clickhouse_impl(dialect, ch.Int64(), self.nullable)
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        value = _in_utc(value)
        if value is None:
            return None
        if dialect.name == "clickhouse":
            return to_micros(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name == "clickhouse":
            return _epoch_micros  # the span writer's path: once per timestamp per row
        if dialect.name == "sqlite":
            return _sqlite_text
        # process_bind_param without TypeDecorator's wrapper: asyncpg's DateTime has no
        # processor of its own to chain, and the wrapper cost ~0.25 us a timestamp
        return _in_utc

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name == "sqlite":
            # SQLite hands back text; datetime.fromisoformat (C) reads it several times
            # faster than SQLAlchemy's regex-based DATETIME parser, on every row read.
            return _sqlite_datetime
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, int):
            return from_micros(value)
        if isinstance(value, str):  # SQLite rows written by raw SQL
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return _in_utc(value)


def _epoch_micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    # an aware datetime's difference from the epoch is its UTC instant: no conversion
    return to_micros(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


def _in_utc(value: datetime | None) -> datetime | None:
    """An aware datetime in UTC; a naive one is taken as UTC."""
    if value is None or value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_text(value: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite DATETIME writes (naive UTC, always with microseconds), made
    by ``isoformat``: ``datetime.replace`` and SQLAlchemy's %-formatting cost ~2 us a value,
    and a span has four."""
    value = _in_utc(value)
    if value is None:
        return None
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def _sqlite_datetime(value: str | None) -> datetime | None:
    if value is None:
        return None
    if 19 <= len(value) <= 26:  # as _sqlite_text writes it: read as UTC without .replace,
        try:  # which costs 6x the parse (0.99 against 0.15 us a value)
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:
            pass  # text with its own offset (written by another tool): the long way
    return _in_utc(datetime.fromisoformat(value))


class JSONText(TypeDecorator[Any]):
    """A JSON document bound as text: the element type of PostgreSQL's arrays of documents
    (``dialects.insert_from_arrays``), which the statement casts to JSONB. asyncpg sends a
    ``text[]`` in C, where a ``jsonb[]`` calls a Python encoder for every element: ~0.5 us
    less a span of three documents, client and server together."""

    impl = Text()
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        return _dumps_or_none


class EpochMicros(TypeDecorator[Any]):
    """A ``UTCDateTime`` bound as microseconds since the epoch: the element type of
    PostgreSQL's arrays of timestamps (``dialects.insert_from_arrays``), which the statement
    turns back into timestamptz, exactly. asyncpg encodes a ``timestamptz[]`` element by
    element in Python datetime arithmetic (~0.65 us each, four a span); an int8 costs next
    to nothing once ``to_micros`` has run."""

    impl = BigInteger()
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        return _epoch_micros


class JSONDocument(_PortableType):
    """A JSON value (usually a dict). SQL NULL for ``None``."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        if dialect.name == "clickhouse":
            return _clickhouse_impl(dialect, ch.String(), self.nullable)
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        # literal rendering only: binds take bind_processor's shortcut, on every backend
        return _dumps_or_none(value) if dialect.name in _JSON_AS_TEXT else value

    def bind_processor(self, dialect: Dialect) -> Any:
        # The document's text, made here directly, not through TypeDecorator's wrapper and
        # JSON's own processor (0.20 -> 0.08 us a value; a batch binds four a span, mostly
        # serialised already: ``JSONBytes``). PostgreSQL's driver codec makes JSONB of the
        # text, as it did of json_serializer's; SQLite needs text (bytes would be a BLOB).
        if dialect.driver == NATIVE_DRIVER:  # ClickHouse's native protocol takes bytes
            return _clickhouse_json
        return _dumps_or_none  # ClickHouse's HTTP driver writes the text into the SQL

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return value  # PostgreSQL: the driver decodes JSONB (see result_processor for the rest)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name in _JSON_AS_TEXT:
            # both hand back the text: one json.loads per value instead of SQLAlchemy's
            # three nested processors, on every document read
            return _loads
        return super().result_processor(dialect, coltype)


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _loads(value: str | None) -> Any:
    """``json.loads`` without its two whitespace regex matches: what we store is compact
    (``dumps``). Text that does not end where the document does is parsed the long way."""
    if value is None:
        return None
    if type(value) is not str:  # SQLite's NUMERIC affinity stores a bare 0 as an integer
        return value
    try:
        document, end = _scan_once(value, 0)
    except StopIteration:
        return json.loads(value)  # leading whitespace, or not JSON: json says which
    return document if end == len(value) else json.loads(value)


_BYTES_OR_NONE = frozenset({bytes, type(None)})


def _epoch_micros_column(values: list[Any]) -> list[Any]:
    """``_epoch_micros`` of a column: for aware datetimes (all, once checked) ``to_micros``
    written inline, without two function calls a value."""
    return [
        None
        if value is None
        else (value - EPOCH) // _MICROSECOND
        if value.tzinfo is not None
        else _epoch_micros(value)
        for value in values
    ]


def _clickhouse_json_column(values: list[Any]) -> list[Any]:
    """``_clickhouse_json`` of a column: checked documents are bytes already."""
    if set(map(type, values)) <= _BYTES_OR_NONE:
        return values
    return [_clickhouse_json(value) for value in values]


# bind processors -> the same conversion of a whole column, where that is cheaper
_COLUMN_FORMS: dict[Callable[[Any], Any], Callable[[list[Any]], list[Any]]] = {
    _epoch_micros: _epoch_micros_column,
    _clickhouse_json: _clickhouse_json_column,
}


def column_processor(process: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    """A bind processor applied to each value of a column (None stays None)."""
    form = _COLUMN_FORMS.get(process)
    if form is not None:
        return form
    return lambda values: [None if value is None else process(value) for value in values]
