"""The Anthropic Messages API as a client dialect: requests in, OpenAI chat out.

``POST /v1/messages`` bodies are checked and translated into OpenAI chat
completions bodies, the proxy's canonical form (the backend adapters take it
from there), in one walk that also reads what the router needs. Answers come
back through :mod:`.anthropic_replies` (``message_from_openai`` for a whole
answer, ``MessageStream`` for a stream). Pure functions: no I/O, no clock.

Public API
    parse_messages(body)     -> (OpenAI chat body, RouteRequest); BadRequest names the problem
    count_tokens(body)       -> ``{"input_tokens": n}`` for /v1/messages/count_tokens
    thinking_requested(body) did the client ask for extended thinking
    error_body(status, msg)  Anthropic's error object, its ``type`` chosen by the status
    error_type(status)       that ``type`` alone
    sse_error(msg, type)     bytes: ``event: error`` (a stream that fails after it started)
    message_from_openai, MessageStream   (re-exported from .anthropic_replies)

Decisions
    * Text documents (``text`` and ``content`` sources) become text; PDFs
      (base64 or URL) and Files API references (``file`` sources, ``file_id``)
      are refused with a 400: no backend here reads PDFs, and traywire has no
      file store.
    * ``tool_result`` blocks become ``tool`` messages placed before the rest of
      their user turn (OpenAI wants them right after the assistant's calls);
      images in a tool result move to that user turn; ``is_error`` prefixes
      the text with ``"Error: "``.
    * ``thinking``/``redacted_thinking`` blocks of assistant turns are dropped
      (their signatures mean nothing to another model); the ``thinking``
      setting itself is ignored in the request, and when it is enabled the
      model's reasoning comes back as ``thinking`` blocks.
    * Server tools (``web_search_*``, ``code_execution_*``, ``bash_*``,
      ``text_editor_*``, ``computer_*``...), server-tool blocks and
      ``mcp_servers`` are refused: nothing here runs them.
    * ``top_k`` is kept as a ``top_k`` extension field; ``metadata``,
      ``cache_control``, ``service_tier``, ``container``, ``context_management``
      and unknown fields are ignored. ``output_config.format`` (and the beta
      ``output_format``) json_schema becomes ``response_format``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from ...core import fields
from ...core.tokens import count_text, estimate
from ...types import RouteRequest
from .anthropic_replies import MessageStream, message_from_openai
from .chatparts import named_sse
from .chatrequest import stream_fields, tool_function

__all__ = [
    "MessageStream",
    "count_tokens",
    "error_body",
    "error_type",
    "message_from_openai",
    "parse_messages",
    "sse_error",
    "thinking_requested",
]

Body = dict[str, Any]

# =========================================================================== errors

_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status (its errors page; 503, which
    traywire answers when no backend can serve, reads as overloaded)."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str) -> Body:
    """``{"type": "error", "error": {"type", "message"}}`` for an HTTP status."""
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def sse_error(message: str, error_type: str = "api_error") -> bytes:
    """``event: error`` with Anthropic's error object: a stream that fails mid-way."""
    return named_sse("error", {"type": "error", "error": {"type": error_type, "message": message}})


# =========================================================================== requests

_IMAGE_TYPES: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")
_CLIENT_TOOL_TYPES: Final = (None, "custom")
_TOOL_CHOICES: Final = ("auto", "any", "tool", "none")
_DROPPED_BLOCKS: Final = ("thinking", "redacted_thinking")


