"""The adapter contract and the status → error-kind mapping shared by both kinds.

Adapters are an edge: what a backend answers is mapped here to traywire's
error kinds (`BackendError`): statuses by `error_from_status`, a request the
backend's dialect cannot express (``translation``) by `prepare`, an answer
that is not valid for its dialect (``invalid_response``) by `answer`.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, ParamSpec

from ... import fastjson
from ...errors import BackendError
from ...types import Dialect, Op
from ..dialects import StreamParseError, TranslationError, upstream_error_message
from ..relay import Relay

P = ParamSpec("P")


class Ids:
    """Per-response identifiers, made by the caller (adapters read no clock)
    from a serial number and a wall-clock time; each is only formatted if an
    adapter asks for it (a same-dialect answer needs none)."""

    __slots__ = ("_prefix", "_serial", "_time")

    def __init__(self, prefix: str, serial: int, unix_time: float) -> None:
        self._prefix = prefix
        self._serial = serial
        self._time = unix_time

    @property
    def response_id(self) -> str:
        return f"{self._prefix}{self._serial:012d}"

    @property
    def created(self) -> int:  # unix seconds
        return int(self._time)

    @property
    def created_at(self) -> str:  # ISO 8601, microseconds, UTC
        t = self._time
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class Prepared(NamedTuple):
    """A request ready for one backend."""

    path: str  # appended to the backend's url
    body: dict[str, Any]
    backend_op: Op  # what the backend is asked to do (may differ from the client's)
    stream: bool


class Answer(NamedTuple):
    """A whole (not streamed) answer, ready for the client."""

    # The backend's own bytes where nothing needed to change, else a new body.
    body: bytes | dict[str, Any]
    tokens_in: int
    tokens_out: int


def translating(prepare: Callable[P, Prepared]) -> Callable[P, Prepared]:
    """An adapter's `prepare`, with what it cannot express mapped to
    `BackendError` ``translation`` (a request problem, not the backend's)."""

    @functools.wraps(prepare)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Prepared:
        try:
            return prepare(*args, **kwargs)
        except TranslationError as exc:
            raise BackendError("translation", f"translation: {exc}") from exc

    return wrapper


class Adapter:
    """One backend kind's wire format. What both kinds share is here: bearer
    auth, same-dialect pass-through, and the mapping of translation and
    answer problems to `BackendError`; each kind fills in `_prepare`,
    `response` and `relay`."""

    kind: str
    paths: dict[Op, str]

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def prepare(
        self,
        dialect: Dialect,
        op: Op,
        body: Mapping[str, Any],
        upstream: str,
        stream: bool,
        *,
        extensions: bool = True,
    ) -> Prepared:  # pragma: no cover - each kind has its own
        """The backend's request for ``body``. ``extensions``: the server takes
        non-standard sampling options (top_k, min_p, repeat_penalty...), as
        local vLLM/llama.cpp do. Raises `BackendError` ``translation`` where
        this kind cannot express it (see `translating`)."""
        raise NotImplementedError

    def answer(
        self,
        prep: Prepared,
        dialect: Dialect,
        op: Op,
        raw: bytes,
        model: str,
        ids: Ids,
        client_body: Mapping[str, Any],
        elapsed_ns: int,
    ) -> Answer:
        """The client's answer from the backend's bytes (a 2xx answer); raises
        `BackendError` ``invalid_response`` for one not valid in its dialect."""
        try:
            data = fastjson.loads(raw)
            tokens_in, tokens_out = _usage(data)
            unchanged = isinstance(data, dict) and data.get("model") == model
            out = self.response(prep, dialect, op, data, model, ids, client_body, elapsed_ns)
        except (ValueError, TranslationError, StreamParseError, KeyError, TypeError) as exc:
            raise BackendError("invalid_response", f"invalid answer: {exc}") from exc
        # a same-dialect answer that already names the model the client is
        # told: the backend's own bytes, not a re-encoding of them
        body: bytes | dict[str, Any] = raw if unchanged and out is data else out
        return Answer(body, tokens_in, tokens_out)

    def response(
        self,
        prep: Prepared,
        dialect: Dialect,
        op: Op,
        data: Any,
        model: str,
        ids: Ids,
        client_body: Mapping[str, Any],
        elapsed_ns: int,
    ) -> dict[str, Any]:  # pragma: no cover - each kind has its own
        """The client's answer from the backend's decoded 2xx answer."""
        raise NotImplementedError

    def relay(
        self,
        prep: Prepared,
        dialect: Dialect,
        op: Op,
        model: str,
        ids: Ids,
        client_body: Mapping[str, Any],
    ) -> Relay:  # pragma: no cover - each kind has its own
        """The streamed answer's translator, from the backend's events to the client's."""
        raise NotImplementedError

    def passthrough(self, op: Op, body: Mapping[str, Any], upstream: str, stream: bool) -> Prepared:
        """The client's body as it is (unknown fields kept), for ``upstream``."""
        out = dict(body)
        out["model"] = upstream
        if op != "embed":
            out["stream"] = stream
        return Prepared(self.paths[op], out, op, stream and op != "embed")


def wire_body(out: Mapping[str, Any], client: Mapping[str, Any], raw: bytes | None) -> bytes:
    """The bytes to send for the prepared body ``out``. Where ``out`` is the
    client's body (decoded from ``raw``) with at most its ``model`` changed -
    every other field the very object the client's body holds - the client's
    own bytes go, the model's value replaced in place: a big body is not
    encoded again. Anything else (a translation, a field added or dropped, a
    model written in an unusual way) is encoded from ``out``."""
    if raw is None or len(out) != len(client):
        return fastjson.dumps(out)
    model = None
    for key, value in out.items():
        if key not in client:
            return fastjson.dumps(out)
        if client[key] is value:
            continue
        if key != "model" or not isinstance(value, str):
            return fastjson.dumps(out)
        if value != client[key]:
            model = value
    if model is None:
        return raw
    spliced = _splice_model(raw, client.get("model"), model)
    return spliced if spliced is not None else fastjson.dumps(out)


def _splice_model(raw: bytes, old: object, new: str) -> bytes | None:
    """``raw`` with its one ``"model"`` key's value ``old`` (written as traywire
    would write it) made ``new``; None where that is not certain. A ``"model"``
    inside a string is written ``\\"model\\"``, so a single occurrence of the
    quoted word is the top-level key the decoded body has."""
    if not isinstance(old, str) or raw.count(b'"model"') != 1:
        return None
    at = raw.index(b'"model"') + 7
    n = len(raw)
    while at < n and raw[at] in b" \t\r\n":
        at += 1
    if at >= n or raw[at] != 0x3A:  # ':'
        return None
    at += 1
    while at < n and raw[at] in b" \t\r\n":
        at += 1
    was = fastjson.dumps(old)
    if raw[at : at + len(was)] != was:
        return None
    view = memoryview(raw)  # one copy of a big body, not three
    return b"".join((view[:at], fastjson.dumps(new), view[at + len(was) :]))


def _usage(data: Any) -> tuple[int, int]:
    """(prompt tokens, reply tokens) a backend reported in a whole answer."""
    if not isinstance(data, dict):
        return 0, 0
    usage = data.get("usage")
    if isinstance(usage, dict):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0)


