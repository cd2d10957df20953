"""The request log: every `RequestRecord` in a SQLite file, written off the request path
and out of the proxy's process.

`RequestLog.observe` is the observer the proxy calls once per request, on its
event loop. It turns the record into a row of plain values (the plan and the
skipped candidates as JSON, cached by value: plans repeat), marshals it to
bytes (nothing for the garbage collector to track while it waits; the feeder
splices the bytes into a frame without touching the values again) and appends
that to a bounded in-memory queue (when the queue is full the oldest row is
dropped and counted). About 2 µs; it never blocks on I/O, never awaits and
never raises.

The SQLite writing happens in a child process (`traywire.reqlog_writer`), so
that neither its CPU nor its GIL hand-offs (sqlite3 releases and retakes the
GIL for every row) land on the proxy. A small *feeder* thread in the proxy
process sleeps until a row is queued, lets rows gather for ``linger`` seconds,
then sends up to ``batch_size`` of them to the child in ONE `marshal` frame
(spliced from the rows' bytes, see `reqlog_writer.rows_frame`) over a pipe
and waits (blocked in a read, without the GIL) for the child's answer: the
child inserts them in one transaction and says how it went. Only then are
they counted ``written`` and does `flush` see them done, so `flush` waits for
the child's acknowledgement. The feeder also asks the child for a
retention pass every ``prune_interval`` seconds (or after a tenth of
``max_requests`` new rows): rows older than ``max_age_days`` and all but the
newest ``max_requests`` requests go. The retention clock is read in this
process (``clock``), and sent along.

The feeder starts the child when it first has work for it (the retention
pass it runs just after the log opens, or the first batch), so opening the log
costs no more than before: the ~20 ms the child takes to be ready are spent on
the feeder thread, while the proxy starts. It runs ``sys.executable -I -S -c
<bootstrap>``: the same interpreter, isolated, loading only the standard
library and `traywire.reqlog_writer` (about 16 MB of memory), in a session of
its own (POSIX) and ignoring SIGINT, so a terminal's Ctrl-C reaches only this
process, which then closes the log gracefully. The child exits when its stdin
ends, which the OS guarantees when this process exits or is killed, however.
`close` closes the pipe after the last batch and reaps the child (killing it if
it does not go), so it is never left behind. A plain subprocess rather than
`multiprocessing`: its 'spawn' start re-imports the parent's ``__main__`` (the
whole CLI, when traywire runs from its console script) in the child and starts
a resource-tracker process besides; here the child is one small process and
the pipe protocol is a dozen lines.

If the child cannot be started, or dies, the feeder writes in-process instead
(the pre-process design: the same `reqlog_writer.Writer`, on the feeder
thread) for the rest of the log's life, and says so once, as a warning. The
batch that was with a dead child is written in-process too: nothing that
could have been written is lost (a child that dies after committing a batch
but before answering makes that batch appear twice, a window of
microseconds). Frozen builds (PyInstaller: ``sys.executable`` is the app, not
a Python) use the in-process writer; ``writer="thread"`` asks for it anywhere.

No prompt or answer text is stored: a record carries none. Rows hold the
routing decision (plan and skipped candidates with their reasons, as JSON),
each attempt and how it ended, timings, token counts and the outcome::

    served        a backend answered in full
    failed        every attempt failed (or the plan was empty)
    client_error  the client's own error (a 4xx other than 429), not failed over
    cut           the stream broke after it had started
    cancelled     the client went away before the answer was complete

Reads (`recent`, `get`, `count`, `usage_since`, `usage_buckets`,
`latency_series`) stay in this process, on their own connection (WAL mode
lets them read while the child writes), and may be called from any thread; on
an event loop, call them through ``asyncio.to_thread`` (they touch the disk).

`attach` hangs a log on a `Runtime` (``rt.log``, plus the observer); `setup`
does that for an aiohttp app from the config's ``log:`` section, seeds the
usage window of ``usage_based`` routing from the log (`seed_usage`), and closes
the log when the app shuts down.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import marshal
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, NamedTuple

from ..config import APP_NAME, LogSettings
from ..types import RequestRecord
from . import reqlog_writer
from .reqlog_writer import Writer
from .reqlog_writer import dump_row as _dump_row

if TYPE_CHECKING:
    from aiohttp import web

    from ..proxy.health import Health
    from ..proxy.runtime import Runtime

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

_REQUEST_COLUMNS: Final = reqlog_writer.REQUEST_COLUMNS
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


def _row(rec: RequestRecord) -> tuple[Any, ...]:
    """The values the writer inserts for ``rec``, flat (see `reqlog_writer`):
    plain str/int/float/None, for `marshal`. Flat, because small nested tuples
    come and go through CPython's free list in a way that leaves the garbage
    collector's young-generation count one higher per call: a young collection
    every ~700 requests more, for nothing."""
    row: tuple[Any, ...] = (
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
    for a in rec.attempts:
        row += a  # (model, backend, outcome, error, kind, ms): ATTEMPT_FIELDS
    return row


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

WriterKind = Literal["process", "thread"]


class RequestLog:
    """A SQLite request log, written by a child process (see the module docstring).

    Args:
        path: The SQLite file (its directory is created).
        max_age_days: Rows older than this are deleted.
        max_requests: At most this many requests are kept (the oldest go first).
        queue_size: Records waiting for the writer; beyond it the oldest is dropped.
        prune_interval: Seconds between retention passes.
        batch_size: At most this many records go to the writer at once (one
            transaction).
        linger: Seconds the feeder lets records gather after the first one.
        clock: Wall-clock seconds (``time.time``), for retention; tests pass their own.
        writer: ``"process"``: a child process writes (the feeder thread does
            if none can be had); ``"thread"``: the feeder thread writes.
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
        writer: WriterKind = "process",
    ) -> None:
        if not max_age_days > 0:
            raise ValueError("max_age_days must be > 0")
        if max_requests < 1 or queue_size < 1 or batch_size < 1:
            raise ValueError("max_requests, queue_size and batch_size must be >= 1")
        if not prune_interval > 0:
            raise ValueError("prune_interval must be > 0")
        if writer not in ("process", "thread"):
            raise ValueError("writer must be 'process' or 'thread'")
        self.path = Path(path)
        self.max_age_s = float(max_age_days) * 86400.0
        self.max_requests = int(max_requests)
        self.queue_size = int(queue_size)
        self.prune_interval = float(prune_interval)
        self.batch_size = int(batch_size)
        # seconds the feeder waits after the first record, to batch the rest
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

        # Queue state, guarded by _lock (observe takes it bare: cheaper) and
        # _cond, its condition. Nothing slow ever happens under it.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: collections.deque[bytes] = collections.deque()  # marshalled rows
        self._seq = 0  # sequence number of the last record queued
        self._done_seq = 0  # every record up to this one is written (or dropped)
        self.dropped = 0  # records dropped because the queue was full (or after close)
        self.written = 0  # records committed to the file
        self.failed = 0  # records lost to a database error
        self.pruned = 0  # rows deleted by retention
        self.prune_passes = 0  # retention passes run
        self.in_flight = 0  # records with the writer, not answered for yet
        self._closing = False
        self._abandoned = False  # close() stopped waiting for the writer
        self._prune_now = False
        self._complained_at = -math.inf

        # The writer, used by the feeder thread only: a child process while
        # _mode is "process" (started on first use), else a Writer of its own.
        frozen = bool(getattr(sys, "frozen", False))  # sys.executable is no Python
        self._mode: WriterKind = "thread" if frozen else writer
        self._child: _WriterProcess | None = None
        self._local: Writer | None = None
        self._local_failed = False
        # how long the child took to start and open the file, once it has
        self.writer_start_ms: float | None = None

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
        """Queue ``record`` for the writer. Never blocks on I/O, never raises."""
        try:
            row = _dump_row(_row(record))
        except Exception:  # not a well-formed record: count it, never fail the request
            with self._lock:
                self.failed += 1
            return
        with self._lock:
            if self._closing:
                self.dropped += 1
                return
            queue = self._queue
            if len(queue) >= self.queue_size:
                queue.popleft()
                self.dropped += 1
            self._seq += 1
            queue.append(row)
        if not self._wake.is_set():
            self._wake.set()

    @property
    def queued(self) -> int:
        """Records waiting for the writer (not counting those it has)."""
        return len(self._queue)

    @property
    def writer(self) -> WriterKind:
        """Who writes: ``"process"`` (a child; started on first use) or ``"thread"``."""
        return self._mode

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id, while there is one."""
        child = self._child
        return None if child is None else child.pid

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything queued so far is written (the writer has said
        so) or lost. False on timeout."""
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
        """Write what is queued, stop the writer (thread and process) and close
        the file. Idempotent."""
        with self._cond:
            self._closing = True
        self._urgent.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("request log writer did not finish within %ss", timeout)
                # Stop waiting for a stuck child: what it had is lost (and counted).
                self._abandoned = True
                child = self._child
                if child is not None:
                    child.kill()
                self._thread.join(5.0)
        with self._read_lock:
            self._reader.close()

    def stats(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "queued": self.queued,
            "in_flight": self.in_flight,
            "written": self.written,
            "dropped": self.dropped,
            "failed": self.failed,
            "pruned": self.pruned,
            "prune_passes": self.prune_passes,
            "writer": self.writer,
            "writer_pid": self.writer_pid,
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

    # ------------------------------------------------------------------ the feeder thread

    def _connect(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        conn = reqlog_writer.connect(self.path, check_same_thread=check_same_thread)
        conn.row_factory = sqlite3.Row
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        # auto_vacuum only takes effect before the first table exists: deleted
        # rows then give their pages back with incremental_vacuum.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        # WAL: the reads here go on while the writer writes.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_SCHEMA)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == 0:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            log.warning(
                "request log schema version %s (this traywire writes %s)", version, SCHEMA_VERSION
            )

    def _take(self) -> tuple[list[bytes], int]:
        """Up to ``batch_size`` of the oldest rows, and the sequence number of the
        last (the queue always holds the newest ``len(queue)`` numbers)."""
        with self._cond:
            queue = self._queue
            n = min(len(queue), self.batch_size)
            taken: Sequence[bytes]
            if n == len(queue):
                taken, self._queue = queue, collections.deque()
            else:
                taken = [queue.popleft() for _ in range(n)]
            self.in_flight = n
            last = self._seq - len(self._queue)
        return list(taken), last

    def _run(self) -> None:
        next_prune = time.monotonic()
        since_prune = 0
        try:
            while not self._abandoned:
                now = time.monotonic()
                self._wake.wait(max(0.0, min(next_prune - now, self.prune_interval)))
                # Let records gather so one frame (one transaction) carries many:
                # the request path then pays a deque append, not a thread wake-up.
                if self.linger > 0 and not self._urgent.is_set():
                    self._urgent.wait(self.linger)
                self._urgent.clear()
                self._wake.clear()
                while not self._abandoned:
                    rows, last = self._take()
                    if rows:
                        answer = self._call(reqlog_writer.rows_frame(rows))
                        ok = answer is not None and answer[0] == "ok"
                        if answer is not None and not ok:
                            self._complain("cannot write %d record(s): %s", len(rows), answer[1])
                        with self._cond:
                            if ok:
                                self.written += len(rows)
                            else:
                                self.failed += len(rows)
                            self.in_flight = 0
                            self._done_seq = last
                            self._cond.notify_all()
                        if ok:
                            since_prune += len(rows)
                    # Retention runs between batches too: a queue that never
                    # empties must not starve it.
                    now = time.monotonic()
                    due = now >= next_prune or since_prune >= self._prune_every or self._prune_now
                    if due and not self._abandoned:
                        self._prune_now = False
                        answer = self._call(
                            marshal.dumps(("p", self._clock(), self.max_age_s, self.max_requests))
                        )
                        if answer is not None and answer[0] == "ok":
                            with self._cond:
                                self.pruned += int(answer[1])
                                self.prune_passes += 1
                        elif answer is not None:
                            self._complain("retention pass failed: %s", answer[1])
                        since_prune = 0
                        next_prune = now + self.prune_interval
                    if not rows:
                        break
                with self._cond:
                    if self._closing and not self._queue:
                        break
        except Exception:  # a bug here must not leave flush() waiting
            log.exception("request log %s: the feeder thread failed", self.path)
        finally:
            self._stop_writers()
            with self._cond:
                # Nothing will write what is left (or comes later): do not let
                # flush() wait for it.
                self._closing = True
                self.failed += len(self._queue) + self.in_flight
                self.in_flight = 0
                self._queue.clear()
                self._done_seq = self._seq
                self._cond.notify_all()

    def _call(self, command: bytes) -> tuple[str, Any] | None:
        """Run one writer command (marshalled, see `reqlog_writer`) in the child
        process, or here when there is none; its answer, or None if nothing can
        write."""
        if self._mode == "process":
            if self._child is None:
                self._start_child()
            child = self._child
            if child is not None:
                try:
                    return child.call(command)
                except _ChildGone as exc:
                    self._child = None
                    child.stop(0.0)
                    if self._abandoned:
                        return None
                    self._fall_back(f"the writer process {exc}")
        if self._abandoned:
            return None
        writer = self._local_writer()
        return None if writer is None else writer.handle(marshal.loads(command))

    def _start_child(self) -> None:
        t0 = time.perf_counter()
        try:
            popen = _launch_writer(self.path)
        except Exception as exc:  # no interpreter, no processes left, ...
            self._fall_back(f"cannot start the writer process: {exc!r}")
            return
        child = _WriterProcess(popen)
        self._child = child  # before it answers: close() may have to kill it
        try:
            child.hello()
        except _ChildGone as exc:
            self._child = None
            child.stop(1.0)
            self._fall_back(f"the writer process did not start: it {exc}")
            return
        self.writer_start_ms = (time.perf_counter() - t0) * 1e3
        log.debug(
            "request log %s: writer process %d ready in %.0f ms",
            self.path,
            child.pid,
            self.writer_start_ms,
        )

    def _fall_back(self, why: str) -> None:
        """From now on, write in this process (said once: the mode changes once)."""
        self._mode = "thread"
        if not self._abandoned:
            log.warning("request log %s: %s; writing in-process instead", self.path, why)

    def _local_writer(self) -> Writer | None:
        if self._local is None and not self._local_failed:
            try:
                self._local = Writer(self.path)
            except sqlite3.Error:
                self._local_failed = True
                log.exception("request log: cannot open %s; requests will not be logged", self.path)
        return self._local

    def _stop_writers(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            # EOF on its stdin: it has answered for everything, so it just exits.
            code = child.stop(0.0 if self._abandoned else 10.0)
            if code not in (0, None) and not self._abandoned:
                log.warning("request log writer process exited with code %s", code)
        if self._local is not None:
            self._local.close()
            self._local = None

    def _complain(self, what: str, *args: object) -> None:
        """Log a writer error, at most once a minute."""
        now = time.monotonic()
        if now - self._complained_at >= 60.0:
            self._complained_at = now
            log.warning("request log %s: " + what, self.path, *args)


# --------------------------------------------------------------------------- the writer process

_BOOTSTRAP: Final = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from traywire.observe.reqlog_writer import main; sys.exit(main(sys.argv[2:]))"
)


def _launch_writer(path: Path) -> subprocess.Popen[bytes]:
    """Start the writer process for ``path``: this interpreter, isolated (``-I``:
    no environment variables, no user site, not the working directory) and
    without ``site`` (``-S``: nothing from site-packages runs), finding
    `traywire.reqlog_writer` where this one was found."""
    if not sys.executable:
        raise OSError("no interpreter to run (sys.executable is empty)")
    # where `traywire` was found (not resolved: the package dir may be a link)
    package_dir = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(reqlog_writer.__file__)))
    )
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _BOOTSTRAP, package_dir, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        # its tracebacks, if any, go where ours go
        stderr=subprocess.DEVNULL if sys.stderr is None else None,
        close_fds=True,
        # POSIX: a session of its own, so a terminal's Ctrl-C (sent to the
        # foreground process group) does not reach it; it goes at EOF instead
        start_new_session=True,
        # Windows: no console window (pythonw.exe parents have none to share)
        creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
    )


