"""MemoryStore conformance: the same behaviour on every backend (SPEC §6, issue 3)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from composite_store import CompositeStore, NotFoundError, ValidationError
from composite_store.domains.memory.store import Include, MemoryStore
from composite_store.models import Message, Resource, Thread

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def memory(store: CompositeStore) -> MemoryStore:
    return store.memory


def msg(i: int, thread: str = "t1", **kw: Any) -> Message:
    """Message number ``i``: created i milliseconds after T0, so order follows ``i``."""
    fields: dict[str, Any] = {
        "id": f"{thread}-m{i:04d}",
        "thread_id": thread,
        "role": "user" if i % 2 == 0 else "assistant",
        "content": {"format": 2, "parts": [{"type": "text", "text": f"hello {i}"}]},
        "resource_id": "user-1",
        "created_at": T0 + timedelta(milliseconds=i),
    }
    fields.update(kw)
    return Message(**fields)


async def seed(memory: MemoryStore, thread: str = "t1", n: int = 10, **kw: Any) -> list[Message]:
    await memory.save_thread(Thread(id=thread, resource_id=kw.pop("resource_id", "user-1")))
    return await memory.save_messages([msg(i, thread, **kw) for i in range(n)])


def ids(page_or_list: Any) -> list[str]:
    items = getattr(page_or_list, "items", page_or_list)
    return [m.id for m in items]


# -- threads ---------------------------------------------------------------------------------
async def test_thread_round_trip(memory: MemoryStore) -> None:
    thread = Thread(id="t1", resource_id="user-1", title="Hi", metadata_={"k": [1, "x"]})
    saved = await memory.save_thread(thread)
    assert saved == thread
    assert await memory.get_thread("t1") == thread
    assert await memory.get_thread("missing") is None


async def test_save_thread_upserts_and_keeps_created_at(memory: MemoryStore) -> None:
    first = await memory.save_thread(Thread(id="t1", resource_id="u", title="a", created_at=T0))
    later = T0 + timedelta(days=1)
    again = await memory.save_thread(
        Thread(id="t1", resource_id="u2", title="b", created_at=later, updated_at=later)
    )
    assert (again.title, again.resource_id, again.created_at) == ("b", "u2", first.created_at)
    assert again.updated_at == later


async def test_update_thread_merges_metadata_and_bumps_updated_at(memory: MemoryStore) -> None:
    old = T0 - timedelta(days=1)
    await memory.save_thread(
        Thread(id="t1", resource_id="u", title="a", metadata_={"a": 1, "b": 1}, updated_at=old)
    )
    updated = await memory.update_thread("t1", metadata={"b": 2, "c": 3})
    assert updated.metadata_ == {"a": 1, "b": 2, "c": 3}
    assert updated.title == "a" and updated.updated_at > old
    renamed = await memory.update_thread("t1", title="z")
    assert (renamed.title, renamed.metadata_) == ("z", {"a": 1, "b": 2, "c": 3})
    assert await memory.get_thread("t1") == renamed


async def test_update_missing_thread_raises_not_found(memory: MemoryStore) -> None:
    with pytest.raises(NotFoundError):
        await memory.update_thread("nope", title="x")
    assert await memory.get_thread("nope") is None


async def test_delete_thread_deletes_its_messages_only(memory: MemoryStore) -> None:
    await seed(memory, "t1", 3)
    await seed(memory, "t2", 2)
    await memory.delete_thread("t1")
    assert await memory.get_thread("t1") is None
    assert await memory.get_messages([f"t1-m{i:04d}" for i in range(3)]) == []
    assert ids(await memory.list_messages("t2")) == ["t2-m0000", "t2-m0001"]
    await memory.delete_thread("t1")  # again: nothing to do, no error


async def test_list_threads_pages(memory: MemoryStore) -> None:
    """17 threads at 7 a page: 7/7/3, has_more True/True/False, newest first by default."""
    for i in range(17):
        await memory.save_thread(
            Thread(id=f"t{i:02d}", resource_id="u", created_at=T0 + timedelta(seconds=i))
        )
    pages = [await memory.list_threads(page=p, per_page=7) for p in range(3)]
    assert [len(p.items) for p in pages] == [7, 7, 3]
    assert [p.has_more for p in pages] == [True, True, False]
    assert {p.total for p in pages} == {17}
    assert [t.id for p in pages for t in p.items] == [f"t{i:02d}" for i in reversed(range(17))]
    assert ids(await memory.list_threads(page=3, per_page=7)) == []
    assert (await memory.list_threads(page=3, per_page=7)).total == 17


async def test_list_threads_filters_and_order(memory: MemoryStore) -> None:
    for i, (resource, meta) in enumerate(
        [("a", {"kind": "chat", "n": 1}), ("a", {"kind": "task"}), ("b", {"kind": "chat"})]
    ):
        await memory.save_thread(
            Thread(
                id=f"t{i}",
                resource_id=resource,
                metadata_=meta,
                created_at=T0 + timedelta(seconds=i),
                updated_at=T0 + timedelta(seconds=10 - i),
            )
        )
    assert ids(await memory.list_threads(resource_id="a")) == ["t1", "t0"]
    assert ids(await memory.list_threads(metadata={"kind": "chat"})) == ["t2", "t0"]
    assert ids(await memory.list_threads(metadata={"kind": "chat", "n": 1})) == ["t0"]
    assert ids(await memory.list_threads(resource_id="b", metadata={"kind": "task"})) == []
    assert ids(await memory.list_threads(order_by="updated_at")) == ["t0", "t1", "t2"]
    assert ids(await memory.list_threads(descending=False)) == ["t0", "t1", "t2"]


async def test_list_threads_per_page_none_and_zero(memory: MemoryStore) -> None:
    for i in range(3):
        await memory.save_thread(Thread(id=f"t{i}", resource_id="u"))
    everything = await memory.list_threads(per_page=None)
    assert (len(everything.items), everything.total, everything.has_more) == (3, 3, False)
    counted = await memory.list_threads(per_page=0)
    assert (counted.items, counted.total, counted.has_more) == ([], 3, True)


# -- messages --------------------------------------------------------------------------------
async def test_messages_listed_in_order_with_pages(memory: MemoryStore) -> None:
    saved = await seed(memory, n=25)
    assert [m.created_at for m in saved] == [T0 + timedelta(milliseconds=i) for i in range(25)]
    first = await memory.list_messages("t1", per_page=10)
    assert ids(first) == [f"t1-m{i:04d}" for i in range(10)]
    assert (first.total, first.has_more) == (25, True)
    last = await memory.list_messages("t1", page=2, per_page=10)
    assert ids(last) == [f"t1-m{i:04d}" for i in range(20, 25)]
    assert (last.total, last.has_more) == (25, False)
    newest = await memory.list_messages("t1", per_page=3, descending=True)
    assert ids(newest) == ["t1-m0024", "t1-m0023", "t1-m0022"]
    assert (await memory.list_messages("t1", per_page=None)).total == 25
    zero = await memory.list_messages("t1", per_page=0)
    assert (zero.items, zero.total) == ([], 25)


async def test_messages_round_trip_every_field(memory: MemoryStore) -> None:
    await memory.save_thread(Thread(id="t1", resource_id="user-1"))
    original = msg(1, type="v3", content={"parts": [{"text": "héllo ✓ 'quoted'"}], "n": 1.5})
    await memory.save_messages([original])
    (stored,) = await memory.get_messages([original.id])
    assert stored == original


async def test_list_messages_filters(memory: MemoryStore) -> None:
    await memory.save_thread(Thread(id="t1", resource_id="user-1"))
    await memory.save_messages(
        [msg(i, resource_id="user-1" if i < 5 else "user-2") for i in range(10)]
    )
    assert ids(await memory.list_messages("t1", resource_id="user-2")) == [
        f"t1-m{i:04d}" for i in range(5, 10)
    ]
    window = await memory.list_messages(
        "t1", start=T0 + timedelta(milliseconds=2), end=T0 + timedelta(milliseconds=4)
    )
    assert ids(window) == ["t1-m0002", "t1-m0003", "t1-m0004"]
    assert window.total == 3
    assert (await memory.list_messages("other")).total == 0


async def test_include_adds_neighbours_from_the_messages_own_thread(memory: MemoryStore) -> None:
    await seed(memory, "t1", 10)
    await seed(memory, "t2", 10)
    page = await memory.list_messages(
        "t1",
        per_page=2,
        descending=False,
        include=[Include("t2-m0005", previous=2, next=1), Include("t1-m0001", next=2)],
    )
    # page t1 m0,m1 + t1 m1..m3 (deduplicated) + t2 m3..m6, sorted by created_at, ties by id
    assert ids(page) == [
        *("t1-m0000", "t1-m0001", "t1-m0002", "t1-m0003"),
        *("t2-m0003", "t2-m0004", "t2-m0005", "t2-m0006"),
    ]
    assert page.total == 10 and page.has_more is True


async def test_include_at_the_edges_and_unknown_ids(memory: MemoryStore) -> None:
    await seed(memory, "t1", 5)
    page = await memory.list_messages(
        "t1",
        per_page=0,
        include=[Include("t1-m0000", previous=3, next=1), Include("nope", previous=2)],
    )
    assert ids(page) == ["t1-m0000", "t1-m0001"]
    assert page.total == 5


async def test_include_with_newest_first_keeps_direction(memory: MemoryStore) -> None:
    await seed(memory, "t1", 30)
    page = await memory.list_messages(
        "t1", per_page=2, descending=True, include=[Include("t1-m0010", previous=1, next=1)]
    )
    assert ids(page) == ["t1-m0029", "t1-m0028", "t1-m0011", "t1-m0010", "t1-m0009"]


async def test_save_messages_upserts_and_moves_between_threads(memory: MemoryStore) -> None:
    await seed(memory, "t1", 3)
    await memory.save_thread(Thread(id="t2", resource_id="user-1"))
    moved = msg(1, "t1", thread_id="t2", content={"edited": True})
    await memory.save_messages([moved])
    assert ids(await memory.list_messages("t1")) == ["t1-m0000", "t1-m0002"]
    (stored,) = (await memory.list_messages("t2")).items
    assert (stored.id, stored.content) == ("t1-m0001", {"edited": True})
    assert stored.created_at == T0 + timedelta(milliseconds=1)


async def test_resource_id_set_to_none_is_cleared(memory: MemoryStore) -> None:
    """A batch in which no message sets ``resource_id`` stores None for each of them, by
    ``save_messages`` and by ``update_messages`` (a batch's INSERT leaves such columns out,
    which must not mean "keep what is stored")."""
    await seed(memory, "t1", 4)
    await memory.save_messages([msg(0, resource_id=None), msg(5, resource_id=None)])
    await memory.update_messages([{"id": "t1-m0002", "resource_id": None}])
    stored = await memory.get_messages([f"t1-m000{i}" for i in range(6)])
    assert [m.resource_id for m in stored] == [None, "user-1", None, "user-1", None]


async def test_save_messages_returns_what_is_stored(memory: MemoryStore) -> None:
    """New and already stored messages in one batch, and timestamps in another zone: each
    returned message equals what is read back, its ``created_at`` in UTC, and a re-saved
    message keeps its first ``created_at``. New messages only (the usual batch) are written
    without the upsert's RETURNING, so both kinds of batch are checked."""
    await seed(memory, "t1", 2)
    plus5 = timezone(timedelta(hours=5))
    for batch in (
        [msg(5, created_at=(T0 + timedelta(seconds=5)).astimezone(plus5)), as_mapping(msg(6))],
        [msg(1, content={"edited": True}, created_at=T0 + timedelta(days=1)), msg(7)],
    ):
        saved = await memory.save_messages(batch)
        stored = {m.id: m for m in await memory.get_messages([m.id for m in saved])}
        assert saved == [stored[m.id] for m in saved]
        assert all(m.created_at.tzinfo is UTC for m in saved)
    assert [m.created_at for m in await memory.get_messages(["t1-m0001", "t1-m0005"])] == [
        T0 + timedelta(milliseconds=1),
        T0 + timedelta(seconds=5),
    ]
    order = ["t1-m0000", "t1-m0001", "t1-m0006", "t1-m0007", "t1-m0005"]  # by created_at
    assert ids(await memory.list_messages("t1")) == order


