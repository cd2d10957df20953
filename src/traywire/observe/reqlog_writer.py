"""The request log's writer: the statements that change the file, and the child
process that runs them for `traywire.reqlog`.

`Writer` holds one SQLite connection and does the two things that change the
file: insert a batch of rows (one transaction, one ``executemany`` per table)
and a retention pass. `main` is the writer *process*: the request log starts it
(``python -I -c <bootstrap> <package dir> <file>``), sends it commands on its
stdin and reads the answers on its stdout, one answer per command, in order.
Where no child can be had, the request log runs a `Writer` in its own thread.

This module imports only the standard library, so the child loads nothing else.

Both directions carry frames: a 4-byte little-endian length, then a `marshal`
payload (the parent and the child run the same interpreter)::

    parent -> child   ("w", rows)                          insert rows, one transaction
                      ("p", now, max_age_s, max_requests)  retention pass
    child -> parent   ("ready", pid)                       once, after the file opened
                      ("ok", n)                            rows written / requests deleted
                      ("err", message)                     nothing written (or deleted)

A row is flat: the request's values in `REQUEST_COLUMNS` order, then its
attempts' values, `ATTEMPT_FIELDS` (6) per attempt: ``model, backend, outcome,
error, kind, ms``. The parent
marshals each row on its own as it comes (`dump_row`: version 2, which has no
back-references, so marshalled rows can be spliced) and a batch's frame is
spliced from them (`rows_frame`) without decoding anything.

The child exits when its stdin ends: when the parent closes it, or when the
parent dies however it dies (the OS closes the pipe), so it is never left
behind. It ignores SIGINT: a Ctrl-C in a terminal reaches the whole process
group, and the parent, which shuts down gracefully on it, still needs the
child to write what is queued.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from typing import IO, Any, Final

__all__ = [
    "ATTEMPT_FIELDS",
    "INSERT_ATTEMPT",
    "INSERT_REQUEST",
    "REQUEST_COLUMNS",
    "Writer",
    "connect",
    "dump_row",
    "main",
    "receive",
    "rows_frame",
    "send",
]

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
INSERT_REQUEST: Final = (
    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})"
)
ATTEMPT_FIELDS: Final = 6
INSERT_ATTEMPT: Final = (
    "INSERT INTO attempts (request_id, n, model, backend, outcome, error, kind, ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A frame longer than this is not ours: the stream is out of step.
_MAX_FRAME: Final = 1 << 30
# marshal version of a row: 2 has no back-references (3 added them), so rows
# marshalled one by one can be put together into one frame.
ROW_VERSION: Final = 2
_W_TAG: Final = b"(" + (2).to_bytes(4, "little") + marshal.dumps("w", ROW_VERSION) + b"["


def dump_row(row: tuple[Any, ...]) -> bytes:
    """One row, marshalled on its own (`ROW_VERSION`)."""
    return marshal.dumps(row, ROW_VERSION)


def rows_frame(rows: Sequence[bytes]) -> bytes:
    """The payload of ``("w", [row, ...])`` from rows marshalled by `dump_row`:
    a marshal tuple of the tag and a list, spliced by hand (no decoding)."""
    return _W_TAG + len(rows).to_bytes(4, "little") + b"".join(rows)


def connect(path: str | os.PathLike[str], *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection to the log file, in autocommit mode (explicit BEGIN/COMMIT)."""
    conn = sqlite3.connect(
        path, timeout=10.0, isolation_level=None, check_same_thread=check_same_thread
    )
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


class Writer:
    """The connection that writes the log (the schema is already there)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.conn = connect(path)
        try:
            self.conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` and their attempts in one transaction."""
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

    def handle(self, command: Sequence[Any]) -> tuple[str, Any]:
        """Run one command (see the module docstring) and return its answer."""
        try:
            if command[0] == "w":
                self.write(command[1])
                return ("ok", len(command[1]))
            if command[0] == "p":
                return ("ok", self.prune(float(command[1]), float(command[2]), int(command[3])))
            return ("err", f"unknown command {command[0]!r}")
        except Exception as exc:  # a bad row or a bad disk: answer, never die
            return ("err", f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- frames


def send(out: IO[bytes], message: Any) -> None:
    """Write one frame (``message`` marshalled, or a payload already) and flush it."""
    data = message if isinstance(message, bytes) else marshal.dumps(message)
    out.write(len(data).to_bytes(4, "little"))
    out.write(data)
    out.flush()


def receive(inp: IO[bytes]) -> Any:
    """Read one frame; None at the end of the stream (a cut frame is the end too)."""
    head = inp.read(4)
    if len(head) < 4:
        return None
    size = int.from_bytes(head, "little")
    if size > _MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    data = inp.read(size)
    if len(data) < size:
        return None
    return marshal.loads(data)


# --------------------------------------------------------------------------- the child


def main(argv: Sequence[str] | None = None) -> int:
    """The writer process: ``main([path])``, commands on stdin, answers on stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: reqlog_writer <sqlite file>", file=sys.stderr)
        return 2
    with contextlib.suppress(ValueError, OSError, AttributeError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Writing the log can wait: the proxy, its clients and local models come
    # first for the CPU (on a 2-core machine its bursts of inserts otherwise
    # show up in the proxy's tail latency). Not on Windows (no os.nice).
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    # Anything printed by mistake must not land between two frames.
    sys.stdout = sys.stderr
    try:
        try:
            writer = Writer(args[0])
        except Exception as exc:
            send(out, ("err", f"cannot open {args[0]}: {type(exc).__name__}: {exc}"))
            return 1
        try:
            send(out, ("ready", os.getpid()))
            while True:
                command = receive(inp)
                if command is None:
                    return 0
                send(out, writer.handle(command))
        finally:
            writer.close()
    except (OSError, ValueError, EOFError):  # the parent is gone (or out of step)
        return 0


if __name__ == "__main__":
    sys.exit(main())
