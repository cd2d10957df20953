"""Anthropic Messages answers from OpenAI chat answers: whole and streamed.

Decisions
    * ``finish_reason`` -> ``stop_reason``: ``stop`` -> ``end_turn`` (or
      ``stop_sequence``, with ``stop_sequence`` set, when the backend says which
      stop string matched: vLLM's ``stop_reason``), ``length`` -> ``max_tokens``,
      ``tool_calls``/``function_call`` (or any answer carrying tool calls) ->
      ``tool_use``, ``content_filter`` -> ``refusal``; anything else ->
      ``end_turn``.
    * Tool call arguments become ``input`` by :func:`.chatparts.tool_input`:
      invalid JSON (or JSON that is not an object) is kept whole as
      ``{"_raw": "<text>"}`` rather than failing the answer.
    * In a stream, a tool call's input is sent as one ``input_json_delta`` once
      the call is complete (the next call, text, or the end), not fragment by
      fragment: the SDKs parse every partial JSON prefix they get, so arguments
      must be known valid before the first byte of them goes out.
    * The model's reasoning (``reasoning_content``) comes back as a
      ``thinking`` block (empty ``signature``) when the request turned thinking
      on, and is dropped otherwise.
    * ``message_start`` carries the caller's estimate of input tokens (0 if
      none); ``message_delta`` carries the backend's counts when it sent them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .chatparts import (
    ChunkParts,
    ChunkStream,
    ToolAccumulator,
    id_suffix,
    named_sse,
    read_completion,
    tool_input,
    tool_input_json,
)
from .wire import JSONMap

Body = dict[str, Any]


def stop_reason(
    finish: str | None, has_tools: bool, matched: object, stop_sequences: Iterable[str] = ()
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI ``finish_reason``."""
    if has_tools or finish in ("tool_calls", "function_call"):
        return "tool_use", None
    if finish == "length":
        return "max_tokens", None
    if finish == "content_filter":
        return "refusal", None
    if finish == "stop" and isinstance(matched, str) and matched:
        stops = tuple(stop_sequences)
        if not stops or matched in stops:
            return "stop_sequence", matched
    return "end_turn", None


def _tool_id(call_id: str, message_id: str, n: int) -> str:
    return call_id or f"toolu_{id_suffix(message_id)}_{n}"


def message_from_openai(
    resp: JSONMap,
    *,
    model: str,
    message_id: str,
    thinking: bool = False,
    stop_sequences: Iterable[str] = (),
) -> Body:
    """An OpenAI ``chat.completion`` -> an Anthropic ``Message``.

    ``thinking``: the request turned extended thinking on (see
    ``anthropic.thinking_requested``); ``stop_sequences``: the request's, to
    tell a matched stop string from an end of turn.
    """
    m = read_completion(resp)
    content: list[Body] = []
    if thinking and m.reasoning:
        content.append({"type": "thinking", "thinking": m.reasoning, "signature": ""})
    if m.content:
        content.append({"type": "text", "text": m.content})
    for n, (cid, name, args) in enumerate(m.tool_calls):
        content.append(
            {
                "type": "tool_use",
                "id": _tool_id(cid, message_id, n),
                "name": name,
                "input": tool_input(args),
            }
        )
    if not content:
        content.append({"type": "text", "text": ""})
    reason, seq = stop_reason(m.finish_reason, bool(m.tool_calls), m.matched_stop, stop_sequences)
    tin, tout = m.usage or (0, 0)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": {"input_tokens": tin, "output_tokens": tout},
    }


