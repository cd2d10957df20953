"""Tests of the Anthropic Messages client dialect (traywire.proxy.dialects.anthropic).

Requests: every mapping to the OpenAI chat shape, checked field by field, and
every refusal naming its param. Answers and streams: every produced object is
validated against the official ``anthropic`` SDK's pydantic types, and the
SDK's own client reads them over a mock HTTP transport (``messages.create``,
``messages.stream`` accumulating the final message, an ``event: error`` mid
stream raising), which proves real clients accept them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from typing import Any

import anthropic
import anthropic._base_client as _anthropic_base
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from anthropic.types.shared import ErrorResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from traywire.core.request import BadRequest, parse
from traywire.core.tokens import estimate
from traywire.proxy.dialects import UpstreamError
from traywire.proxy.dialects.anthropic import (
    MessageStream,
    count_tokens,
    error_body,
    error_type,
    message_from_openai,
    parse_messages,
    sse_error,
    thinking_requested,
)
from traywire.types import RouteRequest

# the HTTP package the SDK is built on (httpx2 in current releases, httpx before)
hx: Any = getattr(_anthropic_base, "httpx2", None) or getattr(_anthropic_base, "httpx")  # noqa: B009

EVENT = TypeAdapter(RawMessageStreamEvent)
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6"
    "kgAAAABJRU5ErkJggg=="
)
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def body(**kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "model": "claude-sonnet-4",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    b.update(kw)
    return b


def chat(b: dict[str, Any]) -> dict[str, Any]:
    out, _route = parse_messages(b)
    return out


# =========================================================================== requests


def test_minimal_request() -> None:
    out, route = parse_messages(body())
    assert out == {
        "model": "claude-sonnet-4",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 256,
        "stream": False,
    }
    assert route == RouteRequest("claude-sonnet-4", "Hello", "Hello", 256, 1, "chat")


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("Be brief.", "Be brief."),
        ([{"type": "text", "text": "Be brief."}], "Be brief."),
        (
            [
                {"type": "text", "text": "You are a CLI.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be brief."},
            ],
            "You are a CLI.\nBe brief.",
        ),
    ],
)
def test_system_string_or_blocks(system: object, expected: str) -> None:
    out, route = parse_messages(body(system=system))
    assert out["messages"][0] == {"role": "system", "content": expected}
    assert out["messages"][1] == {"role": "user", "content": "Hello"}
    assert route.messages == 2
    assert route.prompt == f"{expected}\nHello"


def test_empty_system_adds_no_message() -> None:
    assert chat(body(system=""))["messages"] == [{"role": "user", "content": "Hello"}]


def test_text_blocks_joined() -> None:
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
    assert chat(body(messages=msgs))["messages"] == [{"role": "user", "content": "a\nb"}]


@pytest.mark.parametrize(
    ("source", "url"),
    [
        (
            {"type": "base64", "media_type": "image/png", "data": PNG},
            f"data:image/png;base64,{PNG}",
        ),
        (
            {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AA"},
            "data:image/jpeg;base64,/9j/AA",
        ),
        ({"type": "url", "url": "https://example.com/cat.png"}, "https://example.com/cat.png"),
    ],
)
def test_images(source: dict[str, Any], url: str) -> None:
    msgs = [
        {
            "role": "user",
            "content": [{"type": "image", "source": source}, {"type": "text", "text": "What?"}],
        }
    ]
    out, route = parse_messages(body(messages=msgs))
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What?"},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }
    ]
    assert route.images == 1
    assert route.last_user == "What?"


@pytest.mark.parametrize(
    ("doc", "text"),
    [
        (
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "Doc"},
            },
            "Doc",
        ),
        (
            {
                "type": "document",
                "title": "Notes",
                "context": "From the wiki",
                "source": {"type": "text", "media_type": "text/plain", "data": "Doc"},
            },
            "Notes\nFrom the wiki\nDoc",
        ),
        (
            {
                "type": "document",
                "source": {"type": "content", "content": [{"type": "text", "text": "Part"}]},
            },
            "Part",
        ),
        ({"type": "document", "source": {"type": "content", "content": "Whole"}}, "Whole"),
        (
            {
                "type": "search_result",
                "title": "T",
                "source": "https://s",
                "content": [{"type": "text", "text": "R"}],
            },
            "T\nhttps://s\nR",
        ),
    ],
)
def test_text_documents_become_text(doc: dict[str, Any], text: str) -> None:
    msgs = [{"role": "user", "content": [doc, {"type": "text", "text": "Sum up"}]}]
    assert chat(body(messages=msgs))["messages"] == [{"role": "user", "content": f"{text}\nSum up"}]


def test_assistant_tool_use_and_tool_result() -> None:
    msgs = [
        {"role": "user", "content": "Weather in Lima?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Lima"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Cusco"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "Rain"}, {"type": "text", "text": "12C"}],
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    out, route = parse_messages(body(messages=msgs, tools=[WEATHER]))
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Lima?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Cusco"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Rain\n12C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert route.last_user == "And tomorrow?"
    assert route.messages == 5
    assert route.tools is True
    assert "Use the tool." not in route.prompt  # thinking is dropped
    for piece in ("Sunny", "Rain\n12C", '"Cusco"', "Checking."):
        assert piece in route.prompt


def test_tool_use_only_assistant_has_null_content() -> None:
    msgs = [
        {"role": "user", "content": "Go"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
    ]
    out = chat(body(messages=msgs))
    assert out["messages"][1]["content"] is None
    assert out["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{}"
    # a tool result alone makes no user message
    assert out["messages"][2:] == [{"role": "tool", "tool_call_id": "t", "content": ""}]


def test_tool_result_error_and_images() -> None:
    msgs = [
        {"role": "user", "content": "Shot?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "s", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "partial"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                }
            ],
        },
    ]
    out, route = parse_messages(body(messages=msgs))
    assert out["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "Error: partial"}
    assert out["messages"][3] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
    }
    assert route.images == 1


def test_tool_results_go_first_even_after_text() -> None:
    msgs = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "note"},
                {"type": "tool_result", "tool_use_id": "t", "content": "ok"},
            ],
        },
    ]
    out = chat(body(messages=msgs))
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "tool", "user"]


def test_tools_and_tool_choice() -> None:
    tools = [WEATHER, {"name": "noop", "input_schema": {"type": "object"}, "type": "custom"}]
    out = chat(body(tools=tools))
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["input_schema"],
            },
        },
        {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
    ]
    assert "tool_choice" not in out


@pytest.mark.parametrize(
    ("choice", "expected", "tools_on"),
    [
        ({"type": "auto"}, "auto", True),
        ({"type": "any"}, "required", True),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
            True,
        ),
        ({"type": "none"}, "none", False),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: object, tools_on: bool) -> None:
    out, route = parse_messages(body(tools=[WEATHER], tool_choice=choice))
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out
    assert route.tools is tools_on


def test_disable_parallel_tool_use() -> None:
    out = chat(
        body(tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    )
    assert out["parallel_tool_calls"] is False


def test_tool_choice_without_tools_is_dropped() -> None:
    out, route = parse_messages(body(tool_choice={"type": "auto"}))
    assert "tool_choice" not in out and "tools" not in out
    assert route.tools is False


def test_sampling_stop_stream_and_ignored_fields() -> None:
    out, route = parse_messages(
        body(
            stop_sequences=["END", "\n\nHuman:"],
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            stream=True,
            metadata={"user_id": "u-1"},
            thinking={"type": "enabled", "budget_tokens": 2048},
            service_tier="auto",
            cache_control={"type": "ephemeral"},
            context_management={"edits": []},
        )
    )
    assert out == {
        "model": "claude-sonnet-4",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 256,
        "stop": ["END", "\n\nHuman:"],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert route.max_tokens == 256


def test_empty_stop_sequences_send_no_stop() -> None:
    assert "stop" not in chat(body(stop_sequences=[]))


@pytest.mark.parametrize("key", ["output_config", "output_format"])
def test_structured_output(key: str) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "schema": schema}
    value = {"format": fmt} if key == "output_config" else fmt
    out, route = parse_messages(body(**{key: value}))
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert route.structured is True


def test_output_config_effort_alone_is_ignored() -> None:
    out, route = parse_messages(body(output_config={"effort": "high"}))
    assert "response_format" not in out and route.structured is False


@pytest.mark.parametrize(
    ("thinking", "on"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, True),
        ({"type": "adaptive"}, True),
        ({"type": "disabled"}, False),
        (None, False),
    ],
)
def test_thinking_requested(thinking: object, on: bool) -> None:
    assert thinking_requested(body(thinking=thinking)) is on


def test_consecutive_same_role_turns_kept() -> None:
    msgs = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert [m["content"] for m in chat(body(messages=msgs))["messages"]] == ["a", "b"]


def test_translated_body_passes_the_openai_chat_parse() -> None:
    """What parse_messages produces is a valid /v1/chat/completions body."""
    b = kitchen_sink()
    out, route = parse_messages(b)
    inbound = parse("openai", "chat", copy.deepcopy(out))
    assert inbound.stream is True
    assert inbound.route.images == route.images == 1
    assert inbound.route.tools is True
    assert inbound.route.max_tokens == 1024


def kitchen_sink() -> dict[str, Any]:
    return {
        "model": "claude-opus-4",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "Sys", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking"},
                    {
                        "type": "tool_use",
                        "id": "toolu_9",
                        "name": "get_weather",
                        "input": {"city": "X"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_9", "content": "hot"},
                    {"type": "text", "text": "ok"},
                ],
            },
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["STOP"],
        "temperature": 0.5,
        "top_k": 10,
        "metadata": {"user_id": "me"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stream": True,
    }


def test_kitchen_sink_is_a_valid_sdk_request() -> None:
    """The test bodies have the SDK's own request shape (so the mapping tests mean something)."""
    b = kitchen_sink()
    b.pop("stream")
    # this SDK release no longer lists the sampling fields; the API still takes them
    for key in ("temperature", "top_k"):
        b.pop(key)
    TypeAdapter(MessageCreateParamsNonStreaming).validate_python(b)