class _Walk:
    """What the walk over a Messages body gathers besides the chat messages."""

    __slots__ = ("images", "last_user", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.last_user = ""
        self.images = 0


def _text_block(block: Mapping[str, Any], path: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        fields.fail(f"{path}.text", f"expected a string, got {fields.tname(text)}")
    return text


def _source(block: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], object]:
    """A block's ``source`` object, and its type."""
    src = block.get("source")
    if not isinstance(src, dict):
        fields.fail(f"{path}.source", f"expected an object, got {fields.tname(src)}")
    return src, src.get("type")


def _image_url(block: Mapping[str, Any], path: str) -> str:
    src, stype = _source(block, path)
    if stype == "base64":
        media = src.get("media_type")
        if media not in _IMAGE_TYPES:
            fields.fail(f"{path}.source.media_type", f"expected one of {', '.join(_IMAGE_TYPES)}")
        data = src.get("data")
        if not isinstance(data, str) or not data:
            fields.fail(f"{path}.source.data", "required non-empty base64 string")
        return f"data:{media};base64,{data}"
    if stype == "url":
        url = src.get("url")
        if not isinstance(url, str) or not url:
            fields.fail(f"{path}.source.url", "required non-empty string")
        return url
    if stype == "file":
        fields.fail(
            f"{path}.source",
            "file sources (Files API ids) are not supported: traywire keeps no files; "
            "send the image as base64 or a URL",
        )
    fields.fail(f"{path}.source.type", f'expected "base64" or "url", got {_tname_or_repr(stype)}')


def _tname_or_repr(v: object) -> str:
    return repr(v) if isinstance(v, str) else fields.tname(v)


def _document_text(block: Mapping[str, Any], path: str) -> str:
    src, stype = _source(block, path)
    if stype == "text":
        data = src.get("data")
        if not isinstance(data, str):
            fields.fail(f"{path}.source.data", f"expected a string, got {fields.tname(data)}")
        text = data
    elif stype == "content":
        content = src.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = "\n".join(
                _text_blocks(
                    content,
                    f"{path}.source.content",
                    "expected a text block (images inside documents are not supported)",
                )
            )
        else:
            fields.fail(
                f"{path}.source.content",
                f"expected a string or a list, got {fields.tname(content)}",
            )
    elif stype in ("base64", "url"):
        fields.fail(
            f"{path}.source",
            "PDF documents are not supported: traywire's backends read text only; "
            "send the document's text (a text source) instead",
        )
    elif stype == "file":
        fields.fail(f"{path}.source", "file sources (Files API ids) are not supported")
    else:
        fields.fail(
            f"{path}.source.type", f'expected "text" or "content", got {_tname_or_repr(stype)}'
        )
    fields.opt_str(block, "title", f"{path}.title")
    fields.opt_str(block, "context", f"{path}.context")
    head = [h for h in (block.get("title"), block.get("context")) if h]
    return "\n".join([*head, text]) if head else text


def _text_blocks(blocks: list[Any], path: str, not_text: str) -> list[str]:
    """The texts of a list of text blocks (``not_text``: what is said of any other)."""
    texts = []
    for k, b in enumerate(blocks):
        p = f"{path}[{k}]"
        if not isinstance(b, dict) or b.get("type") != "text":
            fields.fail(p, not_text)
        texts.append(_text_block(b, p))
    return texts


def _search_result_text(block: Mapping[str, Any], path: str) -> str:
    fields.opt_str(block, "title", f"{path}.title")
    fields.opt_str(block, "source", f"{path}.source")
    content = block.get("content")
    if not isinstance(content, list):
        fields.fail(
            f"{path}.content", f"expected a list of text blocks, got {fields.tname(content)}"
        )
    parts = [x for x in (block.get("title"), block.get("source")) if x]
    parts += _text_blocks(content, f"{path}.content", "expected a text block")
    return "\n".join(parts)


def _block_type(block: object, path: str) -> str:
    if not isinstance(block, dict):
        fields.fail(path, f"expected a content block object, got {fields.tname(block)}")
    btype = block.get("type")
    if not isinstance(btype, str):
        fields.fail(f"{path}.type", "required string")
    return btype


def _source_block(
    btype: str,
    block: Mapping[str, Any],
    path: str,
    walk: _Walk,
    texts: list[str],
    images: list[Body],
) -> bool:
    """A block a user turn and a tool result both take (text, image, document,
    search result), added to ``texts`` or ``images``; False for any other."""
    if btype == "text":
        texts.append(_text_block(block, path))
    elif btype == "image":
        images.append({"type": "image_url", "image_url": {"url": _image_url(block, path)}})
        walk.images += 1
    elif btype == "document":
        texts.append(_document_text(block, path))
    elif btype == "search_result":
        texts.append(_search_result_text(block, path))
    else:
        return False
    return True


def _tool_result(block: Mapping[str, Any], path: str, walk: _Walk, images: list[Body]) -> Body:
    tid = fields.name_str(block, "tool_use_id", f"{path}.tool_use_id")
    fields.opt_bool(block, "is_error", f"{path}.is_error")
    content = block.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, b in enumerate(content):
            p = f"{path}.content[{k}]"
            btype = _block_type(b, p)
            if not _source_block(btype, b, p, walk, texts, images):
                fields.fail(f"{p}.type", f"{btype!r} blocks are not supported in tool results")
    elif content is not None:
        fields.fail(
            f"{path}.content", f"expected a string or a list of blocks, got {fields.tname(content)}"
        )
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    walk.texts.append(text)
    return {"role": "tool", "tool_call_id": tid, "content": text}


def _user(content: list[Any], path: str, walk: _Walk) -> list[Body]:
    tool_msgs: list[Body] = []
    texts: list[str] = []
    images: list[Body] = []
    tool_images: list[Body] = []
    for k, block in enumerate(content):
        p = f"{path}[{k}]"
        btype = _block_type(block, p)
        if _source_block(btype, block, p, walk, texts, images):
            continue
        if btype == "tool_result":
            tool_msgs.append(_tool_result(block, p, walk, tool_images))
        elif btype == "tool_use":
            fields.fail(f"{p}.type", "tool_use blocks belong in assistant turns")
        elif btype in _DROPPED_BLOCKS:
            continue
        else:
            fields.fail(f"{p}.type", f"{btype!r} blocks are not supported by traywire")
    out = tool_msgs
    text = "\n".join(texts)
    walk.texts.append(text)
    if texts or images or tool_images:
        walk.last_user = text
        if images or tool_images:
            parts: list[Body] = [{"type": "text", "text": text}] if text else []
            out.append({"role": "user", "content": parts + images + tool_images})
        else:
            out.append({"role": "user", "content": text})
    return out


def _assistant(content: list[Any], path: str, walk: _Walk) -> Body:
    texts: list[str] = []
    calls: list[Body] = []
    for k, block in enumerate(content):
        p = f"{path}[{k}]"
        btype = _block_type(block, p)
        if btype == "text":
            texts.append(_text_block(block, p))
        elif btype == "tool_use":
            cid = fields.name_str(block, "id", f"{p}.id")
            name = fields.name_str(block, "name", f"{p}.name")
            args = block.get("input", {})
            if not isinstance(args, dict):
                fields.fail(f"{p}.input", f"expected an object, got {fields.tname(args)}")
            arguments = json.dumps(args, ensure_ascii=False)
            walk.texts.append(arguments)
            calls.append(
                {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}
            )
        elif btype in _DROPPED_BLOCKS:
            continue
        else:
            fields.fail(f"{p}.type", f"{btype!r} blocks are not supported in assistant turns")
    text = "\n".join(texts)
    walk.texts.append(text)
    msg: Body = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _system_text(content: object, path: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_blocks(content, path, 'expected a "text" block'))
    fields.fail(path, f"expected a string or a list of text blocks, got {fields.tname(content)}")


def _add_system(out: list[Body], text: str) -> None:
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{text}"
    else:
        out.insert(0, {"role": "system", "content": text})


def _messages(b: Mapping[str, Any], walk: _Walk) -> list[Body]:
    out: list[Body] = []
    system = b.get("system")
    if system is not None:
        if isinstance(system, str):
            stext = system
        elif isinstance(system, list):
            parts = []
            for k, block in enumerate(system):
                p = f"system[{k}]"
                if _block_type(block, p) != "text":
                    fields.fail(f"{p}.type", 'expected "text"')
                parts.append(_text_block(block, p))
            stext = "\n".join(parts)
        else:
            fields.fail(
                "system", f"expected a string or a list of text blocks, got {fields.tname(system)}"
            )
        if stext:
            walk.texts.append(stext)
            out.append({"role": "system", "content": stext})
    msgs = b.get("messages")
    if not isinstance(msgs, list) or not msgs:
        fields.fail("messages", "must be a non-empty list")
    for path, msg in fields.objects(msgs, "messages", "a message object"):
        role = msg.get("role")
        if role not in ("user", "assistant", "system"):
            fields.fail(
                f"{path}.role",
                f'expected "user", "assistant" or "system", got {_tname_or_repr(role)}',
            )
        content = msg.get("content")
        if role == "system":
            # Claude Code puts system reminders among the turns: they join the
            # system prompt (some chat templates take a system turn only first)
            text = _system_text(content, f"{path}.content")
            if text:
                walk.texts.append(text)
                _add_system(out, text)
            continue
        if isinstance(content, str):
            walk.texts.append(content)
            if role == "user":
                walk.last_user = content
            out.append({"role": role, "content": content})
        elif isinstance(content, list):
            if role == "user":
                out.extend(_user(content, f"{path}.content", walk))
            else:
                out.append(_assistant(content, f"{path}.content", walk))
        else:
            fields.fail(
                f"{path}.content",
                f"expected a string or a list of content blocks, got {fields.tname(content)}",
            )
    if all(m["role"] == "system" for m in out):
        fields.fail("messages", "hold no content to send (every turn is empty)")
    return out


def _tools(b: Mapping[str, Any], out: Body) -> list[str]:
    """Translate ``tools`` into ``out``; the names of the tools."""
    chat_tools: list[Body] = []
    names: list[str] = []
    for p, tool in fields.objects(fields.opt_list(b, "tools", "tools") or (), "tools"):
        ttype = tool.get("type")
        if ttype not in _CLIENT_TOOL_TYPES:
            fields.fail(
                f"{p}.type",
                f"server tool {_tname_or_repr(ttype)} is not supported: traywire serves "
                "client tools only (name, description, input_schema)",
            )
        fn = tool_function(tool, p)
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            fields.fail(
                f"{p}.input_schema", f"expected a JSON schema object, got {fields.tname(schema)}"
            )
        fn["parameters"] = schema
        chat_tools.append({"type": "function", "function": fn})
        names.append(fn["name"])
    if chat_tools:
        out["tools"] = chat_tools
    return names


def _tool_choice(b: Mapping[str, Any], out: Body, names: list[str]) -> bool:
    """Translate ``tool_choice``; False if it turns tools off."""
    tc = fields.opt_obj(b, "tool_choice", "tool_choice")
    if tc is None:
        return True
    ttype = tc.get("type")
    if ttype not in _TOOL_CHOICES:
        fields.fail(
            "tool_choice.type",
            f'expected "auto", "any", "tool" or "none", got {_tname_or_repr(ttype)}',
        )
    fields.opt_bool(tc, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use")
    if ttype == "tool":
        name = tc.get("name")
        if not isinstance(name, str) or not name:
            fields.fail("tool_choice.name", "required string")
        if name not in names:
            fields.fail("tool_choice.name", f"no tool named {name!r} in tools")
    if not names:
        return bool(ttype != "none")
    if ttype == "auto":
        out["tool_choice"] = "auto"
    elif ttype == "any":
        out["tool_choice"] = "required"
    elif ttype == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": tc["name"]}}
    else:
        out["tool_choice"] = "none"
    if tc.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return bool(ttype != "none")


def _output_format(b: Mapping[str, Any], out: Body) -> bool:
    """``output_config.format`` (or the beta ``output_format``) -> ``response_format``."""
    fmt: object = None
    path = "output_format"
    oc = fields.opt_obj(b, "output_config", "output_config")
    if oc is not None and oc.get("format") is not None:
        fmt, path = oc["format"], "output_config.format"
    elif b.get("output_format") is not None:
        fmt = b["output_format"]
    if fmt is None:
        return False
    if not isinstance(fmt, dict):
        fields.fail(path, f"expected an object, got {fields.tname(fmt)}")
    if fmt.get("type") != "json_schema":
        fields.fail(f"{path}.type", 'expected "json_schema"')
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        fields.fail(f"{path}.schema", f"expected a JSON schema object, got {fields.tname(schema)}")
    out["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    return True


def _sampling(b: Mapping[str, Any], out: Body) -> None:
    fields.opt_num(b, "temperature", "temperature", 0, 1)
    fields.opt_num(b, "top_p", "top_p", 0, 1)
    fields.opt_int(b, "top_k", "top_k", 0)
    stops = b.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list):
            fields.fail("stop_sequences", f"expected a list of strings, got {fields.tname(stops)}")
        for k, s in enumerate(stops):
            if not isinstance(s, str):
                fields.fail(f"stop_sequences[{k}]", f"expected a string, got {fields.tname(s)}")
        if stops:
            out["stop"] = list(stops)
    for key in ("temperature", "top_p", "top_k"):
        if b.get(key) is not None:
            out[key] = b[key]


def _thinking(b: Mapping[str, Any]) -> None:
    th = fields.opt_obj(b, "thinking", "thinking")
    if th is None:
        return
    if not isinstance(th.get("type"), str):
        fields.fail("thinking.type", "required string")
    fields.opt_int(th, "budget_tokens", "thinking.budget_tokens", 1)


def thinking_requested(body: object) -> bool:
    """Did the client turn extended thinking on (``thinking.type`` enabled or adaptive)?"""
    th = body.get("thinking") if isinstance(body, dict) else None
    return isinstance(th, dict) and th.get("type") in ("enabled", "adaptive")


def _parse(b: dict[str, Any], *, count_only: bool) -> tuple[Body, RouteRequest, list[str]]:
    model = fields.model_name(b)
    if not count_only:
        if b.get("max_tokens") is None:
            fields.fail("max_tokens", "required integer")
        fields.opt_int(b, "max_tokens", "max_tokens", 1)
    walk = _Walk()
    messages = _messages(b, walk)
    out: Body = {"model": model, "messages": messages}
    if not count_only:
        out["max_tokens"] = b["max_tokens"]
    _sampling(b, out)
    stream_fields(b, out, allowed=not count_only)
    names = _tools(b, out)
    tools_on = _tool_choice(b, out, names)
    structured = _output_format(b, out)
    _thinking(b)
    fields.opt_obj(b, "metadata", "metadata")
    servers = b.get("mcp_servers")
    if servers:
        fields.fail(
            "mcp_servers", "MCP servers are not supported: traywire does not run remote tools"
        )
    route = RouteRequest(
        model,
        "\n".join(walk.texts),
        walk.last_user,
        None if count_only else b["max_tokens"],
        len(messages),
        "chat",
        walk.images,
        bool(names) and tools_on,
        structured,
    )
    return out, route, names


def parse_messages(body: object) -> tuple[Body, RouteRequest]:
    """Check a ``/v1/messages`` body and translate it; `BadRequest` names the first problem.

    Returns the OpenAI chat completions body (``stream`` set explicitly;
    streaming asks for ``stream_options.include_usage``) and the request as the
    router sees it.
    """
    out, route, _names = _parse(fields.body_object(body), count_only=False)
    return out, route


def count_tokens(body: object) -> Body:
    """``/v1/messages/count_tokens``: ``{"input_tokens": n}`` by traywire's estimate
    (``max_tokens`` is not needed; tool definitions count as their JSON text)."""
    out, route, _names = _parse(fields.body_object(body), count_only=True)
    n = estimate(route)
    if "tools" in out:
        n += count_text(json.dumps(out["tools"], ensure_ascii=False, separators=(",", ":")))
    return {"input_tokens": n}
