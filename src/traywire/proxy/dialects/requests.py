"""Request bodies, OpenAI ⇄ Ollama: chat, completion/generate, embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal

from .common import (
    _image_to_data_uri,
    _int_or_none,
    _ollama_call_to_openai,
    _openai_call_to_ollama,
    _openai_content_split,
    _s,
    _tools_out,
)
from .wire import Body, JSONMap, _fail

# =========================================================================== requests: chat

_OPENAI_OPTIONS: Final = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
_EXTENSION_OPTIONS: Final = ("top_k", "min_p", "typical_p", "repeat_penalty")


def _refuse_multi(body: JSONMap) -> None:
    for key in ("n", "best_of"):
        v = body.get(key)
        if v is not None and v != 1:
            raise _fail(key, f"Ollama backends return a single choice; {key} must be 1")
    if body.get("echo") is True:
        raise _fail("echo", "Ollama backends cannot echo the prompt")


def _openai_options(body: JSONMap, max_key: str) -> Body:
    opts: Body = {}
    for key in _OPENAI_OPTIONS + _EXTENSION_OPTIONS:
        v = body.get(key)
        if v is not None:
            opts[key] = v
    limit = body.get(max_key)
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        opts["num_predict"] = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        opts["stop"] = [stop]
    elif isinstance(stop, list) and stop:
        opts["stop"] = list(stop)
    return opts


def _ollama_options_to_openai(
    body: JSONMap, out: Body, *, extensions: bool, max_tokens_field: str
) -> None:
    opts = body.get("options")
    if not isinstance(opts, Mapping):
        return
    for key in _OPENAI_OPTIONS + (_EXTENSION_OPTIONS if extensions else ()):
        v = opts.get(key)
        if v is not None:
            out[key] = v
    limit = _int_or_none(opts.get("num_predict"))
    if limit is not None and limit > 0:  # -1 (infinite) and -2 (fill context): no limit
        out[max_tokens_field] = limit
    stop = opts.get("stop")
    if isinstance(stop, str):
        out["stop"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop"] = list(stop)


def _response_format_to_ollama(rf: object) -> object:
    if not isinstance(rf, Mapping):
        return None
    if rf.get("type") == "json_object":
        return "json"
    if rf.get("type") == "json_schema":
        js = rf.get("json_schema")
        schema = js.get("schema") if isinstance(js, Mapping) else None
        return dict(schema) if isinstance(schema, Mapping) else "json"
    return None


def _format_to_openai(fmt: object) -> Body | None:
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, Mapping):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": dict(fmt)}}
    return None


def _openai_messages_to_ollama(messages: Sequence[JSONMap]) -> list[Body]:
    out: list[Body] = []
    call_names: dict[str, str] = {}
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role")
        text, images = _openai_content_split(msg.get("content"), f"{where}.content")
        m: Body = {"role": "system" if role == "developer" else role, "content": text}
        if images:
            m["images"] = images
        if role == "assistant":
            calls = msg.get("tool_calls")
            fc = msg.get("function_call")
            if not calls and isinstance(fc, Mapping):
                calls = [{"function": fc}]
            if calls:
                m["tool_calls"] = [
                    _openai_call_to_ollama(c, f"{where}.tool_calls[{j}]")
                    for j, c in enumerate(calls)
                ]
                for c in calls:
                    if isinstance(c.get("id"), str):
                        call_names[c["id"]] = _s((c.get("function") or {}).get("name"))
            reasoning = msg.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                m["thinking"] = reasoning
        elif role == "tool":
            cid = _s(msg.get("tool_call_id"))
            if cid in call_names:
                m["tool_name"] = call_names[cid]
            if cid:
                m["tool_call_id"] = cid
        elif role == "function":
            m["role"] = "tool"
            m["tool_name"] = _s(msg.get("name"))
        out.append(m)
    return out


def openai_chat_request_to_ollama(body: JSONMap, model: str) -> Body:
    """A /v1/chat/completions body -> an /api/chat body for upstream ``model``."""
    _refuse_multi(body)
    out: Body = {
        "model": model,
        "messages": _openai_messages_to_ollama(body.get("messages") or []),
        "stream": body.get("stream") is True,
    }
    tools = _tools_out(body.get("tools"))
    for j, t in enumerate(tools):
        if t.get("type") != "function":
            raise _fail(
                f"tools[{j}].type",
                f"Ollama backends take only function tools, not {t.get('type')!r}",
            )
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        name = _s((choice.get("function") or {}).get("name"))
        if name:
            tools = [t for t in tools if (t.get("function") or {}).get("name") == name]
            if not tools:
                raise _fail("tool_choice", f"names function {name!r}, which is not in tools")
    if tools and choice != "none":
        out["tools"] = tools
    fmt = _response_format_to_ollama(body.get("response_format"))
    if fmt is not None:
        out["format"] = fmt
    opts = _openai_options(body, "max_completion_tokens")
    if opts:
        out["options"] = opts
    return out


def _ollama_messages_to_openai(messages: Sequence[JSONMap]) -> list[Body]:
    out: list[Body] = []
    pending: list[tuple[str, str]] = []  # (id, name) of calls not yet answered
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = _s(msg.get("role"))
        content = _s(msg.get("content"))
        images = msg.get("images") or []
        if images and role != "user":
            raise _fail(
                f"{where}.images", "OpenAI-style backends accept images only in user messages"
            )
        m: Body
        if role == "assistant":
            calls = msg.get("tool_calls") or []
            m = {"role": "assistant", "content": content if content or not calls else None}
            if calls:
                m["tool_calls"] = [
                    _ollama_call_to_openai(c, f"call_{i}_{j}") for j, c in enumerate(calls)
                ]
                pending = [(c["id"], c["function"]["name"]) for c in m["tool_calls"]]
        elif role == "tool":
            cid = _s(msg.get("tool_call_id"))
            name = _s(msg.get("tool_name")) or _s(msg.get("name"))
            match = next((p for p in pending if p[0] == cid), None) if cid else None
            if match is None and not cid:
                match = next((p for p in pending if p[1] == name), None) if name else None
                if match is None and pending:
                    match = pending[0]
                if match is None:
                    raise _fail(
                        where, "a tool result must follow an assistant message with tool_calls"
                    )
                cid = match[0]
            if match is not None:
                pending.remove(match)
            m = {"role": "tool", "tool_call_id": cid, "content": content}
        elif images:
            parts: list[Body] = [{"type": "text", "text": content}] if content else []
            parts.extend(
                {"type": "image_url", "image_url": {"url": _image_to_data_uri(img)}}
                for img in images
            )
            m = {"role": role, "content": parts}
        else:
            m = {"role": role, "content": content}
        out.append(m)
    return out


def _openai_stream_fields(body: JSONMap, out: Body, include_usage: bool) -> None:
    stream = body.get("stream") is not False  # Ollama streams unless told not to
    out["stream"] = stream
    if stream and include_usage:
        out["stream_options"] = {"include_usage": True}


def ollama_chat_request_to_openai(
    body: JSONMap,
    model: str,
    *,
    extensions: bool = False,
    include_usage: bool = True,
    max_tokens_field: str = "max_tokens",
) -> Body:
    """An /api/chat body -> a /v1/chat/completions body for upstream ``model``.

    ``extensions``: also send top_k/min_p/typical_p/repeat_penalty (vLLM,
    llama.cpp). ``include_usage``: ask for a usage chunk when streaming.
    ``max_tokens_field``: "max_tokens" or "max_completion_tokens" (OpenAI's
    reasoning models take only the latter).
    """
    messages = body.get("messages") or []
    if not messages:
        raise _fail(
            "messages",
            "an empty chat only loads the model; OpenAI-style backends need at least one message",
        )
    out: Body = {"model": model, "messages": _ollama_messages_to_openai(messages)}
    _openai_stream_fields(body, out, include_usage)
    tools = _tools_out(body.get("tools"))
    if tools:
        out["tools"] = tools
    rf = _format_to_openai(body.get("format"))
    if rf is not None:
        out["response_format"] = rf
    _ollama_options_to_openai(body, out, extensions=extensions, max_tokens_field=max_tokens_field)
    return out


def openai_include_usage(body: JSONMap) -> bool:
    """True when an OpenAI client asked for a final usage chunk."""
    so = body.get("stream_options")
    return isinstance(so, Mapping) and so.get("include_usage") is True


# =========================================================================== requests: completion


def openai_completion_request_to_ollama(body: JSONMap, model: str, *, raw: bool = True) -> Body:
    """A /v1/completions body -> an /api/generate body for upstream ``model``.

    The prompt is sent ``raw`` (no chat template) unless a ``suffix`` asks for
    fill-in-the-middle, which needs the model's template.
    """
    _refuse_multi(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise _fail(
                "prompt",
                "Ollama backends take a single text prompt, not several prompts or token ids",
            )
        prompt = prompt[0]
    out: Body = {"model": model, "prompt": _s(prompt), "stream": body.get("stream") is True}
    suffix = body.get("suffix")
    if isinstance(suffix, str) and suffix:
        out["suffix"] = suffix
    elif raw:
        out["raw"] = True
    opts = _openai_options(body, "max_tokens")
    if opts:
        out["options"] = opts
    return out


def _refuse_load_request(body: JSONMap) -> None:
    if not _s(body.get("prompt")) and not body.get("images"):
        raise _fail(
            "prompt",
            "an empty prompt only loads the model; OpenAI-style backends need a prompt",
        )


def ollama_generate_route(body: JSONMap) -> Literal["chat", "completion"]:
    """Which OpenAI endpoint serves this /api/generate: "completion" for raw or
    fill-in-the-middle (suffix) requests, "chat" otherwise."""
    if body.get("raw") is True or _s(body.get("suffix")):
        return "completion"
    return "chat"


def ollama_generate_request_to_openai_chat(
    body: JSONMap,
    model: str,
    *,
    extensions: bool = False,
    include_usage: bool = True,
    max_tokens_field: str = "max_tokens",
) -> Body:
    """An /api/generate body -> a /v1/chat/completions body: ``system`` becomes a
    system message, ``prompt`` and ``images`` one user message."""
    if _s(body.get("suffix")):
        raise _fail("suffix", "fill-in-the-middle needs the completions endpoint")
    _refuse_load_request(body)
    messages: list[Body] = []
    system = _s(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    user: Body = {"role": "user", "content": _s(body.get("prompt"))}
    if body.get("images"):
        user["images"] = body["images"]
    messages.append(user)
    out: Body = {"model": model, "messages": _ollama_messages_to_openai(messages)}
    _openai_stream_fields(body, out, include_usage)
    rf = _format_to_openai(body.get("format"))
    if rf is not None:
        out["response_format"] = rf
    _ollama_options_to_openai(body, out, extensions=extensions, max_tokens_field=max_tokens_field)
    return out


def ollama_generate_request_to_openai_completion(
    body: JSONMap, model: str, *, extensions: bool = False, include_usage: bool = True
) -> Body:
    """An /api/generate body -> a /v1/completions body (``system`` is dropped)."""
    if body.get("images"):
        raise _fail("images", "the completions endpoint cannot take images")
    _refuse_load_request(body)
    out: Body = {"model": model, "prompt": _s(body.get("prompt"))}
    suffix = _s(body.get("suffix"))
    if suffix:
        out["suffix"] = suffix
    _openai_stream_fields(body, out, include_usage)
    _ollama_options_to_openai(body, out, extensions=extensions, max_tokens_field="max_tokens")
    return out


# =========================================================================== requests: embeddings


def openai_embeddings_request_to_ollama(body: JSONMap, model: str) -> Body:
    """A /v1/embeddings body -> an /api/embed body (``encoding_format`` is applied
    when translating the response back)."""
    inp = body.get("input")
    if isinstance(inp, list) and not all(isinstance(x, str) for x in inp):
        raise _fail("input", "Ollama backends embed text, not token ids")
    out: Body = {"model": model, "input": inp if isinstance(inp, str) else list(inp or [])}
    dims = _int_or_none(body.get("dimensions"))
    if dims is not None:
        out["dimensions"] = dims
    return out


def ollama_embed_request_to_openai(body: JSONMap, model: str) -> Body:
    """An /api/embed body -> a /v1/embeddings body (floats asked for explicitly)."""
    inp = body.get("input")
    out: Body = {
        "model": model,
        "input": inp if isinstance(inp, str) else list(inp or []),
        "encoding_format": "float",
    }
    dims = _int_or_none(body.get("dimensions"))
    if dims is not None:
        out["dimensions"] = dims
    return out
