"""The request log's SQLite file: where it lives, who may read it, its schema
(and the upgrade of an older file), how a record becomes a row, and the two
statements that change it.

The file and its directory are private: the file (and SQLite's ``-wal`` and
``-shm`` beside it, which SQLite creates with the file's own mode) 0600, a
directory traywire creates 0700, and traywire's data dir 0700 even when it
was there before. Looser modes left by older versions are tightened when the
log opens. (A directory the user named in ``log.path`` that already exists is
the user's business and left alone. Windows: the user's profile is already
private; modes are not used.)

One row per request in ``requests``: the routing decision (plan and skipped
candidates with their reasons, JSON arrays of objects), each attempt and how
it ended (``attempts``: a JSON array of ``[model, backend, outcome, error,
kind, ms]`` arrays, `ATTEMPT_FIELDS`), timings, token counts and the outcome
(`traywire.types.OUTCOMES`). No prompt or answer text: a record carries none.

Schema 2 is built for a cheap insert (README, "Request log"): no index (rows
are in the order they were written, nearly that of ``ts``, so `FIRST_AT`
finds where a time range starts without one), no AUTOINCREMENT (ids still
only grow: ``meta.last_id`` remembers the highest id retention deleted),
attempts inline instead of a table with its own indexes, and up to `CHUNK`
rows bound to one statement, so that the writer thread gives the GIL back
once per chunk, not once per row. A schema-1 file (traywire before issue 17)
is upgraded in place when the log opens, rows kept.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any, Final

import msgspec

from ..config import APP_NAME, LogSettings
from ..types import OUTCOMES, AttemptRecord, RequestRecord

__all__ = [
    "ATTEMPT_FIELDS",
    "CHUNK",
    "FILENAME",
    "FIRST_AT",
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
SCHEMA_VERSION: Final = 2
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
# How long one statement waits for another program's write lock: short, so
# that the writer is never long inside one call (it retries the batch later).
WRITER_BUSY_TIMEOUT_S: Final = 2.0
READER_BUSY_TIMEOUT_S: Final = 10.0

# The columns after ``id``, in `RequestRecord` order: a row is the record's
# values with ``plan``, ``skipped`` and ``attempts`` as JSON text.
REQUEST_COLUMNS: Final[tuple[str, ...]] = RequestRecord._fields
_TYPES: Final = {
    "ts": "REAL NOT NULL",
    "dialect": "TEXT NOT NULL",
    "endpoint": "TEXT NOT NULL",
    "requested": "TEXT NOT NULL",
    "capability": "TEXT",
    "strategy": "TEXT",
    "route": "TEXT",
    "preference": "TEXT NOT NULL",
    "prompt_tokens": "INTEGER NOT NULL",
    "stream": "INTEGER NOT NULL",
    "plan": "TEXT NOT NULL",
    "skipped": "TEXT NOT NULL",
    # a default: a schema-1 traywire (a downgrade) inserts without it
    "attempts": "TEXT NOT NULL DEFAULT '[]'",
    "served_model": "TEXT",
    "served_backend": "TEXT",
    "status": "INTEGER NOT NULL",
    "ttfb_ms": "REAL",
    "total_ms": "REAL NOT NULL",
    "tokens_in": "INTEGER NOT NULL",
    "tokens_out": "INTEGER NOT NULL",
    # one of OUTCOMES: `row_of` checks (a CHECK constraint cost ~15% of the insert)
    "outcome": "TEXT NOT NULL",
    "error": "TEXT NOT NULL",
    "cut": "INTEGER NOT NULL",
    "client_gone": "INTEGER NOT NULL",
}
# Each attempt in the ``attempts`` column: an array of these, in this order.
ATTEMPT_FIELDS: Final[tuple[str, ...]] = AttemptRecord._fields
# Rows bound to one INSERT statement (at most; SQLite's variable limit may
# make it fewer): one GIL release per chunk. Small, so the proxy's loop never
# waits long for the GIL: binding 8 rows holds it ~25 µs (50 rows held it
# ~150 µs, which showed in the proxy's p99 latency), for ~5% more of the
# writer's CPU (bench/bench_reqlog.py).
CHUNK: Final = 8
# the schema-1 objects that schema 2 does without
_V1_INDEXES: Final = (
    "requests_ts",
    "requests_backend",
    "requests_capability",
    "requests_outcome",
)


def _table(name: str) -> str:
    cols = ",\n    ".join(f"{c} {_TYPES[c]}" for c in REQUEST_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    id INTEGER PRIMARY KEY,\n    {cols}\n)"


_SCHEMA: Final = (
    _table("requests"),
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
)


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
    except BaseException:
        conn.close()
        raise
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _create_schema(conn: sqlite3.Connection) -> None:
    # auto_vacuum only takes effect before the first table exists: deleted
    # rows then give their pages back with incremental_vacuum.
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    # WAL: the dashboard's reads go on while the writer writes.
    conn.execute("PRAGMA journal_mode = WAL")
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        log.warning(
            "request log schema version %s (this traywire writes %s)", version, SCHEMA_VERSION
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        cols = _columns(conn, "requests")
        upgraded = bool(cols) and "attempts" not in cols
        if upgraded:
            _upgrade(conn, cols)
        for statement in _SCHEMA:
            conn.execute(statement)
        # a schema-1 traywire that ran on this file since (a downgrade) left
        # its attempts table and indexes: fold them in
        if _columns(conn, "attempts"):
            conn.execute(
                f"UPDATE requests SET attempts = {_attempts_of('requests.id')} "
                "WHERE id IN (SELECT request_id FROM attempts)"
            )
            conn.execute("DROP TABLE attempts")
        for index in _V1_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if upgraded:  # the old tables' pages back to the file system
        conn.execute("BEGIN IMMEDIATE")
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        for _ in range(free):
            # one page per call: Python's sqlite3 steps a statement whose rows
            # have no columns only once
            conn.execute("PRAGMA incremental_vacuum(1)")
        conn.execute("COMMIT")


def _attempts_of(request_id: str) -> str:
    """SQL: the schema-2 ``attempts`` JSON of a request, from a schema-1 attempts table."""
    fields = ", ".join(ATTEMPT_FIELDS)
    return (
        "(SELECT json_group_array(json(a)) FROM (SELECT json_array("
        f"{fields}) AS a FROM attempts WHERE request_id = {request_id} ORDER BY n))"
    )


def _upgrade(conn: sqlite3.Connection, old: list[str]) -> None:
    """A schema-1 file to schema 2, in the caller's transaction: the same
    requests with the same ids, each with its attempts inline."""
    missing = set(REQUEST_COLUMNS) - set(old) - {"attempts"}
    if missing:
        raise sqlite3.DatabaseError(
            f"the request log has an unknown layout (no {', '.join(sorted(missing))})"
        )
    log.info("request log: upgrading the file to schema %d", SCHEMA_VERSION)
    conn.execute(_table("requests_v2"))
    has_attempts = bool(_columns(conn, "attempts"))
    attempts = _attempts_of("r.id") if has_attempts else "'[]'"
    names = ", ".join(REQUEST_COLUMNS)
    values = ", ".join(attempts if c == "attempts" else f"r.{c}" for c in REQUEST_COLUMNS)
    conn.execute(f"INSERT INTO requests_v2 (id, {names}) SELECT r.id, {values} FROM requests AS r")
    # AUTOINCREMENT's highest id ever: ids keep growing from there
    last = 0
    if _columns(conn, "sqlite_sequence"):
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'requests'").fetchone()
        last = int(row[0]) if row else 0
        conn.execute("DELETE FROM sqlite_sequence WHERE name = 'requests'")
    if has_attempts:
        conn.execute("DROP TABLE attempts")
    conn.execute("DROP TABLE requests")
    conn.execute("ALTER TABLE requests_v2 RENAME TO requests")
    conn.execute(_SCHEMA[-1])  # meta
    conn.execute(_KEEP_LAST_ID, (last,))


# --------------------------------------------------------------------------- rows

# how `row_of` sends what may be missing (None), and the SQL that makes it NULL
_NULLABLE: Final = {
    "capability": "NULLIF(?, '')",
    "strategy": "NULLIF(?, '')",
    "route": "NULLIF(?, '')",
    "served_model": "NULLIF(?, '')",
    "served_backend": "NULLIF(?, '')",
    "ttfb_ms": "NULLIF(?, -1.0)",
}
if tuple(_TYPES) != REQUEST_COLUMNS:  # pragma: no cover (row_of unpacks in this order)
    raise ImportError("RequestRecord's fields changed: update logfile (row_of, _TYPES)")

_encode = msgspec.json.Encoder().encode
_OUTCOMES: Final = frozenset(OUTCOMES)


def row_of(rec: RequestRecord, rid: int) -> tuple[Any, ...]:
    """The values `Writer.write` binds for ``rec`` as request ``rid``: the id,
    then the record's in `REQUEST_COLUMNS` order, with the plan, the skipped
    candidates and the attempts as JSON text. ValueError: an outcome that is
    not one of `OUTCOMES`.

    No None and no bool among them: Python's sqlite3 (3.11) sends each through
    its adapter protocol, two failed attribute lookups, ~0.4 µs a value (a
    fifth of the insert). A missing name goes as '' and a missing ttfb as -1,
    which the statement turns into NULL (`_NULLABLE`); bools go as 0/1."""
    (
        ts,
        dialect,
        endpoint,
        requested,
        capability,
        strategy,
        route,
        preference,
        prompt_tokens,
        stream,
        plan,
        skipped,
        attempts,
        served_model,
        served_backend,
        status,
        ttfb_ms,
        total_ms,
        tokens_in,
        tokens_out,
        outcome,
        error,
        cut,
        client_gone,
    ) = rec
    if outcome not in _OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    return (
        rid,
        ts,
        dialect,
        endpoint,
        requested,
        capability or "",
        strategy or "",
        route or "",
        preference,
        prompt_tokens,
        1 if stream else 0,
        _json_of(plan),
        _json_of(skipped),
        _encode(attempts).decode(),
        served_model or "",
        served_backend or "",
        status,
        -1.0 if ttfb_ms is None else ttfb_ms,
        total_ms,
        tokens_in,
        tokens_out,
        outcome,
        error,
        1 if cut else 0,
        1 if client_gone else 0,
    )


_JSON_CACHE: dict[tuple[Any, ...], str] = {}


def _json_of(items: tuple[Any, ...]) -> str:
    """JSON of a plan or skip list (an array of objects). Plans repeat (same
    route, same state), so the text is cached by value; the cache is small and
    cleared when full."""
    text = _JSON_CACHE.get(items)
    if text is None:
        text = json.dumps([i._asdict() for i in items], separators=(",", ":"))
        if len(_JSON_CACHE) >= 256:
            _JSON_CACHE.clear()
        _JSON_CACHE[items] = text
    return text


# --------------------------------------------------------------------------- reading

# SQL: the id of the first row (in the order written) that started at or after
# ``?``; every row that did has this id or a higher one. A scan from the oldest
# row, which stops there.
FIRST_AT: Final = "(SELECT id FROM requests WHERE ts >= ? ORDER BY id LIMIT 1)"


# --------------------------------------------------------------------------- writing

_NEXT_ID: Final = (
    "SELECT max(coalesce((SELECT max(id) FROM requests), 0), "
    "coalesce((SELECT value FROM meta WHERE key = 'last_id'), 0)) + 1"
)
_KEEP_LAST_ID: Final = (
    "INSERT INTO meta (key, value) VALUES ('last_id', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)"
)


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
            width = len(REQUEST_COLUMNS) + 1
            limit = self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except BaseException:
            self.conn.close()
            raise
        self.chunk = max(1, min(CHUNK, limit // width))
        one = f"(?, {', '.join(_NULLABLE.get(c, '?') for c in REQUEST_COLUMNS)})"
        head = f"INSERT INTO requests (id, {', '.join(REQUEST_COLUMNS)}) VALUES "
        # the statement for k rows, k = 1..chunk (SQLite's statement cache keeps them)
        self._insert = [""] + [
            head + ", ".join(itertools.repeat(one, k)) for k in range(1, self.chunk + 1)
        ]

    def close(self) -> None:
        self.conn.close()

    def write(self, records: Sequence[RequestRecord]) -> None:
        """Insert ``records`` in one transaction, `chunk` rows per statement.

        Raises sqlite3.Error: OperationalError when the file cannot be written
        now (locked, full, I/O), another subclass when a record cannot be stored
        (nothing of the batch is written then)."""
        if not records:
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            (rid,) = conn.execute(_NEXT_ID).fetchone()
            k = self.chunk
            for start in range(0, len(records), k):
                part = records[start : start + k]
                try:
                    params = list(chain.from_iterable(map(row_of, part, itertools.count(rid))))
                except Exception as exc:  # not a well-formed record (a bug)
                    raise sqlite3.DataError(
                        f"a record that cannot be stored: {type(exc).__name__}: {exc}"
                    ) from exc
                conn.execute(self._insert[len(part)], params)
                rid += len(part)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def prune(
        self, now: float, max_age_s: float, max_requests: int, *, thorough: bool = True
    ) -> int:
        """Delete requests older than ``max_age_s`` and all but the newest
        ``max_requests``; returns how many went.

        Rows are in the order they were written, which is nearly the order of
        ``ts`` (a request is written when it ends): the oldest rows by id go
        while they are too old, which never looks at a row it keeps. A request
        that took long can sit among newer ones: ``thorough`` also looks at
        every row for those (one scan of the table, ~10 ms at 50,000 rows)."""
        conn = self.conn
        cutoff = now - max_age_s
        conn.execute("BEGIN IMMEDIATE")
        try:
            (top,) = conn.execute("SELECT max(id) FROM requests").fetchone()
            deleted = conn.execute(
                "DELETE FROM requests WHERE id < coalesce("
                "(SELECT id FROM requests WHERE ts >= ? ORDER BY id LIMIT 1), ?)",
                (cutoff, (top or 0) + 1),
            ).rowcount
            if thorough:
                deleted += conn.execute("DELETE FROM requests WHERE ts < ?", (cutoff,)).rowcount
            if top is not None:
                # ids are consecutive (each batch takes max + 1 on): the newest
                # max_requests are the ids above top - max_requests. (Where a
                # thorough pass left a gap, fewer stay. COUNT(*) would read
                # every page of the table: ~1 µs a request.)
                deleted += conn.execute(
                    "DELETE FROM requests WHERE id <= ?", (top - max_requests,)
                ).rowcount
            if deleted > 0 and top is not None:
                # the next id stays above every id ever given, even when every
                # row is gone
                conn.execute(_KEEP_LAST_ID, (top,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if deleted:
            conn.execute("PRAGMA incremental_vacuum")
        return max(0, deleted)
