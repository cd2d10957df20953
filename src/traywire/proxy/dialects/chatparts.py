"""Reading OpenAI chat completions and chunks, for the client dialects that are
served through the chat shape (Anthropic Messages, OpenAI Responses).

Upstream bodies are not validated: everything here reads defensively and
treats fields of the wrong type as absent, as the rest of the dialects do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from .common import _int_or_none, _maps, _s
from .wire import JSONMap, UpstreamError, _dumps, upstream_error_message


def named_sse(event: str, obj: object) -> bytes:
    """One SSE event with an ``event:`` name: ``event: X\\ndata: <json>\\n\\n``."""
    return b"event: " + event.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def raise_stream_error(chunk: JSONMap) -> None:
    """An ``{"error": ...}`` chunk in an upstream stream raises UpstreamError."""
    if chunk.get("error") is not None:
        raise UpstreamError(upstream_error_message(chunk))


class ToolFragment(NamedTuple):
    # the upstream ``index`` of the call
    pos: int
    id: str | None
    name: str | None
    arguments: str


class ChunkParts(NamedTuple):
    """What one ``chat.completion.chunk`` carries for choice 0 (and its usage)."""

    content: str
    reasoning: str
    tools: list[ToolFragment]
    finish_reason: str | None
    # vLLM's ``stop_reason``: the stop string that matched (or a token id)
    matched_stop: object
    usage: tuple[int, int] | None


def usage_of(obj: JSONMap) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) of an OpenAI body's ``usage``, if any."""
    usage = obj.get("usage")
    if not isinstance(usage, Mapping):
        return None
    p = _int_or_none(usage.get("prompt_tokens")) or 0
    c = _int_or_none(usage.get("completion_tokens")) or 0
    return p, c


def read_chunk(chunk: JSONMap) -> ChunkParts:
    content = reasoning = ""
    tools: list[ToolFragment] = []
    finish: str | None = None
    matched: object = None
    for choice in _maps(chunk.get("choices")):
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta")
        if isinstance(delta, Mapping):
            content = _s(delta.get("content"))
            reasoning = _s(delta.get("reasoning_content")) or _s(delta.get("reasoning"))
            for n, tc in enumerate(_maps(delta.get("tool_calls"))):
                tools.append(_fragment(tc, n))
            fc = delta.get("function_call")
            if isinstance(fc, Mapping) and not tools:
                tools.append(_fragment({"function": fc}, 0))
        fr = choice.get("finish_reason")
        if isinstance(fr, str) and fr:
            finish = fr
            matched = choice.get("stop_reason")
    return ChunkParts(content, reasoning, tools, finish, matched, usage_of(chunk))


def _fragment(tc: JSONMap, default_index: int) -> ToolFragment:
    idx = _int_or_none(tc.get("index"))
    fn = tc.get("function")
    fn = fn if isinstance(fn, Mapping) else {}
    args = fn.get("arguments")
    if isinstance(args, Mapping):  # (some servers send an object)
        args = json.dumps(args, ensure_ascii=False)
    name = fn.get("name")
    return ToolFragment(
        default_index if idx is None else idx,
        tc["id"] if isinstance(tc.get("id"), str) and tc["id"] else None,
        name if isinstance(name, str) and name else None,
        args if isinstance(args, str) else "",
    )


class ChatMessage(NamedTuple):
    """Choice 0 of a ``chat.completion``."""

    content: str
    reasoning: str
    # (id or "", name, arguments as text)
    tool_calls: list[tuple[str, str, str]]
    finish_reason: str | None
    matched_stop: object
    usage: tuple[int, int] | None


def read_completion(resp: JSONMap) -> ChatMessage:
    choice: JSONMap = next((c for c in _maps(resp.get("choices")) if c.get("index", 0) == 0), {})
    msg = choice.get("message")
    msg = msg if isinstance(msg, Mapping) else {}
    calls: list[tuple[str, str, str]] = []
    raw_calls = _maps(msg.get("tool_calls"))
    fc = msg.get("function_call")
    if not raw_calls and isinstance(fc, Mapping):
        raw_calls = [{"function": fc}]
    for tc in raw_calls:
        frag = _fragment(tc, len(calls))
        calls.append((frag.id or "", frag.name or "", frag.arguments))
    fr = choice.get("finish_reason")
    return ChatMessage(
        _s(msg.get("content")),
        _s(msg.get("reasoning_content")) or _s(msg.get("reasoning")),
        calls,
        fr if isinstance(fr, str) and fr else None,
        choice.get("stop_reason"),
        usage_of(resp),
    )


