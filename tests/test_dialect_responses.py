"""Tests of the OpenAI Responses client dialect (traywire.proxy.dialects.responses_api).

Requests: every mapping to the OpenAI chat shape, field by field, and every
refusal naming its param. Answers and streams: every produced object is
validated against the official ``openai`` SDK's pydantic types, and the SDK's
own client reads them over a mock HTTP transport (``responses.create``,
``responses.stream`` accumulating the final response), which proves real
clients accept them.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

import openai
import openai._base_client as _openai_base
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from traywire.core.request import BadRequest, parse
from traywire.proxy.dialects import UpstreamError
from traywire.proxy.dialects.responses_api import (
    ResponseStream,
    error_body,
    parse_responses,
    response_from_openai,
)
from traywire.types import RouteRequest

# the HTTP package the SDK is built on (httpx2 in current releases, httpx before)
hx: Any = getattr(_openai_base, "httpx2", None) or getattr(_openai_base, "httpx")  # noqa: B009

EVENT = TypeAdapter(ResponseStreamEvent)
DATA_URL = "data:image/png;base64,iVBORw0KGgo"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
WEATHER_CHAT = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER["parameters"],
        "strict": True,
    },
}


def body(**kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"model": "gpt-5", "input": "Hello"}
    b.update(kw)
    return b


def chat(b: dict[str, Any]) -> dict[str, Any]:
    out, _route = parse_responses(b)
    return out


# =========================================================================== requests


def test_string_input() -> None:
    out, route = parse_responses(body())
    assert out == {
        "model": "gpt-5",
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": False,
    }
    assert route == RouteRequest("gpt-5", "Hello", "Hello", None, 1, "chat")


def test_instructions_and_sampling() -> None:
    out, route = parse_responses(
        body(
            instructions="Be brief.",
            max_output_tokens=300,
            temperature=0.3,
            top_p=0.8,
            stream=True,
            store=True,
            metadata={"k": "v"},
            reasoning={"effort": "low", "summary": "auto"},
            include=["reasoning.encrypted_content"],
            prompt_cache_key="abc",
            truncation="auto",
            service_tier="auto",
            user="me",
            stream_options={"include_obfuscation": False},
        )
    )
    assert out == {
        "model": "gpt-5",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 300,
        "temperature": 0.3,
        "top_p": 0.8,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert route.max_tokens == 300 and route.messages == 2
    assert route.prompt == "Be brief.\nHello"


def test_message_items() -> None:
    items = [
        {"role": "developer", "content": "Dev rules"},
        {"role": "system", "content": [{"type": "input_text", "text": "Sys"}]},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is"},
                {"type": "input_text", "text": "this?"},
                {"type": "input_image", "image_url": DATA_URL, "detail": "low"},
                {"type": "input_image", "image_url": "https://x/cat.png", "detail": "auto"},
            ],
        },
        {
            "type": "message",
            "id": "msg_old",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "A cat.", "annotations": []},
                {"type": "refusal", "refusal": "No more."},
            ],
        },
        {"role": "user", "content": "Thanks"},
    ]
    out, route = parse_responses(body(input=items))
    assert out["messages"] == [
        {"role": "system", "content": "Dev rules"},
        {"role": "system", "content": "Sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is\nthis?"},
                {"type": "image_url", "image_url": {"url": DATA_URL, "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "auto"}},
            ],
        },
        {"role": "assistant", "content": "A cat.\nNo more."},
        {"role": "user", "content": "Thanks"},
    ]
    assert route.images == 2
    assert route.last_user == "Thanks"
    assert route.messages == 5


CODEX_LIKE = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix it"}]},
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "plan"}],
        "encrypted_content": "gAAA",
    },
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Looking."}],
    },
    {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_a",
        "name": "shell",
        "arguments": '{"command":["ls"]}',
    },
    {
        "type": "function_call",
        "call_id": "call_b",
        "name": "shell",
        "arguments": '{"command":["pwd"]}',
    },
    {"type": "function_call_output", "call_id": "call_a", "output": "a.py"},
    {
        "type": "function_call_output",
        "call_id": "call_b",
        "output": [{"type": "input_text", "text": "/src"}],
    },
    {"type": "function_call", "call_id": "call_c", "name": "shell", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_c", "output": "ok"},
    {  # unknown here: skipped
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": "x"},
    },
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Go on"}]},
]


def test_function_calls_and_outputs() -> None:
    out, route = parse_responses(body(input=CODEX_LIKE))
    assert out["messages"] == [
        {"role": "user", "content": "Fix it"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "shell", "arguments": '{"command":["ls"]}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "shell", "arguments": '{"command":["pwd"]}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "a.py"},
        {"role": "tool", "tool_call_id": "call_b", "content": "/src"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_c",
                    "type": "function",
                    "function": {"name": "shell", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": "ok"},
        {"role": "user", "content": "Go on"},
    ]
    assert route.last_user == "Go on"
    assert "plan" not in route.prompt  # reasoning is skipped
    parse("openai", "chat", copy.deepcopy(out))  # a valid chat body


def test_function_call_output_images_follow_as_user_turn() -> None:
    items = [
        {"role": "user", "content": "Screenshot?"},
        {"type": "function_call", "call_id": "c", "name": "shot", "arguments": "{}"},
        {
            "type": "function_call_output",
            "call_id": "c",
            "output": [
                {"type": "input_text", "text": "here"},
                {"type": "input_image", "image_url": DATA_URL, "detail": "auto"},
            ],
        },
    ]
    out, route = parse_responses(body(input=items))
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "c", "content": "here"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": DATA_URL, "detail": "auto"}}],
        },
    ]
    assert route.images == 1


def test_tools_and_tool_choice() -> None:
    loose = {"type": "function", "name": "noop", "parameters": None, "strict": False}
    out, route = parse_responses(body(tools=[WEATHER, loose], parallel_tool_calls=False))
    assert out["tools"] == [
        WEATHER_CHAT,
        {
            "type": "function",
            "function": {
                "name": "noop",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            },
        },
    ]
    assert out["parallel_tool_calls"] is False
    assert route.tools is True


@pytest.mark.parametrize(
    ("choice", "expected", "tools_on"),
    [
        ("auto", "auto", True),
        ("required", "required", True),
        ("none", "none", False),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
            True,
        ),
    ],
)
def test_tool_choice(choice: object, expected: object, tools_on: bool) -> None:
    out, route = parse_responses(body(tools=[WEATHER], tool_choice=choice))
    assert out["tool_choice"] == expected
    assert route.tools is tools_on


def test_allowed_tools_narrow_the_list() -> None:
    other = {**WEATHER, "name": "other"}
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "get_weather"}],
    }
    out, route = parse_responses(body(tools=[WEATHER, other], tool_choice=choice))
    assert out["tools"] == [WEATHER_CHAT]
    assert out["tool_choice"] == "required"
    assert route.tools is True
    none_left = {**choice, "tools": [{"type": "function", "name": "missing"}]}
    out, route = parse_responses(body(tools=[WEATHER], tool_choice=none_left))
    assert "tools" not in out and "tool_choice" not in out and route.tools is False


def test_tool_choice_without_tools() -> None:
    out, route = parse_responses(body(tool_choice="auto"))
    assert "tool_choice" not in out and route.tools is False


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {
                "type": "json_schema",
                "name": "answer",
                "schema": {"type": "object"},
                "strict": True,
                "description": "An answer",
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": {"type": "object"},
                    "strict": True,
                    "description": "An answer",
                },
            },
        ),
        (
            {"type": "json_schema", "name": "a", "schema": {"type": "object"}},
            {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
        ),
    ],
)
def test_text_format(fmt: dict[str, Any], expected: dict[str, Any] | None) -> None:
    out, route = parse_responses(body(text={"format": fmt, "verbosity": "low"}))
    assert out.get("response_format") == expected
    assert route.structured is (expected is not None)


def test_store_is_accepted_and_ignored() -> None:
    for store in (True, False, None):
        assert chat(body(store=store)) == chat(body())


def test_sdk_shaped_items_are_accepted() -> None:
    """Items exactly as the SDK's request types define them (strict TypedDicts) parse."""
    from openai.types.responses import response_create_params

    items = [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look"},
                {"type": "input_image", "image_url": DATA_URL, "detail": "auto"},
            ],
        },
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Calling", "annotations": []}],
        },
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]
    b = body(input=items, tools=[WEATHER], instructions="x", store=False, tool_choice="auto")
    TypeAdapter(response_create_params.ResponseCreateParamsNonStreaming).validate_python(b)
    out, route = parse_responses(b)
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool"]
    assert route.images == 1


