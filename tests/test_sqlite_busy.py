"""Which SQLite errors the inline driver waits out, judged on errors real SQLite raises.

Python reports SQLite's extended result codes: "database is locked" may carry SQLITE_BUSY or
one of its variants. A CI run once failed because SQLITE_BUSY_RECOVERY (a process opening the
file while another rebuilt the log's index) was not taken for busy and ended an ``init()``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from composite_store.sqlite_inline import is_busy

CRASHED_WRITER = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")  # everything stays in the log
db.execute("CREATE TABLE ballast (b BLOB)")
db.execute("BEGIN")
db.executemany("INSERT INTO ballast VALUES (?)", ((b"x" * 2000,) for _ in range(50_000)))
db.execute("COMMIT")
os._exit(0)  # dies without closing: the next opener must rebuild the log's index
"""


@contextlib.contextmanager
def connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection like the inline driver's: no busy wait of SQLite's own, autocommit."""
    with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as db:
        yield db


def error_of(db: sqlite3.Connection, sql: str) -> sqlite3.OperationalError:
    try:
        db.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        return exc
    raise AssertionError(f"{sql!r} did not fail")


def test_a_writer_holding_the_lock_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with connection(path) as writer, connection(path) as other:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("CREATE TABLE t (x)")
        writer.execute("BEGIN IMMEDIATE")
        exc = error_of(other, "BEGIN IMMEDIATE")
        assert exc.sqlite_errorcode == sqlite3.SQLITE_BUSY
        assert is_busy(exc)


def test_a_log_being_recovered_is_busy(tmp_path: Path) -> None:
    """SQLITE_BUSY_RECOVERY: the reader that rebuilds the index holds a lock for tens of
    milliseconds; a connection that has the index mapped and starts reading meanwhile gets
    the error. Tried a few times, as the two threads must overlap."""
    exc = None
    for attempt in range(5):
        path = tmp_path / f"crashed-{attempt}.db"
        subprocess.run([sys.executable, "-c", CRASHED_WRITER, str(path)], check=True)
        exc = _error_during_recovery(path)
        for file in tmp_path.glob(f"{path.name}*"):  # 100 MB of log a try: not kept
            file.unlink()
        if exc is not None:
            break
    assert exc is not None, "no reader overlapped a recovery in five tries"
    assert exc.sqlite_errorcode == sqlite3.SQLITE_BUSY_RECOVERY
    assert str(exc) == "database is locked"
    assert is_busy(exc)


def _error_during_recovery(path: Path) -> sqlite3.OperationalError | None:
    started = threading.Event()

    def recover() -> None:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            started.set()
            db.execute("SELECT 1 FROM sqlite_master").fetchall()

    recovery = threading.Thread(target=recover)
    recovery.start()
    started.wait()
    time.sleep(0.005)
    try:
        with connection(path) as other:
            other.execute("SELECT 1 FROM sqlite_master").fetchall()
        return None
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        recovery.join()


def test_a_stale_snapshot_is_not_busy(tmp_path: Path) -> None:
    """SQLITE_BUSY_SNAPSHOT: a read transaction that another connection's commit overtook
    can never write; retrying the statement could only wait out the whole timeout."""
    path = tmp_path / "db"
    with connection(path) as reader, connection(path) as writer:
        reader.execute("PRAGMA journal_mode=WAL")
        reader.execute("CREATE TABLE t (x)")
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchall()
        writer.execute("INSERT INTO t VALUES (1)")
        exc = error_of(reader, "INSERT INTO t VALUES (2)")
        assert exc.sqlite_errorcode == sqlite3.SQLITE_BUSY_SNAPSHOT
        assert not is_busy(exc)
