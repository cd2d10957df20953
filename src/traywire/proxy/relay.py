"""Stream relays: backend wire bytes in, client wire bytes out.

One relay per streaming request. ``feed(bytes)`` returns the bytes to write to
the client now (possibly empty: nothing is buffered beyond an incomplete
line or event); ``finish()`` the closing bytes once upstream ended cleanly;
``error(message)`` the explicit error ending in the client's dialect when it
did not. Bad bytes are mapped here, where they come in: ``feed`` raises only
`BackendError` (``invalid_response`` for bytes that are not a valid stream,
``server_error`` for an error the backend put in the stream). ``complete``
tells whether upstream sent its own end (Ollama's ``done: true``, OpenAI's
``data: [DONE]`` or a finish reason), so a stream cut short is never closed
as if it were whole. ``tokens`` counts prompt + reply
tokens from the usage the backend reported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec
from msgspec import UnsetType

from .. import fastjson
from ..errors import BackendError
from . import dialects as tr

KEEP_ALIVE = b": keep-alive\n\n"


def _dumps(obj: object) -> str:
    return fastjson.dumps(obj).decode()


def _event(payload: str) -> dict[str, Any]:
    """One SSE data payload as a JSON object, or StreamParseError."""
    try:
        obj = fastjson.loads(payload)
    except ValueError as exc:
        raise tr.StreamParseError(f"invalid JSON in SSE event: {exc}") from exc
    if not isinstance(obj, dict):
        raise tr.StreamParseError("SSE event is not a JSON object")
    return obj


class Relay:
    # enough has come for the answer to be whole (a finish reason may do)
    complete: bool = False
    # the backend sent its own end marker (``data: [DONE]``, ``"done": true``):
    # nothing more is wanted from it, whether or not its body ends now
    ended: bool = False
    tokens_in: int = 0
    tokens_out: int = 0

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def feed(self, data: bytes) -> bytes:
        """The client's bytes for ``data`` from the backend."""
        try:
            return self._feed(data)
        except (tr.StreamParseError, tr.TranslationError) as exc:
            raise BackendError("invalid_response", f"invalid stream: {exc}") from exc
        except tr.UpstreamError as exc:
            raise BackendError("server_error", f"error in the stream: {exc}") from exc

    def _feed(self, data: bytes) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""

    def error(self, message: str) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


class _ToOpenAI(Relay):
    def error(self, message: str) -> bytes:
        return tr.openai_sse_error(message, error_type="api_error")

    def finish(self) -> bytes:
        return tr.SSE_DONE


class _ToOllama(Relay):
    def error(self, message: str) -> bytes:
        return tr.ollama_ndjson_error(message)


