"""End to end: tool calls through the proxy, streamed and not, in all four
client dialect / backend kind combinations, with the official clients.

The fakes answer a chat that offers ``tools`` with a real server's tool call
(`FakeBackend.tool_call`): an OpenAI-kind backend streams the call as a head
chunk and several argument fragments, an Ollama-kind one as a whole call with
the arguments as a JSON object. Each test checks what the client assembles and
what the backend was sent, so a translation that breaks either way shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import ollama
import openai
import pytest
from fakes import FakeBackend, FakeToolCall
from harness import ProxyThread
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
)
from proxy_fixtures import (
    chat_paths,
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
)

__all__ = ["clients", "fakes", "proxies"]

TOOLS: list[ChatCompletionFunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "units": {"type": "object"},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a timezone",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string"}},
                "required": ["tz"],
            },
        },
    },
]

# Non-ASCII (escaped as \u00e3 by the fake, so a fragment can end inside an
# escape), nested objects and lists: the arguments must survive fragmenting,
# reassembly and the string <-> object conversion intact.
ARGS: dict[str, Any] = {
    "city": "São Paulo",
    "days": 3,
    "units": {"temp": "C", "wind": ["km/h", "m/s"]},
    "note": 'say "hi"',
}
TIME_ARGS: dict[str, Any] = {"tz": "Europe/Oslo"}

ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather in São Paulo?"}
]

# (client dialect, backend kind)
COMBOS = [
    pytest.param("openai", "openai", id="openai-client-openai-backend"),
    pytest.param("openai", "ollama", id="openai-client-ollama-backend"),
    pytest.param("ollama", "openai", id="ollama-client-openai-backend"),
    pytest.param("ollama", "ollama", id="ollama-client-ollama-backend"),
]
KINDS = ["openai", "ollama"]


def _setup(fakes: Any, proxies: Any, kind: str) -> tuple[FakeBackend, ProxyThread]:
    """One backend ``a`` of ``kind`` serving model "m", answering tools with a call."""
    if kind == "ollama":
        f = fakes("ollama", name="oll", models=["m1"])
        cfg = make_config({"a": ollama_backend(f)}, {"m": model("a", "m1")})
    else:
        f = fakes("openai", name="vl", models=["M2"])
        cfg = make_config({"a": openai_backend(f)}, {"m": model("a", "M2")})
    f.tool_call("get_weather", ARGS)
    return f, proxies(cfg)


def _upstream_path(kind: str) -> str:
    return "/api/chat" if kind == "ollama" else "/v1/chat/completions"


def _sent(fake: FakeBackend, kind: str) -> dict[str, Any]:
    """The body of the one chat request the backend got, checked to be in its dialect."""
    assert chat_paths(fake) == 1, [(r.method, r.path) for r in fake.requests]
    rec = fake.last_request
    assert rec is not None
    assert rec.path == _upstream_path(kind)
    assert isinstance(rec.json, dict)
    return rec.json


def _assert_tools_sent(sent: dict[str, Any], kind: str, *, stream: bool) -> None:
    """Both dialects take OpenAI-shaped function tools; the rest of the body is the
    backend's own dialect."""
    assert sent["model"] == ("m1" if kind == "ollama" else "M2")
    assert sent["stream"] is stream
    tools = sent["tools"]
    assert [t["type"] for t in tools] == ["function", "function"]
    assert [t["function"]["name"] for t in tools] == ["get_weather", "get_time"]
    for got, want in zip(tools, TOOLS, strict=True):
        assert got["function"]["parameters"] == want["function"]["parameters"]
        assert got["function"]["description"] == want["function"]["description"]
    if kind == "ollama":
        assert "stream_options" not in sent and "tool_choice" not in sent
        assert sent["messages"] == [{"role": "user", "content": ASK[0]["content"]}]
    else:
        assert sent["messages"] == ASK
        assert "options" not in sent


def _assemble(chunks: Iterable[ChatCompletionChunk]) -> dict[int, dict[str, Any]]:
    """Tool call deltas assembled by index, as an OpenAI streaming consumer does;
    also counts the argument fragments each call came in."""
    calls: dict[int, dict[str, Any]] = {}
    for c in chunks:
        for choice in c.choices:
            for tc in choice.delta.tool_calls or ():
                acc = calls.setdefault(
                    tc.index, {"id": None, "type": None, "name": "", "args": "", "fragments": 0}
                )
                if tc.id:
                    assert acc["id"] is None, "a call's id is sent once, in its head chunk"
                    acc["id"] = tc.id
                if tc.type:
                    acc["type"] = tc.type
                if tc.function is not None:
                    acc["name"] += tc.function.name or ""
                    if tc.function.arguments:
                        acc["args"] += tc.function.arguments
                        acc["fragments"] += 1
    return calls


