"""Errors, error bodies, wire serialisers and the incremental SSE / NDJSON parsers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ... import fastjson
from ...errors import TraywireError

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
    return fastjson.dumps(obj)


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
    id:, retry:) are skipped (comments are counted in ``comments``); several
    ``data:`` lines of one event are joined with ``"\\n"``. UTF-8 is decoded
    per event, so multi-byte characters split across chunks are fine.
    ``finish()`` returns an event left unterminated at
    end of stream (lenient: the spec would drop it).
    """

    __slots__ = ("_data", "_max", "_pending", "_skip_lf", "comments")

    def __init__(self, max_buffer: int = _MAX_BUFFER) -> None:
        # comment lines seen so far (keep-alives such as ": ping")
        self.comments = 0
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
            elif line[:1] == b":":
                self.comments += 1
            # other fields (event:, id:, retry:) are ignored
        if sum(map(len, data)) > self._max:
            raise StreamParseError("SSE event larger than the buffer limit")
        return out

    @property
    def between_events(self) -> bool:
        """Nothing held back: the next byte starts a new line of a new event."""
        return not (self._pending or self._data or self._skip_lf)

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
        obj = fastjson.loads(line)
    except ValueError:
        snippet = bytes(line[:80]).decode(errors="replace")
        raise StreamParseError(f"invalid JSON line: {snippet!r}") from None
    if not isinstance(obj, dict):
        raise StreamParseError(f"expected a JSON object per line, got {type(obj).__name__}")
    return obj
