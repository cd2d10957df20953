"""Stopping without cutting what was accepted (SIGTERM, SIGINT, Quit):
requests taken before the stop run to their end within the grace period, a
new request on a connection kept alive from before gets 503 ``shutting_down``
with ``Connection: close`` before any byte, and only what still runs when the
grace period is over is ended, with an error in its dialect and a log line
that names it. In process, and as a real `traywire serve` given SIGTERM."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import ProxyThread
from proxy_fixtures import fakes, make_config, model, ollama_backend, sse_payloads

from traywire.proxy.security import GATE

__all__ = ["fakes"]

USER = [{"role": "user", "content": "hi"}]
BODY = json.dumps({"model": "one", "messages": USER, "stream": True})
JSON = {"Content-Type": "application/json"}


def wait_until(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def stream_in_thread(port: int, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", "/v1/chat/completions", BODY, JSON)
            resp = conn.getresponse()
            out["status"] = resp.status
            out["body"] = resp.read()
        except Exception as exc:
            out["error"] = exc
        finally:
            conn.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def kept_alive(port: int) -> http.client.HTTPConnection:
    """A connection that has carried one request and stays open."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/health")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Connection", "") != "close"
    resp.read()
    return conn


def chatting(fo: Any) -> None:
    """Wait until the stream's request reached the backend (not a probe's)."""
    wait_until(lambda: any(r.path == "/api/chat" for r in fo.requests), what="the stream")


def whole_text(body: bytes) -> str:
    payloads = sse_payloads(body)
    assert payloads[-1] == "[DONE]", payloads[-3:]
    events = [json.loads(x) for x in payloads[:-1]]
    assert not any("error" in e for e in events), events
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])


def assert_refused_before_any_byte(conn: http.client.HTTPConnection) -> None:
    conn.request("POST", "/v1/chat/completions", BODY, JSON)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 503, body
    assert resp.getheader("Connection") == "close"
    err = json.loads(body)["error"]
    assert err["code"] == "shutting_down" and "shutting down" in err["message"]
    conn.close()


def test_stop_refuses_new_requests_on_kept_alive_connections_and_finishes_accepted_streams(
    fakes: Any,
) -> None:
    # a stream that lasts until the test lets it end (chunk_delay 0)
    pieces = [f" p{i}" for i in range(200)]
    fo = fakes("ollama", name="oll", models=["m1"], reply=pieces, chunk_delay=0.2)
    p = ProxyThread(
        make_config({"a": ollama_backend(fo)}, {"one": model("a", "m1")}), grace=20
    ).start()
    keep = kept_alive(p.server.port)
    out: dict[str, Any] = {}
    stream = stream_in_thread(p.server.port, out)
    chatting(fo)
    stopper = threading.Thread(target=p.stop, daemon=True)
    stopper.start()
    wait_until(lambda: p.server.app[GATE].closing, what="the stop to begin")

    # a new request on the connection kept alive from before the stop
    assert_refused_before_any_byte(keep)
    assert stream.is_alive()  # the stream accepted before is still under way
    fo.chunk_delay = 0

    stream.join(20)
    assert "error" not in out, out
    assert out["status"] == 200 and whole_text(out["body"]) == "".join(pieces)
    stopper.join(20)
    assert not stopper.is_alive()
    chats = [r for r in fo.requests if r.path == "/api/chat"]
    # one request reached the backend: the refused one never did
    assert len(chats) == 1 and chats[0].outcome == "completed"


def test_only_what_outlives_the_grace_period_is_ended_and_the_log_says_which(
    fakes: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"], reply=[f" p{i}" for i in range(500)])
    fo.chunk_delay = 0.05
    p = ProxyThread(
        make_config({"a": ollama_backend(fo)}, {"one": model("a", "m1")}), grace=0.5
    ).start()
    out: dict[str, Any] = {}
    stream = stream_in_thread(p.server.port, out)
    chatting(fo)
    wait_until(lambda: p.server.app[GATE].accepted, what="the stream to be accepted")
    with caplog.at_level(logging.INFO, logger="traywire"):
        p.stop()
    stream.join(10)
    assert not stream.is_alive()
    # ended with an error event in its dialect, then its end: never a silent cut
    assert "error" not in out, out
    payloads = sse_payloads(out["body"])
    assert payloads[-1] == "[DONE]"
    assert any('"error"' in x for x in payloads[:-1])
    said = [r.getMessage() for r in caplog.records if "grace period" in r.getMessage()]
    assert len(said) == 1, said
    assert "ending 1 request(s)" in said[0] and "POST /v1/chat/completions" in said[0]


# --------------------------------------------------------------------------- traywire serve


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(config: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "traywire",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"traywire serve exited: {proc.communicate()}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=0.5).request("GET", "/health")
        except OSError:
            return False
        return True

    wait_until(listening, 20, "traywire serve to listen")
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_sigterm_with_a_kept_alive_connection_and_a_stream(fakes: Any, tmp_path: Path) -> None:
    pieces = [f" p{i}" for i in range(200)]
    fo = fakes("ollama", name="oll", models=["m1"], reply=pieces, chunk_delay=0.2)
    cfg = tmp_path / "traywire.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "extends": "none",
                "health": {"probe_interval": 60},
                "backends": {"a": ollama_backend(fo)},
                "models": {"one": model("a", "m1")},
            }
        )
    )
    port = free_port()
    proc = serve(cfg, port, "--grace", "20")
    try:
        keep = kept_alive(port)
        out: dict[str, Any] = {}
        stream = stream_in_thread(port, out)
        chatting(fo)
        lines: list[str] = []
        assert proc.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        proc.send_signal(signal.SIGTERM)
        # it prints that it stops in the same step that closes its gate
        wait_until(lambda: any("stopping" in ln for ln in lines), 10, "the stop to begin")
        assert_refused_before_any_byte(keep)
        assert stream.is_alive()  # the stream accepted before is still under way
        fo.chunk_delay = 0  # now let it end
        stream.join(20)
        assert "error" not in out, out
        assert out["status"] == 200 and whole_text(out["body"]) == "".join(pieces)
        proc.wait(20)
        reader.join(5)
        err = "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "every request in progress finished" in err
    assert "grace period" not in err
