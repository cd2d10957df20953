"""Translation between the OpenAI and Ollama HTTP dialects.

Pure functions and small stateful stream converters: no I/O, no clock reads.
Ids, ``created`` (unix seconds) and ``created_at`` (ISO 8601 string) are passed
in by the caller, and so is the ``model`` name to put in every produced body:
the upstream model id in requests, the name the client asked for in responses.
Inputs are expected to have passed :mod:`traywire.validate` first.

Public API
----------
Errors and wire helpers
    TranslationError(message, param)  the request cannot be expressed on the other side
    UpstreamError(message)            an error object arrived inside an upstream stream
    StreamParseError(message)         upstream bytes are not valid SSE / NDJSON
    openai_error_body(message, ...)   ``{"error": {"message", "type", "param", "code"}}``
    ollama_error_body(message)        ``{"error": "..."}``
    openai_sse_error(message, ...)    bytes: SSE error event then ``data: [DONE]``
    ollama_ndjson_error(message)      bytes: ``{"error": "..."}\\n``
    openai_error_type(status)         OpenAI error ``type`` for an HTTP status
    upstream_error_message(body)      the message text of an error body of either dialect
    sse_event(obj) / SSE_DONE         one SSE ``data:`` event as bytes / the end marker
    ndjson_line(obj)                  one NDJSON line as bytes
    SSEParser                         incremental SSE parser: bytes in, data payloads out
    NDJSONParser                      incremental NDJSON splitter: bytes in, dicts out
Requests
    openai_chat_request_to_ollama(body, model)             /v1/chat/completions -> /api/chat
    ollama_chat_request_to_openai(body, model, ...)        /api/chat -> /v1/chat/completions
    openai_completion_request_to_ollama(body, model, ...)  /v1/completions -> /api/generate
    ollama_generate_route(body)                            "chat" or "completion" (see below)
    ollama_generate_request_to_openai_chat(body, model, ...)        /api/generate -> chat
    ollama_generate_request_to_openai_completion(body, model, ...)  /api/generate -> completions
    openai_embeddings_request_to_ollama(body, model)       /v1/embeddings -> /api/embed
    ollama_embed_request_to_openai(body, model)            /api/embed -> /v1/embeddings
    openai_include_usage(body)        did an OpenAI client ask for stream_options.include_usage
Responses (non-streaming; each accepts either a chat or a generate/completion body)
    ollama_response_to_openai_chat(resp, ...)        -> ``chat.completion``
    ollama_response_to_openai_completion(resp, ...)  -> ``text_completion``
    openai_response_to_ollama_chat(resp, ...)        -> /api/chat response
    openai_response_to_ollama_generate(resp, ...)    -> /api/generate response
    ollama_embed_response_to_openai(resp, ...)       -> embeddings ``list`` (float or base64)
    openai_embeddings_response_to_ollama(resp, ...)  -> /api/embed response
Streams (``feed(chunk) -> list[dict]``, ``finish() -> list[dict]``)
    OllamaToOpenAIStream(kind, ...)   Ollama NDJSON chunks -> OpenAI SSE chunk objects
    OpenAIToOllamaStream(kind, ...)   OpenAI SSE chunk objects -> Ollama NDJSON lines

Decisions
---------
* ``/api/generate`` to an OpenAI-kind backend: a plain generate (no ``raw``, no
  ``suffix``) goes to ``/v1/chat/completions`` as ``[system?, user(prompt, images)]``:
  that is what Ollama itself does with it (its chat template renders ``system`` and
  ``prompt`` as turns), and most OpenAI-compatible clouds only serve chat. ``raw``
  or ``suffix`` (fill-in-the-middle) goes to ``/v1/completions``; there ``system``
  is dropped, as Ollama's raw/FIM templating ignores it too, and images are refused.
  :func:`ollama_generate_route` makes the choice.
* ``/v1/completions`` to Ollama is sent with ``raw: true`` (the OpenAI endpoint
  continues text as given, as vLLM and llama.cpp do) unless a ``suffix`` asks for
  fill-in-the-middle, which needs Ollama's template.
* Multi-part text content is joined with ``"\\n"``. Only ``data:`` base64 images
  reach Ollama; http(s) image URLs raise TranslationError.
* ``tool_choice`` to Ollama (which has none) is best effort: ``"none"`` drops the
  tools, a named function keeps only that tool, ``"auto"``/``"required"`` keep all.
* Dropped silently (hints with no Ollama meaning): ``user``, ``logit_bias``,
  ``logprobs``, ``top_logprobs``, ``parallel_tool_calls``, ``service_tier``,
  ``store``, ``metadata``; from Ollama: ``keep_alive``, ``think``, ``template``,
  ``context``, ``truncate`` and options with no OpenAI meaning (num_ctx, ...).
  Refused (they change the shape of the answer): ``n`` > 1, ``best_of`` > 1,
  ``echo``, several prompts, token-id prompts/inputs, and an empty Ollama chat or
  prompt (a model load request, which the proxy must answer itself for OpenAI
  backends).
* Upstream bodies are not validated: converters read them defensively and
  treat fields of the wrong type as absent.
* Ollama's stream default is true, OpenAI's false: each request translation sets
  ``stream`` explicitly. Streaming requests to an OpenAI backend ask for
  ``stream_options.include_usage`` so the final Ollama line can carry eval counts.
* Tool calls without ids (Ollama) get deterministic ids: ``call_<msg>_<n>`` in
  requests, ``call_<response id suffix>_<n>`` in responses. An Ollama ``tool``
  message is matched to its call by ``tool_call_id``, else ``tool_name``, else order.
* Ollama ``thinking`` <-> OpenAI ``reasoning_content`` (vLLM/llama.cpp/DeepSeek
  style; ``reasoning`` is read too).
* Non-standard sampling options (top_k, min_p, typical_p, repeat_penalty) are sent
  to OpenAI-kind backends only with ``extensions=True`` (vLLM, llama.cpp accept
  them; OpenAI's cloud rejects unknown arguments).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from .errors import TraywireError

__all__ = [
    "SSE_DONE",
    "NDJSONParser",
    "OllamaToOpenAIStream",
    "OpenAIToOllamaStream",
    "SSEParser",
    "StreamParseError",
    "TranslationError",
    "UpstreamError",
    "ndjson_line",
    "ollama_chat_request_to_openai",
    "ollama_embed_request_to_openai",
    "ollama_embed_response_to_openai",
    "ollama_error_body",
    "ollama_generate_request_to_openai_chat",
    "ollama_generate_request_to_openai_completion",
    "ollama_generate_route",
    "ollama_ndjson_error",
    "ollama_response_to_openai_chat",
    "ollama_response_to_openai_completion",
    "openai_chat_request_to_ollama",
    "openai_completion_request_to_ollama",
    "openai_embeddings_request_to_ollama",
    "openai_embeddings_response_to_ollama",
    "openai_error_body",
    "openai_error_type",
    "openai_include_usage",
    "openai_response_to_ollama_chat",
    "openai_response_to_ollama_generate",
    "openai_sse_error",
    "sse_event",
    "upstream_error_message",
]

Body = dict[str, Any]
JSONMap = Mapping[str, Any]


# =========================================================================== errors


class TranslationError(TraywireError):
    """The request is valid in its dialect but cannot be expressed in the other one."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class UpstreamError(TraywireError):
    """An upstream stream carried an error object instead of (more) output."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StreamParseError(TraywireError, ValueError):
    """Upstream bytes are not valid SSE / NDJSON (or a line grew past the limit)."""


def _fail(param: str, problem: str) -> TranslationError:
    return TranslationError(f"{param}: {problem}", param)


_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error_type(status: int) -> str:
    """The OpenAI error ``type`` string that goes with an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    if status == 503:
        return "service_unavailable_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def openai_error_body(
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> Body:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI returns it."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def ollama_error_body(message: str) -> Body:
    """``{"error": "..."}`` as Ollama returns it."""
    return {"error": message}


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


