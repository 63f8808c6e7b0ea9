"""What every domain shares: its own ``MetaData`` and the store base class.

``DomainStore`` owns the two things every store method needs and nobody should write twice:
opening a transaction of the right kind, and turning driver exceptions into the SPEC's errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from itertools import chain, repeat
from operator import contains
from typing import Any, Generic, TypeVar

from sqlalchemy import Column, ColumnElement, MetaData, Row, Table, inspect, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import ClassManager, manager_of_class
from sqlalchemy.orm.state import InstanceState

from composite_store.dialects import for_update
from composite_store.errors import CompositeStoreError, DomainUnavailableError, ValidationError
from composite_store.fastpath import RAW_DISCONNECTS, RAW_DRIVER_ERRORS, FastConnection, FastPath

M = TypeVar("M")
S = TypeVar("S")
C = TypeVar("C")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def domain_metadata(domain: str) -> MetaData:
    """A domain's own ``MetaData``; ``info["domain"]`` tells the router and Alembic whose it is."""
    return MetaData(naming_convention=NAMING_CONVENTION, info={"domain": domain})


# What the database and its driver raise. Anything else SQLAlchemy raises (a CompileError,
# say) is a bug in composite-store and must not be disguised as a database error.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,  # the pool had no connection to give in time
    sa_exc.DisconnectionError,
    OSError,
    TimeoutError,
    *RAW_DRIVER_ERRORS,  # from statements run on the driver (``composite_store.fastpath``)
    *RAW_DISCONNECTS,  # clickhouse-driver's bare EOFError when the server drops the socket
)


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means "the database cannot be reached", not "the statement failed"."""
    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(exc, RAW_DISCONNECTS):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.InterfaceError)
            or (isinstance(exc.orig, OSError | TimeoutError))
        )
    return False


def translate_error(exc: BaseException, domain: str, masked_url: str) -> CompositeStoreError:
    """The SPEC error for a driver exception; the driver's text is kept in the message."""
    if isinstance(exc, CompositeStoreError):
        return exc
    if is_unavailable(exc):
        return DomainUnavailableError(domain, masked_url, error_text(exc))
    return CompositeStoreError(f"domain {domain!r}: database error: {error_text(exc)}")


