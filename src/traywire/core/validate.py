"""Validation of inbound request bodies, in both dialects, in one pass that
also reads what the router needs (`RouteRequest`).

The proxy runs one of these on every body it receives, before routing or
translating it, so that nothing it can tell is malformed is ever forwarded.
Each raises :class:`BadRequest` naming the first problem found, as
``"<param>: <problem>"`` (for example ``messages[2].content: expected a string
or a list of content parts, got int``). Unknown extra fields are allowed
(pass-through keeps them), and ``null`` for an optional field means "not
given", as both APIs treat it. Callers use `traywire.core.request.parse`;
the field checks they are made of are `fields`'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..types import RouteRequest
from .fields import (
    describe,
    fail,
    is_int,
    is_num,
    model_name,
    name_str,
    objects,
    opt_bool,
    opt_int,
    opt_list,
    opt_num,
    opt_obj,
    opt_stop,
    opt_str,
    positive,
    req_str,
    str_list,
    tname,
)

__all__ = [
    "ollama_chat",
    "ollama_embed",
    "ollama_generate",
    "openai_chat",
    "openai_completion",
    "openai_embeddings",
]


def _stream(body: Mapping[str, Any]) -> None:
    opt_bool(body, "stream", "stream")
    so = opt_obj(body, "stream_options", "stream_options")
    if so is not None:
        opt_bool(so, "include_usage", "stream_options.include_usage")


def _openai_sampling(body: Mapping[str, Any]) -> None:
    opt_num(body, "temperature", "temperature", 0, 2)
    opt_num(body, "top_p", "top_p", 0, 1)
    opt_num(body, "presence_penalty", "presence_penalty", -2, 2)
    opt_num(body, "frequency_penalty", "frequency_penalty", -2, 2)
    opt_int(body, "seed", "seed")
    opt_int(body, "n", "n", 1)
    opt_stop(body, "stop", "stop")
    opt_str(body, "user", "user")
    opt_obj(body, "logit_bias", "logit_bias")
    # Extensions understood by vLLM / llama.cpp and mapped to Ollama options.
    opt_int(body, "top_k", "top_k")
    opt_num(body, "min_p", "min_p", 0, 1)
    opt_num(body, "repeat_penalty", "repeat_penalty")
    opt_num(body, "typical_p", "typical_p")


# --------------------------------------------------------------------------- OpenAI

_OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# A message of these roles with a string content and no other field needs no
# more checking (`openai_chat`'s fast path: most turns of a long conversation).
_PLAIN_ROLES = ("user", "assistant", "system", "developer")


def _openai_content(msg: Mapping[str, Any], path: str, required: bool) -> tuple[str, int]:
    """The message's text (text parts joined by newlines) and its number of images."""
    content = msg.get("content")
    if content is None:
        if required:
            fail(path, f"required for {msg.get('role')} messages")
        return "", 0
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        fail(path, f"expected a string or a list of content parts, got {tname(content)}")
    texts: list[str] = []
    images = 0
    for p, part in objects(content, path, "a content part object"):
        ptype = part.get("type")
        if not isinstance(ptype, str):
            fail(f"{p}.type", "required string")
        if ptype == "text":
            texts.append(req_str(part, "text", f"{p}.text"))
        elif ptype == "image_url":
            img = part.get("image_url")
            url = img.get("url") if isinstance(img, dict) else img
            if not isinstance(url, str) or not url:
                fail(f"{p}.image_url", "expected an object with a non-empty url string")
            images += 1
        elif ptype == "refusal":
            req_str(part, "refusal", f"{p}.refusal")
        elif ptype == "input_audio":
            opt_obj(part, "input_audio", f"{p}.input_audio")
        # Other part types (file, video_url, ...) are left for backends that know them.
    return "\n".join(texts), images


