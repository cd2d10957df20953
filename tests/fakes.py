"""Fake LLM backends for traywire's end-to-end tests.

`FakeBackend` is a real HTTP server on 127.0.0.1 that speaks one API dialect,
either Ollama's (``kind="ollama"``) or the OpenAI one (``kind="openai"``, as
served by vLLM, llama.cpp's server, llama-cpp-python and the clouds). It runs
aiohttp on its own event loop in its own daemon thread, so tests that use the
*synchronous* ``openai`` / ``ollama`` clients (or drive the proxy from the test
thread) never share a loop with it.

Quick start::

    with FakeBackend("openai", name="b1", models=["m1"]) as fake:
        client = openai.OpenAI(base_url=fake.url + "/v1", api_key="x")
        client.chat.completions.create(model="m1", messages=[...])
        assert fake.count("/v1/chat/completions") == 1
        fake.status(429, headers={"Retry-After": "2"})   # now rate-limited
        fake.refuse()                                    # now down (ECONNREFUSED)
        fake.revive()                                    # back, same port

Endpoints
---------
``kind="openai"``: ``POST /v1/chat/completions``, ``POST /v1/completions``,
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /v1/models/{id}``,
``GET /health``.

``kind="ollama"``: ``POST /api/chat``, ``POST /api/generate``, ``POST /api/embed``,
``POST /api/embeddings`` (legacy), ``POST /api/show``, ``GET /api/tags``,
``GET /api/version``, ``GET /api/ps``, ``GET /`` ("Ollama is running"), and model
management as a real Ollama answers it: ``POST /api/pull`` (NDJSON progress:
``pulling manifest``, ``pulling <digest>`` lines with ``digest``/``total``/
``completed``, ``verifying sha256 digest``, ``writing manifest``, ``success``;
the model is then served; a name not in ``registry`` gets an ``{"error": ...}``
line), ``POST /api/push`` (progress, then ``success``), ``POST /api/create``
(``from`` an existing model; progress, then the new model is served),
``POST /api/copy`` and ``DELETE /api/delete`` (200 with an empty body; 404
``{"error": ...}`` for a model it does not have). ``stream: false`` gets the
last progress object alone (an error: status 500). ``fake.models`` changes
accordingly. ``/api/show`` and ``/api/ps`` report ``context_length``.

Replies are realistic: ids, ``created``/``created_at``, usage or eval counts,
``finish_reason``/``done_reason`` (``"length"`` when ``max_tokens`` /
``options.num_predict`` cut the reply short), streaming as SSE
(``data: {...}\\n\\n`` ... ``data: [DONE]``, with a usage chunk when
``stream_options.include_usage`` is set) or NDJSON (Ollama; note that Ollama
streams by default when ``stream`` is absent). A request for a model the fake
does not serve gets a 404 in the dialect's shape, unless ``any_model=True``
(llama.cpp ignores the model name).

Tool calls
----------
``fake.tool_call("get_weather", {"city": "Paris"})`` makes the fake answer every
chat request that offers ``tools`` (and no ``tool_choice: "none"``) with that
call instead of text; ``fake.tool_calls = [(name, args), ...]`` sets several
(parallel) calls, ``fake.tool_calls = ()`` goes back to text. Requests without
``tools`` still get the text reply. The shapes are the real servers':

- OpenAI, non-streamed: ``message.content`` null, ``message.tool_calls`` with
  ``id``, ``type: "function"``, ``function.name`` and ``function.arguments`` as a
  JSON string; ``finish_reason: "tool_calls"``.
- OpenAI, streamed: the first chunk carries ``role``, ``content: null`` and the
  first call's head (``index``, ``id``, ``type``, ``function.name``, ``arguments:
  ""``); the arguments string follows in several fragments (chunks with only
  ``index`` and ``function.arguments``); each further call starts with its own
  head chunk; then a chunk with ``finish_reason: "tool_calls"`` (and the usage
  chunk when asked).
- Ollama (``/api/chat``): ``message.tool_calls`` with ``function.name`` and
  ``function.arguments`` as a JSON object, ``content: ""``. Streamed: one
  ``done: false`` line holding every call (with ``fake.split_tool_calls =
  True``: one line per call, like newer Ollama versions that send each call as
  soon as it is parsed), then the final ``done: true`` line with
  ``done_reason: "stop"``.

Telling backends apart
----------------------
Every response carries the headers ``X-Fake-Backend: <name>`` and
``X-Fake-Request-Index: <i>`` (see ``RecordedRequest.index``); the default reply
text contains the name ("Hello from <name>! ..."); non-streamed JSON bodies
(and the finishing chunk of a stream) carry an extra ``"x_fake"`` object:
``{"backend": name, "request_index": i, "request": <the parsed JSON body>}``.
The most reliable check is the fake's own record: ``fake.requests``.

Faults (thread-safe, switch at any time, one mode at a time)
------------------------------------------------------------
``ok()``, ``refuse()``, ``revive()``, ``hang()``, ``drop()``,
``status(code, body, headers)``, ``slow_first_byte(s)``, ``cut_after(n)``,
``stall_after(n, s)``, ``garbage()``, ``loading()``. Request-level faults take
``times=`` (apply to the next N matching requests, then back to ok) and
``paths=`` (only these request paths; others behave normally). See each method.

Chunks, for ``cut_after``/``stall_after``/``chunk_delay``, are wire events: one
SSE event or one NDJSON line, counting the role chunk, the finishing chunk, the
usage chunk and ``[DONE]``. For a non-streamed body, ``n == 0`` means "after
the headers" and ``n >= 1`` means "after the first half of the body".

Recording
---------
``fake.requests`` (list of `RecordedRequest`), ``fake.count(path, method)``,
``fake.request_count``, ``fake.last_request``, ``fake.in_flight``,
``fake.disconnects`` (requests whose client went away before the response was
complete), ``wait_for_requests(n, timeout)``, ``wait_for_disconnect(timeout)``,
``clear()``. A disconnect is only noticed while the fake still has something to
send or is waiting (hang/stall/chunk_delay): use ``chunk_delay`` or
``stall_after`` in tests that prove the proxy cancels its upstream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "FakeBackend",
    "FakeFactory",
    "FakeToolCall",
    "Kind",
    "RecordedRequest",
    "fake_factory",
    "ollama_fake",
    "openai_fake",
]

Kind = Literal["ollama", "openai"]
Outcome = Literal["completed", "disconnected", "aborted", "stopped"]

_START_TIMEOUT = 10.0
_CONTROL_TIMEOUT = 5.0
_STOP_TIMEOUT = 5.0


@dataclass
class RecordedRequest:
    """One request as the fake received it.

    ``outcome`` is ``None`` while the request is in flight, then one of
    ``"completed"`` (the whole response was sent), ``"disconnected"`` (the
    client went away first), ``"aborted"`` (the fake cut the connection on
    purpose: ``cut_after``, ``drop``, ``refuse``) or ``"stopped"`` (the fake was
    stopped). ``status`` is the HTTP status sent, if any.
    """

    index: int
    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes
    json: Any
    stream: bool
    received_at: float
    status: int | None = None
    outcome: Outcome | None = None

    @property
    def model(self) -> str | None:
        """The ``model`` field of the JSON body, if any."""
        if isinstance(self.json, dict):
            model = self.json.get("model")
            return model if isinstance(model, str) else None
        return None

    @property
    def disconnected(self) -> bool:
        return self.outcome == "disconnected"


@dataclass(frozen=True)
class _Fault:
    mode: str = "ok"
    code: int = 0
    body: Any = None
    headers: Mapping[str, str] | None = None
    seconds: float | None = None
    n: int = 0
    paths: frozenset[str] | None = None
    content_type: str | None = None


_OK = _Fault()


@dataclass
class _Reply:
    status: int = 200
    body: bytes = b""
    events: list[bytes] | None = None  # a streamed reply when not None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeToolCall:
    """One tool call the fake makes (see `FakeBackend.tool_call`).

    ``id``: the call id; by default the OpenAI fake makes one up
    (``call_<name>_<request index>_<i>``) and the Ollama fake sends none, like
    Ollama 0.6.
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        """The arguments as OpenAI servers send them: a JSON string."""
        return json.dumps(dict(self.arguments))


