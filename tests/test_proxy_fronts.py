"""End to end: the Anthropic Messages API and the OpenAI Responses API, with
the official `anthropic` and `openai` clients, through traywire to backends of
both kinds: whole answers, streams, tool calls both ways, count_tokens, and
errors in the client's own shape (mid-stream too)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from fakes import FakeBackend
from harness import ProxyThread
from proxy_fixtures import (
    EVERYTHING,
    clients,
    fakes,
    make_config,
    model,
    ollama_backend,
    openai_backend,
    proxies,
    raw,
)

__all__ = ["clients", "fakes", "proxies"]

KINDS = ["ollama", "openai"]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _setup(fakes: Any, proxies: Any, kind: str, **extra: Any) -> tuple[FakeBackend, ProxyThread]:
    if kind == "ollama":
        f = fakes("ollama", name="oll", models=["m1"])
        backend, up = ollama_backend(f), "m1"
    else:
        f = fakes("openai", name="vl", models=["M2"])
        backend, up = openai_backend(f), "M2"
    cfg = make_config({"a": backend}, {"m": model("a", up, features=EVERYTHING)}, **extra)
    return f, proxies(cfg)


def _anthropic(p: ProxyThread, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=p.url, api_key="x", max_retries=0, timeout=20, **kw)


def _responses(p: ProxyThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=p.url + "/v1", api_key="x", max_retries=0, timeout=20)


# --------------------------------------------------------------------------- Anthropic


@pytest.mark.parametrize("kind", KINDS)
def test_anthropic_create_and_stream(fakes: Any, proxies: Any, kind: str) -> None:
    f, p = _setup(fakes, proxies, kind)
    client = _anthropic(p)
    msg = client.messages.create(
        model="m",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text == f.reply
    assert msg.stop_reason == "end_turn" and msg.model == "m"
    assert msg.usage.output_tokens > 0
    with client.messages.stream(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "Hello there"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f.reply
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    sent = [r for r in f.requests if r.path in ("/api/chat", "/v1/chat/completions")]
    assert len(sent) == 2  # translated to the backend's chat


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_use_both_ways(fakes: Any, proxies: Any, kind: str, stream: bool) -> None:
    f, p = _setup(fakes, proxies, kind)
    f.tool_call("get_weather", {"city": "Paris"})
    client = _anthropic(p)
    ask: Any = {
        "model": "m",
        "max_tokens": 64,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
    }
    if stream:
        with client.messages.stream(**ask) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(**ask)
    assert msg.stop_reason == "tool_use"
    (use,) = [b for b in msg.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    # the tool's result goes back as the next turn
    f.tool_calls = ()
    again = client.messages.create(
        model="m",
        max_tokens=64,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [use.model_dump()]},  # type: ignore[list-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
            },
        ],
    )
    assert again.content[0].text == f.reply  # type: ignore[union-attr]
    body = f.requests[-1].json
    tool_msg = [m for m in body["messages"] if m["role"] == "tool"]
    assert tool_msg and "sunny" in str(tool_msg[0]["content"])


def test_anthropic_count_tokens_and_errors(fakes: Any, proxies: Any) -> None:
    f, p = _setup(fakes, proxies, "ollama")
    client = _anthropic(p)
    n = client.messages.count_tokens(
        model="m", messages=[{"role": "user", "content": "Hello there, how are you?"}]
    )
    assert n.input_tokens > 5
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.create(
            model="nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert nf.value.body["type"] == "error"  # type: ignore[index]
    assert nf.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="m", max_tokens=8, messages=[])
    assert "messages" in str(bad.value)
    f.refuse()
    with pytest.raises(anthropic.APIStatusError) as down:
        client.messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert down.value.status_code == 503
    assert down.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_anthropic_stream_cut_mid_way_ends_with_an_error_event(fakes: Any, proxies: Any) -> None:
    f, p = _setup(fakes, proxies, "ollama")
    f.cut_after(2)
    r = raw(
        p,
        "POST",
        "/v1/messages?beta=true",
        {
            "model": "m",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "Hello"}],
        },
        {"anthropic-version": "2023-06-01", "anthropic-beta": "whatever"},
    )
    assert r.status == 200
    events = [line[7:] for line in r.body.decode().splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "error"
    assert "message_stop" not in events


def test_anthropic_token_as_x_api_key(fakes: Any, proxies: Any) -> None:
    f = fakes("ollama", name="oll", models=["m1"])
    cfg = make_config({"a": ollama_backend(f)}, {"m": model("a", "m1")})
    p = proxies(cfg, token="s3cret-token-value")
    ask: Any = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.AuthenticationError):
        _anthropic(p).messages.create(**ask)
    client = anthropic.Anthropic(
        base_url=p.url, api_key="s3cret-token-value", max_retries=0, timeout=20
    )
    assert client.messages.create(**ask).content[0].text == f.reply  # type: ignore[union-attr]


# --------------------------------------------------------------------------- Responses


@pytest.mark.parametrize("kind", KINDS)
def test_responses_create_and_stream(fakes: Any, proxies: Any, kind: str) -> None:
    f, p = _setup(fakes, proxies, kind)
    client = _responses(p)
    r = client.responses.create(model="m", input="Hello there", instructions="Be brief.")
    assert r.status == "completed" and r.output_text == f.reply
    assert r.usage is not None and r.usage.output_tokens > 0
    with client.responses.stream(model="m", input="Hello there") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == f.reply == final.output_text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_calling(fakes: Any, proxies: Any, kind: str, stream: bool) -> None:
    f, p = _setup(fakes, proxies, kind)
    f.tool_call("get_weather", {"city": "Paris"})
    client = _responses(p)
    tools: Any = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    if stream:
        with client.responses.stream(model="m", input="Weather in Paris?", tools=tools) as s:
            r = s.get_final_response()
    else:
        r = client.responses.create(model="m", input="Weather in Paris?", tools=tools)
    (call,) = [o for o in r.output if o.type == "function_call"]
    assert call.name == "get_weather" and call.arguments and "Paris" in call.arguments
    f.tool_calls = ()
    r2 = client.responses.create(
        model="m",
        tools=tools,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert r2.output_text == f.reply
    sent = f.requests[-1].json
    assert any(m["role"] == "tool" for m in sent["messages"])


def test_responses_state_is_refused_clearly(fakes: Any, proxies: Any) -> None:
    _, p = _setup(fakes, proxies, "openai")
    with pytest.raises(openai.BadRequestError) as ei:
        _responses(p).responses.create(model="m", input="hi", previous_response_id="resp_1")
    assert "previous_response_id" in ei.value.message
