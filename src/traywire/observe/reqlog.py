"""The request log's writing side: every `RequestRecord` into the SQLite file
(`logfile`), off the request path, and nothing accepted lost without saying so.

`RequestLog.observe` is the observer the proxy calls once per request, on its
event loop: it appends the record (immutable) to a bounded queue. Well under
a µs; it never blocks on I/O, never awaits, never raises.

A writer thread (``traywire-request-log``, started through `traywire.threads`)
sleeps until records are queued, lets them gather for ``linger`` seconds, and
inserts up to ``batch_size`` of them in one transaction (`logfile.Writer`
turns each into a row there, `logfile.CHUNK` rows per statement); `flush`
waits for that. Every ``prune_interval`` seconds (or after a tenth of
``max_requests`` new rows) it runs a retention pass: rows older than
``max_age_days`` and all but the newest ``max_requests`` requests go (the
retention clock is ``clock``; an early pass looks at the oldest rows only,
a thorough one at every row once per ``prune_interval``: `Writer.prune`).
SQLite releases the GIL while it works: once per chunk of rows. (A child
process wrote the log until a same-run measurement showed it saved ~4% of
the proxy's CPU per request at saturation for ~13 MiB more memory: README,
Benchmarks.)

What can go wrong, and what the log does about it:

- **The queue is full** (the writer is behind or blocked): the oldest row is
  dropped and counted (``dropped``).
- **The file cannot be written** (another program holds its write lock, the
  disk is full, an I/O error): the batch stays with the writer, which tries
  again every ``retry_after`` seconds (each try waits at most
  ``busy_timeout_s`` for the lock); ``last_problem`` says why. New rows queue
  up to the bound meanwhile.
- **The database refuses a row** (a constraint: a bug): the batch is written
  row by row, and the rows refused are counted ``failed``.
- **The writer thread dies** (a bug): `check` starts a new one
  (``writer_restarts``), which writes the batch the dead one held.
- **The writer is stuck in one database call** longer than ``stall_after``
  seconds (a hung disk or network file system): `check` says so. It cannot be
  replaced: a thread cannot be killed, and a new writer would wait for the same
  file. The queue keeps taking rows up to its bound, and the writer carries on
  when the call returns.
- **Exit** (`close`, on SIGTERM/SIGINT through the app's shutdown): what is
  queued is written, waiting up to ``timeout``; rows still not written then
  are counted ``failed`` and said.

`check` says all of this in one WARNING at most every ``warn_every`` seconds,
with counts (and once more when writing works again); it runs after every
batch on the writer thread and every few seconds on the proxy's loop
(`wiring`), where it also notices a dead writer. `counters` is the same in
numbers, for ``/status`` and ``/metrics``. Time for stalls and warnings comes
from ``monotonic`` (tests pass their own).
"""

from __future__ import annotations

import collections
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

from .. import threads
from ..config import LogSettings
from ..types import RequestRecord
from . import logfile

__all__ = ["LogCounters", "RequestLog", "WriterState"]

log = logging.getLogger("traywire")

WriterState = Literal["idle", "writing", "retrying", "stuck", "dead", "closed"]
_THREAD_NAME: Final = "traywire-request-log"


class LogCounters(NamedTuple):
    """The request log in numbers, at one moment (``/status``' ``request_log``)."""

    path: str
    writer: WriterState
    queued: int  # rows waiting for the writer
    writing: int  # rows with the writer (being written, or to be tried again)
    written: int
    dropped: int  # the queue was full (or the log closed)
    failed: int  # refused by the database, or not written by exit
    pruned: int  # deleted by retention
    writer_restarts: int
    # seconds the writer has had rows without writing any (None: keeping up)
    behind_s: float | None
    last_problem: str | None