async def test_messages_at_the_first_and_last_instants_are_found_by_them(
    memory: MemoryStore,
) -> None:
    """Every write path stores ``datetime.min``/``datetime.max`` (UTC) as a filter binds
    them (PostgreSQL: -/+infinity)."""
    first, last = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    await seed(memory, "t1", 1)
    await memory.save_messages([msg(1, created_at=first), msg(2, created_at=last)])
    assert ids(await memory.list_messages("t1", start=last)) == ["t1-m0002"]
    assert ids(await memory.list_messages("t1", end=first)) == ["t1-m0001"]


async def test_save_messages_bumps_thread_updated_at(memory: MemoryStore) -> None:
    old = T0 - timedelta(days=3)
    await memory.save_thread(Thread(id="t1", resource_id="u", updated_at=old))
    await memory.save_messages([msg(0)])
    thread = await memory.get_thread("t1")
    assert thread is not None and thread.updated_at > old


async def test_save_messages_is_all_or_nothing(memory: MemoryStore) -> None:
    await seed(memory, "t1", 2)
    before = await memory.list_messages("t1")
    thread_before = await memory.get_thread("t1")
    invalid = [msg(10), msg(11, content="not a dict"), msg(12)]
    with pytest.raises(ValidationError):
        await memory.save_messages(invalid)
    unknown_thread = [msg(10), msg(11, thread="ghost")]
    with pytest.raises(NotFoundError, match="'ghost'"):
        await memory.save_messages(unknown_thread)
    no_thread = [msg(13, thread_id="")]
    with pytest.raises(ValidationError):
        await memory.save_messages(no_thread)
    assert await memory.list_messages("t1") == before
    assert await memory.get_thread("t1") == thread_before  # updated_at not bumped either