def _fake_ids(fake: FakeBackend) -> list[str]:
    """The call ids an OpenAI-kind fake made up for its last request."""
    rec = fake.last_request
    assert rec is not None
    return [c.id or f"call_{c.name}_{rec.index}_{i}" for i, c in enumerate(fake.tool_calls)]


def _check_openai_stream(
    chunks: list[ChatCompletionChunk],
    kind: str,
    expected: list[tuple[str, dict[str, Any]]],
    ids: list[str] | None = None,
) -> dict[int, dict[str, Any]]:
    """The chunks an OpenAI client got hold exactly the ``expected`` calls (with
    these ``ids``, when given)."""
    assert chunks
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"m"}
    assert len({c.id for c in chunks}) == 1
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in with_choices]
    assert finishes[-1] == "tool_calls"
    assert all(f is None for f in finishes[:-1]), finishes
    assert not "".join(c.choices[0].delta.content or "" for c in with_choices)
    calls = _assemble(chunks)
    assert sorted(calls) == list(range(len(expected)))
    got_ids = [calls[i]["id"] for i in sorted(calls)]
    assert all(isinstance(i, str) and i for i in got_ids), got_ids
    assert len(set(got_ids)) == len(got_ids), got_ids
    for i, (name, args) in enumerate(expected):
        assert calls[i]["type"] == "function"
        assert calls[i]["name"] == name
        assert json.loads(calls[i]["args"]) == args
    if ids is not None:
        assert got_ids == ids
    if kind == "openai":
        # pass-through: the backend's fragments, relayed as they came
        assert all(calls[i]["fragments"] > 1 for i in calls), calls
    else:
        # from Ollama: each call whole, in one chunk
        assert all(calls[i]["fragments"] == 1 for i in calls), calls
    return calls


