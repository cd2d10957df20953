"""End to end: both client dialects against both backend kinds, listings, status,
translation details a client can see, and traywire's response headers."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import ollama
import openai
import pytest
from fakes import FakeBackend
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
    status_of,
    wait_until,
)

__all__ = ["clients", "fakes", "proxies"]


@dataclass
class Duo:
    fo: FakeBackend  # Ollama dialect, backend "a", serves m1 (model "one")
    fv: FakeBackend  # OpenAI dialect (vLLM-like), backend "b", serves M2 (model "two")
    p: ProxyThread
    oc: openai.OpenAI
    lc: ollama.Client


@pytest.fixture
def duo(fakes: Any, proxies: Any, clients: Any) -> Duo:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    cfg = make_config(
        {"a": ollama_backend(fo), "b": openai_backend(fv)},
        {
            "one": model("a", "m1", features=EVERYTHING),
            "two": model("b", "M2", features=EVERYTHING),
        },
        routes={"chat": {"strategy": "direct", "candidates": ["one", "two"]}},
    )
    p = proxies(cfg)
    return Duo(fo, fv, p, clients.openai(p), clients.ollama(p))


def only(fake: FakeBackend, path: str) -> dict[str, Any]:
    """The body of the single inference request the fake got, on ``path``."""
    recs = [r for r in fake.requests if r.path == path]
    assert len(recs) == 1, [(r.method, r.path) for r in fake.requests]
    assert chat_paths(fake) == 1
    return recs[0].json  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- chat


def test_openai_client_chat_on_ollama_backend(duo: Duo) -> None:
    r = duo.oc.chat.completions.with_raw_response.create(model="one", messages=USER)
    c = r.parse()
    assert r.headers["x-traywire-backend"] == "a"
    assert c.choices[0].message.content == duo.fo.reply
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].finish_reason == "stop"
    assert c.model == "one"
    assert c.object == "chat.completion"
    sent = only(duo.fo, "/api/chat")
    assert sent["model"] == "m1"
    assert sent["stream"] is False
    assert sent["messages"] == [{"role": "user", "content": USER[0]["content"]}]
    assert duo.fv.request_count == 0


def test_openai_client_stream_on_ollama_backend(duo: Duo) -> None:
    stream = duo.oc.chat.completions.create(
        model="one", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == duo.fo.reply
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert all(f is None for f in finishes[:-1])
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(duo.fo.reply.split())
    assert {c.model for c in chunks} == {"one"}
    sent = only(duo.fo, "/api/chat")
    assert sent["stream"] is True


def test_openai_client_chat_on_openai_backend(duo: Duo) -> None:
    r = duo.oc.chat.completions.with_raw_response.create(model="two", messages=USER)
    c = r.parse()
    assert r.headers["x-traywire-backend"] == "b"
    assert c.choices[0].message.content == duo.fv.reply
    assert c.model == "two"
    assert c.usage is not None and c.usage.completion_tokens == len(duo.fv.reply.split())
    sent = only(duo.fv, "/v1/chat/completions")
    assert sent["model"] == "M2"
    assert sent["messages"] == USER
    assert duo.fo.request_count == 0


def test_openai_client_stream_on_openai_backend(duo: Duo) -> None:
    with duo.oc.chat.completions.with_streaming_response.create(
        model="two", messages=USER, stream=True
    ) as r:
        assert r.headers["x-traywire-backend"] == "b"
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = list(r.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == duo.fv.reply
    assert {c.model for c in chunks} == {"two"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert only(duo.fv, "/v1/chat/completions")["stream"] is True


def test_ollama_client_chat_on_openai_backend(duo: Duo) -> None:
    r = duo.lc.chat(model="two", messages=USER, stream=False)
    assert r.message.content == duo.fv.reply
    assert r.message.role == "assistant"
    assert r.model == "two"
    assert r.done is True
    assert r.done_reason == "stop"
    assert r.eval_count == len(duo.fv.reply.split())
    assert r.prompt_eval_count == len(USER[0]["content"].split())
    sent = only(duo.fv, "/v1/chat/completions")
    assert sent["model"] == "M2"
    assert sent["stream"] is False
    assert sent["messages"] == USER
    assert duo.fo.request_count == 0


def test_ollama_client_stream_on_openai_backend(duo: Duo) -> None:
    parts = list(duo.lc.chat(model="two", messages=USER, stream=True))
    assert "".join(p.message.content or "" for p in parts) == duo.fv.reply
    assert parts[-1].done is True
    assert all(not p.done for p in parts[:-1])
    assert parts[-1].done_reason == "stop"
    assert {p.model for p in parts} == {"two"}
    # the proxy asks the OpenAI backend for usage so the last line has the counts
    assert parts[-1].eval_count == len(duo.fv.reply.split())
    assert parts[-1].prompt_eval_count == len(USER[0]["content"].split())
    sent = only(duo.fv, "/v1/chat/completions")
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


def test_ollama_client_chat_on_ollama_backend(duo: Duo) -> None:
    r = duo.lc.chat(model="one", messages=USER, stream=False)
    assert r.message.content == duo.fo.reply
    assert r.model == "one"
    assert r.done_reason == "stop"
    sent = only(duo.fo, "/api/chat")
    assert sent["model"] == "m1" and sent["stream"] is False


def test_ollama_client_stream_on_ollama_backend(duo: Duo) -> None:
    parts = list(duo.lc.chat(model="one", messages=USER, stream=True))
    assert "".join(p.message.content or "" for p in parts) == duo.fo.reply
    assert parts[-1].done is True and parts[-1].done_reason == "stop"
    assert parts[-1].eval_count == len(duo.fo.reply.split())
    assert {p.model for p in parts} == {"one"}
    assert only(duo.fo, "/api/chat")["stream"] is True


def test_ollama_default_is_streaming(duo: Duo) -> None:
    """Ollama streams when ``stream`` is absent; the proxy must keep that."""
    r = raw(duo.p, "POST", "/api/chat", {"model": "two", "messages": USER})
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.body.decode().splitlines() if x.strip()]
    assert len(lines) > 2
    assert lines[-1]["done"] is True
    assert "".join(x["message"]["content"] for x in lines) == duo.fv.reply


# --------------------------------------------------------------------------- completions


def test_openai_completion_on_ollama_backend(duo: Duo) -> None:
    r = duo.oc.completions.with_raw_response.create(model="one", prompt="Once upon a time")
    c = r.parse()
    assert r.headers["x-traywire-backend"] == "a"
    assert c.choices[0].text == duo.fo.reply
    assert c.choices[0].finish_reason == "stop"
    assert c.model == "one"
    sent = only(duo.fo, "/api/generate")
    assert sent["prompt"] == "Once upon a time"
    assert sent["model"] == "m1"


def test_openai_completion_stream_on_openai_backend(duo: Duo) -> None:
    chunks = list(duo.oc.completions.create(model="two", prompt="Once upon a time", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == duo.fv.reply
    assert {c.model for c in chunks} == {"two"}
    sent = only(duo.fv, "/v1/completions")
    assert sent["prompt"] == "Once upon a time" and sent["stream"] is True


def test_openai_completion_stream_on_ollama_backend(duo: Duo) -> None:
    chunks = list(duo.oc.completions.create(model="one", prompt="Once upon a time", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == duo.fo.reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert only(duo.fo, "/api/generate")["stream"] is True


def test_ollama_generate_on_ollama_backend(duo: Duo) -> None:
    r = duo.lc.generate(model="one", prompt="Once upon a time", stream=False)
    assert r.response == duo.fo.reply
    assert r.model == "one"
    assert r.done_reason == "stop"
    assert only(duo.fo, "/api/generate")["prompt"] == "Once upon a time"


def test_ollama_generate_on_openai_backend(duo: Duo) -> None:
    """A plain generate becomes a chat on an OpenAI backend, ``system`` a system message."""
    r = duo.lc.generate(model="two", prompt="Once upon a time", system="Be brief.", stream=False)
    assert r.response == duo.fv.reply
    assert r.model == "two"
    assert r.done_reason == "stop"
    sent = only(duo.fv, "/v1/chat/completions")
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Once upon a time"},
    ]


def test_ollama_generate_raw_stream_on_openai_backend(duo: Duo) -> None:
    parts = list(duo.lc.generate(model="two", prompt="def add(a, b):", raw=True, stream=True))
    assert "".join(p.response for p in parts) == duo.fv.reply
    assert parts[-1].done is True
    sent = only(duo.fv, "/v1/completions")
    assert sent["prompt"] == "def add(a, b):" and sent["stream"] is True


# --------------------------------------------------------------------------- embeddings


def test_openai_embeddings_on_ollama_backend(duo: Duo, clients: Any) -> None:
    texts = ["first text", "second one"]
    got = duo.oc.embeddings.create(model="one", input=texts)  # base64 on the wire
    sent = only(duo.fo, "/api/embed")
    assert sent["input"] == texts and sent["model"] == "m1"
    direct = ollama.Client(host=duo.fo.url).embed(model="m1", input=texts).embeddings
    assert [d.index for d in got.data] == [0, 1]
    for d, want in zip(got.data, direct, strict=True):
        assert d.embedding == pytest.approx(want, abs=1e-6)
    assert got.model == "one"


def test_openai_embeddings_on_openai_backend(duo: Duo) -> None:
    got = duo.oc.embeddings.create(model="two", input="hello world", encoding_format="float")
    assert only(duo.fv, "/v1/embeddings")["input"] == "hello world"
    direct = openai.OpenAI(base_url=duo.fv.url + "/v1", api_key="x").embeddings.create(
        model="M2", input="hello world", encoding_format="float"
    )
    assert got.data[0].embedding == direct.data[0].embedding
    assert got.model == "two"


def test_ollama_embed_on_openai_backend(duo: Duo) -> None:
    got = duo.lc.embed(model="two", input=["a b c", "d"])
    assert only(duo.fv, "/v1/embeddings")["input"] == ["a b c", "d"]
    direct = openai.OpenAI(base_url=duo.fv.url + "/v1", api_key="x").embeddings.create(
        model="M2", input=["a b c", "d"], encoding_format="float"
    )
    assert len(got.embeddings) == 2
    for vec, d in zip(got.embeddings, direct.data, strict=True):
        assert list(vec) == pytest.approx(d.embedding, abs=1e-6)
    assert got.model == "two"


def test_ollama_embed_on_ollama_backend(duo: Duo) -> None:
    got = duo.lc.embed(model="one", input="hello")
    direct = ollama.Client(host=duo.fo.url).embed(model="m1", input="hello")
    assert [list(v) for v in got.embeddings] == [list(v) for v in direct.embeddings]
    assert got.model == "one"
    assert duo.fo.count("/api/embed") == 2  # ours and the direct one


# --------------------------------------------------------------------------- listings


def test_v1_models_lists_models_and_aliases(duo: Duo) -> None:
    ids = [m.id for m in duo.oc.models.list()]
    assert sorted(ids) == ["auto", "chat", "one", "two"]
    assert duo.oc.models.retrieve("chat").id == "chat"
    with pytest.raises(openai.NotFoundError):
        duo.oc.models.retrieve("nope")
    data = raw(duo.p, "GET", "/v1/models").json()["data"]
    kinds = {m["id"]: m["traywire"]["kind"] for m in data}
    assert kinds == {"one": "model", "two": "model", "chat": "route", "auto": "auto"}
    assert ids == ["one", "two", "chat", "auto"]  # models first, then routes
    assert duo.fo.request_count == 0 and duo.fv.request_count == 0


def test_api_tags_and_version(duo: Duo) -> None:
    names = [m.model for m in duo.lc.list().models]
    assert names == ["one", "two", "chat", "auto"]
    v = raw(duo.p, "GET", "/api/version")
    assert v.status == 200
    major, minor, *_ = (int(x) for x in v.json()["version"].split("."))
    assert (major, minor) >= (0, 5)
    assert "traywire" in v.json()


def test_api_ps_aggregates_ollama_backends(fakes: Any, proxies: Any, clients: Any) -> None:
    f1 = fakes("ollama", name="o1", models=["m1"])
    f2 = fakes("ollama", name="o2", models=["m3", "m4"])
    fv = fakes("openai", name="vl", models=["M2"])
    cfg = make_config(
        {"a": ollama_backend(f1), "c": ollama_backend(f2), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "three": model("c", "m3"), "two": model("b", "M2")},
    )
    p = proxies(cfg)
    got = raw(p, "GET", "/api/ps").json()["models"]
    # configured models under their public names, others under Ollama's
    assert sorted((m["name"], m["traywire_backend"]) for m in got) == [
        ("m4:latest", "c"),
        ("one", "a"),
        ("three", "c"),
    ]
    assert sorted(m.model for m in clients.ollama(p).ps().models) == ["m4:latest", "one", "three"]
    assert fv.request_count == 0
    # a backend that is down just contributes nothing
    f2.refuse()
    got = raw(p, "GET", "/api/ps").json()["models"]
    assert [(m["name"], m["traywire_backend"]) for m in got] == [("one", "a")]


def test_health(duo: Duo) -> None:
    r = raw(duo.p, "GET", "/health")
    assert r.status == 200
    assert r.json()["status"] == "ok"


def test_status_reports_backends_preference_and_groups(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"], chunk_delay=0.2)
    v1 = fakes("openai", name="v1", models=["Q"])
    v2 = fakes("openai", name="v2", models=["D"])
    cfg = make_config(
        {
            "a": ollama_backend(fo, capacity=3),
            "v1": openai_backend(v1, exclusive_group="vllm"),
            "v2": openai_backend(v2, exclusive_group="vllm"),
        },
        {"one": model("a", "m1"), "q": model("v1", "Q"), "d": model("v2", "D")},
        exclusive_groups={"vllm": {"active": "v2"}},
        preference="prefer_local",
    )
    p = proxies(cfg)
    st = status_of(p)
    assert st["preference"] == "prefer_local"
    assert st["active"] == {"vllm": "v2"}
    assert set(st["backends"]) == {"a", "v1", "v2"}
    a = st["backends"]["a"]
    for key in ("health", "circuit", "in_flight", "capacity", "latency_ms"):
        assert key in a, key
    assert a["capacity"] == 3
    assert a["circuit"] == "closed"
    assert a["in_flight"] == 0
    assert a["health"] == "unknown"
    assert st["backends"]["v1"]["exclusive_group"] == "vllm"

    # while a slow stream is running the backend shows it in flight
    oc = clients.openai(p)
    seen: list[int] = []

    def watch() -> None:
        wait_until(lambda: status_of(p)["backends"]["a"]["in_flight"] == 1, 3)
        seen.append(status_of(p)["backends"]["a"]["in_flight"])

    t = threading.Thread(target=watch)
    t.start()
    list(oc.chat.completions.create(model="one", messages=USER, stream=True))
    t.join()
    assert seen == [1]
    a = status_of(p)["backends"]["a"]
    assert a["in_flight"] == 0
    assert a["health"] == "up"
    assert isinstance(a["latency_ms"], int | float) and a["latency_ms"] > 0


# --------------------------------------------------------------------------- translation


def test_roles_and_system_prompt_reach_ollama_backend(duo: Duo) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "How are you?"},
    ]
    duo.oc.chat.completions.create(model="one", messages=messages)  # type: ignore[arg-type]
    sent = only(duo.fo, "/api/chat")["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "You are terse."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("system", "Answer in French."),
        ("user", "How are you?"),
    ]


def test_roles_and_system_prompt_reach_openai_backend(duo: Duo) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "How are you?"},
    ]
    duo.lc.chat(model="two", messages=messages, stream=False)
    sent = only(duo.fv, "/v1/chat/completions")["messages"]
    assert sent == messages


def test_max_tokens_temperature_stop_to_ollama_options(duo: Duo) -> None:
    c = duo.oc.chat.completions.create(
        model="one", messages=USER, max_tokens=3, temperature=0.25, stop=["END", "\n\n"]
    )
    opts = only(duo.fo, "/api/chat")["options"]
    assert opts["num_predict"] == 3
    assert opts["temperature"] == 0.25
    assert opts["stop"] == ["END", "\n\n"]
    assert c.choices[0].message.content == "Hello from oll!"
    assert c.choices[0].finish_reason == "length"
    assert c.usage is not None and c.usage.completion_tokens == 3


def test_ollama_options_to_openai_fields(duo: Duo) -> None:
    r = duo.lc.chat(
        model="two",
        messages=USER,
        stream=False,
        options={"num_predict": 2, "temperature": 0.7, "stop": ["STOP"], "top_k": 20},
    )
    sent = only(duo.fv, "/v1/chat/completions")
    assert sent["max_tokens"] == 2
    assert sent["temperature"] == 0.7
    assert sent["stop"] == ["STOP"]
    assert sent["top_k"] == 20  # vLLM/llama.cpp extension kept
    assert r.message.content == "Hello from"
    assert r.done_reason == "length"
    assert r.eval_count == 2


def test_openai_usage_from_ollama_counts(duo: Duo) -> None:
    c = duo.oc.chat.completions.create(model="one", messages=USER)
    assert c.usage is not None
    assert c.usage.prompt_tokens == len(USER[0]["content"].split())
    assert c.usage.completion_tokens == len(duo.fo.reply.split())
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


def test_model_field_is_the_requested_alias(duo: Duo) -> None:
    r = duo.oc.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert r.parse().model == "chat"
    assert r.headers["x-traywire-model"] == "one"
    assert r.headers["x-traywire-backend"] == "a"
    o = duo.lc.chat(model="chat", messages=USER, stream=False)
    assert o.model == "chat"


def test_same_dialect_passthrough_keeps_unknown_fields(duo: Duo) -> None:
    duo.oc.chat.completions.create(
        model="two",
        messages=USER,
        extra_body={"x_custom": {"a": [1, 2]}, "guided_choice": ["yes", "no"], "top_k": 7},
    )
    sent = only(duo.fv, "/v1/chat/completions")
    assert sent["x_custom"] == {"a": [1, 2]}
    assert sent["guided_choice"] == ["yes", "no"]
    assert sent["top_k"] == 7

    body = {
        "model": "one",
        "messages": USER,
        "stream": False,
        "x_custom": "kept",
        "keep_alive": "5m",
        "options": {"num_ctx": 4096, "mirostat": 1},
    }
    r = raw(duo.p, "POST", "/api/chat", body)
    assert r.status == 200, r
    sent = only(duo.fo, "/api/chat")
    assert sent["x_custom"] == "kept"
    assert sent["keep_alive"] == "5m"
    assert sent["options"] == {"num_ctx": 4096, "mirostat": 1}


_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def test_tool_calls_round_trip_openai_client_ollama_backend(duo: Duo) -> None:
    # The fake has no tool logic: it answers with a canned Ollama tool-call reply.
    duo.fo.status(
        200,
        body={
            "model": "m1",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                ],
            },
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 12,
            "eval_count": 6,
        },
        times=1,
    )
    c = duo.oc.chat.completions.create(
        model="one",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=_TOOLS,  # type: ignore[arg-type]
    )
    sent = only(duo.fo, "/api/chat")
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == _TOOLS[0]["function"]["parameters"]
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert calls[0].id

    # second turn: the call and its result go back to the backend in Ollama's shape
    duo.fo.clear()
    c2 = duo.oc.chat.completions.create(
        model="one",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": calls[0].id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny, 21 C"},
        ],
        tools=_TOOLS,  # type: ignore[arg-type]
    )
    assert c2.choices[0].message.content == duo.fo.reply
    msgs = only(duo.fo, "/api/chat")["messages"]
    assert msgs[1]["role"] == "assistant"
    assert msgs[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert msgs[2]["role"] == "tool"
    assert msgs[2]["content"] == "sunny, 21 C"
    assert msgs[2]["tool_name"] == "get_weather"


def test_tool_calls_ollama_client_openai_backend(duo: Duo) -> None:
    duo.fv.status(
        200,
        body={
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "M2",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_7",
                                "type": "function",
                                "function": {
                                    "name": "get_weather",
                                    "arguments": '{"city": "Oslo"}',
                                },
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
        },
        times=1,
    )
    r = duo.lc.chat(
        model="two",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=_TOOLS,
        stream=False,
    )
    sent = only(duo.fv, "/v1/chat/completions")
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert r.message.tool_calls is not None
    assert r.message.tool_calls[0].function.name == "get_weather"
    assert dict(r.message.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert r.prompt_eval_count == 9 and r.eval_count == 4


# --------------------------------------------------------------------------- headers


def test_traywire_headers_on_model_route_and_failover(
    fakes: Any, proxies: Any, clients: Any
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    cfg = make_config(
        {"a": ollama_backend(fo), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "two": model("b", "M2")},
        fallbacks={"one": ["two"]},
        routes={"chat": {"strategy": "direct", "candidates": ["one", "two"]}},
        health={"cooldown": 1, "failure_threshold": 5},
    )
    p = proxies(cfg)
    oc = clients.openai(p)
    r = oc.chat.completions.with_raw_response.create(model="one", messages=USER)
    assert r.headers["x-traywire-model"] == "one"
    assert r.headers["x-traywire-backend"] == "a"
    assert r.headers["x-traywire-route"] == "chat/model"
    assert r.headers["x-traywire-attempts"] == "1"

    r = oc.chat.completions.with_raw_response.create(model="chat", messages=USER)
    assert r.headers["x-traywire-route"] == "chat/direct"
    assert r.headers["x-traywire-model"] == "one"

    fo.status(500)
    r = oc.chat.completions.with_raw_response.create(model="one", messages=USER)
    assert r.headers["x-traywire-model"] == "two"
    assert r.headers["x-traywire-backend"] == "b"
    assert r.headers["x-traywire-attempts"] == "2"
    assert r.parse().model == "one"  # still the name the client asked for

    # streams carry them too, and the Ollama dialect as well
    t0 = time.monotonic()
    lr = raw(p, "POST", "/api/chat", {"model": "one", "messages": USER})
    assert time.monotonic() - t0 < 5
    assert lr.status == 200
    assert lr.headers["x-traywire-backend"] == "b"
    assert lr.headers["x-traywire-model"] == "two"
    assert lr.headers["x-traywire-attempts"] == "2"
    assert lr.headers["x-traywire-route"] == "chat/model"