SSE_DONE: Final = b"data: [DONE]\n\n"


def sse_event(obj: object) -> bytes:
    """One SSE event ``data: <json>\\n\\n``."""
    return b"data: " + _dumps(obj) + b"\n\n"


def ndjson_line(obj: object) -> bytes:
    """One NDJSON line ``<json>\\n``."""
    return _dumps(obj) + b"\n"


def openai_sse_error(
    message: str,
    *,
    error_type: str = "api_error",
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """What to write when an OpenAI stream fails after it started: error event + [DONE]."""
    body = openai_error_body(message, error_type=error_type, param=param, code=code)
    return sse_event(body) + SSE_DONE


def ollama_ndjson_error(message: str) -> bytes:
    """What to write when an Ollama stream fails after it started."""
    return ndjson_line({"error": message})


def upstream_error_message(body: object, default: str = "upstream error") -> str:
    """The human text of an error body: OpenAI, Ollama, vLLM or llama.cpp shaped."""
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, str) and err:
            return err
        if isinstance(err, Mapping):
            msg = err.get("message")
            if isinstance(msg, str) and msg:
                return msg
        for key in ("message", "detail"):
            msg = body.get(key)
            if isinstance(msg, str) and msg:
                return msg
    elif isinstance(body, str) and body.strip():
        return body.strip()
    return default


