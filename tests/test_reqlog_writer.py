"""The request log's writer on its own: rows in the file, a full queue, and
nothing lost without saying so: drops counted and warned (at most once per
interval, with counts), a locked file retried, a stuck writer said, a dead
writer thread replaced, the queue written at close (within a bound); the
file and its directory private; retention.

Time that matters (stalls, the warnings' pace) comes from a clock the test
turns by hand; waits are for conditions, never for a wall-clock amount."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from proxy_fixtures import wait_until
from reqlog_helpers import (
    BASE,
    Clock,
    Logs,
    file_count,
    logs,
    make_record,
    settled,
    write_locked,
)

from traywire import config
from traywire.observe import logfile
from traywire.observe.reqlog import RequestLog

__all__ = ["logs"]

posix_modes = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------- writing


def test_records_are_written_by_a_thread_of_this_process(logs: Logs) -> None:
    lg = logs()
    lg.observe(make_record(requested="here"))
    assert lg.flush()
    assert file_count(lg.path) == 1
    with contextlib.closing(sqlite3.connect(lg.path)) as conn:
        (requested, outcome, n) = conn.execute(
            "SELECT requested, outcome, json_array_length(attempts) FROM requests"
        ).fetchone()
    assert (requested, outcome, n) == ("here", "served", 1)
    assert "traywire-request-log" in [t.name for t in threading.enumerate()]
    c = lg.counters()
    assert (c.written, c.dropped, c.failed, c.queued, c.writing) == (1, 0, 0, 0, 0)
    assert c.writer in ("idle", "writing")  # writing: a retention pass


def test_flush_waits_for_the_writer(logs: Logs) -> None:
    lg = settled(logs(busy_timeout_s=60))
    with write_locked(lg.path):
        lg.observe(make_record())
        assert wait_until(lambda: lg.counters().writing == 1)  # it has it, and waits
        assert not lg.flush(0.3)
        assert lg.written == 0
    assert lg.flush()
    # once flush() says so, another connection sees it
    assert file_count(lg.path) == 1 and lg.written == 1


def test_full_queue_drops_the_oldest_without_blocking(logs: Logs) -> None:
    lg = settled(logs(queue_size=5, busy_timeout_s=60))
    with write_locked(lg.path):
        lg.observe(make_record(requested="first"))
        assert wait_until(lambda: lg.counters().writing == 1)
        for i in range(1000):
            lg.observe(make_record(requested=f"r{i}"))
        assert (lg.queued, lg.dropped) == (5, 995)
    assert lg.flush(10)
    names = [r["requested"] for r in logs.queries(lg).recent(100)]
    assert names == ["r999", "r998", "r997", "r996", "r995", "first"]
    assert lg.written == 6


def test_a_refused_record_is_lost_alone_and_said(
    logs: Logs, caplog: pytest.LogCaptureFixture
) -> None:
    lg = settled(logs())
    with contextlib.closing(sqlite3.connect(lg.path)) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON requests WHEN NEW.requested = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'no such thing'); END"
        )
        conn.commit()
    for name in ("fine", "bad", "also fine"):
        lg.observe(make_record(requested=name))
    assert lg.flush()
    assert (lg.failed, lg.written) == (1, 2)
    assert [r["requested"] for r in logs.queries(lg).recent()] == ["also fine", "fine"]
    lg.check()  # or the writer has, after its batch: one of them says it
    assert wait_until(lambda: len(warnings_of(caplog)) == 1)
    [warning] = warnings_of(caplog)
    assert "1 record(s) lost" in warning and "no such thing" in warning


def test_a_record_sqlite_cannot_store_is_lost_alone(logs: Logs) -> None:
    lg = logs()
    lg.observe(make_record(requested="fine"))
    lg.observe(make_record(requested=object()))  # type: ignore[arg-type]
    lg.observe(make_record(requested="also fine"))
    assert lg.flush()
    assert (lg.written, lg.failed) == (2, 1)
    assert [r["requested"] for r in logs.queries(lg).recent()] == ["also fine", "fine"]


# --------------------------------------------------------------------------- nothing lost silently


def test_a_full_queue_is_said_with_counts_at_most_once_per_interval(
    logs: Logs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="traywire")
    mono = Clock(1000.0)
    lg = settled(logs(queue_size=5, busy_timeout_s=60, monotonic=mono, warn_every=30))
    with write_locked(lg.path):  # the writer waits inside one call: it says nothing itself
        lg.observe(make_record(requested="first"))
        assert wait_until(lambda: lg.counters().writing == 1)
        for i in range(20):
            lg.observe(make_record(requested=f"r{i}"))
        lg.check()
        [first] = warnings_of(caplog)
        assert "15 record(s) dropped since the last warning (queue full at 5; 15 in all)" in first
        assert first.endswith("5 queued")
        for i in range(3):
            lg.observe(make_record(requested=f"more{i}"))
        mono.now += 29
        lg.check()
        assert len(warnings_of(caplog)) == 1  # not yet: at most one per 30 s
        mono.now += 1
        lg.check()
        second = warnings_of(caplog)[1]
        assert "3 record(s) dropped since the last warning (queue full at 5; 18 in all)" in second
        s = lg.counters()
        assert (s.queued, s.writing, s.dropped, s.written) == (5, 1, 18, 0)
        assert s.behind_s == 30.0
    assert lg.flush()
    lg.check()
    assert any("writing again" in r.getMessage() for r in caplog.records)
    assert (lg.written, lg.dropped, lg.failed) == (6, 18, 0)
    said = len(warnings_of(caplog))
    mono.now += 60
    lg.check()
    assert len(warnings_of(caplog)) == said  # all well: nothing more to say


def test_a_writer_stuck_in_a_database_call_is_said_and_carries_on(
    logs: Logs, caplog: pytest.LogCaptureFixture
) -> None:
    mono = Clock(1000.0)
    lg = settled(logs(busy_timeout_s=60, stall_after=30, monotonic=mono))
    with write_locked(lg.path):  # like a hung disk: one call that does not return
        lg.observe(make_record(requested="waits"))
        assert wait_until(lambda: lg.counters().writing == 1)
        assert lg.counters().writer == "writing"
        lg.check()
        assert warnings_of(caplog) == []  # slow is not stuck
        mono.now += 31
        assert lg.counters().writer == "stuck"
        lg.check()
        [warning] = warnings_of(caplog)
        assert "stuck in one database call for 31 s" in warning
        for i in range(3):  # the queue keeps taking records meanwhile
            lg.observe(make_record(requested=f"r{i}"))
        assert lg.queued == 3
    assert lg.flush()
    assert (lg.written, lg.dropped, lg.failed, lg.writer_restarts) == (4, 0, 0, 0)
    assert lg.counters().writer == "idle"


def test_a_locked_file_is_retried_until_it_is_free(
    logs: Logs, caplog: pytest.LogCaptureFixture
) -> None:
    lg = settled(logs(busy_timeout_s=0.05, retry_after=0.05))
    with write_locked(lg.path):
        for i in range(10):
            lg.observe(make_record(requested=f"r{i}"))
        assert wait_until(lambda: lg.counters().writer == "retrying")
        c = lg.counters()
        assert c.last_problem is not None and "locked" in c.last_problem
        assert wait_until(lambda: any("cannot write" in w for w in warnings_of(caplog)))
        assert lg.written == 0
    assert lg.flush()
    c = lg.counters()
    assert (c.written, c.dropped, c.failed, c.last_problem) == (10, 0, 0, None)
    assert file_count(lg.path) == 10


def test_a_writer_thread_that_dies_is_replaced_and_logging_resumes(
    logs: Logs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lg = settled(logs())
    real_write = logfile.Writer.write
    calls = []

    def write_once_badly(self: logfile.Writer, rows: Any) -> None:
        calls.append(len(rows))
        if len(calls) == 1:
            raise RuntimeError("a bug in the writer")
        real_write(self, rows)

    monkeypatch.setattr(logfile.Writer, "write", write_once_badly)
    lg.observe(make_record(requested="held by the dead one"))
    assert wait_until(lambda: lg.counters().writer == "dead")
    assert "a bug in the writer" in (lg.counters().last_problem or "")
    lg.observe(make_record(requested="after"))
    lg.check()  # the supervisor's round
    assert lg.writer_restarts == 1
    assert any("started a new one" in w for w in warnings_of(caplog))
    assert lg.flush()
    assert [r["requested"] for r in logs.queries(lg).recent()] == [
        "after",
        "held by the dead one",
    ]
    assert (lg.written, lg.failed, lg.dropped) == (2, 0, 0)
    assert lg.counters().writer != "dead"


def test_close_writes_what_is_queued(logs: Logs) -> None:
    lg = logs(linger=3600)  # the writer would not write these on its own yet
    for i in range(50):
        lg.observe(make_record(requested=f"r{i}"))
    lg.close()
    assert file_count(lg.path) == 50
    assert (lg.written, lg.failed) == (50, 0)
    lg.observe(make_record())  # after close: counted, not written
    assert lg.dropped == 1 and lg.counters().writer == "closed"


def test_close_gives_up_after_its_timeout_and_says_what_is_lost(
    logs: Logs, caplog: pytest.LogCaptureFixture
) -> None:
    lg = settled(logs(busy_timeout_s=60))
    with write_locked(lg.path):
        for i in range(5):
            lg.observe(make_record(requested=f"r{i}"))
        assert wait_until(lambda: lg.counters().writing >= 1)  # in a call that waits
        lg.close(timeout=0.2)
        assert lg.failed == 5 and lg.written == 0
        assert any(
            "5 record(s) not written at exit" in w and "stuck in a database call" in w
            for w in warnings_of(caplog)
        ), warnings_of(caplog)


# --------------------------------------------------------------------------- private files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_modes
def test_a_new_log_and_its_directory_are_private(tmp_path: Path, logs: Logs) -> None:
    old = os.umask(0o022)  # a usual umask: 0644 files, 0755 directories
    try:
        lg = logs("new/dir/requests.sqlite3")
        lg.observe(make_record())
        assert lg.flush()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new" / "dir") == 0o700
    for name in ("requests.sqlite3", "requests.sqlite3-wal", "requests.sqlite3-shm"):
        assert _mode(tmp_path / "new" / "dir" / name) == 0o600, name


@posix_modes
def test_an_old_log_and_the_data_dir_are_made_private() -> None:
    path = logfile.default_path()
    path.parent.mkdir(parents=True, mode=0o755)
    path.parent.chmod(0o755)
    sqlite3.connect(path).close()
    for p in (path, Path(f"{path}-wal")):
        p.touch()
        p.chmod(0o644)
    lg = RequestLog(path)
    try:
        assert _mode(path.parent) == 0o700
        assert _mode(path) == 0o600 and _mode(Path(f"{path}-wal")) == 0o600
    finally:
        lg.close()


@posix_modes
def test_a_directory_the_user_chose_is_left_as_it_is(tmp_path: Path, logs: Logs) -> None:
    mine = tmp_path / "shared"
    mine.mkdir()
    mine.chmod(0o755)
    logs("shared/requests.sqlite3")
    assert _mode(mine) == 0o755
    assert _mode(mine / "requests.sqlite3") == 0o600


# --------------------------------------------------------------------------- retention


def test_retention_by_age(logs: Logs) -> None:
    now = BASE
    clock = Clock(now)
    lg = logs(max_age_days=30, prune_interval=0.05, clock=clock)
    q = logs.queries(lg)
    day = 86400.0
    for ts in (now - 40 * day, now - 31 * day, now - 29 * day, now - day, now):
        lg.observe(make_record(ts))
    assert wait_until(lambda: q.count() == 3)
    assert sorted(r["ts"] for r in q.recent()) == [now - 29 * day, now - day, now]
    # time passes: the 29-day-old one goes too (at the next pass)
    clock.now = now + 2 * day
    assert wait_until(lambda: q.count() == 2)
    # their attempts went with them (in the same row)
    assert [len(r["attempts"]) for r in q.recent()] == [1, 1]
    assert wait_until(lambda: lg.pruned == 3)


def test_retention_by_count_keeps_the_newest(logs: Logs) -> None:
    lg = logs(max_requests=10, prune_interval=3600)
    q = logs.queries(lg)
    for i in range(25):
        lg.observe(make_record(requested=f"r{i}"))
    assert lg.flush()
    # a tenth of max_requests written since the last pass triggers one early
    assert wait_until(lambda: q.count() == 10)
    assert [r["requested"] for r in q.recent(100)] == [f"r{i}" for i in range(24, 14, -1)]
    for i in range(25, 40):
        lg.observe(make_record(requested=f"r{i}"))
    assert lg.flush()
    assert wait_until(lambda: q.count() == 10)
    assert q.recent(1)[0]["requested"] == "r39"


def test_log_settings_reach_the_log(tmp_path: Path) -> None:
    s = config.LogSettings(max_age_days=2, max_requests=7, path=str(tmp_path / "x.sqlite3"))
    lg = RequestLog.from_settings(s)
    try:
        assert (lg.max_age_s, lg.max_requests, lg.path) == (2 * 86400, 7, tmp_path / "x.sqlite3")
    finally:
        lg.close()
    assert logfile.path_for(config.LogSettings()) == logfile.default_path()
    assert logfile.default_path().name == "requests.sqlite3"
    assert "traywire" in str(logfile.default_path())