class SSEPassthrough(_ToOpenAI):
    """OpenAI backend → OpenAI client: events kept, ``model`` set to the client's name.

    The common case costs one glance per event and no copy: a chunk that is
    whole one-line ``data:`` events that need no change goes out as it came
    (`_as_it_came`); anything else is read event by event (`_events`)."""

    def __init__(self, model: str) -> None:
        self.parser = tr.SSEParser()
        self.model = model
        self.finished_choice = False
        self.saw_done = False
        self.comments = 0
        self.renamed = False  # an event named another model: events are re-encoded
        self._plain = _plain(model)

    def _feed(self, data: bytes) -> bytes:
        if (
            data[:6] == b"data: "
            and data[-2:] == b"\n\n"
            and not self.renamed
            and self.parser.between_events
        ):
            out = self._as_it_came(data)
            if out is not None:
                return out
        return self._events(data)

    def _as_it_came(self, data: bytes) -> bytes | None:
        """``data`` without its ``[DONE]`` when it is whole events of one
        ``data:`` line each that all go to the client as they are (what
        `_events` would write for it), noting what they carry; else None, and
        `_events` reads it again from the same state (what this noted, it
        notes the same way).

        Each event is still checked as a JSON object (msgspec, in C) with
        the client's model name (or none); an event that may carry more (an
        error, usage, a finish reason, odd types) is then read as `_glance`
        reads it."""
        if b"\r" in data or not (data.isascii() or _utf8(data)):
            return None
        events = data[:-2].split(b"\n\n")
        if data.count(b"\n") != 2 * len(events):  # a line break inside an event
            return None
        done = events[-1] == _DONE_EVENT
        if done:
            events.pop()
        plain, glance = self._plain, self._glance
        for ev in events:
            if ev[:6] != b"data: ":
                return None  # another field, a comment, "data:" with no space
            try:
                plain(ev[6:])
            except msgspec.ValidationError:
                if not glance(ev[6:]):
                    return None
            except (msgspec.DecodeError, RecursionError):
                return None  # not JSON (a [DONE] before the last event too)
        if done:
            self.saw_done = self.ended = True
            data = data[: -len(tr.SSE_DONE)]
        self.complete = self.saw_done or self.finished_choice
        return data

    def _events(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for payload in self.parser.feed(data):
            if payload == "[DONE]":
                self.saw_done = True
                continue
            if "\n" not in payload and self._glance(payload):
                out.append(b"data: " + payload.encode() + b"\n\n")
                continue
            obj = _event(payload)
            if obj.get("error") is not None:
                raise tr.UpstreamError(tr.upstream_error_message(obj))
            named = obj.get("model", self.model) == self.model  # (or no model at all)
            if not named:
                obj["model"] = self.model
                self.renamed = True
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self.tokens_in = int(usage.get("prompt_tokens") or 0)
                self.tokens_out = int(usage.get("completion_tokens") or 0)
            for choice in obj.get("choices") or ():
                if isinstance(choice, dict) and choice.get("finish_reason"):
                    self.finished_choice = True
            # the backend's own event where nothing changes, else re-encoded
            text = payload if named and "\n" not in payload else _dumps(obj)
            out.append(b"data: " + text.encode() + b"\n\n")
        self.complete = self.saw_done or self.finished_choice
        self.ended = self.saw_done
        if not out and self.parser.comments > self.comments:
            out.append(KEEP_ALIVE)  # the client sees the backend is alive too
        self.comments = self.parser.comments
        return b"".join(out)

    def _glance(self, payload: str | bytes) -> bool:
        """True when ``payload`` goes to the client as it is: a JSON object
        with no error that names the client's model (or none); its usage and
        finish reason are noted. Only those fields are built (the rest is
        checked as JSON and skipped); anything else, valid or not, is left to
        the full decode, so its outcome and messages are the same."""
        try:
            ev = _GLANCE(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return False
        if ev.error is not None or (ev.model is not msgspec.UNSET and ev.model != self.model):
            return False
        usage = ev.usage
        if usage is not None:
            if not isinstance(usage, dict):
                return True  # (not read, as the full decode does not read it)
            try:
                self.tokens_in = int(usage.get("prompt_tokens") or 0)
                self.tokens_out = int(usage.get("completion_tokens") or 0)
            except (TypeError, ValueError):
                return False
        choices = ev.choices
        if choices:
            for choice in choices:
                if choice.finish_reason:
                    self.finished_choice = True
        return True


_DONE_EVENT: Final = b"data: [DONE]"


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False  # `_events` says so, for the event it is in
    return True


class _Choice(msgspec.Struct):
    finish_reason: Any = None


class _Glance(msgspec.Struct):
    """What an OpenAI stream event is read for; every other field is skipped."""

    model: Any = msgspec.UNSET
    error: Any = None
    usage: Any = None
    choices: list[_Choice] | None = None


_GLANCE = msgspec.json.Decoder(_Glance).decode


class _NoFinish(msgspec.Struct, gc=False):
    finish_reason: None = None


@functools.lru_cache(maxsize=256)
def _plain(model: str) -> Callable[[bytes], Any]:
    """A decoder of the plainest events: a JSON object whose ``model`` (if
    any) is ``model``, with no error, no usage and no finish reason (each
    null if there); anything else fails to decode."""
    plain = msgspec.defstruct(
        "_Plain",
        [
            ("model", Literal[model] | UnsetType, msgspec.UNSET),
            ("error", None, None),
            ("usage", None, None),
            ("choices", list[_NoFinish] | None, None),
        ],
        gc=False,
    )
    return msgspec.json.Decoder(plain).decode


class NDJSONPassthrough(_ToOllama):
    """Ollama backend → Ollama client: lines kept, ``model`` set to the client's name."""

    def __init__(self, model: str) -> None:
        self.parser = tr.NDJSONParser()
        self.model = model

    def _feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for obj in self.parser.feed(data):
            if obj.get("error") is not None:
                raise tr.UpstreamError(tr.upstream_error_message(obj))
            if "model" in obj:
                obj["model"] = self.model
            if obj.get("done") is True:
                self.complete = self.ended = True
                self.tokens_in = int(obj.get("prompt_eval_count") or 0)
                self.tokens_out = int(obj.get("eval_count") or 0)
            out.append(_dumps(obj).encode() + b"\n")
        return b"".join(out)


class OllamaToOpenAI(_ToOpenAI):
    """Ollama backend (NDJSON) → OpenAI client (SSE)."""

    def __init__(
        self,
        kind: Literal["chat", "completion"],
        model: str,
        response_id: str,
        created: int,
        include_usage: bool,
    ) -> None:
        self.parser = tr.NDJSONParser()
        self.conv = tr.OllamaToOpenAIStream(
            kind,
            model=model,
            response_id=response_id,
            created=created,
            include_usage=include_usage,
        )

    def _feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for obj in self.parser.feed(data):
            if obj.get("done") is True:
                self.tokens_in = int(obj.get("prompt_eval_count") or 0)
                self.tokens_out = int(obj.get("eval_count") or 0)
            for chunk in self.conv.feed(obj):
                out.append(tr.sse_event(chunk))
        self.complete = self.ended = self.conv.done
        return b"".join(out)


class OpenAIToOllama(_ToOllama):
    """OpenAI backend (SSE) → Ollama client (NDJSON)."""

    def __init__(self, kind: Literal["chat", "generate"], model: str, created_at: str) -> None:
        self.parser = tr.SSEParser()
        self.conv = tr.OpenAIToOllamaStream(kind, model=model, created_at=created_at)
        self.saw_done = False

    def _feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for payload in self.parser.feed(data):
            if payload == "[DONE]":
                self.saw_done = True
                out.extend(tr.ndjson_line(x) for x in self.conv.finish())
                continue
            obj = _event(payload)
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self.tokens_in = int(usage.get("prompt_tokens") or 0)
                self.tokens_out = int(usage.get("completion_tokens") or 0)
            out.extend(tr.ndjson_line(x) for x in self.conv.feed(obj))
        self.complete = self.conv.done or self.saw_done
        self.ended = self.saw_done
        return b"".join(out)

    def finish(self) -> bytes:
        return b"".join(tr.ndjson_line(x) for x in self.conv.finish())