@dataclass
class _Ctx:
    """Everything a dialect needs to answer one request (a consistent snapshot)."""

    rec: RecordedRequest
    name: str
    models: tuple[str, ...]
    pieces: tuple[str, ...]
    any_model: bool
    api_key: str | None
    embedding_dim: int
    tool_calls: tuple[FakeToolCall, ...] = ()
    split_tool_calls: bool = False
    context_length: int = 4096
    registry: frozenset[str] | None = None
    # replaces the models served (pull, create, copy, delete)
    set_models: Callable[[Callable[[tuple[str, ...]], tuple[str, ...]]], None] = lambda f: None

    def calls_for_chat(self) -> tuple[FakeToolCall, ...]:
        """The tool calls to answer this chat request with (none: answer text)."""
        body = self.rec.json
        if not self.tool_calls or not isinstance(body, dict):
            return ()
        tools = body.get("tools")
        if not isinstance(tools, list) or not tools or body.get("tool_choice") == "none":
            return ()
        return self.tool_calls


def _split_reply(text: str) -> tuple[str, ...]:
    """Split text into word-sized pieces that keep their leading whitespace."""
    pieces = tuple(re.findall(r"\s*\S+", text))
    if pieces and text[len("".join(pieces)) :]:
        pieces = (*pieces[:-1], pieces[-1] + text[len("".join(pieces)) :])
    return pieces


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _fragments(text: str, longest: int = 6) -> list[str]:
    """``text`` cut into token-sized fragments, the way a server streams tool call
    arguments: word pieces keeping their leading whitespace, longer ones cut every
    ``longest`` characters (which can fall inside a JSON ``\\u`` escape)."""
    out: list[str] = []
    for piece in _split_reply(text) or (text,):
        out += [piece[i : i + longest] for i in range(0, len(piece), longest)]
    return out


def _json_reply(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status=status, body=_dumps(obj), headers=dict(headers or {}))


