"""Small pieces the request, response and stream translations share."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Final

from .wire import Body, JSONMap, _fail

# =========================================================================== small shared pieces


def _s(v: object) -> str:
    return v if isinstance(v, str) else ""


def _maps(v: object) -> list[JSONMap]:
    """The mappings in a list (anything else: none)."""
    if not isinstance(v, list):
        return []
    return [x for x in v if isinstance(x, Mapping)]


def _int_or_none(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


_IMAGE_MAGIC: Final = (
    ("iVBORw0KGgo", "image/png"),
    ("/9j/", "image/jpeg"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
    ("Qk", "image/bmp"),
)


def _image_to_data_uri(b64: str) -> str:
    if b64.startswith("data:"):
        return b64
    mime = next((m for prefix, m in _IMAGE_MAGIC if b64.startswith(prefix)), "image/png")
    return f"data:{mime};base64,{b64}"


def _data_uri_to_base64(url: str, param: str) -> str:
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise _fail(param, "only base64 data: URIs can be sent to an Ollama backend")
        if not data:
            raise _fail(param, "the data: URI holds no image data")
        return data
    if url.startswith(("http://", "https://")):
        raise _fail(
            param,
            "Ollama backends take only inline images; send the image as a "
            "base64 data: URI instead of an http(s) URL",
        )
    raise _fail(param, "expected a base64 data: URI")


def _openai_content_split(content: object, param: str) -> tuple[str, list[str]]:
    """OpenAI message content -> (joined text, base64 images)."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for k, part in enumerate(content if isinstance(content, list) else ()):
        ptype = part.get("type")
        if ptype in ("text", "input_text"):
            texts.append(_s(part.get("text")))
        elif ptype == "refusal":
            texts.append(_s(part.get("refusal")))
        elif ptype == "image_url":
            img = part.get("image_url")
            url = img.get("url") if isinstance(img, Mapping) else img
            images.append(_data_uri_to_base64(_s(url), f"{param}[{k}].image_url"))
        else:
            raise _fail(
                f"{param}[{k}]",
                f"content parts of type {ptype!r} cannot be sent to an Ollama backend",
            )
    return "\n".join(texts), images


def _parse_arguments(args: object, param: str) -> Body:
    """OpenAI tool call arguments (a JSON string) -> the object Ollama wants."""
    if args is None:
        return {}
    if isinstance(args, Mapping):
        return dict(args)
    if isinstance(args, str):
        if not args.strip():
            return {}
        try:
            parsed = json.loads(args)
        except ValueError:
            raise _fail(param, "tool call arguments are not valid JSON") from None
        if isinstance(parsed, dict):
            return parsed
        raise _fail(
            param, f"tool call arguments must be a JSON object, got {type(parsed).__name__}"
        )
    raise _fail(param, "tool call arguments must be a JSON string")


def _dump_arguments(args: object) -> str:
    if isinstance(args, str):
        return args
    return json.dumps({} if args is None else args, ensure_ascii=False)


def _ollama_call_to_openai(call: JSONMap, call_id: str) -> Body:
    fn = call.get("function")
    fn = fn if isinstance(fn, Mapping) else {}
    return {
        "id": _s(call.get("id")) or call_id,
        "type": "function",
        "function": {"name": _s(fn.get("name")), "arguments": _dump_arguments(fn.get("arguments"))},
    }


def _openai_call_to_ollama(call: JSONMap, param: str) -> Body:
    fn = call.get("function")
    fn = fn if isinstance(fn, Mapping) else {}
    out: Body = {
        "function": {
            "name": _s(fn.get("name")),
            "arguments": _parse_arguments(fn.get("arguments"), f"{param}.function.arguments"),
        }
    }
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return out


def _id_suffix(response_id: str) -> str:
    return response_id.rsplit("-", 1)[-1]


def _tools_out(tools: object) -> list[Body]:
    out: list[Body] = []
    for t in tools if isinstance(tools, list) else ():
        if isinstance(t, Mapping):
            tool = dict(t)
            tool.setdefault("type", "function")
            out.append(tool)
    return out


# ================================================ response pieces shared with streams


def _finish_reason(done_reason: object, tool_calls: bool) -> str:
    if tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _done_reason(finish_reason: object) -> str:
    if finish_reason == "length":
        return "length"
    if finish_reason in (None, "stop", "tool_calls", "function_call"):
        return "stop"
    return str(finish_reason)


def _openai_usage(resp: JSONMap) -> Body:
    p = _int_or_none(resp.get("prompt_eval_count")) or 0
    c = _int_or_none(resp.get("eval_count")) or 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _ollama_metrics(usage: object, timings: object, total_duration: int | None) -> Body:
    out: Body = {}
    if total_duration is not None:
        out["total_duration"] = total_duration
    if isinstance(usage, Mapping):
        p = _int_or_none(usage.get("prompt_tokens"))
        c = _int_or_none(usage.get("completion_tokens"))
        if p is not None:
            out["prompt_eval_count"] = p
        if c is not None:
            out["eval_count"] = c
    if isinstance(timings, Mapping):  # llama.cpp server: milliseconds
        for src, dst in (("prompt_ms", "prompt_eval_duration"), ("predicted_ms", "eval_duration")):
            ms = timings.get(src)
            if isinstance(ms, (int, float)) and not isinstance(ms, bool):
                out[dst] = int(ms * 1_000_000)
    return out


def _ollama_parts(resp: JSONMap) -> tuple[str, str, list[JSONMap]]:
    """(content, thinking, tool calls) of an Ollama chat or generate response/chunk."""
    msg = resp.get("message")
    if isinstance(msg, Mapping):
        return _s(msg.get("content")), _s(msg.get("thinking")), _maps(msg.get("tool_calls"))
    return _s(resp.get("response")), _s(resp.get("thinking")), []


def _openai_choice(resp: JSONMap) -> tuple[str, str, list[JSONMap], object]:
    """(content, reasoning, tool calls, finish_reason) of choice 0 of a chat or completion."""
    choice: JSONMap = next((c for c in _maps(resp.get("choices")) if c.get("index", 0) == 0), {})
    msg = choice.get("message")
    if isinstance(msg, Mapping):
        reasoning = _s(msg.get("reasoning_content")) or _s(msg.get("reasoning"))
        calls = _maps(msg.get("tool_calls"))
        fc = msg.get("function_call")
        if not calls and isinstance(fc, Mapping):
            calls = [{"function": fc}]
        return _s(msg.get("content")), reasoning, calls, choice.get("finish_reason")
    return _s(choice.get("text")), "", [], choice.get("finish_reason")


def _float32_base64(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _base64_float32(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
