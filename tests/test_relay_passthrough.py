"""The OpenAI→OpenAI stream relay: events that need no change reach the client
as the backend wrote them (no decode and re-encode), with usage, finish reason
and errors still read from them."""

from __future__ import annotations

import pytest

from traywire.errors import BackendError
from traywire.proxy.relay import SSEPassthrough


def test_events_naming_the_model_pass_byte_for_byte() -> None:
    r = SSEPassthrough("m")
    ev = (
        b'{"id":"x", "model" : "m","choices":'
        b'[{"delta":{"content":"\\u00e9 \\"model\\""},"finish_reason":null}]}'
    )
    assert r.feed(b"data: " + ev + b"\n\n") == b"data: " + ev + b"\n\n"
    assert not r.complete
    last = (
        b'{"model":"m","choices":[{"delta":{},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":7,"completion_tokens":3}}'
    )
    assert r.feed(b"data: " + last + b"\n\ndata: [DONE]\n\n") == b"data: " + last + b"\n\n"
    assert r.complete and r.ended and (r.tokens_in, r.tokens_out) == (7, 3)


def test_another_model_name_is_replaced() -> None:
    r = SSEPassthrough("chat")
    out = r.feed(b'data: {"model":"llama3:8b","choices":[{"finish_reason":"length"}]}\n\n')
    assert out == b'data: {"model":"chat","choices":[{"finish_reason":"length"}]}\n\n'
    assert r.complete


@pytest.mark.parametrize(
    "event",
    [b"{not json}", b"[1,2]", b'{"model":"m","choices":[1]} x'],
)
def test_bad_events_are_invalid_responses(event: bytes) -> None:
    with pytest.raises(BackendError) as e:
        SSEPassthrough("m").feed(b"data: " + event + b"\n\n")
    assert e.value.kind == "invalid_response"


def test_an_error_event_is_a_server_error() -> None:
    with pytest.raises(BackendError) as e:
        SSEPassthrough("m").feed(b'data: {"model":"m","error":{"message":"boom"}}\n\n')
    assert e.value.kind == "server_error" and "boom" in str(e.value)


# --------------------------------------------------------------------------- request bodies


def _wire(raw: bytes, upstream: str, stream: bool = False) -> bytes:
    from traywire import fastjson
    from traywire.proxy.backends import ADAPTERS, wire_body

    client = fastjson.loads(raw)
    prep = ADAPTERS["openai"].prepare("openai", "chat", client, upstream, stream)
    out = wire_body(prep.body, client, raw)
    assert fastjson.loads(out) == prep.body  # whatever the route, the backend gets this
    return out


def test_the_clients_bytes_go_when_nothing_changes() -> None:
    raw = b'{ "model": "m",\n "messages": [{"role":"user","content":"\\u00e9"}], "stream": false}'
    assert _wire(raw, "m") is raw


def test_only_the_model_value_is_replaced_in_the_clients_bytes() -> None:
    raw = b'{"messages":[{"role":"user","content":"say \\"model\\""}], "model" : "chat",'
    raw += b'"stream":true}'
    assert _wire(raw, "llama3:8b", stream=True) == raw.replace(b'"chat"', b'"llama3:8b"')


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"chat","messages":[{"role":"user","content":"x"}]}',  # stream added
        b'{"model":"\\u0063hat","messages":[],"stream":false}',  # model written oddly
        b'{"model":"chat","messages":[{"role":"user","content":"model"}],"stream":false}',
    ],
)
def test_otherwise_the_body_is_encoded_again(raw: bytes) -> None:
    out = _wire(raw, "llama3:8b")
    assert out != raw and b'"model":"llama3:8b"' in out


# --------------------------------------------------------------------------- idle deadline


async def test_an_extended_deadline_slides_and_a_silent_one_expires() -> None:
    """A stream's idle deadline is extended per chunk without moving the loop's
    timer (`deadline.Deadline.extend`): it still holds while chunks keep coming, and
    still ends a silence as its own error kind."""
    import asyncio

    from traywire.proxy.deadline import Deadline

    async with Deadline(0.5, "idle_timeout", "sent nothing") as idle:
        for _ in range(40):  # 0.8 s in all, never 0.5 s without a chunk
            await asyncio.sleep(0.02)
            idle.extend()
    with pytest.raises(BackendError) as e:
        async with Deadline(0.1, "idle_timeout", "sent nothing") as idle:
            idle.extend()
            await asyncio.sleep(5)
    assert e.value.kind == "idle_timeout"
