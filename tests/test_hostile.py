"""A hostile backend (`hostile.Hostile`) against the real proxy: one test per
misbehaviour of project issue 12 (findings 1, 4 and 9), each asserting what
the client gets; where memory is the point, the proxy runs as `traywire serve`
in its own process and its peak RSS is read from /proc; where the event loop
is the point, ``/health`` is polled from another thread while the hostile
answer is processed.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import ProxyThread
from hostile import BEHAVIOURS, Hostile
from proxy_fixtures import USER, make_config, model, raw, status_of, wait_until

from traywire.errors import BackendError, ConfigError

MIB = 1 << 20


def models() -> dict[str, Any]:
    # features declared: traywire does not ask this backend (/api/show) what
    # its models can do, so every request counted here is the test's own
    feats = ("chat", "completion", "json")
    return {name: model("hostile", name, features=feats) for name in BEHAVIOURS}


def backend(h: Hostile, url: str | None = None) -> dict[str, Any]:
    return {"kind": "ollama", "url": url or h.url, "location": "local"}


# The circuit never opens here: every request must reach the hostile backend.
PATIENT = {"cooldown": 1, "failure_threshold": 1000}


def chat(name: str, stream: bool = False) -> dict[str, Any]:
    return {"model": name, "messages": USER, "stream": stream}


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile().start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def proxy(hostile: Hostile) -> Iterator[ProxyThread]:
    cfg = make_config({"hostile": backend(hostile)}, models(), health=PATIENT)
    with ProxyThread(cfg) as p:
        yield p


def attempts(r: Any) -> list[dict[str, Any]]:
    """The attempts of an all-failed answer (Ollama dialect: beside ``error``)."""
    return r.json()["attempts"]  # type: ignore[no-any-return]


class HealthPoller:
    """GET /health in a loop on a thread of its own; every answer's latency."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", "/health")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    self.failures.append(f"HTTP {r.status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            finally:
                conn.close()
            self.latencies.append(time.monotonic() - t0)
            time.sleep(0.01)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        assert wait_until(lambda: len(self.latencies) >= 2), "/health does not answer"
        return self

    def __exit__(self, *exc: object) -> None:
        n = len(self.latencies)
        wait_until(lambda: len(self.latencies) > n + 1)  # answers after the hostile one too
        self._stop.set()
        self._thread.join(60)

    def assert_responsive(self, bound: float = 1.0) -> None:
        assert not self.failures, self.failures
        assert len(self.latencies) >= 4, self.latencies
        assert max(self.latencies) < bound, f"/health took up to {max(self.latencies):.2f} s"


# ================================================================ finding 4: the parser


def test_bare_lf_head_is_answered_at_once(proxy: ProxyThread, hostile: Hostile) -> None:
    t0 = time.monotonic()
    r = raw(proxy, "POST", "/api/chat", chat("bare-lf"))
    assert r.status == 200, r
    assert r.json()["message"]["content"] == "bare LF"
    assert time.monotonic() - t0 < 2  # not the total timeout (10 s)


def test_obs_fold_header_is_read(proxy: ProxyThread) -> None:
    r = raw(proxy, "POST", "/api/chat", chat("obs-fold"))
    assert r.status == 200, r
    assert r.json()["message"]["content"] == "obs-fold"


def test_connection_close_then_keep_alive_closes_the_connection(
    proxy: ProxyThread, hostile: Hostile
) -> None:
    r = raw(proxy, "POST", "/api/chat", chat("close-keep-alive"))
    assert r.status == 200, r
    assert hostile.closed(1).wait(3), "the proxy kept a connection the backend said to close"
    assert raw(proxy, "POST", "/api/chat", chat("ok")).status == 200
    assert [q.conn for q in hostile.requests] == [1, 2]


