"""traywire in front of a REAL inference server (llama.cpp's server from the
xllamacpp wheel, serving SmolLM2-135M), behind a dead first choice."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import ollama
import openai
import pytest
from harness import ProxyThread, config_for
from realserver import RealServer, real_server  # noqa: F401 - fixture


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def proxy(real_server: RealServer) -> Iterator[ProxyThread]:  # noqa: F811
    cfg = config_for(
        {
            "dead": {
                "kind": "openai",
                "url": f"http://127.0.0.1:{dead_port()}/v1",
                "location": "local",
            },
            "llamacpp": {
                "kind": "openai",
                "url": real_server.url_v1,
                "location": "local",
                "single_model": True,
            },
        },
        "defaults: {timeouts: {connect: 2, first_byte: 60, idle: 30, total: 120}}\n"
        "models:\n"
        "  smol-first: {backend: dead, upstream: smollm2, params_b: 0.135, tier: local,"
        " capabilities: [chat], context: 1024}\n"
        "  smol: {backend: llamacpp, upstream: whatever-llama-cpp-ignores-it, params_b: 0.135,"
        " tier: local, capabilities: [chat], context: 1024}\n"
        "fallbacks:\n  smol-first: [smol]\n",
    )
    with ProxyThread(cfg) as p:
        yield p


MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_openai_client_gets_the_real_answer_through_failover(proxy: ProxyThread) -> None:
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="smol-first", messages=MESSAGES, max_tokens=16, temperature=0
    )
    reply = raw.parse()
    assert raw.headers["x-traywire-backend"] == "llamacpp"
    assert raw.headers["x-traywire-attempts"] == "2"
    text = reply.choices[0].message.content or ""
    assert text.strip()
    assert "Paris" in text
    assert reply.model == "smol-first"
    assert reply.usage is not None and reply.usage.completion_tokens > 0

    stream = client.chat.completions.create(
        model="smol-first",
        messages=MESSAGES,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() == text.strip()  # greedy sampling: the same answer
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_ollama_client_gets_the_real_answer_through_failover(proxy: ProxyThread) -> None:
    client = ollama.Client(host=proxy.url)
    reply = client.chat(
        model="smol-first", messages=MESSAGES, options={"num_predict": 16, "temperature": 0}
    )
    text = reply.message.content or ""
    assert "Paris" in text
    assert reply.done and reply.eval_count and reply.eval_count > 0

    parts = list(
        client.chat(
            model="smol-first",
            messages=MESSAGES,
            stream=True,
            options={"num_predict": 16, "temperature": 0},
        )
    )
    assert parts[-1].done
    assert "".join(p.message.content or "" for p in parts).strip() == text.strip()

    gen = client.generate(
        model="smol-first",
        prompt="The capital of France is",
        options={"num_predict": 8, "temperature": 0},
    )
    assert gen.response.strip()


def test_probe_sees_the_real_server_up(proxy: ProxyThread, real_server: RealServer) -> None:  # noqa: F811
    from traywire.proxy.probe import probe

    async def go() -> object:
        assert proxy.rt.pool is not None
        return await probe(proxy.rt.pool, "openai", real_server.url_v1, {}, 5.0)

    result = proxy.run(go())
    assert result.ok, result  # type: ignore[attr-defined]
    assert result.models  # type: ignore[attr-defined]