def _count_words(value: Any) -> int:
    """A stable stand-in for a token count of anything in a request."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, Mapping):
        if "content" in value:  # a chat message: only its text counts
            return _count_words(value["content"])
        return sum(_count_words(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_count_words(v) for v in value)
    return 0


def _embedding(text: str, dim: int) -> list[float]:
    """A deterministic, unit-length vector derived from the text."""
    raw = b""
    counter = 0
    while len(raw) < dim * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [
        (int.from_bytes(raw[i * 4 : i * 4 + 4], "little") / 2**32) * 2 - 1 for i in range(dim)
    ]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]


def _reason(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class _Dialect:
    """What differs between the Ollama and the OpenAI flavour of a fake."""

    kind: Kind
    stream_content_type: str

    def routes(self) -> dict[tuple[str, str], Callable[[_Ctx], _Reply]]:
        raise NotImplementedError

    def match_route(self, method: str, path: str) -> Callable[[_Ctx], _Reply] | _Reply:
        routes = self.routes()
        handler = routes.get((method, path))
        if handler is None and method == "HEAD":
            handler = routes.get(("GET", path))
        if handler is not None:
            return handler
        if any(p == path for (_, p) in routes):
            return self.error(405, "method not allowed")
        return self.not_found_route(path)

    def is_stream(self, path: str, body: Any) -> bool:
        raise NotImplementedError

    def error(
        self, status: int, message: str, *, etype: str | None = None, code: str | None = None
    ) -> _Reply:
        raise NotImplementedError

    def not_found_route(self, path: str) -> _Reply:
        raise NotImplementedError

    def loading(self) -> _Reply:
        raise NotImplementedError

    def check_auth(self, ctx: _Ctx) -> _Reply | None:
        if ctx.api_key is None or ctx.rec.path in ("/health", "/"):
            return None
        if ctx.rec.headers.get("Authorization", "") == f"Bearer {ctx.api_key}":
            return None
        return self.unauthorized()

    def unauthorized(self) -> _Reply:
        raise NotImplementedError


class _OpenAIDialect(_Dialect):
    kind: Kind = "openai"
    stream_content_type = "text/event-stream"

    def routes(self) -> dict[tuple[str, str], Callable[[_Ctx], _Reply]]:
        return {
            ("POST", "/v1/chat/completions"): self.chat,
            ("POST", "/v1/completions"): self.completions,
            ("POST", "/v1/embeddings"): self.embeddings,
            ("GET", "/v1/models"): self.list_models,
            ("GET", "/health"): self.health,
        }

    def match_route(self, method: str, path: str) -> Callable[[_Ctx], _Reply] | _Reply:
        if path.startswith("/v1/models/") and method in ("GET", "HEAD"):
            return self.get_model
        return super().match_route(method, path)

    def is_stream(self, path: str, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    def error(
        self, status: int, message: str, *, etype: str | None = None, code: str | None = None
    ) -> _Reply:
        if etype is None:
            etype = {
                400: "invalid_request_error",
                401: "invalid_request_error",
                403: "permission_error",
                404: "invalid_request_error",
                429: "rate_limit_error",
            }.get(status, "server_error" if status >= 500 else "invalid_request_error")
        err = {"message": message, "type": etype, "param": None, "code": code}
        return _json_reply({"error": err}, status)

    def not_found_route(self, path: str) -> _Reply:
        return self.error(404, f"Not found: {path}", code="not_found")

    def loading(self) -> _Reply:
        # llama.cpp's exact body while the model loads.
        body = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        return _json_reply(body, 503)

    def unauthorized(self) -> _Reply:
        return self.error(401, "Incorrect API key provided.", code="invalid_api_key")

    def _check_model(self, ctx: _Ctx) -> _Reply | str:
        body = ctx.rec.json
        if not isinstance(body, dict):
            return self.error(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if ctx.any_model:
            return model if isinstance(model, str) and model else ctx.models[0]
        if not isinstance(model, str) or not model:
            return self.error(400, "you must provide a model parameter")
        if model not in ctx.models:
            return self.error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return model

    @staticmethod
    def _limit(ctx: _Ctx) -> tuple[tuple[str, ...], str]:
        body = ctx.rec.json
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(limit, int) and 0 <= limit < len(ctx.pieces):
            return ctx.pieces[:limit], "length"
        return ctx.pieces, "stop"

    @staticmethod
    def _usage(prompt: int, completion: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    @staticmethod
    def _echo(ctx: _Ctx) -> dict[str, Any]:
        return {"backend": ctx.name, "request_index": ctx.rec.index, "request": ctx.rec.json}

    def _sse(self, chunks: Iterable[Any]) -> list[bytes]:
        events = [b"data: " + _dumps(c) + b"\n\n" for c in chunks]
        events.append(b"data: [DONE]\n\n")
        return events

    def chat(self, ctx: _Ctx) -> _Reply:
        model = self._check_model(ctx)
        if isinstance(model, _Reply):
            return model
        body = ctx.rec.json
        calls = ctx.calls_for_chat()
        if calls:
            return self._tool_chat(ctx, model, calls)
        pieces, finish = self._limit(ctx)
        usage = self._usage(_count_words(body.get("messages")), len(pieces))
        base = {
            "id": f"chatcmpl-{ctx.name}-{ctx.rec.index}",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": f"fp_{ctx.name}",
        }
        if not ctx.rec.stream:
            message = {"role": "assistant", "content": "".join(pieces)}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            obj = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            return _json_reply({**obj, "x_fake": self._echo(ctx)})
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        extra: dict[str, Any] = {"usage": None} if include_usage else {}
        base = {**base, "object": "chat.completion.chunk"}

        def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {**base, "choices": [choice], **extra}

        chunks = [chunk({"role": "assistant", "content": ""}, None)]
        chunks += [chunk({"content": p}, None) for p in pieces]
        chunks.append({**chunk({}, finish), "x_fake": self._echo(ctx)})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": usage})
        return _Reply(events=self._sse(chunks), content_type=self.stream_content_type)

    @staticmethod
    def _call_id(ctx: _Ctx, call: FakeToolCall, i: int) -> str:
        return call.id or f"call_{call.name}_{ctx.rec.index}_{i}"

    def _tool_chat(self, ctx: _Ctx, model: str, calls: tuple[FakeToolCall, ...]) -> _Reply:
        """A chat answered with tool calls (see "Tool calls" in the module docs)."""
        body = ctx.rec.json
        fragments = [_fragments(c.arguments_json) for c in calls]
        usage = self._usage(_count_words(body.get("messages")), sum(len(f) + 1 for f in fragments))
        base = {
            "id": f"chatcmpl-{ctx.name}-{ctx.rec.index}",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": f"fp_{ctx.name}",
        }
        if not ctx.rec.stream:
            tool_calls = [
                {
                    "id": self._call_id(ctx, c, i),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json},
                }
                for i, c in enumerate(calls)
            ]
            message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
            obj = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            return _json_reply({**obj, "x_fake": self._echo(ctx)})
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        extra: dict[str, Any] = {"usage": None} if include_usage else {}
        base = {**base, "object": "chat.completion.chunk"}

        def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {**base, "choices": [choice], **extra}

        chunks = []
        for i, (call, frags) in enumerate(zip(calls, fragments, strict=True)):
            head = {
                "index": i,
                "id": self._call_id(ctx, call, i),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            first: dict[str, Any] = {"tool_calls": [head]}
            if i == 0:
                first = {"role": "assistant", "content": None, **first}
            chunks.append(chunk(first, None))
            chunks += [
                chunk({"tool_calls": [{"index": i, "function": {"arguments": f}}]}, None)
                for f in frags
            ]
        chunks.append({**chunk({}, "tool_calls"), "x_fake": self._echo(ctx)})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": usage})
        return _Reply(events=self._sse(chunks), content_type=self.stream_content_type)

    def completions(self, ctx: _Ctx) -> _Reply:
        model = self._check_model(ctx)
        if isinstance(model, _Reply):
            return model
        body = ctx.rec.json
        pieces, finish = self._limit(ctx)
        usage = self._usage(_count_words(body.get("prompt")), len(pieces))
        base = {
            "id": f"cmpl-{ctx.name}-{ctx.rec.index}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": f"fp_{ctx.name}",
        }
        if not ctx.rec.stream:
            choice = {
                "text": "".join(pieces),
                "index": 0,
                "logprobs": None,
                "finish_reason": finish,
            }
            return _json_reply(
                {**base, "choices": [choice], "usage": usage, "x_fake": self._echo(ctx)}
            )
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        extra: dict[str, Any] = {"usage": None} if include_usage else {}

        def chunk(text: str, reason: str | None) -> dict[str, Any]:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}
            return {**base, "choices": [choice], **extra}

        chunks = [chunk(p, None) for p in pieces]
        chunks.append({**chunk("", finish), "x_fake": self._echo(ctx)})
        if include_usage:
            chunks.append({**base, "choices": [], "usage": usage})
        return _Reply(events=self._sse(chunks), content_type=self.stream_content_type)

    def embeddings(self, ctx: _Ctx) -> _Reply:
        model = self._check_model(ctx)
        if isinstance(model, _Reply):
            return model
        body = ctx.rec.json
        raw = body.get("input")
        inputs: list[Any]
        if isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
            inputs = [raw]  # one pre-tokenised input
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            return self.error(400, "'input' must be a non-empty string or array")
        dim = body.get("dimensions")
        dim = dim if isinstance(dim, int) and dim > 0 else ctx.embedding_dim
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(inputs):
            vec = _embedding(json.dumps(item), dim)
            emb: Any = vec
            if as_base64:
                emb = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(t) if isinstance(t, list) else _count_words(t) for t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json_reply(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": usage,
                "x_fake": self._echo(ctx),
            }
        )

    @staticmethod
    def _model_obj(ctx: _Ctx, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1700000000, "owned_by": ctx.name}

    def list_models(self, ctx: _Ctx) -> _Reply:
        data = [self._model_obj(ctx, m) for m in ctx.models]
        return _json_reply({"object": "list", "data": data})

    def get_model(self, ctx: _Ctx) -> _Reply:
        model = ctx.rec.path[len("/v1/models/") :]
        if model not in ctx.models and not ctx.any_model:
            return self.error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return _json_reply(self._model_obj(ctx, model))

    def health(self, ctx: _Ctx) -> _Reply:
        return _json_reply({"status": "ok"})


def _ollama_name(model: str) -> str:
    """Ollama's name normalisation: a model without a tag means ``:latest``."""
    return model if ":" in model.rsplit("/", 1)[-1] else model + ":latest"