# --------------------------------------------------------------------------- refusals

BAD: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("not an object", lambda b: [], ""),
    ("model missing", lambda b: b.pop("model"), "model"),
    ("model empty", lambda b: b.update(model=" "), "model"),
    ("max_tokens missing", lambda b: b.pop("max_tokens"), "max_tokens"),
    ("max_tokens zero", lambda b: b.update(max_tokens=0), "max_tokens"),
    ("max_tokens string", lambda b: b.update(max_tokens="9"), "max_tokens"),
    ("messages empty", lambda b: b.update(messages=[]), "messages"),
    ("messages not list", lambda b: b.update(messages="hi"), "messages"),
    ("message not object", lambda b: b.update(messages=["hi"]), "messages[0]"),
    (
        "only empty turns",
        lambda b: b.update(messages=[{"role": "user", "content": []}]),
        "messages",
    ),
    (
        "role tool in messages",
        lambda b: b.update(messages=[{"role": "tool", "content": "x"}]),
        "messages[0].role",
    ),
    (
        "content number",
        lambda b: b.update(messages=[{"role": "user", "content": 3}]),
        "messages[0].content",
    ),
    (
        "block without type",
        lambda b: b.update(messages=[{"role": "user", "content": [{"text": "x"}]}]),
        "messages[0].content[0].type",
    ),
    (
        "text not string",
        lambda b: b.update(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]),
        "messages[0].content[0].text",
    ),
    (
        "unknown block",
        lambda b: b.update(
            messages=[{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]
        ),
        "messages[0].content[0].type",
    ),
    (
        "image bad media type",
        lambda b: b.update(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/tiff", "data": "x"},
                        }
                    ],
                }
            ]
        ),
        "messages[0].content[0].source.media_type",
    ),
    (
        "image file source",
        lambda b: b.update(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                }
            ]
        ),
        "messages[0].content[0].source",
    ),
    (
        "pdf document",
        lambda b: b.update(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBER",
                            },
                        }
                    ],
                }
            ]
        ),
        "messages[0].content[0].source",
    ),
    (
        "pdf url document",
        lambda b: b.update(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}
                    ],
                }
            ]
        ),
        "messages[0].content[0].source",
    ),
    (
        "tool_use in user turn",
        lambda b: b.update(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                }
            ]
        ),
        "messages[0].content[0].type",
    ),
    (
        "tool_use input not object",
        lambda b: b.update(
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}],
                },
            ]
        ),
        "messages[1].content[0].input",
    ),
    (
        "tool_use without id",
        lambda b: b.update(
            messages=[
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]},
            ]
        ),
        "messages[1].content[0].id",
    ),
    (
        "server tool block in assistant turn",
        lambda b: b.update(
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}
                    ],
                },
            ]
        ),
        "messages[1].content[0].type",
    ),
    (
        "tool_result without id",
        lambda b: b.update(messages=[{"role": "user", "content": [{"type": "tool_result"}]}]),
        "messages[0].content[0].tool_use_id",
    ),
    (
        "tool_result content number",
        lambda b: b.update(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}],
                }
            ]
        ),
        "messages[0].content[0].content",
    ),
    ("system number", lambda b: b.update(system=5), "system"),
    ("system image block", lambda b: b.update(system=[{"type": "image"}]), "system[0].type"),
    ("tools not list", lambda b: b.update(tools={}), "tools"),
    (
        "server tool",
        lambda b: b.update(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
        "tools[0].type",
    ),
    (
        "bash tool",
        lambda b: b.update(tools=[{"type": "bash_20250124", "name": "bash"}]),
        "tools[0].type",
    ),
    ("tool without name", lambda b: b.update(tools=[{"input_schema": {}}]), "tools[0].name"),
    ("tool without schema", lambda b: b.update(tools=[{"name": "f"}]), "tools[0].input_schema"),
    (
        "tool description number",
        lambda b: b.update(tools=[{"name": "f", "description": 1, "input_schema": {}}]),
        "tools[0].description",
    ),
    ("tool_choice string", lambda b: b.update(tool_choice="auto"), "tool_choice"),
    ("tool_choice type", lambda b: b.update(tool_choice={"type": "required"}), "tool_choice.type"),
    (
        "tool_choice unknown tool",
        lambda b: b.update(tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}),
        "tool_choice.name",
    ),
    (
        "tool_choice parallel not bool",
        lambda b: b.update(tool_choice={"type": "auto", "disable_parallel_tool_use": "yes"}),
        "tool_choice.disable_parallel_tool_use",
    ),
    ("temperature above 1", lambda b: b.update(temperature=1.5), "temperature"),
    ("top_p string", lambda b: b.update(top_p="0.5"), "top_p"),
    ("top_k negative", lambda b: b.update(top_k=-1), "top_k"),
    ("stop_sequences string", lambda b: b.update(stop_sequences="END"), "stop_sequences"),
    ("stop_sequences item", lambda b: b.update(stop_sequences=["a", 1]), "stop_sequences[1]"),
    ("stream string", lambda b: b.update(stream="true"), "stream"),
    ("metadata list", lambda b: b.update(metadata=[]), "metadata"),
    ("thinking string", lambda b: b.update(thinking="on"), "thinking"),
    (
        "thinking budget",
        lambda b: b.update(thinking={"type": "enabled", "budget_tokens": 0}),
        "thinking.budget_tokens",
    ),
    (
        "output format type",
        lambda b: b.update(output_config={"format": {"type": "json_object"}}),
        "output_config.format.type",
    ),
    (
        "output format schema",
        lambda b: b.update(output_format={"type": "json_schema", "schema": "x"}),
        "output_format.schema",
    ),
    (
        "mcp servers",
        lambda b: b.update(mcp_servers=[{"type": "url", "url": "https://m", "name": "m"}]),
        "mcp_servers",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "param"), BAD, ids=[c[0] for c in BAD])