class MessageStream(ChunkStream):
    """OpenAI ``chat.completion.chunk`` objects -> Anthropic Messages SSE bytes.

    ``feed(chunk)`` returns the bytes to send for one upstream chunk (possibly
    none); the first bytes are ``message_start``. Text and thinking open
    content blocks as they come; tool calls are gathered and sent whole (start,
    one ``input_json_delta``, stop) once complete. The end — ``message_delta``
    with ``stop_reason`` and usage, then ``message_stop`` — goes out as soon as
    upstream gave both its finish reason and its usage, else from ``finish()``
    (call it when upstream ended cleanly). ``error(message)`` ends a stream
    that broke with ``event: error``; ``ping()`` is a keep-alive event.
    ``done`` tells whether the stream was ended (either way), ``finished``
    whether upstream sent its finish reason; ``tokens_in``/``tokens_out`` are
    the backend's counts (0 until its usage chunk). An ``{"error": ...}`` chunk
    raises UpstreamError.
    """

    __slots__ = (
        "_block",
        "_index",
        "_input_estimate",
        "_matched",
        "_model",
        "_ncalls",
        "_stops",
        "_thinking",
        "_tools",
        "message_id",
    )

    def __init__(
        self,
        *,
        model: str,
        message_id: str,
        input_tokens: int = 0,
        thinking: bool = False,
        stop_sequences: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self._model = model
        self.message_id = message_id
        self._input_estimate = input_tokens
        self._thinking = thinking
        self._stops = tuple(stop_sequences)
        self._index = -1  # index of the last content block opened
        self._block: str | None = None  # "text" or "thinking" while one is open
        self._tools = ToolAccumulator()
        self._ncalls = 0
        self._matched: object = None

    # ------------------------------------------------------------------ events

    def _start(self, out: list[bytes]) -> None:
        message: Body = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_estimate, "output_tokens": 0},
        }
        out.append(named_sse("message_start", {"type": "message_start", "message": message}))

    def _open(self, out: list[bytes], block: Body) -> int:
        self._index += 1
        out.append(
            named_sse(
                "content_block_start",
                {"type": "content_block_start", "index": self._index, "content_block": block},
            )
        )
        return self._index

    def _delta(self, out: list[bytes], delta: Body) -> None:
        out.append(
            named_sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._index, "delta": delta},
            )
        )

    def _stop_block(self, out: list[bytes]) -> None:
        out.append(
            named_sse("content_block_stop", {"type": "content_block_stop", "index": self._index})
        )

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            self._block = None
            self._stop_block(out)

    def _flush_tools(self, out: list[bytes]) -> None:
        calls = self._tools.pop_all()
        if not calls:
            return
        self._close(out)
        for cid, name, args in calls:
            tid = _tool_id(cid, self.message_id, self._ncalls)
            self._ncalls += 1
            self._open(out, {"type": "tool_use", "id": tid, "name": name, "input": {}})
            self._delta(out, {"type": "input_json_delta", "partial_json": tool_input_json(args)})
            self._stop_block(out)

    def _text(self, out: list[bytes], kind: str, text: str) -> None:
        if self._tools.order:
            self._flush_tools(out)
        if self._block != kind:
            self._close(out)
            if kind == "text":
                self._open(out, {"type": "text", "text": ""})
            else:
                self._open(out, {"type": "thinking", "thinking": "", "signature": ""})
            self._block = kind
        if kind == "text":
            self._delta(out, {"type": "text_delta", "text": text})
        else:
            self._delta(out, {"type": "thinking_delta", "thinking": text})

    def _end(self, out: list[bytes]) -> None:
        self._flush_tools(out)
        self._close(out)
        reason, seq = stop_reason(self._finish, self._ncalls > 0, self._matched, self._stops)
        usage: Body = {"output_tokens": self.tokens_out}
        if self._usage_seen:
            usage = {"input_tokens": self.tokens_in, "output_tokens": self.tokens_out}
        out.append(
            named_sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": seq},
                    "usage": usage,
                },
            )
        )
        out.append(named_sse("message_stop", {"type": "message_stop"}))
        self.done = True

    # ------------------------------------------------------------------ API

    def _content(self, out: list[bytes], parts: ChunkParts) -> None:
        if parts.reasoning and self._thinking:
            self._text(out, "thinking", parts.reasoning)
        if parts.content:
            self._text(out, "text", parts.content)
        for frag in parts.tools:
            if self._tools.add(frag) and len(self._tools.order) == 1:
                self._close(out)  # a text block before the first call ends here

    def _finishing(self, out: list[bytes], parts: ChunkParts) -> None:
        self._matched = parts.matched_stop
        self._flush_tools(out)
        self._close(out)

    def error(self, message: str, error_type: str = "api_error") -> bytes:
        """``event: error`` ending a stream that broke after it started."""
        self.done = True
        return named_sse(
            "error", {"type": "error", "error": {"type": error_type, "message": message}}
        )

    @staticmethod
    def ping() -> bytes:
        return named_sse("ping", {"type": "ping"})
