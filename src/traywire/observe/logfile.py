"""The request log's SQLite file: where it lives, who may read it, its schema,
how a record becomes a row, and the two statements that change it.

The file and its directory are private: the file (and SQLite's ``-wal`` and
``-shm`` beside it, which SQLite creates with the file's own mode) 0600, a
directory traywire creates 0700, and traywire's data dir 0700 even when it
was there before. Looser modes left by older versions are tightened when the
log opens. (A directory the user named in ``log.path`` that already exists is
the user's business and left alone. Windows: the user's profile is already
private; modes are not used.)

Rows hold the routing decision (plan and skipped candidates with their
reasons, as JSON), each attempt and how it ended, timings, token counts and
the outcome (`traywire.types.OUTCOMES`). No prompt or answer text: a record
carries none.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ..config import APP_NAME, LogSettings
from ..types import OUTCOMES, RequestRecord

__all__ = [
    "ATTEMPT_FIELDS",
    "FILENAME",
    "REQUEST_COLUMNS",
    "SCHEMA_VERSION",
    "Writer",
    "connect",
    "default_path",
    "open_file",
    "path_for",
    "row_of",
]

log = logging.getLogger("traywire")

FILENAME: Final = "requests.sqlite3"
SCHEMA_VERSION: Final = 1
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
# How long one statement waits for another program's write lock: short, so
# that the writer is never long inside one call (it retries the batch later).
WRITER_BUSY_TIMEOUT_S: Final = 2.0
READER_BUSY_TIMEOUT_S: Final = 10.0

REQUEST_COLUMNS: Final = (
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
# A row carries each attempt's fields flat after the request's, in this order:
# model, backend, outcome, error, kind, ms (`types.AttemptRecord`).
ATTEMPT_FIELDS: Final = 6
INSERT_REQUEST: Final = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})"
)
INSERT_ATTEMPT: Final = (
    "INSERT INTO attempts (request_id, n, model, backend, outcome, error, kind, ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

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


# --------------------------------------------------------------------------- where


def data_dir() -> Path:
    """traywire's platformdirs data dir (``~/.local/share/traywire`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_path() -> Path:
    """``requests.sqlite3`` in the data dir."""
    return data_dir() / FILENAME


def path_for(settings: LogSettings) -> Path:
    return Path(settings.path).expanduser() if settings.path else default_path()


# --------------------------------------------------------------------------- opening


def open_file(path: Path) -> None:
    """Make ``path`` ready: its directory and the file there, private (see the
    module docstring), with the schema. Raises OSError / sqlite3.Error."""
    _private_dir(path.parent)
    _private_file(path)
    conn = connect(path, busy_timeout_s=READER_BUSY_TIMEOUT_S)
    try:
        _create_schema(conn)
    finally:
        conn.close()


def _private_dir(directory: Path) -> None:
    if directory.is_dir():
        if directory == data_dir():  # ours, whoever made it
            _tighten(directory, DIR_MODE)
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    directory.mkdir(mode=DIR_MODE, exist_ok=True)
    _tighten(directory, DIR_MODE)


def _private_file(path: Path) -> None:
    # Created with its mode, never readable by others even for a moment.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE))
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if p.exists():
            _tighten(p, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    """Take away every permission ``mode`` does not give (never adds one)."""
    if os.name == "nt":
        return
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        try:
            path.chmod(current & mode)
        except OSError as exc:  # not ours: say so, go on
            log.warning("request log: cannot make %s private: %s", path, exc)


def connect(
    path: str | os.PathLike[str],
    *,
    busy_timeout_s: float,
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """A connection to the log file, in autocommit mode (explicit BEGIN/COMMIT)."""
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_s,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _create_schema(conn: sqlite3.Connection) -> None:
    # auto_vacuum only takes effect before the first table exists: deleted
    # rows then give their pages back with incremental_vacuum.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    # WAL: the dashboard's reads go on while the writer writes.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(_SCHEMA)
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == 0:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    elif version != SCHEMA_VERSION:
        log.warning(
            "request log schema version %s (this traywire writes %s)", version, SCHEMA_VERSION
        )


# --------------------------------------------------------------------------- rows


def row_of(rec: RequestRecord) -> tuple[Any, ...]:
    """The values `Writer.write` inserts for ``rec``, flat: the request's in
    `REQUEST_COLUMNS` order, then `ATTEMPT_FIELDS` per attempt. Plain
    str/int/float/None, so the garbage collector soon stops tracking a row
    waiting in the queue."""
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
        rec.outcome,
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


# --------------------------------------------------------------------------- writing


class Writer:
    """The connection that changes the file (`open_file` made it ready)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = WRITER_BUSY_TIMEOUT_S,
        check_same_thread: bool = True,
    ) -> None:
        self.conn = connect(
            path, busy_timeout_s=busy_timeout_s, check_same_thread=check_same_thread
        )
        try:
            self.conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` (`row_of`) and their attempts in one transaction."""
        if not rows:
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            k, f = len(REQUEST_COLUMNS), ATTEMPT_FIELDS
            conn.executemany(INSERT_REQUEST, [r[:k] for r in rows])
            # Ids are consecutive: one writer, one transaction.
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.executemany(
                INSERT_ATTEMPT,
                [
                    (rid, n, *r[i : i + f])
                    for rid, r in enumerate(rows, last - len(rows) + 1)
                    for n, i in enumerate(range(k, len(r), f), 1)
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def prune(self, now: float, max_age_s: float, max_requests: int) -> int:
        """Delete requests older than ``max_age_s`` and all but the newest
        ``max_requests``, with their attempts; returns how many requests went."""
        conn = self.conn
        cutoff = now - max_age_s
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "DELETE FROM attempts WHERE request_id IN (SELECT id FROM requests WHERE ts < ?)",
                (cutoff,),
            )
            deleted = conn.execute("DELETE FROM requests WHERE ts < ?", (cutoff,)).rowcount
            row = conn.execute(
                "SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET ?", (max_requests,)
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