class _ChildGone(Exception):
    """The writer process is gone (or out of step)."""


class _WriterProcess:
    """The parent's end of a writer process: one command, one answer."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        if popen.stdin is None or popen.stdout is None:
            raise ValueError("the writer process needs pipes")
        self.popen = popen
        self.pid = popen.pid
        self._to: IO[bytes] = popen.stdin
        self._from: IO[bytes] = popen.stdout

    def hello(self) -> None:
        """Wait for the child to say it has opened the file."""
        answer = self._receive()
        if answer[0] != "ready":
            raise _ChildGone(f"said: {answer[1]}")

    def call(self, command: bytes) -> tuple[str, Any]:
        """Send one marshalled command and wait for its answer."""
        try:
            reqlog_writer.send(self._to, command)
        except (OSError, ValueError) as exc:
            raise _ChildGone(self._why(exc)) from exc
        return self._receive()

    def _receive(self) -> tuple[str, Any]:
        try:
            answer = reqlog_writer.receive(self._from)
        except (OSError, ValueError, EOFError, TypeError) as exc:
            raise _ChildGone(self._why(exc)) from exc
        if answer is None:
            raise _ChildGone(self._why(None))
        if not (isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], str)):
            raise _ChildGone(f"answered {answer!r:.100}")
        return answer

    def _why(self, exc: BaseException | None) -> str:
        try:
            code = self.popen.wait(1.0)
        except subprocess.TimeoutExpired:
            return f"stopped answering ({exc})"
        return f"exited (code {code})"

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()

    def stop(self, timeout: float) -> int | None:
        """Close its stdin (it exits at EOF) and reap it; kill it if it does not
        exit within ``timeout``. Its exit code (None if it would not die)."""
        with contextlib.suppress(OSError, ValueError):
            self._to.close()
        code: int | None = None
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.popen.wait(5.0)
        with contextlib.suppress(OSError, ValueError):
            self._from.close()
        return code


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
                writer: WriterKind = (
                    "thread" if os.environ.get("TRAYWIRE_LOG_WRITER") == "thread" else "process"
                )
                owned = await asyncio.to_thread(RequestLog.from_settings, settings, writer=writer)
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
