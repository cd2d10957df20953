"""Reading the request log: the dashboard's queries, and past token usage for
``usage_based`` routing after a restart.

`LogQueries` holds its own read connection (WAL mode lets it read while the
writer writes) and may be called from any thread; from the event loop, call
it through `traywire.threads.run_blocking` (it touches the disk).
"""

from __future__ import annotations

import collections
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from ..types import OUTCOMES
from . import logfile

__all__ = ["MAX_PAGE", "LogQueries", "UsageBucket"]

# recent() never returns more rows than this in one call.
MAX_PAGE: Final = 1000
# A request never lasts longer than this (the longest total timeout is far
# shorter): bounds the scan for requests that *finished* after a time.
_LONGEST_REQUEST_S: Final = 86400.0
_BOOLEAN_COLUMNS: Final = ("stream", "cut", "client_gone")


class UsageBucket(NamedTuple):
    """Tokens served for one public model name, finishing by wall time ``t``."""

    model: str
    t: float
    tokens: int


class LogQueries:
    """Read-only queries on a log file that `logfile.open_file` made ready.

    Args:
        path: The SQLite file.
        clock: Wall-clock seconds (``time.time``): "now" for `latency_series`.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._conn = logfile.connect(
            self.path, busy_timeout_s=logfile.READER_BUSY_TIMEOUT_S, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

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
        with self._lock:
            rows = [dict(r) for r in self._conn.execute(sql, args)]
            self._add_attempts(rows)
        return [_decode(r) for r in rows]

    def get(self, request_id: int) -> dict[str, Any] | None:
        """One request with its attempts, or None."""
        with self._lock:
            rows = [
                dict(r)
                for r in self._conn.execute("SELECT * FROM requests WHERE id = ?", (request_id,))
            ]
            self._add_attempts(rows)
        return _decode(rows[0]) if rows else None

    def count(self) -> int:
        """How many requests the file holds."""
        with self._lock:
            (n,) = self._conn.execute("SELECT COUNT(*) FROM requests").fetchone()
        return int(n)

    def usage_buckets(self, since: float, bucket_s: float) -> list[UsageBucket]:
        """Token usage since ``since`` per model and ``bucket_s`` bucket of finishing
        time, oldest first; each bucket's ``t`` is the latest finish in it."""
        if not (bucket_s > 0 and math.isfinite(bucket_s)):
            raise ValueError("bucket_s must be > 0")
        done = "(ts + total_ms / 1000.0)"
        sql = (
            f"SELECT served_model, MAX({done}) AS t, SUM(tokens_in + tokens_out) AS tokens "
            f"FROM requests WHERE served_model IS NOT NULL AND ts >= ? AND {done} >= ? "
            f"AND tokens_in + tokens_out > 0 GROUP BY served_model, CAST({done} / ? AS INTEGER) "
            "ORDER BY t"
        )
        with self._lock:
            rows = self._conn.execute(sql, (since - _LONGEST_REQUEST_S, since, bucket_s)).fetchall()
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
        with self._lock:
            served = self._conn.execute(
                "SELECT ts, total_ms, ttfb_ms FROM requests "
                "WHERE served_backend = ? AND ts >= ? AND ts <= ?",
                (backend, since, end),
            ).fetchall()
            failed = self._conn.execute(
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
            for a in self._conn.execute(
                "SELECT n, model, backend, outcome, error, kind, ms, request_id FROM attempts "
                f"WHERE request_id IN ({marks}) ORDER BY request_id, n",
                chunk,
            ):
                entry = dict(a)
                by_id[entry.pop("request_id")].append(entry)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _BOOLEAN_COLUMNS:
        row[key] = bool(row[key])
    row["plan"] = json.loads(row["plan"])
    row["skipped"] = json.loads(row["skipped"])
    return row


def _percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence."""
    if not ordered:
        return None
    k = max(0, math.ceil(p * len(ordered)) - 1)
    return ordered[min(k, len(ordered) - 1)]


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