_CONTEXT = re.compile(
    r"context length|context window|maximum context|context_length_exceeded|"
    r"too many tokens|prompt is too long|exceeds? (?:the )?(?:model'?s? )?(?:maximum )?context|"
    r"input is too long|longer than the model",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"not found|does not exist|no such model|unknown model", re.IGNORECASE)
# A server saying it cannot do what the request asks (llama.cpp without
# --embeddings or a vision projector, Ollama's "does not support tools"...).
_UNSUPPORTED = re.compile(
    r"not supported|does not support|doesn't support|do not support|unsupported|"
    r"not enabled|no support for|--embeddings|mmproj|not a vision model|cannot process image",
    re.IGNORECASE,
)


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: ignored, the default cooldown applies


def error_from_status(status: int, data: Any, retry_after: str | None = None) -> BackendError:
    """Map a non-2xx answer to traywire's error kinds."""
    message = upstream_error_message(data, default=f"HTTP {status}")
    text = f"HTTP {status}: {message}"
    if status == 429:
        return BackendError(
            "rate_limited",
            text,
            status=status,
            retry_after=retry_after_seconds(retry_after),
            body=data,
        )
    if status == 404:
        return BackendError("model_not_found", text, status=status, body=data)
    if status in (400, 413, 422) and _CONTEXT.search(message):
        return BackendError("context_length", text, status=status, body=data)
    if status in (501, 413) or (status in (400, 422, 500) and _UNSUPPORTED.search(message)):
        # the request asks what this server cannot do: the next model may
        return BackendError("unsupported", text, status=status, body=data)
    if status >= 500:
        # Ollama answers 500 "model ... not found" on some versions
        kind = (
            "model_not_found"
            if _NOT_FOUND.search(message) and "model" in message
            else ("server_error")
        )
        return BackendError(kind, text, status=status, body=data)
    if status in (400, 401, 403, 422) or 400 <= status < 500:
        return BackendError("client_error", text, status=status, body=data)
    return BackendError("invalid_response", text, status=status, body=data)