# --------------------------------------------------------------------------- refusals

BAD: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("not an object", lambda b: ["hi"], ""),
    ("model missing", lambda b: b.pop("model"), "model"),
    ("input missing", lambda b: b.pop("input"), "input"),
    ("input empty list", lambda b: b.update(input=[]), "input"),
    ("input number", lambda b: b.update(input=3), "input"),
    (
        "input only reasoning",
        lambda b: b.update(input=[{"type": "reasoning", "id": "r", "summary": []}]),
        "input",
    ),
    ("item not object", lambda b: b.update(input=["hi"]), "input[0]"),
    ("item without type", lambda b: b.update(input=[{"content": "x"}]), "input[0].type"),
    ("bad role", lambda b: b.update(input=[{"role": "tool", "content": "x"}]), "input[0].role"),
    (
        "content number",
        lambda b: b.update(input=[{"role": "user", "content": 1}]),
        "input[0].content",
    ),
    (
        "part unknown",
        lambda b: b.update(input=[{"role": "user", "content": [{"type": "input_audio"}]}]),
        "input[0].content[0].type",
    ),
    (
        "text not string",
        lambda b: b.update(
            input=[{"role": "user", "content": [{"type": "input_text", "text": 1}]}]
        ),
        "input[0].content[0].text",
    ),
    (
        "image by file id",
        lambda b: b.update(
            input=[
                {
                    "role": "user",
                    "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}],
                }
            ]
        ),
        "input[0].content[0].file_id",
    ),
    (
        "image without url",
        lambda b: b.update(
            input=[{"role": "user", "content": [{"type": "input_image", "detail": "auto"}]}]
        ),
        "input[0].content[0].image_url",
    ),
    (
        "input file",
        lambda b: b.update(
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_file", "file_data": "data:application/pdf;base64,JVB"}
                    ],
                }
            ]
        ),
        "input[0].content[0]",
    ),
    (
        "image in assistant history",
        lambda b: b.update(
            input=[
                {"role": "assistant", "content": [{"type": "input_image", "image_url": DATA_URL}]}
            ]
        ),
        "input[0].content[0].type",
    ),
    (
        "function call without call_id",
        lambda b: b.update(input=[{"type": "function_call", "name": "f", "arguments": "{}"}]),
        "input[0].call_id",
    ),
    (
        "function call arguments object",
        lambda b: b.update(
            input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]
        ),
        "input[0].arguments",
    ),
    (
        "function call without name",
        lambda b: b.update(input=[{"type": "function_call", "call_id": "c", "arguments": "{}"}]),
        "input[0].name",
    ),
    (
        "output without call_id",
        lambda b: b.update(input=[{"type": "function_call_output", "output": "x"}]),
        "input[0].call_id",
    ),
    (
        "output missing",
        lambda b: b.update(input=[{"type": "function_call_output", "call_id": "c"}]),
        "input[0].output",
    ),
    (
        "item reference",
        lambda b: b.update(input=[{"type": "item_reference", "id": "msg_1"}]),
        "input[0]",
    ),
    ("instructions list", lambda b: b.update(instructions=[]), "instructions"),
    (
        "previous_response_id",
        lambda b: b.update(previous_response_id="resp_1"),
        "previous_response_id",
    ),
    ("conversation", lambda b: b.update(conversation="conv_1"), "conversation"),
    ("prompt", lambda b: b.update(prompt={"id": "pmpt_1"}), "prompt"),
    ("background", lambda b: b.update(background=True), "background"),
    ("store string", lambda b: b.update(store="yes"), "store"),
    ("tools object", lambda b: b.update(tools={}), "tools"),
    ("tool without a type", lambda b: b.update(tools=[{"name": "f"}]), "tools[0].type"),
    (
        "chat-shaped tool",
        lambda b: b.update(tools=[{"type": "function", "function": {"name": "f"}}]),
        "tools[0].name",
    ),
    (
        "tool parameters list",
        lambda b: b.update(tools=[{"type": "function", "name": "f", "parameters": []}]),
        "tools[0].parameters",
    ),
    (
        "tool strict string",
        lambda b: b.update(tools=[{"type": "function", "name": "f", "strict": "y"}]),
        "tools[0].strict",
    ),
    ("tool_choice word", lambda b: b.update(tool_choice="any"), "tool_choice"),
    ("tool_choice number", lambda b: b.update(tool_choice=1), "tool_choice"),
    (
        "tool_choice hosted",
        lambda b: b.update(tool_choice={"type": "web_search_preview"}),
        "tool_choice.type",
    ),
    (
        "tool_choice unknown function",
        lambda b: b.update(tools=[WEATHER], tool_choice={"type": "function", "name": "nope"}),
        "tool_choice.name",
    ),
    (
        "allowed_tools mode",
        lambda b: b.update(tool_choice={"type": "allowed_tools", "mode": "none", "tools": []}),
        "tool_choice.mode",
    ),
    (
        "allowed_tools hosted",
        lambda b: b.update(
            tool_choice={"type": "allowed_tools", "mode": "auto", "tools": [{"type": "web_search"}]}
        ),
        "tool_choice.tools[0]",
    ),
    ("max_output_tokens zero", lambda b: b.update(max_output_tokens=0), "max_output_tokens"),
    ("temperature high", lambda b: b.update(temperature=3), "temperature"),
    ("top_p high", lambda b: b.update(top_p=1.5), "top_p"),
    ("stream string", lambda b: b.update(stream="yes"), "stream"),
    ("parallel string", lambda b: b.update(parallel_tool_calls="no"), "parallel_tool_calls"),
    ("text string", lambda b: b.update(text="json"), "text"),
    ("format type", lambda b: b.update(text={"format": {"type": "yaml"}}), "text.format.type"),
    (
        "format without name",
        lambda b: b.update(text={"format": {"type": "json_schema", "schema": {}}}),
        "text.format.name",
    ),
    (
        "format schema string",
        lambda b: b.update(text={"format": {"type": "json_schema", "name": "a", "schema": "x"}}),
        "text.format.schema",
    ),
    ("reasoning string", lambda b: b.update(reasoning="high"), "reasoning"),
]


