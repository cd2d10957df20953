"""Stream converters: Ollama NDJSON chunks ⇄ OpenAI SSE chunk objects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from .common import (
    _done_reason,
    _finish_reason,
    _id_suffix,
    _int_or_none,
    _maps,
    _ollama_call_to_openai,
    _ollama_metrics,
    _ollama_parts,
    _openai_usage,
    _parse_arguments,
    _s,
)
from .wire import Body, JSONMap, UpstreamError, upstream_error_message

# =========================================================================== streams


def _raise_stream_error(chunk: JSONMap) -> None:
    if "error" in chunk and chunk["error"] is not None:
        raise UpstreamError(upstream_error_message(chunk))


class OllamaToOpenAIStream:
    """Ollama NDJSON chunks (chat or generate) -> OpenAI SSE chunk objects.

    ``kind`` "chat" yields ``chat.completion.chunk`` objects, "completion"
    yields ``text_completion`` ones. Each content chunk in gives one chunk out;
    the first chat delta carries ``role: "assistant"``; Ollama's ``done`` chunk
    gives the chunk with ``finish_reason``, followed by a usage chunk (empty
    ``choices``) when ``include_usage``. ``done`` tells whether upstream's final
    chunk arrived; if it did not, ``finish()`` closes the stream with
    ``finish_reason: "stop"`` (callers who prefer an error event check ``done``
    first). An ``{"error": ...}`` chunk raises UpstreamError.
    """

    __slots__ = (
        "_calls",
        "_chat",
        "_created",
        "_id",
        "_model",
        "_started",
        "_suffix",
        "_usage",
        "done",
    )

    def __init__(
        self,
        kind: Literal["chat", "completion"],
        *,
        model: str,
        response_id: str,
        created: int,
        include_usage: bool = False,
    ) -> None:
        self._chat = kind == "chat"
        self._model = model
        self._id = response_id
        self._suffix = _id_suffix(response_id)
        self._created = created
        self._usage = include_usage
        self._started = False
        self._calls = 0
        self.done = False

    def _chunk(self, choice: Body) -> Body:
        out: Body = {
            "id": self._id,
            "object": "chat.completion.chunk" if self._chat else "text_completion",
            "created": self._created,
            "model": self._model,
            "choices": [choice],
        }
        if self._usage:
            out["usage"] = None
        return out

    def feed(self, chunk: JSONMap) -> list[Body]:
        _raise_stream_error(chunk)
        if self.done:
            return []
        content, thinking, calls = _ollama_parts(chunk)
        done = chunk.get("done") is True
        if self._chat:
            delta: Body = {}
            if not self._started:
                delta["role"] = "assistant"
                delta["content"] = content
            elif content:
                delta["content"] = content
            if thinking:
                delta["reasoning_content"] = thinking
            if calls:
                base = self._calls
                delta["tool_calls"] = [
                    {
                        "index": base + j,
                        **_ollama_call_to_openai(c, f"call_{self._suffix}_{base + j}"),
                    }
                    for j, c in enumerate(calls)
                ]
                self._calls += len(calls)
            if not done and not delta:
                return []
            self._started = True
            finish = _finish_reason(chunk.get("done_reason"), self._calls > 0) if done else None
            out = [
                self._chunk({"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish})
            ]
        else:
            if not done and not content:
                return []
            self._started = True
            finish = _finish_reason(chunk.get("done_reason"), False) if done else None
            out = [
                self._chunk(
                    {"text": content, "index": 0, "logprobs": None, "finish_reason": finish}
                )
            ]
        if done:
            self.done = True
            if self._usage:
                out.append(self._usage_chunk(_openai_usage(chunk)))
        return out

    def _usage_chunk(self, usage: Body) -> Body:
        return {
            "id": self._id,
            "object": "chat.completion.chunk" if self._chat else "text_completion",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": usage,
        }

    def finish(self) -> list[Body]:
        if self.done:
            return []
        return self.feed({"done": True, "done_reason": "stop"})


class OpenAIToOllamaStream:
    """OpenAI SSE chunk objects (chat or completion) -> Ollama NDJSON lines.

    ``kind`` "chat" yields /api/chat lines (``message.content``), "generate"
    yields /api/generate lines (``response``). Every content (or reasoning)
    delta gives one ``done: false`` line. Tool call fragments are accumulated
    and emitted as whole calls in one line when the choice finishes. The final
    ``done: true`` line (done_reason, eval counts from the usage chunk, eval
    durations from llama.cpp ``timings``) is emitted as soon as both the
    finish_reason and the usage are known, else by ``finish()``. An
    ``{"error": ...}`` chunk raises UpstreamError; tool call arguments that are
    not a JSON object raise TranslationError.
    """

    __slots__ = ("_chat", "_finish", "_model", "_timings", "_tools", "_usage", "created_at", "done")

    def __init__(self, kind: Literal["chat", "generate"], *, model: str, created_at: str) -> None:
        self._chat = kind == "chat"
        self._model = model
        self.created_at = created_at  # the caller may update it between feeds
        self._tools: dict[int, list[str]] = {}  # index -> [id, name, *argument fragments]
        self._finish: object = None
        self._usage: JSONMap | None = None
        self._timings: JSONMap | None = None
        self.done = False

    def _line(self, content: str, thinking: str) -> Body:
        if self._chat:
            message: Body = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            return {
                "model": self._model,
                "created_at": self.created_at,
                "message": message,
                "done": False,
            }
        line: Body = {
            "model": self._model,
            "created_at": self.created_at,
            "response": content,
            "done": False,
        }
        if thinking:
            line["thinking"] = thinking
        return line

    def feed(self, chunk: JSONMap) -> list[Body]:
        _raise_stream_error(chunk)
        if self.done:
            return []
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage
        timings = chunk.get("timings")
        if isinstance(timings, Mapping):
            self._timings = timings
        out: list[Body] = []
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                content = _s(delta.get("content"))
                thinking = _s(delta.get("reasoning_content")) or _s(delta.get("reasoning"))
                tool_calls = delta.get("tool_calls")
                if tool_calls:
                    for tc in _maps(tool_calls):
                        self._add_tool_fragment(tc)
            else:
                content, thinking = _s(choice.get("text")), ""
            if content or thinking:
                out.append(self._line(content, thinking))
            finish = choice.get("finish_reason")
            if finish:
                self._finish = finish
                out.extend(self._flush_tools())
        if self._finish is not None and self._usage is not None:
            out.append(self._done_line(None))
        return out

    def _add_tool_fragment(self, tc: JSONMap) -> None:
        idx = _int_or_none(tc.get("index"))
        if idx is None:
            idx = len(self._tools)
        acc = self._tools.get(idx)
        if acc is None:
            acc = self._tools[idx] = ["", ""]
        if isinstance(tc.get("id"), str):
            acc[0] = tc["id"]
        fn = tc.get("function")
        if isinstance(fn, Mapping):
            if isinstance(fn.get("name"), str):
                acc[1] += fn["name"]
            args = fn.get("arguments")
            if isinstance(args, str):
                acc.append(args)
            elif isinstance(args, Mapping):
                acc.append(json.dumps(args))

    def _flush_tools(self) -> list[Body]:
        if not self._tools:
            return []
        calls: list[Body] = []
        for idx in sorted(self._tools):
            acc = self._tools[idx]
            call: Body = {
                "function": {
                    "name": acc[1],
                    "arguments": _parse_arguments(
                        "".join(acc[2:]), f"tool_calls[{idx}].function.arguments"
                    ),
                }
            }
            if acc[0]:
                call["id"] = acc[0]
            calls.append(call)
        self._tools = {}
        if not self._chat:
            return []  # /api/generate has no tool calls
        line = self._line("", "")
        line["message"]["tool_calls"] = calls
        return [line]

    def _done_line(self, total_duration: int | None) -> Body:
        self.done = True
        line: Body = {"model": self._model, "created_at": self.created_at}
        if self._chat:
            line["message"] = {"role": "assistant", "content": ""}
        else:
            line["response"] = ""
        line["done"] = True
        line["done_reason"] = _done_reason(self._finish)
        line.update(_ollama_metrics(self._usage, self._timings, total_duration))
        return line

    def finish(self, total_duration: int | None = None) -> list[Body]:
        """Close the stream: pending tool calls, then the ``done: true`` line.

        ``total_duration`` (ns) is what the caller measured, if anything.
        """
        if self.done:
            return []
        out = self._flush_tools()
        out.append(self._done_line(total_duration))
        return out