def test_refusals_name_their_param(
    case: str, mutate: Callable[[dict[str, Any]], object], param: str
) -> None:
    b = body()
    result = mutate(b)
    target: object = result if isinstance(result, list) else b
    with pytest.raises(BadRequest) as exc:
        parse_messages(target)
    assert exc.value.param == (param or None), exc.value.message
    if param:
        assert exc.value.message.startswith(f"{param}: ")


def test_refusals_say_why() -> None:
    pdf = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "x"},
    }
    with pytest.raises(BadRequest, match="PDF documents are not supported"):
        parse_messages(body(messages=[{"role": "user", "content": [pdf]}]))
    with pytest.raises(BadRequest, match="'web_search_20250305' is not supported"):
        parse_messages(body(tools=[{"type": "web_search_20250305", "name": "web_search"}]))


# =========================================================================== count_tokens


def test_count_tokens() -> None:
    b = body(system="Sys")
    b.pop("max_tokens")  # count_tokens takes no max_tokens
    n = count_tokens(b)["input_tokens"]
    _out, route = parse_messages(body(system="Sys"))
    assert n == estimate(route)
    with_tools = count_tokens({**b, "tools": [WEATHER]})["input_tokens"]
    assert with_tools > n
    with pytest.raises(BadRequest) as exc:
        count_tokens({"model": "m", "messages": []})
    assert exc.value.param == "messages"