@pytest.mark.parametrize(("case", "mutate", "param"), BAD, ids=[c[0] for c in BAD])
def test_refusals_name_their_param(
    case: str, mutate: Callable[[dict[str, Any]], object], param: str
) -> None:
    b = body()
    result = mutate(b)
    target: object = result if isinstance(result, list) else b
    with pytest.raises(BadRequest) as exc:
        parse_responses(target)
    assert exc.value.param == (param or None), exc.value.message
    if param:
        assert exc.value.message.startswith(f"{param}: ")


def test_refusals_say_why() -> None:
    with pytest.raises(BadRequest, match="keeps no conversation state"):
        parse_responses(body(previous_response_id="resp_1"))
    with pytest.raises(BadRequest, match="names a built-in tool"):
        parse_responses(body(tool_choice={"type": "web_search"}))


@pytest.mark.parametrize(
    ("status", "etype"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (404, "not_found_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "service_unavailable_error"),
    ],
)
def test_error_body(status: int, etype: str) -> None:
    assert error_body(status, "nope", param="input") == {
        "error": {"message": "nope", "type": etype, "param": "input", "code": None}
    }


# =========================================================================== answers


def completion(
    content: str | None = "Hi!",
    *,
    calls: Iterable[tuple[str, str, str]] = (),
    finish: str | None = "stop",
    usage: tuple[int, int] | None = (12, 3),
    reasoning: str | None = None,
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
        "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
    }
    if usage is not None:
        out["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return out


def test_response_from_openai_text() -> None:
    r = response_from_openai(
        completion(), model="gpt-5", response_id="resp_abc", created_at=1700000000
    )
    parsed = Response.model_validate(r)
    assert parsed.output_text == "Hi!"
    assert r["status"] == "completed" and r["incomplete_details"] is None
    assert r["output"] == [
        {
            "type": "message",
            "id": "msg_abc",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hi!", "annotations": [], "logprobs": []}],
        }
    ]
    assert r["usage"]["input_tokens"] == 12 and r["usage"]["output_tokens"] == 3
    assert r["usage"]["total_tokens"] == 15
    assert r["object"] == "response" and r["model"] == "gpt-5" and r["store"] is False
    assert r["tools"] == [] and r["tool_choice"] == "auto" and r["parallel_tool_calls"] is True


def test_response_echoes_the_request() -> None:
    req = body(
        instructions="Be brief.",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0.2,
        top_p=0.5,
        max_output_tokens=50,
        parallel_tool_calls=False,
        text={"format": {"type": "json_object"}},
        metadata={"k": "v"},
    )
    r = response_from_openai(
        completion("{}"), model="gpt-5", response_id="resp_1", created_at=1, request=req
    )
    Response.model_validate(r)
    assert r["instructions"] == "Be brief."
    assert r["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": WEATHER["parameters"],
            "strict": True,
        }
    ]
    assert (r["tool_choice"], r["temperature"], r["top_p"]) == ("required", 0.2, 0.5)
    assert (r["max_output_tokens"], r["parallel_tool_calls"]) == (50, False)
    assert r["text"] == {"format": {"type": "json_object"}} and r["metadata"] == {"k": "v"}


def test_function_calls_in_the_answer() -> None:
    resp = completion(
        None,
        calls=[("call_1", "get_weather", '{"city":"Lima"}'), ("", "noop", "")],
        finish="tool_calls",
    )
    r = response_from_openai(resp, model="m", response_id="resp_x", created_at=1)
    Response.model_validate(r)
    assert r["output"] == [
        {
            "type": "function_call",
            "id": "fc_x_0",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Lima"}',
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_x_1",
            "call_id": "call_x_1",
            "name": "noop",
            "arguments": "",
            "status": "completed",
        },
    ]


@pytest.mark.parametrize(
    ("finish", "status", "reason"),
    [
        ("stop", "completed", None),
        ("length", "incomplete", "max_output_tokens"),
        ("content_filter", "incomplete", "content_filter"),
        (None, "completed", None),
    ],
)
def test_status_and_incomplete_details(finish: str | None, status: str, reason: str | None) -> None:
    r = response_from_openai(
        completion(finish=finish), model="m", response_id="resp_1", created_at=1
    )
    Response.model_validate(r)
    assert r["status"] == status
    assert r["incomplete_details"] == ({"reason": reason} if reason else None)
    assert r["output"][0]["status"] == status


def test_reasoning_item() -> None:
    r = response_from_openai(
        completion("42", reasoning="Six times seven."),
        model="m",
        response_id="resp_1",
        created_at=1,
    )
    Response.model_validate(r)
    assert r["output"][0] == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "Six times seven."}],
        "status": "completed",
    }
    assert r["output"][1]["type"] == "message"


