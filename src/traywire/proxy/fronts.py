"""The Anthropic Messages and OpenAI Responses APIs, in front of everything else.

A request to ``/v1/messages`` or ``/v1/responses`` is checked and translated
to an OpenAI chat body as it comes in (`parse`), then routed, failed over and
sent like any ``/v1/chat/completions`` request: the adapters translate it on
to Ollama where the backend is Ollama. On the way back, the OpenAI chat
answer - whole (`answer`) or streamed (`FrontRelay`, wrapped around the
OpenAI relay) - is said again in the client's API. Errors go back in the
client's shape (`replies.error` with the front).

The two dialects' modules load at the first request to their front
(`parse`, `count_tokens`): an OpenAI or Ollama client never pays for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import fastjson
from ..core.request import Inbound
from ..types import Front
from . import dialects as tr
from .backends import Ids
from .relay import KEEP_ALIVE, Relay

if TYPE_CHECKING:
    from .dialects.anthropic_replies import MessageStream
    from .dialects.responses_api_replies import ResponseStream

Body = dict[str, Any]


def parse(front: Front, body: object) -> Inbound:
    """Check and translate a front's body; `BadRequest` names the first problem."""
    if front == "anthropic":
        from .dialects import anthropic

        chat, route = anthropic.parse_messages(body)
    else:
        from .dialects import responses_api

        chat, route = responses_api.parse_responses(body)
    original = body if isinstance(body, dict) else None
    return Inbound("openai", "chat", chat, chat.get("stream") is True, route, front, original)


def _message_id(ids: Ids) -> str:
    return "msg_" + ids.response_id.removeprefix("chatcmpl-")


def _response_id(ids: Ids) -> str:
    return "resp_" + ids.response_id.removeprefix("chatcmpl-")


def answer(inb: Inbound, openai_answer: bytes | Body, model: str, ids: Ids) -> Body:
    """A whole OpenAI chat answer, said in the client's API."""
    resp = fastjson.loads(openai_answer) if isinstance(openai_answer, bytes) else openai_answer
    client = inb.original or {}
    if inb.front == "anthropic":
        from .dialects import anthropic
        from .dialects.anthropic_replies import message_from_openai

        return message_from_openai(
            resp,
            model=model,
            message_id=_message_id(ids),
            thinking=anthropic.thinking_requested(client),
            stop_sequences=_stops(client),
        )
    from .dialects.responses_api_replies import response_from_openai

    return response_from_openai(
        resp, model=model, response_id=_response_id(ids), created_at=ids.created, request=client
    )


def _stops(client: Body) -> list[str]:
    stops = client.get("stop_sequences")
    return [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []


class FrontRelay(Relay):
    """The OpenAI relay's SSE, said again in a front's event stream."""

    def __init__(self, inner: Relay, conv: MessageStream | ResponseStream) -> None:
        self.inner = inner
        self.conv = conv
        self.parser = tr.SSEParser()

    def _say(self, sse: bytes) -> bytes:
        if sse == KEEP_ALIVE:
            return sse  # a comment: every SSE client skips it
        out = [self.conv.feed(fastjson.loads(p)) for p in self.parser.feed(sse) if p != "[DONE]"]
        self.complete, self.ended = self.inner.complete, self.inner.ended
        self.tokens_in, self.tokens_out = self.inner.tokens_in, self.inner.tokens_out
        return b"".join(out)

    def _feed(self, data: bytes) -> bytes:
        return self._say(self.inner.feed(data))

    def finish(self) -> bytes:
        return self._say(self.inner.finish()) + self.conv.finish()

    def error(self, message: str) -> bytes:
        return self.conv.error(message)


def relay(inb: Inbound, inner: Relay, model: str, ids: Ids, prompt_tokens: int) -> Relay:
    """Wrap the OpenAI relay of a front's stream."""
    client = inb.original or {}
    conv: MessageStream | ResponseStream
    if inb.front == "anthropic":
        from .dialects import anthropic
        from .dialects.anthropic_replies import MessageStream

        conv = MessageStream(
            model=model,
            message_id=_message_id(ids),
            input_tokens=prompt_tokens,
            thinking=anthropic.thinking_requested(client),
            stop_sequences=_stops(client),
        )
    else:
        from .dialects.responses_api_replies import ResponseStream

        conv = ResponseStream(
            model=model, response_id=_response_id(ids), created_at=ids.created, request=client
        )
    return FrontRelay(inner, conv)


def count_tokens(body: object) -> Body:
    """``/v1/messages/count_tokens``: traywire's estimate."""
    from .dialects import anthropic

    return anthropic.count_tokens(body)