def error_text(exc: BaseException) -> str:
    """One line naming the underlying driver error; never contains a URL."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"{type(orig).__name__}: {text}"


_attribute_cache: dict[type[Any], tuple[tuple[str, Column[Any]], ...]] = {}


def _attributes(model: type[Any]) -> tuple[tuple[str, Column[Any]], ...]:
    """(attribute name, column) for each mapped column; they differ for ``metadata_``."""
    found = _attribute_cache.get(model)
    if found is None:
        found = tuple((attr.key, attr.columns[0]) for attr in inspect(model).column_attrs)
        _attribute_cache[model] = found
    return found


def table_of(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def model_columns(model: type[Any]) -> list[ColumnElement[Any]]:
    """The columns of ``model`` labelled with attribute names, for ``hydrate``."""
    return [col.label(key) if key != col.key else col for key, col in _attributes(model)]


def hydrate(model: type[M], row: Row[Any]) -> M:
    """A model instance from a row selected with ``model_columns`` (transient, no session)."""
    return hydrate_values(model, row._fields, row)


def hydrate_values(model: type[M], keys: Sequence[str], values: Sequence[Any]) -> M:
    """A model instance from ``values`` under attribute-name ``keys``.

    Lists hydrate thousands of rows on the critical path, so this fills the instance the way
    the ORM's own loader does (a new instance, its ``__dict__`` set directly) instead of
    calling ``__init__``, which fires an attribute event per column: ~10x faster.
    """
    obj: M = _constructor_of(model)()
    obj.__dict__.update(zip(keys, values))  # noqa: B905  values past keys: marker columns
    return obj


def hydrate_all(model: type[M], keys: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[M]:
    """``hydrate_values`` for each row of a result: 0.3 us less a row than calling it per
    row (part of that is ``zip``'s ``strict=`` keyword, which costs even when False)."""
    new = _constructor_of(model)
    items: list[M] = []
    append = items.append
    for values in rows:
        obj = new()
        obj.__dict__.update(zip(keys, values))  # noqa: B905  as in hydrate_values
        append(obj)
    return items


def _constructor_of(model: type[M]) -> Callable[[], M]:
    new = _constructors.get(model)
    if new is None:
        new = _constructors[model] = _constructor(model)
    return new


def _constructor(model: type[M]) -> Callable[[], M]:
    """A bare instance of ``model`` whose ORM state comes on first use.

    ``ClassManager.new_instance()`` attaches an ``InstanceState`` to every row's object; that
    was a tenth of a page read (a weakref with a callback, a dict and a set per row), and a
    page's objects are mostly only read. Reading a loaded attribute never touches the
    state (SQLAlchemy returns it from ``__dict__``), so ``_LazyState`` makes it when something
    first asks: an attribute set, ``inspect()``, a ``Session``. A mapper with its own state
    class keeps the manager's way."""
    configure_mappers()  # what the first __init__ would do: attributes need their mapper
    manager = manager_of_class(model)
    if type(inspect(manager.new_instance())) is not InstanceState:
        return manager.new_instance
    install_lazy_state(model)
    return partial(model.__new__, model)


def install_lazy_state(model: type[Any]) -> None:
    """Put ``_LazyState`` on ``model`` (once). ``composite_store`` does it for every model as
    it is imported, so an object pickled before its state was made unpickles, in any process,
    into a class that can make it."""
    manager = manager_of_class(model)
    if not isinstance(model.__dict__.get(manager.STATE_ATTR), _LazyState):
        setattr(model, manager.STATE_ATTR, _LazyState(model, manager))


class _LazyState:
    """Class attribute under SQLAlchemy's state name (``_sa_instance_state``). An instance
    that has its state keeps it in ``__dict__``, which wins over this descriptor; one filled
    by ``hydrate_*`` (columns in ``__dict__``, no state yet) gets it made here, once. An
    instance being constructed has an empty ``__dict__`` when SQLAlchemy's ``__init__``
    asks whether it has a state: the answer stays no, so construction runs as usual. So does
    it for a subclass's instance, and for any instance once the mapping is disposed
    (``clear_mappers``). One caveat: ``del obj._sa_instance_state`` does not leave a
    hydrated object stateless; the next use makes a new, transient state."""

    __slots__ = ("_manager", "_model", "_name")

    def __init__(self, model: type[Any], manager: ClassManager[Any]) -> None:
        self._model = model
        self._manager = manager
        self._name = manager.STATE_ATTR

    def __get__(self, obj: Any, owner: type[Any] | None = None) -> InstanceState[Any]:
        model = self._model
        if (
            obj is None
            or not obj.__dict__
            or type(obj) is not model
            or model.__dict__.get(self._manager.MANAGER_ATTR) is not self._manager
        ):
            raise AttributeError(self._name)
        # setdefault: two threads asking at once get the same state
        state: InstanceState[Any] = obj.__dict__.setdefault(
            self._name, InstanceState(obj, self._manager)
        )
        return state


_constructors: dict[type[Any], Callable[[], Any]] = {}


async def fetch_one(
    conn: AsyncConnection, model: type[M], *where: ColumnElement[bool], lock: bool = False
) -> M | None:
    """The one ``model`` row matching ``where``; ``lock`` holds it until the transaction ends
    (SQLite: the transaction already holds the write lock)."""
    stmt = select(*model_columns(model)).where(*where)
    if lock:
        stmt = for_update(conn.dialect.name, stmt)
    row = (await conn.execute(stmt)).first()
    return None if row is None else hydrate(model, row)


async def update_one(
    conn: AsyncConnection,
    model: type[M],
    where: ColumnElement[bool],
    values: Mapping[str, Any],
) -> M:
    """Change the one row matching ``where`` and return it as stored."""
    stmt = update(table_of(model)).where(where).values(dict(values))
    return hydrate(model, (await conn.execute(stmt.returning(*model_columns(model)))).one())


def row_values(obj: object) -> dict[str, Any]:
    """Column name -> value for inserting ``obj``. Reads the instance dict (every mapped
    field is set by the dataclass constructor): instrumented attribute access costs ~10x
    more, and bulk writes do this for every column of every row."""
    values = obj.__dict__
    return {
        col.name: values[key] if key in values else getattr(obj, key)
        for key, col in _attributes(type(obj))
    }


@dataclass(frozen=True)
class _RowShape:
    """How a mapping of a model's fields becomes a row: the defaults ``__init__`` would use."""

    keys: frozenset[str]  # the model's field (attribute) names
    template: dict[str, Any]  # column -> plain default (None where there is none)
    factories: tuple[tuple[str, str, Callable[[], Any]], ...]  # (key, column, default_factory)
    required: tuple[str, ...]
    required_keys: frozenset[str]  # the same, for one subset test
    columns: dict[str, str]  # attribute key -> column name
    same_names: bool  # every key is its column's name: a mapping's items go in as they are


_shapes: dict[type[Any], _RowShape] = {}


def _shape(model: type[Any]) -> _RowShape:
    found = _shapes.get(model)
    if found is None:
        fields = {f.name: f for f in dataclasses.fields(model)}
        template: dict[str, Any] = {}
        factories, required = [], []
        for key, column in _attributes(model):
            field = fields[key]
            template[column.name] = None
            if field.default_factory is not dataclasses.MISSING:
                factories.append((key, column.name, field.default_factory))
            elif field.default is not dataclasses.MISSING:
                template[column.name] = field.default
            else:
                required.append(key)
        columns = {key: column.name for key, column in _attributes(model)}
        found = _RowShape(
            frozenset(columns),
            template,
            tuple(factories),
            tuple(required),
            frozenset(required),
            columns,
            all(key == column for key, column in columns.items()),
        )
        _shapes[model] = found
    return found


def model_row(value: object, model: type[Any], where: str) -> dict[str, Any]:
    """A ``model`` instance, or a mapping of its fields (as ``model(**mapping)`` takes
    them), as a row: column name -> value, in column order. A mapping's missing fields take
    the model's defaults; bulk callers skip building an ORM object per row (~1 us a field)."""
    if type(value) is not dict:  # the bulk callers' case first: no isinstance checks
        if isinstance(value, model):
            return row_values(value)
        if not isinstance(value, Mapping):
            raise ValidationError(
                f"{where}: expected a {model.__name__} or a mapping, got {type(value).__name__}"
            )
    shape = _shape(model)
    if not shape.keys.issuperset(value):
        unknown = sorted(str(key) for key in value if key not in shape.keys)
        raise ValidationError(f"{where}: unknown {model.__name__} fields {unknown}")
    if not shape.required_keys.issubset(value):
        missing = [key for key in shape.required if key not in value]
        raise ValidationError(f"{where}: missing {model.__name__} fields {missing}")
    row = shape.template.copy()
    for key, column, factory in shape.factories:
        if key not in value:
            row[column] = factory()
    # known keys, all in the template already: the row keeps the model's column order
    if shape.same_names:
        row.update(value)  # one C call instead of a Python loop over the fields
    else:
        for key, item in value.items():
            row[shape.columns[key]] = item
    return row


def model_rows(values: Sequence[object], model: type[Any], where: str) -> list[dict[str, Any]]:
    """``model_row`` of each value, named ``where[i]`` in error messages. When every value
    is a plain ``dict`` of known fields with the required ones (bulk callers' usual case),
    told for the whole batch in C loops: ~0.8 us a row instead of ~1.3."""
    shape = _shape(model)
    if not (
        set(map(type, values)) == {dict}
        and shape.same_names
        and shape.keys.issuperset(chain.from_iterable(values))  # type: ignore[arg-type]
        and all(map(shape.required_keys.issubset, values))  # type: ignore[arg-type]
    ):
        return [model_row(value, model, f"{where}[{i}]") for i, value in enumerate(values)]
    template = shape.template
    rows: list[dict[str, Any]] = [{**template, **value} for value in values]  # type: ignore[dict-item]
    for key, column, factory in shape.factories:
        if not all(map(contains, values, repeat(key))):  # type: ignore[arg-type]
            for row, value in zip(rows, values, strict=True):
                if key not in value:  # type: ignore[operator]
                    row[column] = factory()
    return rows


class DomainStore:
    """Base of the five domain stores: one engine, one domain, errors translated at the edge."""

    domain: str = ""

    def __init__(self, engine: AsyncEngine, *, masked_url: str) -> None:
        self._engine = engine
        self._statements: dict[Hashable, Any] = {}
        self._fast = FastPath(engine)
        self.masked_url = masked_url

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def release(self) -> None:
        """Give back the connections the fast path keeps between calls (``close()`` does)."""
        await self._fast.release()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def _statement(self, name: Hashable, build: Callable[[], S]) -> S:
        """A statement built once per store: SQLAlchemy then finds its compiled form by
        identity instead of re-deriving a cache key on every call. Values go in as
        ``bindparam``s. ``name`` may be a tuple: formatting one into a string cost ~1 us."""
        found = self._statements.get(name)
        if found is None:
            found = self._statements[name] = build()
        return found

    def _transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One atomic unit of several statements (``FastPath.transaction``)."""
        return self._translated(self._fast.transaction())

    def _autocommit(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """Each statement commits on its own (``FastPath.autocommit``)."""
        return self._translated(self._fast.autocommit())

    def _connect(self, *, transaction: bool = False) -> AbstractAsyncContextManager[FastConnection]:
        """A fast-path connection for the hot statements (``composite_store.fastpath``)."""
        return self._translated(self._fast.connect(transaction=transaction))

    def _translated(self, source: AbstractAsyncContextManager[C]) -> _Translated[C]:
        return _Translated(source, self.domain, self.masked_url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(domain={self.domain!r}, url={self.masked_url!r})"


class _Translated(Generic[C]):
    """``source``'s connection, with driver errors turned into the SPEC's at the edge. A class
    rather than an ``asynccontextmanager``: every store call enters one, and a
    generator-based one costs ~1.3 us more a call."""

    __slots__ = ("_domain", "_masked_url", "_source")

    def __init__(self, source: AbstractAsyncContextManager[C], domain: str, masked_url: str):
        self._source = source
        self._domain = domain
        self._masked_url = masked_url

    async def __aenter__(self) -> C:
        try:
            return await self._source.__aenter__()
        except DRIVER_ERRORS as exc:
            raise translate_error(exc, self._domain, self._masked_url) from exc

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> bool:
        try:
            suppressed = await self._source.__aexit__(exc_type, exc, tb)
        except DRIVER_ERRORS as raised:  # the body's error re-raised, or the commit's own
            raise translate_error(raised, self._domain, self._masked_url) from raised
        if not suppressed and isinstance(exc, DRIVER_ERRORS):
            raise translate_error(exc, self._domain, self._masked_url) from exc
        return bool(suppressed)
