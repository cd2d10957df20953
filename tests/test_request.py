"""The one parse of an inbound request (`traywire.core.request.parse`): what it
reads for the router, in both dialects, from the same walk that validates."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traywire.core.request import BadRequest, parse
from traywire.types import RouteRequest

PNG = "iVBORw0KGgo="


def test_openai_chat_reads_text_turns_budget_and_needs() -> None:
    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "text", "text": "this picture?"},
                ],
            },
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "And its colour?"},
        ],
        "max_tokens": 50,
        "max_completion_tokens": 70,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_object"},
        "stream": True,
    }
    inb = parse("openai", "chat", body)
    assert inb.body is body
    assert inb.stream is True
    assert inb.route == RouteRequest(
        model="auto",
        prompt="Be brief.\nWhat is in\nthis picture?\nA cat.\nAnd its colour?",
        last_user="And its colour?",
        max_tokens=70,  # max_completion_tokens wins, as OpenAI reads it
        messages=4,
        kind="chat",
        images=1,
        tools=True,
        structured=True,
    )


def test_tools_offered_but_turned_off_are_not_a_need() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "none",
    }
    assert parse("openai", "chat", body).route.tools is False


def test_ollama_chat_streams_by_default_and_reads_images_and_format() -> None:
    body = {
        "model": "llava",
        "messages": [{"role": "user", "content": "describe", "images": [PNG, PNG]}],
        "format": "json",
        "options": {"num_predict": 20},
    }
    inb = parse("ollama", "chat", body)
    assert inb.stream is True
    r = inb.route
    assert (r.last_user, r.images, r.structured, r.max_tokens, r.kind) == (
        "describe",
        2,
        True,
        20,
        "chat",
    )
    assert parse("ollama", "chat", {**body, "stream": False}).stream is False
    assert parse("ollama", "chat", {**body, "stream": None}).stream is True  # null: not given


def test_ollama_load_request_has_no_messages() -> None:
    r = parse("ollama", "chat", {"model": "llama3.1"}).route
    assert (r.prompt, r.messages, r.kind) == ("", 1, "chat")


def test_completions_and_generate() -> None:
    r = parse("openai", "completion", {"model": "m", "prompt": ["a", "b"], "max_tokens": 9}).route
    assert (r.prompt, r.last_user, r.max_tokens, r.kind) == ("a\nb", "a\nb", 9, "completion")
    body = {"model": "m", "prompt": "go", "system": "sys", "images": [PNG], "format": {}}
    r = parse("ollama", "completion", body).route
    assert (r.prompt, r.last_user, r.images, r.structured) == ("sys\ngo", "go", 1, False)


def test_embeddings_never_stream_and_count_their_inputs() -> None:
    inb = parse("openai", "embed", {"model": "e", "input": ["one", "two"], "stream": True})
    assert inb.stream is False
    assert (inb.route.kind, inb.route.prompt, inb.route.messages) == ("embedding", "one\ntwo", 2)
    inb = parse("ollama", "embed", {"model": "e", "input": "x"})
    assert (inb.stream, inb.route.kind, inb.route.messages) == (False, "embedding", 1)
    # token ids carry no text but still count as inputs
    assert parse("openai", "embed", {"model": "e", "input": [[1, 2], [3]]}).route.messages == 2


@pytest.mark.parametrize(
    ("dialect", "op", "body", "param"),
    [
        ("openai", "chat", [], None),
        ("openai", "chat", {"messages": [{"role": "user", "content": "x"}]}, "model"),
        ("openai", "chat", {"model": "m", "messages": []}, "messages"),
        ("openai", "chat", {"model": "m", "messages": [{"role": "user", "content": 3}]}, None),
        ("ollama", "chat", {"model": "m", "messages": [{"role": "robot"}]}, None),
        ("ollama", "embed", {"model": "m", "input": []}, "input"),
    ],
)
def test_bad_bodies_name_the_problem(
    dialect: Any, op: Any, body: object, param: str | None
) -> None:
    with pytest.raises(BadRequest) as ei:
        parse(dialect, op, body)
    if param is not None:
        assert ei.value.param == param
    assert ei.value.message


_text = st.text(max_size=40)


@given(
    st.lists(
        st.tuples(st.sampled_from(["system", "user", "assistant"]), _text), min_size=1, max_size=6
    )
)
def test_the_prompt_is_every_turn_and_the_last_user_turn_is_classified(
    turns: list[tuple[str, str]],
) -> None:
    body = {"model": "m", "messages": [{"role": r, "content": t} for r, t in turns]}
    for dialect in ("openai", "ollama"):
        r = parse(dialect, "chat", body).route  # type: ignore[arg-type]
        assert r.prompt == "\n".join(t for _, t in turns)
        users = [t for role, t in turns if role == "user"]
        assert r.last_user == (users[-1] if users else "")
        assert r.messages == len(turns)


_PLAIN_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(-3, 3), st.text(max_size=3)
)


@given(
    max_tokens=_PLAIN_VALUES,
    temperature=_PLAIN_VALUES,
    stream=_PLAIN_VALUES,
    which=st.sets(st.sampled_from(["max_tokens", "temperature", "stream"])),
)
def test_plain_chat_bodies_are_checked_as_any_other(
    max_tokens: object, temperature: object, stream: object, which: set[str]
) -> None:
    """A body of only the commonest fields (checked on a shorter path) is
    refused or read exactly as the same body with one more harmless field
    (checked on the full path)."""
    values = {"max_tokens": max_tokens, "temperature": temperature, "stream": stream}
    plain: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    plain.update({k: values[k] for k in which})
    full = {**plain, "user": "someone"}

    def outcome(body: dict[str, Any]) -> object:
        try:
            return parse("openai", "chat", body).route
        except BadRequest as exc:
            return (exc.param, exc.message)

    assert outcome(plain) == outcome(full)
