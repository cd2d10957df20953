"""End to end: bad requests get a clear 4xx in the caller's dialect naming the
problem, nothing reaches a backend, and the proxy keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import ollama
import openai
import pytest
from fakes import FakeBackend, FakeFactory
from harness import ProxyThread
from proxy_fixtures import (
    USER,
    Clients,
    Proxies,
    Raw,
    make_config,
    model,
    ollama_backend,
    openai_backend,
    raw,
)


@dataclass
class Setup:
    fo: FakeBackend
    fv: FakeBackend
    p: ProxyThread
    oc: openai.OpenAI
    lc: ollama.Client


@pytest.fixture(scope="module")
def _module_setup() -> Iterator[Setup]:
    # One proxy for the whole module: nothing here should reach a backend or change state.
    factory, started, cl = FakeFactory(), Proxies(), Clients()
    try:
        fo = factory("ollama", name="oll", models=["m1"])
        fv = factory("openai", name="vl", models=["M2"])
        cfg = make_config(
            {"a": ollama_backend(fo), "b": openai_backend(fv)},
            {"one": model("a", "m1"), "two": model("b", "M2")},
            fallbacks={"one": ["two"], "two": ["one"]},
            server={"max_body_mb": 0.01},  # 10 KiB
        )
        p = started(cfg)
        yield Setup(fo, fv, p, cl.openai(p), cl.ollama(p))
    finally:
        cl.close()
        started.stop_all()
        factory.stop_all()


@pytest.fixture
def s(_module_setup: Setup) -> Setup:
    _module_setup.fo.clear()
    _module_setup.fv.clear()
    return _module_setup


def _error_text(dialect: str, r: Raw) -> str:
    """The error message, checking the dialect's error shape on the way."""
    assert r.headers["content-type"].startswith("application/json"), r
    doc = r.json()
    if dialect == "openai":
        err = doc["error"]
        assert isinstance(err, dict), doc
        assert isinstance(err["message"], str) and err["message"]
        assert "type" in err and "code" in err and "param" in err
        return err["message"]  # type: ignore[no-any-return]
    assert isinstance(doc["error"], str) and doc["error"], doc
    return doc["error"]  # type: ignore[no-any-return]


def _still_serving_and_nothing_forwarded(s: Setup) -> None:
    assert s.fo.request_count == 0, [r.path for r in s.fo.requests]
    assert s.fv.request_count == 0, [r.path for r in s.fv.requests]
    c = s.oc.chat.completions.create(model="one", messages=USER)
    assert c.choices[0].message.content == s.fo.reply
    assert s.lc.chat(model="two", messages=USER, stream=False).message.content == s.fv.reply


CHAT = {"openai": "/v1/chat/completions", "ollama": "/api/chat"}
GOOD = {"model": "one", "messages": USER}

