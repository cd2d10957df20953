"""End to end: a request a backend cannot serve never takes that backend down,
the router learns what servers say they cannot (and can) do, and every
failure says why - with the official openai and ollama clients."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import ollama
import openai
import pytest
from aiohttp import web
from fakeclock import FakeClock
from proxy_fixtures import (
    USER,
    clients,
    fakes,
    make_config,
    model,
    ollama_backend,
    openai_backend,
    proxies,
    status_of,
    wait_until,
)

from traywire.core import routing
from traywire.core.request import parse

__all__ = ["clients", "fakes", "proxies"]

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg=="
)
IMAGE_MSG = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ],
    }
]


def test_embeddings_a_server_cannot_make_never_open_its_circuit(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    # a llama.cpp started without --embeddings, declared (wrongly) as embedding
    f = fakes("openai", name="cpp", models=["x.gguf"], any_model=True)
    f.status(
        501,
        body={
            "error": {
                "code": 501,
                "message": "This server does not support embeddings. Start it with `--embeddings`",
                "type": "not_supported_error",
            }
        },
        paths=["/v1/embeddings"],
    )
    cfg = make_config(
        {"cpp": openai_backend(f, single_model=True)},
        {"smol": model("cpp", "x", features=("chat", "completion", "embed"))},
    )
    p = proxies(cfg)
    oc = clients.openai(p)
    for _ in range(4):  # more than the failure threshold (2 here)
        with pytest.raises(openai.BadRequestError) as ei:
            oc.embeddings.create(model="smol", input="a document")
        assert "does not support embeddings" in ei.value.message
        assert ei.value.response.headers["x-traywire-route"] == "embed/model"
    st = status_of(p)["backends"]["cpp"]
    assert st["circuit"] == "closed" and st["consecutive_failures"] == 0
    c = oc.chat.completions.create(model="smol", messages=USER)  # chat is still served
    assert c.choices[0].message.content == f.reply


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def test_an_unsupported_need_is_learned_and_then_skipped_with_the_reason(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    first = fakes("ollama", name="first", models=["a"])
    second = fakes("openai", name="second", models=["b"])
    # what Ollama answers when a model cannot call tools
    first.status(400, body={"error": "registry.ollama.ai/library/a does not support tools"})
    cfg = make_config(
        {"one": ollama_backend(first), "two": openai_backend(second)},
        {
            "caller": model("one", "a"),  # features not declared: its server's word counts
            "helper": model("two", "b"),
        },
        fallbacks={"caller": ["helper"]},
    )
    p = proxies(cfg)
    oc = clients.openai(p)
    ask: Any = {"model": "caller", "messages": USER, "tools": TOOLS}
    r = oc.chat.completions.with_raw_response.create(**ask)
    assert r.headers["x-traywire-backend"] == "two"
    assert first.count("/api/chat") == 1
    # next time the router knows: caller is skipped without a call, and says why
    r = oc.chat.completions.with_raw_response.create(**ask)
    assert r.headers["x-traywire-backend"] == "two" and r.headers["x-traywire-attempts"] == "1"
    assert first.count("/api/chat") == 1
    status = status_of(p)
    assert status["learned"] == {"caller": ["tools"]}
    assert status["backends"]["one"]["circuit"] == "closed"
    assert status["backends"]["one"]["consecutive_failures"] == 0
    # and a chat without tools still goes to caller
    first.ok()
    r = oc.chat.completions.with_raw_response.create(model="caller", messages=USER)
    assert r.headers["x-traywire-backend"] == "one"
    # the decision says why, as the request log and the dashboard show it
    route = parse("openai", "chat", dict(ask)).route
    d = p.call(lambda: routing.decide(route, p.rt.cfg, p.rt.snapshot()))
    assert [(s.model, s.reason) for s in d.skipped] == [
        ("caller", "no tool calling (its server said so)")
    ]


def test_nothing_configured_can_serve_it_is_a_client_error_naming_who_can(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    f = fakes("ollama", name="oll", models=["m1", "e1"])
    cfg = make_config(
        {"a": ollama_backend(f)},
        {"chatty": model("a", "m1"), "emb": model("a", "e1", features=("embed",))},
    )
    p = proxies(cfg)
    with pytest.raises(openai.BadRequestError) as ei:
        clients.openai(p).embeddings.create(model="chatty", input="x")
    assert "needs embeddings; models that have it: emb" in ei.value.message
    assert ei.value.code == "unsupported_request"
    with pytest.raises(ollama.ResponseError) as oi:
        clients.ollama(p).chat(model="chatty", messages=IMAGE_MSG_OLLAMA)
    assert oi.value.status_code == 400 and "vision" in oi.value.error
    assert f.request_count == 0  # nothing was sent


IMAGE_MSG_OLLAMA = [{"role": "user", "content": "What is this?", "images": [PNG]}]


def test_a_dead_backend_keeps_naming_its_cause_and_a_missing_key_is_named_first(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fc = fakes("openai", name="cloud", models=["big"])
    clock = FakeClock()
    cfg = make_config(
        {"a": ollama_backend(fo), "c": openai_backend(fc, "cloud", key="env:NOT_SET_ANYWHERE")},
        {"local": model("a", "m1"), "cloudy": model("c", "big", tier="cloud_standard")},
        fallbacks={"cloudy": ["local"]},
    )
    p = proxies(cfg, keys={"c": None}, clock=clock)
    oc = clients.openai(p)
    fo.refuse()
    for _ in range(2):  # opens a's circuit
        with pytest.raises(openai.InternalServerError):
            oc.chat.completions.create(model="local", messages=USER)
    with pytest.raises(openai.InternalServerError) as ei:
        oc.chat.completions.create(model="cloudy", messages=USER)
    body = ei.value.body
    assert isinstance(body, dict)
    message = body["message"]
    assert message.startswith(
        "cloudy was not planned (no key for c (set the environment variable NOT_SET_ANYWHERE))"
    )
    assert "the 1 attempt failed: local on a: circuit open after 2 × connection refused" in message
    assert ei.value.response.headers["x-traywire-route"] == "chat/model"
    assert body["skipped"][0]["model"] == "cloudy"
    assert fc.request_count == 0


async def _ollama_stand_in(request: web.Request) -> web.StreamResponse:
    """An Ollama that says what its models can do (/api/show), as a real one does."""
    if request.path == "/api/tags":
        return web.json_response({"models": [{"name": "llava:7b"}, {"name": "nomic:latest"}]})
    body = await request.json()
    if request.path == "/api/embed":
        return web.json_response({"model": body["model"], "embeddings": [[0.5, 0.25]]})
    if request.path == "/api/chat":
        return web.json_response(
            {
                "model": body["model"],
                "message": {"role": "assistant", "content": "a cat"},
                "done": True,
                "done_reason": "stop",
            }
        )
    caps = {"llava:7b": ["completion", "vision"], "nomic:latest": ["embedding"]}
    return web.json_response({"capabilities": caps.get(body.get("model"), ["completion"])})


class StandIn:
    """An aiohttp app on its own loop thread (a backend for one test)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.port = 0

    def __enter__(self) -> StandIn:
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()


