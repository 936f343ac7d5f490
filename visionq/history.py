"""Durable job history: every job's final record, kept after its Redis record expires.

How a record gets here, off the job's path:

1. The script that finishes (or revokes) a job appends the job's final hash to the Redis
   stream ``visionq:history`` in the same atomic step (``visionq.jobs``): a worker does
   nothing more than before, and a finished job is never missing from the stream.
2. ``HistoryWriter`` (a thread in each API process) reads the stream through a consumer
   group, writes a batch into the store (SQLAlchemy: SQLite by default, PostgreSQL by
   ``VISIONQ_HISTORY_URL``) and only then acknowledges it.  If the store is down, the
   entries stay in the stream (and pending) and are written when it is back; an entry
   delivered twice is harmless (insert-or-ignore by job id).  Entries left pending by a
   dead API process are claimed by another after ``CLAIM_IDLE_MS``.  A row the store
   refuses (a data error, e.g. a model version longer than its column) is set aside in the
   dead-letter list ``visionq:history:dead`` (at most ``DEAD_LETTER_MAX`` entries, the
   entry and the error) and acknowledged, so the rows after it keep flowing.
3. Retention (``VISIONQ_HISTORY_DAYS``, ``VISIONQ_HISTORY_MAX_ROWS``) deletes the oldest
   rows in batches of ``PRUNE_BATCH``, every ``PRUNE_INTERVAL_S``, by one process at a time.

Reading: ``HistoryStore.page`` is newest first by ``(queued_at, id)`` with a keyset cursor
(no OFFSET), so any page of millions of rows costs one index range scan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from visionq.jobs import Job
from visionq.keys import HISTORY_PRUNE_LOCK_KEY, HISTORY_STREAM_KEY

log = logging.getLogger("visionq.history")

BATCH = 500
"""Stream entries written per transaction: one commit (one fsync) per batch."""
BLOCK_MS = 1000
"""How long a read waits for new entries (also how fast ``stop`` is noticed)."""
GATHER_S = 0.5
"""After writing a batch smaller than ``BATCH``, wait this long before reading again, so
that a trickle of jobs is written tens at a time: one read, one transaction and one
acknowledgement per entry cost the API ≈ 1.5 ms of CPU per job at 80 jobs/s (py-spy,
the retired ``bench profile``: bench/results/HISTORY.md), a batch of 40 a fraction."""
CLAIM_IDLE_MS = 60_000
"""Entries pending this long with another consumer (an API process that died between
reading and acknowledging) are claimed and written by this one."""
CLAIM_EVERY_S = 30.0
RETRY_MAX_S = 30.0
"""Back-off ceiling while the store is down (doubling from 0.5 s)."""
PRUNE_INTERVAL_S = 300.0
PRUNE_BATCH = 5000
"""Rows per DELETE: each statement holds SQLite's write lock only briefly."""
TRIM_EVERY_S = 60.0
"""How often the stream is trimmed of entries every consumer group has acknowledged."""
DEAD_LETTER_KEY = f"{HISTORY_STREAM_KEY}:dead"
"""Redis list of the stream entries the store refused (newest first), as JSON: the entry's
id and fields, the consumer group, the error and when."""
DEAD_LETTER_MAX = 1000
"""Entries kept in the dead-letter list; older ones are dropped (the count of everything
set aside is the ``visionq_history_dead_letters_total`` counter)."""
ROW_ERRORS: tuple[type[Exception], ...] = (sa.exc.DataError, sa.exc.IntegrityError,
                                           ValueError, OverflowError, TypeError)
"""What a store raises for a row it refuses (too long, out of range, NUL in text, NULL in a
NOT NULL column; sqlite3 raises ``OverflowError`` for an int beyond 64 bits while binding).
Anything else (the store down, a lost connection) leaves the batch in the stream to retry."""

