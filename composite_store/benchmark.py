"""The agent-turn workload AW-1 (shared/WORKLOAD.md), run against any "system".

A system is composite-store itself or a raw-driver floor (``bench/floors.py``): the same
steps, data and order, so each step can be reported as a ratio store / floor from one run.
"""

from __future__ import annotations

import random
import statistics
import string
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from composite_store.composite import CompositeStore
from composite_store.domains.memory.store import Include
from composite_store.errors import ConfigurationError
from composite_store.models import Thread

START = datetime(2026, 1, 1, tzinfo=UTC)
WARMUP = 20


@dataclass(frozen=True)
class Sizes:
    """AW-1's fixed sizes; ``scaled`` shrinks them for smoke runs (figures not comparable)."""

    messages: int = 10_000
    batch: int = 20
    m2_calls: int = 300
    m3_calls: int = 300
    runs: int = 1_000
    loads: int = 1_000
    traces: int = 5_000
    span_batch: int = 500
    trace_reads: int = 300

    def scaled(self, factor: float) -> Sizes:
        def s(n: int) -> int:
            return max(int(n * factor), 1)

        return Sizes(
            s(self.messages),
            self.batch,
            s(self.m2_calls),
            s(self.m3_calls),
            s(self.runs),
            s(self.loads),
            s(self.traces),
            self.span_batch,
            s(self.trace_reads),
        )


class System(Protocol):
    name: str
    backend: str

    async def setup(self, thread_id: str) -> None: ...
    async def save_messages(self, batch: list[dict[str, Any]]) -> None: ...
    async def newest_page(self, thread_id: str, per_page: int, total: bool = False) -> int: ...
    async def page_with_context(
        self, thread_id: str, per_page: int, include_id: str, total: bool = False
    ) -> int: ...
    async def persist(self, workflow: str, run_id: str, snapshot: dict[str, Any]) -> None: ...
    async def load(self, workflow: str, run_id: str) -> dict[str, Any] | None: ...
    async def teardown(self) -> None: ...


class SpanSystem(Protocol):
    name: str
    backend: str

    async def setup_spans(self) -> None: ...
    async def create_spans(self, batch: list[dict[str, Any]]) -> None: ...
    async def get_trace(self, trace_id: str) -> int: ...
    async def teardown_spans(self) -> None: ...


# -- data ----------------------------------------------------------------------------------
def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters + " ", k=n))


def make_messages(thread_id: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "thread_id": thread_id,
            "resource_id": "user-1",
            "role": "user" if i % 2 == 0 else "assistant",
            "type": "v2",
            "content": {"format": 2, "parts": [{"type": "text", "text": _text(rng, 360)}]},
            "created_at": START + timedelta(milliseconds=i),
        }
        for i in range(count)
    ]


def make_spans(traces: int, rng: random.Random, first: int = 0) -> list[dict[str, Any]]:
    """10 spans a trace: a root and nine children, 200-char input/output."""
    rows = []
    for t in range(first, first + traces):
        trace_id = f"{rng.getrandbits(128):032x}"
        root = f"{rng.getrandbits(64):016x}"
        started = START + timedelta(milliseconds=t)
        for i in range(10):
            rows.append(
                {
                    "trace_id": trace_id,
                    "span_id": root if i == 0 else f"{rng.getrandbits(64):016x}",
                    "parent_span_id": None if i == 0 else root,
                    "name": f"llm-call-{i}",
                    "span_type": "model_generation",
                    "started_at": started + timedelta(microseconds=i),
                    "ended_at": started + timedelta(microseconds=i + 900),
                    "attributes": {"model": "gpt-x", "tokens": 123},
                    "input": _text(rng, 200),
                    "output": _text(rng, 200),
                    "created_at": started,
                    "updated_at": started,
                }
            )
    return rows


def make_snapshot(rng: random.Random) -> dict[str, Any]:
    context = {
        f"step-{i}": {"status": "success", "output": {"text": _text(rng, 200)}} for i in range(40)
    }
    return {"status": "running", "context": context, "activePaths": [0, 1, 2]}


# -- measuring -------------------------------------------------------------------------------
@dataclass
class Result:
    system: str
    backend: str
    steps: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"system": self.system, "backend": self.backend, "steps": self.steps}


async def _timed(calls: list[Callable[[], Awaitable[Any]]]) -> list[float]:
    durations = []
    for call in calls:
        started = time.perf_counter()
        await call()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def _latency(durations: list[float]) -> dict[str, float]:
    ordered = sorted(durations)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 4), "p95_ms": round(p95, 4)}