# --------------------------------------------------------------------------- streamed


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_tool_call_openai_client(
    fakes: Any, proxies: Any, clients: Any, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind)
    oc: openai.OpenAI = clients.openai(p)
    with oc.chat.completions.with_streaming_response.create(
        model="m",
        messages=ASK,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    ) as r:
        assert r.headers["x-traywire-backend"] == "a"
        assert r.headers["x-traywire-model"] == "m"
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = list(r.parse())
    ids = _fake_ids(f) if kind == "openai" else None
    _check_openai_stream(chunks, kind, [("get_weather", ARGS)], ids)
    # include_usage: one last chunk with no choices and the usage
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])

    sent = _sent(f, kind)
    _assert_tools_sent(sent, kind, stream=True)
    if kind == "openai":
        assert sent["stream_options"] == {"include_usage": True}

    # the SDK's own accumulator agrees
    f.clear()
    with oc.chat.completions.stream(
        model="m",
        messages=ASK,
        tools=TOOLS,
    ) as s:
        final = s.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert not choice.message.content
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == ARGS
    _assert_tools_sent(_sent(f, kind), kind, stream=True)


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_tool_call_ollama_client(
    fakes: Any, proxies: Any, clients: Any, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind)
    lc: ollama.Client = clients.ollama(p)
    parts = list(lc.chat(model="m", messages=ASK, tools=TOOLS, stream=True))
    assert parts
    assert [x.done for x in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.done_reason == "stop"
    assert last.model == "m"
    assert not last.message.tool_calls
    assert not "".join(x.message.content or "" for x in parts)
    calls = [tc for x in parts for tc in x.message.tool_calls or ()]
    assert len(calls) == 1, calls
    assert calls[0].function.name == "get_weather"
    assert isinstance(calls[0].function.arguments, dict)
    assert calls[0].function.arguments == ARGS
    # the call comes whole, in one line, before the done line
    assert sum(bool(x.message.tool_calls) for x in parts) == 1
    assert last.prompt_eval_count and last.eval_count

    _assert_tools_sent(_sent(f, kind), kind, stream=True)
    if kind == "openai":
        assert _sent(f, kind)["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_tool_call_ollama_wire(fakes: Any, proxies: Any, kind: str) -> None:
    """The bytes an Ollama client gets: NDJSON, the call's arguments an object, the
    traywire headers (which the ollama package does not expose)."""
    f, p = _setup(fakes, proxies, kind)
    r = raw(p, "POST", "/api/chat", {"model": "m", "messages": ASK, "tools": TOOLS})
    assert r.status == 200, r
    assert r.headers["x-traywire-backend"] == "a"
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = ndjson_lines(r.body)
    assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True]
    assert not any("error" in x for x in lines)
    with_calls = [x for x in lines if x["message"].get("tool_calls")]
    assert len(with_calls) == 1
    (call,) = with_calls[0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": ARGS}
    assert lines[-1]["done_reason"] == "stop"
    assert lines[-1]["message"] == {"role": "assistant", "content": ""}
    assert {x["model"] for x in lines} == {"m"}
    _assert_tools_sent(_sent(f, kind), kind, stream=True)


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_tool_call_openai_wire(fakes: Any, proxies: Any, kind: str) -> None:
    """The bytes an OpenAI client gets: SSE ending in ``[DONE]``, arguments a string."""
    f, p = _setup(fakes, proxies, kind)
    r = raw(
        p,
        "POST",
        "/v1/chat/completions",
        {"model": "m", "messages": ASK, "tools": TOOLS, "stream": True},
    )
    assert r.status == 200, r
    assert r.headers["x-traywire-backend"] == "a"
    assert r.body.endswith(b"data: [DONE]\n\n")
    payloads = sse_payloads(r.body)
    assert payloads.count("[DONE]") == 1 and payloads[-1] == "[DONE]"
    events = [json.loads(x) for x in payloads[:-1]]
    assert not any("error" in e for e in events)
    deltas = [tc for e in events for c in e["choices"] for tc in c["delta"].get("tool_calls") or ()]
    heads = [tc for tc in deltas if "id" in tc]
    assert len(heads) == 1
    assert heads[0]["index"] == 0 and heads[0]["type"] == "function"
    assert heads[0]["function"]["name"] == "get_weather"
    assert all(isinstance(tc["function"]["arguments"], str) for tc in deltas)
    assert json.loads("".join(tc["function"]["arguments"] for tc in deltas)) == ARGS
    assert [c["finish_reason"] for e in events for c in e["choices"]][-1] == "tool_calls"
    _assert_tools_sent(_sent(f, kind), kind, stream=True)


@pytest.mark.parametrize(
    ("dialect", "kind", "split"),
    [
        *[pytest.param(*c.values, False, id=c.id) for c in COMBOS],
        pytest.param("openai", "ollama", True, id="openai-client-ollama-backend-split"),
        pytest.param("ollama", "ollama", True, id="ollama-client-ollama-backend-split"),
    ],
)
def test_streamed_parallel_tool_calls(
    fakes: Any, proxies: Any, clients: Any, dialect: str, kind: str, split: bool
) -> None:
    """Two calls in one answer keep their order, names and arguments apart, whether
    an Ollama backend sends them in one line or (``split``) one line each."""
    f, p = _setup(fakes, proxies, kind)
    f.tool_calls = [("get_weather", ARGS), ("get_time", TIME_ARGS)]
    f.split_tool_calls = split
    expected = [("get_weather", ARGS), ("get_time", TIME_ARGS)]
    if dialect == "openai":
        chunks = list(
            clients.openai(p).chat.completions.create(
                model="m",
                messages=ASK,
                tools=TOOLS,
                stream=True,
            )
        )
        _check_openai_stream(chunks, kind, expected, _fake_ids(f) if kind == "openai" else None)
    else:
        parts = list(clients.ollama(p).chat(model="m", messages=ASK, tools=TOOLS, stream=True))
        assert parts[-1].done and parts[-1].done_reason == "stop"
        calls = [tc for x in parts for tc in x.message.tool_calls or ()]
        assert [(c.function.name, c.function.arguments) for c in calls] == expected
        lines_with_calls = sum(bool(x.message.tool_calls) for x in parts)
        assert lines_with_calls == (2 if split else 1)
    _assert_tools_sent(_sent(f, kind), kind, stream=True)


@pytest.mark.parametrize(("dialect", "kind"), COMBOS)
def test_no_tools_offered_gives_text(
    fakes: Any, proxies: Any, clients: Any, dialect: str, kind: str
) -> None:
    """Without ``tools`` the same backend answers with text, and no tool call shows."""
    f, p = _setup(fakes, proxies, kind)
    if dialect == "openai":
        chunks = list(
            clients.openai(p).chat.completions.create(model="m", messages=ASK, stream=True)
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f.reply
        assert not _assemble(chunks)
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    else:
        parts = list(clients.ollama(p).chat(model="m", messages=ASK, stream=True))
        assert "".join(x.message.content or "" for x in parts) == f.reply
        assert not any(x.message.tool_calls for x in parts)
    assert not _sent(f, kind).get("tools")  # the ollama package sends "tools": []


# --------------------------------------------------------------------------- not streamed


@pytest.mark.parametrize(("dialect", "kind"), COMBOS)
def test_non_streamed_tool_call(
    fakes: Any, proxies: Any, clients: Any, dialect: str, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind)
    if dialect == "openai":
        r = clients.openai(p).chat.completions.with_raw_response.create(
            model="m", messages=ASK, tools=TOOLS
        )
        assert r.headers["x-traywire-backend"] == "a"
        c = r.parse()
        assert c.model == "m"
        choice = c.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert not choice.message.content
        calls = choice.message.tool_calls
        assert calls is not None and len(calls) == 1
        assert calls[0].type == "function" and calls[0].id
        assert calls[0].function.name == "get_weather"
        assert json.loads(calls[0].function.arguments) == ARGS
        if kind == "openai":
            assert [calls[0].id] == _fake_ids(f)
    else:
        resp = clients.ollama(p).chat(model="m", messages=ASK, tools=TOOLS, stream=False)
        assert resp.done and resp.done_reason == "stop"
        assert resp.model == "m"
        assert not resp.message.content
        assert resp.message.tool_calls is not None and len(resp.message.tool_calls) == 1
        call = resp.message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert call.function.arguments == ARGS
    _assert_tools_sent(_sent(f, kind), kind, stream=False)


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_call_then_result_openai_client(
    fakes: Any, proxies: Any, clients: Any, kind: str
) -> None:
    """The assembled call and the tool's result go back to the backend in its dialect."""
    f, p = _setup(fakes, proxies, kind)
    oc = clients.openai(p)
    chunks = list(oc.chat.completions.create(model="m", messages=ASK, tools=TOOLS, stream=True))
    ids = _fake_ids(f) if kind == "openai" else None
    call = _check_openai_stream(chunks, kind, [("get_weather", ARGS)], ids)[0]
    f.tool_calls = ()
    f.clear()
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["args"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 28 C"},
    ]
    chunks = list(oc.chat.completions.create(model="m", messages=history, tools=TOOLS, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f.reply
    msgs = _sent(f, kind)["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
    if kind == "ollama":
        assert msgs[1]["tool_calls"] == [
            {"id": call["id"], "function": {"name": "get_weather", "arguments": ARGS}}
        ]
        assert msgs[2]["tool_name"] == "get_weather"
        assert msgs[2]["content"] == "sunny, 28 C"
    else:
        assert msgs == history


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_call_then_result_ollama_client(
    fakes: Any, proxies: Any, clients: Any, kind: str
) -> None:
    f, p = _setup(fakes, proxies, kind)
    lc = clients.ollama(p)
    parts = list(lc.chat(model="m", messages=ASK, tools=TOOLS, stream=True))
    (call,) = [tc for x in parts for tc in x.message.tool_calls or ()]
    f.tool_calls = ()
    f.clear()
    history = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny, 28 C"},
    ]
    parts = list(lc.chat(model="m", messages=history, tools=TOOLS, stream=True))
    assert "".join(x.message.content or "" for x in parts) == f.reply
    msgs = _sent(f, kind)["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
    if kind == "openai":
        (sent_call,) = msgs[1]["tool_calls"]
        assert sent_call["type"] == "function" and sent_call["id"]
        assert sent_call["function"]["name"] == "get_weather"
        assert json.loads(sent_call["function"]["arguments"]) == ARGS
        assert msgs[2] == {
            "role": "tool",
            "tool_call_id": sent_call["id"],
            "content": "sunny, 28 C",
        }
    else:
        assert msgs[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ARGS}
        assert msgs[2]["tool_name"] == "get_weather"


@pytest.mark.parametrize("stream", [True, False])
def test_ollama_call_ids_reach_the_openai_client(
    fakes: Any, proxies: Any, clients: Any, stream: bool
) -> None:
    """Newer Ollama versions give each call an id: the OpenAI client gets those ids,
    so a later tool result names the call the backend knows."""
    f, p = _setup(fakes, proxies, "ollama")
    f.tool_calls = [
        FakeToolCall("get_weather", ARGS, id="call_w1x"),
        FakeToolCall("get_time", TIME_ARGS, id="call_t2y"),
    ]
    f.split_tool_calls = True
    oc = clients.openai(p)
    expected = [("get_weather", ARGS), ("get_time", TIME_ARGS)]
    if stream:
        chunks = list(oc.chat.completions.create(model="m", messages=ASK, tools=TOOLS, stream=True))
        _check_openai_stream(chunks, "ollama", expected, ["call_w1x", "call_t2y"])
    else:
        c = oc.chat.completions.create(model="m", messages=ASK, tools=TOOLS)
        calls = c.choices[0].message.tool_calls or []
        assert [(x.id, x.function.name, json.loads(x.function.arguments)) for x in calls] == [
            ("call_w1x", "get_weather", ARGS),
            ("call_t2y", "get_time", TIME_ARGS),
        ]
        assert c.choices[0].finish_reason == "tool_calls"
    _assert_tools_sent(_sent(f, "ollama"), "ollama", stream=stream)