metadata = sa.MetaData()
jobs_table = sa.Table(
    "visionq_job_history", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("code", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("queued_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker", sa.String(255)),
    sa.Column("model_version", sa.String(255)),
    sa.Column("submitter", sa.String(64)),
    sa.Column("options", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("blob", sa.Text),
    # Keyset pagination, newest first, unfiltered and per filter.
    sa.Index("ix_history_queued", "queued_at", "id"),
    sa.Index("ix_history_status", "status", "queued_at", "id"),
    sa.Index("ix_history_task", "task", "queued_at", "id"),
    sa.Index("ix_history_submitter", "submitter", "queued_at", "id"),
)
COLUMNS = [column.name for column in jobs_table.columns]
EXPORT_COLUMNS = ["id", "task", "status", "code", "error", "queued_at", "started_at",
                  "finished_at", "attempts", "worker", "model_version", "submitter", "result"]


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (it connects on first use); SQLite gets WAL,
    ``synchronous=NORMAL`` and a busy timeout (several API processes share the file)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):  # the installed driver is psycopg 3
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return sa.create_engine(url, pool_pre_ping=True)


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    task: str | None = None
    submitter: str | None = None
    since: float | None = None
    """``queued_at >= since`` (Unix time)."""
    until: float | None = None
    """``queued_at < until``."""
    owner: str | None = None
    """The tenant filter: only jobs this caller submitted (``api.security.Caller
    .owner_filter``), applied with ``submitter`` (a non-admin asking for another's gets
    nothing)."""


def record_from_fields(fields: dict[str, str]) -> dict[str, Any]:
    """A table row from a stream entry (the job id and its final Redis hash)."""
    def num(name: str) -> float | None:
        value = fields.get(name)
        return float(value) if value not in (None, "") else None

    result = fields.get("result")
    model_version = None
    if result:
        with contextlib.suppress(ValueError):
            parsed = json.loads(result)
            if isinstance(parsed, dict) and isinstance(parsed.get("model_version"), str):
                model_version = parsed["model_version"]
    return {
        "id": fields["id"], "task": fields.get("task") or "?",
        "status": fields.get("status") or "failed", "code": fields.get("code"),
        "error": fields.get("error"), "queued_at": num("queued_at") or 0.0,
        "started_at": num("started_at"), "finished_at": num("finished_at"),
        "attempts": int(float(fields.get("attempts") or 0)), "worker": fields.get("worker"),
        "model_version": model_version, "submitter": fields.get("submitter"),
        "options": fields.get("options"), "result": result, "blob": fields.get("blob"),
    }


def job_from_row(row: Any) -> Job:
    data = row._mapping
    return Job(
        id=data["id"], task=data["task"], status=data["status"], blob=data["blob"] or "",
        options=json.loads(data["options"]) if data["options"] else {},
        queued_at=data["queued_at"], started_at=data["started_at"],
        finished_at=data["finished_at"],
        result=json.loads(data["result"]) if data["result"] else None,
        error=data["error"], code=data["code"], worker=data["worker"],
        attempts=data["attempts"] or 0, submitter=data["submitter"])


class HistoryStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._ready = False
        self._ready_lock = threading.Lock()

    def _ensure(self) -> None:
        """Create the table on first use (not at start: the store may be down then)."""
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                if self.engine.dialect.name == "sqlite":
                    path = self.engine.url.database
                    if path and path != ":memory:":
                        Path(path).parent.mkdir(parents=True, exist_ok=True)
                try:
                    metadata.create_all(self.engine)
                except sa.exc.DBAPIError:  # another process created it at the same moment
                    metadata.create_all(self.engine)  # (or the store is down: raises again)
                self._ready = True

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert, ignoring ids already present (a redelivered entry), in one transaction."""
        if not rows:
            return
        self._ensure()
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            insert = postgresql_insert
        elif dialect == "sqlite":
            insert = sqlite_insert
        else:  # pragma: no cover - other databases: plain insert of the new ids
            with self.engine.begin() as conn:
                ids = [row["id"] for row in rows]
                present = set(conn.scalars(
                    sa.select(jobs_table.c.id).where(jobs_table.c.id.in_(ids))))
                new = [row for row in rows if row["id"] not in present]
                if new:
                    conn.execute(jobs_table.insert(), new)
            return
        unique = list({row["id"]: row for row in rows}.values())
        with self.engine.begin() as conn:
            conn.execute(insert(jobs_table).on_conflict_do_nothing(index_elements=["id"]),
                         unique)

    def get(self, job_id: str) -> Job | None:
        self._ensure()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)).first()
        return job_from_row(row) if row is not None else None

    @staticmethod
    def _where(filters: Filters) -> list[Any]:
        t = jobs_table.c
        clauses: list[Any] = []
        if filters.status is not None:
            clauses.append(t.status == filters.status)
        if filters.task is not None:
            clauses.append(t.task == filters.task)
        if filters.submitter is not None:
            clauses.append(t.submitter == filters.submitter)
        if filters.owner is not None:
            clauses.append(t.submitter == filters.owner)
        if filters.since is not None:
            clauses.append(t.queued_at >= filters.since)
        if filters.until is not None:
            clauses.append(t.queued_at < filters.until)
        return clauses

    def page(self, filters: Filters = Filters(), *, limit: int = 50,
             before: tuple[float, str] | None = None) -> list[Job]:
        """Newest first (``queued_at``, then id), strictly after the cursor ``before``: the
        ``(queued_at, id)`` of the last job of the previous page."""
        self._ensure()
        t = jobs_table.c
        query = sa.select(jobs_table).where(*self._where(filters))
        if before is not None:  # the first term bounds the index range scan; the OR alone
            query = query.where(t.queued_at <= before[0],  # makes SQLite scan from the top
                                sa.or_(t.queued_at < before[0], t.id < before[1]))
        query = query.order_by(t.queued_at.desc(), t.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [job_from_row(row) for row in conn.execute(query)]

    def iterate(self, filters: Filters = Filters(), batch: int = 1000) -> Iterator[Job]:
        """Every matching job, newest first, one keyset page at a time (for exports)."""
        before: tuple[float, str] | None = None
        while True:
            jobs = self.page(filters, limit=batch, before=before)
            yield from jobs
            if len(jobs) < batch:
                return
            last = jobs[-1]
            before = (last.queued_at or 0.0, last.id)

    def count(self) -> int:
        self._ensure()
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(jobs_table)) or 0)

    def prune(self, *, max_age_s: float | None, max_rows: int | None,
              now: float | None = None, batch: int = PRUNE_BATCH) -> int:
        """Delete rows queued before ``now - max_age_s`` and the oldest beyond ``max_rows``,
        ``batch`` rows per statement (each its own transaction).  Rows deleted."""
        self._ensure()
        t = jobs_table.c
        deleted = 0

        def delete_oldest(condition: Any, at_most: int) -> int:
            ids = sa.select(t.id).where(condition).order_by(t.queued_at, t.id).limit(at_most)
            with self.engine.begin() as conn:
                return conn.execute(jobs_table.delete().where(
                    t.id.in_(ids.scalar_subquery()))).rowcount or 0

        if max_age_s:
            cutoff = (now if now is not None else time.time()) - max_age_s
            while True:
                gone = delete_oldest(t.queued_at < cutoff, batch)
                deleted += gone
                if gone < batch:
                    break
        if max_rows:
            excess = self.count() - max_rows
            while excess > 0:
                gone = delete_oldest(sa.true(), min(batch, excess))
                if gone == 0:
                    break
                deleted += gone
                excess -= gone
        return deleted

    def dispose(self) -> None:
        self.engine.dispose()


def group_name(url: str) -> str:
    """One consumer group per store: every store gets every record, and the API processes
    writing to the same store share the work without duplicates."""
    return "history-" + hashlib.sha256(url.encode()).hexdigest()[:12]


def _stream_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class HistoryWriter:
    """Drains ``visionq:history`` into a ``HistoryStore``: ``start()`` runs it in a daemon
    thread, ``run_once()`` is one step (for tests).

    The stream is written by the finishing script on the job's queue's Redis; sharded by
    queue (``visionq.shards``) the API runs one writer per Redis (``api.create_app``), all
    into the same store, retention applied by the main Redis's writer only."""

    def __init__(self, client: redis.Redis, store: HistoryStore, *,
                 max_age_s: float | None = None, max_rows: int | None = None,
                 batch: int = BATCH, block_ms: int = BLOCK_MS,
                 claim_idle_ms: int = CLAIM_IDLE_MS,
                 prune_interval_s: float = PRUNE_INTERVAL_S,
                 gather_s: float = GATHER_S,
                 on_dead_letter: Callable[[int], None] | None = None) -> None:
        """``on_dead_letter(n)``: ``n`` rows were set aside (the API passes its
        ``visionq_history_dead_letters_total`` counter, ``api.metrics.count_dead_letters``;
        default: only ``dead_letters`` counts them)."""
        self._client = client
        self.store = store
        self.group = group_name(store.url)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._max_age_s, self._max_rows = max_age_s, max_rows
        self._batch, self._block_ms, self._claim_idle_ms = batch, block_ms, claim_idle_ms
        self._prune_interval_s = prune_interval_s
        self._gather_s = gather_s
        self._own_pending = True
        """Entries of ours may be pending (at start, and after a failed write)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._group_ready = False
        self._next_claim = 0.0
        self._next_trim = 0.0
        self._next_prune = time.monotonic() + min(60.0, prune_interval_s)
        self.written = 0
        """Entries written and acknowledged by this writer (tests, logs)."""
        self.dead_letters = 0
        """Entries the store refused, set aside in ``DEAD_LETTER_KEY`` by this writer."""
        self._on_dead_letter = on_dead_letter or (lambda n: None)

    # -- the loop ----------------------------------------------------------------------
    def start(self) -> HistoryWriter:
        self._thread = threading.Thread(target=self._run, name="visionq-history",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                written = self.run_once()
                self.maintain()
                delay = 0.5
                if 0 < written < self._batch:
                    self._stop.wait(self._gather_s)  # let a trickle gather into a batch
            except Exception as exc:  # the store or Redis is down: keep the entries, retry
                log.warning("job history: %s; retrying in %.1f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:  # from the start of the stream: records written before the first writer ran
            self._client.xgroup_create(HISTORY_STREAM_KEY, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def run_once(self, block: bool = True) -> int:
        """Write one batch: first this consumer's own pending entries (a failed write),
        then stale entries of other consumers, then new ones.  Entries written."""
        try:
            return self._run_once(block)
        except Exception:
            self._own_pending = True  # read back what this consumer got and did not write
            raise

    def _run_once(self, block: bool) -> int:
        self._ensure_group()
        entries = []
        if self._own_pending:  # ours, delivered but not acknowledged (a failed write)
            entries = self._read("0", block=False)
            self._own_pending = bool(entries)
        if not entries and time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + CLAIM_EVERY_S
            reply = self._client.xautoclaim(HISTORY_STREAM_KEY, self.group, self.consumer,
                                            self._claim_idle_ms, "0-0", count=self._batch)
            entries = [entry for entry in reply[1] if entry and entry[1]]
        if not entries:
            entries = self._read(">", block=block)
        if not entries:
            return 0
        return self._write(entries)

    def _read(self, start: str, block: bool) -> list[tuple[bytes, dict[bytes, bytes]]]:
        try:
            reply = self._client.xreadgroup(self.group, self.consumer,
                                            {HISTORY_STREAM_KEY: start}, count=self._batch,
                                            block=self._block_ms if block else None)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False  # the stream was deleted (FLUSHDB): create it again
            return []
        if not reply:
            return []
        return [(entry_id, fields) for entry_id, fields in reply[0][1] if fields]

    def _write(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        rows: list[tuple[bytes, dict[str, str], dict[str, Any]]] = []
        for entry_id, fields in entries:
            decoded = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
            try:
                rows.append((entry_id, decoded, record_from_fields(decoded)))
            except (KeyError, ValueError) as exc:  # never block the stream on one entry
                log.error("job history: skipping a malformed entry %r: %s", decoded, exc)
        refused: list[tuple[bytes, dict[str, str], Exception]] = []
        try:
            self.store.insert([row for _, _, row in rows])  # raises while the store is down:
        except ROW_ERRORS:  # nothing acknowledged.  A row refused: find it, one by one
            refused = self._insert_one_by_one(rows)
        ids = [entry_id for entry_id, _ in entries]
        pipe = self._client.pipeline(transaction=True)
        for entry_id, fields, exc in refused:
            pipe.lpush(DEAD_LETTER_KEY, json.dumps({
                "entry_id": entry_id.decode(), "group": self.group, "fields": fields,
                "error": f"{type(exc).__name__}: {exc}"[:2000], "at": time.time()}))
        if refused:
            pipe.ltrim(DEAD_LETTER_KEY, 0, DEAD_LETTER_MAX - 1)
        pipe.xack(HISTORY_STREAM_KEY, self.group, *ids)
        pipe.execute()
        if refused:
            self.dead_letters += len(refused)
            self._on_dead_letter(len(refused))
        self.written += len(entries) - len(refused)
        return len(entries)

    def _insert_one_by_one(self, rows: list[tuple[bytes, dict[str, str], dict[str, Any]]]
                           ) -> list[tuple[bytes, dict[str, str], Exception]]:
        """Insert each row in its own transaction; the rows the store refuses (a data
        error), with their error.  A store error of any other kind propagates (the whole
        batch stays pending and is retried: the rows already in are ignored then)."""
        refused = []
        for entry_id, fields, row in rows:
            try:
                self.store.insert([row])
            except ROW_ERRORS as exc:
                log.error("job history: the store refused job %s (stream entry %s), set "
                          "aside in %s: %s", row.get("id"), entry_id.decode(),
                          DEAD_LETTER_KEY, str(exc).splitlines()[0] if str(exc) else exc)
                refused.append((entry_id, fields, exc))
        return refused

    # -- upkeep ------------------------------------------------------------------------
    def maintain(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next_trim:
            self._next_trim = now + TRIM_EVERY_S
            self.trim()
        if force or now >= self._next_prune:
            self._next_prune = now + self._prune_interval_s
            self.prune()

    def trim(self) -> None:
        """Drop the stream entries that every consumer group has acknowledged (a group that
        is never read again is bounded by the stream's MAXLEN instead)."""
        floors: list[tuple[int, int]] = []
        for group in self._client.xinfo_groups(HISTORY_STREAM_KEY):
            if int(group.get("pending") or 0) > 0:
                summary = self._client.xpending(HISTORY_STREAM_KEY, group["name"])
                if summary.get("min"):
                    floors.append(_stream_id(summary["min"]))
                    continue
            last = group.get("last-delivered-id")
            if last:
                ms, seq = _stream_id(last)
                floors.append((ms, seq + 1))  # everything up to and including it is done
        if floors:
            ms, seq = min(floors)
            self._client.xtrim(HISTORY_STREAM_KEY, minid=f"{ms}-{seq}", approximate=False)

    def prune(self) -> int:
        """Apply retention, one process at a time (a lock in Redis)."""
        if not self._max_age_s and not self._max_rows:
            return 0
        lock = f"{HISTORY_PRUNE_LOCK_KEY}:{self.group}"
        hold_s = max(1, int(self._prune_interval_s))
        if not self._client.set(lock, self.consumer, nx=True, ex=hold_s):
            return 0
        deleted = self.store.prune(max_age_s=self._max_age_s, max_rows=self._max_rows)
        if deleted:
            log.info("job history: retention deleted %d rows", deleted)
        return deleted
