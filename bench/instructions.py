"""Instructions a call, composite-store against the sqlite3 floor, for AW-1's SQLite steps.

On a shared machine wall time drifts (a fixed CPU loop here once varied by +-30% within
seconds), and so do the ratios of ``composite-store bench``. valgrind counts instructions,
which the machine's load does not move: each system runs a step with 0 and with N calls
under callgrind, and the difference over N is what one call costs.

    python bench/instructions.py [--calls 1000] [--dir DIR]

Needs valgrind. Instructions are not time (Python's interpreter runs fewer instructions a
cycle than SQLite's C), so this complements the benchmark's ratios; it does not replace them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from composite_store import CompositeStore
from composite_store.benchmark import CompositeSystem, load_floors, make_messages, make_snapshot

STEPS = ("M2", "M3", "W1", "W2")
THREAD = "aw1"
MESSAGES = 10_000
RUNS = 1_000
WARMUP = 20


async def prepare(folder: Path) -> None:
    """Both systems' databases with the same messages and workflow runs."""
    rng = random.Random(1)
    store = CompositeStore(f"sqlite:///{folder / 'store.db'}")
    ours = CompositeSystem(store)
    floor = load_floors().Sqlite3Floor(folder / "floor.db")
    try:
        await ours.setup(THREAD)
        await floor.setup(THREAD)
        data = make_messages(THREAD, MESSAGES, rng)
        snapshot = make_snapshot(rng)
        for i in range(0, len(data), 500):
            await ours.save_messages(data[i : i + 500])
            await floor.save_messages(data[i : i + 500])
        for i in range(RUNS):
            await ours.persist("flow", f"run-{i}", snapshot)
            await floor.persist("flow", f"run-{i}", snapshot)
    finally:
        await store.close()


async def run(folder: Path, system: str, step: str, calls: int) -> None:
    """``WARMUP + calls`` calls of ``step`` (the warm-up is in both counts, so it cancels)."""
    rng = random.Random(2)
    store = None
    if system == "store":
        store = CompositeStore(f"sqlite:///{folder / 'store.db'}")
        await store.init()
        target: Any = CompositeSystem(store)
    else:
        target = load_floors().Sqlite3Floor(folder / "floor.db")
        target.conn = target.connect()  # the benchmark's pragmas (foreign keys, synchronous)
    with sqlite3.connect(folder / "floor.db") as db:  # the same ids in both databases
        ids = [row[0] for row in db.execute("SELECT id FROM floor_messages ORDER BY id")]
    snapshot = make_snapshot(rng)
    for i in range(WARMUP + calls):
        if step == "M2":
            await target.newest_page(THREAD, 40, False)
        elif step == "M3":
            await target.page_with_context(THREAD, 10, rng.choice(ids), False)
        elif step == "W1":
            await target.persist("flow", f"new-{calls}-{i}", snapshot)
        else:
            await target.load("flow", f"run-{rng.randrange(RUNS)}")
    if store is not None:
        await store.close()


def count(folder: Path, system: str, step: str, calls: int) -> int:
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--run",
            system,
            step,
            str(calls),
            "--dir",
            str(folder),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found is not None, done.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--dir", type=Path)
    parser.add_argument(
        "--run", nargs=3, metavar=("SYSTEM", "STEP", "CALLS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.run:
        system, step, calls = args.run
        asyncio.run(run(args.dir, system, step, int(calls)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.dir or Path(scratch)
        asyncio.run(prepare(folder))
        print(f"instructions a call (callgrind, {args.calls} calls less 0)")
        print("step   composite-store   sqlite3 floor   ratio")
        for step in STEPS:
            per_call = {}
            for system in ("store", "floor"):
                counts = [count(folder, system, step, n) for n in (0, args.calls)]
                per_call[system] = (counts[1] - counts[0]) / args.calls
            ratio = per_call["store"] / per_call["floor"]
            print(f"{step:4} {per_call['store']:15,.0f} {per_call['floor']:15,.0f}   {ratio:.2f}x")


if __name__ == "__main__":
    main()