# =========================================================================== errors


@pytest.mark.parametrize(
    ("status", "etype"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_body(status: int, etype: str) -> None:
    b = error_body(status, "nope")
    assert b == {"type": "error", "error": {"type": etype, "message": "nope"}}
    assert error_type(status) == etype
    if etype != "request_too_large":  # documented for 413, not in the SDK's union
        ErrorResponse.model_validate(b)


def test_sse_error_bytes() -> None:
    raw = sse_error("backend went away", "overloaded_error")
    assert raw == (
        b"event: error\ndata: "
        b'{"type":"error","error":{"type":"overloaded_error","message":"backend went away"}}\n\n'
    )


# =========================================================================== answers


def completion(
    content: str | None = "Hi!",
    *,
    calls: Iterable[tuple[str, str, str]] = (),
    finish: str | None = "stop",
    usage: tuple[int, int] | None = (12, 3),
    reasoning: str | None = None,
    **choice_extra: Any,
) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    calls = list(calls)
    if calls:
        msg["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in calls
        ]
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "up",
        "choices": [{"index": 0, "message": msg, "finish_reason": finish, **choice_extra}],
    }
    if usage is not None:
        out["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return out


def test_message_from_openai_text() -> None:
    m = message_from_openai(completion(), model="claude-x", message_id="msg_01")
    assert m == {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "Hi!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }
    Message.model_validate(m)


@pytest.mark.parametrize(
    ("finish", "extra", "stops", "reason", "seq"),
    [
        ("stop", {}, (), "end_turn", None),
        ("length", {}, (), "max_tokens", None),
        ("content_filter", {}, (), "refusal", None),
        ("tool_calls", {}, (), "tool_use", None),
        ("function_call", {}, (), "tool_use", None),
        (None, {}, (), "end_turn", None),
        ("weird", {}, (), "end_turn", None),
        ("stop", {"stop_reason": "END"}, ("END",), "stop_sequence", "END"),
        ("stop", {"stop_reason": "END"}, (), "stop_sequence", "END"),
        ("stop", {"stop_reason": "OTHER"}, ("END",), "end_turn", None),
        ("stop", {"stop_reason": 128009}, ("END",), "end_turn", None),  # a stop token id
        ("stop", {"stop_reason": None}, ("END",), "end_turn", None),
    ],
)
def test_stop_reasons(
    finish: str | None, extra: dict[str, Any], stops: tuple[str, ...], reason: str, seq: str | None
) -> None:
    m = message_from_openai(
        completion(finish=finish, **extra), model="m", message_id="msg_1", stop_sequences=stops
    )
    assert (m["stop_reason"], m["stop_sequence"]) == (reason, seq)
    Message.model_validate(m)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ('{"city": "Lima"}', {"city": "Lima"}),
        ("", {}),
        ("  ", {}),
        ('"{\\"city\\": \\"Lima\\"}"', {"city": "Lima"}),  # encoded twice
        ('{"city": "Li', {"_raw": '{"city": "Li'}),
        ("[1, 2]", {"_raw": "[1, 2]"}),
        ("42", {"_raw": "42"}),
        ('"plain"', {"_raw": '"plain"'}),
    ],
)
def test_tool_calls_become_tool_use(args: str, expected: dict[str, Any]) -> None:
    resp = completion(None, calls=[("call_a", "get_weather", args)], finish="tool_calls")
    m = message_from_openai(resp, model="m", message_id="msg_1")
    assert m["content"] == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": expected}
    ]
    assert m["stop_reason"] == "tool_use"
    Message.model_validate(m)