def test_empty_and_garbage_upstream() -> None:
    r = response_from_openai(completion(None, usage=None), model="m", response_id="r", created_at=1)
    Response.model_validate(r)
    assert r["output"][0]["content"][0]["text"] == ""
    Response.model_validate(
        response_from_openai({"choices": 1}, model="m", response_id="r", created_at=1)
    )


# =========================================================================== streams


def chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: tuple[int, int] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "up",
        "choices": []
        if delta is None and finish is None
        else [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
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


def events(raw: bytes) -> list[dict[str, Any]]:
    """SSE bytes -> event data objects, checking framing, names, sequence numbers and types."""
    out = []
    for block in raw.decode().split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[6:])
        assert data["type"] == name_line[7:]
        EVENT.validate_python(data)
        out.append(data)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


def run(s: ResponseStream, chunks: Iterable[dict[str, Any]], *, finish: bool = True) -> bytes:
    raw = b"".join(s.feed(c) for c in chunks)
    return raw + (s.finish() if finish else b"")


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
    s = ResponseStream(model="gpt-5", response_id="resp_1", created_at=1700000000)
    evs = events(run(s, TEXT_AND_TOOLS, finish=False))
    assert s.done and s.finished and (s.tokens_in, s.tokens_out) == (20, 9)
    assert s.finish() == b""
    assert [e["type"] for e in evs] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = evs[0]["response"]
    assert (
        created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    )
    assert evs[2]["item"] == {
        "type": "message",
        "id": "msg_1",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    assert evs[3] | {"sequence_number": 0} == {
        "type": "response.content_part.added",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
        "sequence_number": 0,
    }
    assert evs[6]["text"] == "Let me check."
    assert evs[9]["item"] == {
        "type": "function_call",
        "id": "fc_1_0",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "",
        "status": "in_progress",
    }
    assert evs[10]["output_index"] == 1 and evs[10]["item_id"] == "fc_1_0"
    assert evs[12]["output_index"] == 2
    assert evs[14]["arguments"] == '{"city": "Lima"}' and evs[14]["output_index"] == 1
    final = Response.model_validate(evs[-1]["response"])
    assert final.status == "completed"
    assert [o.type for o in final.output] == ["message", "function_call", "function_call"]
    assert final.usage is not None and final.usage.total_tokens == 29


def test_stream_waits_for_usage_then_finish() -> None:
    s = ResponseStream(model="m", response_id="resp_1", created_at=1)
    head = run(s, [chunk({"content": "Hi"}), chunk(finish="stop")], finish=False)
    assert not s.done and s.finished
    assert events(head)[-1]["type"] == "response.output_text.delta"
    evs = events(head + s.finish())
    assert [e["type"] for e in evs[-4:]] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert evs[-1]["response"]["usage"]["total_tokens"] == 0  # upstream sent no usage


def test_empty_stream() -> None:
    evs = events(ResponseStream(model="m", response_id="resp_1", created_at=1).finish())
    assert [e["type"] for e in evs] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert evs[-1]["response"]["output"] == []


def test_stream_length_is_incomplete() -> None:
    s = ResponseStream(model="m", response_id="resp_1", created_at=1)
    evs = events(
        run(s, [chunk({"content": "Hi"}), chunk(finish="length", usage=(3, 1))], finish=False)
    )
    assert evs[-1]["type"] == "response.incomplete"
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    done_item = next(e for e in evs if e["type"] == "response.output_item.done")
    assert done_item["item"]["status"] == "incomplete"


def test_stream_reasoning_item() -> None:
    chunks = [
        chunk({"role": "assistant", "reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing"}),
        chunk({"content": "Done"}),
        chunk(finish="stop", usage=(1, 2)),
    ]
    evs = events(run(ResponseStream(model="m", response_id="resp_1", created_at=1), chunks))
    types = [e["type"] for e in evs]
    assert types[2:9] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert evs[6]["text"] == "Thinking"
    assert evs[8]["item"]["content"] == [{"type": "reasoning_text", "text": "Thinking"}]
    assert evs[9]["item"]["id"] == "msg_1" and evs[9]["output_index"] == 1


def test_stream_text_after_tool_call() -> None:
    chunks = [
        chunk(tool_delta(0, "c", "f", "{}")),
        chunk({"content": "after"}),
        chunk(finish="stop", usage=(1, 1)),
    ]
    evs = events(run(ResponseStream(model="m", response_id="resp_1", created_at=1), chunks))
    added = [e["item"]["type"] for e in evs if e["type"] == "response.output_item.added"]
    assert added == ["function_call", "message"]
    final = evs[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["function_call", "message"]


def test_stream_error_is_response_failed() -> None:
    s = ResponseStream(model="m", response_id="resp_1", created_at=1)
    raw = s.feed(chunk({"content": "Hi"})) + s.error("backend went away")
    assert s.done and s.finish() == b"" and s.error("again") == b""
    evs = events(raw)
    assert [e["type"] for e in evs[-2:]] == ["error", "response.failed"]
    assert evs[-2] | {"sequence_number": 0} == {
        "type": "error",
        "code": "server_error",
        "message": "backend went away",
        "param": None,
        "sequence_number": 0,
    }
    failed = Response.model_validate(evs[-1]["response"])
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.message == "backend went away"
    assert failed.output[0].type == "message" and failed.output[0].status == "incomplete"


def test_error_before_anything_still_starts_the_response() -> None:
    evs = events(ResponseStream(model="m", response_id="resp_1", created_at=1).error("x"))
    assert [e["type"] for e in evs] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]


def test_upstream_error_chunk_raises() -> None:
    with pytest.raises(UpstreamError, match="boom"):
        ResponseStream(model="m", response_id="r", created_at=1).feed({"error": "boom"})


# =========================================================================== the real client


def client(handler: Callable[[Any], Any]) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="test",
        base_url="http://proxy.test/v1",
        http_client=hx.Client(transport=hx.MockTransport(handler)),
        max_retries=0,
    )


