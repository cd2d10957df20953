"""The request log's file: its schema (one row per request, attempts inline,
one index), ids that only grow, batches bound a chunk of rows per statement,
and a file of the previous schema upgraded in place with its rows (and one a
previous traywire wrote to again after the upgrade)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from proxy_fixtures import wait_until
from reqlog_helpers import BASE, Clock, Logs, logs, make_record

from traywire.observe import logfile
from traywire.observe.reqlog import RequestLog
from traywire.types import OUTCOMES, AttemptRecord

__all__ = ["logs"]

FAILOVER = (
    AttemptRecord("one", "a", "failed", "HTTP 500", "server_error", 3.0),
    AttemptRecord("two", "b", "served", ms=9.0),
)

# The file as traywire wrote it before schema 2 (SCHEMA_VERSION 1).
V1_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL, dialect TEXT NOT NULL, endpoint TEXT NOT NULL,
    requested TEXT NOT NULL, capability TEXT, strategy TEXT, route TEXT,
    preference TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, stream INTEGER NOT NULL,
    served_model TEXT, served_backend TEXT, status INTEGER NOT NULL, ttfb_ms REAL,
    total_ms REAL NOT NULL, tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL,
    error TEXT NOT NULL, cut INTEGER NOT NULL, client_gone INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ({", ".join(repr(o) for o in OUTCOMES)})),
    plan TEXT NOT NULL, skipped TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    request_id INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    n INTEGER NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL,
    outcome TEXT NOT NULL, error TEXT NOT NULL, kind TEXT NOT NULL, ms REAL NOT NULL,
    PRIMARY KEY (request_id, n)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE INDEX IF NOT EXISTS requests_backend ON requests (served_backend, ts);
CREATE INDEX IF NOT EXISTS requests_capability ON requests (capability, ts);
CREATE INDEX IF NOT EXISTS requests_outcome ON requests (outcome, ts);
CREATE INDEX IF NOT EXISTS attempts_backend ON attempts (backend, request_id);
"""
V1_COLUMNS = (
    "ts, dialect, endpoint, requested, capability, strategy, route, preference, "
    "prompt_tokens, stream, served_model, served_backend, status, ttfb_ms, total_ms, "
    "tokens_in, tokens_out, error, cut, client_gone, outcome, plan, skipped"
)
PLAN_JSON = '[{"model":"one","backend":"a","upstream_model":"m1","reason":"requested model"}]'


def v1_insert(conn: sqlite3.Connection, requested: str, ts: float, attempts: int) -> int:
    """A request (and its attempts) as a schema-1 traywire inserted it."""
    cur = conn.execute(
        f"INSERT INTO requests ({V1_COLUMNS}) VALUES "
        "(?, 'openai', '/v1/chat/completions', ?, 'chat', NULL, NULL, 'auto', 12, 0, "
        "'two', 'b', 200, 50.0, 100.0, 10, 5, '', 0, 0, 'served', ?, '[]')",
        (ts, requested, PLAN_JSON),
    )
    rid = cur.lastrowid
    assert rid is not None
    for n, a in enumerate(FAILOVER[-attempts:] if attempts else (), 1):
        conn.execute(
            "INSERT INTO attempts (request_id, n, model, backend, outcome, error, kind, ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, n, *a),
        )
    return rid


def schema_of(path: Path) -> tuple[list[str], set[str], set[str], int]:
    """(requests' columns, the tables, the indexes, user_version)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(requests)")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    return cols, tables, indexes, version


def test_schema_one_row_per_request_with_its_attempts_inline(logs: Logs) -> None:
    lg = logs()
    lg.observe(make_record(served=("two", "b"), attempts=FAILOVER))
    assert lg.flush()
    cols, tables, indexes, version = schema_of(lg.path)
    assert cols == ["id", *logfile.REQUEST_COLUMNS]
    assert "attempts" not in tables and "requests" in tables
    assert indexes == set()  # every index costs each insert and deletion
    assert version == logfile.SCHEMA_VERSION == 2
    # plain SQL reads it: attempts are arrays in ATTEMPT_FIELDS order
    with contextlib.closing(sqlite3.connect(lg.path)) as conn:
        (attempts, plan, first_backend) = conn.execute(
            "SELECT attempts, plan, attempts ->> '$[0][1]' FROM requests"
        ).fetchone()
    assert logfile.ATTEMPT_FIELDS == ("model", "backend", "outcome", "error", "kind", "ms")
    assert json.loads(attempts) == [list(a) for a in FAILOVER]
    assert first_backend == "a"
    assert json.loads(plan)[0] == {
        "model": "one",
        "backend": "a",
        "upstream_model": "m1",
        "reason": "requested model",
    }
    # reopening an existing file keeps it
    lg.close()
    again = RequestLog(lg.path)
    try:
        assert logs.queries(again).count() == 1
    finally:
        again.close()


def test_a_batch_larger_than_a_chunk_keeps_its_order_and_ids(logs: Logs) -> None:
    lg = logs(linger=3600)  # one batch, written at flush
    n = 3 * logfile.CHUNK + 7
    for i in range(n):
        lg.observe(make_record(BASE + i, requested=f"r{i}", attempts=FAILOVER[: i % 3]))
    assert lg.flush()
    rows = logs.queries(lg).recent(1000)
    assert [r["id"] for r in rows] == list(range(n, 0, -1))
    assert [r["requested"] for r in rows] == [f"r{i}" for i in range(n - 1, -1, -1)]
    assert [len(r["attempts"]) for r in rows] == [i % 3 for i in range(n - 1, -1, -1)]


def test_ids_keep_growing_after_retention_deleted_every_row(logs: Logs) -> None:
    lg = logs(max_age_days=30, prune_interval=0.05, clock=Clock(BASE))
    q = logs.queries(lg)
    for i in range(5):
        lg.observe(make_record(BASE - 40 * 86400 + i))  # too old already
    assert wait_until(lambda: lg.pruned == 5 and q.count() == 0)
    lg.observe(make_record(BASE, requested="after"))
    assert lg.flush()
    (row,) = q.recent()
    assert (row["id"], row["requested"]) == (6, "after")


def make_v1_file(path: Path) -> list[int]:
    """A schema-1 file with 4 requests left of 6 (ids 3..6) and their attempts."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(V1_SCHEMA)
        conn.execute("PRAGMA user_version = 1")
        ids = [v1_insert(conn, f"r{i}", BASE + i, i % 3) for i in range(6)]
        conn.execute("DELETE FROM attempts WHERE request_id <= 2")
        conn.execute("DELETE FROM requests WHERE id <= 2")
        conn.execute("DELETE FROM requests WHERE id = 6")  # the newest went too
        conn.execute("DELETE FROM attempts WHERE request_id = 6")
    return ids[2:5]


