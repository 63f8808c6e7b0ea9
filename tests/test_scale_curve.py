"""``composite-store bench --curve`` (issue 6's scale curve) at tiny sizes on SQLite: the shape
of what it measures and prints, not its timings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from composite_store import CompositeStore
from composite_store.cli import main
from composite_store.scalecurve import markdown, parse_sizes, run_curve

STEPS = ["M2", "M2+total", "list_traces", "list_traces+total"]


async def test_curve_measures_every_step_at_every_size(tmp_path: Path) -> None:
    database = tmp_path / "curve.db"
    async with CompositeStore(f"sqlite:///{database}") as store:
        curves = await run_curve(store, (100, 1_000), calls=3, log=lambda line: None)
    assert [c.step for c in curves] == STEPS
    for curve in curves:
        assert curve.backend == "sqlite"
        assert [p.size for p in curve.points] == [100, 1_000]
        assert all(0 < p.p50_ms <= p.p95_ms for p in curve.points)
        assert curve.ratio(curve.points[0]) == 1.0
    lines = markdown(curves, calls=3)
    assert lines[0].startswith("#### sqlite (") and "3 sequential calls" in lines[0]
    assert "| step | size | p50 ms | p95 ms | p50 ÷ p50 at 100 |" in lines
    assert sum(line.startswith("| M2 | 1k | ") for line in lines) == 1
    verdicts = [line for line in lines if line.startswith("- ")]
    assert len(verdicts) == 4 and all("target <= " in line for line in verdicts)
    with sqlite3.connect(database) as conn:  # the run removed what it wrote
        assert conn.execute("SELECT count(*) FROM memory_messages").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM spans").fetchone() == (0,)


def test_bench_curve_command(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clean_env: None,
) -> None:
    monkeypatch.setenv("COMPOSITE_STORE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    assert main(["bench", "--curve", "--sizes", "100,1000", "--calls", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.count("| list_traces+total | 1k | ") == 1 and out.count("####") == 1
    assert "thread at 1,000 messages" in err and "1,000 spans" in err


@pytest.mark.parametrize("text", ["", "10k", "1000,100", "100,100", "5", "105"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_sizes(text)
    with pytest.raises(SystemExit):
        main(["bench", "--curve", "--sizes", text])
