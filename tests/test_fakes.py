"""The fakes speak their dialects (checked with the official clients) and every
fault mode does what it says."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest
from fakes import (
    FakeBackend,
    FakeFactory,
    FakeToolCall,
    fake_factory,
    ollama_fake,
    openai_fake,
)
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

__all__ = ["fake_factory", "ollama_fake", "openai_fake"]  # fixtures used below

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello, who are you?"}]

_clients: list[openai.OpenAI | ollama.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def oa(fake: FakeBackend, timeout: float = 10.0) -> openai.OpenAI:
    """The official OpenAI client pointed straight at a fake (no retries)."""
    client = openai.OpenAI(base_url=fake.url + "/v1", api_key="x", max_retries=0, timeout=timeout)
    _clients.append(client)
    return client


def ol(fake: FakeBackend, timeout: float = 10.0) -> ollama.Client:
    """The official Ollama client pointed straight at a fake."""
    client = ollama.Client(host=fake.url, timeout=timeout)
    _clients.append(client)
    return client


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        yield executor


# --------------------------------------------------------------------- OpenAI


def test_openai_chat_plain(openai_fake: FakeBackend) -> None:
    raw = oa(openai_fake).chat.completions.with_raw_response.create(
        model="fake-model", messages=USER, temperature=0.5
    )
    assert raw.headers["x-fake-backend"] == "openai-fake"
    reply = raw.parse()
    assert reply.object == "chat.completion"
    assert reply.model == "fake-model"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == openai_fake.reply
    assert "openai-fake" in openai_fake.reply
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == len(openai_fake.reply.split())
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert (reply.model_extra or {})["x_fake"]["backend"] == "openai-fake"

    (rec,) = openai_fake.requests
    assert (rec.method, rec.path, rec.stream, rec.model) == (
        "POST",
        "/v1/chat/completions",
        False,
        "fake-model",
    )
    assert rec.json["messages"] == USER
    assert rec.json["temperature"] == 0.5
    assert rec.headers["authorization"] == "Bearer x"
    assert rec.outcome == "completed" and rec.status == 200


def test_openai_chat_stream_with_usage(openai_fake: FakeBackend) -> None:
    stream = oa(openai_fake).chat.completions.create(
        model="fake-model", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 3
    assert "".join(texts) == openai_fake.reply
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(texts)
    assert openai_fake.last_request is not None and openai_fake.last_request.stream


def test_openai_sse_wire_format(openai_fake: FakeBackend) -> None:
    body = {"model": "fake-model", "messages": USER, "stream": True}
    with httpx.stream("POST", openai_fake.url + "/v1/chat/completions", json=body) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert all(e.startswith("data: ") for e in events[:-1])
    assert events[-2] == "data: [DONE]"
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert all("usage" not in p for p in payloads)  # no include_usage: no usage at all
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_max_tokens_gives_length(openai_fake: FakeBackend) -> None:
    client = oa(openai_fake)
    reply = client.chat.completions.create(model="fake-model", messages=USER, max_tokens=2)
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "Hello from"
    assert reply.usage is not None and reply.usage.completion_tokens == 2


def test_openai_completions_plain_and_stream(openai_fake: FakeBackend) -> None:
    client = oa(openai_fake)
    reply = client.completions.create(model="fake-model", prompt="Once upon a time")
    assert reply.object == "text_completion"
    assert reply.choices[0].text == openai_fake.reply
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 4

    stream = client.completions.create(
        model="fake-model",
        prompt="Once upon a time",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == openai_fake.reply
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_openai_embeddings(openai_fake: FakeBackend) -> None:
    client = oa(openai_fake)
    # The client asks for base64 by default and decodes it.
    reply = client.embeddings.create(model="fake-model", input=["alpha", "beta"])
    assert openai_fake.requests[-1].json["encoding_format"] == "base64"
    assert [d.index for d in reply.data] == [0, 1]
    vectors = [d.embedding for d in reply.data]
    assert all(len(v) == 8 for v in vectors)
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3
    assert vectors[0] != vectors[1]

    floats = client.embeddings.create(
        model="fake-model", input="alpha", encoding_format="float", dimensions=4
    )
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == 4
    again = client.embeddings.create(model="fake-model", input="alpha", encoding_format="float")
    assert again.data[0].embedding == pytest.approx(vectors[0], abs=1e-5)  # deterministic
    assert again.usage.prompt_tokens == 1


def test_openai_models_and_unknown_model(fake_factory: FakeFactory) -> None:
    fake = fake_factory("openai", name="multi", models=["m1", "m2"])
    client = oa(fake)
    listed = client.models.list()
    assert [m.id for m in listed] == ["m1", "m2"]
    assert {m.owned_by for m in listed} == {"multi"}
    assert client.models.retrieve("m2").id == "m2"
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="m3", messages=USER)
    assert err.value.status_code == 404
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("m3")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="m3", input="x")


def test_openai_any_model_like_llamacpp(fake_factory: FakeFactory) -> None:
    fake = fake_factory("openai", name="llamacpp", models=["local.gguf"], any_model=True)
    reply = oa(fake).chat.completions.create(model="whatever-you-like", messages=USER)
    assert reply.choices[0].message.content == fake.reply
    assert fake.requests[-1].model == "whatever-you-like"


def test_openai_api_key(fake_factory: FakeFactory) -> None:
    fake = fake_factory("openai", api_key="sk-right")
    with pytest.raises(openai.AuthenticationError):
        oa(fake).chat.completions.create(model="fake-model", messages=USER)
    good = openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-right", max_retries=0)
    _clients.append(good)
    assert good.chat.completions.create(model="fake-model", messages=USER).choices
    assert httpx.get(fake.url + "/health").status_code == 200  # health stays public


def test_openai_health_and_unknown_route(openai_fake: FakeBackend) -> None:
    resp = httpx.get(openai_fake.url + "/health")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    assert resp.headers["x-fake-backend"] == "openai-fake"
    assert httpx.get(openai_fake.url + "/api/tags").status_code == 404
    assert httpx.get(openai_fake.url + "/v1/chat/completions").status_code == 405
    bad = httpx.post(openai_fake.url + "/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()


# --------------------------------------------------------------------- Ollama


def test_ollama_chat_plain_and_stream(ollama_fake: FakeBackend) -> None:
    client = ol(ollama_fake)
    reply = client.chat(model="fake-model", messages=USER, options={"temperature": 0.1})
    assert reply.message.role == "assistant"
    assert reply.message.content == ollama_fake.reply
    assert "ollama-fake" in reply.message.content
    assert reply.done and reply.done_reason == "stop"
    assert reply.eval_count == len(ollama_fake.reply.split())
    assert reply.prompt_eval_count == 4
    assert reply.model == "fake-model"
    rec = ollama_fake.requests[-1]
    assert (rec.path, rec.stream) == ("/api/chat", False)
    assert rec.json["options"] == {"temperature": 0.1}

    parts = list(client.chat(model="fake-model", messages=USER, stream=True))
    assert len(parts) > 3
    assert "".join(p.message.content or "" for p in parts) == ollama_fake.reply
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    assert parts[-1].done_reason == "stop" and parts[-1].eval_count == len(parts) - 1
    assert ollama_fake.requests[-1].stream


def test_ollama_streams_by_default(ollama_fake: FakeBackend) -> None:
    body = {"model": "fake-model", "prompt": "Why is the sky blue?"}  # no "stream" key
    resp = httpx.post(ollama_fake.url + "/api/generate", json=body)
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert len(lines) > 3
    assert "".join(line["response"] for line in lines) == ollama_fake.reply
    assert lines[-1]["done"] is True and lines[-1]["context"]


def test_ollama_generate(ollama_fake: FakeBackend) -> None:
    client = ol(ollama_fake)
    reply = client.generate(model="fake-model", prompt="Why is the sky blue?")
    assert reply.response == ollama_fake.reply and reply.done_reason == "stop"
    short = client.generate(model="fake-model", prompt="x", options={"num_predict": 2})
    assert short.done_reason == "length" and short.eval_count == 2
    parts = list(client.generate(model="fake-model", prompt="Why?", stream=True))
    assert "".join(p.response or "" for p in parts) == ollama_fake.reply
    load = client.generate(model="fake-model")  # empty prompt: just load the model
    assert load.done and load.done_reason == "load" and load.response == ""


def test_ollama_embed_list_ps_show_version(fake_factory: FakeFactory) -> None:
    fake = fake_factory("ollama", name="ol", models=["llama3.2", "qwen:0.5b"])
    client = ol(fake)
    emb = client.embed(model="llama3.2", input=["a", "b", "c"])
    assert len(emb.embeddings) == 3 and all(len(v) == 8 for v in emb.embeddings)
    assert client.embed(model="llama3.2:latest", input="a").embeddings[0] == emb.embeddings[0]
    assert len(client.embeddings(model="llama3.2", prompt="a").embedding) == 8

    assert [m.model for m in client.list().models] == ["llama3.2:latest", "qwen:0.5b"]
    assert [m.model for m in client.ps().models] == ["llama3.2:latest", "qwen:0.5b"]
    assert client.show("qwen:0.5b").capabilities == ["completion"]
    version = httpx.get(fake.url + "/api/version").json()["version"]
    assert version.count(".") == 2
    assert httpx.get(fake.url + "/").text == "Ollama is running"


def test_ollama_unknown_model(ollama_fake: FakeBackend) -> None:
    client = ol(ollama_fake)
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="nope", messages=USER)
    assert err.value.status_code == 404
    assert "not found" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        list(client.generate(model="nope", prompt="x", stream=True))
    assert err.value.status_code == 404
    with pytest.raises(ollama.ResponseError):
        client.embed(model="nope", input="x")
    assert client.chat(model="fake-model:latest", messages=USER).done


# --------------------------------------------------------------------- faults


def test_refuse_and_revive_same_port(openai_fake: FakeBackend) -> None:
    port = openai_fake.port
    client = oa(openai_fake)
    assert client.models.list().data
    openai_fake.refuse()
    assert openai_fake.mode == "refuse"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(openai.APIConnectionError):
        client.models.list()  # the keep-alive connection was killed too
    openai_fake.revive()
    assert openai_fake.port == port
    assert client.models.list().data
    assert client.chat.completions.create(model="fake-model", messages=USER).choices


def test_refuse_ollama_client(ollama_fake: FakeBackend) -> None:
    ollama_fake.refuse()
    with pytest.raises(ConnectionError):
        ol(ollama_fake).list()
    ollama_fake.ok()  # ok() also listens again
    assert ol(ollama_fake).list().models


def test_refuse_before_start() -> None:
    fake = FakeBackend("openai")
    fake.refuse()
    with fake:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", fake.port), timeout=2).close()
        fake.revive()
        assert httpx.get(fake.url + "/health").status_code == 200


def test_refuse_kills_inflight_stream(
    openai_fake: FakeBackend, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    openai_fake.stall_after(2)

    def consume() -> int:
        n = 0
        with pytest.raises(openai.APIConnectionError):
            for _ in oa(openai_fake).chat.completions.create(
                model="fake-model", messages=USER, stream=True
            ):
                n += 1
        return n

    future = pool.submit(consume)
    assert openai_fake.wait_for_requests(1)
    time.sleep(0.2)
    openai_fake.refuse()
    assert future.result(5) == 2
    assert openai_fake.requests[-1].outcome == "aborted"
    assert openai_fake.disconnects == []


def test_hang_times_out_client_and_stop_is_fast() -> None:
    fake = FakeBackend("openai").start()
    try:
        fake.hang()
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            oa(fake, timeout=0.5).chat.completions.create(model="fake-model", messages=USER)
        assert 0.4 < time.monotonic() - started < 3
        assert fake.wait_for_requests(1)
        # Leave a second request hanging for stop() to deal with.
        errors: list[Exception] = []

        def call() -> None:
            try:
                httpx.get(fake.url + "/v1/models", timeout=30)
            except httpx.HTTPError as exc:
                errors.append(exc)

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        assert fake.wait_for_requests(2)
    finally:
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 2
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1
    assert fake.requests[-1].outcome == "stopped"


def test_hang_released_by_mode_change(
    ollama_fake: FakeBackend, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    ollama_fake.hang()
    future = pool.submit(lambda: ol(ollama_fake).chat(model="fake-model", messages=USER))
    assert ollama_fake.wait_for_requests(1)
    time.sleep(0.2)
    assert not future.done() and ollama_fake.in_flight == 1
    ollama_fake.ok()
    assert future.result(5).message.content == ollama_fake.reply


def test_hang_times_once(
    openai_fake: FakeBackend, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    openai_fake.hang(times=1)
    stuck = pool.submit(lambda: httpx.get(openai_fake.url + "/health", timeout=10))
    assert openai_fake.wait_for_requests(1)
    assert httpx.get(openai_fake.url + "/health", timeout=5).status_code == 200
    assert not stuck.done()
    assert openai_fake.mode == "ok"
    openai_fake.ok()  # any control call releases the stuck one
    assert stuck.result(5).status_code == 200


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_status_codes_openai(
    openai_fake: FakeBackend, code: int, error: type[openai.APIStatusError]
) -> None:
    openai_fake.status(code)
    with pytest.raises(error) as err:
        oa(openai_fake).chat.completions.create(model="fake-model", messages=USER, stream=True)
    assert err.value.status_code == code
    assert isinstance(err.value.body, dict) and "message" in err.value.body


def test_status_429_retry_after(openai_fake: FakeBackend) -> None:
    openai_fake.status(429, headers={"Retry-After": "7"})
    with pytest.raises(openai.RateLimitError) as err:
        oa(openai_fake).chat.completions.create(model="fake-model", messages=USER)
    assert err.value.response.headers["retry-after"] == "7"
    raw = httpx.get(openai_fake.url + "/health")
    assert raw.status_code == 429 and raw.headers["Retry-After"] == "7"
    assert raw.json()["error"]["type"] == "rate_limit_error"


def test_status_ollama_custom_body_times_and_paths(ollama_fake: FakeBackend) -> None:
    client = ol(ollama_fake)
    ollama_fake.status(500, {"error": "boom"}, times=2, paths=["/api/chat"])
    assert client.list().models  # other paths unaffected and do not use up `times`
    for _ in range(2):
        with pytest.raises(ollama.ResponseError) as err:
            client.chat(model="fake-model", messages=USER)
        assert (err.value.status_code, err.value.error) == (500, "boom")
    assert client.chat(model="fake-model", messages=USER).done  # back to ok
    ollama_fake.status(502, "bad gateway\n")
    resp = httpx.get(ollama_fake.url + "/api/tags")
    assert (resp.status_code, resp.text) == (502, "bad gateway\n")
    assert resp.headers["content-type"].startswith("text/plain")


def test_slow_first_byte(
    ollama_fake: FakeBackend,
) -> None:
    ollama_fake.slow_first_byte(0.6)
    started = time.monotonic()
    assert ol(ollama_fake).chat(model="fake-model", messages=USER).done
    assert time.monotonic() - started >= 0.55
    with pytest.raises(httpx.ReadTimeout):
        ol(ollama_fake, timeout=0.2).list()


def test_cut_after_stream_openai(openai_fake: FakeBackend) -> None:
    openai_fake.cut_after(3)
    got: list[str | None] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oa(openai_fake).chat.completions.create(
            model="fake-model", messages=USER, stream=True
        ):
            got.append(chunk.choices[0].delta.content)
    assert len(got) == 3  # role chunk + two content chunks, then no clean end
    assert openai_fake.requests[-1].outcome == "aborted"


def test_cut_after_stream_raw_and_ollama(ollama_fake: FakeBackend) -> None:
    ollama_fake.cut_after(2)
    body = {"model": "fake-model", "messages": USER}
    lines: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", ollama_fake.url + "/api/chat", json=body) as resp,
    ):
        assert resp.status_code == 200
        lines.extend(resp.iter_lines())
    assert len(lines) == 2
    with pytest.raises(httpx.RemoteProtocolError):
        list(ol(ollama_fake).chat(model="fake-model", messages=USER, stream=True))


def test_cut_after_non_stream(openai_fake: FakeBackend) -> None:
    openai_fake.cut_after(1)
    with pytest.raises(openai.APIConnectionError):
        oa(openai_fake).chat.completions.create(model="fake-model", messages=USER)
    openai_fake.cut_after(0)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(openai_fake.url + "/v1/models")


def test_stall_after_times_out_then_resumes(ollama_fake: FakeBackend) -> None:
    ollama_fake.stall_after(2)  # until the mode changes
    body = {"model": "fake-model", "prompt": "x"}
    lines: list[str] = []
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream("POST", ollama_fake.url + "/api/generate", json=body, timeout=0.5) as resp,
    ):
        lines.extend(resp.iter_lines())
    assert len(lines) == 2
    ollama_fake.stall_after(1, 0.4)  # a pause, then the rest
    started = time.monotonic()
    reply = ol(ollama_fake).generate(model="fake-model", prompt="x")
    assert reply.response == ollama_fake.reply
    assert time.monotonic() - started >= 0.35


def test_garbage(openai_fake: FakeBackend, ollama_fake: FakeBackend) -> None:
    openai_fake.garbage()
    with pytest.raises((openai.APIError, json.JSONDecodeError)):
        oa(openai_fake).chat.completions.create(model="fake-model", messages=USER)
    with pytest.raises((openai.APIError, json.JSONDecodeError)):
        list(
            oa(openai_fake).chat.completions.create(model="fake-model", messages=USER, stream=True)
        )
    resp = httpx.get(openai_fake.url + "/v1/models")
    assert resp.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        resp.json()

    ollama_fake.garbage()
    with pytest.raises(json.JSONDecodeError):
        ol(ollama_fake).chat(model="fake-model", messages=USER)
    with pytest.raises(json.JSONDecodeError):
        list(ol(ollama_fake).chat(model="fake-model", messages=USER, stream=True))


def test_loading_503_everywhere(openai_fake: FakeBackend) -> None:
    openai_fake.loading()
    health = httpx.get(openai_fake.url + "/health")
    assert health.status_code == 503
    assert health.json() == {
        "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
    }
    with pytest.raises(openai.InternalServerError) as err:
        oa(openai_fake).chat.completions.create(model="fake-model", messages=USER)
    assert err.value.status_code == 503
    assert httpx.get(openai_fake.url + "/v1/models").status_code == 503
    openai_fake.ok()
    assert httpx.get(openai_fake.url + "/health").status_code == 200


def test_drop_closes_without_response(ollama_fake: FakeBackend) -> None:
    ollama_fake.drop(times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(ollama_fake.url + "/api/tags")
    assert ollama_fake.requests[-1].outcome == "aborted"
    assert httpx.get(ollama_fake.url + "/api/tags").status_code == 200


# --------------------------------------------------------------------- recording


def test_disconnect_recorded_when_openai_stream_closed(openai_fake: FakeBackend) -> None:
    openai_fake.chunk_delay = 0.1
    stream = oa(openai_fake).chat.completions.create(model="fake-model", messages=USER, stream=True)
    for i, _ in enumerate(stream):
        if i == 1:
            break
    stream.close()
    assert openai_fake.wait_for_disconnect(5)
    (rec,) = openai_fake.disconnects
    assert rec.disconnected and rec.path == "/v1/chat/completions"
    deadline = time.monotonic() + 2
    while openai_fake.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert openai_fake.in_flight == 0


def test_disconnect_recorded_during_stall(ollama_fake: FakeBackend) -> None:
    ollama_fake.stall_after(1)
    parts = ol(ollama_fake, timeout=0.5).chat(model="fake-model", messages=USER, stream=True)
    with pytest.raises(httpx.ReadTimeout):
        for _ in parts:
            pass
    assert ollama_fake.wait_for_disconnect(5)
    assert ollama_fake.requests[-1].outcome == "disconnected"


def test_chunk_delay_paces_the_stream(ollama_fake: FakeBackend) -> None:
    ollama_fake.chunk_delay = 0.05
    arrivals = [
        time.monotonic()
        for _ in ol(ollama_fake).chat(model="fake-model", messages=USER, stream=True)
    ]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) >= 3
    # Chunks arrive one by one, spaced by the delay (scheduling jitter tolerated).
    assert arrivals[-1] - arrivals[0] >= 0.8 * 0.05 * len(gaps)
    assert sorted(gaps)[len(gaps) // 2] >= 0.04


def test_reply_and_explicit_chunks(ollama_fake: FakeBackend) -> None:
    ollama_fake.reply = ["one", "-two", "-three"]
    parts = list(ol(ollama_fake).generate(model="fake-model", prompt="x", stream=True))
    assert [p.response for p in parts] == ["one", "-two", "-three", ""]
    ollama_fake.reply = "just two"
    assert ol(ollama_fake).generate(model="fake-model", prompt="x").response == "just two"


def test_records_counts_and_clear(openai_fake: FakeBackend) -> None:
    client = oa(openai_fake)
    client.models.list()
    client.chat.completions.create(model="fake-model", messages=USER)
    httpx.get(openai_fake.url + "/health?verbose=1", headers={"X-Trace": "abc"})
    assert openai_fake.request_count == 3
    assert openai_fake.count("/v1/models") == 1
    assert openai_fake.count(method="GET") == 2
    last = openai_fake.last_request
    assert last is not None and last.query == {"verbose": "1"} and last.headers["x-trace"] == "abc"
    assert [r.index for r in openai_fake.requests] == [0, 1, 2]
    openai_fake.clear()
    assert openai_fake.request_count == 0 and openai_fake.last_request is None
    client.models.list()
    assert openai_fake.requests[0].index == 3
    assert not openai_fake.wait_for_requests(2, timeout=0.1)


def test_two_fakes_are_told_apart(fake_factory: FakeFactory) -> None:
    a = fake_factory("openai", name="alpha", models=["m"], any_model=True)
    b = fake_factory("openai", name="beta", models=["m"], any_model=True)
    assert a.port != b.port
    for fake in (a, b):
        reply = oa(fake).chat.completions.create(model="m", messages=USER)
        assert fake.name in (reply.choices[0].message.content or "")
        assert reply.id.startswith(f"chatcmpl-{fake.name}-")
    assert (a.request_count, b.request_count) == (1, 1)


def test_concurrent_requests_and_controls(
    openai_fake: FakeBackend, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    def call(i: int) -> int:
        resp = httpx.get(openai_fake.url + "/health", timeout=5)
        return resp.status_code

    codes = list(pool.map(call, range(40)))
    assert codes == [200] * 40
    openai_fake.status(503, times=3)
    codes = [call(i) for i in range(5)]
    assert codes == [503, 503, 503, 200, 200]


def test_context_manager_and_restart_refused() -> None:
    with FakeBackend("ollama", name="ctx") as fake:
        assert "ctx" in repr(fake)
        assert httpx.get(fake.url + "/api/version").status_code == 200
        port = fake.port
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=2)
    with pytest.raises(RuntimeError):
        fake.start()
    fake.stop()  # idempotent


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        FakeBackend("anthropic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FakeBackend("openai", models=[])
    with pytest.raises(ValueError):
        FakeBackend("openai").status(500, times=0)


# --------------------------------------------------------------------- tool calls

TOOLS: list[ChatCompletionFunctionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ARGS = {"city": "São Paulo", "days": [1, 2], "units": {"temp": "C"}}


def test_tool_calls_default_off_and_need_tools(
    openai_fake: FakeBackend, ollama_fake: FakeBackend
) -> None:
    assert not openai_fake.tool_calls and not ollama_fake.split_tool_calls
    reply = oa(openai_fake).chat.completions.create(
        model="fake-model",
        messages=USER,
        tools=TOOLS,
    )
    assert reply.choices[0].message.content == openai_fake.reply  # no call configured: text
    openai_fake.tool_call("get_weather", ARGS)
    assert openai_fake.tool_calls == (FakeToolCall("get_weather", ARGS),)
    cases: list[dict[str, Any]] = [{}, {"tools": []}, {"tools": TOOLS, "tool_choice": "none"}]
    for kwargs in cases:
        reply = oa(openai_fake).chat.completions.create(model="fake-model", messages=USER, **kwargs)
        assert reply.choices[0].message.content == openai_fake.reply, kwargs
        assert reply.choices[0].message.tool_calls is None
    openai_fake.tool_calls = ()
    reply = oa(openai_fake).chat.completions.create(
        model="fake-model",
        messages=USER,
        tools=TOOLS,
    )
    assert reply.choices[0].message.content == openai_fake.reply


def test_openai_tool_call_plain(openai_fake: FakeBackend) -> None:
    openai_fake.tool_call("get_weather", ARGS)
    reply = oa(openai_fake).chat.completions.create(
        model="fake-model",
        messages=USER,
        tools=TOOLS,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id == f"call_get_weather_{openai_fake.requests[-1].index}_0"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == ARGS


def test_openai_tool_call_stream(openai_fake: FakeBackend) -> None:
    openai_fake.tool_calls = [
        ("get_weather", ARGS),
        FakeToolCall("get_time", {"tz": "UTC"}, id="call_fixed"),
    ]
    body = {"model": "fake-model", "messages": USER, "tools": TOOLS, "stream": True}
    with httpx.stream("POST", openai_fake.url + "/v1/chat/completions", json=body) as resp:
        raw = resp.read().decode()
    events = [e[len("data: ") :] for e in raw.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    choices = [json.loads(e)["choices"][0] for e in events[:-1]]
    deltas = [c["delta"] for c in choices]
    # first chunk: the role and the first call's head, with an empty arguments string
    index = openai_fake.requests[-1].index
    assert deltas[0] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": f"call_get_weather_{index}_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
    }
    # then the arguments in several fragments, only index and arguments
    second = next(i for i, d in enumerate(deltas) if d["tool_calls"][0]["index"] == 1)
    fragments = [d["tool_calls"][0] for d in deltas[1:second]]
    assert len(fragments) > 3
    assert all(set(f) == {"index", "function"} and f["index"] == 0 for f in fragments)
    assert json.loads("".join(f["function"]["arguments"] for f in fragments)) == ARGS
    assert deltas[second]["tool_calls"][0]["id"] == "call_fixed"
    assert [c["finish_reason"] for c in choices] == [None] * (len(choices) - 1) + ["tool_calls"]
    assert deltas[-1] == {}

    # the SDK's accumulator rebuilds both calls
    with oa(openai_fake).chat.completions.stream(
        model="fake-model",
        messages=USER,
        tools=TOOLS,
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", ARGS),
        ("get_time", {"tz": "UTC"}),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_ollama_tool_call_plain_and_stream(ollama_fake: FakeBackend) -> None:
    ollama_fake.tool_call("get_weather", ARGS)
    client = ol(ollama_fake)
    reply = client.chat(model="fake-model", messages=USER, tools=TOOLS)
    assert reply.done and reply.done_reason == "stop"
    assert reply.message.content == ""
    assert reply.message.tool_calls is not None
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == ARGS

    parts = list(client.chat(model="fake-model", messages=USER, tools=TOOLS, stream=True))
    assert [p.done for p in parts] == [False, True]
    assert parts[0].message.tool_calls is not None
    assert [(c.function.name, c.function.arguments) for c in parts[0].message.tool_calls] == [
        ("get_weather", ARGS)
    ]
    assert not parts[1].message.tool_calls and parts[1].done_reason == "stop"

    # generate has no tools: text as ever
    assert client.generate(model="fake-model", prompt="hi").response == ollama_fake.reply


def test_ollama_tool_calls_split_and_ids(ollama_fake: FakeBackend) -> None:
    ollama_fake.tool_calls = [
        FakeToolCall("get_weather", ARGS, id="call_a"),
        ("get_time", {"tz": "UTC"}),
    ]
    body = {"model": "fake-model", "messages": USER, "tools": TOOLS}
    text = httpx.post(ollama_fake.url + "/api/chat", json=body).text
    lines = [json.loads(x) for x in text.splitlines()]
    assert [x["done"] for x in lines] == [False, True]
    assert lines[0]["message"]["tool_calls"] == [
        {"id": "call_a", "function": {"name": "get_weather", "arguments": ARGS}},
        {"function": {"name": "get_time", "arguments": {"tz": "UTC"}}},
    ]
    ollama_fake.split_tool_calls = True
    text = httpx.post(ollama_fake.url + "/api/chat", json=body).text
    lines = [json.loads(x) for x in text.splitlines()]
    assert [x["done"] for x in lines] == [False, False, True]
    assert [x["message"]["tool_calls"][0]["function"]["name"] for x in lines[:2]] == [
        "get_weather",
        "get_time",
    ]
