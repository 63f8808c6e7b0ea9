"""The scale curve of issue 6: does a read stay flat as its table grows?

One dataset grows 10k -> 100k -> 1M rows (never reloaded from scratch) and at each size the
same read is timed: M2, the newest page of one thread (as AW-1 calls it, ``benchmark``), and
``list_traces``, the 20 newest root spans; each also as ``+total``, the SPEC's default call
that counts every matching row for ``Page.total``. The figure that matters is the ratio
p50(size) / p50(first size): issue 6 wants M2 within 1.2x and list_traces within 2x at 1M.

Rows go in through the store's own batch methods, so they are exactly what it would write.
What the run wrote is deleted at the end; run it on databases of its own all the same, since
other spans in the observability database change what "the 20 newest roots" are.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from composite_store.benchmark import (
    START,
    WARMUP,
    CompositeSystem,
    _bind,
    _latency,
    _timed,
    make_messages,
    make_spans,
)
from composite_store.composite import CompositeStore

SIZES = (10_000, 100_000, 1_000_000)
CALLS = 200
MESSAGE_BATCH = 1_000  # messages a save_messages call while growing the thread
SPAN_BATCH = 5_000  # spans a batch_create_spans call (500 traces)
SPANS_PER_TRACE = 10  # make_spans: a root and nine children
TRACES_PER_PAGE = 20
TARGETS = {"M2": 1.2, "list_traces": 2.0}  # issue 6: largest p50 / smallest p50

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"10000,100000,1000000"`` -> sizes, increasing, each a whole number of traces."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < SPANS_PER_TRACE or list(sizes) != sorted(set(sizes)):
        raise ValueError(f"sizes must increase and start at >= {SPANS_PER_TRACE}, got {text!r}")
    if any(size % SPANS_PER_TRACE for size in sizes):
        raise ValueError(f"sizes must be multiples of {SPANS_PER_TRACE} (spans a trace)")
    return sizes


@dataclass(frozen=True)
class Point:
    size: int
    p50_ms: float
    p95_ms: float


@dataclass
class Curve:
    """One read timed at every size of one growing dataset."""

    step: str
    call: str  # the exact call, for the report
    domain: str
    backend: str
    url: str  # masked
    points: list[Point] = field(default_factory=list)

    def ratio(self, point: Point) -> float:
        """p50 at ``point``'s size over p50 at the first size."""
        return point.p50_ms / self.points[0].p50_ms

    def target(self) -> float | None:
        """Issue 6's limit, for the fast path and the counting (SPEC default) call alike."""
        return TARGETS.get(self.step.split("+")[0])


async def _measure(call: Callable[[], Awaitable[Any]], calls: int) -> dict[str, float]:
    """p50/p95 of ``calls`` sequential calls after AW-1's warm-up."""
    await _timed([call] * WARMUP)
    return _latency(await _timed([call] * calls))


def _rate(rows: int, seconds: float) -> str:
    return f"{rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f}/s)"


async def message_curves(
    store: CompositeStore, sizes: Sequence[int], calls: int, rng: random.Random, log: Log
) -> list[Curve]:
    """M2 and M2+total on one thread grown to each size."""
    system = CompositeSystem(store)
    info = store.describe()["memory"]
    thread_id = f"curve-{uuid.uuid4().hex[:8]}"
    curves = {
        total: Curve(
            "M2+total" if total else "M2",
            f"memory.list_messages(thread, per_page=40, descending=True, with_total={total})",
            "memory",
            info["backend"],
            info["url"],
        )
        for total in (False, True)
    }
    await system.setup(thread_id)
    try:
        stored = 0
        for size in sizes:
            started, grown = time.perf_counter(), size - stored
            while stored < size:
                count = min(MESSAGE_BATCH, size - stored)
                batch = make_messages(thread_id, count, rng)
                for i, message in enumerate(batch):  # strictly increasing over the whole thread
                    message["created_at"] = START + timedelta(milliseconds=stored + i)
                await system.save_messages(batch)
                stored += count
            log(
                f"memory ({info['backend']}): thread at {size:,} messages; "
                + _rate(grown, time.perf_counter() - started)
            )
            for total, curve in curves.items():
                figures = await _measure(_bind(system.newest_page, thread_id, 40, total), calls)
                curve.points.append(Point(size, figures["p50_ms"], figures["p95_ms"]))
                log(f"  {curve.step} at {size:,}: p50 {figures['p50_ms']:.3f} ms")
    finally:
        await system.teardown()
    return list(curves.values())