def test_client_create_reads_translated_response() -> None:
    def handler(request: Any) -> Any:
        assert request.url.path == "/v1/responses"
        req = json.loads(request.content)
        out, _route = parse_responses(req)
        assert out["messages"][0] == {"role": "system", "content": "Be brief."}
        resp = completion("Sunny.", calls=[("call_1", "get_weather", '{"city": "Lima"}')])
        return hx.Response(
            200,
            json=response_from_openai(
                resp, model=req["model"], response_id="resp_1", created_at=1, request=req
            ),
        )

    r = client(handler).responses.create(
        model="gpt-5",
        instructions="Be brief.",
        input="Weather in Lima?",
        tools=[WEATHER],  # type: ignore[list-item]
        store=True,
    )
    assert r.output_text == "Sunny."
    call = r.output[1]
    assert call.type == "function_call" and call.call_id == "call_1"
    assert json.loads(call.arguments) == {"city": "Lima"}


def stream_handler(
    chunks: list[dict[str, Any]], *, fail: str | None = None, seen: list[Any] | None = None
) -> Callable[[Any], Any]:
    def handler(request: Any) -> Any:
        req = json.loads(request.content)
        if seen is not None:
            seen.append(req)
        out, _route = parse_responses(req)
        assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
        s = ResponseStream(model=req["model"], response_id="resp_live", created_at=5, request=req)
        raw = b"".join(s.feed(c) for c in chunks)
        raw += s.error(fail) if fail else s.finish()
        return hx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    return handler