def test_a_schema_1_file_is_upgraded_in_place_with_its_rows(logs: Logs) -> None:
    path = logs.tmp_path / "requests.sqlite3"
    kept = make_v1_file(path)
    lg = logs()
    cols, tables, indexes, version = schema_of(path)
    assert cols == ["id", *logfile.REQUEST_COLUMNS]
    assert "attempts" not in tables and indexes == set() and version == 2
    q = logs.queries(lg)
    rows = q.recent()
    assert [r["id"] for r in rows] == kept[::-1]
    assert [r["requested"] for r in rows] == ["r4", "r3", "r2"]
    assert [
        [(a["n"], a["backend"], a["outcome"], a["kind"], a["ms"]) for a in r["attempts"]]
        for r in rows
    ] == [
        [(1, "b", "served", "", 9.0)],  # r4: the last attempt of FAILOVER
        [],
        [(1, "a", "failed", "server_error", 3.0), (2, "b", "served", "", 9.0)],
    ]
    assert rows[0]["plan"] == json.loads(PLAN_JSON)
    assert [r["id"] for r in q.recent(backend="a")] == [3]
    # ids go on above every id the old file gave (6, deleted since)
    lg.observe(make_record(BASE + 10, requested="new"))
    assert lg.flush()
    assert [(r["id"], r["requested"]) for r in q.recent(2)] == [(7, "new"), (5, "r4")]


def test_rows_a_schema_1_traywire_added_later_are_folded_in(logs: Logs) -> None:
    """An older traywire run on an upgraded file (a downgrade, then an upgrade
    again): its attempts table and indexes are folded in and dropped."""
    lg = logs()
    lg.observe(make_record(requested="two"))
    lg.close()
    with contextlib.closing(sqlite3.connect(lg.path, isolation_level=None)) as conn:
        conn.executescript(V1_SCHEMA)  # what schema 1 does when it opens a file
        v1_insert(conn, "old", BASE + 5, 2)
    again = logs()
    _cols, tables, indexes, _version = schema_of(again.path)
    assert "attempts" not in tables and indexes == set()
    rows = logs.queries(again).recent()
    assert [(r["requested"], [a["backend"] for a in r["attempts"]]) for r in rows] == [
        ("old", ["a", "b"]),
        ("two", ["a"]),
    ]


def test_a_record_with_an_unknown_outcome_is_refused_alone(logs: Logs) -> None:
    lg = logs()
    lg.observe(make_record(requested="fine"))
    lg.observe(make_record(requested="bad")._replace(outcome="bogus"))  # type: ignore[arg-type]
    lg.observe(
        make_record(requested="also fine", served=None, status=503, attempts=(), ttfb_ms=None)
    )
    assert lg.flush()
    assert (lg.written, lg.failed) == (2, 1)
    rows = logs.queries(lg).recent()
    assert [r["requested"] for r in rows] == ["also fine", "fine"]
    # what went as '' / -1 is NULL in the file
    with contextlib.closing(sqlite3.connect(lg.path)) as conn:
        nulls = conn.execute(
            "SELECT strategy IS NULL, route IS NULL, served_model IS NULL, "
            "served_backend IS NULL, capability FROM requests ORDER BY id"
        ).fetchall()
    assert nulls == [(1, 1, 0, 0, "chat"), (1, 1, 1, 1, "chat")]
    assert rows[0]["served_backend"] is None and rows[0]["ttfb_ms"] is None
    assert rows[1]["ttfb_ms"] == 50.0 and rows[1]["route"] is None


def test_retention_the_oldest_first_and_long_requests_at_a_thorough_pass(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite3"
    logfile.open_file(path)
    w = logfile.Writer(path)
    day = 86400.0
    try:
        # written in the order they ended: "long" started 40 days ago
        old = [make_record(BASE - 35 * day + i, requested=f"old{i}") for i in range(3)]
        rest = [
            make_record(BASE - day, requested="new1"),
            make_record(BASE - 40 * day, requested="long"),
            make_record(BASE, requested="new2"),
        ]
        w.write(old + rest)
        assert w.prune(BASE, 30 * day, 100, thorough=False) == 3  # the oldest, by id
        names = [r[0] for r in w.conn.execute("SELECT requested FROM requests ORDER BY id")]
        assert names == ["new1", "long", "new2"]
        assert w.prune(BASE, 30 * day, 100, thorough=True) == 1
        assert w.prune(BASE, 30 * day, 1, thorough=False) == 1  # by count: the newest stay
        names = [r[0] for r in w.conn.execute("SELECT requested FROM requests ORDER BY id")]
        assert names == ["new2"]
    finally:
        w.close()