# =========================================================================== stream parsers

_MAX_BUFFER: Final = 16 * 1024 * 1024


class SSEParser:
    """Incremental Server-Sent Events parser.

    ``feed(data)`` takes raw bytes as they come off the socket and returns the
    ``data`` payloads (str) of the events completed by them; ``data: [DONE]`` is
    returned as the string ``"[DONE]"``. Lines may end in LF, CRLF or CR (a CRLF
    split across two chunks included); comment lines and other fields (event:,
    id:, retry:) are skipped; several ``data:`` lines of one event are joined
    with ``"\\n"``. UTF-8 is decoded per event, so multi-byte characters split
    across chunks are fine. ``finish()`` returns an event left unterminated at
    end of stream (lenient: the spec would drop it).
    """

    __slots__ = ("_data", "_max", "_pending", "_skip_lf")

    def __init__(self, max_buffer: int = _MAX_BUFFER) -> None:
        self._pending = bytearray()
        self._data: list[bytes] = []
        self._skip_lf = False
        self._max = max_buffer

    def feed(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == 0x0D
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = chunk.rfind(b"\n")
        pending = self._pending
        if cut < 0:
            pending += chunk
            if len(pending) > self._max:
                raise StreamParseError("SSE line longer than the buffer limit")
            return []
        lines: list[bytes] | list[bytearray]
        if pending:
            pending += chunk[:cut]
            lines = pending.split(b"\n")
            self._pending = bytearray(chunk[cut + 1 :])
        else:
            lines = chunk[:cut].split(b"\n")
            if cut + 1 < len(chunk):
                pending += chunk[cut + 1 :]
        out: list[str] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    out.append(self._dispatch())
                    data = self._data
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(bytes(value[1:] if value[:1] == b" " else value))
            elif line == b"data":
                data.append(b"")
            # ":" comments and other fields are ignored
        if sum(map(len, data)) > self._max:
            raise StreamParseError("SSE event larger than the buffer limit")
        return out

    def _dispatch(self) -> str:
        data = self._data
        self._data = []
        payload = data[0] if len(data) == 1 else b"\n".join(data)
        try:
            return payload.decode()
        except UnicodeDecodeError as exc:
            raise StreamParseError(f"SSE event is not valid UTF-8: {exc}") from None

    def finish(self) -> list[str]:
        self._skip_lf = False
        out = self.feed(b"\n\n") if (self._pending or self._data) else []
        self._pending = bytearray()
        return out


class NDJSONParser:
    """Incremental newline-delimited JSON splitter: bytes in, parsed objects out.

    Blank lines are skipped; a line that is not a JSON object raises
    StreamParseError. ``finish()`` parses a last line that lacks its newline.
    """

    __slots__ = ("_max", "_pending")

    def __init__(self, max_buffer: int = _MAX_BUFFER) -> None:
        self._pending = bytearray()
        self._max = max_buffer

    def feed(self, chunk: bytes) -> list[Body]:
        cut = chunk.rfind(b"\n")
        pending = self._pending
        if cut < 0:
            pending += chunk
            if len(pending) > self._max:
                raise StreamParseError("NDJSON line longer than the buffer limit")
            return []
        if pending:
            pending += chunk[:cut]
            lines: Iterable[bytes | bytearray] = pending.split(b"\n")
            self._pending = bytearray(chunk[cut + 1 :])
        else:
            lines = chunk[:cut].split(b"\n")
            if cut + 1 < len(chunk):
                pending += chunk[cut + 1 :]
        return [_parse_line(line) for line in lines if line.strip()]

    def finish(self) -> list[Body]:
        rest, self._pending = self._pending, bytearray()
        return [_parse_line(rest)] if rest.strip() else []


def _parse_line(line: bytes | bytearray) -> Body:
    try:
        obj = json.loads(line)
    except ValueError:
        snippet = bytes(line[:80]).decode(errors="replace")
        raise StreamParseError(f"invalid JSON line: {snippet!r}") from None
    if not isinstance(obj, dict):
        raise StreamParseError(f"expected a JSON object per line, got {type(obj).__name__}")
    return obj


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


# =========================================================================== responses


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


def ollama_response_to_openai_chat(
    resp: JSONMap, *, model: str, response_id: str, created: int
) -> Body:
    """An Ollama /api/chat (or /api/generate) response -> an OpenAI ``chat.completion``."""
    content, thinking, calls = _ollama_parts(resp)
    message: Body = {"role": "assistant", "content": content if content or not calls else None}
    if thinking:
        message["reasoning_content"] = thinking
    if calls:
        suffix = _id_suffix(response_id)
        message["tool_calls"] = [
            _ollama_call_to_openai(c, f"call_{suffix}_{j}") for j, c in enumerate(calls)
        ]
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(resp.get("done_reason"), bool(calls)),
            }
        ],
        "usage": _openai_usage(resp),
    }