def test_client_stream_accumulates_final_response() -> None:
    seen: list[Any] = []
    c = client(stream_handler(TEXT_AND_TOOLS, seen=seen))
    with c.responses.stream(
        model="gpt-5",
        input=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert seen[0]["stream"] is True
    assert "".join(deltas) == "Let me check." == final.output_text
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_1", "get_weather", '{"city": "Lima"}'),
        ("call_2", "get_time", "{}"),
    ]
    assert final.usage is not None and final.usage.input_tokens == 20


def test_client_raw_stream_and_failure() -> None:
    c = client(stream_handler([chunk({"content": "Hi"})], fail="upstream died"))
    evs = list(c.responses.create(model="m", input="x", stream=True))
    assert [e.type for e in evs][-2:] == ["error", "response.failed"]
    last = evs[-1]
    assert last.type == "response.failed" and last.response.error is not None
    assert last.response.error.message == "upstream died"


def test_client_reads_error_body() -> None:
    def handler(request: Any) -> Any:
        try:
            parse_responses(json.loads(request.content))
        except BadRequest as exc:
            return hx.Response(400, json=error_body(400, exc.message, param=exc.param))
        raise AssertionError("should have been refused")

    with pytest.raises(openai.BadRequestError) as exc:
        client(handler).responses.create(model="m", input="x", previous_response_id="resp_0")
    assert exc.value.param == "previous_response_id"
    assert "keeps no conversation state" in exc.value.message


