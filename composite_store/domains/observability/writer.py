"""Background span ingestion that never blocks the caller and never loses a span.

``submit()`` checks the span, appends it to an in-memory buffer and returns: it never awaits
and never touches the database or the disk. A background task writes the buffer in batches
(by size, or every ``flush_interval`` seconds). When the database fails, batches stay in the
buffer and are retried with exponential backoff; what exceeds ``max_buffer`` is spilled, a
batch at a time, to a local SQLite outbox file and replayed once the database answers again.
Writes are idempotent by ``(trace_id, span_id)``, so a batch retried after an ambiguous
failure is stored once.

What a crash can lose: a process that exits after ``await writer.close()`` has lost nothing
(close() writes everything, or spills what it cannot write to the outbox). A process that
crashes loses what was only in memory: at most ``max_buffer`` spans plus one batch being
spilled. Everything in the outbox survives and is replayed by the next writer that uses the
same outbox file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import tempfile
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composite_store.domains.observability.store import (
    JSON_FIELDS,
    ObservabilityStore,
    span_row,
)
from composite_store.errors import CompositeStoreError, DomainUnavailableError

if TYPE_CHECKING:
    from composite_store.domains.observability.models import Span

log = logging.getLogger("composite_store.span_writer")
MAX_REJECTIONS = 5  # a batch the database refuses this many times is parked, not retried
_TIME_FIELDS = ("started_at", "ended_at", "created_at", "updated_at")


@dataclass
class WriterStats:
    """Counters, in spans (``retried`` counts failed write attempts)."""

    submitted: int = 0
    written: int = 0
    retried: int = 0
    spilled: int = 0
    replayed: int = 0
    rejected: int = 0  # refused by the database MAX_REJECTIONS times: parked in the outbox


class SpanWriter:
    """Use ``async with store.observability.span_writer() as writer:`` or call ``close()``."""

    def __init__(
        self,
        store: ObservabilityStore,
        *,
        max_batch: int = 500,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        outbox_path: str | Path | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        if max_batch < 1 or max_buffer < max_batch or flush_interval <= 0:
            raise ValueError("need max_batch >= 1, max_buffer >= max_batch, flush_interval > 0")
        self._store = store
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.max_backoff = max_backoff
        self.stats = WriterStats()
        self._buffer: deque[dict[str, Any]] = deque()
        self._outbox = Outbox(Path(outbox_path) if outbox_path else default_outbox_path(store))
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # -- the caller's side ----------------------------------------------------------------
    def submit(self, span: Span | Mapping[str, Any]) -> None:
        """Queue a span for writing. Raises ``ValidationError`` at once for a bad span;
        never waits on the database."""
        if self._closing:
            raise CompositeStoreError("this span writer is closed")
        row = span_row(span, "span")
        self._buffer.append(row)
        self.stats.submitted += 1
        self._idle.clear()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(self._buffer) >= self.max_batch:
            self._wake.set()

    async def flush(self) -> None:
        """Wait until every span submitted so far is in the database (including the outbox's)."""
        if self._task is None and not self._outbox.has_batches():
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()
        await self._idle.wait()

    async def close(self, timeout: float | None = 30.0) -> None:
        """Write what is left; after ``timeout`` seconds (the database still down), spill the
        rest to the outbox, where the next writer on it replays them. ``None``: no limit."""
        self._closing = True
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            pass
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            if self._buffer:  # the database is still down: keep them on disk
                rows = list(self._buffer)
                self._buffer.clear()
                await asyncio.to_thread(self._outbox.append, rows)
                self.stats.spilled += len(rows)
            self._outbox.close()

    async def __aenter__(self) -> SpanWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the background side --------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.05
        rejections = 0
        while True:
            if not self._buffer and not self._outbox.has_batches():
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._buffer) < self.max_batch and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            try:
                await self._write_buffer()
                await self._replay_outbox()
                backoff = 0.05
            except DomainUnavailableError as exc:  # the database is down: keep, back off, retry
                self.stats.retried += 1
                rejections = 0
                log.warning("span batch not written (%s); retrying in %.2f s", exc, backoff)
                await self._spill_excess()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as exc:  # refused by the database (or a bug): never end the task
                self.stats.retried += 1
                if not isinstance(exc, CompositeStoreError):
                    log.error("span batch not written: %r", exc)
                rejections += 1
                if rejections >= MAX_REJECTIONS:  # a poison batch: park it, go on with the rest
                    await self._reject_head(exc)
                    rejections = 0
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    async def _write_buffer(self) -> None:
        while self._buffer:
            batch = [self._buffer[i] for i in range(min(self.max_batch, len(self._buffer)))]
            await self._store.insert_rows(batch)
            for _ in batch:  # only now: a failed write leaves the batch in place
                self._buffer.popleft()
            self.stats.written += len(batch)

    async def _replay_outbox(self) -> None:
        while True:
            found = await asyncio.to_thread(self._outbox.first)
            if found is None:
                return
            batch_id, rows = found
            await self._store.insert_rows(rows)
            await asyncio.to_thread(self._outbox.remove, batch_id)
            self.stats.written += len(rows)
            self.stats.replayed += len(rows)

    async def _reject_head(self, exc: Exception) -> None:
        """Move the batch the database keeps refusing to the outbox's ``rejected`` table (kept,
        never replayed), so that it cannot block every span behind it."""
        if self._buffer:
            rows = [self._buffer.popleft() for _ in range(min(self.max_batch, len(self._buffer)))]
            await asyncio.to_thread(self._outbox.reject, rows, str(exc))
        else:
            await asyncio.to_thread(self._outbox.reject_first, str(exc))
            rows = []
        self.stats.rejected += len(rows)
        log.error(
            "span batch refused %d times, parked in %s: %s", MAX_REJECTIONS, self._outbox.path, exc
        )

    async def _spill_excess(self) -> None:
        while len(self._buffer) > self.max_buffer:
            rows = [self._buffer.popleft() for _ in range(min(self.max_batch, len(self._buffer)))]
            await asyncio.to_thread(self._outbox.append, rows)
            self.stats.spilled += len(rows)


