"""`composite-store demo` (the README's first command) on the embedded default."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from composite_store.cli import main


def test_demo_writes_and_reads_every_built_domain(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clean_env: None,
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "memory         -> sqlite" in out
    assert "Perfect, save that plan please." in out
    assert "message 2 with its neighbours: ['1', '2', '3']" in out
    assert "trip-planner/plan-" in out and "status=success version=2" in out
    assert "relevance over all demo runs: count=2 mean=0.835" in out
    assert "active version 2" in out and "v1: 'Plan trips.' on gpt-x" in out
    assert "(5 spans via the span writer)" in out and "└─ llm-call-1 [model_generation]" in out
    database = tmp_path / "composite_store.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM memory_messages").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM workflow_runs").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM scores").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM agent_versions").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM spans").fetchone() == (5,)

    assert main(["demo"]) == 0  # a second run adds a second conversation to the same file
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM memory_threads").fetchone() == (2,)