def _openai_tool_calls(calls: object, path: str) -> None:
    if not isinstance(calls, list):
        fail(path, f"expected a list, got {tname(calls)}")
    for j, call in enumerate(calls):
        p = f"{path}[{j}]"
        if not isinstance(call, dict):
            fail(p, f"expected an object, got {tname(call)}")
        if not isinstance(call.get("id"), str):
            fail(f"{p}.id", "required string")
        ctype = call.get("type")
        if ctype is not None and ctype != "function":
            fail(f"{p}.type", f'expected "function", got {ctype!r}')
        fn = call.get("function")
        if not isinstance(fn, dict):
            fail(f"{p}.function", f"expected an object, got {tname(fn)}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            fail(f"{p}.function.name", "required string")
        if not isinstance(fn.get("arguments"), str):
            fail(
                f"{p}.function.arguments",
                f"expected a JSON string, got {tname(fn.get('arguments'))}",
            )


def _openai_message(msg: object, i: int) -> tuple[str, str, int]:
    """(role, text, images) of a valid message."""
    path = f"messages[{i}]"
    if not isinstance(msg, dict):
        fail(path, f"expected a message object, got {tname(msg)}")
    role = msg.get("role")
    if not isinstance(role, str):
        fail(f"{path}.role", "required string")
    if role not in _OPENAI_ROLES:
        fail(f"{path}.role", f"expected one of {', '.join(_OPENAI_ROLES)}, got {role!r}")
    opt_str(msg, "name", f"{path}.name")
    has_calls = msg.get("tool_calls") is not None or msg.get("function_call") is not None
    text, images = _openai_content(
        msg, f"{path}.content", required=not (role == "assistant" and has_calls)
    )
    if role == "assistant":
        if msg.get("tool_calls") is not None:
            _openai_tool_calls(msg["tool_calls"], f"{path}.tool_calls")
        fc = opt_obj(msg, "function_call", f"{path}.function_call")
        if fc is not None and not isinstance(fc.get("name"), str):
            fail(f"{path}.function_call.name", "required string")
    elif role == "tool":
        if not isinstance(msg.get("tool_call_id"), str):
            fail(f"{path}.tool_call_id", "required string for tool messages")
    elif role == "function" and not isinstance(msg.get("name"), str):
        fail(f"{path}.name", "required string for function messages")
    return role, text, images


def _tools(body: Mapping[str, Any], *, openai: bool) -> bool:
    """Does the request offer tools?"""
    tools = opt_list(body, "tools", "tools")
    if tools is None:
        return False
    for p, tool in objects(tools, "tools"):
        ttype = tool.get("type", None if openai else "function")
        if not isinstance(ttype, str):
            fail(f"{p}.type", "required string")
        if ttype != "function":
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict):
            fail(f"{p}.function", f"expected an object, got {tname(fn)}")
        name_str(fn, "name", f"{p}.function.name")
        opt_str(fn, "description", f"{p}.function.description")
        opt_obj(fn, "parameters", f"{p}.function.parameters")
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
        fail("tool_choice.function.name", "required string")
    fail("tool_choice", f'expected "none", "auto", "required" or an object, got {describe(tc)}')


def _response_format(body: Mapping[str, Any]) -> bool:
    """Must the answer be JSON?"""
    rf = opt_obj(body, "response_format", "response_format")
    if rf is None:
        return False
    rtype = rf.get("type")
    if rtype not in ("text", "json_object", "json_schema"):
        fail("response_format.type", 'expected "text", "json_object" or "json_schema"')
    if rtype == "json_schema":
        js = rf.get("json_schema")
        if not isinstance(js, dict):
            fail("response_format.json_schema", f"expected an object, got {tname(js)}")
        opt_str(js, "name", "response_format.json_schema.name")
        opt_obj(js, "schema", "response_format.json_schema.schema")
        opt_bool(js, "strict", "response_format.json_schema.strict")
    return bool(rtype != "text")


# The fields of the commonest chat bodies (`openai_chat`'s fast path).
_PLAIN_CHAT = frozenset({"model", "messages", "max_tokens", "stream", "temperature"})


