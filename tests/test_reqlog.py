"""The request log: what each kind of request leaves behind (driven through the
real proxy against fakes), retention, a blocked writer never slowing a request,
the writer process (it writes, flush waits for it, it dies with its parent, the
in-process fallback), usage surviving a restart, the queries, and the config
section.

A writer is "blocked" by holding the file's write lock from another connection
(its ``BEGIN IMMEDIATE`` waits up to the 10 s busy timeout), which works the
same for the writer process and the in-process one, or by stopping the process
(SIGSTOP)."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes import FakeBackend
from harness import ProxyThread
from proxy_fixtures import (
    USER,
    clients,
    fakes,
    make_config,
    model,
    ollama_backend,
    openai_backend,
    proxies,
    raw,
    wait_until,
)

from traywire import config
from traywire.config import Config
from traywire.errors import ConfigError
from traywire.observe import reqlog, reqlog_writer
from traywire.observe.reqlog import RequestLog
from traywire.proxy.health import Health
from traywire.types import Attempt, AttemptRecord, RequestRecord, Skip

__all__ = ["clients", "fakes", "proxies"]


# --------------------------------------------------------------------------- helpers


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
        error=error,
        cut=cut,
        client_gone=client_gone,
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Any]:
    """``logs(**kwargs)`` -> a RequestLog in tmp_path, closed at teardown."""
    opened: list[RequestLog] = []

    def make(name: str = "requests.sqlite3", **kwargs: Any) -> RequestLog:
        kwargs.setdefault("clock", Clock(BASE + 60))
        lg = RequestLog(tmp_path / name, **kwargs)
        opened.append(lg)
        return lg

    yield make
    for lg in opened:
        lg.close()


def wait_count(lg: RequestLog, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Wait until the log holds ``n`` requests (records are observed after the
    response, so a client can be done a moment before its record is queued)."""
    assert wait_until(lambda: lg.flush(1) and lg.count() >= n, timeout), (lg, lg.count())
    rows = lg.recent(100)
    assert len(rows) == n, rows
    return rows


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


def settled(lg: RequestLog) -> RequestLog:
    """Wait until the writer has done its first retention pass (it runs one at
    start), so that the next thing it does is write what is observed."""
    assert wait_until(lambda: lg.prune_passes >= 1 and lg.flush(1)), lg.stats()
    return lg


