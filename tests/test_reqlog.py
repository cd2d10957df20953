"""The request log as a user meets it: what each kind of request leaves behind
(driven through the real proxy against fakes), a blocked writer never slowing a
request, what ``/status`` says about the log, records queued at SIGTERM/SIGINT
written before a real ``traywire serve`` (or ``traywire app``) exits, usage
surviving a restart, and the config section. The writer on its own:
`test_reqlog_writer`; the queries: `test_logqueries`."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from app_process import App, free_port, write_config
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
    request_log,
    status_of,
    wait_logged,
    wait_until,
)
from reqlog_helpers import file_count, settled, write_locked

from traywire import config
from traywire.config import Config
from traywire.errors import ConfigError
from traywire.observe import logfile, wiring
from traywire.observe.logqueries import LogQueries

__all__ = ["clients", "fakes", "proxies"]

posix_only = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


def wait_count(p: ProxyThread, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Wait until the log holds ``n`` requests; all of them, newest first."""
    rows = wait_logged(p, n, timeout).recent(100)
    assert len(rows) == n, rows
    return rows


# --------------------------------------------------------------------------- through the proxy


@dataclass
class Logged:
    fo: FakeBackend  # backend "a" (Ollama), model "one"
    fv: FakeBackend  # backend "b" (OpenAI), model "two", one's fallback
    p: ProxyThread
    oc: openai.OpenAI
    q: LogQueries
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
    handle = request_log(p)
    assert handle.writer is not None and handle.queries is not None
    assert handle.writer.path == path
    return Logged(fo, fv, p, clients.openai(p), handle.queries, path)


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
    rows = wait_count(logged.p, 3)
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
    [r] = wait_count(logged.p, 1)
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
    assert logged.q.get(r["id"]) == r
    assert logged.q.get(r["id"] + 1000) is None


def test_failover_then_served(logged: Logged) -> None:
    logged.fo.status(500)
    logged.oc.chat.completions.create(model="one", messages=USER)
    [r] = wait_count(logged.p, 1)
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
    [r] = wait_count(logged.p, 1)
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
    [r] = wait_count(logged.p, 1)
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
    [r] = wait_count(logged.p, 1)
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
    [r] = wait_count(logged.p, 1)
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
    wait_count(logged.p, 2)
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
    oc = clients.openai(p)
    oc.chat.completions.create(model="one", messages=USER)  # warm up the connection
    q = wait_logged(p, 1)
    lg = request_log(p).writer
    assert lg is not None
    settled(lg)
    with write_locked(path):
        oc.chat.completions.create(model="one", messages=USER)
        assert wait_until(lambda: lg.counters().writing == 1), "the writer should have that record"
        took = []
        for _ in range(20):
            t0 = time.monotonic()
            oc.chat.completions.create(model="one", messages=USER)
            took.append(time.monotonic() - t0)
        assert max(took) < 1.0, took
        assert lg.written == 1
        assert q.count() == 1  # reads go on
        assert wait_until(lambda: lg.queued == 20)
    assert lg.flush(10)
    c = lg.counters()
    assert q.count() == 22 and (c.written, c.dropped, c.failed) == (22, 0, 0)


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
    wait_count(p1, 3)
    before = p1.call(p1.rt.health.usage, time.monotonic())
    assert before["one"] > 0 and before["two"] > 0
    p1.stop()
    assert request_log(p1).writer is None  # closed at shutdown

    p2 = proxies(cfg)
    after = p2.call(p2.rt.health.usage, time.monotonic())
    assert after == before
    assert dict(p2.call(p2.rt.snapshot).usage) == before


# --------------------------------------------------------------------------- /status and shutdown


def test_status_shows_the_logs_counters(logged: Logged) -> None:
    logged.oc.chat.completions.create(model="one", messages=USER)
    wait_count(logged.p, 1)
    s = status_of(logged.p)["request_log"]
    assert s["enabled"] is True and s["open"] is True and s["path"] == str(logged.path)
    assert (s["written"], s["dropped"], s["failed"], s["writer_restarts"]) == (1, 0, 0, 0)
    assert (s["queued"], s["writing"], s["behind_s"], s["last_problem"]) == (0, 0, None, None)
    assert s["writer"] in ("idle", "writing")


