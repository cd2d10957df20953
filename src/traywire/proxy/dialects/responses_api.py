"""The OpenAI Responses API as a client dialect: requests in, OpenAI chat out.

``POST /v1/responses`` bodies are checked and translated into OpenAI chat
completions bodies, the proxy's canonical form, in one walk that also reads
what the router needs; answers come back as ``Response`` objects
(:func:`response_from_openai`) or Responses event streams
(:class:`.responses_api_replies.ResponseStream`). Pure functions: no I/O, no
clock (``created_at`` and ids come from the caller).

(Named ``responses_api``: :mod:`.responses` is the OpenAI ⇄ Ollama answers.)

Public API
    parse_responses(body)    -> (OpenAI chat body, RouteRequest); BadRequest names the problem
    response_from_openai(resp, *, model, response_id, created_at, request=None) -> Response
    response_object(...)     the ``Response`` envelope (also used by the stream)
    error_body(status, msg)  OpenAI's error object
    ResponseStream           (re-exported from .responses_api_replies)

Decisions
    * traywire keeps no conversation state. ``previous_response_id``,
      ``conversation``, ``item_reference`` items, stored ``prompt`` templates and
      ``background`` mode are refused with a 400 that says so. ``store`` is
      accepted and ignored (answers say ``"store": false``): the official SDK
      leaves it to the API's default (true) and Codex CLI sends it explicitly,
      and neither needs anything stored when it sends the whole conversation.
    * Function tools are offered to the model; other tool kinds - the
      built-in ones (``web_search``, ``file_search``, ``code_interpreter``,
      ``computer_use_preview``, ``image_generation``, ``local_shell``,
      ``shell``, ``apply_patch``, ``mcp``, ``custom``...) and Codex's
      ``namespace`` groups - are left out (the model does without them, as
      it would on a server that lacks them): agents such as Codex CLI always
      send some alongside their function tools. A ``tool_choice`` that
      names one is refused.
      ``allowed_tools`` narrows the tool list sent upstream.
    * Input items: messages (``input_text``, ``input_image`` by URL or data URL,
      ``output_text``/``refusal`` for assistant history), ``function_call``
      (merged into the assistant turn it follows), ``function_call_output``
      (a ``tool`` message; images in it move to a user turn right after).
      ``reasoning`` items and unknown item types are skipped. ``input_image``
      by ``file_id`` and ``input_file`` are refused: traywire has no file store
      and its backends read no PDFs. ``developer`` becomes ``system``.
    * ``max_output_tokens`` -> ``max_tokens``; ``text.format`` json_schema /
      json_object -> ``response_format``; ``reasoning``, ``include``,
      ``metadata``, ``prompt_cache_key``, ``truncation``, ``service_tier``,
      ``safety_identifier``, ``user`` and unknown fields are ignored.
    * Answers: ``finish_reason`` ``length`` -> status ``incomplete`` with
      ``incomplete_details.reason`` ``max_output_tokens``, ``content_filter``
      -> ``incomplete``/``content_filter``; otherwise ``completed``. The
      model's reasoning, when the backend returns it, is a ``reasoning`` item
      with ``reasoning_text`` content. Fields the API echoes from the request
      (instructions, tools, tool_choice, temperature, top_p,
      max_output_tokens, parallel_tool_calls, text, metadata) are echoed when
      the caller passes ``request``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ...core import fields
from ...types import RouteRequest
from .chatrequest import stream_fields, tool_function
from .responses_api_replies import ResponseStream, response_from_openai, response_object
from .wire import openai_error_body, openai_error_type

Body = dict[str, Any]

__all__ = [
    "ResponseStream",
    "error_body",
    "parse_responses",
    "response_from_openai",
    "response_object",
]


def error_body(status: int, message: str, *, param: str | None = None) -> Body:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}`` for an HTTP status."""
    return openai_error_body(message, error_type=openai_error_type(status), param=param)


# =========================================================================== requests