async def test_save_messages_to_one_missing_thread_saves_nothing(memory: MemoryStore) -> None:
    """A batch whose messages all name one missing thread (PostgreSQL writes such a batch by
    a statement of its own) raises ``NotFoundError`` naming it; no message is stored, even
    one whose id is already stored in another thread."""
    await seed(memory, "t1", 2)
    before = await memory.list_messages("t1")
    moved = msg(0, thread="ghost", id="t1-m0000")  # stored in t1: it stays there
    with pytest.raises(NotFoundError, match="'ghost'"):
        await memory.save_messages([msg(5, thread="ghost"), moved, msg(6, thread="ghost")])
    assert await memory.list_messages("t1") == before
    assert await memory.get_messages(["ghost-m0005", "ghost-m0006"]) == []


def as_mapping(message: Message) -> dict[str, Any]:
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(Message)}


async def test_messages_given_as_mappings_are_saved_like_message_objects(
    memory: MemoryStore,
) -> None:
    """A mapping of Message fields is a message (missing fields take Message's defaults);
    the saved messages come back as Message objects either way."""
    await memory.save_thread(Thread(id="t1", resource_id="user-1"))
    as_object = msg(0)
    minimal = {"id": "bare", "thread_id": "t1", "role": "user", "content": {"x": 1}}
    saved = await memory.save_messages([as_mapping(msg(1)), as_object, minimal])
    assert all(isinstance(m, Message) for m in saved)
    assert saved[1] is as_object  # a given object is completed, not copied
    assert saved[0] == msg(1)
    bare = await memory.get_messages(["bare"])
    assert bare == [saved[2]]
    assert (bare[0].type, bare[0].resource_id, bare[0].content) == ("v2", None, {"x": 1})
    assert bare[0].created_at.tzinfo is not None
    page = await memory.list_messages("t1", per_page=None)
    assert ids(page) == ["t1-m0000", "t1-m0001", "bare"]


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "x", "thread_id": "t1", "role": "user"},  # no content
        {"id": "x", "thread_id": "t1", "role": "user", "content": {}, "colour": "red"},
        {"id": "x", "thread_id": "t1", "role": "user", "content": "text"},
        {"thread_id": "t1", "role": "user", "content": {}},  # no id
    ],
    ids=repr,
)
async def test_bad_message_mappings_save_nothing(memory: MemoryStore, bad: dict[str, Any]) -> None:
    await seed(memory, "t1", 2)
    before = await memory.list_messages("t1")
    with pytest.raises(ValidationError):
        await memory.save_messages([as_mapping(msg(5)), bad])
    assert await memory.list_messages("t1") == before


