"""Responses API answers from OpenAI chat answers: whole and streamed.

See :mod:`.responses_api` for the decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .chatparts import (
    ChunkParts,
    ChunkStream,
    ToolFragment,
    id_suffix,
    named_sse,
    read_completion,
)
from .wire import JSONMap

Body = dict[str, Any]


def _echo_tools(request: JSONMap) -> list[Body]:
    out: list[Body] = []
    tools = request.get("tools")
    for t in tools if isinstance(tools, list) else ():
        if isinstance(t, Mapping) and t.get("type") == "function":
            out.append(
                {
                    "type": "function",
                    "name": t.get("name"),
                    "description": t.get("description"),
                    "parameters": t.get("parameters"),
                    "strict": t.get("strict"),
                }
            )
    return out


def usage_object(tokens_in: int, tokens_out: int) -> Body:
    return {
        "input_tokens": tokens_in,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": tokens_out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens_in + tokens_out,
    }


def response_object(
    *,
    response_id: str,
    model: str,
    created_at: int | float,
    status: str,
    output: list[Body],
    usage: Body | None,
    request: JSONMap | None = None,
    error: Body | None = None,
    incomplete: str | None = None,
) -> Body:
    """The ``Response`` envelope, with what the API echoes from ``request``."""
    req: JSONMap = request or {}
    text = req.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    tc = req.get("tool_choice")
    ptc = req.get("parallel_tool_calls")
    metadata = req.get("metadata")
    instructions = req.get("instructions")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": instructions if isinstance(instructions, str) else None,
        "max_output_tokens": req.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": ptc if isinstance(ptc, bool) else True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": req.get("temperature"),
        "text": {"format": dict(fmt) if isinstance(fmt, Mapping) else {"type": "text"}},
        "tool_choice": tc if isinstance(tc, (str, Mapping)) else "auto",
        "tools": _echo_tools(req),
        "top_p": req.get("top_p"),
        "truncation": "disabled",
        "usage": usage,
        "metadata": dict(metadata) if isinstance(metadata, Mapping) else {},
    }


def incomplete_reason(finish: str | None) -> str | None:
    """``incomplete_details.reason`` for an OpenAI ``finish_reason`` (None: completed)."""
    if finish == "length":
        return "max_output_tokens"
    if finish == "content_filter":
        return "content_filter"
    return None


def item_ids(response_id: str) -> tuple[str, str, str]:
    """Prefixes for output item ids: (reasoning, message, function call)."""
    suffix = id_suffix(response_id)
    return f"rs_{suffix}", f"msg_{suffix}", f"fc_{suffix}"


def call_id(upstream_id: str, response_id: str, n: int) -> str:
    return upstream_id or f"call_{id_suffix(response_id)}_{n}"


def message_item(item_id: str, text: str, status: str) -> Body:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [output_text_part(text)],
    }


def output_text_part(text: str) -> Body:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item_id: str, text: str, status: str) -> Body:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": status,
    }


def function_call_item(item_id: str, cid: str, name: str, arguments: str, status: str) -> Body:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": cid,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_from_openai(
    resp: JSONMap,
    *,
    model: str,
    response_id: str,
    created_at: int | float,
    request: JSONMap | None = None,
) -> Body:
    """An OpenAI ``chat.completion`` -> a Responses API ``Response`` object.

    ``request``: the client's Responses body, for the fields the API echoes.
    """
    m = read_completion(resp)
    reason = incomplete_reason(m.finish_reason)
    item_status = "incomplete" if reason else "completed"
    rs_id, msg_id, fc_id = item_ids(response_id)
    output: list[Body] = []
    if m.reasoning:
        output.append(reasoning_item(rs_id, m.reasoning, "completed"))
    if m.content or not m.tool_calls:
        output.append(message_item(msg_id, m.content, item_status))
    for n, (cid, name, args) in enumerate(m.tool_calls):
        output.append(
            function_call_item(
                f"{fc_id}_{n}", call_id(cid, response_id, n), name, args, "completed"
            )
        )
    tin, tout = m.usage or (0, 0)
    return response_object(
        response_id=response_id,
        model=model,
        created_at=created_at,
        status="incomplete" if reason else "completed",
        output=output,
        usage=usage_object(tin, tout),
        request=request,
        incomplete=reason,
    )


class _Open:
    """An output item being streamed: a message, a reasoning item or a function call."""

    __slots__ = ("call_id", "index", "item_id", "kind", "name", "parts")

    def __init__(self, kind: str, index: int, item_id: str, call_id: str = "", name: str = ""):
        self.kind = kind
        self.index = index
        self.item_id = item_id
        self.call_id = call_id
        self.name = name
        self.parts: list[str] = []

    def item(self, status: str) -> Body:
        text = "".join(self.parts)
        if self.kind == "message":
            return message_item(self.item_id, text, status)
        if self.kind == "reasoning":
            return reasoning_item(self.item_id, text, status)
        return function_call_item(self.item_id, self.call_id, self.name, text, status)


class ResponseStream(ChunkStream):
    """OpenAI ``chat.completion.chunk`` objects -> Responses API SSE bytes.

    ``feed(chunk)`` returns the bytes to send for one upstream chunk (possibly
    none); the first are ``response.created`` and ``response.in_progress``.
    Output items are streamed in order: a ``reasoning`` item (when the backend
    sends reasoning), a ``message`` (``output_item.added``,
    ``content_part.added``, ``output_text.delta``..., ``output_text.done``,
    ``content_part.done``, ``output_item.done``), ``function_call`` items
    (``output_item.added``, ``function_call_arguments.delta``...,
    ``function_call_arguments.done``, ``output_item.done``). Every event has
    its ``sequence_number``. The end — ``response.completed``, or
    ``response.incomplete`` when the answer was cut by the token limit or a
    content filter, carrying the whole response — goes out as soon as upstream
    gave both its finish reason and its usage, else from ``finish()`` (call it
    when upstream ended cleanly). ``error(message)`` ends a broken stream with
    an ``error`` event and ``response.failed``. ``done`` tells whether the
    stream was ended, ``finished`` whether upstream sent its finish reason;
    ``tokens_in``/``tokens_out`` are the backend's counts. An
    ``{"error": ...}`` chunk raises UpstreamError.
    """

    __slots__ = (
        "_calls",
        "_created_at",
        "_cur",
        "_ids",
        "_model",
        "_ncalls",
        "_output",
        "_request",
        "_seq",
        "response_id",
    )

    def __init__(
        self,
        *,
        model: str,
        response_id: str,
        created_at: int | float,
        request: JSONMap | None = None,
    ) -> None:
        super().__init__()
        self._model = model
        self.response_id = response_id
        self._created_at = created_at
        self._request = request
        self._ids = item_ids(response_id)
        self._seq = 0
        self._output: list[Body] = []  # finished items, and placeholders of open ones
        self._cur: _Open | None = None  # the open message or reasoning item
        self._calls: dict[int, _Open] = {}  # upstream tool index -> open function call
        self._ncalls = 0

    # ------------------------------------------------------------------ events

    def _ev(self, out: list[bytes], etype: str, fields: Body) -> None:
        out.append(named_sse(etype, {"type": etype, **fields, "sequence_number": self._seq}))
        self._seq += 1

    def _response(self, status: str, **kw: Any) -> Body:
        return response_object(
            response_id=self.response_id,
            model=self._model,
            created_at=self._created_at,
            status=status,
            request=self._request,
            **kw,
        )

    def _start(self, out: list[bytes]) -> None:
        resp = self._response("in_progress", output=[], usage=None)
        self._ev(out, "response.created", {"response": resp})
        self._ev(out, "response.in_progress", {"response": resp})

    def _added(self, out: list[bytes], item: _Open) -> None:
        self._output.append({})
        added = item.item("in_progress")
        if item.kind != "function_call":
            added["content"] = []
        self._ev(out, "response.output_item.added", {"output_index": item.index, "item": added})

    def _item_status(self) -> str:
        return "incomplete" if incomplete_reason(self._finish) else "completed"

    def _done_item(self, out: list[bytes], item: _Open, status: str) -> None:
        final = item.item(status)
        self._output[item.index] = final
        self._ev(out, "response.output_item.done", {"output_index": item.index, "item": final})

    def _part(self, kind: str, text: str) -> Body:
        if kind == "message":
            return output_text_part(text)
        return {"type": "reasoning_text", "text": text}

    def _close_cur(self, out: list[bytes]) -> None:
        cur = self._cur
        if cur is None:
            return
        self._cur = None
        text = "".join(cur.parts)
        where = {"item_id": cur.item_id, "output_index": cur.index, "content_index": 0}
        if cur.kind == "message":
            self._ev(out, "response.output_text.done", {**where, "text": text, "logprobs": []})
            status = self._item_status()
        else:
            self._ev(out, "response.reasoning_text.done", {**where, "text": text})
            status = "completed"
        self._ev(out, "response.content_part.done", {**where, "part": self._part(cur.kind, text)})
        self._done_item(out, cur, status)

    def _close_calls(self, out: list[bytes]) -> None:
        for call in self._calls.values():
            self._ev(
                out,
                "response.function_call_arguments.done",
                {
                    "item_id": call.item_id,
                    "output_index": call.index,
                    "arguments": "".join(call.parts),
                },
            )
            self._done_item(out, call, "completed")
        self._calls.clear()

    def _text(self, out: list[bytes], kind: str, text: str) -> None:
        cur = self._cur
        if cur is None or cur.kind != kind:
            self._close_cur(out)
            self._close_calls(out)
            n = len(self._output)
            base = self._ids[1] if kind == "message" else self._ids[0]
            item_id = f"{base}_{n}" if self._has(kind) else base
            cur = self._cur = _Open(kind, n, item_id)
            self._added(out, cur)
            self._ev(
                out,
                "response.content_part.added",
                {
                    "item_id": item_id,
                    "output_index": n,
                    "content_index": 0,
                    "part": self._part(kind, ""),
                },
            )
        cur.parts.append(text)
        where = {"item_id": cur.item_id, "output_index": cur.index, "content_index": 0}
        if kind == "message":
            self._ev(out, "response.output_text.delta", {**where, "delta": text, "logprobs": []})
        else:
            self._ev(out, "response.reasoning_text.delta", {**where, "delta": text})

    def _has(self, kind: str) -> bool:
        return any(item.get("type") == kind for item in self._output)

    def _tool(self, out: list[bytes], frag: ToolFragment) -> None:
        call = self._calls.get(frag.pos)
        if call is None:
            self._close_cur(out)
            n = self._ncalls
            self._ncalls += 1
            call = _Open(
                "function_call",
                len(self._output),
                f"{self._ids[2]}_{n}",
                call_id(frag.id or "", self.response_id, n),
                frag.name or "",
            )
            self._calls[frag.pos] = call
            self._added(out, call)
        elif frag.name and not call.name:
            call.name = frag.name
        if frag.arguments:
            call.parts.append(frag.arguments)
            self._ev(
                out,
                "response.function_call_arguments.delta",
                {"item_id": call.item_id, "output_index": call.index, "delta": frag.arguments},
            )

    def _end(self, out: list[bytes]) -> None:
        self._close_cur(out)
        self._close_calls(out)
        reason = incomplete_reason(self._finish)
        resp = self._response(
            "incomplete" if reason else "completed",
            output=list(self._output),
            usage=usage_object(self.tokens_in, self.tokens_out),
            incomplete=reason,
        )
        etype = "response.incomplete" if reason else "response.completed"
        self._ev(out, etype, {"response": resp})
        self.done = True

    # ------------------------------------------------------------------ API

    def _content(self, out: list[bytes], parts: ChunkParts) -> None:
        if parts.reasoning:
            self._text(out, "reasoning", parts.reasoning)
        if parts.content:
            self._text(out, "message", parts.content)
        for frag in parts.tools:
            self._tool(out, frag)

    def error(self, message: str, code: str = "server_error") -> bytes:
        """An ``error`` event then ``response.failed``: the end of a stream that broke.

        ``code`` should be one of the API's ``ResponseError`` codes
        (``server_error``, ``rate_limit_exceeded``, ``invalid_prompt``...).
        """
        if self.done:
            return b""
        out: list[bytes] = []
        self._begin(out)
        self._ev(out, "error", {"code": code, "message": message, "param": None})
        output = list(self._output)
        for item in (self._cur, *self._calls.values()):
            if item is not None:
                output[item.index] = item.item("incomplete")
        resp = self._response(
            "failed", output=output, usage=None, error={"code": code, "message": message}
        )
        self._ev(out, "response.failed", {"response": resp})
        self.done = True
        return b"".join(out)
