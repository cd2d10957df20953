"""The adapter contract and the status → error-kind mapping shared by both kinds."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, Protocol

from ...errors import BackendError
from ..dialects import upstream_error_message
from ..relay import Relay

Dialect = Literal["openai", "ollama"]
# What the client asked for: chat, a plain completion (OpenAI /v1/completions,
# Ollama /api/generate) or embeddings.
Op = Literal["chat", "completion", "embed"]


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


class Adapter(Protocol):
    kind: str

    def headers(self, key: str | None) -> dict[str, str]: ...

    def prepare(
        self,
        dialect: Dialect,
        op: Op,
        body: Mapping[str, Any],
        upstream: str,
        stream: bool,
        *,
        extensions: bool = True,
    ) -> Prepared:
        """``extensions``: the server takes non-standard sampling options
        (top_k, min_p, repeat_penalty...), as local vLLM/llama.cpp do."""
        ...

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
    ) -> dict[str, Any]: ...

    def relay(
        self,
        prep: Prepared,
        dialect: Dialect,
        op: Op,
        model: str,
        ids: Ids,
        client_body: Mapping[str, Any],
    ) -> Relay: ...


class AdapterBase:
    """What both kinds share: bearer auth and same-dialect pass-through."""

    kind: str
    paths: dict[Op, str]

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def passthrough(self, op: Op, body: Mapping[str, Any], upstream: str, stream: bool) -> Prepared:
        """The client's body as it is (unknown fields kept), for ``upstream``."""
        out = dict(body)
        out["model"] = upstream
        if op != "embed":
            out["stream"] = stream
        return Prepared(self.paths[op], out, op, stream and op != "embed")


_CONTEXT = re.compile(
    r"context length|context window|maximum context|context_length_exceeded|"
    r"too many tokens|prompt is too long|exceeds? (?:the )?(?:model'?s? )?(?:maximum )?context|"
    r"input is too long|longer than the model",
    re.IGNORECASE,
)
_NOT_FOUND = re.compile(r"not found|does not exist|no such model|unknown model", re.IGNORECASE)


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