async def test_concurrent_save_messages_lose_nothing(memory: MemoryStore) -> None:
    """20 concurrent calls of 50 messages each into one thread leave exactly 1,000."""
    await memory.save_thread(Thread(id="t1", resource_id="u"))
    batches = [[msg(b * 50 + i) for i in range(50)] for b in range(20)]
    await asyncio.gather(*(memory.save_messages(batch) for batch in batches))
    page = await memory.list_messages("t1", per_page=None)
    assert page.total == 1000
    assert ids(page) == [f"t1-m{i:04d}" for i in range(1000)]


async def test_a_thread_deleted_while_its_messages_are_saved(memory: MemoryStore) -> None:
    """``save_messages`` racing ``delete_thread``, each started first in turn: the save lands
    before the delete (which then removes its messages with the thread) or finds no thread
    (``NotFoundError``). Nothing else is raised, and no message outlives its thread."""
    for n in range(30):
        thread = f"race{n}"
        await memory.save_thread(Thread(id=thread, resource_id="u"))
        batch = [msg(i, thread=thread) for i in range(20)]
        calls = [memory.save_messages(batch), memory.delete_thread(thread)]
        if n % 2:  # either one starts first
            calls.reverse()
        results = await asyncio.gather(*calls, return_exceptions=True)
        saved, deleted = results if n % 2 == 0 else results[::-1]
        assert deleted is None, deleted
        assert not isinstance(saved, BaseException) or isinstance(saved, NotFoundError), saved
        assert await memory.get_thread(thread) is None
        assert await memory.get_messages([m.id for m in batch]) == []