def test_text_and_tool_calls_without_ids() -> None:
    resp = completion(
        "Let me look.",
        calls=[("", "a", "{}"), ("", "b", '{"x": 1}')],
        finish="stop",  # some servers say stop even with tool calls
    )
    m = message_from_openai(resp, model="m", message_id="msg_abc")
    assert m["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_abc_0", "name": "a", "input": {}},
        {"type": "tool_use", "id": "toolu_abc_1", "name": "b", "input": {"x": 1}},
    ]
    assert m["stop_reason"] == "tool_use"


def test_reasoning_becomes_thinking_only_when_asked() -> None:
    resp = completion("Answer", reasoning="Because.")
    plain = message_from_openai(resp, model="m", message_id="msg_1")
    assert plain["content"] == [{"type": "text", "text": "Answer"}]
    thought = message_from_openai(resp, model="m", message_id="msg_1", thinking=True)
    assert thought["content"] == [
        {"type": "thinking", "thinking": "Because.", "signature": ""},
        {"type": "text", "text": "Answer"},
    ]
    Message.model_validate(thought)


def test_empty_answer_and_no_usage() -> None:
    m = message_from_openai(completion(None, usage=None), model="m", message_id="msg_1")
    assert m["content"] == [{"type": "text", "text": ""}]
    assert m["usage"] == {"input_tokens": 0, "output_tokens": 0}
    Message.model_validate(m)


def test_garbage_upstream_is_read_defensively() -> None:
    m = message_from_openai({"choices": "x", "usage": 5}, model="m", message_id="msg_1")
    Message.model_validate(m)


