"""Pages: the argument checks and the result type every list method shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from composite_store.domains.base import M, hydrate
from composite_store.errors import ValidationError

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: ``items`` plus the size of the whole filtered list (``None`` when
    the caller asked not to count it)."""

    items: list[T]
    total: int | None
    page: int
    per_page: int | None
    has_more: bool

    def __len__(self) -> int:
        return len(self.items)


def check_page(page: int, per_page: int | None) -> None:
    """``page`` is 0-based; ``per_page=None`` means all rows, ``0`` no rows but the real total."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise ValidationError(f"page must be an integer >= 0, got {page!r}")
    if per_page is not None and (
        isinstance(per_page, bool) or not isinstance(per_page, int) or per_page < 0
    ):
        raise ValidationError(f"per_page must be an integer >= 0 or None, got {per_page!r}")
    if page * (per_page or 0) > 2**62 or (per_page or 0) > 2**62:
        raise ValidationError("page and per_page reach past any table (offset over 2**62)")


def paginate(stmt: Select[Any], page: int, per_page: int | None) -> Select[Any]:
    """Apply LIMIT/OFFSET for a checked page (``per_page=None``: no limit)."""
    if per_page is None:
        return stmt
    return stmt.limit(per_page).offset(page * per_page)


def make_page(items: Sequence[T], total: int, page: int, per_page: int | None) -> Page[T]:
    shown_until = total if per_page is None else (page + 1) * per_page
    return Page(list(items), total, page, per_page, has_more=shown_until < total)


async def fetch_page(
    conn: AsyncConnection,
    model: type[M],
    stmt: Select[Any],
    page: int,
    per_page: int | None,
    *,
    with_total: bool = True,
) -> Page[M]:
    """Run ``stmt`` (filtered and ordered, not yet paginated) for one page of ``model``.
    ``with_total=False`` never counts: ``total`` is ``None`` and ``has_more`` comes from
    reading one row past the page (a COUNT grows with the table, the page does not)."""
    if not with_total:
        wanted = stmt if per_page is None else stmt.limit(per_page + 1).offset(page * per_page)
        rows = (await conn.execute(wanted)).all()
        items = [hydrate(model, row) for row in rows[:per_page]]
        return Page(items, None, page, per_page, has_more=len(rows) > len(items))
    rows = (await conn.execute(paginate(stmt, page, per_page))).all()
    items = [hydrate(model, row) for row in rows]
    return await with_total_of(conn, stmt, Page(items, None, page, per_page, has_more=False))


async def with_total_of(conn: AsyncConnection, stmt: Select[Any], found: Page[T]) -> Page[T]:
    """``found``, a page of ``stmt``'s rows read some other way, with ``stmt``'s total: for a
    list whose page has a faster path than ``stmt`` and whose COUNT has none."""
    count = select(func.count()).select_from(stmt.order_by(None).subquery())

    async def count_rows() -> int:
        return int((await conn.execute(count)).scalar_one())

    total = await count_total(count_rows, found.page, found.per_page, len(found.items))
    return make_page(found.items, total, found.page, found.per_page)


async def count_total(
    count: Callable[[], Awaitable[int]], page: int, per_page: int | None, page_size: int
) -> int:
    """The size of the whole filtered list. The page tells it when it holds every row or is
    short (everything before it was full); only otherwise is ``count`` run."""
    if per_page is None or (page == 0 and page_size < per_page):
        return page_size
    if 0 < page_size < per_page:
        return page * per_page + page_size
    return await count()