# =========================================================================== properties

texts = st.text(st.characters(codec="utf-8"), max_size=30)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
args_text = st.dictionaries(names, st.integers() | texts, max_size=3).map(json.dumps)


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["user", "assistant", "calls", "reasoning"]))
        if kind == "user" or turn == 0:
            items.append({"role": "user", "content": draw(texts)})
        elif kind == "assistant":
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": draw(texts), "annotations": []}],
                }
            )
        elif kind == "reasoning":
            items.append({"type": "reasoning", "id": f"rs_{turn}", "summary": []})
        else:
            n = draw(st.integers(1, 3))
            for k in range(n):
                items.append(
                    {
                        "type": "function_call",
                        "call_id": f"call_{turn}_{k}",
                        "name": draw(names),
                        "arguments": draw(args_text),
                    }
                )
            for k in range(n):
                items.append(
                    {
                        "type": "function_call_output",
                        "call_id": f"call_{turn}_{k}",
                        "output": draw(texts),
                    }
                )
    return items


@settings(max_examples=150, deadline=None)
@given(histories())
def test_items_survive_translation(items: list[dict[str, Any]]) -> None:
    out, route = parse_responses(body(input=items))
    msgs = out["messages"]
    parse("openai", "chat", copy.deepcopy(out))  # always a valid chat body
    want_texts = [
        (i["role"], i["content"] if isinstance(i["content"], str) else i["content"][0]["text"])
        for i in items
        if i.get("role")
    ]
    got_texts = [(m["role"], m["content"]) for m in msgs if m["role"] in ("user", "assistant")]
    # (an empty assistant text may merge into the function calls that follow it)
    got_texts = [(r, c) for r, c in got_texts if c or r == "user"]
    assert got_texts == [(r, c) for r, c in want_texts if c or r == "user"]
    want_calls = [
        (i["call_id"], i["name"], i["arguments"]) for i in items if i.get("type") == "function_call"
    ]
    got_calls = [
        (c["id"], c["function"]["name"], c["function"]["arguments"])
        for m in msgs
        for c in m.get("tool_calls", ())
    ]
    assert got_calls == want_calls
    outputs = [
        (i["call_id"], i["output"]) for i in items if i.get("type") == "function_call_output"
    ]
    assert [(m["tool_call_id"], m["content"]) for m in msgs if m["role"] == "tool"] == outputs
    # every tool message right after its calls (or another tool message)
    for prev, m in itertools.pairwise(msgs):
        if m["role"] == "tool":
            assert prev["role"] == "tool" or prev.get("tool_calls")
    assert route.messages == len(msgs)


