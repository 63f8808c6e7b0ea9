"""``composite-store demo``: the main job, on the embedded default (``./composite_store.db``).

It migrates every domain, then shows where each domain lives. Domains whose stores are built
add their part of a simulated agent conversation here.
"""

from __future__ import annotations

from composite_store.composite import CompositeStore
from composite_store.config import DEFAULT_URL


async def run_demo() -> int:
    async with CompositeStore(DEFAULT_URL) as store:
        print("composite-store demo: every domain on the embedded default\n")
        for domain, info in store.describe().items():
            print(f"  {domain:<14} -> {info['backend']:<10} {info['url']}")
        health = await store.health()
        print()
        for domain, status in health.items():
            state = "reachable" if status["reachable"] else f"DOWN ({status['error']})"
            print(f"  {domain:<14} {state}, {status['latency_ms']} ms")
    return 0