CASES: list[tuple[str, bytes, int, tuple[str, ...]]] = [
    ("invalid json", b'{"model": "one", "messages": [', 400, ("invalid json",)),
    ("empty body", b"", 400, ("empty",)),
    ("whitespace body", b"  \n ", 400, ("empty",)),
    ("not an object", b'[{"model": "one"}]', 400, ("json object",)),
    ("a string", b'"hello"', 400, ("json object",)),
    ("missing model", json.dumps({"messages": USER}).encode(), 400, ("model",)),
    ("model not a string", json.dumps({"model": 7, "messages": USER}).encode(), 400, ("model",)),
    (
        "wrong-typed stream",
        json.dumps({**GOOD, "stream": "yes"}).encode(),
        400,
        ("stream", "boolean"),
    ),
    (
        "messages not a list",
        json.dumps({"model": "one", "messages": "hi"}).encode(),
        400,
        ("messages",),
    ),
    (
        "message without role",
        json.dumps({"model": "one", "messages": [{"content": "hi"}]}).encode(),
        400,
        ("messages[0]", "role"),
    ),
]


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
@pytest.mark.parametrize(("case", "body", "status", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_chat_body(
    s: Setup, dialect: str, case: str, body: bytes, status: int, words: tuple[str, ...]
) -> None:
    r = raw(s.p, "POST", CHAT[dialect], body, {"Content-Type": "application/json"})
    assert r.status == status, r
    text = _error_text(dialect, r).lower()
    for w in words:
        assert w.lower() in text, text
    _still_serving_and_nothing_forwarded(s)


def test_wrong_typed_openai_fields(s: Setup) -> None:
    for extra, param in [
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": 5}, "stop"),
        ({"tools": {"not": "a list"}}, "tools"),
    ]:
        with pytest.raises(openai.BadRequestError) as ei:
            s.oc.chat.completions.create(model="one", messages=USER, extra_body=extra)
        assert param in ei.value.message, (extra, ei.value.message)
        assert isinstance(ei.value.body, dict) and ei.value.body.get("param") == param
    _still_serving_and_nothing_forwarded(s)


def test_wrong_typed_ollama_fields(s: Setup) -> None:
    for body, param in [
        ({**GOOD, "options": {"num_predict": "ten"}}, "options.num_predict"),
        ({**GOOD, "options": "fast"}, "options"),
        ({**GOOD, "format": 12}, "format"),
        ({"model": "one", "prompt": ["not", "a", "string"]}, "prompt"),
    ]:
        path = "/api/generate" if "prompt" in body else "/api/chat"
        r = raw(s.p, "POST", path, body)
        assert r.status == 400, (body, r)
        assert param in _error_text("ollama", r), (body, r)
    _still_serving_and_nothing_forwarded(s)


def test_unknown_model_is_404_listing_known_names(s: Setup) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        s.oc.chat.completions.create(model="gpt-17", messages=USER)
    msg = ei.value.message
    assert "gpt-17" in msg and "one" in msg and "two" in msg
    assert isinstance(ei.value.body, dict) and ei.value.body.get("code") == "model_not_found"
    with pytest.raises(ollama.ResponseError) as oi:
        s.lc.chat(model="gpt-17", messages=USER, stream=False)
    assert oi.value.status_code == 404
    assert "gpt-17" in oi.value.error and "one" in oi.value.error and "two" in oi.value.error
    with pytest.raises(ollama.ResponseError) as oi:
        s.lc.embed(model="gpt-17", input="x")
    assert oi.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        s.oc.embeddings.create(model="gpt-17", input="x")
    _still_serving_and_nothing_forwarded(s)


def test_empty_messages_list_openai(s: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        s.oc.chat.completions.create(model="one", messages=[])
    assert "messages" in ei.value.message and "empty" in ei.value.message
    _still_serving_and_nothing_forwarded(s)


def test_empty_embedding_input(s: Setup) -> None:
    r = raw(s.p, "POST", "/api/embed", {"model": "one", "input": []})
    assert r.status == 400 and "input" in _error_text("ollama", r)
    r = raw(s.p, "POST", "/api/embed", {"model": "one"})
    assert r.status == 400 and "input" in _error_text("ollama", r)
    r = raw(s.p, "POST", "/v1/embeddings", {"model": "one", "input": []})
    assert r.status == 400 and "input" in _error_text("openai", r)
    _still_serving_and_nothing_forwarded(s)


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_body_over_the_limit_is_413(s: Setup, dialect: str) -> None:
    big = {"model": "one", "messages": [{"role": "user", "content": "x" * 20_000}]}
    r = raw(s.p, "POST", CHAT[dialect], big)
    assert r.status == 413, r
    text = _error_text(dialect, r)
    assert "limit" in text or "too large" in text
    # just under the limit is fine
    ok = {"model": "one", "messages": [{"role": "user", "content": "x" * 9_000}], "stream": False}
    assert raw(s.p, "POST", CHAT[dialect], ok).status == 200
    s.fo.clear()
    _still_serving_and_nothing_forwarded(s)


@pytest.mark.parametrize(
    ("dialect", "method", "path"),
    [
        ("openai", "GET", "/v1/foo"),
        ("openai", "POST", "/v1/foo"),
        ("openai", "POST", "/v1/audio/speech"),
        ("ollama", "GET", "/api/foo"),
        ("ollama", "POST", "/api/blobs/sha256:abc"),
    ],
)
def test_unsupported_endpoint_is_404_in_dialect(
    s: Setup, dialect: str, method: str, path: str
) -> None:
    r = raw(s.p, method, path, GOOD if method == "POST" else None)
    assert r.status == 404, r
    assert path in _error_text(dialect, r)
    _still_serving_and_nothing_forwarded(s)


@pytest.mark.parametrize(
    ("dialect", "method", "path"),
    [
        ("openai", "GET", "/v1/chat/completions"),
        ("openai", "PUT", "/v1/embeddings"),
        ("openai", "DELETE", "/v1/models"),
        ("ollama", "GET", "/api/chat"),
        ("ollama", "POST", "/api/tags"),
    ],
)
def test_wrong_method_is_405_in_dialect(s: Setup, dialect: str, method: str, path: str) -> None:
    r = raw(s.p, method, path, GOOD if method in ("POST", "PUT") else None)
    assert r.status == 405, r
    assert method in _error_text(dialect, r)
    _still_serving_and_nothing_forwarded(s)


def test_admin_bad_bodies(s: Setup) -> None:
    r = raw(s.p, "POST", "/admin/preference", b"{nope", {"Content-Type": "application/json"})
    assert r.status == 400 and "json" in r.json()["error"].lower()
    r = raw(s.p, "POST", "/admin/preference", [1, 2])
    assert r.status == 400
    r = raw(s.p, "POST", "/admin/active", {"group": 1})
    assert r.status == 400
    _still_serving_and_nothing_forwarded(s)