def test_endless_100_continue_fails_fast_and_health_keeps_answering(
    proxy: ProxyThread, hostile: Hostile
) -> None:
    with HealthPoller(proxy.server.port) as poller:
        t0 = time.monotonic()
        r = raw(proxy, "POST", "/api/chat", chat("continue-forever"))
        took = time.monotonic() - t0
    assert r.status == 503, r
    (a,) = attempts(r)
    assert a["kind"] == "invalid_response" and "interim" in a["error"], a
    assert took < 2, took
    poller.assert_responsive()


def test_reset_mid_generation_on_a_reused_connection_is_not_resent(
    proxy: ProxyThread, hostile: Hostile
) -> None:
    """The backend crashed while generating: the request must not reach it twice."""
    assert raw(proxy, "POST", "/api/chat", chat("crash-on-reuse")).status == 200
    r = raw(proxy, "POST", "/api/chat", chat("crash-on-reuse"))
    assert r.status == 503, r
    (a,) = attempts(r)
    assert a["kind"] == "reset", a
    asked = hostile.asked("crash-on-reuse")
    assert [(q.conn, q.nth) for q in asked] == [(1, 0), (1, 1)]  # once each, never resent


# ================================================================ finding 9: pool hygiene


def test_idle_connection_is_closed_by_the_keepalive_timer(
    proxy: ProxyThread, hostile: Hostile
) -> None:
    assert proxy.rt.pool is not None
    proxy.rt.pool.keepalive_s = 0.3
    t0 = time.monotonic()
    assert raw(proxy, "POST", "/api/chat", chat("ok")).status == 200
    assert hostile.closed(1).wait(5), "the idle connection outlived the keep-alive setting"
    assert 0.3 < time.monotonic() - t0 < 3
    assert wait_until(lambda: status_of(proxy)["pool"] == {"idle": 0, "opened": 1})


def test_base_url_keeps_its_query_string(hostile: Hostile) -> None:
    url = hostile.url + "/?api-version=2024-06-01"
    cfg = make_config({"hostile": backend(hostile, url)}, models(), health=PATIENT)
    with ProxyThread(cfg) as p:
        assert raw(p, "POST", "/api/chat", chat("ok")).status == 200
        assert raw(p, "GET", "/api/ps").status == 200
    assert [q.path for q in hostile.requests] == [
        "/api/chat?api-version=2024-06-01",
        "/api/ps?api-version=2024-06-01",
    ]


def test_probes_and_listings_use_the_one_pool(hostile: Hostile) -> None:
    cfg = make_config({"hostile": backend(hostile)}, models(), health=PATIENT)
    with ProxyThread(cfg, probes=True) as p:
        assert wait_until(lambda: any(q.path == "/api/tags" for q in hostile.requests))
        assert raw(p, "GET", "/api/ps").json() == {"models": []}
        assert raw(p, "POST", "/api/chat", chat("ok")).status == 200
        assert p.rt.pool is not None and not hasattr(p.rt, "session")
        # the probe's connection, kept alive, carried the listing and the chat
        assert status_of(p)["pool"]["opened"] == hostile.connections == 1


# ================================================================ finding 1: bounded answers


def test_too_large_names_the_limit(hostile: Hostile) -> None:
    cfg = make_config(
        {"hostile": backend(hostile)}, models(), health=PATIENT, server={"max_answer_mb": 2}
    )
    with ProxyThread(cfg) as p:
        errors = {}
        for name in ("gzip-bomb", "huge", "huge-chunked"):
            r = raw(p, "POST", "/api/chat", chat(name))
            assert r.status == 503, r
            (a,) = attempts(r)
            assert a["kind"] == "too_large", a
            assert "2 MiB" in a["error"] and "server.max_answer_mb" in a["error"], a
            errors[name] = a["error"]
        assert "100000000 bytes announced" in errors["huge"]  # refused before reading it
        # a backend that sends that much is misbehaving: it counts against it
        assert status_of(p)["backends"]["hostile"]["consecutive_failures"] == 3


# ================================================================ memory: `traywire serve`


