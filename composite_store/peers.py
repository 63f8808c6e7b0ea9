"""``composite-store bench --peers``: AW-1 through composite-store, the raw-driver floors and
Mastra's own stores (``bench/peers``), on one throwaway PostgreSQL and on SQLite files.

Every system runs in a process of its own, on a fresh database, in turn (A B C A B C ...)
for several rounds, so that each gets the same machine and its peak memory (RSS) is its
own. The table shows medians over rounds and ratios against the floor of the same backend.
It needs a checkout (``bench/peers`` with Node.js and npm); it stops what it starts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "bench" / "peers"
STEPS = ("M1", "M2", "M3", "W1", "W2", "O1", "O2")
THROUGHPUT = {"M1": "messages_per_s", "O1": "spans_per_s"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and pg_ctl refuse to run as root."""
    if os.geteuid() != 0:
        return command
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{part}'" for part in command)]


@contextmanager
def throwaway_postgres(*, fsync: bool = False) -> Iterator[str]:
    """A PostgreSQL cluster of our own on a free loopback port; yields its admin URL.
    Without ``fsync`` a commit does not wait for the disk: the flush costs every system the
    same ~1-3 ms here and would hide the differences between them."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not bins:
        raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    bin_dir, port = bins[-1], _free_port()
    home = Path(tempfile.mkdtemp(prefix="cs-peers-pg."))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
    data = home / "data"
    try:
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
            ),
            check=True,
            capture_output=True,
        )
        options = (
            f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
        )
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w"]
        subprocess.run(
            _as_postgres([*start, "-o", options, "start"]), check=True, capture_output=True
        )
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}"
        finally:
            stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            subprocess.run(_as_postgres(stop), capture_output=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _create_database(admin_url: str, name: str) -> str:
    subprocess.run(
        ["psql", f"{admin_url}/postgres", "-qc", f'CREATE DATABASE "{name}"'],
        check=True,
        capture_output=True,
    )
    return f"{admin_url}/{name}"


def _measure(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one system; its JSON line (each system reports its own process's peak RSS)."""
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True
    )
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{err[-2000:]}")
    line = [row for row in out.splitlines() if row.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    return result


def _python_system(system: str, scale: float) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import resource, sys, json, io, contextlib\n"
        "from composite_store.cli import main\n"
        "buffer = io.StringIO()\n"
        "with contextlib.redirect_stdout(buffer):\n"
        "    code = main(sys.argv[1:])\n"
        "result = json.loads(buffer.getvalue().strip().splitlines()[-1])\n"
        "result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(result))\n"
        "sys.exit(code)",
        *["bench", "--json", "--system", system, "--scale", str(scale)],
    ]


def _systems(backend: str, url: str, scale: float) -> list[tuple[str, list[str], dict[str, str]]]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("COMPOSITE_STORE_") and key.endswith("_URL"):
            del env[key]
    env["COMPOSITE_STORE_URL"] = url
    store = "pg" if backend == "postgresql" else "libsql"
    mastra_url = url if backend == "postgresql" else "file:" + url.removeprefix("sqlite:///")
    node = ["node", str(PEERS / "aw1.mjs"), "--store", store, "--url", mastra_url, "--json"]
    if scale != 1.0:
        node += ["--scale", str(scale)]
    return [
        ("composite-store", _python_system("store", scale), env),
        ("floor", _python_system("floor", scale), env),
        (f"mastra-{store}", node, env),
    ]


def _figure(result: dict[str, Any], step: str) -> float | None:
    figures = result.get("steps", {}).get(step)
    if not figures:
        return None
    return float(figures[THROUGHPUT[step]] if step in THROUGHPUT else figures["p50_ms"])


def _median(results: list[dict[str, Any]], step: str) -> float | None:
    values = [f for f in (_figure(r, step) for r in results) if f is not None]
    return statistics.median(values) if values else None


def _ratio(step: str, value: float | None, floor: float | None) -> str:
    """Slowdown against the floor: >1 is slower (throughput: floor/value)."""
    if value is None or floor is None:
        return "-"
    return f"{(floor / value if step in THROUGHPUT else value / floor):.2f}x"


def _cell(step: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}/s" if step in THROUGHPUT else f"{value:.3f} ms"


def table(backend: str, runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    names = list(runs)
    mastra = next(n for n in names if n.startswith("mastra"))
    head = ["step", *names, "store ÷ floor", f"{mastra} ÷ floor", f"store vs {mastra}"]
    lines = [
        f"### {backend}",
        "",
        "| " + " | ".join(head) + " |",
        "|---" + "|---:" * (len(head) - 1) + "|",
    ]
    for step in STEPS:
        values = {n: _median(runs[n], step) for n in names}
        ours, floor, peer = values["composite-store"], values["floor"], values[mastra]
        if ours is None or peer is None:
            versus = "-"
        elif step in THROUGHPUT:
            versus = f"{ours / peer:.2f}x the throughput"
        else:
            versus = f"{peer / ours:.2f}x faster"
        cells = [_cell(step, values[n]) for n in names]
        lines.append(
            "| "
            + " | ".join(
                [step, *cells, _ratio(step, ours, floor), _ratio(step, peer, floor), versus]
            )
            + " |"
        )
    rss = [f"{statistics.median(r.get('peak_rss_mb', 0) for r in runs[n]):.0f} MB" for n in names]
    lines.append("| peak RSS | " + " | ".join(rss) + " | | | |")
    return lines


def run_peers(*, rounds: int = 3, scale: float = 1.0, fsync: bool = False) -> int:
    if not (PEERS / "aw1.mjs").exists():
        print("bench --peers needs a checkout with bench/peers", file=sys.stderr)
        return 2
    if not (PEERS / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True)
    started = time.monotonic()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"postgresql": {}, "sqlite": {}}
    with throwaway_postgres(fsync=fsync) as admin, tempfile.TemporaryDirectory() as scratch:
        for round_number in range(rounds):
            for backend in runs:
                for index in range(3):  # composite-store, floor, mastra
                    tag = f"aw1_{round_number}_{index}"
                    if backend == "postgresql":
                        url = _create_database(admin, tag)
                    else:
                        url = f"sqlite:///{scratch}/{tag}.db"
                    label, command, env = _systems(backend, url, scale)[index]
                    result = _measure(command, env)
                    runs[backend].setdefault(label, []).append(result)
                    print(
                        f"round {round_number + 1}/{rounds} {backend} {label}: done",
                        file=sys.stderr,
                    )
    versions = next(iter(runs["postgresql"].get("mastra-pg", [{}])), {}).get("versions", {})
    print(
        f"AW-1, {dt.date.today().isoformat()}, {rounds} round(s), "
        "medians of p50 (M1/O1: throughput)"
    )
    print(f"Mastra: {json.dumps(versions)}; Python {sys.version.split()[0]}")
    print(f"PostgreSQL: a throwaway cluster, fsync={'on' if fsync else 'off'}")
    if scale != 1.0:
        print(f"scaled by {scale}: figures are not comparable with full runs")
    for backend, by_system in runs.items():
        print()
        print("\n".join(table(backend, by_system)))
    print(f"\n({time.monotonic() - started:.0f} s)")
    return 0