def file_count(path: Path) -> int:
    """Requests in the file, read by a connection of our own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (n,) = conn.execute("SELECT COUNT(*) FROM requests").fetchone()
    return int(n)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not reaped, does not)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


posix_only = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="POSIX signals")
WRITERS = pytest.mark.parametrize("writer", ["process", "thread"])


# --------------------------------------------------------------------------- through the proxy


@dataclass
class Logged:
    fo: FakeBackend  # backend "a" (Ollama), model "one"
    fv: FakeBackend  # backend "b" (OpenAI), model "two", one's fallback
    p: ProxyThread
    oc: openai.OpenAI
    log: RequestLog
    path: Path


def _cfg(fo: FakeBackend, fv: FakeBackend, path: Path, **log: Any) -> Config:
    return make_config(
        {"a": ollama_backend(fo), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "two": model("b", "M2")},
        fallbacks={"one": ["two"], "two": ["one"]},
        log={"path": str(path), **log},
    )


@pytest.fixture
def logged(fakes: Any, proxies: Any, clients: Any, tmp_path: Path) -> Logged:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    path = tmp_path / "log" / "requests.sqlite3"
    p = proxies(_cfg(fo, fv, path))
    lg = reqlog.attached(p.rt)
    assert lg is not None and lg.path == path
    return Logged(fo, fv, p, clients.openai(p), lg, path)


def _stream_body(model_name: str = "one") -> dict[str, Any]:
    return {"model": model_name, "messages": USER, "stream": True}


def _post(p: ProxyThread, path: str, body: bytes) -> tuple[int, Any]:
    host, port = p.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_requests_refused_before_routing_are_logged_too(logged: Logged) -> None:
    """A bad body or an unknown model never reaches a backend, but the user
    sees it in the log (and the dashboard) with the reason it was refused."""
    p = logged.p
    assert _post(p, "/v1/chat/completions", b"{not json")[0] == 400
    status, err = _post(
        p, "/api/chat", json.dumps({"model": "nope", "messages": USER, "stream": True}).encode()
    )
    assert status == 404 and "unknown model 'nope'" in err["error"]
    assert _post(p, "/v1/chat/completions", json.dumps({"model": "one"}).encode())[0] == 400
    rows = wait_count(logged.log, 3)
    missing, unknown, bad_json = rows  # newest first
    assert (bad_json["status"], bad_json["dialect"], bad_json["requested"]) == (400, "openai", "")
    assert bad_json["error"].startswith("invalid JSON")
    assert (unknown["status"], unknown["dialect"], unknown["endpoint"]) == (
        404,
        "ollama",
        "/api/chat",
    )
    assert (unknown["requested"], unknown["stream"]) == ("nope", True)
    assert "unknown model 'nope'" in unknown["error"]
    assert missing["requested"] == "one" and "messages" in missing["error"]
    for r in rows:
        assert r["outcome"] == "client_error"
        assert r["plan"] == [] and r["attempts"] == [] and r["served_backend"] is None
        assert r["capability"] is None and r["ttfb_ms"] is None and r["total_ms"] >= 0
    assert not any(q.path == "/api/chat" for q in logged.fo.requests)  # nothing forwarded
    assert not any(q.path.endswith("/chat/completions") for q in logged.fv.requests)
    metrics = http.client.HTTPConnection("127.0.0.1", p.server.port, timeout=10)
    metrics.request("GET", "/metrics")
    text = metrics.getresponse().read().decode()
    metrics.close()
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("traywire_requests_total{") and 'outcome="client_error"' in line
    ]
    assert counted and counted[0].endswith(" 3.0"), counted


def test_served_first_try(logged: Logged) -> None:
    resp = logged.oc.chat.completions.create(model="one", messages=USER)
    [r] = wait_count(logged.log, 1)
    assert r["outcome"] == "served"
    assert (r["served_model"], r["served_backend"], r["status"]) == ("one", "a", 200)
    assert (r["dialect"], r["endpoint"], r["requested"]) == (
        "openai",
        "/v1/chat/completions",
        "one",
    )
    assert r["stream"] is False and r["cut"] is False and r["client_gone"] is False
    assert r["error"] == ""
    assert resp.usage is not None
    assert (r["tokens_in"], r["tokens_out"]) == (
        resp.usage.prompt_tokens,
        resp.usage.completion_tokens,
    )
    assert r["prompt_tokens"] > 0
    assert r["ttfb_ms"] is not None and 0 < r["ttfb_ms"] <= r["total_ms"]
    assert abs(r["ts"] - time.time()) < 60
    # the plan, with its reasons
    assert [(a["model"], a["backend"], a["upstream_model"]) for a in r["plan"]] == [
        ("one", "a", "m1"),
        ("two", "b", "M2"),
    ]
    assert all(a["reason"] for a in r["plan"])
    assert r["skipped"] == []
    [a] = r["attempts"]
    assert (a["n"], a["model"], a["backend"], a["outcome"], a["error"], a["kind"]) == (
        1,
        "one",
        "a",
        "served",
        "",
        "",
    )
    assert a["ms"] > 0
    assert logged.log.get(r["id"]) == r
    assert logged.log.get(r["id"] + 1000) is None


def test_failover_then_served(logged: Logged) -> None:
    logged.fo.status(500)
    logged.oc.chat.completions.create(model="one", messages=USER)
    [r] = wait_count(logged.log, 1)
    assert r["outcome"] == "served"
    assert (r["served_model"], r["served_backend"], r["status"]) == ("two", "b", 200)
    first, second = r["attempts"]
    assert (first["n"], first["backend"], first["outcome"], first["kind"]) == (
        1,
        "a",
        "failed",
        "server_error",
    )
    assert "HTTP 500" in first["error"]
    assert (second["n"], second["backend"], second["outcome"], second["kind"]) == (
        2,
        "b",
        "served",
        "",
    )


def test_all_failed(logged: Logged) -> None:
    logged.fo.status(500)
    logged.fv.refuse()
    with pytest.raises(openai.InternalServerError):
        logged.oc.chat.completions.create(model="one", messages=USER)
    [r] = wait_count(logged.log, 1)
    assert r["outcome"] == "failed"
    assert r["status"] == 503
    assert r["served_backend"] is None and r["served_model"] is None
    assert r["error"] == "all attempts failed"
    assert [(a["backend"], a["outcome"], a["kind"]) for a in r["attempts"]] == [
        ("a", "failed", "server_error"),
        ("b", "failed", "refused"),
    ]
    assert all(a["error"] for a in r["attempts"])


def test_client_error_is_recorded_as_such(logged: Logged) -> None:
    logged.fo.status(401, body={"error": "backend says no"})
    with pytest.raises(openai.AuthenticationError):
        logged.oc.chat.completions.create(model="one", messages=USER)
    [r] = wait_count(logged.log, 1)
    assert r["outcome"] == "client_error"
    assert r["status"] == 401
    assert "backend says no" in r["error"]
    [a] = r["attempts"]
    assert (a["backend"], a["outcome"], a["kind"]) == ("a", "failed", "client_error")
    assert logged.fv.request_count == 0


def test_stream_cut_midway(logged: Logged) -> None:
    logged.fo.cut_after(3)
    got = raw(logged.p, "POST", "/v1/chat/completions", _stream_body())
    assert got.status == 200
    [r] = wait_count(logged.log, 1)
    assert r["outcome"] == "cut"
    assert r["cut"] is True and r["stream"] is True
    assert (r["served_backend"], r["served_model"]) == ("a", "one")
    assert r["error"]
    [a] = r["attempts"]
    assert (a["backend"], a["outcome"]) == ("a", "served")
    assert logged.fv.request_count == 0


def test_client_disconnect(logged: Logged) -> None:
    logged.fo.chunk_delay = 0.3
    conn = http.client.HTTPConnection("127.0.0.1", logged.p.server.port, timeout=10)
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(_stream_body()),
        headers={"Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.fp is not None
    assert resp.fp.readline()  # the stream has started
    conn.close()  # the client goes away mid-stream
    [r] = wait_count(logged.log, 1)
    assert r["outcome"] == "cancelled"
    assert r["client_gone"] is True
    assert r["status"] == 499
    assert r["served_backend"] is None
    # the attempt under way when the client left is there, and says so
    [a] = r["attempts"]
    assert (a["backend"], a["outcome"], a["error"]) == ("a", "cancelled", "the client went away")
    assert logged.fo.wait_for_disconnect(3), "the upstream request must be closed too"


def test_no_prompt_or_answer_text_is_stored(logged: Logged) -> None:
    secret = "zebra-kumquat-7781"
    logged.fo.reply = f"answer {secret}-reply"
    messages = [{"role": "user", "content": f"please keep {secret} private"}]
    logged.oc.chat.completions.create(model="one", messages=messages)
    raw(logged.p, "POST", "/v1/chat/completions", {**_stream_body(), "messages": messages})
    wait_count(logged.log, 2)
    logged.p.stop()  # closes the log: everything is in the files now
    files = [f for f in logged.path.parent.iterdir() if f.name.startswith(logged.path.name)]
    assert files
    for f in files:
        assert secret.encode() not in f.read_bytes(), f


def test_records_are_not_slowed_by_a_blocked_writer(
    fakes: Any, proxies: Any, clients: Any, tmp_path: Path
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    path = tmp_path / "requests.sqlite3"
    p = proxies(_cfg(fo, fv, path))
    lg = reqlog.attached(p.rt)
    assert lg is not None
    oc = clients.openai(p)
    oc.chat.completions.create(model="one", messages=USER)  # warm up the connection
    wait_count(lg, 1)
    settled(lg)
    assert lg.writer == "process" and lg.writer_pid not in (None, os.getpid())
    with write_locked(path):
        oc.chat.completions.create(model="one", messages=USER)
        assert wait_until(lambda: lg.in_flight == 1), "the writer should have that record"
        took = []
        for _ in range(20):
            t0 = time.monotonic()
            oc.chat.completions.create(model="one", messages=USER)
            took.append(time.monotonic() - t0)
        assert max(took) < 1.0, took
        assert lg.written == 1
        assert lg.count() == 1  # reads go on
        assert wait_until(lambda: lg.queued == 20)
    assert lg.flush(10)
    assert lg.count() == 22 and lg.written == 22 and lg.dropped == 0


# --------------------------------------------------------------------------- the queue


@WRITERS
def test_full_queue_drops_the_oldest_without_blocking(logs: Any, writer: str) -> None:
    lg = settled(logs(queue_size=5, writer=writer))
    with write_locked(lg.path):
        lg.observe(make_record(requested="first"))
        assert wait_until(lambda: lg.in_flight == 1)
        t0 = time.monotonic()
        for i in range(1000):
            lg.observe(make_record(requested=f"r{i}"))
        assert time.monotonic() - t0 < 0.5
        assert lg.queued == 5
        assert lg.dropped == 995
    assert lg.flush(10)
    names = [r["requested"] for r in lg.recent(100)]
    assert names == ["r999", "r998", "r997", "r996", "r995", "first"]
    assert lg.written == 6
    assert lg.writer == writer


@WRITERS
def test_a_failed_write_loses_that_batch_only(
    logs: Any, writer: str, caplog: pytest.LogCaptureFixture
) -> None:
    lg = logs(writer=writer)
    with contextlib.closing(sqlite3.connect(lg.path)) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON requests WHEN NEW.requested = 'lost' "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
        conn.commit()
    lg.observe(make_record(requested="lost"))
    assert lg.flush()
    lg.observe(make_record(requested="kept"))
    assert lg.flush()
    assert (lg.failed, lg.written) == (1, 1)
    assert [r["requested"] for r in lg.recent()] == ["kept"]
    assert "disk I/O error" in caplog.text
    assert lg.writer == writer  # a failed write is not a failed writer


def test_a_record_marshal_cannot_carry_fails_alone(logs: Any) -> None:
    lg = logs()
    lg.observe(make_record(requested="fine"))
    lg.observe(make_record(requested=object()))  # type: ignore[arg-type]
    lg.observe(make_record(requested="also fine"))
    assert lg.flush()
    assert (lg.written, lg.failed) == (2, 1)
    assert [r["requested"] for r in lg.recent()] == ["also fine", "fine"]
    assert lg.writer == "process"


# --------------------------------------------------------------------------- the writer process


def test_the_writer_process_writes(logs: Any) -> None:
    lg = logs()
    lg.observe(make_record(requested="here"))
    assert lg.flush()
    pid = lg.writer_pid
    assert lg.writer == "process" and pid is not None and pid != os.getpid() and alive(pid)
    assert lg.writer_start_ms is not None and lg.writer_start_ms < 5000
    assert lg._local is None  # nothing in this process ever opened the file to write
    assert file_count(lg.path) == 1
    with contextlib.closing(sqlite3.connect(lg.path)) as conn:
        (requested, n) = conn.execute(
            "SELECT requested, (SELECT COUNT(*) FROM attempts WHERE request_id = id) FROM requests"
        ).fetchone()
    assert (requested, n) == ("here", 1)
    assert lg.stats()["writer_pid"] == pid


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priorities here")
def test_the_writer_process_yields_the_cpu(logs: Any) -> None:
    """It runs at a lower priority than the proxy (10 niceness steps, capped at 19)."""
    lg = logs()
    lg.observe(make_record(requested="here"))
    assert lg.flush()
    pid = lg.writer_pid
    assert pid is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + 10)


def test_flush_waits_for_the_writer_process(logs: Any) -> None:
    lg = settled(logs())
    with write_locked(lg.path):
        lg.observe(make_record())
        assert wait_until(lambda: lg.in_flight == 1)  # the child has it, and waits
        assert not lg.flush(0.3)
        assert lg.written == 0
    assert lg.flush()
    # once flush() says so, another connection sees it: no waiting
    assert file_count(lg.path) == 1 and lg.written == 1 and lg.in_flight == 0


def test_the_writer_process_exits_when_the_log_closes(logs: Any) -> None:
    lg = logs()
    lg.observe(make_record())
    assert lg.flush()
    pid, child = lg.writer_pid, lg._child
    assert pid is not None and child is not None
    lg.close()
    assert child.popen.returncode == 0  # it exited on its own, and was reaped
    assert not alive(pid)
    assert lg.writer_pid is None
    assert file_count(lg.path) == 1


_PARENT = """
import sys, time
sys.path[:0] = [sys.argv[1]]
from traywire.observe.reqlog import RequestLog
from traywire.types import RequestRecord
lg = RequestLog(sys.argv[2])
rec = RequestRecord(
    ts=time.time(), dialect="openai", endpoint="/v1/chat/completions", requested="one",
    capability="chat", strategy=None, route=None, preference="auto", prompt_tokens=1,
    stream=False, plan=(), skipped=(), attempts=(), served_model="one", served_backend="a",
    status=200, ttfb_ms=1.0, total_ms=2.0, tokens_in=1, tokens_out=1, error="", cut=False,
    client_gone=False,
)
lg.observe(rec)
assert lg.flush()
print(lg.writer_pid, flush=True)
while True:
    lg.observe(rec)
    time.sleep(0.01)