async def span_curves(
    store: CompositeStore, sizes: Sequence[int], calls: int, rng: random.Random, log: Log
) -> list[Curve]:
    """list_traces (20 newest roots) on a span table grown to each size, without and with
    the count of every root that ``Page.total`` needs."""
    system = CompositeSystem(store)
    obs = store.observability
    info = store.describe()["observability"]
    curves = {
        total: Curve(
            "list_traces+total" if total else "list_traces",
            f"observability.list_traces(per_page={TRACES_PER_PAGE}"
            + (")" if total else ", with_total=False)"),
            "observability",
            info["backend"],
            info["url"],
        )
        for total in (False, True)
    }
    await system.setup_spans()
    before = (await obs.list_traces(per_page=0)).total
    if before:
        log(f"observability already holds {before:,} traces: sizes below exclude them")

    def newest_roots(total: bool) -> Callable[[], Awaitable[int]]:
        async def call() -> int:
            page = await obs.list_traces(per_page=TRACES_PER_PAGE, with_total=total)
            return len(page.items)

        return call

    try:
        traces = 0
        for size in sizes:
            started, grown = time.perf_counter(), size - traces * SPANS_PER_TRACE
            while traces * SPANS_PER_TRACE < size:
                count = min(SPAN_BATCH // SPANS_PER_TRACE, size // SPANS_PER_TRACE - traces)
                await system.create_spans(make_spans(count, rng, first=traces))
                traces += count
            log(
                f"observability ({info['backend']}): {size:,} spans; "
                + _rate(grown, time.perf_counter() - started)
            )
            for total, curve in curves.items():
                figures = await _measure(newest_roots(total), calls)
                curve.points.append(Point(size, figures["p50_ms"], figures["p95_ms"]))
                log(f"  {curve.step} at {size:,}: p50 {figures['p50_ms']:.3f} ms")
    finally:
        started = time.perf_counter()
        await system.teardown_spans()
        log(f"observability: deleted the run's spans in {time.perf_counter() - started:.1f} s")
    return list(curves.values())


async def run_curve(
    store: CompositeStore,
    sizes: Sequence[int] = SIZES,
    calls: int = CALLS,
    *,
    seed: int = 1,
    log: Log = _stderr,
) -> list[Curve]:
    """Every curve: the message ones where memory lives, the span ones where observability
    lives. ``init()`` first, so an empty database gets its schema."""
    await store.init()
    rng = random.Random(seed)
    curves = await message_curves(store, sizes, calls, rng, log)
    return curves + await span_curves(store, sizes, calls, rng, log)


def size_label(size: int) -> str:
    """10000 -> "10k", 1000000 -> "1M" (exact multiples only)."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size:,}"


def markdown(curves: Sequence[Curve], calls: int) -> list[str]:
    """One table per backend (and URL), then one line per target saying whether it is met."""
    lines: list[str] = []
    groups: dict[tuple[str, str], list[Curve]] = {}
    for curve in curves:
        groups.setdefault((curve.backend, curve.url), []).append(curve)
    for (backend, url), group in groups.items():
        first = size_label(group[0].points[0].size)
        lines += [
            f"#### {backend} ({url}): p50/p95 of {calls} sequential calls after {WARMUP} warm-up",
            "",
            f"| step | size | p50 ms | p95 ms | p50 ÷ p50 at {first} |",
            "|---|---:|---:|---:|---:|",
        ]
        for curve in group:
            for point in curve.points:
                lines.append(
                    f"| {curve.step} | {size_label(point.size)} | {point.p50_ms:.3f} | "
                    f"{point.p95_ms:.3f} | {curve.ratio(point):.2f}x |"
                )
        lines.append("")
        for curve in group:
            last = curve.points[-1]
            limit = curve.target()
            verdict = (
                f"target <= {limit:.1f}x: {'met' if curve.ratio(last) <= limit else 'NOT met'}"
                if limit is not None
                else "no target"
            )
            lines.append(
                f"- {curve.step} = `{curve.call}`: {curve.ratio(last):.2f}x at "
                f"{size_label(last.size)}; {verdict}"
            )
        lines.append("")
    return lines


async def run_curve_command(store: CompositeStore, sizes: Sequence[int], calls: int) -> int:
    """``composite-store bench --curve``: run, then print the tables (progress on stderr)."""
    curves = await run_curve(store, sizes, calls)
    print("\n".join(markdown(curves, calls)))
    return 0