def openai_chat(b: dict[str, Any]) -> RouteRequest:
    """Check a /v1/chat/completions body; raise BadRequest on the first problem."""
    model = model_name(b)
    msgs = b.get("messages")
    if not isinstance(msgs, list) or not msgs:
        fail("messages", "must be a non-empty list")
    texts: list[str] = []
    last_user = ""
    images = 0
    for i, msg in enumerate(msgs):
        if type(msg) is dict and len(msg) == 2:
            # {"role": ..., "content": "..."}: valid as it is (`_openai_message`)
            role, text = msg.get("role"), msg.get("content")
            if type(text) is str and role in _PLAIN_ROLES:
                texts.append(text)
                if role == "user":
                    last_user = text
                continue
        role, text, n = _openai_message(msg, i)
        texts.append(text)
        images += n
        if role == "user":
            last_user = text
    if b.keys() <= _PLAIN_CHAT:
        # the commonest bodies: only the fields they hold are checked (every
        # other check looks at a field such a body does not have), in the
        # order the full path checks them
        opt_int(b, "max_tokens", "max_tokens", 1)
        opt_num(b, "temperature", "temperature", 0, 2)
        opt_bool(b, "stream", "stream")
        return RouteRequest(
            model, "\n".join(texts), last_user, positive(b.get("max_tokens")), len(msgs),
            "chat", images,
        )  # fmt: skip
    opt_int(b, "max_tokens", "max_tokens", 1)
    opt_int(b, "max_completion_tokens", "max_completion_tokens", 1)
    _openai_sampling(b)
    _stream(b)
    tools = _tools(b, openai=True)
    _tool_choice(b)
    opt_bool(b, "parallel_tool_calls", "parallel_tool_calls")
    structured = _response_format(b)
    opt_bool(b, "logprobs", "logprobs")
    opt_int(b, "top_logprobs", "top_logprobs", 0, 20)
    max_tokens = positive(b.get("max_completion_tokens")) or positive(b.get("max_tokens"))
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
            fail("prompt", "must not be an empty list")
        if all(isinstance(x, str) for x in v):
            return "\n".join(v)
        if all(is_int(x) and x >= 0 for x in v):
            return ""
        if all(isinstance(x, list) and x and all(is_int(t) and t >= 0 for t in x) for x in v):
            return ""
    fail(
        "prompt",
        "expected a string, a list of strings, a list of token ids or a list of "
        f"token id lists, got {tname(v)}",
    )


def openai_completion(b: dict[str, Any]) -> RouteRequest:
    """Check a /v1/completions body; raise BadRequest on the first problem."""
    model = model_name(b)
    prompt = _prompt(b.get("prompt"))
    opt_str(b, "suffix", "suffix")
    opt_int(b, "max_tokens", "max_tokens", 1)
    _openai_sampling(b)
    _stream(b)
    opt_bool(b, "echo", "echo")
    opt_int(b, "best_of", "best_of", 1)
    opt_int(b, "logprobs", "logprobs", 0, 5)
    return RouteRequest(model, prompt, prompt, positive(b.get("max_tokens")), 1, "completion")


def openai_embeddings(b: dict[str, Any]) -> RouteRequest:
    """Check a /v1/embeddings body; raise BadRequest on the first problem."""
    model = model_name(b)
    inp = b.get("input")
    if inp is None:
        fail("input", "required: a string or a list of strings")
    if isinstance(inp, str):
        if not inp:
            fail("input", "must not be an empty string")
    elif isinstance(inp, list):
        if not inp:
            fail("input", "must not be an empty list")
        if not (
            all(isinstance(x, str) for x in inp)
            or all(is_int(x) and x >= 0 for x in inp)
            or all(isinstance(x, list) and x and all(is_int(t) and t >= 0 for t in x) for x in inp)
        ):
            fail("input", "expected a string, a list of strings or token id lists")
    else:
        fail("input", f"expected a string or a list of strings, got {tname(inp)}")
    ef = b.get("encoding_format")
    if ef is not None and ef not in ("float", "base64"):
        fail("encoding_format", f'expected "float" or "base64", got {describe(ef)}')
    opt_int(b, "dimensions", "dimensions", 1)
    opt_str(b, "user", "user")
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
    opt_bool(b, "stream", "stream")
    ka = b.get("keep_alive")
    if ka is not None and not (isinstance(ka, str) or is_num(ka)):
        fail("keep_alive", f"expected a duration string or a number, got {tname(ka)}")
    opts = opt_obj(b, "options", "options")
    if opts is not None:
        for k in _OPT_INT:
            opt_int(opts, k, f"options.{k}")
        for k in _OPT_NUM:
            opt_num(opts, k, f"options.{k}")
        for k in _OPT_BOOL:
            opt_bool(opts, k, f"options.{k}")
        opt_stop(opts, "stop", "options.stop")