def default_outbox_path(store: ObservabilityStore) -> Path:
    """One outbox per database, in the temp directory (``outbox_path=`` to choose)."""
    name = "".join(c if c.isalnum() else "_" for c in store.masked_url)[-80:]
    return Path(tempfile.gettempdir()) / f"composite_store_outbox_{name}.db"


class Outbox:
    """Batches of span rows in a local SQLite file; used from worker threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._count, rejected = self._open_counts() if path.exists() else (0, 0)
        self._keep = rejected > 0  # the file is removed at close only when nothing is left

    def _open_counts(self) -> tuple[int, int]:
        with self._connection() as conn:
            batches = conn.execute("SELECT count(*) FROM batches").fetchone()[0]
            rejected = conn.execute("SELECT count(*) FROM rejected").fetchone()[0]
        return int(batches), int(rejected)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, check_same_thread=False)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, rows TEXT)"
                )
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS rejected "
                    "(id INTEGER PRIMARY KEY, rows TEXT, error TEXT)"
                )
            yield self._conn

    def has_batches(self) -> bool:
        return self._count > 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        payload = json.dumps([_encode(row) for row in rows])
        with self._connection() as conn, conn:
            conn.execute("INSERT INTO batches (rows) VALUES (?)", (payload,))
            self._count += 1

    def first(self) -> tuple[int, list[dict[str, Any]]] | None:
        if not self._count:
            return None
        with self._connection() as conn:
            found = conn.execute("SELECT id, rows FROM batches ORDER BY id LIMIT 1").fetchone()
        if found is None:
            return None
        return int(found[0]), [_decode(row) for row in json.loads(found[1])]

    def reject(self, rows: list[dict[str, Any]], error: str) -> None:
        payload = json.dumps([_encode(row) for row in rows])
        with self._connection() as conn, conn:
            conn.execute("INSERT INTO rejected (rows, error) VALUES (?, ?)", (payload, error))
        self._keep = True

    def reject_first(self, error: str) -> None:
        """Park the oldest outbox batch (the one replay keeps failing on)."""
        with self._connection() as conn, conn:
            conn.execute(
                "INSERT INTO rejected (rows, error) "
                "SELECT rows, ? FROM batches ORDER BY id LIMIT 1",
                (error,),
            )
            conn.execute("DELETE FROM batches WHERE id = (SELECT min(id) FROM batches)")
            self._count -= 1
        self._keep = True

    def remove(self, batch_id: int) -> None:
        with self._connection() as conn, conn:
            conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
            self._count -= 1

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self.path.exists() and not self._count and not self._keep:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    """A checked row as JSON can hold it: times as ISO text, documents as their text."""
    return {k: _encodable(v) for k, v in row.items()}


def _encodable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if type(value) is bytes:  # a document span_row serialised (JSONBytes)
        return value.decode()
    return value


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    """A row as ``span_row`` made it. Its JSON documents were kept as their text (a string
    ``attributes``); an outbox written before that holds the documents themselves."""
    for name in _TIME_FIELDS:
        if row.get(name) is not None:
            row[name] = datetime.fromisoformat(row[name])
    if isinstance(row.get("attributes"), str):
        for name in JSON_FIELDS:
            if row.get(name) is not None:
                row[name] = row[name].encode()
    return row
