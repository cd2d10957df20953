"""Reading the request log: the dashboard's queries, and past token usage for
``usage_based`` routing after a restart.

`LogQueries` holds its own read connection (WAL mode lets it read while the
writer writes) and may be called from any thread; from the event loop, call
it through `traywire.threads.run_blocking` (it touches the disk).

The file has no index but its ids (`logfile`: every index costs each insert
and each deletion): a time range starts at `logfile.FIRST_AT`, the filters
scan the newest rows first; either stays in milliseconds on a full log
(50,000 requests; README, "Request log").
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

import msgspec

from ..types import OUTCOMES
from . import logfile

__all__ = ["MAX_PAGE", "LogQueries", "UsageBucket"]

# recent() never returns more rows than this in one call.
MAX_PAGE: Final = 1000
# A request never lasts longer than this (the longest total timeout is far
# shorter): bounds the scan for requests that *finished* after a time.
_LONGEST_REQUEST_S: Final = 86400.0
_BOOLEAN_COLUMNS: Final = ("stream", "cut", "client_gone")
# where an attempt's backend and outcome are in its array (``attempts`` column)
_BACKEND: Final = logfile.ATTEMPT_FIELDS.index("backend")
_OUTCOME: Final = logfile.ATTEMPT_FIELDS.index("outcome")
# a request the backend served or was attempted on; arguments: the name, the
# name as JSON text (`_quoted`: a cheap test first), the name
_ON_BACKEND: Final = (
    "(served_backend = ? OR (instr(attempts, ?) > 0 AND EXISTS "
    f"(SELECT 1 FROM json_each(attempts) WHERE value ->> {_BACKEND} = ?)))"
)


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
            where.append(_ON_BACKEND)
            args += [backend, _quoted(backend), backend]
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
        return [_decode(r) for r in rows]

    def get(self, request_id: int) -> dict[str, Any] | None:
        """One request with its attempts, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM requests WHERE id = ?", (request_id,)
            ).fetchone()
        return None if row is None else _decode(dict(row))

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
            f"FROM requests WHERE id >= {logfile.FIRST_AT} AND served_model IS NOT NULL "
            f"AND ts >= ? AND {done} >= ? "
            f"AND tokens_in + tokens_out > 0 GROUP BY served_model, CAST({done} / ? AS INTEGER) "
            "ORDER BY t"
        )
        with self._lock:
            start = since - _LONGEST_REQUEST_S
            rows = self._conn.execute(sql, (start, start, since, bucket_s)).fetchall()
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
        return self.latency_many([backend], since, bucket_s, until)[backend]

    def latency_many(
        self,
        backends: Sequence[str],
        since: float,
        bucket_s: float = 60.0,
        until: float | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """`latency_series` of each of ``backends``, from one pass over the time range."""
        if not bucket_s > 0:
            raise ValueError("bucket_s must be > 0")
        end = self._clock() if until is None else until
        first = math.floor(since / bucket_s)
        last = math.floor(end / bucket_s)
        if last - first > 10000:
            raise ValueError("too many buckets; use a larger bucket_s")
        names = list(dict.fromkeys(backends))
        if not names:
            return {}
        marks = ", ".join("?" for _ in names)
        with self._lock:
            served = self._conn.execute(
                "SELECT served_backend, ts, total_ms, ttfb_ms FROM requests "
                f"WHERE id >= {logfile.FIRST_AT} AND ts >= ? AND ts <= ? "
                f"AND served_backend IN ({marks})",
                (since, since, end, *names),
            ).fetchall()
            failed = self._conn.execute(
                f"SELECT a.value ->> {_BACKEND}, r.ts FROM requests AS r, "
                f"json_each(r.attempts) AS a WHERE r.id >= {logfile.FIRST_AT} "
                "AND r.ts >= ? AND r.ts <= ? "
                f"AND instr(r.attempts, '\"failed\"') > 0 AND a.value ->> {_OUTCOME} = 'failed'",
                (since, since, end),
            ).fetchall()
        totals: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        ttfbs: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
        failures: collections.Counter[tuple[str, int]] = collections.Counter()
        for name, ts, total_ms, ttfb_ms in served:
            key = (name, math.floor(ts / bucket_s))
            totals[key].append(float(total_ms))
            if ttfb_ms is not None:
                ttfbs[key].append(float(ttfb_ms))
        for name, ts in failed:
            failures[(name, math.floor(ts / bucket_s))] += 1
        return {
            name: [
                _bucket(
                    idx * bucket_s,
                    sorted(totals.get((name, idx), ())),
                    sorted(ttfbs.get((name, idx), ())),
                    failures.get((name, idx), 0),
                )
                for idx in range(first, last + 1)
            ]
            for name in names
        }


def _bucket(t: float, tot: list[float], tt: list[float], failures: int) -> dict[str, Any]:
    """One bucket of `LogQueries.latency_series` (``tot``, ``tt``: ascending)."""
    return {
        "t": t,
        "count": len(tot),
        "avg_ms": _r(sum(tot) / len(tot)) if tot else None,
        "p50_ms": _r(_percentile(tot, 0.5)),
        "p95_ms": _r(_percentile(tot, 0.95)),
        "max_ms": _r(tot[-1]) if tot else None,
        "ttfb_avg_ms": _r(sum(tt) / len(tt)) if tt else None,
        "ttfb_p50_ms": _r(_percentile(tt, 0.5)),
        "failures": failures,
    }


def _quoted(name: str) -> str:
    """``name`` as it stands in the ``attempts`` JSON when it needs no escape
    (either encoder, traywire's or SQLite's, writes it so), else ''."""
    text = msgspec.json.encode(name).decode()
    return text if text == f'"{name}"' else ""


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _BOOLEAN_COLUMNS:
        row[key] = bool(row[key])
    row["plan"] = json.loads(row["plan"])
    row["skipped"] = json.loads(row["skipped"])
    row["attempts"] = [
        {"n": n, **dict(zip(logfile.ATTEMPT_FIELDS, a, strict=True))}
        for n, a in enumerate(json.loads(row["attempts"]), 1)
    ]
    return row


def _percentile(ordered: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence."""
    if not ordered:
        return None
    k = max(0, math.ceil(p * len(ordered)) - 1)
    return ordered[min(k, len(ordered) - 1)]


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