class Serve:
    """`traywire serve` in a process of its own, on a config file."""

    def __init__(self, config: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        argv = ["serve", "--config", str(config), "--port", str(self.port), "--grace", "1"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "traywire", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"traywire serve exited: {self.proc.communicate()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("traywire serve did not start listening") from None
                time.sleep(0.05)

    def memory_mib(self) -> tuple[float, float]:
        """(peak RSS, RSS now) of the proxy process, MiB."""
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        )
        return (int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024)

    def post(self, body: Any, timeout: float = 60) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(
                "POST", "/api/chat", json.dumps(body), {"Content-Type": "application/json"}
            )
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, Hostile]]:
    if not Path("/proc/self/status").exists():
        pytest.skip("reads peak memory from /proc (Linux)")
    h = Hostile().start()
    doc = {
        "extends": "none",
        "backends": {"hostile": backend(h)},
        "models": models(),
        "defaults": {"timeouts": {"connect": 2, "first_byte": 20, "idle": 20, "total": 60}},
        "health": PATIENT,
        "log": {"enabled": False},
    }
    config = tmp_path_factory.mktemp("hostile") / "traywire.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    s = Serve(config)
    try:
        yield s, h
    finally:
        s.stop()
        h.stop()


PEAK_MIB = 150  # issue 12: peak RSS under a 1 GiB gzip bomb


def test_gzip_bomb_keeps_memory_bounded_and_health_answering(
    served: tuple[Serve, Hostile],
) -> None:
    """Issue 12, finding 1: three 1 GiB gzip bombs took the proxy to 8.4 GB peak
    and blocked /health for 9 s."""
    s, h = served
    with HealthPoller(s.port) as poller:
        answers = [s.post(chat("gzip-bomb")) for _ in range(3)]
    peak, now = s.memory_mib()
    assert peak < PEAK_MIB, f"peak RSS {peak:.0f} MiB"
    assert now < 100, f"RSS {now:.0f} MiB held after the answers failed"  # was 2.3 GB
    poller.assert_responsive()
    for status, body in answers:
        assert status == 503, body[:300]
        (a,) = json.loads(body)["attempts"]
        assert a["kind"] == "too_large" and "64 MiB" in a["error"], a
    assert len(h.asked("gzip-bomb")) == 3


def test_gzip_bomb_in_a_stream_is_decoded_in_bounded_pieces(
    served: tuple[Serve, Hostile],
) -> None:
    s, _ = served
    with HealthPoller(s.port) as poller:
        status, body = s.post(chat("gzip-bomb", stream=True))
    peak, _ = s.memory_mib()
    assert peak < PEAK_MIB, f"peak RSS {peak:.0f} MiB"
    poller.assert_responsive()
    assert status == 503, body[:300]
    (a,) = json.loads(body)["attempts"]
    assert a["kind"] == "invalid_response", a  # a stream line past the relay's bound


@pytest.mark.parametrize("name", ["huge", "huge-chunked"])
def test_100_mb_answer_is_refused_within_the_limit(
    served: tuple[Serve, Hostile], name: str
) -> None:
    """Issue 12, finding 1: a plain 100 MB answer peaked at 442 MB."""
    s, _ = served
    with HealthPoller(s.port) as poller:
        status, body = s.post(chat(name))
    peak, _ = s.memory_mib()
    assert peak < PEAK_MIB, f"peak RSS {peak:.0f} MiB"
    poller.assert_responsive()
    assert status == 503, body[:300]
    (a,) = json.loads(body)["attempts"]
    assert a["kind"] == "too_large", a


def test_served_proxy_still_answers_normally(served: tuple[Serve, Hostile]) -> None:
    s, _ = served
    status, body = s.post(chat("ok"))
    assert status == 200, body[:300]
    assert json.loads(body)["message"]["content"] == "hello from the hostile backend"


# ================================================================ the setting and the kinds


def test_max_answer_mb_is_a_validated_server_setting(hostile: Hostile) -> None:
    cfg = make_config({"hostile": backend(hostile)}, models())
    assert cfg.server.max_answer_mb == 64
    with pytest.raises(ConfigError, match=r"server\.max_answer_mb"):
        make_config({"hostile": backend(hostile)}, models(), server={"max_answer_mb": 0})


