"""Validation of inbound request bodies, in both dialects, in one pass that
also reads what the router needs (`RouteRequest`).

The proxy runs one of these on every body it receives, before routing or
translating it, so that nothing it can tell is malformed is ever forwarded.
Each raises :class:`BadRequest` naming the first problem found, as
``"<param>: <problem>"`` (for example ``messages[2].content: expected a string
or a list of content parts, got int``). Unknown extra fields are allowed
(pass-through keeps them), and ``null`` for an optional field means "not
given", as both APIs treat it. Callers use `traywire.core.request.parse`.

Type names in messages are: null, boolean, int, float, string, list, object.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, NoReturn

from ..errors import TraywireError
from ..types import RouteRequest

__all__ = [
    "BadRequest",
    "ollama_chat",
    "ollama_embed",
    "ollama_generate",
    "openai_chat",
    "openai_completion",
    "openai_embeddings",
]


class BadRequest(TraywireError):
    """A request body the proxy refuses (answered with a 400 in the caller's dialect)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# --------------------------------------------------------------------------- helpers

_TYPE_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "int",
    float: "float",
    str: "string",
    list: "list",
    dict: "object",
}


def _tname(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _fail(param: str, problem: str) -> NoReturn:
    raise BadRequest(f"{param}: {problem}", param)


MAX_DEPTH = 64  # nesting of objects and lists in a request body
MAX_MODEL = 256  # characters of a model name
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body's bytes as a JSON object, or BadRequest: not JSON, not an
    object, nested deeper than `MAX_DEPTH`, or holding a lone UTF-16 surrogate
    (``"\\ud800"``: JSON allows the escape, but it is no character and no
    backend could be sent it)."""
    if not raw or raw.isspace():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise BadRequest(f"request body: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body: expected a JSON object")
    # (byte counts in C first: an ordinary body skips both walks)
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        _check_depth(body)
    if _SURROGATE.search(raw):
        _check_text(body)
    return body


def _check_depth(body: object) -> None:
    stack: list[tuple[object, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"request body: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))


def _check_text(body: object) -> None:
    stack: list[object] = [body]
    while stack:
        value = stack.pop()
        texts: list[str] = []
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            texts.extend(k for k in value if isinstance(k, str))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(
                    "request body: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                    "which is not a character"
                ) from None


def body_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"request body: expected a JSON object, got {_tname(body)}")
    return body


def _positive(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and math.isfinite(v)
    )


def _model(body: Mapping[str, Any]) -> str:
    v = body.get("model")
    if v is None:
        _fail("model", "required string")
    if not isinstance(v, str):
        _fail("model", f"expected a string, got {_tname(v)}")
    if not v.strip():
        _fail("model", "must not be empty")
    if len(v) > MAX_MODEL:
        _fail("model", f"longer than {MAX_MODEL} characters")
    return v


def _bool(d: Mapping[str, Any], key: str, path: str) -> None:
    v = d.get(key)
    if v is not None and not isinstance(v, bool):
        _fail(path, f"expected a boolean, got {_tname(v)}")


def _str(d: Mapping[str, Any], key: str, path: str) -> None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        _fail(path, f"expected a string, got {_tname(v)}")


def _obj(d: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    v = d.get(key)
    if v is not None and not isinstance(v, dict):
        _fail(path, f"expected an object, got {_tname(v)}")
    return v


def _int(
    d: Mapping[str, Any], key: str, path: str, lo: int | None = None, hi: int | None = None
) -> None:
    v = d.get(key)
    if v is None:
        return
    ok = _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
    if ok:
        return
    if lo == 1 and hi is None:
        want = "a positive integer"
    elif lo == 0 and hi is None:
        want = "a non-negative integer"
    elif lo is not None and hi is not None:
        want = f"an integer between {lo} and {hi}"
    else:
        want = "an integer"
    _fail(path, f"expected {want}, got {_describe(v)}")


def _num(
    d: Mapping[str, Any], key: str, path: str, lo: float | None = None, hi: float | None = None
) -> None:
    v = d.get(key)
    if v is None:
        return
    if _is_num(v) and (lo is None or v >= lo) and (hi is None or v <= hi):
        return
    if isinstance(v, float) and not math.isfinite(v):
        _fail(path, f"expected a finite number, got {v}")
    want = (
        f"a number between {lo:g} and {hi:g}" if lo is not None and hi is not None else ("a number")
    )
    _fail(path, f"expected {want}, got {_describe(v)}")


def _describe(v: object) -> str:
    """The value itself for numbers and short strings, else its type name."""
    if _is_num(v) or (isinstance(v, str) and len(v) <= 40):
        return repr(v)
    return _tname(v)


def _str_list(v: object, path: str, *, allow_str: bool, what: str) -> None:
    if isinstance(v, str) and allow_str:
        return
    if not isinstance(v, list):
        _fail(path, f"expected {what}, got {_tname(v)}")
    for i, item in enumerate(v):
        if not isinstance(item, str):
            _fail(f"{path}[{i}]", f"expected a string, got {_tname(item)}")


def _stop(d: Mapping[str, Any], key: str, path: str) -> None:
    v = d.get(key)
    if v is not None:
        _str_list(v, path, allow_str=True, what="a string or a list of strings")


def _stream(body: Mapping[str, Any]) -> None:
    _bool(body, "stream", "stream")
    so = _obj(body, "stream_options", "stream_options")
    if so is not None:
        _bool(so, "include_usage", "stream_options.include_usage")


def _openai_sampling(body: Mapping[str, Any]) -> None:
    _num(body, "temperature", "temperature", 0, 2)
    _num(body, "top_p", "top_p", 0, 1)
    _num(body, "presence_penalty", "presence_penalty", -2, 2)
    _num(body, "frequency_penalty", "frequency_penalty", -2, 2)
    _int(body, "seed", "seed")
    _int(body, "n", "n", 1)
    _stop(body, "stop", "stop")
    _str(body, "user", "user")
    _obj(body, "logit_bias", "logit_bias")
    # Extensions understood by vLLM / llama.cpp and mapped to Ollama options.
    _int(body, "top_k", "top_k")
    _num(body, "min_p", "min_p", 0, 1)
    _num(body, "repeat_penalty", "repeat_penalty")
    _num(body, "typical_p", "typical_p")


# --------------------------------------------------------------------------- OpenAI

_OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def _openai_content(msg: Mapping[str, Any], path: str, required: bool) -> tuple[str, int]:
    """The message's text (text parts joined by newlines) and its number of images."""
    content = msg.get("content")
    if content is None:
        if required:
            _fail(path, f"required for {msg.get('role')} messages")
        return "", 0
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        _fail(path, f"expected a string or a list of content parts, got {_tname(content)}")
    texts: list[str] = []
    images = 0
    for k, part in enumerate(content):
        p = f"{path}[{k}]"
        if not isinstance(part, dict):
            _fail(p, f"expected a content part object, got {_tname(part)}")
        ptype = part.get("type")
        if not isinstance(ptype, str):
            _fail(f"{p}.type", "required string")
        if ptype == "text":
            text = part.get("text")
            if not isinstance(text, str):
                _fail(f"{p}.text", f"expected a string, got {_tname(text)}")
            texts.append(text)
        elif ptype == "image_url":
            img = part.get("image_url")
            url = img.get("url") if isinstance(img, dict) else img
            if not isinstance(url, str) or not url:
                _fail(f"{p}.image_url", "expected an object with a non-empty url string")
            images += 1
        elif ptype == "refusal":
            if not isinstance(part.get("refusal"), str):
                _fail(f"{p}.refusal", f"expected a string, got {_tname(part.get('refusal'))}")
        elif ptype == "input_audio":
            _obj(part, "input_audio", f"{p}.input_audio")
        # Other part types (file, video_url, ...) are left for backends that know them.
    return "\n".join(texts), images


def _openai_tool_calls(calls: object, path: str) -> None:
    if not isinstance(calls, list):
        _fail(path, f"expected a list, got {_tname(calls)}")
    for j, call in enumerate(calls):
        p = f"{path}[{j}]"
        if not isinstance(call, dict):
            _fail(p, f"expected an object, got {_tname(call)}")
        if not isinstance(call.get("id"), str):
            _fail(f"{p}.id", "required string")
        ctype = call.get("type")
        if ctype is not None and ctype != "function":
            _fail(f"{p}.type", f'expected "function", got {ctype!r}')
        fn = call.get("function")
        if not isinstance(fn, dict):
            _fail(f"{p}.function", f"expected an object, got {_tname(fn)}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            _fail(f"{p}.function.name", "required string")
        if not isinstance(fn.get("arguments"), str):
            _fail(
                f"{p}.function.arguments",
                f"expected a JSON string, got {_tname(fn.get('arguments'))}",
            )


def _openai_message(msg: object, i: int) -> tuple[str, str, int]:
    """(role, text, images) of a valid message."""
    path = f"messages[{i}]"
    if not isinstance(msg, dict):
        _fail(path, f"expected a message object, got {_tname(msg)}")
    role = msg.get("role")
    if not isinstance(role, str):
        _fail(f"{path}.role", "required string")
    if role not in _OPENAI_ROLES:
        _fail(f"{path}.role", f"expected one of {', '.join(_OPENAI_ROLES)}, got {role!r}")
    _str(msg, "name", f"{path}.name")
    has_calls = msg.get("tool_calls") is not None or msg.get("function_call") is not None
    text, images = _openai_content(
        msg, f"{path}.content", required=not (role == "assistant" and has_calls)
    )
    if role == "assistant":
        if msg.get("tool_calls") is not None:
            _openai_tool_calls(msg["tool_calls"], f"{path}.tool_calls")
        fc = _obj(msg, "function_call", f"{path}.function_call")
        if fc is not None and not isinstance(fc.get("name"), str):
            _fail(f"{path}.function_call.name", "required string")
    elif role == "tool":
        if not isinstance(msg.get("tool_call_id"), str):
            _fail(f"{path}.tool_call_id", "required string for tool messages")
    elif role == "function" and not isinstance(msg.get("name"), str):
        _fail(f"{path}.name", "required string for function messages")
    return role, text, images


def _tools(body: Mapping[str, Any], *, openai: bool) -> bool:
    """Does the request offer tools?"""
    tools = body.get("tools")
    if tools is None:
        return False
    if not isinstance(tools, list):
        _fail("tools", f"expected a list, got {_tname(tools)}")
    for j, tool in enumerate(tools):
        p = f"tools[{j}]"
        if not isinstance(tool, dict):
            _fail(p, f"expected an object, got {_tname(tool)}")
        ttype = tool.get("type", None if openai else "function")
        if not isinstance(ttype, str):
            _fail(f"{p}.type", "required string")
        if ttype != "function":
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict):
            _fail(f"{p}.function", f"expected an object, got {_tname(fn)}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            _fail(f"{p}.function.name", "required string")
        _str(fn, "description", f"{p}.function.description")
        _obj(fn, "parameters", f"{p}.function.parameters")
    return len(tools) > 0 and body.get("tool_choice") != "none"


def _tool_choice(body: Mapping[str, Any]) -> None:
    tc = body.get("tool_choice")
    if tc is None or tc in ("none", "auto", "required"):
        return
    if isinstance(tc, dict):
        fn = tc.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return
        if tc.get("type") not in (None, "function"):
            return  # allowed_tools / custom: left to the backend
        _fail("tool_choice.function.name", "required string")
    _fail("tool_choice", f'expected "none", "auto", "required" or an object, got {_describe(tc)}')


def _response_format(body: Mapping[str, Any]) -> bool:
    """Must the answer be JSON?"""
    rf = _obj(body, "response_format", "response_format")
    if rf is None:
        return False
    rtype = rf.get("type")
    if rtype not in ("text", "json_object", "json_schema"):
        _fail("response_format.type", 'expected "text", "json_object" or "json_schema"')
    if rtype == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict):
            _fail("response_format.json_schema", f"expected an object, got {_tname(js)}")
        _str(js, "name", "response_format.json_schema.name")
        _obj(js, "schema", "response_format.json_schema.schema")
        _bool(js, "strict", "response_format.json_schema.strict")
    return bool(rtype != "text")


def openai_chat(b: dict[str, Any]) -> RouteRequest:
    """Check a /v1/chat/completions body; raise BadRequest on the first problem."""
    model = _model(b)
    msgs = b.get("messages")
    if not isinstance(msgs, list) or not msgs:
        _fail("messages", "must be a non-empty list")
    texts: list[str] = []
    last_user = ""
    images = 0
    for i, msg in enumerate(msgs):
        role, text, n = _openai_message(msg, i)
        texts.append(text)
        images += n
        if role == "user":
            last_user = text
    _int(b, "max_tokens", "max_tokens", 1)
    _int(b, "max_completion_tokens", "max_completion_tokens", 1)
    _openai_sampling(b)
    _stream(b)
    tools = _tools(b, openai=True)
    _tool_choice(b)
    _bool(b, "parallel_tool_calls", "parallel_tool_calls")
    structured = _response_format(b)
    _bool(b, "logprobs", "logprobs")
    _int(b, "top_logprobs", "top_logprobs", 0, 20)
    max_tokens = _positive(b.get("max_completion_tokens")) or _positive(b.get("max_tokens"))
    return RouteRequest(
        model, "\n".join(texts), last_user, max_tokens, len(msgs), "chat", images, tools, structured
    )


def _prompt(v: object) -> str:
    """The prompt's text (token ids count as no text)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        if not v:
            _fail("prompt", "must not be an empty list")
        if all(isinstance(x, str) for x in v):
            return "\n".join(v)
        if all(_is_int(x) and x >= 0 for x in v):
            return ""
        if all(isinstance(x, list) and x and all(_is_int(t) and t >= 0 for t in x) for x in v):
            return ""
    _fail(
        "prompt",
        "expected a string, a list of strings, a list of token ids or a list of "
        f"token id lists, got {_tname(v)}",
    )


def openai_completion(b: dict[str, Any]) -> RouteRequest:
    """Check a /v1/completions body; raise BadRequest on the first problem."""
    model = _model(b)
    prompt = _prompt(b.get("prompt"))
    _str(b, "suffix", "suffix")
    _int(b, "max_tokens", "max_tokens", 1)
    _openai_sampling(b)
    _stream(b)
    _bool(b, "echo", "echo")
    _int(b, "best_of", "best_of", 1)
    _int(b, "logprobs", "logprobs", 0, 5)
    return RouteRequest(model, prompt, prompt, _positive(b.get("max_tokens")), 1, "completion")


def openai_embeddings(b: dict[str, Any]) -> RouteRequest:
    """Check a /v1/embeddings body; raise BadRequest on the first problem."""
    model = _model(b)
    inp = b.get("input")
    if inp is None:
        _fail("input", "required: a string or a list of strings")
    if isinstance(inp, str):
        if not inp:
            _fail("input", "must not be an empty string")
    elif isinstance(inp, list):
        if not inp:
            _fail("input", "must not be an empty list")
        if not (
            all(isinstance(x, str) for x in inp)
            or all(_is_int(x) and x >= 0 for x in inp)
            or all(isinstance(x, list) and x and all(_is_int(t) and t >= 0 for t in x) for x in inp)
        ):
            _fail("input", "expected a string, a list of strings or token id lists")
    else:
        _fail("input", f"expected a string or a list of strings, got {_tname(inp)}")
    ef = b.get("encoding_format")
    if ef is not None and ef not in ("float", "base64"):
        _fail("encoding_format", f'expected "float" or "base64", got {_describe(ef)}')
    _int(b, "dimensions", "dimensions", 1)
    _str(b, "user", "user")
    return _embedding(model, inp)


def _embedding(model: str, inp: object) -> RouteRequest:
    items = inp if isinstance(inp, list) else [inp]
    text = "\n".join(i for i in items if isinstance(i, str))
    return RouteRequest(model, text, text, None, len(items), "embedding")


# --------------------------------------------------------------------------- Ollama

_OLLAMA_ROLES = ("system", "user", "assistant", "tool")
_OPT_INT = (
    "num_predict",
    "top_k",
    "seed",
    "num_ctx",
    "num_keep",
    "repeat_last_n",
    "mirostat",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
)
_OPT_NUM = (
    "temperature",
    "top_p",
    "min_p",
    "typical_p",
    "tfs_z",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "mirostat_tau",
    "mirostat_eta",
)
_OPT_BOOL = ("numa", "low_vram", "vocab_only", "use_mmap", "use_mlock", "penalize_newline")


def _ollama_common(b: Mapping[str, Any]) -> None:
    _bool(b, "stream", "stream")
    ka = b.get("keep_alive")
    if ka is not None and not (isinstance(ka, str) or _is_num(ka)):
        _fail("keep_alive", f"expected a duration string or a number, got {_tname(ka)}")
    opts = _obj(b, "options", "options")
    if opts is not None:
        for k in _OPT_INT:
            _int(opts, k, f"options.{k}")
        for k in _OPT_NUM:
            _num(opts, k, f"options.{k}")
        for k in _OPT_BOOL:
            _bool(opts, k, f"options.{k}")
        _stop(opts, "stop", "options.stop")


def _ollama_gen_common(b: Mapping[str, Any]) -> bool:
    """Check what chat and generate share; must the answer be JSON?"""
    _ollama_common(b)
    fmt = b.get("format")
    if fmt is not None and fmt not in ("", "json") and not isinstance(fmt, dict):
        _fail("format", f'expected "json" or a JSON schema object, got {_describe(fmt)}')
    think = b.get("think")
    if think is not None and not isinstance(think, (bool, str)):
        _fail("think", f"expected a boolean or a string, got {_tname(think)}")
    return bool(fmt)


def _images(d: Mapping[str, Any], path: str) -> int:
    v = d.get("images")
    if v is None:
        return 0
    _str_list(v, path, allow_str=False, what="a list of base64 strings")
    return len(v)


def _num_predict(b: Mapping[str, Any]) -> int | None:
    options = b.get("options")
    return _positive(options.get("num_predict")) if isinstance(options, dict) else None


def _ollama_message(msg: object, i: int) -> tuple[str, str, int]:
    """(role, text, images) of a valid message."""
    path = f"messages[{i}]"
    if not isinstance(msg, dict):
        _fail(path, f"expected a message object, got {_tname(msg)}")
    role = msg.get("role")
    if not isinstance(role, str):
        _fail(f"{path}.role", "required string")
    if role not in _OLLAMA_ROLES:
        _fail(f"{path}.role", f"expected one of {', '.join(_OLLAMA_ROLES)}, got {role!r}")
    _str(msg, "content", f"{path}.content")
    _str(msg, "thinking", f"{path}.thinking")
    _str(msg, "tool_name", f"{path}.tool_name")
    images = _images(msg, f"{path}.images")
    text = msg.get("content") or ""
    calls = msg.get("tool_calls")
    if calls is None:
        return role, text, images
    if not isinstance(calls, list):
        _fail(f"{path}.tool_calls", f"expected a list, got {_tname(calls)}")
    for j, call in enumerate(calls):
        p = f"{path}.tool_calls[{j}]"
        if not isinstance(call, dict):
            _fail(p, f"expected an object, got {_tname(call)}")
        fn = call.get("function")
        if not isinstance(fn, dict):
            _fail(f"{p}.function", f"expected an object, got {_tname(fn)}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            _fail(f"{p}.function.name", "required string")
        args = fn.get("arguments")
        if args is not None and not isinstance(args, dict):
            _fail(f"{p}.function.arguments", f"expected an object, got {_tname(args)}")
    return role, text, images


def ollama_chat(b: dict[str, Any]) -> RouteRequest:
    """Check an /api/chat body; raise BadRequest on the first problem.

    An empty or missing ``messages`` list is valid: Ollama loads the model.
    """
    model = _model(b)
    msgs = b.get("messages")
    texts: list[str] = []
    last_user = ""
    images = 0
    if msgs is not None:
        if not isinstance(msgs, list):
            _fail("messages", f"expected a list, got {_tname(msgs)}")
        for i, msg in enumerate(msgs):
            role, text, n = _ollama_message(msg, i)
            texts.append(text)
            images += n
            if role == "user":
                last_user = text
    tools = _tools(b, openai=False)
    structured = _ollama_gen_common(b)
    return RouteRequest(
        model,
        "\n".join(texts),
        last_user,
        _num_predict(b),
        max(1, len(texts)),
        "chat",
        images,
        tools,
        structured,
    )


def ollama_generate(b: dict[str, Any]) -> RouteRequest:
    """Check an /api/generate body; raise BadRequest on the first problem."""
    model = _model(b)
    for key in ("prompt", "suffix", "system", "template"):
        _str(b, key, key)
    _bool(b, "raw", "raw")
    images = _images(b, "images")
    ctx = b.get("context")
    if ctx is not None and not (isinstance(ctx, list) and all(_is_int(t) for t in ctx)):
        _fail("context", "expected a list of integers")
    structured = _ollama_gen_common(b)
    prompt = b.get("prompt") or ""
    system = b.get("system")
    full = f"{system}\n{prompt}" if system else prompt
    return RouteRequest(
        model, full, prompt, _num_predict(b), 1, "completion", images, False, structured
    )


def ollama_embed(b: dict[str, Any]) -> RouteRequest:
    """Check an /api/embed body; raise BadRequest on the first problem."""
    model = _model(b)
    inp = b.get("input")
    if inp is None:
        _fail("input", "required: a string or a list of strings")
    if isinstance(inp, list) and not inp:
        _fail("input", "must not be an empty list")
    _str_list(inp, "input", allow_str=True, what="a string or a list of strings")
    _bool(b, "truncate", "truncate")
    _int(b, "dimensions", "dimensions", 1)
    _ollama_common(b)
    return _embedding(model, inp)