"""


@posix_only
def test_the_writer_process_dies_with_a_killed_parent(tmp_path: Path) -> None:
    src = str(Path(reqlog.__file__).resolve().parents[2])
    path = tmp_path / "requests.sqlite3"
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_PARENT), src, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = None
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), line
        child = int(line)
        assert child != parent.pid and alive(child)
        time.sleep(0.5)  # a batch or two more, maybe mid-write: no matter
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert wait_until(lambda: not alive(child), 5), "the writer outlived its parent"
        assert file_count(path) >= 1
    finally:
        parent.kill()
        parent.wait(5)
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)


def _fail_to_launch(path: Path) -> subprocess.Popen[bytes]:
    raise OSError("no processes left")


def _launch_a_dud(path: Path) -> subprocess.Popen[bytes]:
    """A 'writer' that exits before saying it is ready."""
    return subprocess.Popen(
        [sys.executable, "-c", "raise SystemExit(3)"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


@pytest.mark.parametrize("launcher", [_fail_to_launch, _launch_a_dud])
def test_falls_back_to_the_thread_when_no_child_starts(
    logs: Any, launcher: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(reqlog, "_launch_writer", launcher)
    lg = logs()
    lg.observe(make_record(requested="a"))
    assert lg.flush()
    lg.observe(make_record(requested="b"))
    assert lg.flush()
    assert lg.writer == "thread" and lg.writer_pid is None
    assert (lg.written, lg.failed) == (2, 0)
    assert [r["requested"] for r in lg.recent()] == ["b", "a"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "writing in-process instead" in warnings[0].getMessage()
    lg.close()
    assert lg.written == 2


def test_falls_back_to_the_thread_when_the_child_dies_with_a_batch(
    logs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    lg = settled(logs())
    lg.observe(make_record(requested="before"))
    assert lg.flush()
    child = lg._child
    assert child is not None
    with write_locked(lg.path):
        lg.observe(make_record(requested="with the child"))
        assert wait_until(lambda: lg.in_flight == 1)
        child.popen.kill()  # dies holding a batch it has not written
        assert wait_until(lambda: lg.writer == "thread")
        lg.observe(make_record(requested="after"))
    assert lg.flush()
    assert lg.writer_pid is None and not alive(child.pid)
    # nothing that could be written was lost: the dead child's batch was written here
    assert [r["requested"] for r in lg.recent()] == ["after", "with the child", "before"]
    assert (lg.written, lg.failed, lg.dropped) == (3, 0, 0)
    assert "writer process exited" in caplog.text and "writing in-process instead" in caplog.text


@posix_only
def test_a_stopped_writer_process_does_not_slow_observe(logs: Any) -> None:
    lg = settled(logs(queue_size=1000))
    pid = lg.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        lg.observe(make_record(requested="stuck"))
        assert wait_until(lambda: lg.in_flight == 1)  # sent; the answer never comes
        worst, t0 = 0.0, time.perf_counter()
        for i in range(5000):
            t1 = time.perf_counter()
            lg.observe(make_record(requested=f"r{i}"))
            worst = max(worst, time.perf_counter() - t1)
        total = time.perf_counter() - t0
        assert total < 1.0 and worst < 0.1, (total, worst)
        assert (lg.queued, lg.dropped) == (1000, 4000)
        assert not lg.flush(0.3)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert lg.flush()
    assert lg.count() == 1001 and lg.writer == "process"


def test_close_kills_a_stuck_writer_process(logs: Any, caplog: pytest.LogCaptureFixture) -> None:
    lg = settled(logs())
    child = lg._child
    assert child is not None
    with write_locked(lg.path):  # the child will wait up to 10 s
        lg.observe(make_record())
        assert wait_until(lambda: lg.in_flight == 1)
        t0 = time.monotonic()
        lg.close(timeout=0.5)
        assert time.monotonic() - t0 < 5
        assert child.popen.poll() is not None and not alive(child.pid)
    assert not lg._thread.is_alive()
    assert (lg.written, lg.failed) == (0, 1)
    assert "did not finish" in caplog.text


# --------------------------------------------------------------------------- retention


def test_retention_by_age(logs: Any, tmp_path: Path) -> None:
    now = 1_800_000_000.0
    clock = Clock(now)
    lg = logs(max_age_days=30, prune_interval=0.05, clock=clock)
    day = 86400.0
    for ts in (now - 40 * day, now - 31 * day, now - 29 * day, now - day, now):
        lg.observe(make_record(ts))
    assert wait_until(lambda: lg.count() == 3)
    assert sorted(r["ts"] for r in lg.recent()) == [now - 29 * day, now - day, now]
    # time passes: the 29-day-old one goes too
    clock.now = now + 2 * day
    lg.prune_soon()
    assert wait_until(lambda: lg.count() == 2)
    # attempts of deleted requests are deleted with them
    with sqlite3.connect(lg.path) as conn:
        (orphans,) = conn.execute(
            "SELECT COUNT(*) FROM attempts WHERE request_id NOT IN (SELECT id FROM requests)"
        ).fetchone()
        (attempts,) = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()
    assert (orphans, attempts) == (0, 2)
    assert lg.pruned == 3


def test_retention_by_count_keeps_the_newest(logs: Any) -> None:
    lg = logs(max_requests=10, prune_interval=3600)
    for i in range(25):
        lg.observe(make_record(requested=f"r{i}"))
    assert lg.flush()
    # a tenth of max_requests written since the last pass triggers one early
    assert wait_until(lambda: lg.count() == 10)
    assert [r["requested"] for r in lg.recent(100)] == [f"r{i}" for i in range(24, 14, -1)]
    for i in range(25, 40):
        lg.observe(make_record(requested=f"r{i}"))
    assert lg.flush()
    assert wait_until(lambda: lg.count() == 10)
    assert lg.recent(1)[0]["requested"] == "r39"


def test_log_settings_reach_the_log(tmp_path: Path) -> None:
    s = config.LogSettings(max_age_days=2, max_requests=7, path=str(tmp_path / "x.sqlite3"))
    lg = RequestLog.from_settings(s)
    try:
        assert (lg.max_age_s, lg.max_requests, lg.path) == (2 * 86400, 7, tmp_path / "x.sqlite3")
    finally:
        lg.close()
    assert reqlog.path_for(config.LogSettings()) == reqlog.default_path()
    assert reqlog.default_path().name == "requests.sqlite3"
    assert "traywire" in str(reqlog.default_path())


# --------------------------------------------------------------------------- usage across restarts


def test_usage_survives_a_restart(fakes: Any, proxies: Any, clients: Any, tmp_path: Path) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    cfg = _cfg(fo, fv, tmp_path / "requests.sqlite3")
    p1 = proxies(cfg)
    oc = clients.openai(p1)
    oc.chat.completions.create(model="one", messages=USER)
    oc.chat.completions.create(model="two", messages=USER)
    raw(p1, "POST", "/v1/chat/completions", _stream_body("one"))
    lg1 = reqlog.attached(p1.rt)
    assert lg1 is not None
    wait_count(lg1, 3)
    before = p1.call(p1.rt.health.usage, time.monotonic())
    assert before["one"] > 0 and before["two"] > 0
    p1.stop()
    assert reqlog.attached(p1.rt) is None  # detached and closed at shutdown

    p2 = proxies(cfg)
    after = p2.call(p2.rt.health.usage, time.monotonic())
    assert after == before
    assert dict(p2.call(p2.rt.snapshot).usage) == before


def test_seed_usage_places_tokens_where_they_happened(logs: Any) -> None:
    now = 1_800_000_000.0
    lg = logs(clock=Clock(now))
    lg.observe(make_record(now - 100, served=("x", "a"), total_ms=1000, tokens=(10, 5)))
    lg.observe(make_record(now - 3500, served=("y", "b"), total_ms=0, tokens=(4, 3)))
    lg.observe(make_record(now - 4000, served=("x", "a"), tokens=(100, 100)))  # too old
    lg.observe(make_record(now - 50, served=None, status=503, tokens=(0, 0)))  # nothing served
    lg.observe(make_record(now - 20, served=("x", "a"), tokens=(0, 0)))  # no tokens
    assert lg.flush()
    health = Health(["a", "b"], usage_window_s=3600, usage_bucket_s=60)
    mono = 1000.0
    seeded = reqlog.seed_usage(health, lg, now, mono, 3600)
    assert seeded == 22
    assert health.usage(mono) == {"x": 15, "y": 7}
    # y finished 3500 s ago: it leaves the window about 100 s (+ one bucket) from now
    assert health.usage(mono + 161) == {"x": 15}
    assert health.usage(mono + 3600 + 61) == {}
    assert lg.usage_since(now - 3600) == {"x": 15, "y": 7}
    assert lg.usage_since(now - 200) == {"x": 15}


# --------------------------------------------------------------------------- queries


def test_recent_filters_and_pages(logs: Any) -> None:
    lg = logs()
    failed = (
        AttemptRecord("one", "a", "failed", "HTTP 500", "server_error", 3.0),
        AttemptRecord("two", "b", "served", ms=9.0),
    )
    lg.observe(make_record(BASE + 1, capability="code"))  # id 1: a, served
    lg.observe(make_record(BASE + 2, served=("two", "b"), attempts=failed))  # id 2: a failed, b
    lg.observe(make_record(BASE + 3, served=None, status=503, attempts=failed[:1]))  # id 3
    lg.observe(make_record(BASE + 4, served=None, status=400, attempts=()))  # id 4
    lg.observe(make_record(BASE + 5, cut=True))  # id 5
    lg.observe(make_record(BASE + 6, served=None, client_gone=True, status=499, attempts=()))
    assert lg.flush()
    ids = [r["id"] for r in lg.recent()]
    assert ids == [6, 5, 4, 3, 2, 1]
    assert [r["outcome"] for r in lg.recent()] == [
        "cancelled",
        "cut",
        "client_error",
        "failed",
        "served",
        "served",
    ]
    assert [r["id"] for r in lg.recent(2)] == [6, 5]
    assert [r["id"] for r in lg.recent(2, before_id=5)] == [4, 3]
    assert [r["id"] for r in lg.recent(backend="b")] == [2]
    assert [r["id"] for r in lg.recent(backend="a")] == [5, 3, 2, 1]
    assert [r["id"] for r in lg.recent(capability="code")] == [1]
    assert [r["id"] for r in lg.recent(outcome="served")] == [2, 1]
    assert [r["id"] for r in lg.recent(outcome="served", backend="a", before_id=2)] == [1]
    two = lg.get(2)
    assert two is not None
    assert [(a["n"], a["backend"], a["outcome"], a["kind"]) for a in two["attempts"]] == [
        (1, "a", "failed", "server_error"),
        (2, "b", "served", ""),
    ]
    assert two["skipped"] == [
        {"model": "three", "backend": "c", "reason": "cloud under local_only"}
    ]
    with pytest.raises(ValueError):
        lg.recent(outcome="bogus")
    with pytest.raises(ValueError):
        lg.recent(0)


def test_latency_series(logs: Any) -> None:
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 60)
    lg = logs(clock=Clock(t0 + 179))
    for ms in (100.0, 200.0, 300.0, 400.0):
        lg.observe(make_record(t0 + 5, total_ms=ms, ttfb_ms=ms / 2))
    lg.observe(make_record(t0 + 130, total_ms=50.0, ttfb_ms=None))
    lg.observe(make_record(t0 + 10, served=("two", "b"), total_ms=999.0))  # another backend
    failed = (
        AttemptRecord("one", "a", "failed", "x", "reset"),
        AttemptRecord("two", "b", "served"),
    )
    lg.observe(make_record(t0 + 70, served=("two", "b"), attempts=failed))
    assert lg.flush()
    series = lg.latency_series("a", t0, 60)
    assert [b["t"] for b in series] == [t0, t0 + 60, t0 + 120]
    first, second, third = series
    assert first["count"] == 4
    assert (first["avg_ms"], first["p50_ms"], first["p95_ms"], first["max_ms"]) == (
        250.0,
        200.0,
        400.0,
        400.0,
    )
    assert (first["ttfb_avg_ms"], first["ttfb_p50_ms"]) == (125.0, 100.0)
    assert first["failures"] == 0
    assert second["count"] == 0 and second["avg_ms"] is None and second["failures"] == 1
    assert third["count"] == 1 and third["avg_ms"] == 50.0 and third["ttfb_avg_ms"] is None
    assert [b["count"] for b in lg.latency_series("b", t0, 3600)] == [2]


def test_schema(logs: Any) -> None:
    lg = logs()
    with sqlite3.connect(lg.path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(requests)")]
        acols = [r[1] for r in conn.execute("PRAGMA table_info(attempts)")]
        indexes = {r[1] for r in conn.execute("SELECT * FROM sqlite_master WHERE type='index'")}
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    assert cols == ["id", *reqlog._REQUEST_COLUMNS]
    assert acols == ["request_id", "n", "model", "backend", "outcome", "error", "kind", "ms"]
    # a row carries each attempt's fields flat, in the table's order
    assert list(AttemptRecord._fields) == acols[2:]
    assert len(acols[2:]) == reqlog_writer.ATTEMPT_FIELDS
    assert {"requests_ts", "requests_backend", "requests_capability", "requests_outcome"} <= indexes
    assert version == reqlog.SCHEMA_VERSION
    # reopening an existing file keeps it
    lg.observe(make_record())
    lg.close()
    again = RequestLog(lg.path)
    try:
        assert again.count() == 1
    finally:
        again.close()


# --------------------------------------------------------------------------- wiring and config


def test_disabled_log_opens_nothing(fakes: Any, proxies: Any, tmp_path: Path) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    path = tmp_path / "requests.sqlite3"
    p = proxies(_cfg(fo, fv, path, enabled=False))
    assert reqlog.attached(p.rt) is None
    assert raw(p, "POST", "/v1/chat/completions", {"model": "one", "messages": USER}).status == 200
    assert not path.exists()


def test_unopenable_log_does_not_stop_the_proxy(
    fakes: Any, proxies: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    p = proxies(_cfg(fo, fv, blocker / "requests.sqlite3"))
    assert reqlog.attached(p.rt) is None
    assert "request log disabled" in caplog.text
    assert raw(p, "POST", "/v1/chat/completions", {"model": "one", "messages": USER}).status == 200


def test_default_path_is_in_the_data_dir(fakes: Any, proxies: Any, tmp_path: Path) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    cfg = make_config(
        {"a": ollama_backend(fo), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "two": model("b", "M2")},
    )
    p = proxies(cfg)
    lg = reqlog.attached(p.rt)
    assert lg is not None
    assert lg.path == reqlog.default_path()
    assert lg.path.is_relative_to(os.environ["XDG_DATA_HOME"])  # the test's, not ~


def test_an_attached_log_is_kept(fakes: Any, tmp_path: Path) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    mine = RequestLog(tmp_path / "mine.sqlite3")
    p = ProxyThread(_cfg(fo, fv, tmp_path / "other.sqlite3"))
    reqlog.attach(p.rt, mine)
    p.start()
    try:
        assert reqlog.attached(p.rt) is mine
        assert (
            raw(p, "POST", "/v1/chat/completions", {"model": "one", "messages": USER}).status == 200
        )
        wait_count(mine, 1)
    finally:
        p.stop()
    assert not (tmp_path / "other.sqlite3").exists()
    assert reqlog.attached(p.rt) is mine  # not ours to close
    assert mine.count() == 1
    mine.close()


def _load(text: str) -> Config:
    return config.load_texts(
        [("<built-in default>", config.default_config_text()), ("t.yaml", text)]
    )


def test_config_log_section() -> None:
    assert config.load(user_file=False).log == config.LogSettings()
    c = _load("log:\n  enabled: false\n  max_age_days: 7.5\n  max_requests: 10\n  path: ~/x.db\n")
    assert c.log == config.LogSettings(False, 7.5, 10, "~/x.db")
    assert reqlog.path_for(c.log) == Path("~/x.db").expanduser()


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("log:\n  max_requests: 0\n", "t.yaml:2 log.max_requests", "must be >= 1"),
        ("log:\n  max_requests: 2.5\n", "t.yaml:2 log.max_requests", "expected an integer"),
        ("log:\n  max_age_days: 0\n", "t.yaml:2 log.max_age_days", "must be > 0"),
        ("log:\n  enabled: yes please\n", "t.yaml:2 log.enabled", "expected true or false"),
        ("log:\n  path: ''\n", "t.yaml:2 log.path", "expected a non-empty string"),
        (
            "log:\n  max_age: 3\n",
            "t.yaml:2 log.max_age",
            "unknown key (did you mean 'max_age_days'?)",
        ),
        ("log: 3\n", "t.yaml:1 log", "expected a mapping"),
    ],
)
def test_config_log_errors(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        _load(text)
    assert str(ei.value).startswith(where + ":"), str(ei.value)
    assert message in str(ei.value)
