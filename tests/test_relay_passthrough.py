"""The OpenAI→OpenAI stream relay: events that need no change reach the client
as the backend wrote them (no decode and re-encode), with usage, finish reason
and errors still read from them."""

from __future__ import annotations

import pytest

from traywire.errors import BackendError
from traywire.proxy.relay import KEEP_ALIVE, SSEPassthrough


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


def _ev(model: str = "m", finish: str | None = None, **extra: object) -> bytes:
    import json

    body = {"id": "c", "model": model, "choices": [{"delta": {"content": "hi"},
            "finish_reason": finish}], **extra}  # fmt: skip
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


_DONE = b"data: [DONE]\n\n"
_STREAMS = {
    "plain": _ev() * 3 + _ev(finish="stop") + _DONE,
    "usage in the last event": _ev() * 2
    + _ev(finish="length", usage={"prompt_tokens": 5, "completion_tokens": 2})
    + _DONE,
    "usage null in every event": _ev(usage=None) * 3 + _ev(finish="stop", usage=None),
    "no finish reason, no end": _ev() * 4,
    "spaces after colons": b'data: {"model": "m", "choices": [{"finish_reason": "stop"}]}\n\n',
    "escaped keys": b'data: {"model":"m","choices":[{"\\u0066inish_reason":"stop"}],'
    b'"\\u0075sage":{"prompt_tokens":1,"completion_tokens":9}}\n\n',
    "another model": _ev("other") * 2 + _ev("other", finish="stop") + _DONE,
    "one event renamed": _ev() + _ev("other") + _ev() + _DONE,
    "[DONE] in the middle": _ev() + _DONE + _ev(finish="stop"),
    "comments": b": ping\n\n" + _ev() + b": ping\n\n" + _ev(finish="stop") + _DONE,
    "other fields": b"event: x\nid: 3\n" + _ev() + b"retry: 5\n\n" + _ev(finish="stop"),
    "data: without a space": b'data:{"model":"m"}\n\n' + _ev(finish="stop"),
    "CRLF": (_ev() + _ev(finish="stop")).replace(b"\n", b"\r\n"),
    "two data lines": b'data: {"model":"m",\ndata: "choices":[]}\n\n' + _ev(),
    "a JSON line break inside": b'data: {"model":"m",\n"choices":[]}\n\n' + _ev(),
    "non-ASCII": _ev().replace(b"hi", "h\u00e9 \u263a".encode()) + _DONE,
    "invalid UTF-8": _ev() + _ev().replace(b"hi", b"h\xff") + _DONE,
    "invalid JSON in the middle": _ev() + b"data: {not json}\n\n" + _ev(finish="stop"),
    "not an object": _ev() + b"data: [1,2]\n\n" + _ev(),
    "two values in an event": _ev() + b'data: {"model":"m"} {"model":"m"}\n\n' + _ev(),
    "an empty event": _ev() + b"data: \n\n" + _ev(),
    "an error mid-stream": _ev() + b'data: {"error":{"message":"boom"}}\n\n' + _ev(),
    "a null model": b'data: {"model":null,"choices":[]}\n\n' + _ev(finish="stop"),
    "choices not objects": b'data: {"model":"m","choices":[1,"x"]}\n\n' + _ev(),
    "usage not numbers": _ev(finish="stop", usage={"prompt_tokens": "7", "completion_tokens": 1}),
}


class _EventByEvent(SSEPassthrough):
    """The reading `_as_it_came` stands in for, on the same reads."""

    def _as_it_came(self, data: bytes) -> bytes | None:
        return None


def _run(pieces: list[bytes], *, event_by_event: bool = False) -> tuple[object, ...]:
    r = (_EventByEvent if event_by_event else SSEPassthrough)("m")
    feed = r.feed
    out = b""
    try:
        for piece in pieces:
            out += feed(piece)
    except BackendError as exc:
        return ("raised", exc.kind, str(exc))
    return (out.replace(KEEP_ALIVE, b""), r.complete, r.ended, r.tokens_in, r.tokens_out)


@pytest.mark.parametrize("name", list(_STREAMS))
def test_a_stream_read_whole_is_relayed_as_one_read_event_by_event(name: str) -> None:
    """Whole events that need no change go out as they came (`_as_it_came`);
    anything else is read event by event. Whatever the case, the client gets
    the same bytes, and the same finish, end, usage or error is noted, as
    when the same reads are read event by event, or the stream comes one
    byte at a time or one event at a time."""
    data = _STREAMS[name]
    whole = _run([data])
    assert whole == _run([data], event_by_event=True)
    assert whole == _run([data[i : i + 1] for i in range(len(data))])
    assert whole == _run([e + b"\n\n" for e in data.split(b"\n\n") if e])


def test_events_that_need_no_change_leave_as_the_bytes_that_came() -> None:
    r = SSEPassthrough("m")
    data = _ev() * 3 + _ev(finish="stop", usage={"prompt_tokens": 4, "completion_tokens": 3})
    assert r.feed(data) is data  # not a copy
    assert r.complete and not r.ended and r.tokens == 7
    assert r.feed(_DONE) == b"" and r.ended
    assert r.finish() == _DONE


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
