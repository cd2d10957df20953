"""Tests of traywire.proxy.dialects and traywire.core.validate.

Every mapping is checked field by field in both directions; produced bodies
are also fed through the official ``openai`` and ``ollama`` packages (their
pydantic models, and their real clients over a mock HTTP transport) to prove
that real clients accept them.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from typing import Any

import httpx
import ollama
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ollama._types import ChatRequest, EmbedRequest, GenerateRequest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from traywire.core.request import BadRequest, parse
from traywire.errors import TraywireError
from traywire.proxy.dialects import (
    SSE_DONE,
    NDJSONParser,
    OllamaToOpenAIStream,
    OpenAIToOllamaStream,
    SSEParser,
    StreamParseError,
    TranslationError,
    UpstreamError,
    ndjson_line,
    ollama_chat_request_to_openai,
    ollama_embed_request_to_openai,
    ollama_embed_response_to_openai,
    ollama_error_body,
    ollama_generate_request_to_openai_chat,
    ollama_generate_request_to_openai_completion,
    ollama_generate_route,
    ollama_ndjson_error,
    ollama_response_to_openai_chat,
    ollama_response_to_openai_completion,
    openai_chat_request_to_ollama,
    openai_completion_request_to_ollama,
    openai_embeddings_request_to_ollama,
    openai_embeddings_response_to_ollama,
    openai_error_body,
    openai_error_type,
    openai_include_usage,
    openai_response_to_ollama_chat,
    openai_response_to_ollama_generate,
    openai_sse_error,
    sse_event,
    upstream_error_message,
)


# The server's one parse, per endpoint: checks the body and returns it.
def validate_openai_chat(body: object) -> dict[str, Any]:
    return parse("openai", "chat", body).body


def validate_openai_completion(body: object) -> dict[str, Any]:
    return parse("openai", "completion", body).body


def validate_openai_embeddings(body: object) -> dict[str, Any]:
    return parse("openai", "embed", body).body


def validate_ollama_chat(body: object) -> dict[str, Any]:
    return parse("ollama", "chat", body).body


def validate_ollama_generate(body: object) -> dict[str, Any]:
    return parse("ollama", "completion", body).body


def validate_ollama_embed(body: object) -> dict[str, Any]:
    return parse("ollama", "embed", body).body


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF").decode()
CREATED_AT = "2026-01-02T03:04:05.000000Z"

WEATHER_TOOL = {
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


def _raises_translation(fn: Callable[[], object], param: str, fragment: str) -> None:
    with pytest.raises(TranslationError) as info:
        fn()
    assert info.value.param == param
    assert str(info.value).startswith(f"{param}: ")
    assert fragment in info.value.message


# =========================================================================== chat requests


def test_openai_chat_request_to_ollama_full() -> None:
    body = {
        "model": "client-name",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Dev rules."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                    },
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "text", "text": "sunny"}],
            },
            {"role": "assistant", "content": "It is sunny at noon."},
        ],
        "tools": [WEATHER_TOOL],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 7,
        "stop": ["\n\n", "END"],
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "someone",
        "logit_bias": {"50256": -100},
    }
    out = openai_chat_request_to_ollama(validate_openai_chat(body), "llama3.2:3b")
    assert out["model"] == "llama3.2:3b"
    assert out["stream"] is True
    msgs = out["messages"]
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1] == {"role": "system", "content": "Dev rules."}
    assert msgs[2] == {"role": "user", "content": "What is this?\nAnd this?", "images": [PNG, JPEG]}
    assert msgs[3]["role"] == "assistant"
    assert msgs[3]["content"] == ""
    assert msgs[3]["tool_calls"] == [
        {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call_2", "function": {"name": "get_time", "arguments": {}}},
    ]
    assert msgs[4] == {
        "role": "tool",
        "content": "noon",
        "tool_name": "get_time",
        "tool_call_id": "call_2",
    }
    assert msgs[5] == {
        "role": "tool",
        "content": "sunny",
        "tool_name": "get_weather",
        "tool_call_id": "call_1",
    }
    assert msgs[6] == {"role": "assistant", "content": "It is sunny at noon."}
    assert out["tools"] == [WEATHER_TOOL]
    assert out["options"] == {
        "num_predict": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "seed": 7,
        "stop": ["\n\n", "END"],
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
    }
    for dropped in ("user", "logit_bias", "stream_options", "max_tokens", "response_format"):
        assert dropped not in out
    assert "format" not in out
    # The ollama package accepts it.
    req = ChatRequest.model_validate(out)
    assert req.model == "llama3.2:3b"
    # ollama's client wraps wire images (base64 strings) in Image; its serializer
    # accepts ours as base64 and sends them unchanged.
    images: list[Any] = [ollama.Image(value=i).model_dump() for i in msgs[2]["images"]]
    assert images == [PNG, JPEG]
    parsed = [
        ollama.Message.model_validate(
            {**m, "images": [ollama.Image(value=i) for i in m.get("images", [])]}
        )
        for m in msgs
    ]
    assert parsed[3].tool_calls is not None
    assert parsed[3].tool_calls[0].function.arguments == {"city": "Paris"}
    assert parsed[4].tool_name == "get_time"


def test_openai_chat_request_defaults_and_precedence() -> None:
    out = openai_chat_request_to_ollama(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "stop": "STOP",
        },
        "up",
    )
    assert out["stream"] is False  # OpenAI's default; Ollama's would be true
    assert out["options"] == {"num_predict": 20, "stop": ["STOP"]}
    bare = openai_chat_request_to_ollama(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "up"
    )
    assert bare == {"model": "up", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, "json"),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "strict": True,
                    "schema": {"type": "object", "properties": {"age": {"type": "integer"}}},
                },
            },
            {"type": "object", "properties": {"age": {"type": "integer"}}},
        ),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "json"),
        ({"type": "text"}, None),
    ],
)
def test_response_format_to_ollama(response_format: dict[str, Any], expected: object) -> None:
    out = openai_chat_request_to_ollama(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "q"}],
            "response_format": response_format,
        },
        "up",
    )
    assert out.get("format") == expected


def test_tool_choice_to_ollama() -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {}}}
    base = {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "tools": [WEATHER_TOOL, other],
    }
    assert "tools" not in openai_chat_request_to_ollama({**base, "tool_choice": "none"}, "up")
    assert openai_chat_request_to_ollama({**base, "tool_choice": "auto"}, "up")["tools"] == [
        WEATHER_TOOL,
        other,
    ]
    assert openai_chat_request_to_ollama({**base, "tool_choice": "required"}, "up")["tools"] == [
        WEATHER_TOOL,
        other,
    ]
    named = {**base, "tool_choice": {"type": "function", "function": {"name": "other"}}}
    assert openai_chat_request_to_ollama(named, "up")["tools"] == [other]
    missing = {**base, "tool_choice": {"type": "function", "function": {"name": "nope"}}}
    _raises_translation(
        lambda: openai_chat_request_to_ollama(missing, "up"), "tool_choice", "'nope'"
    )
    custom = {**base, "tools": [{"type": "custom", "custom": {"name": "x"}}]}
    _raises_translation(
        lambda: openai_chat_request_to_ollama(custom, "up"), "tools[0].type", "only function tools"
    )


def test_legacy_function_messages_to_ollama() -> None:
    out = openai_chat_request_to_ollama(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "f", "arguments": '{"x": 1}'},
                },
                {"role": "function", "name": "f", "content": "done"},
            ],
        },
        "up",
    )
    assert out["messages"][1]["tool_calls"] == [{"function": {"name": "f", "arguments": {"x": 1}}}]
    assert out["messages"][2] == {"role": "tool", "content": "done", "tool_name": "f"}


def test_assistant_reasoning_history_to_ollama_thinking() -> None:
    out = openai_chat_request_to_ollama(
        {
            "model": "m",
            "messages": [{"role": "assistant", "content": "4", "reasoning_content": "2+2"}],
        },
        "up",
    )
    assert out["messages"][0] == {"role": "assistant", "content": "4", "thinking": "2+2"}


@pytest.mark.parametrize(
    ("message", "param", "fragment"),
    [
        (
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
                ],
            },
            "messages[0].content[0].image_url",
            "http(s) URL",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url", "image_url": {"url": "http://x/y.jpg"}},
                ],
            },
            "messages[0].content[1].image_url",
            "base64 data: URI",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/svg+xml,%3Csvg%3E"}}
                ],
            },
            "messages[0].content[0].image_url",
            "only base64 data: URIs",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}],
            },
            "messages[0].content[0].image_url",
            "no image data",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]},
            "messages[0].content[0].image_url",
            "expected a base64 data: URI",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}
                ],
            },
            "messages[0].content[0]",
            "'input_audio' cannot be sent",
        ),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
            "not valid JSON",
        ),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": "[1, 2]"},
                    }
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
            "must be a JSON object, got list",
        ),
    ],
)
def test_openai_chat_request_untranslatable(
    message: dict[str, Any], param: str, fragment: str
) -> None:
    body = {"model": "m", "messages": [message]}
    validate_openai_chat(body)  # valid OpenAI, but not expressible for Ollama
    _raises_translation(lambda: openai_chat_request_to_ollama(body, "up"), param, fragment)


def test_openai_chat_request_n_refused() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "n": 2}
    _raises_translation(lambda: openai_chat_request_to_ollama(body, "up"), "n", "single choice")
    assert openai_chat_request_to_ollama({**body, "n": 1}, "up")["messages"]


def test_ollama_chat_request_to_openai_full() -> None:
    body = {
        "model": "client-name",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Look:", "images": [PNG, JPEG]},
            {"role": "user", "content": "", "images": [JPEG]},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "get_time", "arguments": {}}},
                ],
            },
            {"role": "tool", "tool_name": "get_time", "content": "noon"},
            {"role": "tool", "content": "sunny"},
            {"role": "assistant", "content": "Sunny, noon.", "thinking": "easy"},
        ],
        "tools": [{"function": WEATHER_TOOL["function"]}],
        "format": {"type": "object", "properties": {"a": {"type": "string"}}},
        "options": {
            "num_predict": 64,
            "temperature": 0.1,
            "top_p": 0.8,
            "top_k": 20,
            "seed": 3,
            "stop": ["###"],
            "presence_penalty": 1.0,
            "frequency_penalty": 0.5,
            "num_ctx": 8192,
            "min_p": 0.05,
        },
        "keep_alive": "5m",
    }
    out = ollama_chat_request_to_openai(validate_ollama_chat(body), "gpt-4o-mini")
    assert out["model"] == "gpt-4o-mini"
    assert out["stream"] is True  # Ollama's default
    assert out["stream_options"] == {"include_usage": True}
    msgs = out["messages"]
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}},
        ],
    }
    assert msgs[2] == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}}],
    }
    assert msgs[3] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_3_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_3_1",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    }
    # Matched by tool_name first, then by order.
    assert msgs[4] == {"role": "tool", "tool_call_id": "call_3_1", "content": "noon"}
    assert msgs[5] == {"role": "tool", "tool_call_id": "call_3_0", "content": "sunny"}
    assert msgs[6] == {"role": "assistant", "content": "Sunny, noon."}
    assert out["tools"] == [WEATHER_TOOL]
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    assert out["max_tokens"] == 64
    assert out["temperature"] == 0.1
    assert out["top_p"] == 0.8
    assert out["seed"] == 3
    assert out["stop"] == ["###"]
    assert out["presence_penalty"] == 1.0
    assert out["frequency_penalty"] == 0.5
    for absent in ("top_k", "min_p", "num_ctx", "options", "keep_alive", "format"):
        assert absent not in out
    # And back again: the OpenAI body is a valid OpenAI request.
    assert validate_openai_chat(out) is out


def test_ollama_chat_request_to_openai_options() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "q"}],
        "stream": False,
        "format": "json",
        "options": {
            "num_predict": -1,
            "top_k": 5,
            "min_p": 0.1,
            "repeat_penalty": 1.1,
            "stop": "x",
        },
    }
    out = ollama_chat_request_to_openai(
        body, "up", extensions=True, max_tokens_field="max_completion_tokens"
    )
    assert out["stream"] is False
    assert "stream_options" not in out
    assert out["response_format"] == {"type": "json_object"}
    assert "max_tokens" not in out and "max_completion_tokens" not in out
    assert out["top_k"] == 5 and out["min_p"] == 0.1 and out["repeat_penalty"] == 1.1
    assert out["stop"] == ["x"]
    out2 = ollama_chat_request_to_openai(
        {**body, "stream": True, "options": {"num_predict": 9}},
        "up",
        include_usage=False,
        max_tokens_field="max_completion_tokens",
    )
    assert out2["max_completion_tokens"] == 9
    assert "stream_options" not in out2


def test_ollama_tool_message_matching() -> None:
    calls = {
        "role": "assistant",
        "tool_calls": [{"id": "abc", "function": {"name": "f", "arguments": {}}}],
    }
    out = ollama_chat_request_to_openai(
        {
            "model": "m",
            "messages": [calls, {"role": "tool", "tool_call_id": "abc", "content": "r"}],
        },
        "up",
    )
    assert out["messages"][0]["tool_calls"][0]["id"] == "abc"
    assert out["messages"][0]["content"] is None
    assert out["messages"][1] == {"role": "tool", "tool_call_id": "abc", "content": "r"}
    _raises_translation(
        lambda: ollama_chat_request_to_openai(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "r"}],
            },
            "up",
        ),
        "messages[1]",
        "must follow an assistant message with tool_calls",
    )
    _raises_translation(
        lambda: ollama_chat_request_to_openai(
            {"model": "m", "messages": [{"role": "assistant", "content": "x", "images": [PNG]}]},
            "up",
        ),
        "messages[0].images",
        "only in user messages",
    )


def test_ollama_empty_chat_refused_for_openai() -> None:
    bodies: list[dict[str, Any]] = [{"model": "m", "messages": []}, {"model": "m"}]
    for body in bodies:
        validate_ollama_chat(body)  # a load request: valid for Ollama
        with pytest.raises(TranslationError) as info:
            ollama_chat_request_to_openai(body, "up")
        assert info.value.param == "messages"
        assert "only loads the model" in info.value.message


def test_ollama_empty_prompt_refused_for_openai() -> None:
    for body in ({"model": "m"}, {"model": "m", "prompt": "", "keep_alive": 0}):
        validate_ollama_generate(body)
        for fn in (
            ollama_generate_request_to_openai_chat,
            ollama_generate_request_to_openai_completion,
        ):
            with pytest.raises(TranslationError) as info:
                fn(body, "up")
            assert info.value.param == "prompt"
            assert "only loads the model" in info.value.message
    images_only = ollama_generate_request_to_openai_chat({"model": "m", "images": [PNG]}, "up")
    assert images_only["messages"][0]["content"][0]["type"] == "image_url"


def test_chat_request_round_trip() -> None:
    original = {
        "model": "m",
        "stream": True,
        "messages": [
            {"role": "system", "content": "s"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "t"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c9",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"k": [1]}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c9", "content": "ok"},
        ],
        "max_tokens": 12,
        "stop": ["z"],
        "temperature": 1.0,
    }
    back = ollama_chat_request_to_openai(openai_chat_request_to_ollama(original, "a"), "b")
    assert back["messages"] == original["messages"]
    assert back["max_tokens"] == 12 and back["stop"] == ["z"] and back["temperature"] == 1.0
    assert back["stream"] is True


def test_openai_include_usage() -> None:
    assert openai_include_usage({"stream_options": {"include_usage": True}}) is True
    assert openai_include_usage({"stream_options": {"include_usage": False}}) is False
    assert openai_include_usage({}) is False


# =========================================================================== completion requests


def test_openai_completion_request_to_ollama() -> None:
    body = {
        "model": "c",
        "prompt": "def f(x):",
        "max_tokens": 32,
        "temperature": 0,
        "stop": ["\ndef"],
        "seed": 1,
        "stream": True,
        "logprobs": 2,
        "user": "u",
    }
    out = openai_completion_request_to_ollama(validate_openai_completion(body), "qwen-coder")
    assert out == {
        "model": "qwen-coder",
        "prompt": "def f(x):",
        "stream": True,
        "raw": True,
        "options": {"num_predict": 32, "temperature": 0, "seed": 1, "stop": ["\ndef"]},
    }
    GenerateRequest.model_validate(out)
    fim = openai_completion_request_to_ollama(
        {"model": "c", "prompt": ["def f(x):"], "suffix": "    return y"}, "up"
    )
    assert fim == {"model": "up", "prompt": "def f(x):", "suffix": "    return y", "stream": False}
    templated = openai_completion_request_to_ollama({"model": "c", "prompt": "p"}, "up", raw=False)
    assert "raw" not in templated


@pytest.mark.parametrize(
    ("extra", "param", "fragment"),
    [
        ({"prompt": ["a", "b"]}, "prompt", "single text prompt"),
        ({"prompt": [1, 2, 3]}, "prompt", "token ids"),
        ({"prompt": "a", "n": 3}, "n", "n must be 1"),
        ({"prompt": "a", "best_of": 2}, "best_of", "best_of must be 1"),
        ({"prompt": "a", "echo": True}, "echo", "cannot echo"),
    ],
)
def test_openai_completion_request_untranslatable(
    extra: dict[str, Any], param: str, fragment: str
) -> None:
    body = {"model": "m", **extra}
    validate_openai_completion(body)
    _raises_translation(lambda: openai_completion_request_to_ollama(body, "up"), param, fragment)


def test_ollama_generate_route() -> None:
    assert ollama_generate_route({"prompt": "p"}) == "chat"
    assert ollama_generate_route({"prompt": "p", "system": "s"}) == "chat"
    assert ollama_generate_route({"prompt": "p", "raw": True}) == "completion"
    assert ollama_generate_route({"prompt": "p", "suffix": "s"}) == "completion"
    assert ollama_generate_route({"prompt": "p", "suffix": ""}) == "chat"


def test_ollama_generate_request_to_openai_chat() -> None:
    body = {
        "model": "g",
        "prompt": "Describe",
        "system": "You are terse.",
        "images": [JPEG],
        "format": "json",
        "options": {"num_predict": 20, "temperature": 0.3},
    }
    out = ollama_generate_request_to_openai_chat(validate_ollama_generate(body), "gpt-4o")
    assert out["model"] == "gpt-4o"
    assert out["messages"] == [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}},
            ],
        },
    ]
    assert out["response_format"] == {"type": "json_object"}
    assert out["max_tokens"] == 20 and out["temperature"] == 0.3
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    plain = ollama_generate_request_to_openai_chat(
        {"model": "g", "prompt": "hi", "stream": False}, "up"
    )
    assert plain == {
        "model": "up",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }
    _raises_translation(
        lambda: ollama_generate_request_to_openai_chat(
            {"model": "g", "prompt": "a", "suffix": "b"}, "up"
        ),
        "suffix",
        "completions endpoint",
    )


def test_ollama_generate_request_to_openai_completion() -> None:
    body = {
        "model": "g",
        "prompt": "def a():",
        "suffix": "  return 1",
        "system": "ignored",
        "stream": False,
        "options": {"num_predict": 16, "stop": ["\n\n"], "top_k": 3},
    }
    out = ollama_generate_request_to_openai_completion(body, "coder", extensions=True)
    assert out == {
        "model": "coder",
        "prompt": "def a():",
        "suffix": "  return 1",
        "stream": False,
        "max_tokens": 16,
        "stop": ["\n\n"],
        "top_k": 3,
    }
    assert validate_openai_completion(out) is out
    raw = ollama_generate_request_to_openai_completion(
        {"model": "g", "prompt": "[INST]x", "raw": True}, "up"
    )
    assert raw == {
        "model": "up",
        "prompt": "[INST]x",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    _raises_translation(
        lambda: ollama_generate_request_to_openai_completion(
            {"model": "g", "prompt": "p", "raw": True, "images": [PNG]}, "up"
        ),
        "images",
        "cannot take images",
    )


# =========================================================================== embedding requests


def test_embeddings_requests() -> None:
    out = openai_embeddings_request_to_ollama(
        validate_openai_embeddings(
            {
                "model": "e",
                "input": ["a", "b"],
                "dimensions": 64,
                "encoding_format": "base64",
                "user": "u",
            }
        ),
        "nomic",
    )
    assert out == {"model": "nomic", "input": ["a", "b"], "dimensions": 64}
    EmbedRequest.model_validate(out)
    assert openai_embeddings_request_to_ollama({"model": "e", "input": "x"}, "n") == {
        "model": "n",
        "input": "x",
    }
    _raises_translation(
        lambda: openai_embeddings_request_to_ollama({"model": "e", "input": [[1, 2]]}, "n"),
        "input",
        "not token ids",
    )
    back = ollama_embed_request_to_openai(
        validate_ollama_embed(
            {"model": "e", "input": ["a"], "truncate": True, "dimensions": 8, "keep_alive": "1m"}
        ),
        "text-embedding-3-small",
    )
    assert back == {
        "model": "text-embedding-3-small",
        "input": ["a"],
        "encoding_format": "float",
        "dimensions": 8,
    }
    assert ollama_embed_request_to_openai({"model": "e", "input": "s"}, "t")["input"] == "s"


# =========================================================================== responses


def test_ollama_chat_response_to_openai() -> None:
    resp = {
        "model": "llama3.2",
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": "Hello!", "thinking": "greet"},
        "done": True,
        "done_reason": "stop",
        "total_duration": 5191566416,
        "prompt_eval_count": 26,
        "eval_count": 298,
    }
    out = ollama_response_to_openai_chat(
        resp, model="my-alias", response_id="chatcmpl-xyz", created=1700000000
    )
    assert out["id"] == "chatcmpl-xyz"
    assert out["object"] == "chat.completion"
    assert out["created"] == 1700000000
    assert out["model"] == "my-alias"
    assert out["choices"] == [
        {
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hello!", "reasoning_content": "greet"},
        }
    ]
    assert out["usage"] == {"prompt_tokens": 26, "completion_tokens": 298, "total_tokens": 324}
    cc = ChatCompletion.model_validate(out)
    assert cc.choices[0].message.content == "Hello!"
    assert cc.choices[0].finish_reason == "stop"
    assert cc.usage is not None and cc.usage.total_tokens == 324
    assert cc.model == "my-alias"


def test_ollama_chat_response_tool_calls_and_length() -> None:
    resp = {
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "given", "function": {"name": "get_time", "arguments": {}}},
            ],
        },
        "done": True,
        "done_reason": "stop",
    }
    out = ollama_response_to_openai_chat(resp, model="m", response_id="chatcmpl-77", created=1)
    msg = out["choices"][0]["message"]
    assert msg["content"] is None
    assert msg["tool_calls"] == [
        {
            "id": "call_77_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "given", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    cc = ChatCompletion.model_validate(out)
    calls = cc.choices[0].message.tool_calls
    assert calls is not None
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    truncated = ollama_response_to_openai_chat(
        {"message": {"role": "assistant", "content": "abc"}, "done_reason": "length"},
        model="m",
        response_id="chatcmpl-1",
        created=1,
    )
    assert truncated["choices"][0]["finish_reason"] == "length"
    loaded = ollama_response_to_openai_chat(
        {"message": {"role": "assistant", "content": ""}, "done_reason": "load"},
        model="m",
        response_id="chatcmpl-1",
        created=1,
    )
    assert loaded["choices"][0]["finish_reason"] == "stop"


def test_ollama_generate_response_to_openai_completion() -> None:
    resp = {
        "model": "codellama",
        "created_at": CREATED_AT,
        "response": "return a + b",
        "done": True,
        "done_reason": "length",
        "context": [1, 2, 3],
        "prompt_eval_count": 17,
        "eval_count": 63,
    }
    out = ollama_response_to_openai_completion(resp, model="coder", response_id="cmpl-1", created=5)
    assert out == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 5,
        "model": "coder",
        "choices": [
            {"text": "return a + b", "index": 0, "logprobs": None, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 17, "completion_tokens": 63, "total_tokens": 80},
    }
    c = Completion.model_validate(out)
    assert c.choices[0].text == "return a + b" and c.choices[0].finish_reason == "length"
    # A chat-shaped Ollama body works too (the text is the message content).
    chatty = ollama_response_to_openai_completion(
        {"message": {"role": "assistant", "content": "x"}, "done_reason": "stop"},
        model="m",
        response_id="cmpl-2",
        created=5,
    )
    assert chatty["choices"][0]["text"] == "x"
    # ...and a generate body can answer a chat client.
    as_chat = ollama_response_to_openai_chat(resp, model="m", response_id="chatcmpl-3", created=5)
    assert as_chat["choices"][0]["message"]["content"] == "return a + b"
    assert as_chat["choices"][0]["finish_reason"] == "length"


def test_openai_chat_response_to_ollama() -> None:
    resp = {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "content": "Hi there",
                    "reasoning_content": "think",
                },
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        "timings": {"prompt_n": 9, "prompt_ms": 12.5, "predicted_n": 3, "predicted_ms": 40},
    }
    out = openai_response_to_ollama_chat(
        resp, model="alias", created_at=CREATED_AT, total_duration=123456789
    )
    assert out == {
        "model": "alias",
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": "Hi there", "thinking": "think"},
        "done": True,
        "done_reason": "stop",
        "total_duration": 123456789,
        "prompt_eval_count": 9,
        "eval_count": 3,
        "prompt_eval_duration": 12500000,
        "eval_duration": 40000000,
    }
    cr = ollama.ChatResponse.model_validate(out)
    assert cr.message.content == "Hi there"
    assert cr.message.thinking == "think"
    assert cr.done is True and cr.done_reason == "stop"
    assert cr.prompt_eval_count == 9 and cr.eval_count == 3
    assert cr.total_duration == 123456789
    assert cr.model == "alias"


def test_openai_chat_response_tool_calls_to_ollama() -> None:
    resp = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
    out = openai_response_to_ollama_chat(resp, model="m", created_at=CREATED_AT)
    assert out["message"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}, "id": "call_a"}
        ],
    }
    assert out["done_reason"] == "stop"
    assert "total_duration" not in out
    cr = ollama.ChatResponse.model_validate(out)
    assert cr.message.tool_calls is not None
    assert cr.message.tool_calls[0].function.name == "get_weather"
    assert cr.message.tool_calls[0].function.arguments == {"city": "Oslo"}
    bad = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "x", "type": "function", "function": {"name": "f", "arguments": "{"}}
                    ],
                },
            }
        ]
    }
    _raises_translation(
        lambda: openai_response_to_ollama_chat(bad, model="m", created_at="t"),
        "choices[0].message.tool_calls[0].function.arguments",
        "not valid JSON",
    )
    length = openai_response_to_ollama_chat(
        {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": "ab"},
                }
            ]
        },
        model="m",
        created_at="t",
    )
    assert length["done_reason"] == "length"
    assert "eval_count" not in length
    filtered = openai_response_to_ollama_chat(
        {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "content_filter",
                    "message": {"role": "assistant", "content": ""},
                }
            ]
        },
        model="m",
        created_at="t",
    )
    assert filtered["done_reason"] == "content_filter"


def test_openai_completion_response_to_ollama_generate() -> None:
    resp = {
        "id": "cmpl-9",
        "object": "text_completion",
        "created": 1,
        "model": "x",
        "choices": [{"text": " world", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 16, "total_tokens": 18},
    }
    out = openai_response_to_ollama_generate(
        resp, model="alias", created_at=CREATED_AT, total_duration=10
    )
    assert out == {
        "model": "alias",
        "created_at": CREATED_AT,
        "response": " world",
        "done": True,
        "done_reason": "length",
        "total_duration": 10,
        "prompt_eval_count": 2,
        "eval_count": 16,
    }
    gr = ollama.GenerateResponse.model_validate(out)
    assert gr.response == " world" and gr.done_reason == "length" and gr.eval_count == 16
    # The chat route of /api/generate: a chat completion answers a generate client.
    via_chat = openai_response_to_ollama_generate(
        {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Hi", "reasoning": "r"},
                }
            ]
        },
        model="alias",
        created_at=CREATED_AT,
    )
    assert via_chat["response"] == "Hi" and via_chat["thinking"] == "r"
    assert via_chat["done_reason"] == "stop"
    ollama.GenerateResponse.model_validate(via_chat)
    # And a completion body can answer an Ollama chat client.
    as_chat = openai_response_to_ollama_chat(resp, model="alias", created_at=CREATED_AT)
    assert as_chat["message"] == {"role": "assistant", "content": " world"}


def test_embed_responses() -> None:
    vectors = [[0.5, -0.25, 1.0], [0.125, 0.0, -2.0]]
    resp = {
        "model": "nomic",
        "embeddings": vectors,
        "total_duration": 14143917,
        "load_duration": 1019500,
        "prompt_eval_count": 8,
    }
    out = ollama_embed_response_to_openai(resp, model="alias")
    assert out == {
        "object": "list",
        "model": "alias",
        "data": [
            {"object": "embedding", "index": 0, "embedding": vectors[0]},
            {"object": "embedding", "index": 1, "embedding": vectors[1]},
        ],
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    parsed = CreateEmbeddingResponse.model_validate(out)
    assert parsed.data[1].embedding == vectors[1] and parsed.usage.prompt_tokens == 8
    packed = ollama_embed_response_to_openai(resp, model="alias", encoding_format="base64")
    first = packed["data"][0]["embedding"]
    assert isinstance(first, str)
    assert list(struct.unpack("<3f", base64.b64decode(first))) == vectors[0]
    back = openai_embeddings_response_to_ollama(
        {
            "object": "list",
            "model": "m",
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
            "data": [
                packed["data"][1],
                {"object": "embedding", "index": 0, "embedding": vectors[0]},
            ],
        },
        model="alias",
        total_duration=99,
    )
    assert back == {
        "model": "alias",
        "embeddings": vectors,
        "total_duration": 99,
        "prompt_eval_count": 4,
    }
    er = ollama.EmbedResponse.model_validate(back)
    assert [list(v) for v in er.embeddings] == vectors
    assert er.prompt_eval_count == 4


def test_response_converters_tolerate_junk_upstream_bodies() -> None:
    junk: list[dict[str, Any]] = [
        {},
        {"choices": "x"},
        {"choices": [1, {"index": 0, "message": "m"}]},
        {"choices": [{"index": 0, "message": {"content": 3, "tool_calls": [5]}}], "usage": 1},
        {"message": {"content": None, "tool_calls": "t"}, "prompt_eval_count": "9"},
        {"message": {"tool_calls": [{"function": "f"}]}},
        {"embeddings": "e", "data": [1]},
    ]
    for body in junk:
        chat = openai_response_to_ollama_chat(body, model="m", created_at="t")
        assert chat["done"] is True and isinstance(chat["message"]["content"], str)
        ollama.ChatResponse.model_validate(chat)
        ollama.GenerateResponse.model_validate(
            openai_response_to_ollama_generate(body, model="m", created_at="t")
        )
        ChatCompletion.model_validate(
            ollama_response_to_openai_chat(body, model="m", response_id="chatcmpl-j", created=1)
        )
        Completion.model_validate(
            ollama_response_to_openai_completion(body, model="m", response_id="cmpl-j", created=1)
        )
        CreateEmbeddingResponse.model_validate(ollama_embed_response_to_openai(body, model="m"))
        ollama.EmbedResponse.model_validate(openai_embeddings_response_to_ollama(body, model="m"))
        OpenAIToOllamaStream("chat", model="m", created_at="t").feed(body)
        OllamaToOpenAIStream("chat", model="m", response_id="chatcmpl-j", created=1).feed(body)
    junk_delta = OpenAIToOllamaStream("chat", model="m", created_at="t")
    assert (
        junk_delta.feed({"choices": [{"index": 0, "delta": {"tool_calls": [1, {"x": 1}]}}]}) == []
    )
    assert junk_delta.finish()[0]["message"]["tool_calls"] == [
        {"function": {"name": "", "arguments": {}}}
    ]


# ====================================================================== streams: Ollama -> OpenAI


def _ochat(content: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": content, **extra},
        "done": False,
    }


OLLAMA_DONE = {
    "model": "llama3.2",
    "created_at": CREATED_AT,
    "message": {"role": "assistant", "content": ""},
    "done": True,
    "done_reason": "stop",
    "total_duration": 4883583458,
    "prompt_eval_count": 26,
    "eval_count": 282,
}


def test_ollama_stream_to_openai_chat_with_usage() -> None:
    conv = OllamaToOpenAIStream(
        "chat", model="alias", response_id="chatcmpl-s1", created=1700000001, include_usage=True
    )
    out1 = conv.feed(_ochat("The"))
    out2 = conv.feed(_ochat(" sky"))
    out3 = conv.feed(_ochat(""))  # nothing to say: no chunk
    out4 = conv.feed(OLLAMA_DONE)
    assert len(out1) == 1 and len(out2) == 1 and out3 == [] and len(out4) == 2
    assert out1[0] == {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1700000001,
        "model": "alias",
        "usage": None,
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "The"},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    assert out2[0]["choices"][0]["delta"] == {"content": " sky"}
    assert out4[0]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert out4[1] == {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1700000001,
        "model": "alias",
        "choices": [],
        "usage": {"prompt_tokens": 26, "completion_tokens": 282, "total_tokens": 308},
    }
    chunks = [ChatCompletionChunk.model_validate(c) for c in out1 + out2 + out4]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "The sky"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 282
    assert conv.done
    assert conv.feed(_ochat("late")) == [] and conv.finish() == []


def test_ollama_stream_to_openai_chat_without_usage() -> None:
    conv = OllamaToOpenAIStream("chat", model="m", response_id="chatcmpl-2", created=1)
    first = conv.feed(_ochat("A"))[0]
    assert "usage" not in first
    last = conv.feed({**OLLAMA_DONE, "done_reason": "length"})
    assert len(last) == 1
    assert last[0]["choices"][0]["finish_reason"] == "length"
    assert "usage" not in last[0]


def test_ollama_stream_tool_calls_and_thinking() -> None:
    conv = OllamaToOpenAIStream("chat", model="m", response_id="chatcmpl-tc", created=1)
    a = conv.feed(_ochat("", thinking="hmm"))
    b = conv.feed(
        _ochat(
            "", tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]
        )
    )
    c = conv.feed(_ochat("", tool_calls=[{"function": {"name": "get_time", "arguments": {}}}]))
    d = conv.feed(OLLAMA_DONE)
    assert a[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "reasoning_content": "hmm",
    }
    assert b[0]["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_tc_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            }
        ]
    }
    assert c[0]["choices"][0]["delta"]["tool_calls"][0]["index"] == 1
    assert c[0]["choices"][0]["delta"]["tool_calls"][0]["id"] == "call_tc_1"
    assert d[0]["choices"][0]["finish_reason"] == "tool_calls"
    parsed = [ChatCompletionChunk.model_validate(x) for x in a + b + c + d]
    tc = parsed[1].choices[0].delta.tool_calls
    assert tc is not None and tc[0].function is not None
    assert tc[0].function.name == "get_weather"


def test_ollama_stream_done_only_and_finish() -> None:
    conv = OllamaToOpenAIStream("chat", model="m", response_id="chatcmpl-e", created=1)
    only = conv.feed(OLLAMA_DONE)
    assert only[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert only[0]["choices"][0]["finish_reason"] == "stop"
    cut = OllamaToOpenAIStream(
        "chat", model="m", response_id="chatcmpl-f", created=1, include_usage=True
    )
    cut.feed(_ochat("partial"))
    assert not cut.done
    closing = cut.finish()
    assert closing[0]["choices"][0]["finish_reason"] == "stop"
    assert closing[1]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert cut.finish() == []


def test_ollama_stream_error_raises() -> None:
    conv = OllamaToOpenAIStream("chat", model="m", response_id="chatcmpl-e", created=1)
    conv.feed(_ochat("x"))
    with pytest.raises(UpstreamError) as info:
        conv.feed({"error": "model runner has unexpectedly stopped"})
    assert info.value.message == "model runner has unexpectedly stopped"
    assert isinstance(info.value, TraywireError)


def test_ollama_generate_stream_to_openai_completion() -> None:
    conv = OllamaToOpenAIStream(
        "completion", model="alias", response_id="cmpl-g", created=3, include_usage=True
    )
    chunks = []
    for piece in ("def", " f", ""):
        chunks += conv.feed(
            {"model": "x", "created_at": CREATED_AT, "response": piece, "done": False}
        )
    chunks += conv.feed(
        {
            "model": "x",
            "created_at": CREATED_AT,
            "response": "",
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 4,
            "eval_count": 2,
            "context": [1],
        }
    )
    assert len(chunks) == 4
    assert chunks[0] == {
        "id": "cmpl-g",
        "object": "text_completion",
        "created": 3,
        "model": "alias",
        "usage": None,
        "choices": [{"text": "def", "index": 0, "logprobs": None, "finish_reason": None}],
    }
    assert chunks[1]["choices"][0]["text"] == " f"
    assert chunks[2]["choices"][0] == {
        "text": "",
        "index": 0,
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 6
    # Real OpenAI streams carry finish_reason null mid-stream, which the strict
    # Completion model refuses; the closing chunks must validate.
    final = Completion.model_validate(chunks[2])
    assert final.choices[0].finish_reason == "stop"
    usage = Completion.model_validate(chunks[3])
    assert usage.usage is not None and usage.usage.prompt_tokens == 4


# ====================================================================== streams: OpenAI -> Ollama


def _chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    *,
    choices: bool = True,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "id": "chatcmpl-u",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt",
        "choices": [],
    }
    if choices:
        c["choices"] = [
            {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
        ]
    if usage is not None:
        c["usage"] = usage
    return c


def test_openai_stream_to_ollama_chat() -> None:
    conv = OpenAIToOllamaStream("chat", model="alias", created_at=CREATED_AT)
    lines = conv.feed(_chunk({"role": "assistant", "content": ""}))
    assert lines == []
    lines += conv.feed(_chunk({"content": "Hel"}))
    lines += conv.feed(_chunk({"content": "lo"}))
    lines += conv.feed(_chunk({}, "stop"))
    assert not conv.done  # waiting for the usage chunk
    lines += conv.feed(
        _chunk(
            usage={"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}, choices=False
        )
    )
    assert conv.done
    assert lines[0] == {
        "model": "alias",
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": "Hel"},
        "done": False,
    }
    assert lines[1]["message"]["content"] == "lo"
    assert lines[2] == {
        "model": "alias",
        "created_at": CREATED_AT,
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 11,
        "eval_count": 2,
    }
    assert len(lines) == 3
    parsed = [ollama.ChatResponse.model_validate(x) for x in lines]
    assert "".join(p.message.content or "" for p in parsed) == "Hello"
    assert parsed[-1].done and parsed[-1].eval_count == 2
    assert conv.finish() == []


def test_openai_stream_to_ollama_without_usage_finishes_on_finish() -> None:
    conv = OpenAIToOllamaStream("chat", model="m", created_at=CREATED_AT)
    assert conv.feed(_chunk({"content": "x"}, "length"))[0]["message"]["content"] == "x"
    assert not conv.done
    conv.created_at = "2026-01-02T03:04:06Z"
    final = conv.finish(total_duration=5_000_000)
    assert final == [
        {
            "model": "m",
            "created_at": "2026-01-02T03:04:06Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "length",
            "total_duration": 5_000_000,
        }
    ]
    assert conv.finish() == []
    # Usage and finish_reason in one chunk (llama.cpp): done right away, with timings.
    conv2 = OpenAIToOllamaStream("chat", model="m", created_at=CREATED_AT)
    out = conv2.feed(
        {
            **_chunk({}, "stop", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}),
            "timings": {"prompt_ms": 1.5, "predicted_ms": 2},
        }
    )
    assert out[-1]["done"] is True
    assert out[-1]["prompt_eval_duration"] == 1_500_000 and out[-1]["eval_duration"] == 2_000_000


def test_openai_stream_tool_call_fragments_to_ollama() -> None:
    conv = OpenAIToOllamaStream("chat", model="m", created_at=CREATED_AT)
    deltas: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_w",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Pa'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_t",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ]
        },
    ]
    lines: list[dict[str, Any]] = []
    for d in deltas:
        lines += conv.feed(_chunk(d))
    assert lines == []  # fragments are held until the call is whole
    lines += conv.feed(_chunk({}, "tool_calls"))
    lines += conv.finish()
    assert lines[0]["message"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": "call_w"},
            {"function": {"name": "get_time", "arguments": {}}, "id": "call_t"},
        ],
    }
    assert lines[0]["done"] is False
    assert lines[1]["done"] is True and lines[1]["done_reason"] == "stop"
    parsed = ollama.ChatResponse.model_validate(lines[0])
    assert parsed.message.tool_calls is not None
    assert parsed.message.tool_calls[0].function.arguments == {"city": "Paris"}
    assert parsed.message.tool_calls[1].function.name == "get_time"


def test_openai_stream_tool_calls_flushed_by_finish_and_bad_json() -> None:
    conv = OpenAIToOllamaStream("chat", model="m", created_at=CREATED_AT)
    conv.feed(
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ]
            }
        )
    )
    out = conv.finish()
    assert out[0]["message"]["tool_calls"] == [
        {"function": {"name": "f", "arguments": {"a": 1}}, "id": "c"}
    ]
    assert out[1]["done"] is True
    broken = OpenAIToOllamaStream("chat", model="m", created_at=CREATED_AT)
    broken.feed(
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a": '}}
                ]
            }
        )
    )
    _raises_translation(
        lambda: broken.feed(_chunk({}, "tool_calls")),
        "tool_calls[0].function.arguments",
        "not valid JSON",
    )


def test_openai_stream_reasoning_and_errors() -> None:
    conv = OpenAIToOllamaStream("chat", model="m", created_at=CREATED_AT)
    out = conv.feed(_chunk({"reasoning_content": "step"}))
    assert out[0]["message"] == {"role": "assistant", "content": "", "thinking": "step"}
    assert conv.feed(_chunk({"reasoning": "two"}))[0]["message"]["thinking"] == "two"
    ollama.ChatResponse.model_validate(out[0])
    with pytest.raises(UpstreamError) as info:
        conv.feed({"error": {"message": "context length exceeded", "type": "invalid_request"}})
    assert info.value.message == "context length exceeded"


def test_openai_completion_stream_to_ollama_generate() -> None:
    conv = OpenAIToOllamaStream("generate", model="alias", created_at=CREATED_AT)

    def cchunk(text: str, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "x",
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        }

    lines = conv.feed(cchunk("Once")) + conv.feed(cchunk(" upon")) + conv.feed(cchunk("", "stop"))
    lines += conv.feed(
        {
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1,
            "model": "x",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    )
    assert lines == [
        {"model": "alias", "created_at": CREATED_AT, "response": "Once", "done": False},
        {"model": "alias", "created_at": CREATED_AT, "response": " upon", "done": False},
        {
            "model": "alias",
            "created_at": CREATED_AT,
            "response": "",
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 3,
            "eval_count": 2,
        },
    ]
    parsed = [ollama.GenerateResponse.model_validate(x) for x in lines]
    assert "".join(p.response or "" for p in parsed) == "Once upon"
    # Chat chunks into generate lines (the chat route of /api/generate).
    via_chat = OpenAIToOllamaStream("generate", model="alias", created_at=CREATED_AT)
    got = via_chat.feed(_chunk({"content": "Hi", "reasoning_content": "r"})) + via_chat.finish()
    assert got[0] == {
        "model": "alias",
        "created_at": CREATED_AT,
        "response": "Hi",
        "done": False,
        "thinking": "r",
    }
    assert got[1]["response"] == "" and got[1]["done"] is True


# =========================================================================== SSE parser


SSE_SAMPLE = (
    b": keep-alive comment\n"
    b'data: {"a": 1}\n\n'
    b'event: message\r\nid: 7\r\ndata:{"b": "\xc3\xa9\xe2\x82\xac"}\r\n\r\n'
    b"data: line one\ndata:  line two\ndata\n\n"
    b"retry: 10\n\n"
    b"data: [DONE]\n\n"
)
SSE_EXPECTED = ['{"a": 1}', '{"b": "é€"}', "line one\n line two\n", "[DONE]"]


def test_sse_parser_whole_and_byte_by_byte() -> None:
    whole = SSEParser()
    assert whole.feed(SSE_SAMPLE) + whole.finish() == SSE_EXPECTED
    bytewise = SSEParser()
    got: list[str] = []
    for i in range(len(SSE_SAMPLE)):
        got += bytewise.feed(SSE_SAMPLE[i : i + 1])
    assert got + bytewise.finish() == SSE_EXPECTED


def test_sse_parser_line_endings() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\rdata: b\r\rdata: c\r") == ["a\nb"]
    assert p.feed(b"\r") == ["c"]
    # CRLF split across two chunks is one line end, not two.
    q = SSEParser()
    assert q.feed(b"data: x\r") == []
    assert q.feed(b"\ndata: y\r\n\r\n") == ["x\ny"]
    assert p.feed(b"") == []


def test_sse_parser_finish_flushes_unterminated_event() -> None:
    p = SSEParser()
    assert p.feed(b"data: tail") == []
    assert p.finish() == ["tail"]
    assert p.finish() == []
    q = SSEParser()
    assert q.feed(b"data: tail\r") == []
    assert q.finish() == ["tail"]


def test_sse_parser_limits_and_bad_utf8() -> None:
    p = SSEParser(max_buffer=16)
    with pytest.raises(StreamParseError):
        p.feed(b"data: " + b"x" * 32)
    q = SSEParser(max_buffer=16)
    with pytest.raises(StreamParseError):
        q.feed(b"data: " + b"x" * 12 + b"\ndata: " + b"y" * 12 + b"\n")
    r = SSEParser()
    with pytest.raises(StreamParseError):
        r.feed(b"data: \xff\xfe\n\n")


_sse_text = st.text(
    alphabet=st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=20
)


@st.composite
def _sse_streams(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    events = draw(st.lists(st.lists(_sse_text, min_size=1, max_size=3), max_size=6))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    parts: list[str] = []
    for lines in events:
        if draw(st.booleans()):
            parts.append(": comment" + eol)
        if draw(st.booleans()):
            parts.append("event: x" + eol)
        parts.extend(f"data: {line}{eol}" for line in lines)
        parts.append(eol)
    parts.append("data: [DONE]" + eol + eol)
    expected = ["\n".join(lines) for lines in events] + ["[DONE]"]
    return "".join(parts).encode(), expected


@settings(max_examples=200, deadline=None)
@given(stream=_sse_streams(), data=st.data())
def test_sse_parser_random_splits(stream: tuple[bytes, list[str]], data: st.DataObject) -> None:
    raw, expected = stream
    whole = SSEParser()
    assert whole.feed(raw) + whole.finish() == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    split = SSEParser()
    got: list[str] = []
    for piece in pieces:
        got += split.feed(piece)
    assert got + split.finish() == expected


def test_sse_parser_on_produced_events() -> None:
    chunk = {"id": "x", "choices": [{"delta": {"content": "é\n"}}]}
    raw = sse_event(chunk) + SSE_DONE
    assert raw.startswith(b"data: {") and raw.endswith(b"\n\ndata: [DONE]\n\n")
    p = SSEParser()
    payloads = p.feed(raw)
    assert [json.loads(payloads[0]), payloads[1]] == [chunk, "[DONE]"]


# =========================================================================== NDJSON parser


NDJSON_OBJECTS: list[dict[str, Any]] = [
    {"message": {"content": "héllo"}, "done": False},
    {"message": {"content": '{"nested": "json\\n"}'}, "done": False},
    {"done": True, "eval_count": 3},
]


def test_ndjson_parser_whole_and_byte_by_byte() -> None:
    raw = b"".join(ndjson_line(o) for o in NDJSON_OBJECTS)
    whole = NDJSONParser()
    assert whole.feed(raw) + whole.finish() == NDJSON_OBJECTS
    bytewise = NDJSONParser()
    got: list[dict[str, Any]] = []
    for i in range(len(raw)):
        got += bytewise.feed(raw[i : i + 1])
    assert got + bytewise.finish() == NDJSON_OBJECTS


def test_ndjson_parser_blank_lines_crlf_and_tail() -> None:
    p = NDJSONParser()
    assert p.feed(b'\n{"a":1}\r\n\r\n  \n{"b"') == [{"a": 1}]
    assert p.feed(b":2}") == []
    assert p.finish() == [{"b": 2}]
    assert p.finish() == []


def test_ndjson_parser_errors() -> None:
    with pytest.raises(StreamParseError, match="invalid JSON line"):
        NDJSONParser().feed(b"{oops\n")
    with pytest.raises(StreamParseError, match="expected a JSON object per line, got list"):
        NDJSONParser().feed(b"[1]\n")
    with pytest.raises(StreamParseError, match="buffer limit"):
        NDJSONParser(max_buffer=4).feed(b'{"aaaa": 1')


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    objects=st.lists(st.dictionaries(st.text(max_size=8), _json_values, max_size=4), max_size=6),
    crlf=st.booleans(),
    data=st.data(),
)
def test_ndjson_parser_random_splits(
    objects: list[dict[str, Any]], crlf: bool, data: st.DataObject
) -> None:
    eol = "\r\n" if crlf else "\n"
    raw = "".join(json.dumps(o, ensure_ascii=False) + eol for o in objects).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    p = NDJSONParser()
    got: list[dict[str, Any]] = []
    for piece in pieces:
        got += p.feed(piece)
    assert got + p.finish() == objects


# =========================================================================== error builders


def test_error_builders() -> None:
    assert openai_error_body("bad", param="messages") == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    }
    assert openai_error_body("no", error_type="rate_limit_error", code="rate_limited") == {
        "error": {
            "message": "no",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }
    assert ollama_error_body("model not found") == {"error": "model not found"}
    raw = openai_sse_error("upstream died")
    assert raw == (
        b'data: {"error":{"message":"upstream died","type":"api_error",'
        b'"param":null,"code":null}}\n\ndata: [DONE]\n\n'
    )
    p = SSEParser()
    events = p.feed(raw)
    assert json.loads(events[0])["error"]["message"] == "upstream died"
    assert events[1] == "[DONE]"
    assert ollama_ndjson_error("upstream died") == b'{"error":"upstream died"}\n'
    assert NDJSONParser().feed(ollama_ndjson_error("é")) == [{"error": "é"}]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "service_unavailable_error"),
        (418, "invalid_request_error"),
    ],
)
def test_openai_error_type(status: int, kind: str) -> None:
    assert openai_error_type(status) == kind


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "model 'x' not found"}, "model 'x' not found"),
        ({"error": {"message": "Invalid key", "type": "auth"}}, "Invalid key"),
        ({"object": "error", "message": "vLLM says no", "code": 400}, "vLLM says no"),
        ({"detail": "Not Found"}, "Not Found"),
        ("  plain text  ", "plain text"),
        ({"error": {}}, "upstream error"),
        (None, "upstream error"),
    ],
)
def test_upstream_error_message(body: object, message: str) -> None:
    assert upstream_error_message(body) == message


# =========================================================================== validators

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ([], "request body: expected a JSON object, got list", None),
        ({"messages": MSG}, "model: required string", "model"),
        ({"model": 3, "messages": MSG}, "model: expected a string, got int", "model"),
        ({"model": " ", "messages": MSG}, "model: must not be empty", "model"),
        ({"model": "m"}, "messages: must be a non-empty list", "messages"),
        ({"model": "m", "messages": []}, "messages: must be a non-empty list", "messages"),
        (
            {"model": "m", "messages": ["hi"]},
            "messages[0]: expected a message object, got string",
            "messages[0]",
        ),
        (
            {"model": "m", "messages": [{"content": "x"}]},
            "messages[0].role: required string",
            "messages[0].role",
        ),
        (
            {"model": "m", "messages": [{"role": "bot", "content": "x"}]},
            "messages[0].role: expected one of system, developer, user, assistant, tool, function, "
            "got 'bot'",
            "messages[0].role",
        ),
        (
            {"model": "m", "messages": [*MSG, *MSG, {"role": "user", "content": 5}]},
            "messages[2].content: expected a string or a list of content parts, got int",
            "messages[2].content",
        ),
        (
            {"model": "m", "messages": [{"role": "user"}]},
            "messages[0].content: required for user messages",
            "messages[0].content",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant"}]},
            "messages[0].content: required for assistant messages",
            "messages[0].content",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": ["x"]}]},
            "messages[0].content[0]: expected a content part object, got string",
            "messages[0].content[0]",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0].type: required string",
            "messages[0].content[0].type",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}],
            },
            "messages[0].content[0].text: expected a string, got int",
            "messages[0].content[0].text",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].image_url: expected an object with a non-empty url string",
            "messages[0].content[0].image_url",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "content": [{"type": "refusal"}]}]},
            "messages[0].content[0].refusal: expected a string, got null",
            "messages[0].content[0].refusal",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": "x"}]}
                ],
            },
            "messages[0].content[0].input_audio: expected an object, got string",
            "messages[0].content[0].input_audio",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x", "name": 1}]},
            "messages[0].name: expected a string, got int",
            "messages[0].name",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": {}}]},
            "messages[0].tool_calls: expected a list, got object",
            "messages[0].tool_calls",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [1]}]},
            "messages[0].tool_calls[0]: expected an object, got int",
            "messages[0].tool_calls[0]",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
            "messages[0].tool_calls[0].id: required string",
            "messages[0].tool_calls[0].id",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "tool", "function": {}}],
                    }
                ],
            },
            "messages[0].tool_calls[0].type: expected \"function\", got 'tool'",
            "messages[0].tool_calls[0].type",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]},
            "messages[0].tool_calls[0].function: expected an object, got null",
            "messages[0].tool_calls[0].function",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"arguments": "{}"}}],
                    }
                ],
            },
            "messages[0].tool_calls[0].function.name: required string",
            "messages[0].tool_calls[0].function.name",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}
                        ],
                    }
                ],
            },
            "messages[0].tool_calls[0].function.arguments: expected a JSON string, got object",
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "assistant", "function_call": {"arguments": "{}"}}],
            },
            "messages[0].function_call.name: required string",
            "messages[0].function_call.name",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "r"}]},
            "messages[0].tool_call_id: required string for tool messages",
            "messages[0].tool_call_id",
        ),
        (
            {"model": "m", "messages": [{"role": "function", "content": "r"}]},
            "messages[0].name: required string for function messages",
            "messages[0].name",
        ),
        (
            {"model": "m", "messages": MSG, "max_tokens": 0},
            "max_tokens: expected a positive integer, got 0",
            "max_tokens",
        ),
        (
            {"model": "m", "messages": MSG, "max_tokens": "5"},
            "max_tokens: expected a positive integer, got '5'",
            "max_tokens",
        ),
        (
            {"model": "m", "messages": MSG, "max_tokens": True},
            "max_tokens: expected a positive integer, got boolean",
            "max_tokens",
        ),
        (
            {"model": "m", "messages": MSG, "max_completion_tokens": 2.5},
            "max_completion_tokens: expected a positive integer, got 2.5",
            "max_completion_tokens",
        ),
        (
            {"model": "m", "messages": MSG, "temperature": 3},
            "temperature: expected a number between 0 and 2, got 3",
            "temperature",
        ),
        (
            {"model": "m", "messages": MSG, "temperature": float("nan")},
            "temperature: expected a finite number, got nan",
            "temperature",
        ),
        (
            {"model": "m", "messages": MSG, "top_p": "high"},
            "top_p: expected a number between 0 and 1, got 'high'",
            "top_p",
        ),
        (
            {"model": "m", "messages": MSG, "presence_penalty": -2.5},
            "presence_penalty: expected a number between -2 and 2, got -2.5",
            "presence_penalty",
        ),
        (
            {"model": "m", "messages": MSG, "frequency_penalty": False},
            "frequency_penalty: expected a number between -2 and 2, got boolean",
            "frequency_penalty",
        ),
        (
            {"model": "m", "messages": MSG, "seed": 1.5},
            "seed: expected an integer, got 1.5",
            "seed",
        ),
        ({"model": "m", "messages": MSG, "n": 0}, "n: expected a positive integer, got 0", "n"),
        (
            {"model": "m", "messages": MSG, "stop": 5},
            "stop: expected a string or a list of strings, got int",
            "stop",
        ),
        (
            {"model": "m", "messages": MSG, "stop": ["a", 1]},
            "stop[1]: expected a string, got int",
            "stop[1]",
        ),
        ({"model": "m", "messages": MSG, "user": 1}, "user: expected a string, got int", "user"),
        (
            {"model": "m", "messages": MSG, "logit_bias": []},
            "logit_bias: expected an object, got list",
            "logit_bias",
        ),
        (
            {"model": "m", "messages": MSG, "top_k": "1"},
            "top_k: expected an integer, got '1'",
            "top_k",
        ),
        (
            {"model": "m", "messages": MSG, "min_p": 2},
            "min_p: expected a number between 0 and 1, got 2",
            "min_p",
        ),
        (
            {"model": "m", "messages": MSG, "repeat_penalty": "x"},
            "repeat_penalty: expected a number, got 'x'",
            "repeat_penalty",
        ),
        (
            {"model": "m", "messages": MSG, "stream": "yes"},
            "stream: expected a boolean, got string",
            "stream",
        ),
        (
            {"model": "m", "messages": MSG, "stream_options": True},
            "stream_options: expected an object, got boolean",
            "stream_options",
        ),
        (
            {"model": "m", "messages": MSG, "stream_options": {"include_usage": 1}},
            "stream_options.include_usage: expected a boolean, got int",
            "stream_options.include_usage",
        ),
        (
            {"model": "m", "messages": MSG, "tools": {}},
            "tools: expected a list, got object",
            "tools",
        ),
        (
            {"model": "m", "messages": MSG, "tools": ["f"]},
            "tools[0]: expected an object, got string",
            "tools[0]",
        ),
        (
            {"model": "m", "messages": MSG, "tools": [{"function": {"name": "f"}}]},
            "tools[0].type: required string",
            "tools[0].type",
        ),
        (
            {"model": "m", "messages": MSG, "tools": [{"type": "function"}]},
            "tools[0].function: expected an object, got null",
            "tools[0].function",
        ),
        (
            {
                "model": "m",
                "messages": MSG,
                "tools": [{"type": "function", "function": {"name": ""}}],
            },
            "tools[0].function.name: required string",
            "tools[0].function.name",
        ),
        (
            {
                "model": "m",
                "messages": MSG,
                "tools": [{"type": "function", "function": {"name": "f", "description": 1}}],
            },
            "tools[0].function.description: expected a string, got int",
            "tools[0].function.description",
        ),
        (
            {
                "model": "m",
                "messages": MSG,
                "tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}],
            },
            "tools[0].function.parameters: expected an object, got string",
            "tools[0].function.parameters",
        ),
        (
            {"model": "m", "messages": MSG, "tool_choice": "always"},
            'tool_choice: expected "none", "auto", "required" or an object, got \'always\'',
            "tool_choice",
        ),
        (
            {"model": "m", "messages": MSG, "tool_choice": {"type": "function", "function": {}}},
            "tool_choice.function.name: required string",
            "tool_choice.function.name",
        ),
        (
            {"model": "m", "messages": MSG, "parallel_tool_calls": "no"},
            "parallel_tool_calls: expected a boolean, got string",
            "parallel_tool_calls",
        ),
        (
            {"model": "m", "messages": MSG, "response_format": "json"},
            "response_format: expected an object, got string",
            "response_format",
        ),
        (
            {"model": "m", "messages": MSG, "response_format": {"type": "xml"}},
            'response_format.type: expected "text", "json_object" or "json_schema"',
            "response_format.type",
        ),
        (
            {"model": "m", "messages": MSG, "response_format": {"type": "json_schema"}},
            "response_format.json_schema: expected an object, got null",
            "response_format.json_schema",
        ),
        (
            {
                "model": "m",
                "messages": MSG,
                "response_format": {"type": "json_schema", "json_schema": {"name": 1}},
            },
            "response_format.json_schema.name: expected a string, got int",
            "response_format.json_schema.name",
        ),
        (
            {
                "model": "m",
                "messages": MSG,
                "response_format": {"type": "json_schema", "json_schema": {"schema": []}},
            },
            "response_format.json_schema.schema: expected an object, got list",
            "response_format.json_schema.schema",
        ),
        (
            {
                "model": "m",
                "messages": MSG,
                "response_format": {"type": "json_schema", "json_schema": {"strict": "yes"}},
            },
            "response_format.json_schema.strict: expected a boolean, got string",
            "response_format.json_schema.strict",
        ),
        (
            {"model": "m", "messages": MSG, "logprobs": 1},
            "logprobs: expected a boolean, got int",
            "logprobs",
        ),
        (
            {"model": "m", "messages": MSG, "top_logprobs": 21},
            "top_logprobs: expected an integer between 0 and 20, got 21",
            "top_logprobs",
        ),
    ],
)
def test_validate_openai_chat_errors(body: object, message: str, param: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        validate_openai_chat(body)
    assert info.value.message == message
    assert str(info.value) == message
    assert info.value.param == param
    assert isinstance(info.value, TraywireError)


def test_validate_openai_chat_accepts() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "d"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "t"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x/y.png", "detail": "auto"},
                    },
                    {"type": "file", "file": {"file_id": "f"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "r"}]},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": "{}"},
            },
            {"role": "function", "name": "f", "content": "r"},
        ],
        "max_tokens": None,
        "temperature": 0,
        "top_p": 1,
        "stop": None,
        "seed": -1,
        "tools": [WEATHER_TOOL, {"type": "custom", "custom": {"name": "x"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {}}},
        "stream": True,
        "stream_options": {"include_usage": True},
        "some_future_field": {"kept": True},
    }
    assert validate_openai_chat(body) is body
    for choice in ("none", "auto", "required", {"type": "allowed_tools", "allowed_tools": {}}):
        validate_openai_chat({"model": "m", "messages": MSG, "tool_choice": choice})


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ("prompt", "request body: expected a JSON object, got string", None),
        ({"prompt": "x"}, "model: required string", "model"),
        (
            {"model": "m", "prompt": 5},
            "prompt: expected a string, a list of strings, a list of token ids or a list of "
            "token id lists, got int",
            "prompt",
        ),
        ({"model": "m", "prompt": []}, "prompt: must not be an empty list", "prompt"),
        (
            {"model": "m", "prompt": ["a", 1]},
            "prompt: expected a string, a list of strings, a list of token ids or a list of "
            "token id lists, got list",
            "prompt",
        ),
        (
            {"model": "m", "prompt": [[1], []]},
            "prompt: expected a string, a list of strings, a list of token ids or a list of "
            "token id lists, got list",
            "prompt",
        ),
        (
            {"model": "m", "prompt": "p", "suffix": 1},
            "suffix: expected a string, got int",
            "suffix",
        ),
        (
            {"model": "m", "prompt": "p", "max_tokens": -1},
            "max_tokens: expected a positive integer, got -1",
            "max_tokens",
        ),
        (
            {"model": "m", "prompt": "p", "echo": "true"},
            "echo: expected a boolean, got string",
            "echo",
        ),
        (
            {"model": "m", "prompt": "p", "best_of": 0},
            "best_of: expected a positive integer, got 0",
            "best_of",
        ),
        (
            {"model": "m", "prompt": "p", "logprobs": 6},
            "logprobs: expected an integer between 0 and 5, got 6",
            "logprobs",
        ),
        (
            {"model": "m", "prompt": "p", "logprobs": True},
            "logprobs: expected an integer between 0 and 5, got boolean",
            "logprobs",
        ),
        (
            {"model": "m", "prompt": "p", "stream": 1},
            "stream: expected a boolean, got int",
            "stream",
        ),
        (
            {"model": "m", "prompt": "p", "temperature": -0.1},
            "temperature: expected a number between 0 and 2, got -0.1",
            "temperature",
        ),
    ],
)
def test_validate_openai_completion_errors(body: object, message: str, param: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        validate_openai_completion(body)
    assert (info.value.message, info.value.param) == (message, param)


def test_validate_openai_completion_accepts() -> None:
    for prompt in ("p", ["a", "b"], [1, 2], [[1, 2], [3]], None):
        validate_openai_completion(
            {"model": "m", "prompt": prompt, "suffix": "s", "logprobs": 0, "echo": False}
        )


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (None, "request body: expected a JSON object, got null", None),
        ({"input": "x"}, "model: required string", "model"),
        ({"model": "m"}, "input: required: a string or a list of strings", "input"),
        ({"model": "m", "input": ""}, "input: must not be an empty string", "input"),
        ({"model": "m", "input": []}, "input: must not be an empty list", "input"),
        (
            {"model": "m", "input": ["a", 2]},
            "input: expected a string, a list of strings or token id lists",
            "input",
        ),
        (
            {"model": "m", "input": {"text": "a"}},
            "input: expected a string or a list of strings, got object",
            "input",
        ),
        (
            {"model": "m", "input": "a", "encoding_format": "int8"},
            'encoding_format: expected "float" or "base64", got \'int8\'',
            "encoding_format",
        ),
        (
            {"model": "m", "input": "a", "dimensions": 0},
            "dimensions: expected a positive integer, got 0",
            "dimensions",
        ),
        ({"model": "m", "input": "a", "user": 0}, "user: expected a string, got int", "user"),
    ],
)
def test_validate_openai_embeddings_errors(body: object, message: str, param: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        validate_openai_embeddings(body)
    assert (info.value.message, info.value.param) == (message, param)


def test_validate_openai_embeddings_accepts() -> None:
    for inp in ("a", ["a", "b"], [1, 2], [[1], [2, 3]]):
        validate_openai_embeddings({"model": "m", "input": inp, "encoding_format": "base64"})


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ("x", "request body: expected a JSON object, got string", None),
        ({"messages": []}, "model: required string", "model"),
        ({"model": "m", "messages": {}}, "messages: expected a list, got object", "messages"),
        (
            {"model": "m", "messages": [1]},
            "messages[0]: expected a message object, got int",
            "messages[0]",
        ),
        (
            {"model": "m", "messages": [{"content": "x"}]},
            "messages[0].role: required string",
            "messages[0].role",
        ),
        (
            {"model": "m", "messages": [{"role": "developer", "content": "x"}]},
            "messages[0].role: expected one of system, user, assistant, tool, got 'developer'",
            "messages[0].role",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": ["x"]}]},
            "messages[0].content: expected a string, got list",
            "messages[0].content",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "thinking": 1}]},
            "messages[0].thinking: expected a string, got int",
            "messages[0].thinking",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "tool_name": 1}]},
            "messages[0].tool_name: expected a string, got int",
            "messages[0].tool_name",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "images": "abc"}]},
            "messages[0].images: expected a list of base64 strings, got string",
            "messages[0].images",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "images": [b"x".hex(), 3]}]},
            "messages[0].images[1]: expected a string, got int",
            "messages[0].images[1]",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": "f"}]},
            "messages[0].tool_calls: expected a list, got string",
            "messages[0].tool_calls",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [[]]}]},
            "messages[0].tool_calls[0]: expected an object, got list",
            "messages[0].tool_calls[0]",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"name": "f"}]}]},
            "messages[0].tool_calls[0].function: expected an object, got null",
            "messages[0].tool_calls[0].function",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
            "messages[0].tool_calls[0].function.name: required string",
            "messages[0].tool_calls[0].function.name",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
                    }
                ],
            },
            "messages[0].tool_calls[0].function.arguments: expected an object, got string",
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {"model": "m", "tools": [{"function": []}]},
            "tools[0].function: expected an object, got list",
            "tools[0].function",
        ),
        (
            {"model": "m", "format": "xml"},
            "format: expected \"json\" or a JSON schema object, got 'xml'",
            "format",
        ),
        (
            {"model": "m", "format": 1},
            'format: expected "json" or a JSON schema object, got 1',
            "format",
        ),
        ({"model": "m", "think": 1}, "think: expected a boolean or a string, got int", "think"),
        ({"model": "m", "stream": "false"}, "stream: expected a boolean, got string", "stream"),
        (
            {"model": "m", "keep_alive": []},
            "keep_alive: expected a duration string or a number, got list",
            "keep_alive",
        ),
        ({"model": "m", "options": []}, "options: expected an object, got list", "options"),
        (
            {"model": "m", "options": {"num_predict": "10"}},
            "options.num_predict: expected an integer, got '10'",
            "options.num_predict",
        ),
        (
            {"model": "m", "options": {"num_ctx": 1.5}},
            "options.num_ctx: expected an integer, got 1.5",
            "options.num_ctx",
        ),
        (
            {"model": "m", "options": {"temperature": "hot"}},
            "options.temperature: expected a number, got 'hot'",
            "options.temperature",
        ),
        (
            {"model": "m", "options": {"top_p": float("inf")}},
            "options.top_p: expected a finite number, got inf",
            "options.top_p",
        ),
        (
            {"model": "m", "options": {"use_mmap": 1}},
            "options.use_mmap: expected a boolean, got int",
            "options.use_mmap",
        ),
        (
            {"model": "m", "options": {"stop": [1]}},
            "options.stop[0]: expected a string, got int",
            "options.stop[0]",
        ),
    ],
)
def test_validate_ollama_chat_errors(body: object, message: str, param: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        validate_ollama_chat(body)
    assert (info.value.message, info.value.param) == (message, param)


def test_validate_ollama_chat_accepts() -> None:
    validate_ollama_chat({"model": "m"})  # load the model
    validate_ollama_chat({"model": "m", "messages": [], "keep_alive": 0})
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u", "images": [PNG]},
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
            {"role": "tool", "tool_name": "f", "content": "r"},
        ],
        "tools": [{"function": {"name": "f"}}],
        "format": {"type": "object"},
        "think": "high",
        "options": {"num_predict": -1, "temperature": 0.5, "stop": "x", "custom_opt": [1]},
        "keep_alive": "10m",
        "stream": False,
    }
    assert validate_ollama_chat(body) is body
    validate_ollama_chat({"model": "m", "format": ""})


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"prompt": "p"}, "model: required string", "model"),
        ({"model": "m", "prompt": 1}, "prompt: expected a string, got int", "prompt"),
        ({"model": "m", "suffix": []}, "suffix: expected a string, got list", "suffix"),
        ({"model": "m", "system": 1}, "system: expected a string, got int", "system"),
        ({"model": "m", "template": 1}, "template: expected a string, got int", "template"),
        ({"model": "m", "raw": "yes"}, "raw: expected a boolean, got string", "raw"),
        ({"model": "m", "images": [1]}, "images[0]: expected a string, got int", "images[0]"),
        ({"model": "m", "context": [1, "2"]}, "context: expected a list of integers", "context"),
        (
            {"model": "m", "format": ["json"]},
            'format: expected "json" or a JSON schema object, got list',
            "format",
        ),
        (
            {"model": "m", "options": {"seed": "1"}},
            "options.seed: expected an integer, got '1'",
            "options.seed",
        ),
    ],
)
def test_validate_ollama_generate_errors(body: object, message: str, param: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        validate_ollama_generate(body)
    assert (info.value.message, info.value.param) == (message, param)


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"input": "x"}, "model: required string", "model"),
        ({"model": "m"}, "input: required: a string or a list of strings", "input"),
        ({"model": "m", "input": []}, "input: must not be an empty list", "input"),
        (
            {"model": "m", "input": 5},
            "input: expected a string or a list of strings, got int",
            "input",
        ),
        ({"model": "m", "input": ["a", None]}, "input[1]: expected a string, got null", "input[1]"),
        (
            {"model": "m", "input": "a", "truncate": "no"},
            "truncate: expected a boolean, got string",
            "truncate",
        ),
        (
            {"model": "m", "input": "a", "dimensions": -3},
            "dimensions: expected a positive integer, got -3",
            "dimensions",
        ),
        (
            {"model": "m", "input": "a", "options": {"num_thread": "4"}},
            "options.num_thread: expected an integer, got '4'",
            "options.num_thread",
        ),
    ],
)
def test_validate_ollama_embed_errors(body: object, message: str, param: str | None) -> None:
    with pytest.raises(BadRequest) as info:
        validate_ollama_embed(body)
    assert (info.value.message, info.value.param) == (message, param)


def test_validate_ollama_generate_and_embed_accept() -> None:
    validate_ollama_generate(
        {
            "model": "m",
            "prompt": "p",
            "suffix": "s",
            "system": "y",
            "raw": False,
            "images": [PNG],
            "context": [1, 2],
            "format": "json",
            "keep_alive": 1.5,
        }
    )
    validate_ollama_embed({"model": "m", "input": "a"})
    validate_ollama_embed({"model": "m", "input": ["a", ""], "truncate": False})


# =========================================================================== real clients


def _openai_client(handler: Callable[[httpx.Request], httpx.Response]) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="test",
        base_url="http://proxy.test/v1",
        http_client=httpx.Client(  # type: ignore[arg-type,unused-ignore]
            transport=httpx.MockTransport(handler)
        ),
        max_retries=0,
    )


def _ollama_client(handler: Callable[[httpx.Request], httpx.Response]) -> ollama.Client:
    return ollama.Client(host="http://proxy.test", transport=httpx.MockTransport(handler))


def test_openai_client_reads_translated_chat_stream() -> None:
    """An Ollama NDJSON stream, translated, read by the real openai client."""
    upstream = [
        _ochat("Let me check."),
        _ochat(
            "", tool_calls=[{"function": {"name": "get_weather", "arguments": {"city": "Lima"}}}]
        ),
        {**OLLAMA_DONE, "prompt_eval_count": 10, "eval_count": 5},
    ]
    raw_upstream = b"".join(ndjson_line(x) for x in upstream)

    def handler(request: httpx.Request) -> httpx.Response:
        body = validate_openai_chat(json.loads(request.content))
        ollama_body = openai_chat_request_to_ollama(body, "llama3.2")
        assert ollama_body["stream"] is True
        parser = NDJSONParser()
        conv = OllamaToOpenAIStream(
            "chat",
            model=body["model"],
            response_id="chatcmpl-live",
            created=1700000000,
            include_usage=openai_include_usage(body),
        )
        out = b""
        for i in range(0, len(raw_upstream), 7):  # odd network chunking
            for obj in parser.feed(raw_upstream[i : i + 7]):
                out += b"".join(sse_event(c) for c in conv.feed(obj))
        out += b"".join(sse_event(c) for c in conv.finish()) + SSE_DONE
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    client = _openai_client(handler)
    stream = client.chat.completions.create(  # type: ignore[call-overload]
        model="my-model",
        messages=[{"role": "user", "content": "Weather in Lima?"}],
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments or "") == {"city": "Lima"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15
    assert all(c.model == "my-model" and c.id == "chatcmpl-live" for c in chunks)


def test_openai_client_reads_translated_chat_and_embeddings() -> None:
    vectors = [[0.25, -1.5], [3.0, 0.125]]

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/embeddings"):
            body = validate_openai_embeddings(body)
            assert openai_embeddings_request_to_ollama(body, "nomic")["input"] == ["a", "b"]
            upstream = {"model": "nomic", "embeddings": vectors, "prompt_eval_count": 2}
            return httpx.Response(
                200,
                json=ollama_embed_response_to_openai(
                    upstream,
                    model=body["model"],
                    encoding_format=body.get("encoding_format") or "float",
                ),
            )
        body = validate_openai_chat(body)
        upstream = {
            "model": "x",
            "created_at": CREATED_AT,
            "done": True,
            "done_reason": "stop",
            "message": {"role": "assistant", "content": "Bonjour"},
            "prompt_eval_count": 3,
            "eval_count": 1,
        }
        return httpx.Response(
            200,
            json=ollama_response_to_openai_chat(
                upstream, model=body["model"], response_id="chatcmpl-q", created=1
            ),
        )

    client = _openai_client(handler)
    chat = client.chat.completions.create(model="fr", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == "Bonjour"
    assert chat.usage is not None and chat.usage.completion_tokens == 1
    emb = client.embeddings.create(model="emb", input=["a", "b"])  # client asks for base64
    assert [d.embedding for d in emb.data] == vectors
    emb_f = client.embeddings.create(model="emb", input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in emb_f.data] == vectors


def test_openai_client_reads_translated_completion_stream() -> None:
    upstream = [
        {"response": "4", "done": False},
        {"response": "2", "done": False},
        {"response": "", "done": True, "done_reason": "length", "eval_count": 2},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        body = validate_openai_completion(json.loads(request.content))
        conv = OllamaToOpenAIStream(
            "completion", model=body["model"], response_id="cmpl-z", created=2
        )
        out = b"".join(sse_event(c) for u in upstream for c in conv.feed(u)) + SSE_DONE
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    client = _openai_client(handler)
    chunks = list(client.completions.create(model="c", prompt="6*7=", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "42"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_ollama_client_reads_translated_streams() -> None:
    """An OpenAI SSE stream, translated, read by the real ollama client."""
    sse = (
        b"".join(
            sse_event(c)
            for c in [
                _chunk({"role": "assistant", "content": ""}),
                _chunk({"content": "Hi"}),
                _chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":'},
                            }
                        ]
                    }
                ),
                _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
                _chunk({}, "tool_calls"),
                _chunk(
                    usage={"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
                    choices=False,
                ),
            ]
        )
        + SSE_DONE
    )

    def handler(request: httpx.Request) -> httpx.Response:
        body = validate_ollama_chat(json.loads(request.content))
        openai_body = ollama_chat_request_to_openai(body, "gpt-4o-mini")
        assert openai_body["stream"] is True
        parser = SSEParser()
        conv = OpenAIToOllamaStream("chat", model=body["model"], created_at=CREATED_AT)
        out = b""
        for i in range(0, len(sse), 5):
            for payload in parser.feed(sse[i : i + 5]):
                if payload == "[DONE]":
                    continue
                out += b"".join(ndjson_line(x) for x in conv.feed(json.loads(payload)))
        out += b"".join(ndjson_line(x) for x in conv.finish())
        return httpx.Response(200, headers={"content-type": "application/x-ndjson"}, content=out)

    client = _ollama_client(handler)
    parts = list(
        client.chat(
            model="alias",
            messages=[{"role": "user", "content": "?"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    assert "".join(p.message.content or "" for p in parts) == "Hi"
    calls = [tc for p in parts for tc in p.message.tool_calls or []]
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Oslo"}
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert parts[-1].prompt_eval_count == 8 and parts[-1].eval_count == 4
    assert all(p.model == "alias" for p in parts)


def test_ollama_client_reads_translated_generate_and_embed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/api/embed":
            body = validate_ollama_embed(body)
            up = ollama_embed_request_to_openai(body, "text-embedding-3-small")
            assert up["encoding_format"] == "float"
            resp = {
                "object": "list",
                "model": "t",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
            return httpx.Response(
                200, json=openai_embeddings_response_to_ollama(resp, model=body["model"])
            )
        body = validate_ollama_generate(body)
        assert ollama_generate_route(body) == "chat"
        up = ollama_generate_request_to_openai_chat(body, "gpt")
        assert up["messages"][0] == {"role": "system", "content": "terse"}
        resp = {
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Blue."},
                }
            ],
            "usage": {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8},
        }
        return httpx.Response(
            200,
            json=openai_response_to_ollama_generate(
                resp, model=body["model"], created_at=CREATED_AT, total_duration=1000
            ),
        )

    client = _ollama_client(handler)
    gen = client.generate(model="alias", prompt="Sky colour?", system="terse")
    assert gen.response == "Blue." and gen.done and gen.eval_count == 2
    assert gen.total_duration == 1000
    emb = client.embed(model="emb", input="x")
    assert [list(v) for v in emb.embeddings] == [[0.5, 0.25]]
    assert emb.prompt_eval_count == 1


# --------------------------------------------------------------------------- SSE pass-through


def test_sse_passthrough_keeps_the_backends_events_and_renames_the_model() -> None:
    from traywire.proxy.relay import SSEPassthrough

    relay = SSEPassthrough("asked-for")
    same = '{"id": "x",  "model": "asked-for", "choices": [{"delta": {"content": "hi"}}]}'
    other = '{"id":"y","model":"upstream-name","choices":[{"delta":{"content":"yo"}}]}'
    cut = b"data: " + other.encode()
    out = relay.feed(b"data: " + same.encode() + b"\n\n" + cut[:20])
    # nothing to change: the event goes out as the backend wrote it, spacing and all
    assert out == b"data: " + same.encode() + b"\n\n"
    out = relay.feed(cut[20:] + b"\n\n")
    assert json.loads(out.removeprefix(b"data: ")) == {
        **json.loads(other),
        "model": "asked-for",
    }
    # an event split over several data lines is joined into one line
    out = relay.feed(b'data: {"id": "z",\ndata: "model": "asked-for", "choices": []}\n\n')
    assert out.count(b"\n") == 2 and json.loads(out.removeprefix(b"data: "))["id"] == "z"
    assert relay.feed(b"data: [DONE]\n\n") == b"" and relay.complete