def test_what_an_ollama_says_its_models_can_do_is_learned(proxies: Any, clients: Any) -> None:
    app = web.Application()
    app.router.add_get("/api/tags", _ollama_stand_in)
    for path in ("/api/show", "/api/embed", "/api/chat"):
        app.router.add_post(path, _ollama_stand_in)
    with StandIn(app) as backend:
        url = f"http://127.0.0.1:{backend.port}"
        cfg = make_config(
            {"o": {"kind": "ollama", "url": url, "location": "local", "capacity": 2}},
            {"llava": model("o", "llava:7b"), "nomic": model("o", "nomic:latest")},
            health={"probe_interval": 0.2},
        )
        p = proxies(cfg, probes=True)
        assert wait_until(lambda: len(status_of(p)["features"]) == 2, 5), status_of(p)
        assert status_of(p)["features"] == {
            "llava": ["chat", "completion", "json", "vision"],
            "nomic": ["embed"],
        }
        oc = clients.openai(p)
        # an image goes to llava (it said it can see), embeddings to nomic
        r = oc.chat.completions.with_raw_response.create(model="llava", messages=IMAGE_MSG)
        assert r.headers["x-traywire-model"] == "llava"
        e = oc.embeddings.create(model="nomic", input="x")
        assert e.data[0].embedding == [0.5, 0.25]
        with pytest.raises(openai.BadRequestError) as ei:
            oc.chat.completions.create(model="nomic", messages=USER)  # it cannot chat
        assert "needs chat" in ei.value.message
        with pytest.raises(openai.BadRequestError) as ei:
            oc.embeddings.create(model="llava", input="x")
        assert "models that have it: nomic" in ei.value.message
