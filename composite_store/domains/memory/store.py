"""The memory domain's async store: threads, messages and working memory.

It sits on the user's critical path, so each call is as few statements as its semantics allow:
a batch of messages is one multi-row upsert, a page with its include windows is one SELECT,
and the total is counted only when it cannot be known otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    Select,
    bindparam,
    delete,
    exists,
    false,
    func,
    select,
    true,
    tuple_,
    union_all,
    update,
)

from composite_store import validation as v
from composite_store.dialects import (
    for_update,
    in_ids,
    insert_from_arrays,
    json_matches,
    upsert,
    writes_in_one_statement,
)
from composite_store.domains.base import (
    DomainStore,
    fetch_one,
    hydrate,
    hydrate_all,
    hydrate_values,
    model_columns,
    model_row,
    row_values,
    table_of,
    update_one,
)
from composite_store.domains.memory.models import Message, Resource, Thread
from composite_store.errors import NotFoundError, ValidationError
from composite_store.fastpath import FastConnection
from composite_store.pagination import (
    Page,
    check_page,
    count_total,
    fetch_page,
    make_page,
)
from composite_store.sqltypes import UTCDateTime, as_stored, utcnow

threads = table_of(Thread)
messages = table_of(Message)
resources = table_of(Resource)

THREAD_ORDER_FIELDS = ("created_at", "updated_at")
MESSAGE_UPDATE_FIELDS = ("thread_id", "resource_id", "role", "type", "content", "created_at")
IN_PAGE = "_in_page"  # marks page rows apart from include-window rows in one result
MESSAGE_KEYS = tuple(str(column.key) for column in model_columns(Message))
_ID, _CREATED_AT = MESSAGE_KEYS.index("id"), MESSAGE_KEYS.index("created_at")
_CONTENT = MESSAGE_KEYS.index("content")


# (created_at, id) of a message row selected with ``model_columns(Message)``: the sort key
_message_order = itemgetter(_CREATED_AT, _ID)


@dataclass(frozen=True)
class Include:
    """Ask ``list_messages`` for message ``id`` with ``previous``/``next`` neighbours in its
    own thread, whatever the page."""

    id: str
    previous: int = 0
    next: int = 0


class MemoryStore(DomainStore):
    domain = "memory"

    # -- threads --------------------------------------------------------------------------
    async def save_thread(self, thread: Thread) -> Thread:
        """Insert or replace a thread by id (``created_at`` of an existing one is kept)."""
        row = _thread_row(thread)
        stmt = self._statement(
            "save_thread",
            lambda: upsert(
                self.dialect,
                threads,
                key=["id"],
                update=["resource_id", "title", "metadata", "updated_at"],
            ).returning(*model_columns(Thread)),
        )
        # one statement: atomic by itself
        async with self._autocommit() as conn:
            stored = (await conn.execute(stmt, row)).one()
        return hydrate(Thread, stored)

    async def get_thread(self, thread_id: str) -> Thread | None:
        v.require_id(thread_id, "thread_id")
        async with self._autocommit() as conn:
            return await fetch_one(conn, Thread, threads.c.id == thread_id)

    async def update_thread(
        self,
        thread_id: str,
        *,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Thread:
        """Set the title and/or merge ``metadata`` into the thread's; bumps ``updated_at``."""
        v.require_id(thread_id, "thread_id")
        v.optional_text(title, "title")
        v.optional_json(metadata, "metadata")
        async with self._transaction() as conn:
            current = await fetch_one(conn, Thread, threads.c.id == thread_id, lock=True)
            if current is None:
                raise NotFoundError(f"thread {thread_id!r} does not exist")
            values: dict[str, Any] = {"updated_at": utcnow()}
            if title is not None:
                values["title"] = title
            if metadata is not None:
                values["metadata"] = {**current.metadata_, **metadata}
            return await update_one(conn, Thread, threads.c.id == thread_id, values)

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread and its messages; deleting a missing thread does nothing."""
        v.require_id(thread_id, "thread_id")
        async with self._transaction() as conn:
            await conn.execute(delete(messages).where(messages.c.thread_id == thread_id))
            await conn.execute(delete(threads).where(threads.c.id == thread_id))

    async def list_threads(
        self,
        *,
        resource_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        page: int = 0,
        per_page: int | None = 100,
        order_by: str = "created_at",
        descending: bool = True,
    ) -> Page[Thread]:
        v.optional_id(resource_id, "resource_id")
        filters = v.metadata_filter(metadata)
        check_page(page, per_page)
        v.require_choice(order_by, "order_by", THREAD_ORDER_FIELDS)
        v.require_bool(descending, "descending")
        where: list[ColumnElement[bool]] = []
        if resource_id is not None:
            where.append(threads.c.resource_id == resource_id)
        if filters:
            where.append(json_matches(self.dialect, threads.c.metadata, filters))
        column = threads.c[order_by]
        order = (column.desc(), threads.c.id.desc()) if descending else (column, threads.c.id)
        stmt = select(*model_columns(Thread)).where(*where).order_by(*order)
        async with self._autocommit() as conn:
            return await fetch_page(conn, Thread, stmt, page, per_page)

    # -- messages -------------------------------------------------------------------------
    async def save_messages(
        self, messages_: Sequence[Message | Mapping[str, Any]]
    ) -> list[Message]:
        """Insert or replace messages by id, all or none. A message whose ``thread_id``
        changed moves to that thread. Bumps the ``updated_at`` of every thread written to.
        A message may be a ``Message`` or a mapping of its fields (bulk callers skip the
        ORM object); either way the saved messages come back as ``Message`` objects."""
        if isinstance(messages_, Message | Mapping | str | bytes) or not isinstance(
            messages_, Iterable
        ):
            raise ValidationError("save_messages takes a list of messages")
        given = list(messages_)
        checked = [_message_row(m, i) for i, m in enumerate(given)]
        rows = _dedupe_last_wins(checked)
        if not rows:
            return []
        thread_ids = sorted({row["thread_id"] for row in rows})
        stmt = self._statement("save_messages", lambda: _upsert_messages(self.dialect))
        stored_at: dict[str, datetime]
        if writes_in_one_statement(self.dialect):
            stored_at = await self._save_in_one_statement(stmt, thread_ids, rows)
        else:
            async with self._connect(transaction=True) as conn:
                # Touching the threads first also proves they exist and locks them before
                # the messages: one round trip for both, and one lock order for every writer.
                await self._touch_threads(conn, thread_ids, require=True)
                stored_at = await self._upsert_messages(conn, stmt, rows)
        result = []
        for message, row in zip(given, checked, strict=True):
            if isinstance(message, Message):
                message.created_at = stored_at[message.id]  # the caller's object, completed
            else:  # a mapping: a new object, as stored (its document, not the text)
                values = list(row.values())  # model_row's rows are in column order
                values[_CONTENT] = message["content"]
                values[_CREATED_AT] = stored_at[row["id"]]
                message = hydrate_values(Message, MESSAGE_KEYS, values)
            result.append(message)
        return result

    async def _upsert_messages(
        self, conn: FastConnection, upsert_: Insert, rows: list[dict[str, Any]]
    ) -> dict[str, datetime]:
        """Write ``rows``; each message's stored ``created_at`` (a re-saved one keeps its
        first). New messages, the usual case, go in by a plain insert that reports how many
        went in: when all did, they were stored as given, and the upsert's RETURNING (~30 us
        a call of 20 on SQLite) is not needed. Otherwise the upsert writes every row again,
        the ones just inserted unchanged, and says what each one holds."""
        new = self._statement(
            "insert_new_messages", lambda: upsert(self.dialect, messages, key=["id"])
        )
        if await conn.insert_new(new, rows) == len(rows):
            return {row["id"]: as_stored(row["created_at"]) for row in rows}
        return dict(await conn.insert_many(upsert_, rows))

    async def _save_in_one_statement(
        self, upsert_: Insert, thread_ids: list[str], rows: list[dict[str, Any]]
    ) -> dict[str, datetime]:
        """``save_messages`` as one statement (``writes_in_one_statement``): lock the threads
        in id order, bump them and upsert the messages, all only if every thread exists. One
        round trip where BEGIN, touch, upsert and COMMIT took four."""
        columns = tuple(rows[0])
        one_thread = len(thread_ids) == 1
        stmt = self._statement(
            ("save_messages_in_one_statement", columns, one_thread),
            lambda: _touch_threads_and_upsert(self.dialect, upsert_, columns, one_thread),
        )
        params: dict[str, Any] = {f"{c}_all": [row[c] for row in rows] for c in columns}
        params.update(thread_ids=thread_ids, thread_count=len(thread_ids), now=utcnow())
        async with self._connect() as conn:
            stored_at = dict(await conn.rows(stmt, params))
            if not stored_at:  # a thread is missing, so nothing was written: say which
                stmt = self._statement("existing_threads", lambda: _existing_threads(self.dialect))
                found = {row[0] for row in await conn.rows(stmt, {"ids": thread_ids})}
                _require_all(thread_ids, found)
                raise NotFoundError("a thread was missing when the messages were saved")
        return stored_at

    async def list_messages(
        self,
        thread_id: str,
        *,
        resource_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        page: int = 0,
        per_page: int | None = 40,
        descending: bool = False,
        include: Sequence[Include] = (),
        with_total: bool = True,
    ) -> Page[Message]:
        """A page of a thread's messages, ordered by ``created_at`` (ties by id), united with
        each ``Include``'s message and neighbours. ``total`` counts the filtered thread.

        ``with_total=False`` is the fast path for a chat view: ``total`` is ``None`` and
        ``has_more`` comes from reading one row past the page, so no COUNT over the thread
        is run and the cost stays flat however long the thread grows."""
        v.require_id(thread_id, "thread_id")
        v.optional_id(resource_id, "resource_id")
        first, last = v.check_range(start, end)
        check_page(page, per_page)
        v.require_bool(descending, "descending")
        v.require_bool(with_total, "with_total")
        includes = _check_includes(include)
        shape = (
            resource_id is not None,
            first is not None,
            last is not None,
            descending,
            per_page is not None,
            tuple([(inc.previous > 0, inc.next > 0) for inc in includes]),
        )
        page_stmt, count_stmt = self._statement(
            ("list_messages", shape), lambda: _list_messages_statements(*shape)
        )
        params: dict[str, Any] = {
            "thread_id": thread_id,
            "resource_id": resource_id,
            "start": first,
            "end": last,
            "limit": per_page if with_total or per_page is None else per_page + 1,
            "offset": page * (per_page or 0),
        }
        for i, inc in enumerate(includes):
            params.update(
                {f"inc{i}": inc.id, f"inc{i}_prev": inc.previous, f"inc{i}_next": inc.next}
            )
        async with self._connect() as conn:
            rows = await conn.rows(page_stmt, params)
            in_page = [row for row in rows if row[-1]] if includes else rows
            beyond = None
            if not with_total and per_page is not None and len(in_page) > per_page:
                if includes:  # united with the windows: the page rows are not in order
                    in_page.sort(key=_message_order, reverse=descending)
                beyond = in_page.pop()  # read only to learn that more rows exist

            async def count_rows() -> int:
                return int((await conn.rows(count_stmt, params))[0][0])

            total = (
                await count_total(count_rows, page, per_page, len(in_page)) if with_total else None
            )
        if includes:  # the page and the windows overlap and interleave: merge them
            found = {row[_ID]: row for row in rows if row is not beyond}
            ordered = sorted(found.values(), key=_message_order, reverse=descending)
        else:  # the page alone, already in order
            ordered = in_page
        items = hydrate_all(Message, MESSAGE_KEYS, ordered)
        if total is None:
            return Page(items, None, page, per_page, has_more=beyond is not None)
        return make_page(items, total, page, per_page)

    async def get_messages(self, ids: Sequence[str]) -> list[Message]:
        """The messages with these ids that exist, ordered by ``created_at`` (ties by id)."""
        wanted = v.require_ids(ids, "ids")
        if not wanted:
            return []
        stmt = (
            select(*model_columns(Message))
            .where(in_ids(self.dialect, messages.c.id, "ids"))
            .order_by(messages.c.created_at, messages.c.id)
        )
        async with self._autocommit() as conn:
            return [hydrate(Message, row) for row in await conn.execute(stmt, {"ids": wanted})]

    async def update_messages(self, updates: Sequence[Mapping[str, Any]]) -> list[Message]:
        """Partial updates ``{"id": ..., field: value}``; ``content`` is merged into the stored
        content, its ``metadata`` deep-merged. Unknown ids are ignored."""
        if isinstance(updates, str | bytes | Mapping) or not isinstance(updates, Iterable):
            raise ValidationError("update_messages takes a list of dicts")
        checked = [_check_message_update(u, i) for i, u in enumerate(updates)]
        if not checked:
            return []
        by_id = {u["id"]: u for u in checked}
        locked = self._statement(
            "messages_for_update",
            lambda: for_update(
                self.dialect,
                select(*model_columns(Message)).where(in_ids(self.dialect, messages.c.id, "ids")),
            ),
        )
        # the rows are locked and exist: an upsert of all of them is one batch of updates
        rewrite = self._statement(
            "rewrite_messages",
            lambda: upsert(self.dialect, messages, key=["id"], update=[*MESSAGE_UPDATE_FIELDS]),
        )
        async with self._connect(transaction=True) as conn:
            rows = await conn.rows(locked, {"ids": list(by_id)})
            current = hydrate_all(Message, MESSAGE_KEYS, rows)
            targets = sorted({u["thread_id"] for u in checked if "thread_id" in u})
            await self._touch_threads(conn, targets, require=True)
            touched: set[str] = set()
            for message in current:
                change = by_id[message.id]
                touched.add(message.thread_id)
                for field in MESSAGE_UPDATE_FIELDS:
                    if field in change and field != "content":
                        setattr(message, field, change[field])
                if "content" in change:
                    message.content = _merge_content(message.content, change["content"])
                touched.add(message.thread_id)
            await conn.insert_many(rewrite, [row_values(m) for m in current])
            await self._touch_threads(conn, sorted(touched - set(targets)))  # targets: done
        return sorted(current, key=lambda m: (m.created_at, m.id))

    async def delete_messages(self, ids: Sequence[str]) -> None:
        """Delete messages by id (missing ids are ignored); bumps their threads' ``updated_at``."""
        wanted = v.require_ids(ids, "ids")
        if not wanted:
            return
        stmt = self._statement(
            "delete_messages",
            lambda: (
                delete(messages)
                .where(in_ids(self.dialect, messages.c.id, "ids"))
                .returning(messages.c.thread_id)
            ),
        )
        async with self._connect(transaction=True) as conn:
            thread_ids = sorted({row[0] for row in await conn.rows(stmt, {"ids": wanted})})
            await self._touch_threads(conn, thread_ids)

    async def _touch_threads(
        self, conn: FastConnection, thread_ids: Sequence[str], *, require: bool = False
    ) -> None:
        """Bump the threads' ``updated_at``; with ``require``, a missing one is NotFoundError."""
        if not thread_ids:
            return
        stmt = self._statement(
            "touch_threads",
            lambda: (
                update(threads)
                .where(in_ids(self.dialect, threads.c.id, "ids"))
                .values(updated_at=bindparam("now", type_=UTCDateTime()))
            ),
        )
        touched = await conn.count(stmt, {"ids": list(thread_ids), "now": utcnow()})
        if require and touched < len(set(thread_ids)):  # say which: the error path's query
            existing = self._statement("existing_threads", lambda: _existing_threads(self.dialect))
            found = {row[0] for row in await conn.rows(existing, {"ids": list(thread_ids)})}
            _require_all(thread_ids, found)

    # -- resources ------------------------------------------------------------------------
    async def get_resource(self, resource_id: str) -> Resource | None:
        v.require_id(resource_id, "resource_id")
        async with self._autocommit() as conn:
            return await fetch_one(conn, Resource, resources.c.id == resource_id)

    async def save_resource(self, resource: Resource) -> Resource:
        """Insert or replace a resource by id (``created_at`` of an existing one is kept)."""
        row = _resource_row(resource)
        # one statement: atomic by itself
        async with self._autocommit() as conn:
            return hydrate(Resource, (await conn.execute(self._save_resource(), row)).one())

    async def update_resource(
        self,
        resource_id: str,
        *,
        working_memory: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Resource:
        """Set working memory and/or merge metadata; creates the resource if it is missing."""
        v.require_id(resource_id, "resource_id")
        v.optional_text(working_memory, "working_memory")
        v.optional_json(metadata, "metadata")
        async with self._transaction() as conn:
            current = await fetch_one(conn, Resource, resources.c.id == resource_id, lock=True)
            now = utcnow()
            if current is None:
                current = Resource(id=resource_id, created_at=now)
            if working_memory is not None:
                current.working_memory = working_memory
            if metadata is not None:
                current.metadata_ = {**current.metadata_, **metadata}
            current.updated_at = now
            stored = await conn.execute(self._save_resource(), row_values(current))
            return hydrate(Resource, stored.one())

    def _save_resource(self) -> Any:
        return self._statement(
            "save_resource",
            lambda: upsert(
                self.dialect,
                resources,
                key=["id"],
                update=["working_memory", "metadata", "updated_at"],
            ).returning(*model_columns(Resource)),
        )


# -- statements ---------------------------------------------------------------------------
def _require_all(thread_ids: Sequence[str], found: set[str]) -> None:
    missing = [t for t in thread_ids if t not in found]
    if missing:
        raise NotFoundError(f"thread(s) do not exist: {', '.join(map(repr, missing))}")


def _existing_threads(dialect: str) -> Select[Any]:
    return select(threads.c.id).where(in_ids(dialect, threads.c.id, "ids"))


def _upsert_messages(dialect: str) -> Insert:
    return upsert(
        dialect,
        messages,
        key=["id"],
        update=["thread_id", "resource_id", "role", "type", "content"],
    ).returning(messages.c.id, messages.c.created_at)


def _touch_threads_and_upsert(
    dialect: str, upsert_: Insert, columns: Sequence[str], one_thread: bool
) -> Select[Any]:
    """PostgreSQL: the threads ``thread_ids`` bumped to ``now`` and ``upsert_`` fed from
    arrays (``insert_from_arrays``), only if all ``thread_count`` exist. Returns the upserted
    ``(id, created_at)``: none if a thread is missing.

    Several threads are locked in id order first, so that two writers never wait on each
    other's threads. One thread (the usual batch) is locked by the UPDATE alone: a single
    lock has no order, and the first lock cost ~45 us of the ~550 us statement alone (~20 us of
    a ~750 us M1 call)."""
    bump = update(threads).values(updated_at=bindparam("now", type_=UTCDateTime()))
    if one_thread:
        touched = bump.where(in_ids(dialect, threads.c.id, "thread_ids")).returning(threads.c.id)
        found_it = exists(touched.cte("touched").select())
        written = insert_from_arrays(upsert_, columns, only_if=found_it).cte("written")
        return select(written.c.id, written.c.created_at)
    found = (
        select(threads.c.id)
        .where(in_ids(dialect, threads.c.id, "thread_ids"))
        .order_by(threads.c.id)
        .with_for_update()
        .cte("found")
    )
    all_found = (
        select(func.count() == bindparam("thread_count")).select_from(found).scalar_subquery()
    )
    touched_cte = bump.where(threads.c.id.in_(select(found.c.id)), all_found).cte("touched")
    written = insert_from_arrays(upsert_, columns, only_if=all_found).cte("written")
    return select(written.c.id, written.c.created_at).add_cte(touched_cte)


def _list_messages_statements(
    by_resource: bool,
    from_start: bool,
    to_end: bool,
    descending: bool,
    paged: bool,
    includes: tuple[tuple[bool, bool], ...],
) -> tuple[Select[Any], Select[Any]]:
    """The page (united with include windows) and its count, for one shape of arguments;
    every value is a bound parameter."""
    where = [messages.c.thread_id == bindparam("thread_id")]
    if by_resource:
        where.append(messages.c.resource_id == bindparam("resource_id"))
    if from_start:
        where.append(messages.c.created_at >= bindparam("start", type_=UTCDateTime()))
    if to_end:
        where.append(messages.c.created_at <= bindparam("end", type_=UTCDateTime()))
    order = (
        (messages.c.created_at.desc(), messages.c.id.desc())
        if descending
        else (messages.c.created_at, messages.c.id)
    )
    filtered = select(*model_columns(Message), true().label(IN_PAGE)).where(*where)
    count = select(func.count()).select_from(filtered.subquery())
    page = filtered.order_by(*order)
    if paged:
        page = page.limit(bindparam("limit")).offset(bindparam("offset"))
    windows = [w for i, (prev, nxt) in enumerate(includes) for w in _include_windows(i, prev, nxt)]
    return (_union([page, *windows]) if windows else page), count


def _include_windows(i: int, previous: bool, next_: bool) -> list[Select[Any]]:
    """Include ``i``'s message and its neighbours. The anchor's thread and time are scalar
    subqueries (evaluated once), so each window is a range scan of the
    ``(thread_id, created_at)`` index that stops after ``previous``/``next`` rows, however
    long the thread."""
    message_id: BindParameter[str] = bindparam(f"inc{i}")
    anchor = messages.alias("anchor")
    anchor_thread = select(anchor.c.thread_id).where(anchor.c.id == message_id).scalar_subquery()
    anchor_time = select(anchor.c.created_at).where(anchor.c.id == message_id).scalar_subquery()
    cols = [*model_columns(Message), false().label(IN_PAGE)]
    base = select(*cols).where(messages.c.thread_id == anchor_thread)
    position = tuple_(messages.c.created_at, messages.c.id)
    anchor_position = tuple_(anchor_time, message_id)
    windows = [select(*cols).where(messages.c.id == message_id)]
    if previous:
        windows.append(
            base.where(messages.c.created_at <= anchor_time, position < anchor_position)
            .order_by(messages.c.created_at.desc(), messages.c.id.desc())
            .limit(bindparam(f"inc{i}_prev"))
        )
    if next_:
        windows.append(
            base.where(messages.c.created_at >= anchor_time, position > anchor_position)
            .order_by(messages.c.created_at, messages.c.id)
            .limit(bindparam(f"inc{i}_next"))
        )
    return windows


def _union(parts: list[Select[Any]]) -> Select[Any]:
    """UNION ALL of selects that may carry their own ORDER BY/LIMIT (wrapped as subqueries)."""
    wrapped = [select(*part.subquery().c) for part in parts]
    return select(*union_all(*wrapped).subquery().c)


# -- input ----------------------------------------------------------------------------------
def _thread_row(thread: object) -> dict[str, Any]:
    thread = v.require_instance(thread, Thread, "thread")
    v.require_id(thread.id, "thread.id")
    v.require_id(thread.resource_id, "thread.resource_id")
    v.optional_text(thread.title, "thread.title")
    metadata = v.json_text(thread.metadata_, "thread.metadata")
    v.require_datetime(thread.created_at, "thread.created_at")
    v.require_datetime(thread.updated_at, "thread.updated_at")
    return {**row_values(thread), "metadata": metadata}  # bound as checked: serialised once


def _message_row(message: object, index: int) -> dict[str, Any]:
    """A checked row of a ``Message`` or a mapping of its fields (``model_row``)."""
    where = f"messages[{index}]"
    row = model_row(message, Message, where)
    for key in ("id", "thread_id", "role", "type"):
        if not v.plain_id(row[key]):
            v.require_id(row[key], f"{where}.{key}")
    if row["resource_id"] is not None and not v.plain_id(row["resource_id"]):
        v.require_id(row["resource_id"], f"{where}.resource_id")
    row["content"] = v.json_text(row["content"], where + ".content")
    if not v.plain_datetime(row["created_at"]):
        v.require_datetime(row["created_at"], f"{where}.created_at")
    return row


def _resource_row(resource: object) -> dict[str, Any]:
    resource = v.require_instance(resource, Resource, "resource")
    v.require_id(resource.id, "resource.id")
    v.optional_text(resource.working_memory, "resource.working_memory")
    metadata = v.json_text(resource.metadata_, "resource.metadata")
    v.require_datetime(resource.created_at, "resource.created_at")
    v.require_datetime(resource.updated_at, "resource.updated_at")
    return {**row_values(resource), "metadata": metadata}  # bound as checked: serialised once


def _check_includes(include: Sequence[Include] | None) -> list[Include]:
    if include is None:
        return []
    if type(include) not in (list, tuple) and (
        isinstance(include, Include) or not isinstance(include, Iterable)
    ):
        raise ValidationError(f"include must be a list of Include, got {type(include).__name__}")
    checked = list(include)
    for i, inc in enumerate(checked):
        if (
            type(inc) is Include
            and v.plain_id(inc.id)
            and v.plain_count(inc.previous)
            and v.plain_count(inc.next)
        ):
            continue  # the usual include, passed without naming it for an error message
        if not isinstance(inc, Include):
            raise ValidationError(f"include[{i}] must be an Include, got {type(inc).__name__}")
        v.require_id(inc.id, f"include[{i}].id")
        v.require_int(inc.previous, f"include[{i}].previous", minimum=0)
        v.require_int(inc.next, f"include[{i}].next", minimum=0)
    return checked


def _check_message_update(change: Mapping[str, Any], index: int) -> dict[str, Any]:
    where = f"updates[{index}]"
    if not isinstance(change, Mapping):
        raise ValidationError(f"{where} must be a dict with an 'id'")
    v.require_id(change.get("id"), f"{where}.id")
    v.reject_unknown({k: 1 for k in change if k != "id"}, MESSAGE_UPDATE_FIELDS, where)
    for field in ("thread_id", "role", "type"):
        if field in change:
            v.require_id(change[field], f"{where}.{field}")
    if "resource_id" in change:
        v.optional_id(change["resource_id"], f"{where}.resource_id")
    if "content" in change:
        v.require_json(change["content"], f"{where}.content")
    if "created_at" in change:
        v.require_datetime(change["created_at"], f"{where}.created_at")
    return dict(change)


def _merge_content(stored: dict[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**stored, **change}
    if isinstance(stored.get("metadata"), dict) and isinstance(change.get("metadata"), dict):
        merged["metadata"] = deep_merge(stored["metadata"], change["metadata"])
    return merged


def deep_merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """``change`` merged into ``base``: nested dicts merge, anything else replaces."""
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dedupe_last_wins(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per id (an upsert may not touch a row twice in one statement)."""
    return list({row["id"]: row for row in rows}.values())
