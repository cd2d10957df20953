"""Hostile or broken clients: every bad input gets a clear error in the caller's
dialect (never a 500, a traceback or a hang), slow clients are dropped, and
past the connection limit new connections get a 503 while the rest is served."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from proxy_fixtures import (
    USER,
    fakes,
    make_config,
    model,
    ollama_backend,
    proxies,
    raw,
    wait_until,
)

from traywire.proxy import endpoints

__all__ = ["fakes", "proxies"]


@pytest.fixture
def proxy(fakes: Any, proxies: Any) -> Any:
    fo = fakes("ollama", name="oll", models=["m1"])
    return proxies(make_config({"a": ollama_backend(fo)}, {"m": model("a", "m1")}))


def _post(p: Any, path: str, data: bytes) -> Any:
    return raw(p, "POST", path, data, {"Content-Type": "application/json"})


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_deep_nesting_and_lone_surrogates_are_400_in_the_dialect(proxy: Any, path: str) -> None:
    deep = b'{"model":"m","messages":' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = _post(proxy, path, deep)
    assert r.status == 400, r
    message = r.json()["error"]["message"] if path.startswith("/v1") else r.json()["error"]
    assert "nested deeper than 64" in message
    # 65 levels inside a tool schema: parsed fine by json, refused by the limit
    schema: Any = {}
    for _ in range(70):
        schema = {"type": "object", "properties": {"x": schema}}
    body = {"model": "m", "messages": USER, "tools": [{"type": "function", "function": {}}]}
    body["tools"][0]["function"] = {"name": "f", "parameters": schema}
    assert _post(proxy, path, json.dumps(body).encode()).status == 400
    surrogate = b'{"model":"m","messages":[{"role":"user","content":"x\\ud800y"}]}'
    r = _post(proxy, path, surrogate)
    assert r.status == 400 and "surrogate" in r.body.decode()
    # a real pair of surrogates is a character: served
    pair = b'{"model":"m","stream":false,"messages":[{"role":"user","content":"\\ud83d\\ude00"}]}'
    assert _post(proxy, path, pair).status == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_big_bodies_checked_off_the_loop_answer_as_small_ones(
    fakes: Any, proxies: Any, path: str
) -> None:
    """A body past endpoints.BIG_BODY is decoded and checked on a
    worker thread: served, or refused in the dialect, as a small one is."""
    fo = fakes("ollama", name="oll", models=["m1"])
    proxy = proxies(
        make_config({"a": ollama_backend(fo)}, {"m": model("a", "m1", context=2_000_000)})
    )
    turns = [{"role": "user", "content": "x" * 1000} for _ in range(2500)]  # ~2.5 MB
    assert len(json.dumps(turns)) > endpoints.BIG_BODY
    ok = {"model": "m", "stream": False, "messages": turns}
    assert _post(proxy, path, json.dumps(ok).encode()).status == 200
    bad = {"model": "m", "stream": False, "messages": [*turns, {"role": "user", "content": 5}]}
    r = _post(proxy, path, json.dumps(bad).encode())
    assert r.status == 400, r
    assert "messages[2500].content" in r.body.decode()
    lone = json.dumps(ok).encode().replace(b'"x', b'"\\udc00x', 1)
    r = _post(proxy, path, lone)
    assert r.status == 400 and "surrogate" in r.body.decode()
    pad = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"pad":"' + b"x" * 2_200_000
    tool = b'"tools":[{"type":"function","function":{"name":"f","parameters":{"x":'
    for deep in (
        pad + b'","deep":' + b"[" * 90 + b"]" * 90 + b"}",
        pad + b'",' + tool + b"[" * 90 + b"]" * 90 + b"}}}]}",
    ):
        r = _post(proxy, path, deep)
        assert r.status == 400 and "nested deeper than 64" in r.body.decode(), r
    unknown = {"model": "nope", "stream": False, "messages": turns}
    assert _post(proxy, path, json.dumps(unknown).encode()).status == 404


def test_a_huge_model_name_is_refused_short_and_logged_short(proxy: Any) -> None:
    name = "x" * 1_000_000
    r = _post(proxy, "/v1/chat/completions", json.dumps({"model": name, "messages": USER}).encode())
    assert r.status == 400
    assert len(r.body) < 1000 and "longer than 256" in r.body.decode()
    status = raw(proxy, "GET", "/metrics").body
    assert b"x" * 300 not in status


def test_every_unmatched_path_gets_json(proxy: Any) -> None:
    for path in ("/v1/models/%0D%0A", "/v1/nope", "/api/nope", "/nope%0A"):
        r = raw(proxy, "GET", path)
        assert r.status == 404, (path, r)
        assert r.headers["content-type"].startswith("application/json"), (path, r)


def test_malformed_http_is_one_log_line(proxy: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", proxy.server.port), timeout=5) as s:
        s.sendall(b"GET /v1/models/\r\n HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.")
    assert wait_until(lambda: any("Error handling request" in r.message for r in caplog.records))
    for record in caplog.records:
        if "Error handling request" in record.message:
            assert record.levelno == logging.INFO
            assert record.exc_info is None and "\n" not in record.getMessage()


def _partial(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
    return s


def test_a_client_that_never_finishes_its_head_is_dropped(fakes: Any, proxies: Any) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    cfg = make_config({"a": ollama_backend(fo)}, {"m": model("a", "m1")})
    p = proxies(cfg, head_timeout=1.0)
    s = _partial(p.server.port)
    s.sendall(b"X-Slow: 1\r\n")  # one more header line, slowly
    assert s.recv(4096) == b""  # closed by the proxy (within the 10 s socket timeout)
    s.close()


def test_past_the_connection_limit_new_connections_get_503(
    fakes: Any, proxies: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    fo = fakes("ollama", name="oll", models=["m1"])
    cfg = make_config({"a": ollama_backend(fo)}, {"m": model("a", "m1")})
    p = proxies(cfg, max_connections=16)
    held = [_partial(p.server.port) for _ in range(16)]
    try:
        assert wait_until(lambda: len(p.server.runner.server.connections) == 16)
        r = raw(p, "GET", "/health")
        assert r.status == 503
        assert r.json()["error"]["code"] == "too_many_connections"
        assert r.headers["retry-after"] == "1"
        assert any("connection limit (16)" in rec.message for rec in caplog.records)
    finally:
        for s in held:
            s.close()
    assert wait_until(lambda: raw(p, "GET", "/health").status == 200)


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    code = (
        "import resource; from traywire.proxy.listener import raise_open_file_limit; "
        "s, h = raise_open_file_limit(); print(s, h, resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )

    def lower() -> None:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lower,
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    ).stdout.split()
    soft, hard, now = (int(x) for x in out)
    assert soft == now > 256
    assert soft == min(hard, 65536) or soft == hard