def ollama_response_to_openai_completion(
    resp: JSONMap, *, model: str, response_id: str, created: int
) -> Body:
    """An Ollama /api/generate (or /api/chat) response -> an OpenAI ``text_completion``."""
    content, _thinking, _calls = _ollama_parts(resp)
    return {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "text": content,
                "index": 0,
                "logprobs": None,
                "finish_reason": _finish_reason(resp.get("done_reason"), False),
            }
        ],
        "usage": _openai_usage(resp),
    }


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


def openai_response_to_ollama_chat(
    resp: JSONMap, *, model: str, created_at: str, total_duration: int | None = None
) -> Body:
    """An OpenAI chat (or completion) response -> an Ollama /api/chat response.

    ``total_duration`` (ns) is what the caller measured; eval counts come from
    ``usage``, eval durations from llama.cpp's ``timings`` when present.
    """
    content, reasoning, calls, finish = _openai_choice(resp)
    message: Body = {"role": "assistant", "content": content}
    if reasoning:
        message["thinking"] = reasoning
    if calls:
        message["tool_calls"] = [
            _openai_call_to_ollama(c, f"choices[0].message.tool_calls[{j}]")
            for j, c in enumerate(calls)
        ]
    out: Body = {
        "model": model,
        "created_at": created_at,
        "message": message,
        "done": True,
        "done_reason": _done_reason(finish),
    }
    out.update(_ollama_metrics(resp.get("usage"), resp.get("timings"), total_duration))
    return out


def openai_response_to_ollama_generate(
    resp: JSONMap, *, model: str, created_at: str, total_duration: int | None = None
) -> Body:
    """An OpenAI completion (or chat) response -> an Ollama /api/generate response."""
    content, reasoning, _calls, finish = _openai_choice(resp)
    out: Body = {
        "model": model,
        "created_at": created_at,
        "response": content,
        "done": True,
        "done_reason": _done_reason(finish),
    }
    if reasoning:
        out["thinking"] = reasoning
    out.update(_ollama_metrics(resp.get("usage"), resp.get("timings"), total_duration))
    return out


def _float32_base64(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _base64_float32(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def ollama_embed_response_to_openai(
    resp: JSONMap, *, model: str, encoding_format: str = "float"
) -> Body:
    """An Ollama /api/embed response -> an OpenAI embeddings ``list``.

    ``encoding_format`` is the client's: "base64" packs each vector as
    little-endian float32, as OpenAI does (the ``openai`` package asks for it by
    default).
    """
    vectors = resp.get("embeddings")
    vectors = vectors if isinstance(vectors, list) else []
    pack = encoding_format == "base64"
    p = _int_or_none(resp.get("prompt_eval_count")) or 0
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _float32_base64(v) if pack else v}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": p, "total_tokens": p},
    }


def openai_embeddings_response_to_ollama(
    resp: JSONMap, *, model: str, total_duration: int | None = None
) -> Body:
    """An OpenAI embeddings response -> an Ollama /api/embed response."""
    data = sorted(_maps(resp.get("data")), key=lambda d: _int_or_none(d.get("index")) or 0)
    vectors = [_base64_float32(e) if isinstance(e := d.get("embedding"), str) else e for d in data]
    out: Body = {"model": model, "embeddings": vectors}
    if total_duration is not None:
        out["total_duration"] = total_duration
    usage = resp.get("usage")
    if isinstance(usage, Mapping) and _int_or_none(usage.get("prompt_tokens")) is not None:
        out["prompt_eval_count"] = usage["prompt_tokens"]
    return out


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