async def run_workload(system: System, sizes: Sizes, seed: int = 1) -> Result:
    """Steps M1, M2, M3, W1, W2 in order, each timed on its own."""
    rng = random.Random(seed)
    thread_id = f"aw1-{uuid.uuid4().hex[:8]}"
    result = Result(system.name, system.backend)
    await system.setup(thread_id)
    try:
        data = make_messages(thread_id, sizes.messages, rng)
        warm = make_messages(f"{thread_id}-warm", WARMUP * sizes.batch, rng)
        for i in range(0, len(warm), sizes.batch):  # warm-up writes, not counted
            await system.save_messages(warm[i : i + sizes.batch])
        batches = [data[i : i + sizes.batch] for i in range(0, len(data), sizes.batch)]
        started = time.perf_counter()
        for batch in batches:
            await system.save_messages(batch)
        elapsed = time.perf_counter() - started
        result.steps["M1"] = {"messages_per_s": round(len(data) / elapsed, 1)}

        ids = [m["id"] for m in data]
        anchors = [rng.choice(ids) for _ in range(WARMUP + sizes.m3_calls)]
        # M2/M3 as a chat view asks for them (has_more, no total); systems that can also
        # count the thread (the SPEC's default) report that as M2+total / M3+total.
        for step, total in (("M2", False), ("M3", False), ("M2+total", True), ("M3+total", True)):
            if total and not getattr(system, "counts_totals", False):
                continue
            if step.startswith("M2"):
                page = _bind(system.newest_page, thread_id, 40, total)
                calls = [page] * (WARMUP + sizes.m2_calls)
            else:
                calls = [
                    _bind(system.page_with_context, thread_id, 10, anchor, total)
                    for anchor in anchors
                ]
            await _timed(calls[:WARMUP])
            result.steps[step] = _latency(await _timed(calls[WARMUP:]))

        workflow = f"aw1-flow-{uuid.uuid4().hex[:6]}"
        snapshot = make_snapshot(rng)
        await _timed(
            [_bind(system.persist, workflow, f"warm-{i}", snapshot) for i in range(WARMUP)]
        )
        persists = [
            _bind(system.persist, workflow, f"run-{i}", snapshot) for i in range(sizes.runs)
        ]
        result.steps["W1"] = _latency(await _timed(persists))

        loads = [
            _bind(system.load, workflow, f"run-{rng.randrange(sizes.runs)}")
            for _ in range(WARMUP + sizes.loads)
        ]
        await _timed(loads[:WARMUP])
        result.steps["W2"] = _latency(await _timed(loads[WARMUP:]))
    finally:
        await system.teardown()
    return result


async def run_span_workload(system: SpanSystem, sizes: Sizes, seed: int = 1) -> Result:
    """Steps O1 (batch_create_spans) and O2 (get_trace)."""
    rng = random.Random(seed)
    result = Result(system.name, system.backend)
    await system.setup_spans()
    try:
        warm = make_spans(WARMUP, rng)
        await system.create_spans(warm)
        rows = make_spans(sizes.traces, rng, first=WARMUP)
        batches = [rows[i : i + sizes.span_batch] for i in range(0, len(rows), sizes.span_batch)]
        started = time.perf_counter()
        for batch in batches:
            await system.create_spans(batch)
        elapsed = time.perf_counter() - started
        result.steps["O1"] = {"spans_per_s": round(len(rows) / elapsed, 1)}
        trace_ids = [row["trace_id"] for row in rows[::10]]
        reads = [
            _bind(system.get_trace, rng.choice(trace_ids))
            for _ in range(WARMUP + sizes.trace_reads)
        ]
        await _timed(reads[:WARMUP])
        result.steps["O2"] = _latency(await _timed(reads[WARMUP:]))
    finally:
        await system.teardown_spans()
    return result


def _bind(fn: Callable[..., Awaitable[Any]], *args: Any) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return await fn(*args)

    return call


# -- composite-store as a system -------------------------------------------------------------
class CompositeSystem:
    """composite-store's public API, exactly as an application would call it."""

    name = "composite-store"
    counts_totals = True

    def __init__(self, store: CompositeStore) -> None:
        self.store = store
        self.backend = store.describe()["memory"]["backend"]
        self._threads: list[str] = []
        self._workflows: set[str] = set()

    async def setup(self, thread_id: str) -> None:
        await self.store.init()
        for tid in (thread_id, f"{thread_id}-warm"):
            await self.store.memory.save_thread(Thread(id=tid, resource_id="user-1"))
            self._threads.append(tid)

    async def save_messages(self, batch: list[dict[str, Any]]) -> None:
        await self.store.memory.save_messages(batch)  # mappings, as the floor gets them

    async def newest_page(self, thread_id: str, per_page: int, total: bool = False) -> int:
        page = await self.store.memory.list_messages(
            thread_id, per_page=per_page, descending=True, with_total=total
        )
        return len(page.items)

    async def page_with_context(
        self, thread_id: str, per_page: int, include_id: str, total: bool = False
    ) -> int:
        page = await self.store.memory.list_messages(
            thread_id,
            per_page=per_page,
            descending=True,
            include=[Include(include_id, previous=2, next=2)],
            with_total=total,
        )
        return len(page.items)

    async def persist(self, workflow: str, run_id: str, snapshot: dict[str, Any]) -> None:
        self._workflows.add(workflow)
        await self.store.workflows.persist_snapshot(workflow, run_id, snapshot)

    async def load(self, workflow: str, run_id: str) -> dict[str, Any] | None:
        return await self.store.workflows.load_snapshot(workflow, run_id)

    async def setup_spans(self) -> None:
        await self.store.init()
        self._traces: list[str] = []

    async def create_spans(self, batch: list[dict[str, Any]]) -> None:
        # mappings, as the floor gets them: the bulk path needs no ORM object per span
        await self.store.observability.batch_create_spans(batch)
        self._traces.extend(row["trace_id"] for row in batch if row["parent_span_id"] is None)

    async def get_trace(self, trace_id: str) -> int:
        trace = await self.store.observability.get_trace(trace_id)
        return 0 if trace is None else len(trace.spans)

    async def teardown_spans(self) -> None:
        for start in range(0, len(self._traces), 1000):
            await self.store.observability.delete_traces(self._traces[start : start + 1000])

    async def teardown(self) -> None:
        """Remove what the run wrote: the benchmark may run against a real database."""
        for tid in self._threads:
            await self.store.memory.delete_thread(tid)
        for workflow in self._workflows:
            runs = await self.store.workflows.list_runs(workflow_name=workflow, per_page=None)
            for run in runs.items:
                await self.store.workflows.delete_run(workflow, run.run_id)