# =========================================================================== streams


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: tuple[int, int] | None = None,
    **choice_extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "up",
        "choices": []
        if delta is None and finish is None
        else [{"index": 0, "delta": delta or {}, "finish_reason": finish, **choice_extra}],
    }
    if usage is not None:
        out["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return out


def tool_delta(
    index: int, id: str | None = None, name: str | None = None, args: str = ""
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id is not None:
        call["id"] = id
        call["type"] = "function"
    if name is not None:
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split SSE bytes into (event name, data), checking the framing."""
    out = []
    assert raw.endswith(b"\n\n") or not raw
    for block in raw.decode().split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[6:])
        assert data["type"] == name_line[7:]
        out.append((name_line[7:], data))
    return out


def run(stream: MessageStream, chunks: Iterable[dict[str, Any]], *, finish: bool = True) -> bytes:
    raw = b"".join(stream.feed(c) for c in chunks)
    return raw + (stream.finish() if finish else b"")


def validate_stream(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    evs = events(raw)
    for name, data in evs:
        if name not in ("ping", "error"):
            EVENT.validate_python(data)
    return evs


TEXT_AND_TOOLS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk(tool_delta(0, "call_1", "get_weather")),
    chunk(tool_delta(0, args='{"city":')),
    chunk(tool_delta(0, args=' "Lima"}')),
    chunk(tool_delta(1, "call_2", "get_time", "{}")),
    chunk(finish="tool_calls"),
    chunk(usage=(20, 9)),
]


def test_stream_event_sequence() -> None:
    s = MessageStream(model="claude-x", message_id="msg_1", input_tokens=17)
    raw = run(s, TEXT_AND_TOOLS, finish=False)
    assert s.done and s.finished
    assert s.finish() == b""
    evs = validate_stream(raw)
    assert [n for n, _ in evs] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = evs[0][1]["message"]
    assert start["usage"] == {"input_tokens": 17, "output_tokens": 0}
    assert start["content"] == [] and start["stop_reason"] is None
    assert evs[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert evs[2][1]["delta"] == {"type": "text_delta", "text": "Let me "}
    assert evs[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {},
    }
    assert evs[6][1] == {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Lima"}'},
    }
    assert evs[8][1]["index"] == 2
    assert evs[11][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"input_tokens": 20, "output_tokens": 9},
    }
    assert (s.tokens_in, s.tokens_out) == (20, 9)


def test_stream_end_waits_for_usage_then_finish() -> None:
    s = MessageStream(model="m", message_id="msg_1")
    raw = run(s, [chunk({"content": "Hi"}), chunk(finish="stop")], finish=False)
    names = [n for n, _ in events(raw)]
    assert names[-1] == "content_block_stop" and not s.done and s.finished
    tail = validate_stream(s.finish())
    assert [n for n, _ in tail] == ["message_delta", "message_stop"]
    # no usage from upstream: output tokens 0, message_start's input estimate stands
    assert tail[0][1]["usage"] == {"output_tokens": 0}


def test_stream_usage_in_the_finish_chunk() -> None:
    s = MessageStream(model="m", message_id="msg_1")
    raw = run(s, [chunk({"content": "Hi"}), chunk(finish="length", usage=(5, 1))], finish=False)
    evs = validate_stream(raw)
    assert s.done
    assert evs[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_stream_stop_sequence_from_vllm() -> None:
    s = MessageStream(model="m", message_id="msg_1", stop_sequences=["###"])
    raw = run(
        s, [chunk({"content": "a"}), chunk(finish="stop", stop_reason="###"), chunk(usage=(1, 1))]
    )
    delta = next(d for n, d in validate_stream(raw) if n == "message_delta")
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "###"}


def test_stream_thinking_blocks() -> None:
    chunks = [
        chunk({"role": "assistant", "reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing"}),
        chunk({"content": "Done"}),
        chunk(finish="stop", usage=(1, 2)),
    ]
    raw = run(MessageStream(model="m", message_id="msg_1", thinking=True), chunks)
    evs = validate_stream(raw)
    assert evs[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert evs[2][1]["delta"] == {"type": "thinking_delta", "thinking": "Think"}
    assert evs[4][1] == {"type": "content_block_stop", "index": 0}
    assert evs[5][1]["content_block"]["type"] == "text" and evs[5][1]["index"] == 1
    # without thinking asked for, reasoning is dropped
    raw = run(MessageStream(model="m", message_id="msg_1"), chunks)
    blocks = [d["content_block"]["type"] for n, d in events(raw) if n == "content_block_start"]
    assert blocks == ["text"]


def test_stream_text_after_tool_call_flushes_it() -> None:
    chunks = [
        chunk(tool_delta(0, "c", "f", '{"a":1}')),
        chunk({"content": "after"}),
        chunk(finish="stop", usage=(1, 1)),
    ]
    evs = validate_stream(run(MessageStream(model="m", message_id="msg_1"), chunks))
    starts = [d["content_block"]["type"] for n, d in evs if n == "content_block_start"]
    assert starts == ["tool_use", "text"]
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_stream_invalid_tool_arguments_are_wrapped() -> None:
    chunks = [chunk(tool_delta(0, "c", "f", "{not json")), chunk(finish="tool_calls", usage=(1, 1))]
    evs = validate_stream(run(MessageStream(model="m", message_id="msg_1"), chunks))
    deltas = [d["delta"] for n, d in evs if n == "content_block_delta"]
    assert deltas == [{"type": "input_json_delta", "partial_json": '{"_raw": "{not json"}'}]


def test_stream_tool_call_without_id_or_name_first() -> None:
    """Ids are made up when upstream has none; a name may come after the first fragment."""
    chunks = [
        chunk(tool_delta(0, args="{")),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "late", "arguments": "}"}}]}),
        chunk(finish="tool_calls", usage=(1, 1)),
    ]
    evs = validate_stream(run(MessageStream(model="m", message_id="msg_q"), chunks))
    start = next(d for n, d in evs if n == "content_block_start")
    assert start["content_block"] == {
        "type": "tool_use",
        "id": "toolu_q_0",
        "name": "late",
        "input": {},
    }


def test_empty_stream_still_ends_properly() -> None:
    s = MessageStream(model="m", message_id="msg_1")
    evs = validate_stream(s.finish())
    assert [n for n, _ in evs] == ["message_start", "message_delta", "message_stop"]


def test_stream_error_and_ping() -> None:
    s = MessageStream(model="m", message_id="msg_1")
    raw = s.feed(chunk({"content": "Hi"}))
    err = s.error("backend went away", "overloaded_error")
    assert s.done
    assert s.feed(chunk({"content": "more"})) == b"" and s.finish() == b""
    evs = events(raw + err)
    assert evs[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "backend went away"}},
    )
    ErrorResponse.model_validate(evs[-1][1])
    assert MessageStream.ping() == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_upstream_error_chunk_raises() -> None:
    s = MessageStream(model="m", message_id="msg_1")
    with pytest.raises(UpstreamError, match="boom"):
        s.feed({"error": {"message": "boom"}})


# =========================================================================== the real client


def client(handler: Callable[[Any], Any]) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="test",
        base_url="http://proxy.test",
        http_client=hx.Client(transport=hx.MockTransport(handler)),
        max_retries=0,
    )


def sse_response(raw: bytes) -> Any:
    return hx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)


def test_client_create_reads_translated_message() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: Any) -> Any:
        assert request.url.path == "/v1/messages"
        req = json.loads(request.content)
        out, _route = parse_messages(req)
        seen.append(out)
        resp = completion("Sunny.", calls=[("call_1", "get_weather", '{"city": "Lima"}')])
        return hx.Response(
            200, json=message_from_openai(resp, model=req["model"], message_id="msg_1")
        )

    msg = client(handler).messages.create(  # type: ignore[call-overload,unused-ignore]
        model="claude-x",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Weather in Lima?"}],
        tools=[WEATHER],
        tool_choice={"type": "auto"},
        metadata={"user_id": "u"},
    )
    assert seen[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert msg.stop_reason == "tool_use"
    assert msg.content[0].type == "text" and msg.content[0].text == "Sunny."
    tool = msg.content[1]
    assert tool.type == "tool_use" and tool.input == {"city": "Lima"} and tool.id == "call_1"
    assert msg.usage.input_tokens == 12


def stream_handler(
    chunks: list[dict[str, Any]], *, fail: str | None = None
) -> Callable[[Any], Any]:
    def handler(request: Any) -> Any:
        req = json.loads(request.content)
        out, _route = parse_messages(req)
        assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
        s = MessageStream(
            model=req["model"],
            message_id="msg_live",
            thinking=thinking_requested(req),
            stop_sequences=req.get("stop_sequences") or (),
        )
        raw = MessageStream.ping()
        for c in chunks:
            raw += s.feed(c)
        raw += s.error(fail) if fail else s.finish()
        # odd network chunking: the client reassembles events itself
        return sse_response(raw)

    return handler


def test_client_stream_accumulates_final_message() -> None:
    c = client(stream_handler(TEXT_AND_TOOLS))
    with c.messages.stream(
        model="claude-x",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Let me check."
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].type == "tool_use" and final.content[1].input == {"city": "Lima"}
    assert final.content[2].type == "tool_use" and final.content[2].input == {}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 9)


def test_client_raw_stream_events() -> None:
    c = client(stream_handler([chunk({"content": "Hi"}), chunk(finish="stop", usage=(3, 1))]))
    evs = list(
        c.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert [e.type for e in evs] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_client_sees_mid_stream_error() -> None:
    c = client(stream_handler([chunk({"content": "Hi"})], fail="upstream died"))
    with pytest.raises(anthropic.APIStatusError, match="upstream died"):  # noqa: SIM117
        with c.messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            stream.get_final_message()


def test_client_count_tokens() -> None:
    def handler(request: Any) -> Any:
        assert request.url.path == "/v1/messages/count_tokens"
        return hx.Response(200, json=count_tokens(json.loads(request.content)))

    n = client(handler).messages.count_tokens(
        model="m", messages=[{"role": "user", "content": "Hello there"}]
    )
    assert (
        n.input_tokens
        == count_tokens({"model": "m", "messages": [{"role": "user", "content": "Hello there"}]})[
            "input_tokens"
        ]
    )


def test_client_reads_error_body() -> None:
    def handler(request: Any) -> Any:
        return hx.Response(529, json=error_body(529, "all backends busy"))

    with pytest.raises(anthropic.InternalServerError) as exc:
        client(handler).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 529
    assert exc.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "all backends busy"},
    }


# =========================================================================== properties

texts = st.text(st.characters(codec="utf-8"), max_size=30)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=6,
)
inputs = st.dictionaries(names, json_values, max_size=4)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Alternating turns; assistant turns may call tools, whose results come next."""
    msgs: list[dict[str, Any]] = []
    pending: list[str] = []
    for turn in range(draw(st.integers(1, 6))):
        if turn % 2 == 0:
            blocks: list[dict[str, Any]] = [
                {"type": "tool_result", "tool_use_id": tid, "content": draw(texts)}
                for tid in pending
            ]
            pending = []
            blocks += [
                {"type": "text", "text": t}
                for t in draw(st.lists(texts, min_size=0 if blocks else 1, max_size=2))
            ]
            msgs.append({"role": "user", "content": blocks})
        else:
            blocks = [{"type": "text", "text": t} for t in draw(st.lists(texts, max_size=2))]
            for n in range(draw(st.integers(0, 2))):
                tid = f"toolu_{turn}_{n}"
                pending.append(tid)
                blocks.append(
                    {"type": "tool_use", "id": tid, "name": draw(names), "input": draw(inputs)}
                )
            if not blocks:
                blocks = [{"type": "text", "text": draw(texts)}]
            msgs.append({"role": "assistant", "content": blocks})
    return msgs


@settings(max_examples=150, deadline=None)
@given(conversations())
def test_roles_texts_and_tool_calls_survive_translation(msgs: list[dict[str, Any]]) -> None:
    out, route = parse_messages(body(messages=msgs))
    chat_msgs = out["messages"]
    parse("openai", "chat", copy.deepcopy(out))  # always a valid chat body
    # every text, in order, per role
    want_texts = [
        (m["role"], "\n".join(b["text"] for b in m["content"] if b["type"] == "text"))
        for m in msgs
        if any(b["type"] == "text" for b in m["content"]) or m["role"] == "assistant"
    ]
    got_texts = [(m["role"], m["content"] or "") for m in chat_msgs if m["role"] != "tool"]
    assert got_texts == want_texts
    # every tool call with its arguments, and every result after its call
    want_calls = [
        (b["id"], b["name"], b["input"])
        for m in msgs
        for b in m["content"]
        if b["type"] == "tool_use"
    ]
    got_calls = [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for m in chat_msgs
        for c in m.get("tool_calls", ())
    ]
    assert got_calls == want_calls
    called: set[str] = set()
    for m in chat_msgs:
        called.update(c["id"] for c in m.get("tool_calls", ()))
        if m["role"] == "tool":
            assert m["tool_call_id"] in called
    assert route.messages == len(chat_msgs)


@st.composite
def answers(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str, list[str]]], str]:
    """Text pieces, tool calls (id, name, argument fragments) and a finish reason."""
    pieces = draw(st.lists(texts.filter(bool), max_size=4))
    calls = []
    for n in range(draw(st.integers(0, 3))):
        args = json.dumps(draw(inputs))
        cuts = sorted(draw(st.lists(st.integers(0, len(args)), max_size=3)))
        frags = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]
        calls.append((f"call_{n}", draw(names), frags))
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length", "content_filter"]))
    return pieces, calls, finish


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
def test_stream_equals_the_whole_answer(
    answer: tuple[list[str], list[tuple[str, str, list[str]]], str],
) -> None:
    """The official client's accumulation of a stream == the non-streamed translation."""
    pieces, calls, finish = answer
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": p}) for p in pieces]
    for n, (cid, name, frags) in enumerate(calls):
        chunks.append(chunk(tool_delta(n, cid, name, frags[0])))
        chunks += [chunk(tool_delta(n, args=f)) for f in frags[1:]]
    chunks += [chunk(finish=finish), chunk(usage=(7, 5))]
    whole = message_from_openai(
        completion(
            "".join(pieces) or None,
            calls=[(cid, name, "".join(frags)) for cid, name, frags in calls],
            finish=finish,
            usage=(7, 5),
        ),
        model="m",
        message_id="msg_live",
    )
    with client(stream_handler(chunks)).messages.stream(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        final = stream.get_final_message().model_dump(mode="json", exclude_none=True)
    if whole["content"] == [{"type": "text", "text": ""}]:
        whole["content"] = []  # an empty stream has no blocks; a whole answer has one empty text
    for block in final["content"]:
        block.pop("parsed_output", None)
    assert final == {k: v for k, v in whole.items() if v is not None}


def test_client_reads_an_ollama_stream_through_the_chat_shape() -> None:
    """Anthropic client -> chat body -> Ollama body; Ollama's NDJSON -> chat chunks -> Anthropic."""
    from traywire.proxy.dialects import (
        NDJSONParser,
        OllamaToOpenAIStream,
        ndjson_line,
        openai_chat_request_to_ollama,
        openai_include_usage,
    )

    upstream = [
        {
            "model": "q",
            "created_at": "t",
            "message": {"role": "assistant", "content": "On it."},
            "done": False,
        },
        {
            "model": "q",
            "created_at": "t",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Lima"}}}
                ],
            },
            "done": False,
        },
        {
            "model": "q",
            "created_at": "t",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 30,
            "eval_count": 8,
        },
    ]
    raw_upstream = b"".join(ndjson_line(x) for x in upstream)

    def handler(request: Any) -> Any:
        req = json.loads(request.content)
        chat_body, _route = parse_messages(req)
        ollama_body = openai_chat_request_to_ollama(chat_body, "qwen3")
        assert ollama_body["tools"][0]["function"]["name"] == "get_weather"
        parser = NDJSONParser()
        to_chat = OllamaToOpenAIStream(
            "chat",
            model=req["model"],
            response_id="chatcmpl-x",
            created=1,
            include_usage=openai_include_usage(chat_body),
        )
        s = MessageStream(model=req["model"], message_id="msg_x")
        out = b""
        for i in range(0, len(raw_upstream), 11):
            for obj in parser.feed(raw_upstream[i : i + 11]):
                for c in to_chat.feed(obj):
                    out += s.feed(c)
        out += s.finish()
        return sse_response(out)

    with client(handler).messages.stream(
        model="claude-x",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Lima?"}],
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "On it."
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "get_weather" and tool.input == {"city": "Lima"}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 8)


def test_system_turns_among_the_messages_join_the_system_prompt() -> None:
    """Claude Code sends system reminders as turns with role "system"."""
    chat, route = parse_messages(
        {
            "model": "m",
            "max_tokens": 8,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "Reminder."}]},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "bye"},
            ],
        }
    )
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert chat["messages"][0]["content"] == "Be brief.\n\nReminder."
    assert route.last_user == "bye"