class _OllamaDialect(_Dialect):
    kind: Kind = "ollama"
    stream_content_type = "application/x-ndjson"
    version = "0.6.8"

    def routes(self) -> dict[tuple[str, str], Callable[[_Ctx], _Reply]]:
        return {
            ("POST", "/api/chat"): self.chat,
            ("POST", "/api/generate"): self.generate,
            ("POST", "/api/embed"): self.embed,
            ("POST", "/api/embeddings"): self.embeddings_legacy,
            ("POST", "/api/show"): self.show,
            ("GET", "/api/tags"): self.tags,
            ("GET", "/api/version"): self.version_info,
            ("GET", "/api/ps"): self.ps,
            ("POST", "/api/pull"): self.pull,
            ("POST", "/api/push"): self.push,
            ("POST", "/api/create"): self.create,
            ("POST", "/api/copy"): self.copy,
            ("DELETE", "/api/delete"): self.delete,
            ("GET", "/"): self.root,
        }

    def is_stream(self, path: str, body: Any) -> bool:
        streams = ("/api/chat", "/api/generate", "/api/pull", "/api/push", "/api/create")
        if path not in streams or not isinstance(body, dict):
            return False
        return body.get("stream") is not False  # Ollama streams unless told not to

    def error(
        self, status: int, message: str, *, etype: str | None = None, code: str | None = None
    ) -> _Reply:
        return _json_reply({"error": message}, status)

    def not_found_route(self, path: str) -> _Reply:
        return _Reply(status=404, body=b"404 page not found", content_type="text/plain")

    def loading(self) -> _Reply:
        return self.error(503, "loading model")

    def unauthorized(self) -> _Reply:
        return self.error(401, "unauthorized")

    def _check_model(self, ctx: _Ctx) -> _Reply | str:
        body = ctx.rec.json
        if not isinstance(body, dict):
            return self.error(400, "invalid request body")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.error(400, "model is required")
        if not ctx.any_model and _ollama_name(model) not in {_ollama_name(m) for m in ctx.models}:
            return self.error(404, f'model "{model}" not found, try pulling it first')
        return model

    @staticmethod
    def _limit(ctx: _Ctx) -> tuple[tuple[str, ...], str]:
        options = ctx.rec.json.get("options")
        limit = options.get("num_predict") if isinstance(options, dict) else None
        if isinstance(limit, int) and 0 <= limit < len(ctx.pieces):
            return ctx.pieces[:limit], "length"
        return ctx.pieces, "stop"

    @staticmethod
    def _stats(prompt: int, completion: int) -> dict[str, int]:
        return {
            "total_duration": 5_000_000 + completion * 1_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt,
            "prompt_eval_duration": 2_000_000,
            "eval_count": completion,
            "eval_duration": completion * 1_000_000,
        }

    @staticmethod
    def _echo(ctx: _Ctx) -> dict[str, Any]:
        return {"backend": ctx.name, "request_index": ctx.rec.index, "request": ctx.rec.json}

    def _ndjson(self, lines: Iterable[Any]) -> list[bytes]:
        return [_dumps(line) + b"\n" for line in lines]

    def _load_or_unload(self, ctx: _Ctx, model: str, key: str, empty: Any) -> _Reply:
        # An empty prompt/message list only loads (or, with keep_alive 0, unloads) the model.
        unload = ctx.rec.json.get("keep_alive") in (0, "0", "0s")
        reason = "unload" if unload else "load"
        obj = {
            "model": model,
            "created_at": _now_rfc3339(),
            key: empty,
            "done_reason": reason,
            "done": True,
        }
        if ctx.rec.stream:
            return _Reply(events=self._ndjson([obj]), content_type=self.stream_content_type)
        return _json_reply(obj)

    def _answer(
        self, ctx: _Ctx, model: str, key: str, wrap: Callable[[str], Any], prompt: int
    ) -> _Reply:
        pieces, reason = self._limit(ctx)
        final_extra: dict[str, Any] = {"done_reason": reason, **self._stats(prompt, len(pieces))}
        if key == "response":
            final_extra["context"] = list(range(1, prompt + len(pieces) + 1))
        final_extra["x_fake"] = self._echo(ctx)
        if not ctx.rec.stream:
            obj = {
                "model": model,
                "created_at": _now_rfc3339(),
                key: wrap("".join(pieces)),
                "done": True,
            }
            return _json_reply({**obj, **final_extra})
        lines = [
            {"model": model, "created_at": _now_rfc3339(), key: wrap(p), "done": False}
            for p in pieces
        ]
        lines.append(
            {
                "model": model,
                "created_at": _now_rfc3339(),
                key: wrap(""),
                "done": True,
                **final_extra,
            }
        )
        return _Reply(events=self._ndjson(lines), content_type=self.stream_content_type)

    def chat(self, ctx: _Ctx) -> _Reply:
        model = self._check_model(ctx)
        if isinstance(model, _Reply):
            return model
        messages = ctx.rec.json.get("messages")
        if not messages:
            return self._load_or_unload(ctx, model, "message", {"role": "assistant", "content": ""})
        calls = ctx.calls_for_chat()
        if calls:
            return self._tool_chat(ctx, model, calls, _count_words(messages))
        return self._answer(
            ctx,
            model,
            "message",
            lambda text: {"role": "assistant", "content": text},
            _count_words(messages),
        )

    def _tool_chat(
        self, ctx: _Ctx, model: str, calls: tuple[FakeToolCall, ...], prompt: int
    ) -> _Reply:
        """A chat answered with tool calls (see "Tool calls" in the module docs)."""
        tool_calls = []
        for call in calls:
            entry: dict[str, Any] = {
                "function": {"name": call.name, "arguments": dict(call.arguments)}
            }
            if call.id is not None:
                entry["id"] = call.id
            tool_calls.append(entry)
        message = {"role": "assistant", "content": "", "tool_calls": tool_calls}
        final_extra: dict[str, Any] = {
            "done_reason": "stop",
            **self._stats(prompt, len(calls) * 8),
            "x_fake": self._echo(ctx),
        }
        if not ctx.rec.stream:
            obj = {"model": model, "created_at": _now_rfc3339(), "message": message, "done": True}
            return _json_reply({**obj, **final_extra})
        groups = [[c] for c in tool_calls] if ctx.split_tool_calls else [tool_calls]
        lines: list[dict[str, Any]] = [
            {
                "model": model,
                "created_at": _now_rfc3339(),
                "message": {**message, "tool_calls": group},
                "done": False,
            }
            for group in groups
        ]
        lines.append(
            {
                "model": model,
                "created_at": _now_rfc3339(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                **final_extra,
            }
        )
        return _Reply(events=self._ndjson(lines), content_type=self.stream_content_type)

    def generate(self, ctx: _Ctx) -> _Reply:
        model = self._check_model(ctx)
        if isinstance(model, _Reply):
            return model
        prompt = ctx.rec.json.get("prompt")
        if not prompt:
            return self._load_or_unload(ctx, model, "response", "")
        return self._answer(ctx, model, "response", lambda text: text, _count_words(prompt))

    def embed(self, ctx: _Ctx) -> _Reply:
        model = self._check_model(ctx)
        if isinstance(model, _Reply):
            return model
        body = ctx.rec.json
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            return self.error(400, "invalid input type")
        dim = body.get("dimensions")
        dim = dim if isinstance(dim, int) and dim > 0 else ctx.embedding_dim
        stats = self._stats(sum(_count_words(t) for t in inputs), 0)
        return _json_reply(
            {
                "model": model,
                "embeddings": [_embedding(json.dumps(t), dim) for t in inputs],
                "total_duration": stats["total_duration"],
                "load_duration": stats["load_duration"],
                "prompt_eval_count": stats["prompt_eval_count"],
                "x_fake": self._echo(ctx),
            }
        )

    def embeddings_legacy(self, ctx: _Ctx) -> _Reply:
        model = self._check_model(ctx)
        if isinstance(model, _Reply):
            return model
        prompt = ctx.rec.json.get("prompt")
        text = prompt if isinstance(prompt, str) else ""
        return _json_reply({"embedding": _embedding(json.dumps(text), ctx.embedding_dim)})

    @staticmethod
    def _details() -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "135M",
            "quantization_level": "Q4_K_M",
        }

    def _model_entry(self, model: str) -> dict[str, Any]:
        name = _ollama_name(model)
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00.000000000Z",
            "size": 100_000_000,
            "digest": _digest(name),
            "details": self._details(),
        }

    def tags(self, ctx: _Ctx) -> _Reply:
        return _json_reply({"models": [self._model_entry(m) for m in ctx.models]})

    def ps(self, ctx: _Ctx) -> _Reply:
        models = [
            {
                **self._model_entry(m),
                "expires_at": "2099-01-01T00:00:00.000000000Z",
                "size_vram": 0,
                "context_length": ctx.context_length,
            }
            for m in ctx.models
        ]
        for entry in models:
            entry.pop("modified_at", None)
        return _json_reply({"models": models})

    def version_info(self, ctx: _Ctx) -> _Reply:
        return _json_reply({"version": self.version})

    def show(self, ctx: _Ctx) -> _Reply:
        body = ctx.rec.json
        model = body.get("model", body.get("name")) if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            return self.error(400, "model is required")
        if not ctx.any_model and _ollama_name(model) not in {_ollama_name(m) for m in ctx.models}:
            return self.error(404, f"model '{model}' not found")
        return _json_reply(
            {
                "modelfile": f"FROM {model}\n",
                "parameters": "stop <|im_end|>",
                "template": "{{ .Prompt }}",
                "details": self._details(),
                "model_info": {
                    "general.architecture": "llama",
                    "general.parameter_count": 135_000_000,
                    "llama.context_length": ctx.context_length,
                },
                "capabilities": ["embedding"] if "embed" in model else ["completion"],
                "modified_at": "2025-01-01T00:00:00.000000000Z",
            }
        )

    def root(self, ctx: _Ctx) -> _Reply:
        return _Reply(body=b"Ollama is running", content_type="text/plain")

    # -------------------------------------------------------------- model management

    @staticmethod
    def _subject(ctx: _Ctx, *keys: str) -> str | None:
        body = ctx.rec.json if isinstance(ctx.rec.json, dict) else {}
        value = next((body.get(k) for k in keys if body.get(k)), None)
        return value if isinstance(value, str) and value else None

    @staticmethod
    def _has(ctx: _Ctx, model: str) -> bool:
        return _ollama_name(model) in {_ollama_name(m) for m in ctx.models}

    def _progress(self, ctx: _Ctx, lines: list[dict[str, Any]]) -> _Reply:
        """Progress lines, streamed, or (``stream: false``) the last one alone:
        an error then has status 500, as from Ollama."""
        if ctx.rec.stream:
            return _Reply(events=self._ndjson(lines), content_type=self.stream_content_type)
        last = lines[-1]
        return _json_reply(last, 500 if "error" in last else 200)

    @staticmethod
    def _layers(model: str, verb: str) -> list[dict[str, Any]]:
        lines = []
        for layer in ("model", "params"):
            digest = "sha256:" + _digest(f"{model}/{layer}")
            total = 1000 if layer == "model" else 100
            for done in (0, total // 2, total):
                lines.append(
                    {"status": f"{verb} {digest[7:19]}", "digest": digest, "total": total}
                    | ({"completed": done} if done else {})
                )
        return lines

    def pull(self, ctx: _Ctx) -> _Reply:
        model = self._subject(ctx, "model", "name")
        if model is None:
            return self.error(400, "model is required")
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if ctx.registry is not None and _ollama_name(model) not in {
            _ollama_name(m) for m in ctx.registry
        }:
            lines.append({"error": "pull model manifest: file does not exist"})
            return self._progress(ctx, lines)
        lines += self._layers(model, "pulling")
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}]
        lines.append({"status": "success"})
        if not self._has(ctx, model):
            ctx.set_models(lambda ms: (*ms, model))
        return self._progress(ctx, lines)

    def push(self, ctx: _Ctx) -> _Reply:
        model = self._subject(ctx, "model", "name")
        if model is None:
            return self.error(400, "model is required")
        lines: list[dict[str, Any]] = [{"status": "retrieving manifest"}]
        if not self._has(ctx, model):
            lines.append({"error": f"open manifest: model '{model}' not found"})
            return self._progress(ctx, lines)
        lines += self._layers(model, "pushing")
        lines += [{"status": "pushing manifest"}, {"status": "success"}]
        return self._progress(ctx, lines)

    def create(self, ctx: _Ctx) -> _Reply:
        model = self._subject(ctx, "model", "name")
        if model is None:
            return self.error(400, "model is required")
        source = self._subject(ctx, "from")
        if source is None:
            return self.error(400, "neither 'from' or 'files' was specified")
        lines: list[dict[str, Any]] = []
        if not self._has(ctx, source):
            lines.append({"error": f"model '{source}' not found"})
            return self._progress(ctx, lines)
        digest = "sha256:" + _digest(f"{source}/model")
        lines += [
            {"status": f"using existing layer {digest}"},
            {"status": "writing manifest"},
            {"status": "success"},
        ]
        if not self._has(ctx, model):
            ctx.set_models(lambda ms: (*ms, model))
        return self._progress(ctx, lines)

    def copy(self, ctx: _Ctx) -> _Reply:
        source, dest = self._subject(ctx, "source"), self._subject(ctx, "destination")
        if source is None or dest is None:
            return self.error(400, "source and destination are required")
        if not self._has(ctx, source):
            return self.error(404, f'model "{source}" not found')
        if not self._has(ctx, dest):
            ctx.set_models(lambda ms: (*ms, dest))
        return _Reply(body=b"")

    def delete(self, ctx: _Ctx) -> _Reply:
        model = self._subject(ctx, "model", "name")
        if model is None:
            return self.error(400, "model is required")
        if not self._has(ctx, model):
            return self.error(404, f"model '{model}' not found")
        gone = _ollama_name(model)
        ctx.set_models(lambda ms: tuple(m for m in ms if _ollama_name(m) != gone))
        return _Reply(body=b"")