def _ollama_gen_common(b: Mapping[str, Any]) -> bool:
    """Check what chat and generate share; must the answer be JSON?"""
    _ollama_common(b)
    fmt = b.get("format")
    if fmt is not None and fmt not in ("", "json") and not isinstance(fmt, dict):
        fail("format", f'expected "json" or a JSON schema object, got {describe(fmt)}')
    think = b.get("think")
    if think is not None and not isinstance(think, (bool, str)):
        fail("think", f"expected a boolean or a string, got {tname(think)}")
    return bool(fmt)


def _images(d: Mapping[str, Any], path: str) -> int:
    v = d.get("images")
    if v is None:
        return 0
    str_list(v, path, allow_str=False, what="a list of base64 strings")
    return len(v)


def _num_predict(b: Mapping[str, Any]) -> int | None:
    options = b.get("options")
    return positive(options.get("num_predict")) if isinstance(options, dict) else None


def _ollama_message(msg: object, i: int) -> tuple[str, str, int]:
    """(role, text, images) of a valid message."""
    path = f"messages[{i}]"
    if not isinstance(msg, dict):
        fail(path, f"expected a message object, got {tname(msg)}")
    role = msg.get("role")
    if not isinstance(role, str):
        fail(f"{path}.role", "required string")
    if role not in _OLLAMA_ROLES:
        fail(f"{path}.role", f"expected one of {', '.join(_OLLAMA_ROLES)}, got {role!r}")
    opt_str(msg, "content", f"{path}.content")
    opt_str(msg, "thinking", f"{path}.thinking")
    opt_str(msg, "tool_name", f"{path}.tool_name")
    images = _images(msg, f"{path}.images")
    text = msg.get("content") or ""
    calls = msg.get("tool_calls")
    if calls is None:
        return role, text, images
    if not isinstance(calls, list):
        fail(f"{path}.tool_calls", f"expected a list, got {tname(calls)}")
    for j, call in enumerate(calls):
        p = f"{path}.tool_calls[{j}]"
        if not isinstance(call, dict):
            fail(p, f"expected an object, got {tname(call)}")
        fn = call.get("function")
        if not isinstance(fn, dict):
            fail(f"{p}.function", f"expected an object, got {tname(fn)}")
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            fail(f"{p}.function.name", "required string")
        args = fn.get("arguments")
        if args is not None and not isinstance(args, dict):
            fail(f"{p}.function.arguments", f"expected an object, got {tname(args)}")
    return role, text, images


def ollama_chat(b: dict[str, Any]) -> RouteRequest:
    """Check an /api/chat body; raise BadRequest on the first problem.

    An empty or missing ``messages`` list is valid: Ollama loads the model.
    """
    model = model_name(b)
    msgs = b.get("messages")
    texts: list[str] = []
    last_user = ""
    images = 0
    if msgs is not None:
        if not isinstance(msgs, list):
            fail("messages", f"expected a list, got {tname(msgs)}")
        for i, msg in enumerate(msgs):
            if type(msg) is dict and len(msg) == 2:
                # {"role": ..., "content": "..."}: valid as it is (`_ollama_message`)
                role, text = msg.get("role"), msg.get("content")
                if type(text) is str and role in _OLLAMA_ROLES:
                    texts.append(text)
                    if role == "user":
                        last_user = text
                    continue
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
    model = model_name(b)
    for key in ("prompt", "suffix", "system", "template"):
        opt_str(b, key, key)
    opt_bool(b, "raw", "raw")
    images = _images(b, "images")
    ctx = b.get("context")
    if ctx is not None and not (isinstance(ctx, list) and all(is_int(t) for t in ctx)):
        fail("context", "expected a list of integers")
    structured = _ollama_gen_common(b)
    prompt = b.get("prompt") or ""
    system = b.get("system")
    full = f"{system}\n{prompt}" if system else prompt
    return RouteRequest(
        model, full, prompt, _num_predict(b), 1, "completion", images, False, structured
    )


def ollama_embed(b: dict[str, Any]) -> RouteRequest:
    """Check an /api/embed body; raise BadRequest on the first problem."""
    model = model_name(b)
    inp = b.get("input")
    if inp is None:
        fail("input", "required: a string or a list of strings")
    if isinstance(inp, list) and not inp:
        fail("input", "must not be an empty list")
    str_list(inp, "input", allow_str=True, what="a string or a list of strings")
    opt_bool(b, "truncate", "truncate")
    opt_int(b, "dimensions", "dimensions", 1)
    _ollama_common(b)
    return _embedding(model, inp)
