"""End to end: failover rules, the circuit breaker, probes, every attempt failing,
and the admin calls that change routing."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import ollama
import openai
import pytest
from fakeclock import FakeClock
from fakes import FakeBackend
from harness import ProxyThread
from proxy_fixtures import (
    USER,
    chat_paths,
    clients,
    fakes,
    make_config,
    model,
    ollama_backend,
    openai_backend,
    proxies,
    raw,
    status_of,
    wait_until,
)

from traywire.clock import SYSTEM, Clock

__all__ = ["clients", "fakes", "proxies"]


@dataclass
class Pair:
    fo: FakeBackend  # backend "a" (Ollama), model "one" — first choice
    fv: FakeBackend  # backend "b" (OpenAI), model "two" — its fallback
    p: ProxyThread
    oc: openai.OpenAI
    lc: ollama.Client


def _pair(
    fakes: Any,
    proxies: Any,
    clients: Any,
    a_extra: dict[str, Any] | None = None,
    clock: Clock = SYSTEM,
    **cfg_kw: Any,
) -> Pair:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    cfg = make_config(
        {"a": ollama_backend(fo, **(a_extra or {})), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "two": model("b", "M2")},
        fallbacks={"one": ["two"], "two": ["one"]},
        **cfg_kw,
    )
    p = proxies(cfg, clock=clock)
    return Pair(fo, fv, p, clients.openai(p), clients.ollama(p))


@pytest.fixture
def pair(fakes: Any, proxies: Any, clients: Any) -> Pair:
    return _pair(fakes, proxies, clients)


def _served_by_b(pr: Pair, *, stream: bool = False, attempts: str = "2") -> None:
    """Ask for model "one" (backend a); expect backend b to have answered."""
    if stream:
        with pr.oc.chat.completions.with_streaming_response.create(
            model="one", messages=USER, stream=True
        ) as r:
            headers = r.headers
            chunks = list(r.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        r = pr.oc.chat.completions.with_raw_response.create(model="one", messages=USER)
        headers = r.headers
        text = r.parse().choices[0].message.content or ""
    assert headers["x-traywire-backend"] == "b"
    assert headers["x-traywire-model"] == "two"
    assert headers["x-traywire-attempts"] == attempts
    assert text == pr.fv.reply
    assert pr.fv.count("/v1/chat/completions") >= 1


# --------------------------------------------------------------------------- failover


@pytest.mark.parametrize("stream", [False, True])
def test_refused_fails_over(pair: Pair, stream: bool) -> None:
    pair.fo.refuse()
    _served_by_b(pair, stream=stream)
    st = status_of(pair.p)["backends"]["a"]
    assert st["last_error"] == "refused"
    assert st["consecutive_failures"] == 1


def test_stream_hang_before_first_byte_fails_over(pair: Pair) -> None:
    pair.fo.hang()
    _served_by_b(pair, stream=True)  # after first_byte (2 s)
    assert pair.fo.count("/api/chat") == 1
    assert pair.fo.wait_for_disconnect(3), "the proxy must close the hung upstream request"
    assert status_of(pair.p)["backends"]["a"]["last_error"] == "first_byte_timeout"


def test_stream_headers_but_no_data_fails_over(pair: Pair) -> None:
    pair.fo.stall_after(0, 10)  # a head, then 10 s of nothing
    _served_by_b(pair, stream=True)
    assert status_of(pair.p)["backends"]["a"]["last_error"] == "first_byte_timeout"


def test_stream_cut_before_first_chunk_fails_over(pair: Pair) -> None:
    pair.fo.cut_after(0)
    _served_by_b(pair, stream=True)


@pytest.mark.parametrize("code", [500, 502, 503])
def test_server_errors_fail_over(pair: Pair, code: int) -> None:
    pair.fo.status(code)
    _served_by_b(pair)
    assert pair.fo.count("/api/chat") == 1
    st = status_of(pair.p)["backends"]["a"]
    assert st["consecutive_failures"] == 1
    assert st["health"] == "degraded"


def test_llama_cpp_loading_503_fails_over(fakes: Any, proxies: Any, clients: Any) -> None:
    fv = fakes("openai", name="llama", models=["x.gguf"], any_model=True)
    fo = fakes("ollama", name="oll", models=["m1"])
    cfg = make_config(
        {"l": openai_backend(fv, single_model=True), "a": ollama_backend(fo)},
        {"lc": model("l", "whatever"), "one": model("a", "m1")},
        fallbacks={"lc": ["one"]},
    )
    p = proxies(cfg)
    fv.loading()
    r = clients.ollama(p).chat(model="lc", messages=USER, stream=False)
    assert r.message.content == fo.reply
    assert fv.count("/v1/chat/completions") == 1


def test_rate_limit_retry_after_skips_backend_until_it_passes(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    # cooldown much shorter than Retry-After: the wait must come from Retry-After
    clock = FakeClock()
    pr = _pair(fakes, proxies, clients, health={"cooldown": 2, "failure_threshold": 2}, clock=clock)
    pr.fo.status(429, headers={"Retry-After": "60"}, times=1)
    _served_by_b(pr)
    assert pr.fo.count("/api/chat") == 1
    st = status_of(pr.p)["backends"]["a"]
    assert st["circuit"] == "open" and st["open_reason"] == "rate_limited"
    assert st["retry_in_s"] == 60

    clock.advance(30)  # past the cooldown, within Retry-After
    _served_by_b(pr, attempts="1")  # a is planned last now and never contacted
    assert pr.fo.count("/api/chat") == 1

    clock.advance(31)
    r = pr.oc.chat.completions.with_raw_response.create(model="one", messages=USER)
    assert r.headers["x-traywire-backend"] == "a"
    assert r.parse().choices[0].message.content == pr.fo.reply
    assert pr.fo.count("/api/chat") == 2
    assert status_of(pr.p)["backends"]["a"]["circuit"] == "closed"


@pytest.mark.parametrize("which", ["ollama", "openai"])
def test_model_not_found_fails_over(fakes: Any, proxies: Any, clients: Any, which: str) -> None:
    fo = fakes("ollama", name="oll", models=["m1"] if which == "openai" else ["other"])
    fv = fakes("openai", name="vl", models=["M2"] if which == "ollama" else ["other"])
    cfg = make_config(
        {"a": ollama_backend(fo), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "two": model("b", "M2")},
        fallbacks={"one": ["two"], "two": ["one"]},
    )
    p = proxies(cfg)
    first, served, fake_first = ("one", "b", fo) if which == "ollama" else ("two", "a", fv)
    r = clients.openai(p).chat.completions.with_raw_response.create(model=first, messages=USER)
    assert r.headers["x-traywire-backend"] == served
    assert r.headers["x-traywire-attempts"] == "2"
    assert chat_paths(fake_first) == 1
    # a missing model says nothing about the backend's health
    st = status_of(p)["backends"]["a" if which == "ollama" else "b"]
    assert st["consecutive_failures"] == 0
    assert st["circuit"] == "closed"


@pytest.mark.parametrize("stream", [False, True])
def test_garbage_fails_over(pair: Pair, stream: bool) -> None:
    pair.fo.garbage()
    _served_by_b(pair, stream=stream)
    assert pair.fo.count("/api/chat") == 1


def test_garbage_from_openai_backend_fails_over_for_ollama_client(pair: Pair) -> None:
    pair.fv.garbage()
    r = pair.lc.chat(model="two", messages=USER, stream=False)
    assert r.message.content == pair.fo.reply
    parts = list(pair.lc.chat(model="two", messages=USER, stream=True))
    assert "".join(x.message.content or "" for x in parts) == pair.fo.reply
    assert pair.fv.count("/v1/chat/completions") == 2


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_json_of_the_wrong_shape_from_ollama_backend_fails_over(pair: Pair, dialect: str) -> None:
    """Valid JSON that is not an Ollama chat answer is as invalid as garbage."""
    pair.fo.status(200, body={"status": "ok", "unexpected": True})
    if dialect == "openai":
        r = pair.oc.chat.completions.with_raw_response.create(model="one", messages=USER)
        assert r.headers["x-traywire-backend"] == "b"
        assert r.parse().choices[0].message.content == pair.fv.reply
    else:
        got = raw(pair.p, "POST", "/api/chat", {"model": "one", "messages": USER, "stream": False})
        assert got.status == 200, got
        assert got.headers["x-traywire-backend"] == "b"
        assert got.json()["message"]["content"] == pair.fv.reply
    assert pair.fo.count("/api/chat") == 1


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_error_event_at_stream_start_fails_over(pair: Pair, kind: str) -> None:
    if kind == "ollama":
        pair.fo.status(
            200,
            body=b'{"error":"model runner has unexpectedly stopped"}\n',
            headers={"Content-Type": "application/x-ndjson"},
        )
        model_name, other = "one", pair.fv
    else:
        pair.fv.status(
            200,
            body=b'data: {"error": {"message": "engine dead", "code": 500}}\n\n',
            headers={"Content-Type": "text/event-stream"},
        )
        model_name, other = "two", pair.fo
    chunks = list(pair.oc.chat.completions.create(model=model_name, messages=USER, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == other.reply


def test_unary_hang_bounded_by_total_timeout(fakes: Any, proxies: Any, clients: Any) -> None:
    pr = _pair(fakes, proxies, clients, a_extra={"timeouts": {"total": 1.5}})
    pr.fo.hang()
    _served_by_b(pr)
    assert status_of(pr.p)["backends"]["a"]["last_error"] == "total_timeout"
    assert pr.fo.wait_for_disconnect(3)


_OPENAI_EXC = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    422: openai.UnprocessableEntityError,
}


@pytest.mark.parametrize("code", [400, 401, 403, 422])
def test_client_errors_are_returned_not_failed_over_openai(pair: Pair, code: int) -> None:
    pair.fo.status(code, body={"error": f"backend says no ({code})"})
    with pytest.raises(_OPENAI_EXC[code]) as ei:
        pair.oc.chat.completions.create(model="one", messages=USER)
    assert ei.value.status_code == code
    assert f"backend says no ({code})" in ei.value.message
    body = ei.value.body
    assert isinstance(body, dict) and f"backend says no ({code})" in body["message"]
    assert ei.value.response.headers["x-traywire-backend"] == "a"
    assert pair.fo.count("/api/chat") == 1
    assert pair.fv.request_count == 0
    # the backend answered properly: it is not counted as failing
    assert status_of(pair.p)["backends"]["a"]["consecutive_failures"] == 0


@pytest.mark.parametrize("code", [400, 401, 403, 422])
def test_client_errors_are_returned_not_failed_over_ollama(pair: Pair, code: int) -> None:
    pair.fv.status(code)  # the OpenAI fake's own error shape
    with pytest.raises(ollama.ResponseError) as ei:
        pair.lc.chat(model="two", messages=USER, stream=False)
    assert ei.value.status_code == code
    assert "vl:" in ei.value.error  # the fake's message, e.g. "vl: Bad Request"
    assert pair.fv.count("/v1/chat/completions") == 1
    assert pair.fo.request_count == 0
    # streaming requests too
    with pytest.raises(ollama.ResponseError) as ei:
        list(pair.lc.chat(model="two", messages=USER, stream=True))
    assert ei.value.status_code == code
    assert pair.fo.request_count == 0


def test_context_length_moves_to_a_larger_window(fakes: Any, proxies: Any, clients: Any) -> None:
    fa = fakes("ollama", name="small1", models=["s1"])
    fc = fakes("ollama", name="small2", models=["s2"])
    fb = fakes("openai", name="big", models=["B"])
    cfg = make_config(
        {"a": ollama_backend(fa), "c": ollama_backend(fc), "b": openai_backend(fb)},
        {
            "one": model("a", "s1", context=8192),
            "smaller": model("c", "s2", context=4096),
            "big": model("b", "B", context=131072),
        },
        fallbacks={"one": ["smaller", "big"]},
    )
    p = proxies(cfg)
    fa.status(
        400,
        body={
            "error": {
                "message": "This model's maximum context length is 8192 tokens. "
                "However, you requested 9000 tokens.",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
    )
    r = clients.openai(p).chat.completions.with_raw_response.create(model="one", messages=USER)
    assert r.headers["x-traywire-backend"] == "b"
    assert r.parse().choices[0].message.content == fb.reply
    assert fa.count("/api/chat") == 1
    assert fc.request_count == 0  # smaller window: skipped without a call

    # nothing larger left: the client gets the backend's 400, not a 503
    fb.status(400, body={"error": {"message": "prompt is too long for the context window"}})
    with pytest.raises(openai.BadRequestError) as ei:
        clients.openai(p).chat.completions.create(model="one", messages=USER)
    assert "context" in ei.value.message
    assert fc.request_count == 0


# --------------------------------------------------------------------------- circuit breaker


def test_circuit_opens_skips_then_trial_closes(fakes: Any, proxies: Any, clients: Any) -> None:
    clock = FakeClock()
    pair = _pair(fakes, proxies, clients, clock=clock)
    pair.fo.status(500)
    _served_by_b(pair)
    _served_by_b(pair)
    assert pair.fo.count("/api/chat") == 2
    st = status_of(pair.p)["backends"]["a"]
    assert st["circuit"] == "open" and st["health"] == "down"
    assert st["retry_in_s"] == 1  # the cooldown

    for _ in range(3):
        _served_by_b(pair, attempts="1")
    assert pair.fo.count("/api/chat") == 2  # skipped without contacting it

    # after the cooldown a trial goes through; it fails: open again (longer)
    clock.advance(1.1)
    assert status_of(pair.p)["backends"]["a"]["circuit"] == "half_open"
    _served_by_b(pair, attempts="2")
    assert pair.fo.count("/api/chat") == 3
    st = status_of(pair.p)["backends"]["a"]
    assert st["circuit"] == "open"
    assert st["retry_in_s"] == 2  # back-off: 2 x cooldown

    # the next trial succeeds: closed, and a serves again
    pair.fo.ok()
    _served_by_b(pair, attempts="1")
    clock.advance(2.1)
    r = pair.oc.chat.completions.with_raw_response.create(model="one", messages=USER)
    assert r.headers["x-traywire-backend"] == "a"
    assert pair.fo.count("/api/chat") == 4
    st = status_of(pair.p)["backends"]["a"]
    assert st["circuit"] == "closed" and st["health"] == "up"
    r = pair.oc.chat.completions.with_raw_response.create(model="one", messages=USER)
    assert r.headers["x-traywire-backend"] == "a"


def test_half_open_admits_exactly_one_trial(fakes: Any, proxies: Any, clients: Any) -> None:
    clock = FakeClock()
    pair = _pair(fakes, proxies, clients, clock=clock)
    pair.fo.status(500)
    _served_by_b(pair)
    _served_by_b(pair)
    clock.advance(1.1)  # cooldown over: half-open
    pair.fo.slow_first_byte(1.0)  # the trial takes a while, then succeeds
    out: dict[str, Any] = {}

    def trial() -> None:
        r = pair.oc.chat.completions.with_raw_response.create(model="one", messages=USER)
        out["backend"] = r.headers["x-traywire-backend"]

    t = threading.Thread(target=trial)
    t.start()
    assert pair.fo.wait_for_requests(3, 3)
    # while the trial is out, other requests do not pile onto the backend
    _served_by_b(pair, attempts="1")
    _served_by_b(pair, attempts="1")
    assert pair.fo.count("/api/chat") == 3
    t.join(5)
    assert out == {"backend": "a"}
    assert status_of(pair.p)["backends"]["a"]["circuit"] == "closed"


def test_saturated_local_backend_overflows_to_cloud(fakes: Any, proxies: Any, clients: Any) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fc = fakes("openai", name="cloud", models=["big"])
    cfg = make_config(
        {"a": ollama_backend(fo, capacity=1), "c": openai_backend(fc, location="cloud")},
        {
            "one": model("a", "m1"),
            "cloudy": model("c", "big", params_b=120, tier="cloud_standard"),
        },
        fallbacks={"one": ["cloudy"]},
    )
    p = proxies(cfg)
    oc = clients.openai(p)
    out: dict[str, Any] = {}

    def slow() -> None:
        out["text"] = "".join(
            c.choices[0].delta.content or ""
            for c in oc.chat.completions.create(model="one", messages=USER, stream=True)
            if c.choices
        )

    fo.stall_after(2)  # the slow stream holds a's only slot until told
    t = threading.Thread(target=slow)
    t.start()
    assert wait_until(lambda: status_of(p)["backends"]["a"]["in_flight"] == 1, 3)
    r = oc.chat.completions.with_raw_response.create(model="one", messages=USER)
    assert r.headers["x-traywire-backend"] == "c"
    assert r.headers["x-traywire-attempts"] == "1"
    assert chat_paths(fo) == 1
    fo.ok()
    t.join(10)
    assert out["text"] == fo.reply
    r = oc.chat.completions.with_raw_response.create(model="one", messages=USER)
    assert r.headers["x-traywire-backend"] == "a"  # free again


def test_circuit_with_a_single_backend_gives_quick_503(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    clock = FakeClock()
    p = proxies(make_config({"a": ollama_backend(fo)}, {"solo": model("a", "m1")}), clock=clock)
    oc = clients.openai(p)
    fo.status(500)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as ei:
            oc.chat.completions.create(model="solo", messages=USER)
        assert ei.value.status_code == 503
    assert fo.count("/api/chat") == 2

    with pytest.raises(openai.InternalServerError) as ei:
        oc.chat.completions.create(model="solo", messages=USER)
    assert ei.value.status_code == 503
    assert "circuit open" in ei.value.message
    assert fo.count("/api/chat") == 2
    with pytest.raises(ollama.ResponseError) as oi:
        clients.ollama(p).chat(model="solo", messages=USER, stream=False)
    assert oi.value.status_code == 503 and "circuit open" in oi.value.error
    assert fo.count("/api/chat") == 2

    fo.ok()
    clock.advance(1.1)
    c = oc.chat.completions.create(model="solo", messages=USER)
    assert c.choices[0].message.content == fo.reply
    assert fo.count("/api/chat") == 3


def test_probe_sees_a_backend_come_back(fakes: Any, proxies: Any) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    fo.refuse()
    cfg = make_config(
        {"a": ollama_backend(fo), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "two": model("b", "M2")},
        health={"cooldown": 1, "failure_threshold": 2, "probe_interval": 0.3},
    )
    p = proxies(cfg, probes=True)
    assert wait_until(lambda: status_of(p)["backends"]["a"]["health"] == "down", 3)
    assert wait_until(lambda: status_of(p)["backends"]["b"]["health"] == "up", 3)
    fo.revive()  # no request is sent: the probes alone bring it back
    assert wait_until(lambda: status_of(p)["backends"]["a"]["health"] == "up", 3)
    st = status_of(p)["backends"]["a"]
    assert st["circuit"] == "closed"
    assert st["last_probe_ok"] is True
    assert st["models"] is not None and "m1:latest" in st["models"]
    assert chat_paths(fo) == 0  # probes never run a model


def test_probe_marks_a_vllm_serving_another_model_and_router_tries_it_last(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    vllm = fakes("openai", name="vllm", models=["Qwen/Other-7B"])
    fo = fakes("ollama", name="oll", models=["m1"])
    cfg = make_config(
        {"v": openai_backend(vllm), "a": ollama_backend(fo)},
        {"qwen": model("v", "Qwen/Expected-7B"), "one": model("a", "m1")},
        fallbacks={"qwen": ["one"]},
        health={"cooldown": 1, "failure_threshold": 2, "probe_interval": 0.3},
    )
    p = proxies(cfg, probes=True)
    assert wait_until(
        lambda: status_of(p)["backends"]["v"]["missing_models"] == ["Qwen/Expected-7B"], 3
    )
    st = status_of(p)["backends"]["v"]
    assert st["health"] == "degraded"
    assert st["models"] == ["Qwen/Other-7B"]
    r = clients.openai(p).chat.completions.with_raw_response.create(model="qwen", messages=USER)
    assert r.headers["x-traywire-backend"] == "a"
    assert r.headers["x-traywire-attempts"] == "1"
    assert chat_paths(vllm) == 0


# --------------------------------------------------------------------------- all failing


def test_all_attempts_failing_lists_each_attempt(pair: Pair) -> None:
    pair.fo.refuse()
    pair.fv.status(500)
    with pytest.raises(openai.InternalServerError) as ei:
        pair.oc.chat.completions.create(model="one", messages=USER)
    e = ei.value
    assert e.status_code == 503
    assert "one on a" in e.message and "two on b" in e.message
    assert "HTTP 500" in e.message
    body = e.response.json()["error"]
    assert [(a["model"], a["backend"]) for a in body["attempts"]] == [("one", "a"), ("two", "b")]
    assert all(a["error"] for a in body["attempts"])
    assert body["code"] == "all_attempts_failed"

    # Ollama dialect, streaming and not
    for stream in (False, True):
        r = raw(pair.p, "POST", "/api/chat", {"model": "two", "messages": USER, "stream": stream})
        assert r.status == 503
        doc = r.json()
        assert isinstance(doc["error"], str) and "two on b" in doc["error"]
        assert [(a["model"], a["backend"]) for a in doc["attempts"]] == [
            ("two", "b"),
            ("one", "a"),
        ]
    with pytest.raises(ollama.ResponseError) as oi:
        pair.lc.chat(model="two", messages=USER, stream=False)
    assert oi.value.status_code == 503 and "attempts failed" in oi.value.error


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_all_rate_limited_is_429(pair: Pair, dialect: str) -> None:
    pair.fo.status(429, headers={"Retry-After": "30"})
    pair.fv.status(429, headers={"Retry-After": "30"})
    if dialect == "openai":
        with pytest.raises(openai.RateLimitError) as ei:
            pair.oc.chat.completions.create(model="one", messages=USER)
        assert ei.value.status_code == 429
        assert "one on a" in ei.value.message and "two on b" in ei.value.message
    else:
        with pytest.raises(ollama.ResponseError) as oi:
            pair.lc.chat(model="two", messages=USER, stream=False)
        assert oi.value.status_code == 429
        assert "two on b" in oi.value.error and "one on a" in oi.value.error
    assert chat_paths(pair.fo) == 1 and chat_paths(pair.fv) == 1


def test_still_rate_limited_on_the_next_request_is_429(pair: Pair) -> None:
    """While every backend waits out its Retry-After, the client is told to slow
    down (429), not that the service is broken (503)."""
    pair.fo.status(429, headers={"Retry-After": "30"})
    pair.fv.status(429, headers={"Retry-After": "30"})
    with pytest.raises(openai.RateLimitError):
        pair.oc.chat.completions.create(model="one", messages=USER)
    with pytest.raises(openai.RateLimitError) as ei:
        pair.oc.chat.completions.create(model="one", messages=USER)
    assert ei.value.status_code == 429
    assert chat_paths(pair.fo) == 1 and chat_paths(pair.fv) == 1  # not contacted again
    r = raw(pair.p, "POST", "/api/chat", {"model": "two", "messages": USER, "stream": False})
    assert r.status == 429, r


# --------------------------------------------------------------------------- admin


def _admin(p: ProxyThread, path: str, doc: dict[str, Any]) -> Any:
    r = raw(p, "POST", path, doc)
    return r.status, r.json()


def test_admin_preference_local_only_never_plans_cloud(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    fo = fakes("ollama", name="local", models=["m1"])
    fc = fakes("openai", name="cloud", models=["big-model"])
    cfg = make_config(
        {"a": ollama_backend(fo), "c": openai_backend(fc, location="cloud")},
        {
            "one": model("a", "m1"),
            "cloudy": model("c", "big-model", params_b=120, tier="cloud_standard"),
        },
        fallbacks={"cloudy": ["one"]},
        routes={"chat": {"strategy": "direct", "candidates": ["cloudy", "one"]}},
    )
    p = proxies(cfg)
    oc = clients.openai(p)
    r = oc.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert r.headers["x-traywire-backend"] == "c"
    assert status_of(p)["preference"] == "auto"

    status, doc = _admin(p, "/admin/preference", {"preference": "local_only"})
    assert status == 200 and doc == {"preference": "local_only", "preference_source": "runtime"}
    st = status_of(p)
    assert st["preference"] == "local_only" and st["preference_source"] == "runtime"

    fc.clear()
    r = oc.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert r.headers["x-traywire-backend"] == "a"
    r = oc.chat.completions.with_raw_response.create(model="cloudy", messages=USER)
    assert r.headers["x-traywire-backend"] == "a"
    fo.refuse()  # even with the local one down, no cloud call
    with pytest.raises(openai.APIStatusError):
        oc.chat.completions.create(model="chat", messages=USER)
    assert fc.request_count == 0

    status, doc = _admin(p, "/admin/preference", {"preference": "sometimes"})
    assert status == 400 and "local_only" in doc["error"]
    assert status_of(p)["preference"] == "local_only"


def test_admin_active_switches_exclusive_group(fakes: Any, proxies: Any, clients: Any) -> None:
    v1 = fakes("openai", name="v1", models=["Q"])
    v2 = fakes("openai", name="v2", models=["D"])
    cfg = make_config(
        {
            "v1": openai_backend(v1, exclusive_group="vllm"),
            "v2": openai_backend(v2, exclusive_group="vllm"),
        },
        {"q": model("v1", "Q"), "d": model("v2", "D")},
        routes={"chat": {"strategy": "direct", "candidates": ["q", "d"]}},
    )
    p = proxies(cfg)
    oc = clients.openai(p)
    assert status_of(p)["active"] == {"vllm": "v1"}
    r = oc.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert r.headers["x-traywire-backend"] == "v1"

    status, doc = _admin(p, "/admin/active", {"group": "vllm", "member": "v2"})
    assert status == 200 and doc == {"active": {"vllm": "v2"}}
    assert status_of(p)["active"] == {"vllm": "v2"}
    r = oc.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert r.headers["x-traywire-backend"] == "v2"
    assert r.parse().choices[0].message.content == v2.reply
    assert v1.count("/v1/chat/completions") == 1
    # the inactive member is not planned even when asked for by name
    with pytest.raises(openai.APIStatusError):
        oc.chat.completions.create(model="q", messages=USER)
    assert v1.count("/v1/chat/completions") == 1

    status, doc = _admin(p, "/admin/active", {"group": "vllm", "member": "nope"})
    assert status == 400 and "v1" in doc["error"]
    status, doc = _admin(p, "/admin/active", {"group": "nogroup", "member": "v1"})
    assert status == 400
    assert status_of(p)["active"] == {"vllm": "v2"}
    assert json.dumps(status_of(p)).count("nope") == 0