async def test_get_update_and_delete_messages(memory: MemoryStore) -> None:
    await memory.save_thread(Thread(id="t1", resource_id="u"))
    await memory.save_thread(Thread(id="t2", resource_id="u"))
    content = {"parts": ["a"], "metadata": {"a": {"x": 1, "y": 1}, "keep": True}}
    await memory.save_messages([msg(0, content=content), msg(1), msg(2)])
    assert ids(await memory.get_messages(["t1-m0002", "nope", "t1-m0000"])) == [
        "t1-m0000",
        "t1-m0002",
    ]
    updated = await memory.update_messages(
        [
            {"id": "t1-m0000", "content": {"metadata": {"a": {"y": 2}}, "parts": ["b"]}},
            {"id": "t1-m0001", "role": "system", "thread_id": "t2"},
            {"id": "missing", "role": "user"},
        ]
    )
    assert ids(updated) == ["t1-m0000", "t1-m0001"]
    first, second = await memory.get_messages(["t1-m0000", "t1-m0001"])
    assert first.content == {"parts": ["b"], "metadata": {"a": {"x": 1, "y": 2}, "keep": True}}
    assert (second.role, second.thread_id) == ("system", "t2")
    await memory.delete_messages(["t1-m0000", "nope"])
    assert ids(await memory.list_messages("t1")) == ["t1-m0002"]


async def test_update_messages_rewrites_every_updatable_field_in_one_call(
    memory: MemoryStore,
) -> None:
    await seed(memory, "t1", 3)
    await memory.save_thread(Thread(id="t2", resource_id="u"))
    before = {t: (await memory.get_thread(t)) for t in ("t1", "t2")}
    moved_back = T0 - timedelta(days=1)
    await memory.update_messages(
        [
            {"id": "t1-m0002", "created_at": moved_back, "resource_id": "user-9", "type": "v3"},
            {"id": "t1-m0001", "thread_id": "t2", "role": "tool"},
        ]
    )
    third, second = await memory.get_messages(["t1-m0002", "t1-m0001"])
    assert (third.created_at, third.resource_id, third.type) == (moved_back, "user-9", "v3")
    assert (second.thread_id, second.role, second.content) == ("t2", "tool", msg(1).content)
    assert ids(await memory.list_messages("t1")) == ["t1-m0002", "t1-m0000"]  # new order
    for thread_id in ("t1", "t2"):  # the thread it left and the one it joined
        after = await memory.get_thread(thread_id)
        assert after is not None and before[thread_id] is not None
        assert after.updated_at > before[thread_id].updated_at  # type: ignore[union-attr]


async def test_update_messages_rejects_bad_input_and_changes_nothing(memory: MemoryStore) -> None:
    await seed(memory, "t1", 2)
    before = await memory.get_messages(["t1-m0000", "t1-m0001"])
    for bad in (
        [{"id": "t1-m0000", "colour": "red"}],
        [{"id": "", "role": "x"}],
        [{"id": "t1-m0000", "content": ["not", "a", "dict"]}],
        [{"role": "x"}],
    ):
        with pytest.raises(ValidationError):
            await memory.update_messages(bad)
    with pytest.raises(NotFoundError):
        await memory.update_messages([{"id": "t1-m0000", "thread_id": "ghost"}])
    assert await memory.get_messages(["t1-m0000", "t1-m0001"]) == before


# -- resources -------------------------------------------------------------------------------
async def test_resources(memory: MemoryStore) -> None:
    assert await memory.get_resource("r1") is None
    created = await memory.update_resource("r1", working_memory="# notes", metadata={"a": 1})
    assert (created.working_memory, created.metadata_) == ("# notes", {"a": 1})
    merged = await memory.update_resource("r1", metadata={"b": 2})
    assert (merged.working_memory, merged.metadata_) == ("# notes", {"a": 1, "b": 2})
    assert merged.created_at == created.created_at and merged.updated_at >= created.updated_at
    replaced = await memory.save_resource(Resource(id="r1", working_memory="new"))
    assert (replaced.working_memory, replaced.metadata_) == ("new", {})
    assert await memory.get_resource("r1") == replaced