class ChunkStream:
    """What the fronts' streams (Anthropic Messages, Responses) share: OpenAI
    ``chat.completion.chunk`` objects in, the front's events out.

    `feed` writes the stream's opening (`_start`, once), then what one chunk
    carries (`_content`: its text, reasoning and tool calls); it keeps the
    backend's usage and finish reason (`_finishing` runs when the finish reason
    comes), and writes the end (`_end`) once both have come. `finish` writes
    the opening and the end of a stream whose upstream ended cleanly without
    them. Subclasses set ``done`` when they wrote the end.
    """

    __slots__ = (
        "_finish",
        "_started",
        "_usage_seen",
        "done",
        "finished",
        "tokens_in",
        "tokens_out",
    )

    def __init__(self) -> None:
        self._started = False
        self._finish: str | None = None
        self._usage_seen = False
        self.finished = False
        self.done = False
        self.tokens_in = 0
        self.tokens_out = 0

    def _start(self, out: list[bytes]) -> None:
        raise NotImplementedError

    def _content(self, out: list[bytes], parts: ChunkParts) -> None:
        raise NotImplementedError

    def _finishing(self, out: list[bytes], parts: ChunkParts) -> None:
        """The finish reason came (``parts`` holds it)."""

    def _end(self, out: list[bytes]) -> None:
        raise NotImplementedError

    def _begin(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            self._start(out)

    def feed(self, chunk: JSONMap) -> bytes:
        raise_stream_error(chunk)
        if self.done:
            return b""
        parts = read_chunk(chunk)
        out: list[bytes] = []
        self._begin(out)
        self._content(out, parts)
        if parts.usage is not None:
            self.tokens_in, self.tokens_out = parts.usage
            self._usage_seen = True
        if parts.finish_reason is not None:
            self._finish = parts.finish_reason
            self.finished = True
            self._finishing(out, parts)
        if self.finished and self._usage_seen:
            self._end(out)
        return b"".join(out)

    def finish(self) -> bytes:
        """The end of a stream whose upstream ended cleanly (``[DONE]`` or EOF)."""
        if self.done:
            return b""
        out: list[bytes] = []
        self._begin(out)
        self._end(out)
        return b"".join(out)


class ToolAccumulator:
    """Tool call fragments of a stream, gathered per upstream index, in order."""

    __slots__ = ("calls", "order")

    def __init__(self) -> None:
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, *argument fragments]
        self.order: list[int] = []

    def add(self, frag: ToolFragment) -> bool:
        """Add a fragment; True if it opened a new call."""
        acc = self.calls.get(frag.pos)
        new = acc is None
        if acc is None:
            acc = self.calls[frag.pos] = ["", ""]
            self.order.append(frag.pos)
        if frag.id:
            acc[0] = frag.id
        if frag.name:
            # a name arrives whole in practice; some servers repeat it on every fragment
            acc[1] = frag.name if acc[1] in ("", frag.name) else acc[1] + frag.name
        if frag.arguments:
            acc.append(frag.arguments)
        return new

    def pop_all(self) -> list[tuple[str, str, str]]:
        out = [(a[0], a[1], "".join(a[2:])) for a in (self.calls[i] for i in self.order)]
        self.calls.clear()
        self.order.clear()
        return out


def tool_input(arguments: str) -> dict[str, Any]:
    """Tool call arguments (JSON text) as the object Anthropic's ``input`` must be.

    Empty -> ``{}``; a JSON object -> itself; a JSON string that holds a JSON
    object (arguments encoded twice, as some models do) -> that object;
    anything else (invalid JSON, an array, a number) -> ``{"_raw": "<the text>"}``
    so that the client's tool sees what the model wrote instead of the whole
    answer being lost.
    """
    if not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    if isinstance(parsed, str):
        try:
            inner = json.loads(parsed)
        except ValueError:
            inner = None
        if isinstance(inner, dict):
            return inner
    if isinstance(parsed, dict):
        return parsed
    return {"_raw": arguments}


def tool_input_json(arguments: str) -> str:
    """:func:`tool_input` as JSON text: the model's own text when it is a JSON object."""
    text = arguments.strip()
    if text.startswith("{"):
        try:
            if isinstance(json.loads(text), dict):
                return text
        except ValueError:
            pass
    return json.dumps(tool_input(arguments), ensure_ascii=False)


def id_suffix(any_id: str) -> str:
    """The part of an id after its prefix (``resp_abc`` -> ``abc``, ``chatcmpl-x`` -> ``x``)."""
    for sep in ("_", "-"):
        if sep in any_id:
            return any_id.split(sep, 1)[1] or any_id
    return any_id