def test_a_full_queue_is_said_in_the_log_and_in_status(
    fakes: Any,
    proxies: Any,
    clients: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing dropped silently: with the file locked by another program, a
    small queue overflows; a WARNING gives the counts and /status has them."""
    monkeypatch.setattr(wiring, "QUEUE_SIZE", 3)
    monkeypatch.setattr(wiring, "CHECK_INTERVAL_S", 0.05)
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    path = tmp_path / "requests.sqlite3"
    p = proxies(_cfg(fo, fv, path))
    oc = clients.openai(p)
    lg = request_log(p).writer
    assert lg is not None
    settled(lg)
    with write_locked(path):
        oc.chat.completions.create(model="one", messages=USER)
        assert wait_until(lambda: status_of(p)["request_log"]["writing"] == 1)
        for _ in range(9):
            oc.chat.completions.create(model="one", messages=USER)
        assert wait_until(lambda: status_of(p)["request_log"]["dropped"] == 6)
        s = status_of(p)["request_log"]
        assert (s["queued"], s["writing"], s["written"], s["dropped"]) == (3, 1, 0, 6)
        assert s["behind_s"] is not None
        assert wait_until(lambda: "queue full at 3" in caplog.text)
        assert wait_until(lambda: "locked" in (status_of(p)["request_log"]["last_problem"] or ""))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("record(s) dropped since the last warning" in w for w in warnings), warnings
    # what was not dropped is written once the file is free
    assert lg.flush(10)
    s = status_of(p)["request_log"]
    assert (s["written"], s["dropped"], s["queued"], s["last_problem"]) == (4, 6, 0, None)
    assert file_count(path) == 4


def _serve_config(tmp_path: Path, fake: FakeBackend, log_path: Path) -> Path:
    cfg = write_config(tmp_path, {"a": fake}, health={"probe_interval": 3600})
    doc = yaml.safe_load(cfg.read_text())
    doc["log"] = {"path": str(log_path)}
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


@posix_only
@pytest.mark.parametrize("command", [["serve"], ["app", "--no-tray"]], ids=["serve", "app"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_records_queued_at_a_stop_signal_are_written_before_exit(
    tmp_path: Path, command: list[str], sig: signal.Signals
) -> None:
    """The writer cannot write (the file is locked) while requests come in and
    the signal arrives: every record is still queued then. traywire waits for
    them at exit, and once the file is free they are all in it."""
    n = 25
    log_path = tmp_path / "log" / "requests.sqlite3"
    with FakeBackend("openai", name="fake", models=["m1"]) as fake:
        cfg = _serve_config(tmp_path, fake, log_path)
        port = free_port()
        app = App([*command, "--config", str(cfg), "--port", str(port), "--grace", "2"])
        try:
            app.wait_listening()
            assert app.get("/status")["request_log"]["open"] is True
            with write_locked(log_path):
                for _ in range(n):
                    body = {"model": "m_a", "messages": USER}
                    assert app.post("/v1/chat/completions", body)["choices"]
                assert wait_until(
                    lambda: (s := app.get("/status")["request_log"])["queued"] + s["writing"] == n
                )
                assert app.get("/status")["request_log"]["written"] == 0
                app.proc.send_signal(sig)
                app.wait_for("stopping")
            # the lock is gone: the queue goes to the file, then traywire exits
            rc = app.wait_exit(30)
        finally:
            app.stop(signal.SIGKILL)
    assert rc == 0, app.stderr
    assert file_count(log_path) == n
    assert "not written at exit" not in app.stderr


# --------------------------------------------------------------------------- wiring and config


def test_disabled_log_opens_nothing(fakes: Any, proxies: Any, tmp_path: Path) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    path = tmp_path / "requests.sqlite3"
    p = proxies(_cfg(fo, fv, path, enabled=False))
    assert request_log(p).writer is None
    assert raw(p, "POST", "/v1/chat/completions", {"model": "one", "messages": USER}).status == 200
    assert not path.exists()
    assert status_of(p)["request_log"] == {
        "enabled": False,
        "open": False,
        "path": None,
        "problem": None,
    }


def test_unopenable_log_does_not_stop_the_proxy(
    fakes: Any, proxies: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    p = proxies(_cfg(fo, fv, blocker / "requests.sqlite3"))
    assert request_log(p).writer is None
    assert "request log disabled" in caplog.text
    assert raw(p, "POST", "/v1/chat/completions", {"model": "one", "messages": USER}).status == 200
    s = status_of(p)["request_log"]
    assert s["enabled"] is True and s["open"] is False and "cannot open" in s["problem"]


def test_default_path_is_in_the_data_dir(fakes: Any, proxies: Any, tmp_path: Path) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    cfg = make_config(
        {"a": ollama_backend(fo), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "two": model("b", "M2")},
    )
    p = proxies(cfg)
    lg = request_log(p).writer
    assert lg is not None
    assert lg.path == logfile.default_path()
    assert lg.path.is_relative_to(os.environ["XDG_DATA_HOME"])  # the test's, not ~


def _load(text: str) -> Config:
    return config.load_texts(
        [("<built-in default>", config.default_config_text()), ("t.yaml", text)]
    )


def test_config_log_section() -> None:
    assert config.load(user_file=False).log == config.LogSettings()
    c = _load("log:\n  enabled: false\n  max_age_days: 7.5\n  max_requests: 10\n  path: ~/x.db\n")
    assert c.log == config.LogSettings(False, 7.5, 10, "~/x.db")
    assert logfile.path_for(c.log) == Path("~/x.db").expanduser()


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
