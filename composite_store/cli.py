"""``composite-store``: status, migrate, demo and bench from the command line.

Every URL printed here is masked; configuration comes from the same environment variables as
``CompositeStore.from_env()``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from composite_store import schema
from composite_store.composite import CompositeStore
from composite_store.errors import CompositeStoreError
from composite_store.registry import DOMAINS
from composite_store.scalecurve import CALLS, SIZES, parse_sizes, run_curve_command


async def _status(store: CompositeStore) -> int:
    health = await store.health()
    print(f"{'domain':<14} {'backend':<11} {'schema':<28} {'reachable':<9} url")
    by_engine: dict[int, list[str]] = {}
    for domain in DOMAINS:
        by_engine.setdefault(id(store.engine(domain)), []).append(domain)
    revisions: dict[str, str | None] = {}
    for domains in by_engine.values():
        if health[domains[0]]["reachable"]:
            revisions.update(await schema.current_revisions(store.engine(domains[0]), domains))
    worst = 0
    for domain, info in store.describe().items():
        head = schema.head_revision(domain)
        current = revisions.get(domain)
        if not health[domain]["reachable"]:
            state, worst = "?", 1
        elif current == head:
            state = f"{current} (head)"
        else:
            state, worst = f"{current or 'empty'} -> {head}", max(worst, 1)
        reach = "yes" if health[domain]["reachable"] else "NO"
        print(f"{domain:<14} {info['backend']:<11} {state:<28} {reach:<9} {info['url']}")
        if health[domain]["error"]:
            print(f"{'':<14} error: {health[domain]['error']}")
    return worst


async def _migrate(store: CompositeStore, domain: str | None) -> int:
    wanted = [domain] if domain else list(DOMAINS)
    for engine_domains in _group_by_engine(store, wanted):
        engine = store.engine(engine_domains[0])
        await schema.upgrade(engine, engine_domains)
        current = await schema.current_revisions(engine, engine_domains)
        for name in engine_domains:
            print(f"{name:<14} at {current[name]} ({store.config[name].masked_url})")
    return 0


def _group_by_engine(store: CompositeStore, domains: Sequence[str]) -> list[list[str]]:
    groups: dict[int, list[str]] = {}
    for domain in domains:
        groups.setdefault(id(store.engine(domain)), []).append(domain)
    return list(groups.values())


async def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from composite_store.demo import run_demo

        return await run_demo()
    if args.command == "bench" and args.peers:
        from composite_store.peers import run_peers

        return await asyncio.to_thread(
            run_peers, rounds=max(args.rounds, 1), scale=args.scale, fsync=args.fsync
        )
    store = CompositeStore.from_env()
    try:
        if args.command == "status":
            return await _status(store)
        if args.command == "migrate":
            return await _migrate(store, args.domain)
        if args.command == "bench":
            return await _bench(store, args)
    finally:
        await store.close()
    return 2


async def _bench(store: CompositeStore, args: argparse.Namespace) -> int:
    import json
    import tempfile
    from pathlib import Path

    from composite_store.benchmark import Sizes, ratio_table, run_bench

    if args.curve:
        return await run_curve_command(store, args.sizes, max(args.calls, 1))
    sizes = Sizes().scaled(args.scale) if args.scale != 1.0 else Sizes()
    systems = ("store", "floor") if args.system == "both" else (args.system,)
    with tempfile.TemporaryDirectory() as scratch:
        results = await run_bench(
            store, sizes=sizes, rounds=args.rounds, scratch=Path(scratch), systems=systems
        )
    if args.json or len(results) == 1:
        for result in results:
            print(json.dumps(result.as_json()))
        return 0
    ours, floor = results
    where = store.config["memory"].masked_url
    print(
        f"AW-1 on {ours.backend} ({where}), {args.rounds} round(s), medians; ratio = "
        f"store/floor p50 (throughput: floor/store)"
    )
    if args.scale != 1.0:
        print(f"scaled by {args.scale}: figures are not comparable with full runs")
    print("\n".join(ratio_table(ours, floor)))
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="composite-store",
        description="Per-domain storage for AI-agent applications. URLs come from "
        "COMPOSITE_STORE_URL and COMPOSITE_STORE_<DOMAIN>_URL.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="per domain: backend, masked URL, schema revision, reachable")
    migrate = sub.add_parser("migrate", help="bring domains to the head revision")
    migrate.add_argument("--domain", choices=DOMAINS, help="only this domain")
    sub.add_parser("demo", help="a simulated agent conversation on the embedded default")
    bench = sub.add_parser("bench", help="the AW-1 agent-turn workload vs a raw-driver floor")
    bench.add_argument("--json", action="store_true", help="one JSON object per system")
    bench.add_argument("--rounds", type=int, default=1, help="alternate store/floor N times")
    bench.add_argument("--scale", type=float, default=1.0, help="shrink the workload (smoke runs)")
    bench.add_argument(
        "--system", choices=("both", "store", "floor"), default="both", help="what to measure"
    )
    bench.add_argument(
        "--peers",
        action="store_true",
        help="composite-store, the floors and Mastra's stores on a throwaway PostgreSQL and "
        "SQLite, each in its own process (needs a checkout with bench/peers, Node and npm)",
    )
    bench.add_argument(
        "--fsync",
        action="store_true",
        help="--peers: run the throwaway PostgreSQL with fsync on (commits wait for the disk)",
    )
    bench.add_argument(
        "--curve",
        action="store_true",
        help="scale curve: M2 and list_traces p50 as one dataset grows through --sizes",
    )
    bench.add_argument(
        "--sizes", type=_sizes, default=SIZES, help="--curve: rows, e.g. 10000,1000000"
    )
    bench.add_argument("--calls", type=int, default=CALLS, help="--curve: timed calls a size")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except CompositeStoreError as exc:  # already masked; no traceback for expected failures
        print(f"composite-store: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