def _reusable_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setblocking(False)
    return sock


class FakeBackend:
    """A fake LLM backend: a real HTTP server in its own thread and event loop.

    Args:
        kind: ``"openai"`` or ``"ollama"``: the API dialect it speaks.
        name: Tells backends apart; sent as ``X-Fake-Backend``, in ``x_fake`` and
            in the default reply text.
        models: Model names it serves (listed by ``/v1/models`` / ``/api/tags``).
            Ollama names are normalised: ``"m"`` is listed as ``"m:latest"`` and
            both spellings are accepted.
        reply: The answer text (split into word-sized stream chunks), or an
            explicit sequence of chunks. Default: ``"Hello from <name>! ..."``.
        chunk_delay: Seconds between streamed chunks (changeable at any time).
        any_model: Accept any model name, like llama.cpp does.
        api_key: When set, require ``Authorization: Bearer <api_key>`` (401 otherwise;
            ``/health`` and ``/`` stay public).
        embedding_dim: Length of the (deterministic, unit-length) embeddings.
        host: Address to listen on. The port is always chosen by the OS.
        tool_calls: Answer chats that offer ``tools`` with these calls (see
            `tool_call`); default none: always answer with text.
        context_length: What Ollama's ``/api/show`` and ``/api/ps`` report as
            the model's context length.
        registry: The names ``/api/pull`` can fetch (None: any name).
    """

    def __init__(
        self,
        kind: Kind,
        *,
        name: str = "fake",
        models: Sequence[str] = ("fake-model",),
        reply: str | Sequence[str] | None = None,
        chunk_delay: float = 0.0,
        any_model: bool = False,
        api_key: str | None = None,
        embedding_dim: int = 8,
        host: str = "127.0.0.1",
        tool_calls: Sequence[FakeToolCall | tuple[str, Mapping[str, Any]]] = (),
        context_length: int = 4096,
        registry: Sequence[str] | None = None,
    ) -> None:
        if kind not in ("openai", "ollama"):
            raise ValueError(f"kind must be 'openai' or 'ollama', not {kind!r}")
        if not models:
            raise ValueError("a fake must serve at least one model")
        self.kind: Kind = kind
        self.name = name
        self.models: tuple[str, ...] = tuple(models)
        self.any_model = any_model
        self.api_key = api_key
        self.embedding_dim = embedding_dim
        self.host = host
        self.context_length = context_length
        self.registry = frozenset(registry) if registry is not None else None
        self._dialect: _Dialect = _OpenAIDialect() if kind == "openai" else _OllamaDialect()

        self._lock = threading.Condition()
        self._pieces: tuple[str, ...] = ()
        self.reply = reply if reply is not None else f"Hello from {name}! This is a fake reply."
        self._chunk_delay = chunk_delay
        self._tool_calls: tuple[FakeToolCall, ...] = ()
        self.tool_calls = tool_calls
        self.split_tool_calls = False
        self._fault: _Fault = _OK
        self._remaining: int | None = None
        self._generation = 0
        self._records: list[RecordedRequest] = []
        self._next_index = 0  # request indices stay unique across clear()
        self._inflight: dict[int, tuple[RecordedRequest, asyncio.BaseTransport | None]] = {}

        self._port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: web.Server | None = None
        self._server: asyncio.Server | None = None
        self._held: socket.socket | None = None  # bound, not listening: refuses connections
        self._wake_event: asyncio.Event | None = None
        self._stopping = False
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeBackend is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash (add ``/v1`` for OpenAI clients)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeBackend:
        """Start serving; returns self. Raises if it cannot start within 10 s."""
        if self._thread is not None or self._stopped:
            raise RuntimeError("a FakeBackend can be started only once")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=self._thread_main,
            args=(loop, ready, errors),
            name=f"FakeBackend-{self.name}",
            daemon=True,
        )
        self._loop = loop
        self._thread = thread
        thread.start()
        if not ready.wait(_START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"FakeBackend {self.name!r} did not start in {_START_TIMEOUT} s")
        if errors:
            thread.join(_STOP_TIMEOUT)
            raise RuntimeError(f"FakeBackend {self.name!r} failed to start") from errors[0]
        return self

    def stop(self) -> None:
        """Stop serving, aborting every open connection (hanging ones too). Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        if thread.is_alive() and threading.current_thread() is not thread:
            fut = asyncio.run_coroutine_threadsafe(self._astop(), loop)
            with contextlib.suppress(Exception):
                fut.result(_STOP_TIMEOUT)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(_STOP_TIMEOUT)

    def __enter__(self) -> FakeBackend:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port else "not started"
        return f"<FakeBackend {self.kind} {self.name!r} {where} mode={self.mode}>"

    def _thread_main(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, errors: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._astart())
            except BaseException as exc:
                errors.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(
                    asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2.0)
                )
            with contextlib.suppress(BaseException):
                loop.run_until_complete(loop.shutdown_asyncgens())
            if self._held is not None:
                self._held.close()
                self._held = None
            loop.close()

    async def _astart(self) -> None:
        self._wake_event = asyncio.Event()
        self._http = web.Server(self._handle, handler_cancellation=True, access_log=None)
        sock = _reusable_socket(self.host)
        try:
            sock.bind((self.host, 0))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._held = sock
        if self._fault.mode != "refuse":
            await self._listen()

    async def _listen(self) -> None:
        """(loop thread) Start accepting connections on our port."""
        if self._server is not None or self._stopping:
            return
        assert self._http is not None
        sock = self._held
        self._held = None
        if sock is None:  # pragma: no cover - only if the held socket was lost
            sock = _reusable_socket(self.host)
            sock.bind((self.host, self._port))
        sock.listen(128)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._http, sock=sock)

    def _unlisten(self) -> None:
        """(loop thread) Close the listener and every connection, keep the port."""
        if self._server is not None:
            self._server.close()  # closes the listening socket right away
            self._server = None
        if self._held is None and not self._stopping:
            held = _reusable_socket(self.host)
            held.bind((self.host, self._port))  # bound but not listening: ECONNREFUSED
            self._held = held
        self._abort_all("stopped" if self._stopping else "aborted")

    def _abort_all(self, outcome: Outcome) -> None:
        with self._lock:
            for rec, _ in self._inflight.values():
                self._set_outcome(rec, outcome)
        if self._http is not None:
            for handler in self._http.connections:
                transport = handler.transport
                if transport is not None:
                    transport.abort()

    async def _astop(self) -> None:
        self._stopping = True
        self._wake()
        self._unlisten()
        if self._held is not None:
            self._held.close()
            self._held = None
        if self._http is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.shutdown(0.5), 1.0)

    def _run_in_loop(self, func: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run func on the fake's loop and wait for it (no-op when not running)."""
        loop = self._loop
        if loop is None or self._stopped or self._thread is None or not self._thread.is_alive():
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("FakeBackend controls must not be called from its own loop")
        asyncio.run_coroutine_threadsafe(func(), loop).result(_CONTROL_TIMEOUT)

    def _wake(self) -> None:
        """(loop thread) Wake everything waiting for a mode change."""
        event = self._wake_event
        self._wake_event = asyncio.Event()
        if event is not None:
            event.set()

    async def _wait_for_change(self, generation: int, timeout: float | None) -> None:
        """(loop thread) Wait until a control is called, the fake stops, or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._generation == generation and not self._stopping:
            event = self._wake_event
            assert event is not None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    # ------------------------------------------------------------------ controls

    def _set_fault(self, fault: _Fault, times: int | None = None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._fault = fault
            self._remaining = times
            self._generation += 1

        async def apply() -> None:
            if fault.mode == "refuse":
                self._unlisten()
            else:
                await self._listen()
            self._wake()

        self._run_in_loop(apply)

    @staticmethod
    def _paths(paths: Iterable[str] | None) -> frozenset[str] | None:
        if isinstance(paths, str):
            return frozenset([paths])
        return None if paths is None else frozenset(paths)

    @property
    def mode(self) -> str:
        """The current mode: ``"ok"``, ``"refuse"``, ``"hang"``, ``"status"``, ..."""
        with self._lock:
            return self._fault.mode

    def ok(self) -> None:
        """Back to normal: clear any fault and listen again if refused."""
        self._set_fault(_OK)

    def refuse(self) -> None:
        """Close the listening socket and abort every open connection, like a dead
        process. New connections get ECONNREFUSED; the port stays reserved."""
        self._set_fault(_Fault(mode="refuse"))

    def revive(self) -> None:
        """Listen again on the same port and clear any fault (same as `ok`)."""
        self._set_fault(_OK)

    def hang(self, *, times: int | None = None, paths: Iterable[str] | None = None) -> None:
        """Accept requests and never answer, until a control is called (then the
        request is served by the new mode) or the fake stops (then it is aborted)."""
        self._set_fault(_Fault(mode="hang", paths=self._paths(paths)), times)

    def drop(self, *, times: int | None = None, paths: Iterable[str] | None = None) -> None:
        """Read the request, then close the connection without any response."""
        self._set_fault(_Fault(mode="drop", paths=self._paths(paths)), times)

    def status(
        self,
        code: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        times: int | None = None,
        paths: Iterable[str] | None = None,
    ) -> None:
        """Answer with HTTP ``code``. ``body``: None for the dialect's own error
        shape, a dict/list for JSON, or str/bytes sent as is. ``headers`` are
        added (e.g. ``{"Retry-After": "2"}``; a ``Content-Type`` here wins)."""
        fault = _Fault(
            mode="status",
            code=code,
            body=body,
            headers=dict(headers or {}),
            paths=self._paths(paths),
        )
        self._set_fault(fault, times)

    def slow_first_byte(
        self, seconds: float, *, times: int | None = None, paths: Iterable[str] | None = None
    ) -> None:
        """Wait ``seconds`` before sending the response headers, then answer normally."""
        self._set_fault(
            _Fault(mode="slow_first_byte", seconds=seconds, paths=self._paths(paths)), times
        )

    def cut_after(
        self, n: int, *, times: int | None = None, paths: Iterable[str] | None = None
    ) -> None:
        """Send the headers and ``n`` chunks, then close the connection with no
        proper end of body (the client sees an incomplete response)."""
        self._set_fault(_Fault(mode="cut_after", n=n, paths=self._paths(paths)), times)

    def stall_after(
        self,
        n: int,
        seconds: float | None = None,
        *,
        times: int | None = None,
        paths: Iterable[str] | None = None,
    ) -> None:
        """Send the headers and ``n`` chunks, then go silent for ``seconds`` (None:
        until a control is called or the fake stops), then finish normally."""
        self._set_fault(
            _Fault(mode="stall_after", n=n, seconds=seconds, paths=self._paths(paths)), times
        )

    def garbage(
        self,
        body: bytes | None = None,
        content_type: str | None = None,
        *,
        times: int | None = None,
        paths: Iterable[str] | None = None,
    ) -> None:
        """Answer 200 with a body that is not valid for the dialect. By default it
        claims the right content type (JSON, SSE or NDJSON) but does not parse."""
        fault = _Fault(
            mode="garbage", body=body, content_type=content_type, paths=self._paths(paths)
        )
        self._set_fault(fault, times)

    def loading(self, *, times: int | None = None) -> None:
        """503 on every path including ``/health``, like llama.cpp loading a model."""
        self._set_fault(_Fault(mode="loading"), times)

    @property
    def reply(self) -> str:
        """The reply text (settable at any time; a sequence sets explicit chunks)."""
        with self._lock:
            return "".join(self._pieces)

    @reply.setter
    def reply(self, value: str | Sequence[str]) -> None:
        pieces = _split_reply(value) if isinstance(value, str) else tuple(value)
        with self._lock:
            self._pieces = pieces

    def tool_call(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, call_id: str | None = None
    ) -> None:
        """From now on, answer every chat request that offers ``tools`` with this one
        tool call instead of text (``fake.tool_calls = ()`` goes back to text)."""
        self.tool_calls = [FakeToolCall(name, dict(arguments or {}), call_id)]

    @property
    def tool_calls(self) -> tuple[FakeToolCall, ...]:
        """The tool calls chats with ``tools`` are answered with (settable at any
        time: `FakeToolCall` objects or ``(name, arguments)`` pairs; empty: text)."""
        with self._lock:
            return self._tool_calls

    @tool_calls.setter
    def tool_calls(self, value: Sequence[FakeToolCall | tuple[str, Mapping[str, Any]]]) -> None:
        calls = tuple(
            c if isinstance(c, FakeToolCall) else FakeToolCall(c[0], dict(c[1])) for c in value
        )
        with self._lock:
            self._tool_calls = calls

    @property
    def split_tool_calls(self) -> bool:
        """Ollama kind, streamed: one line per tool call instead of one line holding
        them all (settable at any time; no effect on the OpenAI kind, which always
        streams each call on its own)."""
        with self._lock:
            return self._split_tool_calls

    @split_tool_calls.setter
    def split_tool_calls(self, value: bool) -> None:
        with self._lock:
            self._split_tool_calls = value

    @property
    def chunk_delay(self) -> float:
        """Seconds between streamed chunks (settable at any time)."""
        with self._lock:
            return self._chunk_delay

    @chunk_delay.setter
    def chunk_delay(self, value: float) -> None:
        with self._lock:
            self._chunk_delay = value

    # ------------------------------------------------------------------ records

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a snapshot list)."""
        with self._lock:
            return list(self._records)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._records[-1] if self._records else None

    @property
    def in_flight(self) -> int:
        """Requests being answered right now (hanging and streaming ones included)."""
        with self._lock:
            return len(self._inflight)

    @property
    def disconnects(self) -> list[RecordedRequest]:
        """Requests whose client went away before the response was complete."""
        with self._lock:
            return [r for r in self._records if r.outcome == "disconnected"]

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """How many requests matched ``path`` and/or ``method`` (None: any)."""
        with self._lock:
            return sum(
                1
                for r in self._records
                if (path is None or r.path == path) and (method is None or r.method == method)
            )

    def clear(self) -> None:
        """Forget the recorded requests (in-flight ones keep being tracked)."""
        with self._lock:
            self._records.clear()

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` requests were received; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._records) >= count, timeout)

    def wait_for_disconnect(self, timeout: float = 5.0, count: int = 1) -> bool:
        """Wait until at least ``count`` client disconnects were seen; False on timeout."""
        with self._lock:
            return self._lock.wait_for(
                lambda: sum(r.outcome == "disconnected" for r in self._records) >= count, timeout
            )

    def _set_outcome(self, rec: RecordedRequest, outcome: Outcome) -> None:
        """Set an outcome once (caller holds the lock)."""
        if rec.outcome is None:
            rec.outcome = outcome
            self._lock.notify_all()

    def _finish(self, rec: RecordedRequest, outcome: Outcome, force: bool = False) -> None:
        with self._lock:
            if force and rec.outcome == "completed":
                rec.outcome = None
            self._set_outcome(rec, outcome)

    # ------------------------------------------------------------------ serving

    def _take_fault(self, path: str) -> _Fault:
        """The fault that applies to a new request on ``path`` (consumes ``times``)."""
        with self._lock:
            fault = self._fault
            if fault.paths is not None and path not in fault.paths:
                return _OK
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._fault, self._remaining = _OK, None
            return fault

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.content.read()  # no 1 MiB cap: big-body tests send more
        parsed: Any = None
        if body:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        with self._lock:
            rec = RecordedRequest(
                index=self._next_index,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                body=body,
                json=parsed,
                stream=self._dialect.is_stream(request.path, parsed),
                received_at=time.monotonic(),
            )
            self._next_index += 1
            self._records.append(rec)
            self._inflight[id(rec)] = (rec, request.transport)
            self._lock.notify_all()
        try:
            return await self._serve(request, rec)
        except asyncio.CancelledError:
            self._finish(rec, "stopped" if self._stopping else "disconnected", force=True)
            raise
        except ConnectionError:
            self._finish(rec, "stopped" if self._stopping else "disconnected", force=True)
            return web.Response(status=499)  # never reaches anyone: the connection is gone
        finally:
            with self._lock:
                self._inflight.pop(id(rec), None)
                self._lock.notify_all()

    def _set_models(self, change: Callable[[tuple[str, ...]], tuple[str, ...]]) -> None:
        with self._lock:
            self.models = change(self.models)

    def _abort(self, request: web.BaseRequest, rec: RecordedRequest) -> None:
        self._finish(rec, "aborted")
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def _serve(self, request: web.BaseRequest, rec: RecordedRequest) -> web.StreamResponse:
        fault = self._take_fault(rec.path)
        while fault.mode == "hang":
            with self._lock:
                generation = self._generation
            await self._wait_for_change(generation, None)
            if self._stopping:
                self._abort(request, rec)
                return web.StreamResponse()
            fault = self._take_fault(rec.path)
        if fault.mode in ("drop", "refuse"):
            self._abort(request, rec)
            return web.StreamResponse()
        if fault.mode == "slow_first_byte" and fault.seconds:
            await asyncio.sleep(fault.seconds)

        if fault.mode == "status":
            reply = self._status_reply(fault)
        elif fault.mode == "loading":
            reply = self._dialect.loading()
        elif fault.mode == "garbage":
            reply = self._garbage_reply(fault, rec.stream)
        else:
            reply = self._answer(rec)
        return await self._write(request, rec, reply, fault)

    def _answer(self, rec: RecordedRequest) -> _Reply:
        with self._lock:
            ctx = _Ctx(
                rec=rec,
                name=self.name,
                models=self.models,
                pieces=self._pieces,
                any_model=self.any_model,
                api_key=self.api_key,
                embedding_dim=self.embedding_dim,
                tool_calls=self._tool_calls,
                split_tool_calls=self.split_tool_calls,
                context_length=self.context_length,
                registry=self.registry,
                set_models=self._set_models,
            )
        route = self._dialect.match_route(rec.method, rec.path)
        if isinstance(route, _Reply):
            return route
        denied = self._dialect.check_auth(ctx)
        if denied is not None:
            return denied
        if rec.method == "POST" and not isinstance(rec.json, dict):
            return self._dialect.error(400, "request body must be a JSON object")
        return route(ctx)

    def _status_reply(self, fault: _Fault) -> _Reply:
        headers = dict(fault.headers or {})
        content_type = next(
            (headers.pop(k) for k in list(headers) if k.lower() == "content-type"), None
        )
        if fault.body is None:
            reply = self._dialect.error(fault.code, f"{self.name}: {_reason(fault.code)}")
        elif isinstance(fault.body, bytes | str):
            raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
            try:
                json.loads(raw)
                guessed = "application/json"
            except ValueError:
                guessed = "text/plain"
            reply = _Reply(status=fault.code, body=raw, content_type=guessed)
        else:
            reply = _json_reply(fault.body, fault.code)
        reply.status = fault.code
        reply.headers.update(headers)
        if content_type is not None:
            reply.content_type = content_type
        return reply

    def _garbage_reply(self, fault: _Fault, stream: bool) -> _Reply:
        if isinstance(fault.body, bytes):
            return _Reply(body=fault.body, content_type=fault.content_type or "application/json")
        if stream and self.kind == "openai":
            events = [b"data: {this is not json\n\n", b"data: <<garbage>>\n\n", b"data: [DONE]\n\n"]
            return _Reply(events=events, content_type=fault.content_type or "text/event-stream")
        if stream:
            events = [b'{"model": "garb\n', b"<<garbage>>\n"]
            return _Reply(events=events, content_type=fault.content_type or "application/x-ndjson")
        return _Reply(
            body=b'{"choices": [ {{ <<garbage>>',
            content_type=fault.content_type or "application/json",
        )

    async def _write(
        self, request: web.BaseRequest, rec: RecordedRequest, reply: _Reply, fault: _Fault
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=reply.status)
        for key, value in reply.headers.items():
            resp.headers[key] = value
        resp.headers["X-Fake-Backend"] = self.name
        resp.headers["X-Fake-Request-Index"] = str(rec.index)
        resp.content_type = reply.content_type
        if reply.content_type.startswith("text/event-stream"):
            resp.headers["Cache-Control"] = "no-cache"
        streaming = reply.events is not None
        if reply.events is not None:
            parts = reply.events
            break_at = fault.n
        else:
            resp.content_length = len(reply.body)
            half = len(reply.body) // 2 if fault.n > 0 else 0
            breaking = fault.mode in ("cut_after", "stall_after")
            parts = [reply.body[:half], reply.body[half:]] if breaking else [reply.body]
            break_at = 1 if breaking else 0
        rec.status = reply.status
        await resp.prepare(request)
        last = len(parts) - 1
        try:
            for i, part in enumerate(parts):
                if i == break_at and fault.mode == "cut_after":
                    self._abort(request, rec)
                    return resp
                if i == break_at and fault.mode == "stall_after":
                    with self._lock:
                        generation = self._generation
                    await self._wait_for_change(generation, fault.seconds)
                    if self._stopping:
                        self._abort(request, rec)
                        return resp
                if streaming and i > 0:
                    delay = self.chunk_delay
                    if delay > 0:
                        await asyncio.sleep(delay)
                if i == last and not (fault.mode == "cut_after" and break_at > last):
                    # Mark it before the client can possibly have the last byte.
                    self._finish(rec, "completed")
                if part:
                    await resp.write(part)
            if fault.mode == "cut_after" and break_at > last:
                self._abort(request, rec)
                return resp
            self._finish(rec, "completed")
            await resp.write_eof()
        except ConnectionError:
            self._finish(rec, "stopped" if self._stopping else "disconnected", force=True)
            raise
        return resp


class FakeFactory:
    """Starts fakes on demand and stops them all at teardown (see `fake_factory`)."""

    def __init__(self) -> None:
        self._fakes: list[FakeBackend] = []

    def __call__(self, kind: Kind = "openai", **kwargs: Any) -> FakeBackend:
        """Start a `FakeBackend` (same arguments) and return it, running."""
        fake = FakeBackend(kind, **kwargs)
        self._fakes.append(fake)
        return fake.start()

    @property
    def fakes(self) -> list[FakeBackend]:
        return list(self._fakes)

    def stop_all(self) -> None:
        for fake in self._fakes:
            fake.stop()


@contextlib.contextmanager
def _factory() -> Iterator[FakeFactory]:
    factory = FakeFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def fake_factory() -> Iterator[FakeFactory]:
    """``fake_factory("ollama", name="b2", models=["m"])`` -> a running fake,
    stopped at teardown. Import this fixture into a conftest or test module."""
    with _factory() as factory:
        yield factory


@pytest.fixture
def openai_fake(fake_factory: FakeFactory) -> FakeBackend:
    """A running OpenAI-dialect fake named ``openai-fake`` serving ``fake-model``."""
    return fake_factory("openai", name="openai-fake")


@pytest.fixture
def ollama_fake(fake_factory: FakeFactory) -> FakeBackend:
    """A running Ollama-dialect fake named ``ollama-fake`` serving ``fake-model``."""
    return fake_factory("ollama", name="ollama-fake")
