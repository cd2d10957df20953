"""The request log: every `RequestRecord` in a SQLite file, written off the request path.

`RequestLog.observe` is the observer the proxy calls once per request, on its
event loop. It only appends the record to a bounded in-memory queue (when the
queue is full the oldest record is dropped and counted) and wakes the writer:
it never blocks on I/O and never awaits. A background *thread* (not the event
loop: a slow disk must never slow a request) takes what has queued up and
inserts it in one transaction, and every ``prune_interval`` seconds (or after
a tenth of ``max_requests`` new rows) deletes rows older than ``max_age_days``
and all but the newest ``max_requests`` requests.

No prompt or answer text is stored: a record carries none. Rows hold the
routing decision (plan and skipped candidates with their reasons, as JSON),
each attempt and how it ended, timings, token counts and the outcome::

    served        a backend answered in full
    failed        every attempt failed (or the plan was empty)
    client_error  the client's own error (a 4xx other than 429), not failed over
    cut           the stream broke after it had started
    cancelled     the client went away before the answer was complete

Reads (`recent`, `get`, `usage_since`, `latency_series`) use their own
connection and may be called from any thread; on an event loop, call them
through ``asyncio.to_thread`` (they touch the disk).

`attach` hangs a log on a `Runtime` (``rt.log``, plus the observer); `setup`
does that for an aiohttp app from the config's ``log:`` section, seeds the
usage window of ``usage_based`` routing from the log (`seed_usage`), and closes
the log when the app shuts down.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .config import APP_NAME, LogSettings
from .types import RequestRecord

if TYPE_CHECKING:
    from aiohttp import web

    from .health import Health
    from .runtime import Runtime

__all__ = [
    "FILENAME",
    "OUTCOMES",
    "RequestLog",
    "UsageBucket",
    "attach",
    "attached",
    "default_path",
    "detach",
    "outcome_of",
    "path_for",
    "seed_usage",
    "setup",
]

log = logging.getLogger("traywire")

FILENAME: Final = "requests.sqlite3"
OUTCOMES: Final = ("served", "failed", "client_error", "cut", "cancelled")
SCHEMA_VERSION: Final = 1
# recent() never returns more rows than this in one call.
MAX_PAGE: Final = 1000
# A request never lasts longer than this (the longest total timeout is far
# shorter): bounds the scan for requests that *finished* after a time.
_LONGEST_REQUEST_S: Final = 86400.0

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    dialect TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    requested TEXT NOT NULL,
    capability TEXT,
    strategy TEXT,
    route TEXT,
    preference TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    served_model TEXT,
    served_backend TEXT,
    status INTEGER NOT NULL,
    ttfb_ms REAL,
    total_ms REAL NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    error TEXT NOT NULL,
    cut INTEGER NOT NULL,
    client_gone INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ({", ".join(repr(o) for o in OUTCOMES)})),
    plan TEXT NOT NULL,
    skipped TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    request_id INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT NOT NULL,
    kind TEXT NOT NULL,
    ms REAL NOT NULL,
    PRIMARY KEY (request_id, n)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE INDEX IF NOT EXISTS requests_backend ON requests (served_backend, ts);
CREATE INDEX IF NOT EXISTS requests_capability ON requests (capability, ts);
CREATE INDEX IF NOT EXISTS requests_outcome ON requests (outcome, ts);
CREATE INDEX IF NOT EXISTS attempts_backend ON attempts (backend, request_id);
"""