# -- bad input -------------------------------------------------------------------------------
BAD_IDS = ["", "   ", None, 42, "nul\x00byte"]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_bad_ids_are_rejected_before_anything_is_written(
    memory: MemoryStore, bad: Any
) -> None:
    await seed(memory, "t1", 1)
    calls = [
        memory.get_thread(bad),
        memory.update_thread(bad, title="x"),
        memory.delete_thread(bad),
        memory.list_messages(bad),
        memory.get_messages([bad]),
        memory.delete_messages([bad]),
        memory.get_resource(bad),
        memory.update_resource(bad, working_memory="x"),
        memory.list_threads(resource_id=bad) if bad is not None else memory.get_thread(bad),
        memory.save_thread(Thread(id=bad, resource_id="u")),
        memory.save_messages([msg(5, id=bad)]),
    ]
    for call in calls:
        with pytest.raises(ValidationError):
            await call
    assert ids(await memory.list_messages("t1")) == ["t1-m0000"]
    assert ids(await memory.list_threads()) == ["t1"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page": -1},
        {"per_page": -5},
        {"page": 1.5},
        {"per_page": "10"},
        {"order_by": "title"},
        {"order_by": "created_at; DROP TABLE memory_threads"},
        {"metadata": ["not", "a", "dict"]},
        {"descending": None},
        {"descending": "yes"},
    ],
)
async def test_bad_list_arguments(memory: MemoryStore, kwargs: dict[str, Any]) -> None:
    await seed(memory, "t1", 1)
    with pytest.raises(ValidationError):
        await memory.list_threads(**kwargs)
    assert ids(await memory.list_threads()) == ["t1"]


async def test_bad_values_are_rejected(memory: MemoryStore) -> None:
    await seed(memory, "t1", 1)
    naive = datetime(2026, 1, 1)
    for call in (
        memory.update_thread("t1", metadata="nope"),  # type: ignore[arg-type]
        memory.update_thread("t1", metadata={"x": float("nan")}),
        memory.update_thread("t1", metadata={"x": {1, 2}}),
        memory.save_messages([msg(3, created_at=naive)]),
        memory.list_messages("t1", start=naive),
        memory.list_messages("t1", start=T0, end=T0 - timedelta(seconds=1)),
        memory.list_messages("t1", include=[Include("t1-m0000", previous=-1)]),
        memory.list_messages("t1", include=[Include("t1-m0000")], descending=None),  # type: ignore[arg-type]
        memory.list_messages("t1", with_total="no"),  # type: ignore[arg-type]
        memory.save_messages([msg(5, content={1: "an int key"})]),
        memory.save_messages(msg(4)),  # type: ignore[arg-type]
        memory.save_thread(Thread(id="t9", resource_id="")),
    ):
        with pytest.raises(ValidationError):
            await call
    thread = await memory.get_thread("t1")
    assert thread is not None and thread.metadata_ == {}
    assert ids(await memory.list_messages("t1")) == ["t1-m0000"]


async def test_fast_path_without_total(memory: MemoryStore) -> None:
    """with_total=False: no total, has_more from one row past the page, same items."""
    await seed(memory, "t1", 25)
    for page_number, expect_more in ((0, True), (1, True), (2, False), (3, False)):
        counted = await memory.list_messages("t1", page=page_number, per_page=10)
        fast = await memory.list_messages("t1", page=page_number, per_page=10, with_total=False)
        assert fast.items == counted.items
        assert (fast.total, fast.has_more) == (None, expect_more)
    exact = await memory.list_messages("t1", page=1, per_page=12, with_total=False)
    assert (len(exact.items), exact.has_more) == (12, True)
    last = await memory.list_messages("t1", page=2, per_page=12, with_total=False)
    assert (ids(last), last.has_more) == (["t1-m0024"], False)
    with_context = await memory.list_messages(
        "t1",
        per_page=2,
        descending=True,
        include=[Include("t1-m0022", previous=1)],
        with_total=False,
    )
    # m0022 is the row read past the page; it is still returned because it was included
    assert ids(with_context) == ["t1-m0024", "t1-m0023", "t1-m0022", "t1-m0021"]
    assert with_context.has_more is True
