"""traywire in front of a REAL inference server (llama.cpp's server from the
xllamacpp wheel, serving SmolLM2-135M), behind a dead first choice."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

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


# --------------------------------------------------------------------------- what a request needs


def test_needs_the_real_server_lacks_never_take_it_down(real_server: RealServer) -> None:  # noqa: F811
    """The llama.cpp server runs without --embeddings and without a vision
    projector. A model declared (wrongly) to embed and see is sent both, more
    times than the failure threshold: the server refuses each as unsupported,
    its circuit stays closed and chat goes on being served by it. The same
    server under a model whose features are not declared: its /props says it
    cannot see, so an image is refused by the router without a call."""
    cfg = config_for(
        {
            "llamacpp": {
                "kind": "openai",
                "url": real_server.url_v1,
                "location": "local",
                "single_model": True,
            },
        },
        "defaults: {timeouts: {connect: 2, first_byte: 60, idle: 30, total: 120}}\n"
        "health: {failure_threshold: 2, probe_interval: 0.5}\n"
        "models:\n"
        "  smol-all: {backend: llamacpp, upstream: x, params_b: 0.135, tier: local,"
        " capabilities: [chat], context: 1024, features: [chat, embed, vision]}\n"
        "  smol: {backend: llamacpp, upstream: x, params_b: 0.135, tier: local,"
        " capabilities: [chat], context: 1024}\n",
    )
    image = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
            ],
        }
    ]
    with ProxyThread(cfg, probes=True) as p:
        client = openai.OpenAI(base_url=p.url + "/v1", api_key="x", max_retries=2)
        for _ in range(3):  # with the SDK's own retries: 9 refusals in all
            with pytest.raises(openai.BadRequestError) as ei:
                client.embeddings.create(model="smol-all", input="a document")
            assert "embeddings" in ei.value.message
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="smol-all", messages=image, max_tokens=4)
        status = p.call(p.rt.status)
        assert status["backends"]["llamacpp"]["circuit"] == "closed"
        reply = client.chat.completions.create(
            model="smol-all", messages=MESSAGES, max_tokens=8, temperature=0
        )
        assert (reply.choices[0].message.content or "").strip()
        # what /props said: no vision for the undeclared model
        assert wait_for(lambda: "smol" in p.call(p.rt.status)["features"], 10)
        assert "vision" not in p.call(p.rt.status)["features"]["smol"]
        with pytest.raises(openai.BadRequestError) as ei:
            client.chat.completions.create(model="smol", messages=image, max_tokens=4)
        assert "needs vision" in ei.value.message


def wait_for(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg=="
)