_REQUEST_COLUMNS: Final = (
    "ts",
    "dialect",
    "endpoint",
    "requested",
    "capability",
    "strategy",
    "route",
    "preference",
    "prompt_tokens",
    "stream",
    "served_model",
    "served_backend",
    "status",
    "ttfb_ms",
    "total_ms",
    "tokens_in",
    "tokens_out",
    "error",
    "cut",
    "client_gone",
    "outcome",
    "plan",
    "skipped",
)
_INSERT_REQUEST = (
    f"INSERT INTO requests ({', '.join(_REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _REQUEST_COLUMNS)})"
)
_INSERT_ATTEMPT = (
    "INSERT INTO attempts (request_id, n, model, backend, outcome, error, kind, ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_BOOLEAN_COLUMNS: Final = ("stream", "cut", "client_gone")


# --------------------------------------------------------------------------- helpers


def outcome_of(rec: RequestRecord) -> str:
    """The request's outcome, one of `OUTCOMES` (see the module docstring)."""
    if rec.client_gone:
        return "cancelled"
    if rec.cut:
        return "cut"
    if rec.served_backend is not None:
        return "served"
    last_kind = rec.attempts[-1].kind if rec.attempts else ""
    if last_kind == "client_error" or (400 <= rec.status < 500 and rec.status != 429):
        return "client_error"
    return "failed"


def default_path() -> Path:
    """``requests.sqlite3`` in the platformdirs data dir."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / FILENAME


def path_for(settings: LogSettings) -> Path:
    return Path(settings.path).expanduser() if settings.path else default_path()


def _row(rec: RequestRecord) -> tuple[object, ...]:
    return (
        rec.ts,
        rec.dialect,
        rec.endpoint,
        rec.requested,
        rec.capability,
        rec.strategy,
        rec.route,
        rec.preference,
        rec.prompt_tokens,
        int(rec.stream),
        rec.served_model,
        rec.served_backend,
        rec.status,
        rec.ttfb_ms,
        rec.total_ms,
        rec.tokens_in,
        rec.tokens_out,
        rec.error,
        int(rec.cut),
        int(rec.client_gone),
        outcome_of(rec),
        _json_of(rec.plan),
        _json_of(rec.skipped),
    )


_JSON_CACHE: dict[tuple[Any, ...], str] = {}


def _json_of(items: tuple[Any, ...]) -> str:
    """JSON of a plan or skip list. Plans repeat (same route, same state), so the
    text is cached by value; the cache is small and cleared when full."""
    text = _JSON_CACHE.get(items)
    if text is None:
        text = json.dumps([i._asdict() for i in items], separators=(",", ":"))
        if len(_JSON_CACHE) >= 256:
            _JSON_CACHE.clear()
        _JSON_CACHE[items] = text
    return text


def _percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence."""
    if not ordered:
        return None
    k = max(0, math.ceil(p * len(ordered)) - 1)
    return ordered[min(k, len(ordered) - 1)]


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


class UsageBucket(NamedTuple):
    """Tokens served for one public model name, finishing by wall time ``t``."""

    model: str
    t: float
    tokens: int


# --------------------------------------------------------------------------- the log


class RequestLog:
    """A SQLite request log with a background writer thread.

    Args:
        path: The SQLite file (its directory is created).
        max_age_days: Rows older than this are deleted.
        max_requests: At most this many requests are kept (the oldest go first).
        queue_size: Records waiting for the writer; beyond it the oldest is dropped.
        prune_interval: Seconds between retention passes.
        clock: Wall-clock seconds (``time.time``), for retention; tests pass their own.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_age_days: float = 30.0,
        max_requests: int = 50000,
        queue_size: int = 10000,
        prune_interval: float = 60.0,
        batch_size: int = 1000,
        linger: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not max_age_days > 0:
            raise ValueError("max_age_days must be > 0")
        if max_requests < 1 or queue_size < 1 or batch_size < 1:
            raise ValueError("max_requests, queue_size and batch_size must be >= 1")
        if not prune_interval > 0:
            raise ValueError("prune_interval must be > 0")
        self.path = Path(path)
        self.max_age_s = float(max_age_days) * 86400.0
        self.max_requests = int(max_requests)
        self.queue_size = int(queue_size)
        self.prune_interval = float(prune_interval)
        self.batch_size = int(batch_size)
        # seconds the writer waits after the first record, to batch the rest
        self.linger = float(linger)
        self._clock = clock
        # Prune early when this many rows went in since the last pass.
        self._prune_every = max(1, self.max_requests // 10)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._reader = self._connect(check_same_thread=False)
        try:
            self._create_schema(self._reader)
        except BaseException:
            self._reader.close()
            raise
        self._read_lock = threading.Lock()

        # Queue state, guarded by _cond. Nothing slow ever happens under it.
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[int, RequestRecord]] = collections.deque()
        self._seq = 0  # sequence number of the last record queued
        self._done_seq = 0  # every record up to this one is written (or dropped)
        self.dropped = 0  # records dropped because the queue was full (or after close)
        self.written = 0  # records committed to the file
        self.failed = 0  # records lost to a database error
        self.pruned = 0  # rows deleted by retention
        self._closing = False
        self._prune_now = False
        self._complained_at = -math.inf

        self._wake = threading.Event()
        # flush()/close()/prune_soon() set it to cut the linger short
        self._urgent = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traywire-request-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: LogSettings, **kwargs: Any) -> RequestLog:
        return cls(
            path_for(settings),
            max_age_days=settings.max_age_days,
            max_requests=settings.max_requests,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"<RequestLog {self.path} written={self.written} dropped={self.dropped}>"

    # ------------------------------------------------------------------ writing

    def observe(self, record: RequestRecord) -> None:
        """Queue ``record`` for the writer. Never blocks on I/O, never raises for a full queue."""
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._seq += 1
            self._queue.append((self._seq, record))
        if not self._wake.is_set():
            self._wake.set()

    @property
    def queued(self) -> int:
        """Records waiting for the writer."""
        return len(self._queue)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything queued so far is written. False on timeout."""
        with self._cond:
            target = self._seq
            if self._done_seq >= target:
                return True
        self._urgent.set()
        self._wake.set()
        with self._cond:
            return self._cond.wait_for(lambda: self._done_seq >= target, timeout)

    def prune_soon(self) -> None:
        """Ask the writer for a retention pass now (it runs them periodically anyway)."""
        self._prune_now = True
        self._urgent.set()
        self._wake.set()

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, stop the writer thread and close the file. Idempotent."""
        with self._cond:
            self._closing = True
        self._urgent.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("request log writer did not finish within %ss", timeout)
        with self._read_lock:
            self._reader.close()

    def stats(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "queued": self.queued,
            "written": self.written,
            "dropped": self.dropped,
            "failed": self.failed,
            "pruned": self.pruned,
        }

    # ------------------------------------------------------------------ reading

    def recent(
        self,
        limit: int = 50,
        before_id: int | None = None,
        backend: str | None = None,
        capability: str | None = None,
        outcome: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest requests first, each with its ``attempts``.

        ``before_id`` pages backwards (ids only grow). ``backend`` matches the
        backend that served and any backend attempted. ``limit`` is capped at
        `MAX_PAGE`.
        """
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of: {', '.join(OUTCOMES)}")
        where: list[str] = []
        args: list[object] = []
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        if backend is not None:
            where.append(
                "(served_backend = ? OR id IN (SELECT request_id FROM attempts WHERE backend = ?))"
            )
            args += [backend, backend]
        if capability is not None:
            where.append("capability = ?")
            args.append(capability)
        if outcome is not None:
            where.append("outcome = ?")
            args.append(outcome)
        sql = "SELECT * FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(min(limit, MAX_PAGE))
        with self._read_lock:
            rows = [dict(r) for r in self._reader.execute(sql, args)]
            self._add_attempts(rows)
        return [self._decode(r) for r in rows]

    def get(self, request_id: int) -> dict[str, Any] | None:
        """One request with its attempts, or None."""
        with self._read_lock:
            rows = [
                dict(r)
                for r in self._reader.execute("SELECT * FROM requests WHERE id = ?", (request_id,))
            ]
            self._add_attempts(rows)
        return self._decode(rows[0]) if rows else None

    def count(self) -> int:
        """How many requests the file holds."""
        with self._read_lock:
            (n,) = self._reader.execute("SELECT COUNT(*) FROM requests").fetchone()
        return int(n)

    def usage_since(self, ts: float) -> dict[str, int]:
        """Tokens (prompt + reply) per served public model name, for requests that
        finished at or after wall time ``ts``."""
        out: dict[str, int] = {}
        for b in self.usage_buckets(ts, math.inf):
            out[b.model] = out.get(b.model, 0) + b.tokens
        return out

    def usage_buckets(self, since: float, bucket_s: float) -> list[UsageBucket]:
        """Token usage since ``since`` per model and ``bucket_s`` bucket of finishing
        time, oldest first; each bucket's ``t`` is the latest finish in it."""
        if not bucket_s > 0:
            raise ValueError("bucket_s must be > 0")
        done = "(ts + total_ms / 1000.0)"
        group = (
            f"served_model, CAST({done} / ? AS INTEGER)"
            if math.isfinite(bucket_s)
            else "served_model"
        )
        sql = (
            f"SELECT served_model, MAX({done}) AS t, SUM(tokens_in + tokens_out) AS tokens "
            f"FROM requests WHERE served_model IS NOT NULL AND ts >= ? AND {done} >= ? "
            f"AND tokens_in + tokens_out > 0 GROUP BY {group} ORDER BY t"
        )
        args: list[object] = [since - _LONGEST_REQUEST_S, since]
        if math.isfinite(bucket_s):
            args.append(bucket_s)
        with self._read_lock:
            rows = self._reader.execute(sql, args).fetchall()
        return [UsageBucket(str(m), float(t), int(n)) for m, t, n in rows]

    def latency_series(
        self,
        backend: str,
        since: float,
        bucket_s: float = 60.0,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """Per-bucket latency of the requests ``backend`` served, from ``since`` to
        ``until`` (default: now), for a dashboard chart.

        One entry per bucket (``t`` = bucket start, wall seconds, aligned to
        multiples of ``bucket_s``), empty buckets included: ``count``,
        ``avg_ms``/``p50_ms``/``p95_ms``/``max_ms`` of the total time,
        ``ttfb_avg_ms``/``ttfb_p50_ms``, and ``failures`` (failed attempts on the
        backend, whichever request they belonged to).
        """
        if not bucket_s > 0:
            raise ValueError("bucket_s must be > 0")
        end = self._clock() if until is None else until
        first = math.floor(since / bucket_s)
        last = math.floor(end / bucket_s)
        if last - first > 10000:
            raise ValueError("too many buckets; use a larger bucket_s")
        with self._read_lock:
            served = self._reader.execute(
                "SELECT ts, total_ms, ttfb_ms FROM requests "
                "WHERE served_backend = ? AND ts >= ? AND ts <= ?",
                (backend, since, end),
            ).fetchall()
            failed = self._reader.execute(
                "SELECT r.ts FROM attempts a JOIN requests r ON r.id = a.request_id "
                "WHERE a.backend = ? AND a.outcome = 'failed' AND r.ts >= ? AND r.ts <= ?",
                (backend, since, end),
            ).fetchall()
        totals: dict[int, list[float]] = collections.defaultdict(list)
        ttfbs: dict[int, list[float]] = collections.defaultdict(list)
        failures: collections.Counter[int] = collections.Counter()
        for ts, total_ms, ttfb_ms in served:
            idx = math.floor(ts / bucket_s)
            totals[idx].append(float(total_ms))
            if ttfb_ms is not None:
                ttfbs[idx].append(float(ttfb_ms))
        for (ts,) in failed:
            failures[math.floor(ts / bucket_s)] += 1
        out: list[dict[str, Any]] = []
        for idx in range(first, last + 1):
            tot = sorted(totals.get(idx, ()))
            tt = sorted(ttfbs.get(idx, ()))
            out.append(
                {
                    "t": idx * bucket_s,
                    "count": len(tot),
                    "avg_ms": _r(sum(tot) / len(tot)) if tot else None,
                    "p50_ms": _r(_percentile(tot, 0.5)),
                    "p95_ms": _r(_percentile(tot, 0.95)),
                    "max_ms": _r(tot[-1]) if tot else None,
                    "ttfb_avg_ms": _r(sum(tt) / len(tt)) if tt else None,
                    "ttfb_p50_ms": _r(_percentile(tt, 0.5)),
                    "failures": failures.get(idx, 0),
                }
            )
        return out

    def _add_attempts(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        by_id: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
        for r in rows:
            r["attempts"] = by_id[r["id"]]
        ids = list(by_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for a in self._reader.execute(
                "SELECT n, model, backend, outcome, error, kind, ms, request_id FROM attempts "
                f"WHERE request_id IN ({marks}) ORDER BY request_id, n",
                chunk,
            ):
                entry = dict(a)
                by_id[entry.pop("request_id")].append(entry)

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for key in _BOOLEAN_COLUMNS:
            row[key] = bool(row[key])
        row["plan"] = json.loads(row["plan"])
        row["skipped"] = json.loads(row["skipped"])
        return row

    # ------------------------------------------------------------------ the writer thread

    def _connect(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=10.0,
            isolation_level=None,  # explicit BEGIN/COMMIT
            check_same_thread=check_same_thread,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        # auto_vacuum only takes effect before the first table exists: deleted
        # rows then give their pages back with incremental_vacuum.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_SCHEMA)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == 0:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            log.warning(
                "request log schema version %s (this traywire writes %s)", version, SCHEMA_VERSION
            )

    def _take(self) -> list[tuple[int, RequestRecord]]:
        with self._cond:
            n = min(len(self._queue), self.batch_size)
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:
            log.exception("request log: cannot open %s; requests will not be logged", self.path)
            if conn is not None:
                conn.close()
            conn = None
        next_prune = time.monotonic()
        since_prune = 0
        try:
            while True:
                now = time.monotonic()
                self._wake.wait(max(0.0, min(next_prune - now, self.prune_interval)))
                # Let records gather so one transaction writes many: the
                # request path then pays a deque append, not a thread wake-up.
                if self.linger > 0 and not self._urgent.is_set():
                    self._urgent.wait(self.linger)
                self._urgent.clear()
                self._wake.clear()
                while True:
                    batch = self._take()
                    if batch:
                        ok = False
                        if conn is not None:
                            try:
                                self._write_batch(conn, [rec for _, rec in batch])
                                ok = True
                            except Exception:  # a bad record or a bad disk: never kill the writer
                                self._complain("cannot write %d record(s)", len(batch))
                        with self._cond:
                            if ok:
                                self.written += len(batch)
                                since_prune += len(batch)
                            else:
                                self.failed += len(batch)
                            self._done_seq = batch[-1][0]
                            self._cond.notify_all()
                    # Retention runs between batches too: a queue that never
                    # empties must not starve it.
                    now = time.monotonic()
                    due = now >= next_prune or since_prune >= self._prune_every or self._prune_now
                    if conn is not None and due:
                        self._prune_now = False
                        try:
                            self.pruned += self._prune(conn, self._clock())
                        except Exception:
                            self._complain("retention pass failed")
                        since_prune = 0
                        next_prune = now + self.prune_interval
                    if not batch:
                        break
                with self._cond:
                    if self._closing and not self._queue:
                        break
        finally:
            if conn is not None:
                conn.close()
            with self._cond:
                # Nothing will write what is left (or comes later): do not let
                # flush() wait for it.
                self._closing = True
                self.failed += len(self._queue)
                self._queue.clear()
                self._done_seq = self._seq
                self._cond.notify_all()

    def _complain(self, what: str, *args: object) -> None:
        """Log a writer error with its traceback, at most once a minute."""
        now = time.monotonic()
        if now - self._complained_at >= 60.0:
            self._complained_at = now
            log.exception("request log %s: " + what, self.path, *args)

    def _write_batch(self, conn: sqlite3.Connection, records: Sequence[RequestRecord]) -> None:
        """Insert ``records`` and their attempts in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            # One statement per table for the whole batch. Ids are consecutive:
            # this thread is the only writer and the batch is one transaction.
            conn.executemany(_INSERT_REQUEST, [_row(rec) for rec in records])
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            first = last - len(records) + 1
            conn.executemany(
                _INSERT_ATTEMPT,
                [
                    (rid, n, a.model, a.backend, a.outcome, a.error, a.kind, a.ms)
                    for rid, rec in enumerate(records, first)
                    for n, a in enumerate(rec.attempts, 1)
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _prune(self, conn: sqlite3.Connection, now: float) -> int:
        """Delete rows past the age and count bounds; returns how many requests went."""
        cutoff = now - self.max_age_s
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "DELETE FROM attempts WHERE request_id IN (SELECT id FROM requests WHERE ts < ?)",
                (cutoff,),
            )
            deleted = conn.execute("DELETE FROM requests WHERE ts < ?", (cutoff,)).rowcount
            row = conn.execute(
                "SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET ?", (self.max_requests,)
            ).fetchone()
            if row is not None:
                conn.execute("DELETE FROM attempts WHERE request_id <= ?", (row[0],))
                deleted += conn.execute("DELETE FROM requests WHERE id <= ?", (row[0],)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if deleted:
            conn.execute("PRAGMA incremental_vacuum")
        return max(0, deleted)


# --------------------------------------------------------------------------- wiring


def attach(rt: Runtime, request_log: RequestLog) -> None:
    """Make ``request_log`` the runtime's log (``rt.log``) and one of its observers."""
    rt.log = request_log  # type: ignore[attr-defined]
    rt.observers.append(request_log.observe)


def attached(rt: Runtime) -> RequestLog | None:
    """The log attached to ``rt``, if any."""
    found = getattr(rt, "log", None)
    return found if isinstance(found, RequestLog) else None


def detach(rt: Runtime) -> RequestLog | None:
    """Undo `attach`; returns the log that was attached."""
    found = attached(rt)
    if found is not None:
        if found.observe in rt.observers:
            rt.observers.remove(found.observe)
        rt.log = None  # type: ignore[attr-defined]
    return found


def seed_usage(
    health: Health, request_log: RequestLog, now_wall: float, now_mono: float, window_s: float
) -> int:
    """Feed the last ``window_s`` seconds of token usage from the log into
    ``health`` (so ``usage_based`` routing survives a restart). Each bucket is
    counted at the monotonic time matching when its requests finished, so it
    leaves the window when it would have had traywire kept running. Returns the
    number of tokens seeded. Call it on the thread that owns ``health``.
    """
    total = 0
    # oldest first, as Health.add_usage expects
    for b in request_log.usage_buckets(now_wall - window_s, health.usage_bucket_s):
        health.add_usage(b.model, now_mono - max(0.0, now_wall - b.t), b.tokens)
        total += b.tokens
    return total


def setup(app: web.Application, rt: Runtime) -> None:
    """Open the request log the config asks for when ``app`` starts, attach it to
    ``rt``, seed the usage window from it, and close it when ``app`` shuts down
    (after in-flight requests are done). A log already attached to ``rt`` is
    left alone (and not closed). A log that cannot be opened is reported and
    the proxy runs without it."""

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        owned: RequestLog | None = None
        settings = rt.cfg.log
        if attached(rt) is None and settings.enabled:
            try:
                owned = await asyncio.to_thread(RequestLog.from_settings, settings)
            except (OSError, sqlite3.Error) as exc:
                log.warning("request log disabled: cannot open %s: %s", path_for(settings), exc)
            else:
                try:
                    # Before the listener opens: no request waits for this read.
                    seed_usage(
                        rt.health,
                        owned,
                        time.time(),
                        time.monotonic(),
                        rt.cfg.health.usage_window,
                    )
                except sqlite3.Error as exc:
                    log.warning("request log: cannot read past usage: %s", exc)
                attach(rt, owned)
        try:
            yield
        finally:
            if owned is not None:
                detach(rt)
                await asyncio.to_thread(owned.close)

    app.cleanup_ctx.append(lifecycle)