_STATELESS: Final = "traywire keeps no conversation state: send the whole conversation in input"
_MESSAGE_ROLES: Final = ("user", "assistant", "system", "developer")


def _repr(v: object) -> str:
    return repr(v) if isinstance(v, str) else fields.tname(v)


class _Walk:
    __slots__ = ("images", "last_user", "messages", "open_calls", "texts")

    def __init__(self) -> None:
        self.messages: list[Body] = []
        self.texts: list[str] = []
        self.last_user = ""
        self.images = 0
        # the assistant message that function_call items join, while nothing came after it
        self.open_calls: Body | None = None


def _image_part(part: Mapping[str, Any], path: str) -> Body:
    if part.get("file_id") is not None:
        fields.fail(
            f"{path}.file_id",
            "images by file_id are not supported: traywire keeps no files; "
            "send image_url (a URL or a data: URL)",
        )
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        fields.fail(f"{path}.image_url", "required string (a URL or a data: URL)")
    detail = part.get("detail")
    img: Body = {"url": url}
    if detail in ("low", "high", "auto"):
        img["detail"] = detail
    return {"type": "image_url", "image_url": img}


def _parts(content: object, path: str, walk: _Walk, *, assistant: bool) -> tuple[str, list[Body]]:
    """(joined text, image parts) of a message's content."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        fields.fail(
            path, f"expected a string or a list of content parts, got {fields.tname(content)}"
        )
    texts: list[str] = []
    images: list[Body] = []
    for p, part in fields.objects(content, path, "a content part object"):
        ptype = part.get("type")
        if ptype in ("input_text", "output_text", "text"):
            texts.append(fields.req_str(part, "text", f"{p}.text"))
        elif ptype == "refusal":
            texts.append(fields.req_str(part, "refusal", f"{p}.refusal"))
        elif ptype == "input_image" and not assistant:
            images.append(_image_part(part, p))
            walk.images += 1
        elif ptype == "input_file":
            fields.fail(
                p,
                "input_file is not supported: traywire keeps no files and its backends "
                "read no PDFs; send the file's text as input_text",
            )
        else:
            fields.fail(f"{p}.type", f"content parts of type {_repr(ptype)} are not supported here")
    return "\n".join(texts), images


def _message(item: Mapping[str, Any], path: str, walk: _Walk) -> None:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        fields.fail(
            f"{path}.role", f"expected one of {', '.join(_MESSAGE_ROLES)}, got {_repr(role)}"
        )
    assistant = role == "assistant"
    text, images = _parts(item.get("content"), f"{path}.content", walk, assistant=assistant)
    walk.texts.append(text)
    if assistant:
        msg: Body = {"role": "assistant", "content": text}
        walk.messages.append(msg)
        walk.open_calls = msg
        return
    walk.open_calls = None
    if role == "user":
        walk.last_user = text
    chat_role = "system" if role == "developer" else role
    if images:
        parts: list[Body] = [{"type": "text", "text": text}] if text else []
        walk.messages.append({"role": chat_role, "content": parts + images})
    else:
        walk.messages.append({"role": chat_role, "content": text})


def _function_call(item: Mapping[str, Any], path: str, walk: _Walk) -> None:
    call_id = fields.name_str(item, "call_id", f"{path}.call_id")
    name = fields.name_str(item, "name", f"{path}.name")
    args = item.get("arguments")
    if not isinstance(args, str):
        fields.fail(f"{path}.arguments", f"expected a JSON string, got {fields.tname(args)}")
    walk.texts.append(args)
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
    msg = walk.open_calls
    if msg is None:
        msg = {"role": "assistant", "content": None}
        walk.messages.append(msg)
        walk.open_calls = msg
    if not msg.get("content"):
        msg["content"] = None
    msg.setdefault("tool_calls", []).append(call)


def _function_call_output(item: Mapping[str, Any], path: str, walk: _Walk) -> None:
    call_id = fields.name_str(item, "call_id", f"{path}.call_id")
    output = item.get("output")
    if output is None:
        fields.fail(f"{path}.output", "required: a string or a list of content parts")
    text, images = _parts(output, f"{path}.output", walk, assistant=False)
    walk.texts.append(text)
    walk.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
    walk.open_calls = None
    if images:
        walk.messages.append({"role": "user", "content": images})


def _input(b: Mapping[str, Any], walk: _Walk) -> None:
    instructions = b.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            fields.fail("instructions", f"expected a string, got {fields.tname(instructions)}")
        if instructions:
            walk.texts.append(instructions)
            walk.messages.append({"role": "system", "content": instructions})
    inp = b.get("input")
    if inp is None:
        fields.fail("input", "required: a string or a list of input items")
    if isinstance(inp, str):
        walk.texts.append(inp)
        walk.last_user = inp
        walk.messages.append({"role": "user", "content": inp})
        return
    if not isinstance(inp, list) or not inp:
        fields.fail("input", "expected a string or a non-empty list of input items")
    for path, item in fields.objects(inp, "input", "an input item object"):
        itype = item.get("type")
        if itype is None and "role" in item:
            itype = "message"
        if not isinstance(itype, str):
            fields.fail(f"{path}.type", "required string")
        if itype == "message":
            _message(item, path, walk)
        elif itype == "function_call":
            _function_call(item, path, walk)
        elif itype == "function_call_output":
            _function_call_output(item, path, walk)
        elif itype == "item_reference":
            fields.fail(path, f"item_reference needs stored items; {_STATELESS}")
        # reasoning items and item types with no chat meaning are skipped
    if not any(m["role"] != "system" for m in walk.messages):
        fields.fail("input", "holds no message, function call or function call output")


def _tools(b: Mapping[str, Any]) -> list[Body]:
    out: list[Body] = []
    for p, tool in fields.objects(fields.opt_list(b, "tools", "tools") or (), "tools"):
        ttype = tool.get("type")
        if not isinstance(ttype, str):
            fields.fail(f"{p}.type", "required string")
        if ttype != "function":
            continue  # a built-in or grouped tool: not offered (see the docstring)
        fn = tool_function(tool, p)
        params = fields.opt_obj(tool, "parameters", f"{p}.parameters")
        fields.opt_bool(tool, "strict", f"{p}.strict")
        fn["parameters"] = params if params is not None else {"type": "object", "properties": {}}
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        out.append({"type": "function", "function": fn})
    return out


def _names(tools: list[Body]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def _tool_choice(b: Mapping[str, Any], tools: list[Body], out: Body) -> bool:
    """Translate ``tool_choice`` (narrowing ``tools`` for allowed_tools); False if none."""
    tc = b.get("tool_choice")
    if tc is None:
        return True
    if isinstance(tc, str):
        if tc not in ("none", "auto", "required"):
            fields.fail(
                "tool_choice", f'expected "none", "auto", "required" or an object, got {tc!r}'
            )
        if tools:
            out["tool_choice"] = tc
        return tc != "none"
    if not isinstance(tc, dict):
        fields.fail("tool_choice", f"expected a string or an object, got {fields.tname(tc)}")
    ttype = tc.get("type")
    if ttype == "function":
        name = fields.name_str(tc, "name", "tool_choice.name")
        if name not in _names(tools):
            fields.fail("tool_choice.name", f"no function tool named {name!r} in tools")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
        return True
    if ttype == "allowed_tools":
        mode = tc.get("mode")
        if mode not in ("auto", "required"):
            fields.fail("tool_choice.mode", 'expected "auto" or "required"')
        allowed = tc.get("tools")
        if not isinstance(allowed, list):
            fields.fail("tool_choice.tools", f"expected a list, got {fields.tname(allowed)}")
        keep: set[str] = set()
        for k, t in enumerate(allowed):
            if not isinstance(t, dict) or t.get("type") != "function":
                fields.fail(f"tool_choice.tools[{k}]", "only function tools can be allowed")
            if not isinstance(t.get("name"), str):
                fields.fail(f"tool_choice.tools[{k}].name", "required string")
            keep.add(t["name"])
        narrowed = [t for t in tools if t["function"]["name"] in keep]
        if narrowed:
            out["tools"] = narrowed
            out["tool_choice"] = mode
        else:
            out.pop("tools", None)
        return bool(narrowed)
    fields.fail(
        "tool_choice.type",
        f"{_repr(ttype)} names a built-in tool, which traywire does not offer; "
        'expected "function" or "allowed_tools"',
    )


def _text_format(b: Mapping[str, Any], out: Body) -> bool:
    text = fields.opt_obj(b, "text", "text")
    if text is None:
        return False
    fmt = fields.opt_obj(text, "format", "text.format")
    if fmt is None:
        return False
    ftype = fmt.get("type")
    if ftype == "text":
        return False
    if ftype == "json_object":
        out["response_format"] = {"type": "json_object"}
        return True
    if ftype != "json_schema":
        fields.fail("text.format.type", 'expected "text", "json_schema" or "json_object"')
    name = fields.name_str(fmt, "name", "text.format.name")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        fields.fail(
            "text.format.schema", f"expected a JSON schema object, got {fields.tname(schema)}"
        )
    fields.opt_bool(fmt, "strict", "text.format.strict")
    fields.opt_str(fmt, "description", "text.format.description")
    js: Body = {"name": name, "schema": schema}
    if fmt.get("strict") is not None:
        js["strict"] = fmt["strict"]
    if fmt.get("description"):
        js["description"] = fmt["description"]
    out["response_format"] = {"type": "json_schema", "json_schema": js}
    return True


def _refuse_state(b: Mapping[str, Any]) -> None:
    if b.get("previous_response_id") is not None:
        fields.fail("previous_response_id", f"not supported: {_STATELESS} (and previous outputs)")
    if b.get("conversation") is not None:
        fields.fail("conversation", f"not supported: {_STATELESS}")
    if b.get("prompt") is not None:
        fields.fail(
            "prompt", "stored prompt templates are not supported: send instructions and input"
        )
    fields.opt_bool(b, "background", "background")
    if b.get("background") is True:
        fields.fail("background", "background responses are not supported: traywire keeps no state")
    fields.opt_bool(b, "store", "store")


def parse_responses(body: object) -> tuple[Body, RouteRequest]:
    """Check a ``/v1/responses`` body and translate it; `BadRequest` names the first problem.

    Returns the OpenAI chat completions body (``stream`` set explicitly;
    streaming asks for ``stream_options.include_usage``) and the request as the
    router sees it.
    """
    b = fields.body_object(body)
    model = fields.model_name(b)
    _refuse_state(b)
    walk = _Walk()
    _input(b, walk)
    out: Body = {"model": model, "messages": walk.messages}
    fields.opt_int(b, "max_output_tokens", "max_output_tokens", 1)
    if b.get("max_output_tokens") is not None:
        out["max_tokens"] = b["max_output_tokens"]
    fields.opt_num(b, "temperature", "temperature", 0, 2)
    fields.opt_num(b, "top_p", "top_p", 0, 1)
    for key in ("temperature", "top_p"):
        if b.get(key) is not None:
            out[key] = b[key]
    stream_fields(b, out)
    tools = _tools(b)
    if tools:
        out["tools"] = tools
    tools_on = _tool_choice(b, tools, out) and bool(tools)
    fields.opt_bool(b, "parallel_tool_calls", "parallel_tool_calls")
    if b.get("parallel_tool_calls") is not None and "tools" in out:
        out["parallel_tool_calls"] = b["parallel_tool_calls"]
    structured = _text_format(b, out)
    fields.opt_obj(b, "reasoning", "reasoning")
    fields.opt_obj(b, "metadata", "metadata")
    route = RouteRequest(
        model,
        "\n".join(walk.texts),
        walk.last_user,
        b.get("max_output_tokens"),
        len(walk.messages),
        "chat",
        walk.images,
        tools_on,
        structured,
    )
    return out, route