# -- report ----------------------------------------------------------------------------------
def ratio_table(store: Result, floor: Result) -> list[str]:
    """Per step: store, floor and store/floor (for throughput: floor/store, so >1 is slower)."""
    lines = [f"{'step':<9} {'composite-store':>18} {floor.system:>18} {'ratio':>7}"]
    for step, figures in store.steps.items():
        base = floor.steps.get(step.split("+")[0])
        if not base:
            continue
        if "messages_per_s" in figures or "spans_per_s" in figures:
            key = "messages_per_s" if "messages_per_s" in figures else "spans_per_s"
            ratio = base[key] / figures[key]
            lines.append(f"{step:<9} {figures[key]:>14.0f} /s {base[key]:>14.0f} /s {ratio:>6.2f}x")
        else:
            ratio = figures["p50_ms"] / base["p50_ms"]
            lines.append(
                f"{step:<9} {figures['p50_ms']:>10.3f} ms p50 {base['p50_ms']:>10.3f} ms p50"
                f" {ratio:>6.2f}x"
            )
    return lines


# -- the command ----------------------------------------------------------------------------
def load_floors() -> Any:
    """``bench/floors.py`` (shipped in the wheel as ``_bench``), imported by path."""
    import importlib.util

    from composite_store.resources import shipped_folder

    path = shipped_folder("bench", "floors.py") / "floors.py"
    spec = importlib.util.spec_from_file_location("composite_store_bench_floors", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def floor_for(store: CompositeStore, domain: str, scratch: Path) -> Any:
    """The raw-driver floor on the same server as the store's ``domain``."""
    floors = load_floors()
    config = store.config[domain]
    if config.backend == "postgresql":
        dsn = config.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return floors.AsyncpgSpanFloor(dsn)
    if config.backend == "sqlite":
        return floors.Sqlite3SpanFloor(scratch / f"aw1_floor_{domain}.db")
    if config.backend == "clickhouse":
        return floors.ClickHouseFloor(config.url.render_as_string(hide_password=False))
    raise ConfigurationError(f"no raw-driver floor for {config.backend}")


def median_result(results: list[Result]) -> Result:
    """Per step and figure, the median over rounds."""
    merged = Result(results[0].system, results[0].backend)
    for step, figures in results[0].steps.items():
        merged.steps[step] = {
            key: round(statistics.median(r.steps[step][key] for r in results), 4) for key in figures
        }
    return merged


async def run_bench(
    store: CompositeStore,
    *,
    sizes: Sizes,
    rounds: int,
    scratch: Path,
    systems: tuple[str, ...] = ("store", "floor"),
) -> list[Result]:
    """Store and floor alternately (A B A B ...), ``rounds`` times; medians of each. The
    memory/workflow steps run where those domains live, O1/O2 where observability lives.
    ``systems`` picks one of them (``bench --peers`` runs each in its own process)."""
    runs: dict[str, list[Result]] = {name: [] for name in systems}
    floor = floor_for(store, "memory", scratch)
    span_floor = floor_for(store, "observability", scratch)
    for round_number in range(rounds):
        if "store" in systems:
            mine = await run_workload(CompositeSystem(store), sizes, seed=round_number)
            spans = await run_span_workload(CompositeSystem(store), sizes, round_number)
            mine.steps |= spans.steps
            runs["store"].append(mine)
        if "floor" in systems:
            theirs = await run_workload(floor, sizes, seed=round_number)
            theirs.steps |= (await run_span_workload(span_floor, sizes, round_number)).steps
            if span_floor.backend != floor.backend:
                theirs.system = f"{floor.name} + {span_floor.name}"
            runs["floor"].append(theirs)
    return [median_result(runs[name]) for name in systems]