class RequestLog:
    """A SQLite request log written by a thread (see the module docstring).

    Opening it touches the disk (call it through `threads.run_blocking` on a
    loop); it raises OSError / sqlite3.Error when the file cannot be opened.

    Args:
        path: The SQLite file (its directory is created, private).
        max_age_days: Rows older than this are deleted.
        max_requests: At most this many requests are kept (the oldest go first).
        queue_size: Rows waiting for the writer; beyond it the oldest is dropped.
        prune_interval: Seconds between retention passes.
        batch_size: At most this many rows go in one transaction.
        linger: Seconds the writer lets rows gather after the first one.
        clock: Wall-clock seconds (``time.time``), for retention.
        monotonic: Seconds (``time.monotonic``), for stalls and warnings.
        stall_after: Seconds in one database call after which the writer is stuck.
        warn_every: At most one warning per this many seconds.
        retry_after: Seconds between tries of a batch that could not be written.
        busy_timeout_s: How long one try waits for another program's write lock.
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
        monotonic: Callable[[], float] = time.monotonic,
        stall_after: float = 30.0,
        warn_every: float = 30.0,
        retry_after: float = 1.0,
        busy_timeout_s: float = logfile.WRITER_BUSY_TIMEOUT_S,
    ) -> None:
        if not max_age_days > 0:
            raise ValueError("max_age_days must be > 0")
        if max_requests < 1 or queue_size < 1 or batch_size < 1:
            raise ValueError("max_requests, queue_size and batch_size must be >= 1")
        if not (prune_interval > 0 and stall_after > 0 and retry_after > 0):
            raise ValueError("prune_interval, stall_after and retry_after must be > 0")
        self.path = Path(path)
        self.max_age_s = float(max_age_days) * 86400.0
        self.max_requests = int(max_requests)
        self.queue_size = int(queue_size)
        self.prune_interval = float(prune_interval)
        self.batch_size = int(batch_size)
        self.linger = float(linger)
        self.stall_after = float(stall_after)
        self.warn_every = float(warn_every)
        self.retry_after = float(retry_after)
        self.busy_timeout_s = float(busy_timeout_s)
        self._clock = clock
        self._mono = monotonic
        # Prune early when this many rows went in since the last pass.
        self._prune_every = max(1, self.max_requests // 10)

        logfile.open_file(self.path)
        # opened here, so that a file that cannot be written fails here
        first_writer = logfile.Writer(
            self.path, busy_timeout_s=self.busy_timeout_s, check_same_thread=False
        )

        # Everything below is guarded by _lock (observe takes it bare: cheaper)
        # and _cond, its condition. Nothing slow ever happens under it.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: collections.deque[RequestRecord] = collections.deque()
        self._seq = 0  # sequence number of the last row queued
        self._done_seq = 0  # every row up to this one is written (or counted lost)
        self._batch: list[RequestRecord] | None = None  # with the writer
        self._batch_last = 0  # sequence number of its last row
        self._busy_since: float | None = None  # in a database call since
        self._progress_at = self._mono()  # last time the writer got anywhere
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.pruned = 0
        self.prune_passes = 0
        self.writer_restarts = 0
        self.last_problem: str | None = None  # the latest, until a write succeeds
        self._blocked_by: str | None = None  # why rows cannot be written now
        self._prune_problem: str | None = None  # a failed retention pass, to say once
        self._closing = False
        self._closed = False
        self._gen = 0  # the writer thread of this generation is the live one
        # what the last warning said, and when
        self._warned_at = -math.inf
        self._said_dropped = 0
        self._said_failed = 0
        self._warned = False

        self._wake = threading.Event()  # rows queued, or closing
        self._urgent = threading.Event()  # flush()/close(): cut the linger short
        self._retry = threading.Event()  # close(): try again now
        self._thread = threads.start_thread(lambda: self._run(0, first_writer), _THREAD_NAME)

    @classmethod
    def from_settings(cls, settings: LogSettings, **kwargs: Any) -> RequestLog:
        return cls(
            logfile.path_for(settings),
            max_age_days=settings.max_age_days,
            max_requests=settings.max_requests,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"<RequestLog {self.path} written={self.written} dropped={self.dropped}>"

    # ------------------------------------------------------------------ the request path

    def observe(self, record: RequestRecord) -> None:
        """Queue ``record`` for the writer. Never blocks on I/O, never raises.
        (The writer makes it a row; one it cannot store is counted ``failed``.)"""
        with self._lock:
            if self._closing:
                self.dropped += 1
                return
            queue = self._queue
            if len(queue) >= self.queue_size:
                queue.popleft()
                self.dropped += 1
            self._seq += 1
            queue.append(record)
        if not self._wake.is_set():
            self._wake.set()

    # ------------------------------------------------------------------ for everyone else

    @property
    def queued(self) -> int:
        """Rows waiting for the writer (not counting those it has)."""
        return len(self._queue)

    def counters(self) -> LogCounters:
        now = self._mono()
        with self._lock:
            pending = bool(self._queue) or self._batch is not None
            return LogCounters(
                path=str(self.path),
                writer=self._state(now),
                queued=len(self._queue),
                writing=len(self._batch or ()),
                written=self.written,
                dropped=self.dropped,
                failed=self.failed,
                pruned=self.pruned,
                writer_restarts=self.writer_restarts,
                behind_s=round(max(0.0, now - self._progress_at), 1) if pending else None,
                last_problem=self.last_problem,
            )

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every row queued so far is written (or counted lost).
        False on timeout."""
        with self._cond:
            target = self._seq
            if self._done_seq >= target:
                return True
        self._urgent.set()
        self._wake.set()
        with self._cond:
            return self._cond.wait_for(lambda: self._done_seq >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to ``timeout`` seconds), stop the
        writer and count and say what could not be written. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
        self._revive()  # a dead writer would leave the queue behind
        self._urgent.set()
        self._wake.set()
        self._retry.set()
        thread = self._thread
        if thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            left = len(self._queue) + len(self._batch or ())
            stuck = thread.is_alive()
            self._gen += 1  # a writer still in a call touches nothing more
            self.failed += left
            self._queue.clear()
            self._batch = None
            self._done_seq = self._seq
            self._closed = True
            self._cond.notify_all()
            unsaid = self.dropped - self._said_dropped
            problem = self.last_problem
        if left:
            why = "it is stuck in a database call" if stuck else (problem or "it stopped")
            log.warning(
                "request log %s: %d record(s) not written at exit: the writer did not finish "
                "within %g s (%s)",
                self.path,
                left,
                timeout,
                why,
            )
        if unsaid:
            log.warning(
                "request log %s: %d record(s) dropped since the last warning (queue full at %d)",
                self.path,
                unsaid,
                self.queue_size,
            )

    def check(self) -> None:
        """Replace a writer thread that died, and say (a rate-limited WARNING)
        what is stuck, retried or lost. Quick; from any thread."""
        self._revive()
        now = self._mono()
        with self._lock:
            if self._closed:
                return
            message = self._warning(now)
        if message is not None:
            level, text, args = message
            log.log(level, text, *args)

    # ------------------------------------------------------------------ supervision

    def _state(self, now: float) -> WriterState:
        if self._closed:
            return "closed"
        if not self._thread.is_alive():
            return "dead"
        if self._busy_since is not None:
            return "stuck" if now - self._busy_since >= self.stall_after else "writing"
        if self._blocked_by is not None:
            return "retrying"
        return "idle"

    def _revive(self) -> None:
        """Start a new writer thread if the current one is gone and rows wait."""
        with self._lock:
            if self._closed or self._thread.is_alive():
                return
            if self._closing and not self._queue and self._batch is None:
                return
            self._gen += 1
            gen = self._gen
            self.writer_restarts += 1
            problem = self.last_problem
            # under the lock: two supervisors never start two writers
            self._thread = threads.start_thread(lambda: self._run(gen, None), _THREAD_NAME)
        log.warning(
            "request log %s: the writer thread had stopped%s; started a new one",
            self.path,
            f" ({problem})" if problem else "",
        )

    def _warning(self, now: float) -> tuple[int, str, tuple[object, ...]] | None:
        """The warning to give now, if any (under the lock)."""
        dropped = self.dropped - self._said_dropped
        failed = self.failed - self._said_failed
        busy = self._busy_since
        stuck = busy is not None and now - busy >= self.stall_after
        retrying = busy is None and self._blocked_by is not None
        pruning = self._prune_problem
        if not (dropped or failed or stuck or retrying or pruning):
            if self._warned:
                self._warned = False
                text = "request log %s: writing again (%d queued)"
                return logging.INFO, text, (self.path, len(self._queue))
            return None
        if now - self._warned_at < self.warn_every:
            return None
        self._warned_at = now
        self._warned = True
        self._said_dropped = self.dropped
        self._said_failed = self.failed
        self._prune_problem = None
        parts: list[str] = []
        if stuck and busy is not None:
            parts.append(f"the writer has been stuck in one database call for {now - busy:.0f} s")
        elif retrying:
            parts.append(
                f"cannot write ({self._blocked_by}); trying again every {self.retry_after:g} s"
            )
        if pruning:
            parts.append(pruning)
        if dropped:
            parts.append(
                f"{dropped} record(s) dropped since the last warning (queue full at "
                f"{self.queue_size}; {self.dropped} in all)"
            )
        if failed:
            parts.append(f"{failed} record(s) lost ({self.last_problem or 'see above'})")
        text = "request log %s: %s; %d queued"
        return logging.WARNING, text, (self.path, "; ".join(parts), len(self._queue))

    # ------------------------------------------------------------------ the writer thread

    def _run(self, gen: int, writer: logfile.Writer | None) -> None:
        next_prune = time.monotonic()  # a retention pass first
        since_prune = 0
        next_thorough = next_prune
        try:
            while True:
                with self._cond:
                    if self._gen != gen:
                        return
                    idle = not self._queue and self._batch is None
                    if idle and self._closing:
                        return
                if idle:
                    self._wake.wait(
                        max(0.0, min(next_prune - time.monotonic(), self.prune_interval))
                    )
                    # Let rows gather so one transaction carries many: the
                    # request path then pays a deque append, not a thread wake-up.
                    if self.linger > 0 and not self._urgent.is_set():
                        self._urgent.wait(self.linger)
                    self._urgent.clear()
                    self._wake.clear()
                    with self._cond:
                        self._progress_at = self._mono()
                if writer is None:
                    writer = self._open_writer()
                    if writer is None:
                        self._pause()
                        continue
                rows = self._take(gen)
                if rows is None:
                    return
                if rows:
                    done = self._write(gen, writer, rows)
                    if done is None:
                        return
                    if not done:
                        self._pause()
                        continue
                    since_prune += len(rows)
                now = time.monotonic()
                if now >= next_prune or since_prune >= self._prune_every:
                    # early passes (many rows written) only look at the oldest
                    thorough = now >= next_thorough
                    self._prune(writer, thorough)
                    since_prune = 0
                    next_prune = now + self.prune_interval
                    if thorough:
                        next_thorough = next_prune
                self.check()
        except Exception as exc:  # a bug: say so; check() starts a new writer
            log.exception("request log %s: the writer thread failed", self.path)
            with self._cond:
                self._busy_since = None
                self.last_problem = f"the writer thread failed: {type(exc).__name__}: {exc}"
        finally:
            if writer is not None:
                writer.close()

    def _pause(self) -> None:
        """Say what is wrong (rate-limited), then wait ``retry_after`` seconds
        before the next try (close() cuts the wait short once)."""
        self.check()
        if self._retry.wait(self.retry_after):
            self._retry.clear()

    def _open_writer(self) -> logfile.Writer | None:
        try:
            return logfile.Writer(self.path, busy_timeout_s=self.busy_timeout_s)
        except sqlite3.Error as exc:
            with self._cond:
                self.last_problem = self._blocked_by = f"cannot open the file: {exc}"
            return None

    def _take(self, gen: int) -> list[RequestRecord] | None:
        """The batch to write: the one held since a failed try, else up to
        ``batch_size`` of the oldest rows. None: this writer is superseded."""
        with self._cond:
            if self._gen != gen:
                return None
            if self._batch is None:
                queue = self._queue
                n = min(len(queue), self.batch_size)
                if n == 0:
                    return []
                self._batch = [queue.popleft() for _ in range(n)]
                self._batch_last = self._seq - len(queue)
            self._busy_since = self._mono()
            return self._batch

    def _write(self, gen: int, writer: logfile.Writer, rows: list[RequestRecord]) -> bool | None:
        """Write ``rows``: True when done with them (written, or refused and
        counted), False to try the rest again later, None when this writer is
        superseded."""
        written = refused = 0
        rest: list[RequestRecord] = []
        problem: str | None = None
        try:
            writer.write(rows)
            written = len(rows)
        except sqlite3.OperationalError as exc:  # locked, busy, disk full, I/O
            rest, problem = rows, str(exc)
        except sqlite3.Error:
            # A row the database refuses (a bug): find it, keep the others.
            for i, row in enumerate(rows):
                try:
                    writer.write([row])
                    written += 1
                except sqlite3.OperationalError as exc:
                    rest, problem = rows[i:], str(exc)
                    break
                except sqlite3.Error as exc:
                    refused += 1
                    problem = f"a record refused: {type(exc).__name__}: {exc}"
        with self._cond:
            self._busy_since = None
            if self._gen != gen:
                return None
            self.written += written
            self.failed += refused
            self.last_problem = problem
            self._blocked_by = problem if rest else None
            if written:
                self._progress_at = self._mono()
            if rest:
                self._batch = rest
                return False
            self._batch = None
            self._done_seq = self._batch_last
            self._cond.notify_all()
            return True

    def _prune(self, writer: logfile.Writer, thorough: bool) -> None:
        with self._cond:
            self._busy_since = self._mono()
        try:
            deleted: int | None = writer.prune(
                self._clock(), self.max_age_s, self.max_requests, thorough=thorough
            )
            problem = None
        except sqlite3.Error as exc:
            deleted, problem = None, f"retention pass failed: {exc}"
        with self._cond:
            self._busy_since = None
            if deleted is None:
                self.last_problem = self._prune_problem = problem
            else:
                self.pruned += deleted
                self.prune_passes += 1
