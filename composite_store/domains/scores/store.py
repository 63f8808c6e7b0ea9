"""The scores domain's async store: evaluation scores, filtered lists and in-database
aggregates (count, mean, p50, p95, pass rate)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, overload

from sqlalchemy import ColumnElement, bindparam, select

from composite_store import validation as v
from composite_store.dialects import by_key, final, score_stats_select, upsert
from composite_store.domains.base import DomainStore, hydrate, model_columns, row_values, table_of
from composite_store.domains.scores.models import Score
from composite_store.pagination import Page, check_page, fetch_page

scores = table_of(Score)
SOURCES = ("LIVE", "TEST")
FILTERS = ("scorer_id", "run_id", "entity_id", "entity_type", "source", "trace_id", "span_id")


@dataclass(frozen=True)
class ScoreStats:
    """Aggregates of a set of scores; the values are ``None`` when there are none."""

    count: int
    mean: float | None
    p50: float | None
    p95: float | None
    pass_rate: float | None


EMPTY = ScoreStats(0, None, None, None, None)


class ScoresStore(DomainStore):
    domain = "scores"

    async def save_score(self, score: Score) -> Score:
        """Insert or replace a score by id."""
        row = _score_row(score)
        stmt = self._statement(
            "save_score",
            lambda: upsert(
                self.dialect,
                scores,
                key=["id"],
                update=[c.name for c in scores.c if c.name != "id"],
            ),
        )
        async with self._autocommit() as conn:  # one statement: atomic by itself
            await conn.execute(stmt, row)
        return score

    async def get_score(self, score_id: str) -> Score | None:
        v.require_id(score_id, "score_id")
        stmt = self._statement(
            "get_score",
            lambda: by_key(
                select(*model_columns(Score)).where(scores.c.id == bindparam("id")), scores
            ),
        )
        async with self._autocommit() as conn:
            row = (await conn.execute(stmt, {"id": score_id})).first()
        return None if row is None else hydrate(Score, row)

    async def list_scores(
        self,
        *,
        scorer_id: str | None = None,
        run_id: str | None = None,
        entity_id: str | None = None,
        entity_type: str | None = None,
        source: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        page: int = 0,
        per_page: int | None = 100,
    ) -> Page[Score]:
        """Scores matching every given filter, newest first (ties by id)."""
        where = _filters(
            scorer_id=scorer_id,
            run_id=run_id,
            entity_id=entity_id,
            entity_type=entity_type,
            source=source,
            trace_id=trace_id,
            span_id=span_id,
            start=start,
            end=end,
        )
        check_page(page, per_page)
        stmt = final(
            select(*model_columns(Score))
            .where(*where)
            .order_by(scores.c.created_at.desc(), scores.c.id.desc()),
            scores,
        )
        async with self._autocommit() as conn:
            return await fetch_page(conn, Score, stmt, page, per_page)

    @overload
    async def aggregate_scores(
        self,
        *,
        scorer_id: str | None = ...,
        entity_id: str | None = ...,
        start: datetime | None = ...,
        end: datetime | None = ...,
        pass_threshold: float = ...,
        group_by: None = ...,
    ) -> ScoreStats: ...
    @overload
    async def aggregate_scores(
        self,
        *,
        scorer_id: str | None = ...,
        entity_id: str | None = ...,
        start: datetime | None = ...,
        end: datetime | None = ...,
        pass_threshold: float = ...,
        group_by: Literal["scorer_id"],
    ) -> dict[str, ScoreStats]: ...
    async def aggregate_scores(
        self,
        *,
        scorer_id: str | None = None,
        entity_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        pass_threshold: float = 1.0,
        group_by: Literal["scorer_id"] | None = None,
    ) -> ScoreStats | dict[str, ScoreStats]:
        """Count, mean, p50, p95 (interpolated, as ``percentile_cont``) and the share of
        scores ``>= pass_threshold``, computed by the database; per scorer with
        ``group_by="scorer_id"``."""
        where = _filters(scorer_id=scorer_id, entity_id=entity_id, start=start, end=end)
        threshold = v.require_float(pass_threshold, "pass_threshold")
        if group_by is not None:
            v.require_choice(group_by, "group_by", ("scorer_id",))
        group = scores.c.scorer_id if group_by else None
        stmt = score_stats_select(
            self.dialect, scores, scores.c.score, where, group, threshold, final_table=scores
        )
        async with self._autocommit() as conn:
            rows = (await conn.execute(stmt)).all()
        stats: dict[str, ScoreStats] = {}
        for row in rows:
            values = row._mapping  # not attributes: Row.count is tuple.count
            if values["count"]:
                stats[values["group"] if group is not None else ""] = ScoreStats(
                    count=int(values["count"]),
                    mean=_number(values["mean"]),
                    p50=_number(values["p50"]),
                    p95=_number(values["p95"]),
                    pass_rate=_number(values["pass_rate"]),
                )
        if group is not None:
            return stats
        return stats.get("", EMPTY)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _filters(**given: Any) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    start, end = v.check_range(given.pop("start", None), given.pop("end", None))
    for name, value in given.items():
        if value is None:
            continue
        if name == "source":
            v.require_choice(value, "source", SOURCES)
        else:
            v.require_id(value, name)
        where.append(scores.c[name] == value)
    if start is not None:
        where.append(scores.c.created_at >= start)
    if end is not None:
        where.append(scores.c.created_at <= end)
    return where


def _score_row(score: object) -> dict[str, Any]:
    score = v.require_instance(score, Score, "score")
    v.require_id(score.id, "score.id")
    v.require_id(score.scorer_id, "score.scorer_id")
    value = v.require_float(score.score, "score.score")
    v.require_choice(score.source, "score.source", SOURCES)
    for name in ("run_id", "entity_id", "entity_type", "trace_id", "span_id"):
        v.optional_id(getattr(score, name), f"score.{name}")
    v.optional_text(score.reason, "score.reason")
    metadata = v.json_text(score.metadata_, "score.metadata")
    v.require_datetime(score.created_at, "score.created_at")
    score.score = value  # e.g. an int, stored as the float the database will hold
    return {**row_values(score), "metadata": metadata}  # bound as checked: serialised once