@pytest.mark.parametrize("kind", ["tls", "too_large"])
def test_new_kinds_fail_over_and_count_against_the_backend(kind: str) -> None:
    err = BackendError(kind, "x")
    assert err.failover and err.counts_against_backend


# ================================================================ finding 3 and 5: stream ends


@pytest.mark.parametrize("name", ["done-never-ends", "done-never-closes"])
@pytest.mark.parametrize("dialect", ["ollama", "openai"])
def test_a_stream_ends_when_the_answer_ends(
    hostile: Hostile, proxy: ProxyThread, name: str, dialect: str
) -> None:
    """The whole answer, its end marker included, in a body that never ends:
    the client gets it all and its end at once (not after the 30 s idle
    timeout), the backend's connection is closed, and no failure is counted."""
    path = "/api/chat" if dialect == "ollama" else "/v1/chat/completions"
    r = raw(proxy, "POST", path, chat(name, stream=True), timeout=10)
    assert r.status == 200
    text = r.body.decode()
    if dialect == "ollama":
        lines = [json.loads(x) for x in text.splitlines() if x.strip()]
        assert "".join(x["message"]["content"] for x in lines) == "The whole answer."
        assert lines[-1]["done"] is True and "error" not in lines[-1]
    else:
        assert text.rstrip().endswith("data: [DONE]") and '"error"' not in text
        assert "answer" in text
    (req,) = hostile.asked(name)
    assert hostile.closed(req.conn).wait(5), "the backend's connection is left open"
    st = status_of(proxy)["backends"]["hostile"]
    assert st["consecutive_failures"] == 0 and st["health"] == "up"


@pytest.fixture
def sse_proxy(hostile: Hostile) -> Iterator[ProxyThread]:
    """The hostile backend as an OpenAI-kind server (it answers any path)."""
    cfg = make_config(
        {"hostile": {"kind": "openai", "url": hostile.url + "/v1", "location": "local"}},
        models(),
        health=PATIENT,
        timeouts={"connect": 1, "first_byte": 1, "idle": 5, "total": 10, "stream": 2},
    )
    with ProxyThread(cfg) as p:
        yield p


def test_sse_done_in_a_body_that_never_ends_is_finished_at_once(
    hostile: Hostile, sse_proxy: ProxyThread
) -> None:
    r = raw(sse_proxy, "POST", "/v1/chat/completions", chat("sse-done-never-ends", True), timeout=8)
    assert r.status == 200
    assert r.body.decode().rstrip().endswith("data: [DONE]") and b'"error"' not in r.body
    assert status_of(sse_proxy)["backends"]["hostile"]["consecutive_failures"] == 0


def test_keep_alive_comments_alone_are_no_answer(hostile: Hostile, sse_proxy: ProxyThread) -> None:
    """Comments before any data do not count as a first byte: first_byte (1 s)
    ends the attempt, and the client gets a clear error, not a stream that
    never says anything."""
    r = raw(sse_proxy, "POST", "/v1/chat/completions", chat("sse-keepalive-only", True), timeout=8)
    assert r.status == 503
    (a,) = r.json()["error"]["attempts"]
    assert a["kind"] == "first_byte_timeout"


def test_keep_alive_comments_reach_the_client_and_the_stream_is_bounded(
    hostile: Hostile, sse_proxy: ProxyThread
) -> None:
    """After data, comments keep the stream alive (the client sees them) but
    timeouts.stream (2 s here) ends it, with an error event, not never."""
    r = raw(sse_proxy, "POST", "/v1/chat/completions", chat("sse-then-keepalive", True), timeout=8)
    assert r.status == 200
    text = r.body.decode()
    assert "Hello" in text
    assert text.count(": keep-alive") >= 3  # forwarded, not swallowed
    assert "still streaming after 2s" in text and text.rstrip().endswith("data: [DONE]")
