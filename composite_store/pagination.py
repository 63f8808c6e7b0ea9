"""Pages: the argument checks and the result type every list method shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select

from composite_store.errors import ValidationError

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: ``items`` plus the size of the whole filtered list."""

    items: list[T]
    total: int
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


def paginate(stmt: Select[Any], page: int, per_page: int | None) -> Select[Any]:
    """Apply LIMIT/OFFSET for a checked page (``per_page=None``: no limit)."""
    if per_page is None:
        return stmt
    return stmt.limit(per_page).offset(page * per_page)


def make_page(items: Sequence[T], total: int, page: int, per_page: int | None) -> Page[T]:
    shown_until = total if per_page is None else (page + 1) * per_page
    return Page(list(items), total, page, per_page, has_more=shown_until < total)
