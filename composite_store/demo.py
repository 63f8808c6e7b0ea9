"""``composite-store demo``: the main job, on the embedded default (``./composite_store.db``).

A simulated agent conversation that writes and reads every domain built so far, then prints
where each domain lives and what it stored. Run it twice: it starts a new conversation each
time and the file keeps them all.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from composite_store.composite import CompositeStore
from composite_store.config import DEFAULT_URL
from composite_store.domains.memory.store import Include
from composite_store.models import Agent, Message, Score, Span, Thread

CONVERSATION = [
    ("user", "Hi! Can you plan a three-day trip to Lisbon for me?"),
    ("assistant", "Gladly. Do you prefer museums, food or walking tours?"),
    ("user", "Food first, then a bit of history."),
    ("assistant", "Day 1: Time Out Market and Alfama. Day 2: Belém. Day 3: Sintra."),
    ("user", "Perfect, save that plan please."),
]


async def run_demo(url: str = DEFAULT_URL) -> int:
    async with CompositeStore(url) as store:
        print("composite-store demo: a simulated agent conversation\n")
        print("Where each domain lives:")
        for domain, info in store.describe().items():
            print(f"  {domain:<14} -> {info['backend']:<10} {info['url']}")
        print()
        run = uuid.uuid4().hex[:8]
        await _memory_and_workflows(store, run)
        await _scores(store, run)
        await _agents(store, run)
        await _traces(store, run, tmp_outbox=Path(tempfile.gettempdir()))
    return 0


async def _memory_and_workflows(store: CompositeStore, run: str) -> None:
    thread_id, user = f"demo-thread-{run}", "demo-user"
    start = datetime.now(UTC)

    # memory: a thread, its messages, and the user's working memory
    await store.memory.save_thread(
        Thread(id=thread_id, resource_id=user, title="Trip to Lisbon", metadata_={"demo": True})
    )
    await store.memory.save_messages(
        [
            Message(
                id=f"{thread_id}-{i}",
                thread_id=thread_id,
                resource_id=user,
                role=role,
                content={"format": 2, "parts": [{"type": "text", "text": text}]},
                created_at=start + timedelta(milliseconds=i),
            )
            for i, (role, text) in enumerate(CONVERSATION)
        ]
    )
    await store.memory.update_resource(
        user, working_memory="# User\n- likes food tours\n- visiting Lisbon", metadata={"tz": "UTC"}
    )

    # workflows: the planner's run, persisted as it progresses, and a finished one
    planner = await store.workflows.persist_snapshot(
        "trip-planner", f"plan-{run}", {"status": "running", "step": "draft"}, resource_id=user
    )
    planner = await store.workflows.persist_snapshot(
        "trip-planner",
        f"plan-{run}",
        {"status": "success", "step": "saved", "days": 3},
        expected_version=planner.version,
    )
    waiting = {"status": "suspended", "waiting_for": "payment"}
    await store.workflows.persist_snapshot("booking", f"book-{run}", waiting, resource_id=user)

    # read it all back
    print(f"memory: thread {thread_id!r}")
    newest = await store.memory.list_messages(thread_id, per_page=2, descending=True)
    context = await store.memory.list_messages(
        thread_id, per_page=0, include=[Include(f"{thread_id}-2", previous=1, next=1)]
    )
    for message in (await store.memory.list_messages(thread_id, per_page=None)).items:
        print(f"  {message.role:>9}: {message.content['parts'][0]['text']}")
    print(f"  newest 2 of {newest.total}: {[m.id[-1] for m in newest.items]}")
    print(f"  message 2 with its neighbours: {[m.id[-1] for m in context.items]}")
    resource = await store.memory.get_resource(user)
    assert resource is not None
    print(f"  working memory of {user!r}: {resource.working_memory!r}")
    print("workflows:")
    runs = await store.workflows.list_runs(resource_id=user, per_page=5)
    for stored in runs.items:
        print(
            f"  {stored.workflow_name}/{stored.run_id}: status={stored.status} "
            f"version={stored.version} snapshot={stored.snapshot}"
        )
    print(f"  ({runs.total} runs for {user!r} in total)")


async def _scores(store: CompositeStore, run: str) -> None:
    """A relevance scorer grades each assistant answer of the conversation."""
    thread_id = f"demo-thread-{run}"
    answers = [i for i, (role, _) in enumerate(CONVERSATION) if role == "assistant"]
    for n, i in enumerate(answers):
        await store.scores.save_score(
            Score(
                id=f"score-{run}-{i}",
                scorer_id="relevance",
                score=[0.72, 0.95][n % 2],
                entity_type="message",
                entity_id=f"{thread_id}-{i}",
                run_id=f"plan-{run}",
                reason="answers the question" if n % 2 else "asks for preferences first",
            )
        )
    mine = await store.scores.list_scores(run_id=f"plan-{run}")
    overall = await store.scores.aggregate_scores(scorer_id="relevance", pass_threshold=0.8)
    print("scores:")
    for score in mine.items:
        print(f"  {score.scorer_id} {score.entity_id}: {score.score} ({score.reason})")
    print(
        f"  relevance over all demo runs: count={overall.count} mean={overall.mean:.3f} "
        f"p50={overall.p50:.3f} p95={overall.p95:.3f} pass_rate={overall.pass_rate:.2f}"
    )


async def _agents(store: CompositeStore, run: str) -> None:
    """The trip planner agent, then a new version with better instructions."""
    agent_id = f"trip-planner-{run}"
    await store.agents.create_agent(
        Agent(
            id=agent_id,
            name="Trip planner",
            instructions="Plan trips.",
            model="gpt-x",
            metadata_={"demo": True},
        )
    )
    agent = await store.agents.update_agent(
        agent_id, instructions="Plan trips; ask about food preferences first."
    )
    history = await store.agents.list_versions(agent_id)
    print("agents:")
    print(f"  {agent.name} ({agent_id}): active version {agent.active_version}")
    for version in history.items:
        print(f"    v{version.version_number}: {version.instructions!r} on {version.model}")


async def _traces(store: CompositeStore, run: str, tmp_outbox: Path) -> None:
    """The agent's turn as a trace, recorded through the background span writer."""
    trace_id = uuid.uuid4().hex
    root_id = uuid.uuid4().hex[:16]
    start = datetime.now(UTC)
    steps: list[tuple[str, str, str | None, int, int]] = [("plan-trip", "agent_run", None, 0, 900)]
    steps += [
        ("recall-memory", "memory_read", root_id, 10, 40),
        ("llm-call-0", "model_generation", root_id, 50, 420),
        ("save-plan", "workflow_step", root_id, 430, 480),
        ("llm-call-1", "model_generation", root_id, 500, 880),
    ]
    writer = store.observability.span_writer(
        max_batch=100, flush_interval=0.1, outbox_path=tmp_outbox / f"demo_outbox_{run}.db"
    )
    async with writer:
        for i, (name, kind, parent, begin_ms, end_ms) in enumerate(steps):
            writer.submit(
                Span(
                    trace_id=trace_id,
                    span_id=root_id if parent is None else f"{i:016x}",
                    parent_span_id=parent,
                    name=name,
                    span_type=kind,
                    started_at=start + timedelta(milliseconds=begin_ms),
                    ended_at=start + timedelta(milliseconds=end_ms),
                    attributes={"model": "gpt-x", "tokens": 123} if "llm" in name else {},
                    thread_id=f"demo-thread-{run}",
                    service_name="composite-store-demo",
                )
            )
    trace = await store.observability.get_trace(trace_id)
    assert trace is not None
    print(f"observability: trace {trace_id} ({writer.stats.written} spans via the span writer)")
    for span in trace.spans:
        indent = "  " if span.parent_span_id is None else "    └─ "
        took = (span.ended_at - span.started_at).total_seconds() * 1000 if span.ended_at else 0
        print(f"  {indent}{span.name} [{span.span_type}] {took:.0f} ms, {span.status}")
    recent = await store.observability.list_traces(service_name="composite-store-demo", per_page=3)
    print(f"  {recent.total} demo trace(s) stored; newest root: {recent.items[0].name}")
