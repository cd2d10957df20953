"""Helpers for the request log's tests: synthetic records, a clock to turn by
hand, logs in tmp_path, and a way to block every writer of a file.

A writer is "blocked" by holding the file's write lock from another
connection: its ``BEGIN IMMEDIATE`` waits (up to the log's ``busy_timeout_s``)
and then reports the file locked; readers go on (WAL)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proxy_fixtures import wait_until

from traywire.observe.logqueries import LogQueries
from traywire.observe.reqlog import RequestLog
from traywire.types import Attempt, AttemptRecord, RequestRecord, Skip, outcome_of

# A fixed "now" for logs built from synthetic records (retention reads the clock).
BASE = 1_800_000_000.0


def make_record(
    ts: float = BASE,
    *,
    requested: str = "one",
    capability: str | None = "chat",
    served: tuple[str, str] | None = ("one", "a"),
    attempts: tuple[AttemptRecord, ...] | None = None,
    status: int = 200,
    total_ms: float = 100.0,
    ttfb_ms: float | None = 50.0,
    tokens: tuple[int, int] = (10, 5),
    cut: bool = False,
    client_gone: bool = False,
    error: str = "",
) -> RequestRecord:
    if attempts is None:
        attempts = (AttemptRecord(served[0], served[1], "served", ms=total_ms),) if served else ()
    return RequestRecord(
        ts=ts,
        dialect="openai",
        endpoint="/v1/chat/completions",
        requested=requested,
        capability=capability,
        strategy=None,
        route=None,
        preference="auto",
        prompt_tokens=12,
        stream=False,
        plan=(Attempt("one", "a", "m1", "requested model"), Attempt("two", "b", "M2", "chain")),
        skipped=(Skip("three", "c", "cloud under local_only"),),
        attempts=attempts,
        served_model=served[0] if served else None,
        served_backend=served[1] if served else None,
        status=status,
        ttfb_ms=ttfb_ms,
        total_ms=total_ms,
        tokens_in=tokens[0],
        tokens_out=tokens[1],
        outcome=outcome_of(
            served=served is not None,
            status=status,
            attempts=attempts,
            cut=cut,
            client_gone=client_gone,
        ),
        error=error,
        cut=cut,
        client_gone=client_gone,
    )


class Clock:
    """A clock that moves only when a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Logs:
    """``logs(**kwargs)`` -> a RequestLog in tmp_path; ``logs.queries(lg)``
    reads it. Everything is closed at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.opened: list[RequestLog | LogQueries] = []

    def __call__(self, name: str = "requests.sqlite3", **kwargs: Any) -> RequestLog:
        kwargs.setdefault("clock", Clock(BASE + 60))
        lg = RequestLog(self.tmp_path / name, **kwargs)
        self.opened.append(lg)
        return lg

    def queries(self, lg: RequestLog, **kwargs: Any) -> LogQueries:
        q = LogQueries(lg.path, **kwargs)
        self.opened.append(q)
        return q

    def close(self) -> None:
        for x in reversed(self.opened):
            x.close()


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Logs]:
    made = Logs(tmp_path)
    yield made
    made.close()


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Hold the file's write lock: every writer waits (readers do not, in WAL)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")
    finally:
        conn.close()


def file_count(path: Path) -> int:
    """Requests in the file, read by a connection of our own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (n,) = conn.execute("SELECT COUNT(*) FROM requests").fetchone()
    return int(n)


def settled(lg: RequestLog) -> RequestLog:
    """Wait until the writer has done its first retention pass (it runs one at
    start), so that the next thing it does is write what is observed."""
    assert wait_until(lambda: lg.prune_passes >= 1 and lg.flush(1)), lg.counters()
    return lg
