"""End to end: streams are relayed as they arrive, a broken stream ends with an
explicit error in the client's dialect, and a client going away stops the backend."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import ollama
import openai
import pytest
from fakes import FakeBackend
from harness import ProxyThread
from proxy_fixtures import (
    FAST_TIMEOUTS,
    USER,
    clients,
    fakes,
    make_config,
    model,
    ndjson_lines,
    ollama_backend,
    openai_backend,
    proxies,
    raw,
    sse_payloads,
    status_of,
    wait_until,
)

__all__ = ["clients", "fakes", "proxies"]

PIECES = ["Alpha", " beta", " gamma", " delta", " epsilon", " zeta"]


def _setup(
    fakes: Any,
    proxies: Any,
    kind: str,
    timeouts: dict[str, float] | None = None,
    **fake_kw: Any,
) -> tuple[FakeBackend, ProxyThread]:
    """One backend of ``kind`` serving model "m" (no fallback: a failure must show)."""
    if kind == "ollama":
        f = fakes("ollama", name="oll", models=["m1"], **fake_kw)
        cfg = make_config({"a": ollama_backend(f)}, {"m": model("a", "m1")}, timeouts=timeouts)
    else:
        f = fakes("openai", name="vl", models=["M2"], **fake_kw)
        cfg = make_config({"a": openai_backend(f)}, {"m": model("a", "M2")}, timeouts=timeouts)
    return f, proxies(cfg)


def _path(dialect: str) -> str:
    return "/v1/chat/completions" if dialect == "openai" else "/api/chat"


# --------------------------------------------------------------------------- relaying


@pytest.mark.parametrize(("dialect", "kind"), [("openai", "ollama"), ("ollama", "openai")])
def test_chunks_are_forwarded_as_they_arrive(
    fakes: Any, proxies: Any, clients: Any, dialect: str, kind: str
) -> None:
    """The backend sends three events and then holds the rest until told: the
    client must already have the first pieces (nothing waits for the end)."""
    f, p = _setup(fakes, proxies, kind, reply=PIECES, timeouts={**FAST_TIMEOUTS, "idle": 60})
    f.stall_after(3)  # then silent until a control is called
    got: list[str] = []

    def consume() -> None:
        if dialect == "openai":
            stream = clients.openai(p).chat.completions.create(
                model="m", messages=USER, stream=True
            )
            for c in stream:
                if c.choices and c.choices[0].delta.content:
                    got.append(c.choices[0].delta.content)
        else:
            for part in clients.ollama(p).chat(model="m", messages=USER, stream=True):
                if part.message.content:
                    got.append(part.message.content)

    t = threading.Thread(target=consume)
    t.start()
    assert wait_until(lambda: len(got) >= 1, 10), "nothing reached the client"
    held = list(got)
    assert held == PIECES[: len(held)] and len(held) < len(PIECES)
    assert f.requests[-1].outcome is None  # the backend is still holding the rest
    f.ok()  # the rest
    t.join(10)
    assert got == PIECES


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_complete_openai_stream_ends_with_done_and_no_error(
    fakes: Any, proxies: Any, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind)
    r = raw(p, "POST", "/v1/chat/completions", {"model": "m", "messages": USER, "stream": True})
    assert r.status == 200
    assert r.body.endswith(b"data: [DONE]\n\n")
    payloads = sse_payloads(r.body)
    assert payloads.count("[DONE]") == 1
    events = [json.loads(x) for x in payloads[:-1]]
    assert not any("error" in e for e in events)
    assert (
        "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
        == f.reply
    )


# --------------------------------------------------------------------------- cut mid-stream


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_cut_openai_stream_ends_with_error_event_then_done(
    fakes: Any, proxies: Any, clients: Any, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind, reply=PIECES)
    f.cut_after(4)
    r = raw(p, "POST", "/v1/chat/completions", {"model": "m", "messages": USER, "stream": True})
    assert r.status == 200
    body = r.body
    assert body.endswith(b"\n\ndata: [DONE]\n\n"), body[-300:]
    payloads = sse_payloads(body)
    assert payloads[-1] == "[DONE]"
    err = json.loads(payloads[-2])
    assert set(err) == {"error"}
    assert err["error"]["message"]
    assert "closed" in err["error"]["message"] or "broke off" in err["error"]["message"]
    # the error event is exactly one SSE event right before [DONE]
    tail = b"data: " + payloads[-2].encode() + b"\n\ndata: [DONE]\n\n"
    assert body.endswith(tail)
    events = [json.loads(x) for x in payloads[:-2]]
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices")
    )
    assert text and PIECES[0] in text and text != f.reply
    assert not any(c.get("finish_reason") for e in events for c in e.get("choices") or [])

    # the official client raises instead of returning a truncated answer as complete
    f.cut_after(4)
    got: list[str] = []
    with pytest.raises(openai.APIError):
        for c in clients.openai(p).chat.completions.create(model="m", messages=USER, stream=True):
            if c.choices and c.choices[0].delta.content:
                got.append(c.choices[0].delta.content)
    assert got and got[0] == PIECES[0]


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_cut_ollama_stream_ends_with_error_line(
    fakes: Any, proxies: Any, clients: Any, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind, reply=PIECES)
    f.cut_after(4)
    r = raw(p, "POST", "/api/chat", {"model": "m", "messages": USER})
    assert r.status == 200
    assert r.body.endswith(b"\n")
    lines = ndjson_lines(r.body)
    assert set(lines[-1]) == {"error"} and lines[-1]["error"]
    assert not any(x.get("done") for x in lines)
    assert "".join(x["message"]["content"] for x in lines[:-1]).startswith(PIECES[0])

    f.cut_after(4)
    got: list[str] = []
    with pytest.raises(ollama.ResponseError):
        for part in clients.ollama(p).chat(model="m", messages=USER, stream=True):
            got.append(part.message.content or "")
    assert got and got[0] == PIECES[0]


# --------------------------------------------------------------------------- idle stall


@pytest.mark.parametrize(("dialect", "kind"), [("openai", "ollama"), ("ollama", "openai")])
def test_idle_stall_ends_stream_with_error(
    fakes: Any, proxies: Any, dialect: str, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind, reply=PIECES)
    f.stall_after(3)  # silent until the test ends; idle is 1 s
    r = raw(p, "POST", _path(dialect), {"model": "m", "messages": USER, "stream": True})
    assert r.status == 200
    if dialect == "openai":
        payloads = sse_payloads(r.body)
        assert payloads[-1] == "[DONE]"
        message = json.loads(payloads[-2])["error"]["message"]
    else:
        lines = ndjson_lines(r.body)
        message = lines[-1]["error"]
        assert not any(x.get("done") for x in lines)
    assert "sent nothing" in message or "idle" in message
    assert f.wait_for_disconnect(2), "the stalled upstream must be closed"
    assert status_of(p)["backends"]["a"]["in_flight"] == 0


# --------------------------------------------------------------------------- client gone


def _open_stream(p: ProxyThread, path: str, body: dict[str, Any]) -> tuple[socket.socket, bytes]:
    """Send a streaming request on a raw socket; return it with the first bytes of body."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", p.server.port), timeout=5)
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{p.server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    got = b""
    while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < 8:
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    return s, got


@pytest.mark.parametrize(("dialect", "kind"), [("openai", "ollama"), ("ollama", "openai")])
def test_client_disconnect_closes_upstream_at_once(
    fakes: Any, proxies: Any, dialect: str, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind, reply=[f" w{i}" for i in range(60)], chunk_delay=0.1)
    s, first = _open_stream(p, _path(dialect), {"model": "m", "messages": USER, "stream": True})
    assert first.startswith(b"HTTP/1.1 200")
    assert wait_until(lambda: status_of(p)["backends"]["a"]["in_flight"] == 1, 2)
    s.close()  # the backend would go on for 6 s more
    assert f.wait_for_disconnect(3), "the backend kept generating for a client that left"
    assert f.requests[-1].outcome == "disconnected"
    assert wait_until(lambda: status_of(p)["backends"]["a"]["in_flight"] == 0, 2)
    # the proxy is fine afterwards
    r = raw(p, "POST", _path(dialect), {"model": "m", "messages": USER, "stream": False})
    assert r.status == 200


@pytest.mark.parametrize("stream", [True, False])
def test_client_gone_before_first_byte_closes_upstream(
    fakes: Any, proxies: Any, stream: bool
) -> None:
    f, p = _setup(fakes, proxies, "ollama")
    f.hang()
    data = json.dumps({"model": "m", "messages": USER, "stream": stream}).encode()
    s = socket.create_connection(("127.0.0.1", p.server.port), timeout=5)
    s.sendall(
        f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1:{p.server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    assert f.wait_for_requests(1, 3)
    s.close()  # the backend hangs: only the proxy can end this request
    assert f.wait_for_disconnect(3)
    assert wait_until(lambda: status_of(p)["backends"]["a"]["in_flight"] == 0, 2)


def test_a_long_stream_that_keeps_flowing_is_not_cut_by_total(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    """``total`` bounds non-streaming answers; a stream is bounded by first_byte
    then idle between chunks, so a long answer that keeps coming is relayed whole."""
    pieces = [f" w{i}" for i in range(12)]
    f = fakes("ollama", name="oll", models=["m1"], reply=pieces, chunk_delay=0.25)
    cfg = make_config(
        {"a": ollama_backend(f)},
        {"m": model("a", "m1")},
        timeouts={"connect": 1, "first_byte": 2, "idle": 1, "total": 1.5},
    )
    p = proxies(cfg)
    got = [
        c.choices[0].delta.content or ""
        for c in clients.openai(p).chat.completions.create(model="m", messages=USER, stream=True)
        if c.choices
    ]
    assert "".join(got) == "".join(pieces)