@st.composite
def answers(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str, list[str]]], str]:
    pieces = draw(st.lists(texts.filter(bool), max_size=4))
    calls = []
    for n in range(draw(st.integers(0, 3))):
        args = draw(args_text)
        cuts = sorted(draw(st.lists(st.integers(0, len(args)), max_size=3)))
        frags = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]
        calls.append((f"call_{n}", draw(names), frags))
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "stop", "content_filter"]))
    return pieces, calls, finish


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
def test_stream_equals_the_whole_response(
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
    req = {"model": "m", "input": "x"}
    whole = response_from_openai(
        completion(
            "".join(pieces) or None,
            calls=[(cid, name, "".join(frags)) for cid, name, frags in calls],
            finish=finish,
            usage=(7, 5),
        ),
        model="m",
        response_id="resp_live",
        created_at=5,
        request={**req, "stream": True},
    )
    raw = b""
    s = ResponseStream(
        model="m", response_id="resp_live", created_at=5, request={**req, "stream": True}
    )
    for c in chunks:
        raw += s.feed(c)
    raw += s.finish()
    last = events(raw)[-1]
    streamed = last["response"]
    if not pieces and not calls:
        # a stream with no text has no message item; a whole answer has one empty message
        whole["output"] = []
    assert streamed == whole
    if finish == "content_filter":
        assert last["type"] == "response.incomplete"
        return
    with client(stream_handler(chunks)).responses.stream(model="m", input="x") as stream:
        final = stream.get_final_response()
    got = final.model_dump(mode="json", exclude_none=True)
    for item in got["output"]:
        for part in item.get("content") or ():
            part.pop("parsed", None)  # the SDK's own addition (structured output parsing)
    assert got == Response.model_validate(whole).model_dump(mode="json", exclude_none=True)


def test_client_reads_an_ollama_stream_through_the_chat_shape() -> None:
    """Responses client -> chat body -> Ollama body; Ollama's NDJSON -> chat chunks -> events."""
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
        chat_body, _route = parse_responses(req)
        ollama_body = openai_chat_request_to_ollama(chat_body, "qwen3")
        assert ollama_body["messages"][0] == {"role": "system", "content": "Be brief."}
        parser = NDJSONParser()
        to_chat = OllamaToOpenAIStream(
            "chat",
            model=req["model"],
            response_id="chatcmpl-x",
            created=1,
            include_usage=openai_include_usage(chat_body),
        )
        s = ResponseStream(model=req["model"], response_id="resp_x", created_at=9, request=req)
        out = b""
        for i in range(0, len(raw_upstream), 11):
            for obj in parser.feed(raw_upstream[i : i + 11]):
                for c in to_chat.feed(obj):
                    out += s.feed(c)
        out += s.finish()
        return hx.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    with client(handler).responses.stream(
        model="gpt-5",
        instructions="Be brief.",
        input="Weather in Lima?",
        tools=[WEATHER],  # type: ignore[list-item]
        store=False,
    ) as stream:
        final = stream.get_final_response()
    assert final.output_text == "On it."
    call = final.output[1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Lima"}
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (
        30,
        8,
    )


def test_built_in_and_grouped_tools_are_left_out_function_tools_kept() -> None:
    """What Codex CLI sends: function tools beside a namespace group and a
    built-in web_search; only the function tools reach the model."""
    fn = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}
    chat, route = parse_responses(
        body(
            tools=[
                fn,
                {"type": "namespace", "name": "multi_agent_v1", "tools": [dict(fn, name="x")]},
                {"type": "web_search", "external_web_access": False},
                {"type": "custom", "name": "apply_patch"},
            ]
        )
    )
    assert [t["function"]["name"] for t in chat["tools"]] == ["exec_command"]
    assert route.tools is True
    chat, route = parse_responses(body(tools=[{"type": "web_search"}]))
    assert "tools" not in chat and route.tools is False
