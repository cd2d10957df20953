"""End to end: DNS-rebinding and cross-origin guards, the client token, the
loopback-only rule, backend keys that never leak, and graceful shutdown."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from typing import Any

import ollama
import openai
import pytest
from harness import ProxyThread
from proxy_fixtures import (
    EVERYTHING,
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
    sse_payloads,
    status_of,
    wait_until,
)

from traywire.observe import dashboard
from traywire.proxy.runtime import Runtime
from traywire.server import Server

__all__ = ["clients", "fakes", "proxies"]


@pytest.fixture
def one(fakes: Any, proxies: Any) -> Any:
    """A proxy with one Ollama fake behind model "one"; returns (fake, proxy)."""
    fo = fakes("ollama", name="oll", models=["m1"])
    p = proxies(make_config({"a": ollama_backend(fo)}, {"one": model("a", "m1")}))
    return fo, p


# --------------------------------------------------------------------------- Host (DNS rebinding)


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "localhost.evil"],
)
def test_foreign_host_is_refused(one: Any, host: str) -> None:
    fo, p = one
    h = {"Host": host.format(port=p.server.port)}
    r = raw(p, "GET", "/v1/models", headers=h)
    assert r.status == 403, r
    assert "Host" in r.json()["error"]["message"]
    r = raw(p, "GET", "/api/tags", headers=h)
    assert r.status == 403 and isinstance(r.json()["error"], str)
    assert raw(p, "GET", "/status", headers=h).status == 403
    r = raw(p, "POST", "/v1/chat/completions", {"model": "one", "messages": USER}, h)
    assert r.status == 403
    r = raw(p, "POST", "/api/chat", {"model": "one", "messages": USER}, h)
    assert r.status == 403
    assert fo.request_count == 0


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "localhost"])
def test_own_host_names_are_accepted(one: Any, host: str) -> None:
    _, p = one
    r = raw(p, "GET", "/v1/models", headers={"Host": host.format(port=p.server.port)})
    assert r.status == 200


# --------------------------------------------------------------------------- admin origin


def test_admin_with_foreign_origin_is_refused(one: Any) -> None:
    _, p = one
    port = p.server.port
    for origin in ("http://evil.example", f"http://evil.example:{port}", "http://127.0.0.1:1"):
        r = raw(p, "POST", "/admin/preference", {"preference": "local_only"}, {"Origin": origin})
        assert r.status == 403, (origin, r)
        assert "origin" in r.json()["error"].lower()
    assert status_of(p)["preference"] == "auto"
    # a browser on the proxy's own origin, the one it was reached at: the
    # dashboard, with its session token
    session = p.server.app[dashboard.SESSION]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        r = raw(
            p,
            "POST",
            "/admin/preference",
            {"preference": "local_only"},
            {"Host": host, "Origin": f"http://{host}", "X-Traywire-Session": session},
        )
        assert r.status == 200, (host, r)
    assert status_of(p)["preference"] == "local_only"


def test_reads_from_a_foreign_origin_get_no_cors_headers(one: Any) -> None:
    """The README's rule for reading (DECISION): a GET from a page of another
    site gets its normal answer, 200, but without any CORS header, so the
    browser does not hand the body to that page; a preflight (which a page
    needs for a JSON body or a custom header) is never approved."""
    _, p = one
    foreign = {"Origin": "http://evil.example"}
    for path in ("/v1/models", "/api/tags", "/status", "/health", "/ui"):
        r = raw(p, "GET", path, headers=foreign)
        assert r.status == 200, (path, r)
        cors = [h for h in r.headers if h.lower().startswith("access-control-")]
        assert cors == [], (path, r.headers)
    preflight = {
        **foreign,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    for path in ("/v1/chat/completions", "/admin/preference", "/ui/api/keys"):
        r = raw(p, "OPTIONS", path, headers=preflight)
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], (path, r)


def _other_origins(port: int) -> list[str]:
    """Loopback origins that are not the proxy's own when it is reached at
    127.0.0.1:port: another port, another loopback address or name on the same
    port, another scheme, and things that are not bare origins."""
    return [
        "http://127.0.0.1:1",
        f"http://localhost:{port}",
        f"http://[::1]:{port}",
        f"http://127.0.0.2:{port}",
        f"https://127.0.0.1:{port}",
        f"http://127.0.0.1:{port}/ui",
        f"http://user@127.0.0.1:{port}",
        "null",
    ]


def test_one_same_origin_rule_for_admin_and_dashboard_calls(one: Any) -> None:
    """DECISION (security.py): an Origin is the proxy's own only if scheme, host
    and port are exactly those the request was sent to. Admin calls used to take
    any loopback host on the proxy's port; now they follow the dashboard's rule."""
    _, p = one
    port = p.server.port
    session = p.server.app[dashboard.SESSION]
    for origin in _other_origins(port):
        h = {"Origin": origin, "X-Traywire-Session": session}
        r = raw(p, "POST", "/admin/preference", {"preference": "local_only"}, h)
        assert r.status == 403, (origin, r)
        assert "origin" in r.json()["error"].lower(), (origin, r)
        r = raw(p, "POST", "/ui/api/reload", {}, h)
        assert r.status == 403, (origin, r)
        assert "origin" in r.json()["error"].lower(), (origin, r)
        assert r.headers["cache-control"] == "no-store"
    assert status_of(p)["preference"] == "auto"
    # the same origins may still use the model APIs: pages on this machine
    # may, foreign ones may not (rule 2; no change)
    for origin in ("http://127.0.0.1:1", f"http://[::1]:{port}", f"http://localhost:{port}"):
        r = raw(p, "POST", "/api/chat", {"model": "one", "messages": USER}, {"Origin": origin})
        assert r.status == 200, (origin, r)
    # the own origin, with default ports spelled out or not, and in any case
    own = {"Origin": f"HTTP://127.0.0.1:{port}", "X-Traywire-Session": session}
    assert raw(p, "POST", "/ui/api/reload", {}, own).status == 200
    r = raw(p, "POST", "/admin/preference", {"preference": "prefer_local"}, own)
    assert r.status == 200, r
    assert status_of(p)["preference"] == "prefer_local"
    h = {"Host": "localhost", "Origin": "http://localhost:80", "X-Traywire-Session": session}
    assert raw(p, "POST", "/admin/preference", {"preference": "auto"}, h).status == 200
    assert status_of(p)["preference"] == "auto"


def test_same_origin_unit() -> None:
    from aiohttp.test_utils import make_mocked_request

    from traywire.proxy import security

    req = make_mocked_request("POST", "/admin/preference", headers={"Host": "127.0.0.1:8484"})
    assert security.same_origin("http://127.0.0.1:8484", req)
    assert security.same_origin("http://127.0.0.1:8484/", req)
    for origin in [*_other_origins(8484), "", "http://", "not a url", "http://127.0.0.1:99999"]:
        assert not security.same_origin(origin, req), origin
    v6 = make_mocked_request("POST", "/ui/api/reload", headers={"Host": "[::1]:8484"})
    assert security.same_origin("http://[::1]:8484", v6)
    assert not security.same_origin("http://127.0.0.1:8484", v6)
    bare = make_mocked_request("POST", "/ui/api/reload", headers={"Host": "localhost"})
    assert security.same_origin("http://localhost", bare)
    assert security.same_origin("http://LOCALHOST:80", bare)
    assert not security.same_origin("http://localhost:8484", bare)


@pytest.mark.parametrize(
    "ctype", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]
)
def test_admin_with_form_content_type_is_415(one: Any, ctype: str) -> None:
    _, p = one
    r = raw(
        p, "POST", "/admin/preference", b'{"preference": "local_only"}', {"Content-Type": ctype}
    )
    assert r.status == 415, r
    r = raw(
        p,
        "POST",
        "/admin/active",
        b"group=vllm&member=x",
        {"Content-Type": ctype, "Origin": f"http://127.0.0.1:{p.server.port}"},
    )
    assert r.status == 415, r
    assert status_of(p)["preference"] == "auto"


# --------------------------------------------------------------------------- token


def test_token_required_when_configured(fakes: Any, proxies: Any, clients: Any) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    p = proxies(make_config({"a": ollama_backend(fo)}, {"one": model("a", "m1")}), token="s3cret")

    r = raw(p, "GET", "/v1/models")
    assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = raw(p, "GET", "/api/tags")
    assert r.status == 401 and isinstance(r.json()["error"], str)
    assert raw(p, "GET", "/status").status == 401
    assert raw(p, "GET", "/v1/models", headers={"Authorization": "Bearer nope"}).status == 401
    assert raw(p, "GET", "/v1/models", headers={"Authorization": "Bearer s3cret"}).status == 200
    assert raw(p, "GET", "/status", headers={"X-Traywire-Token": "s3cret"}).status == 200

    with pytest.raises(openai.AuthenticationError):
        clients.openai(p, api_key="wrong").chat.completions.create(model="one", messages=USER)
    with pytest.raises(ollama.ResponseError) as oi:
        clients.ollama(p).chat(model="one", messages=USER, stream=False)
    assert oi.value.status_code == 401
    r = raw(p, "POST", "/api/chat", {"model": "one", "messages": USER})
    assert r.status == 401
    assert fo.request_count == 0

    c = clients.openai(p, api_key="s3cret").chat.completions.create(model="one", messages=USER)
    assert c.choices[0].message.content == fo.reply
    lc = clients.ollama(p, headers={"Authorization": "Bearer s3cret"})
    assert lc.chat(model="one", messages=USER, stream=False).message.content == fo.reply
    assert chat_paths(fo) == 2
    # the client's token is the proxy's, never passed on to a backend
    for rec in fo.requests:
        assert "s3cret" not in json.dumps(dict(rec.headers))
        assert "Authorization" not in rec.headers


def test_client_api_key_is_not_forwarded_to_backends(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    fv = fakes("openai", name="vl", models=["M2"])
    p = proxies(make_config({"b": openai_backend(fv)}, {"two": model("b", "M2")}))
    clients.openai(p, api_key="sk-client-own").chat.completions.create(model="two", messages=USER)
    assert chat_paths(fv) == 1
    assert "sk-client-own" not in json.dumps(dict(fv.requests[0].headers))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])
def test_non_loopback_without_token_refused(fakes: Any, host: str) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    cfg = make_config({"a": ollama_backend(fo)}, {"one": model("a", "m1")})
    with pytest.raises(ValueError, match="token"):
        Server(Runtime(cfg), host, 0)
    Server(Runtime(cfg), host, 0, token="s3cret")  # allowed with a token
    for loopback in ("127.0.0.1", "localhost", "::1"):
        Server(Runtime(cfg), loopback, 0)


# --------------------------------------------------------------------------- backend keys

SECRET = "sk-secret-123"


def test_cloud_key_goes_only_to_its_backend_and_never_leaks(
    fakes: Any, proxies: Any, clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    fc = fakes("openai", name="cloud", models=["big"], api_key=SECRET)
    cfg = make_config(
        {
            "a": ollama_backend(fo),
            "b": openai_backend(fv),
            "c": openai_backend(fc, location="cloud", key="env:WHATEVER"),
        },
        {
            "one": model("a", "m1"),
            "two": model("b", "M2"),
            "cloudy": model("c", "big", params_b=120, tier="cloud_standard", features=EVERYTHING),
        },
        fallbacks={"cloudy": ["one", "two"]},
        health={"cooldown": 1, "failure_threshold": 5, "probe_interval": 0.3},
    )
    p = proxies(cfg, keys={"c": SECRET}, probes=True)
    oc = clients.openai(p)
    lc = clients.ollama(p)
    bodies: list[bytes] = []

    # probes of the cloud backend carry its key (the fake answers 401 otherwise)
    assert wait_until(lambda: status_of(p)["backends"]["c"]["health"] == "up", 3)

    r = oc.chat.completions.with_raw_response.create(model="cloudy", messages=USER)
    assert r.headers["x-traywire-backend"] == "c"
    bodies.append(r.content)
    bodies.append(lc.chat(model="cloudy", messages=USER, stream=False).model_dump_json().encode())
    bodies.append(
        raw(p, "POST", "/api/chat", {"model": "cloudy", "messages": USER, "stream": True}).body
    )
    bodies.append(raw(p, "POST", "/v1/embeddings", {"model": "cloudy", "input": "x"}).body)
    bodies.append(raw(p, "POST", "/v1/chat/completions", {"model": "one", "messages": USER}).body)
    bodies.append(raw(p, "POST", "/api/chat", {"model": "two", "messages": USER}).body)
    assert chat_paths(fc) == 4

    # failures on the cloud backend: failover, error texts, logs
    fc.status(500, times=1)
    r = oc.chat.completions.with_raw_response.create(model="cloudy", messages=USER)
    assert r.headers["x-traywire-backend"] == "a"
    bodies.append(r.content)
    fc.status(401, body={"error": {"message": "Incorrect API key provided"}}, times=1)
    with pytest.raises(openai.AuthenticationError) as ei:
        oc.chat.completions.create(model="cloudy", messages=USER)
    bodies.append(ei.value.response.content)
    fc.refuse()
    fo.refuse()
    fv.status(503)
    for path in ("/v1/chat/completions", "/api/chat"):
        rr = raw(p, "POST", path, {"model": "cloudy", "messages": USER, "stream": False})
        assert rr.status == 503
        bodies.append(rr.body)
    st = raw(p, "GET", "/status")
    bodies.append(st.body)
    assert st.json()["backends"]["c"]["key"] == "env:WHATEVER"
    for path in ("/v1/models", "/api/tags", "/api/ps", "/health"):
        bodies.append(raw(p, "GET", path).body)

    # the key went to c only, as a bearer token
    c_auth = {rec.headers.get("Authorization") for rec in fc.requests}
    assert c_auth == {f"Bearer {SECRET}"}
    for fake in (fo, fv):
        assert fake.request_count > 0
        for rec in fake.requests:
            assert SECRET not in json.dumps(dict(rec.headers)), (fake.name, rec.path)
            assert SECRET.encode() not in rec.body
    for b in bodies:
        assert SECRET.encode() not in b
    assert caplog.records, "expected some log output to check"
    assert SECRET not in caplog.text


# --------------------------------------------------------------------------- graceful shutdown


def _stream_in_thread(p: ProxyThread, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", p.server.port, timeout=30)
        try:
            body = json.dumps({"model": "one", "messages": USER, "stream": True})
            conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            out["status"] = resp.status
            out["body"] = resp.read()
        except Exception as exc:  # the point of some tests: how the stream ended
            out["error"] = exc
        finally:
            out["ended"] = time.monotonic()
            conn.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_shutdown_lets_a_stream_finish_within_grace(fakes: Any, proxies: Any) -> None:
    pieces = [f" p{i}" for i in range(8)]
    fo = fakes("ollama", name="oll", models=["m1"], reply=pieces, chunk_delay=0.2)
    p = proxies(make_config({"a": ollama_backend(fo)}, {"one": model("a", "m1")}), grace=4)
    out: dict[str, Any] = {}
    t = _stream_in_thread(p, out)
    assert fo.wait_for_requests(1, 3)
    time.sleep(0.3)  # the stream is under way
    t0 = time.monotonic()
    p.stop()
    stopped = time.monotonic() - t0
    t.join(5)
    assert not t.is_alive()
    assert "error" not in out, out
    assert out["status"] == 200
    payloads = sse_payloads(out["body"])
    assert payloads[-1] == "[DONE]"
    events = [json.loads(x) for x in payloads[:-1]]
    assert not any("error" in e for e in events)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "".join(pieces)
    assert stopped < 4, stopped
    assert out["ended"] <= t0 + stopped + 0.2  # the stream was done before stop() returned
    assert fo.requests[0].outcome == "completed"


def test_shutdown_past_grace_ends_the_stream_without_hanging(fakes: Any, proxies: Any) -> None:
    pieces = [f" p{i}" for i in range(100)]
    fo = fakes("ollama", name="oll", models=["m1"], reply=pieces, chunk_delay=0.2)
    p = proxies(make_config({"a": ollama_backend(fo)}, {"one": model("a", "m1")}), grace=1)
    out: dict[str, Any] = {}
    t = _stream_in_thread(p, out)
    assert fo.wait_for_requests(1, 3)
    time.sleep(0.3)
    t0 = time.monotonic()
    p.stop()
    stopped = time.monotonic() - t0
    assert stopped < 1 + 3, stopped
    t.join(3)
    assert not t.is_alive(), "the client's stream was left hanging"
    assert out["ended"] - t0 < 1 + 3
    # never a silent clean close passed off as the whole answer
    if "error" not in out:
        payloads = sse_payloads(out["body"])
        assert any('"error"' in x for x in payloads), out["body"][-300:]
    assert fo.wait_for_disconnect(2), "the upstream request must be closed too"
    with pytest.raises(OSError):
        raw(p, "GET", "/health", timeout=2)
