"""Executing a plan: send to the first attempt, move on when it fails.

The one place where retries and failover live. The rules:

- Next attempt on: refused/reset connections, DNS failure, connect timeout,
  no first byte in time, HTTP 5xx, 429 (its Retry-After becomes that backend's
  cooldown), 404 model-not-found, an answer that is not valid for its dialect,
  and a request one backend kind cannot express (tried on the next).
- Not on the client's own errors (400, 401, 403, 422 and other 4xx): returned
  as they are, in the client's dialect. Except a context-length error: then
  only candidates with a larger window are tried.
- Streams fail over freely until the first byte reaches the client. After
  that a failure, or a silence longer than the idle timeout, ends the stream
  with an explicit error in the client's dialect.
- The client going away cancels the handler; the upstream request is closed
  at once so the backend stops generating.
- A backend whose circuit is open is skipped at no cost.
- Every attempt all failing: 503 (or the last status, where every attempt
  was rate-limited: 429) listing each attempt and why it failed.

Timeouts: ``connect`` for the TCP/TLS connect; streams: ``first_byte`` until
the first data, then ``idle`` between chunks; non-streaming requests: the
whole answer within ``total`` (backends send nothing before they are done).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web

from ..config import Backend, Model
from ..errors import BackendError
from ..types import AttemptRecord, Decision, RequestRecord, outcome_of
from . import dialects as tr
from . import replies
from .backends import ADAPTERS, Dialect, Ids, Op, Prepared, error_from_status
from .runtime import Runtime
from .transport import Response, TransportError

log = logging.getLogger("traywire")

_CONTENT_TYPE = {"openai": "text/event-stream", "ollama": "application/x-ndjson"}


class Call(NamedTuple):
    dialect: Dialect
    op: Op
    body: Mapping[str, Any]
    stream: bool


_ID_PREFIX = f"chatcmpl-{uuid.uuid4().hex[:12]}"
_ids = itertools.count(1)


def new_ids() -> Ids:
    """Response ids unique to this process (a random prefix and a counter)."""
    return Ids(_ID_PREFIX, next(_ids), time.time())


_JSON_HEADERS = (("Content-Type", "application/json"),)


async def _send(rt: Runtime, backend: Backend, prep: Prepared) -> Response:
    """POST the prepared request to ``backend`` (its key, if any, goes only there)."""
    assert rt.pool is not None
    auth = ADAPTERS[backend.kind].headers(rt.key_for(backend.name))
    return await rt.pool.request(
        "POST",
        backend.url,
        prep.path,
        (*_JSON_HEADERS, *auth.items()) if auth else _JSON_HEADERS,
        replies.dumps(prep.body),
        connect_timeout=backend.timeouts.connect,
    )


def _usage(data: Any) -> tuple[int, int]:
    """(prompt tokens, reply tokens) a backend reported in a non-streamed answer."""
    if not isinstance(data, dict):
        return 0, 0
    usage = data.get("usage")
    if isinstance(usage, dict):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0)


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:500]


def _reported(rt: Runtime, d: Decision, model: Model) -> str:
    how = rt.cfg.server.report_model
    return model.name if how == "served" else model.upstream if how == "upstream" else d.requested


class Trace:
    """What one request went through; turned into a RequestRecord at the end."""

    __slots__ = (
        "attempts",
        "began",
        "client_gone",
        "cut",
        "error",
        "served",
        "started",
        "status",
        "tokens_in",
        "tokens_out",
        "ttfb_ms",
        "wall",
    )

    def __init__(self) -> None:
        self.wall = time.time()
        self.started = time.monotonic()
        self.attempts: list[AttemptRecord] = []
        self.served: tuple[str, str] | None = None
        self.status = 0
        self.ttfb_ms: float | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.error = ""
        self.cut = False
        self.client_gone = False
        self.began = False  # the answer's head has gone to the client

    def add(
        self,
        model: str,
        backend: str,
        outcome: str,
        error: str = "",
        kind: str = "",
        since: float | None = None,
    ) -> None:
        ms = (time.monotonic() - since) * 1000 if since is not None else 0.0
        self.attempts.append(AttemptRecord(model, backend, outcome, error, kind, round(ms, 2)))

    def record(self, call: Call, d: Decision, endpoint: str) -> RequestRecord:
        attempts = tuple(self.attempts)
        return RequestRecord(
            ts=self.wall,
            dialect=call.dialect,
            endpoint=endpoint,
            requested=d.requested,
            capability=d.capability,
            strategy=d.strategy,
            route=d.route,
            preference=d.preference,
            prompt_tokens=d.prompt_tokens,
            stream=call.stream,
            plan=d.plan,
            skipped=d.skipped,
            attempts=attempts,
            served_model=self.served[0] if self.served else None,
            served_backend=self.served[1] if self.served else None,
            status=self.status,
            ttfb_ms=self.ttfb_ms,
            total_ms=round((time.monotonic() - self.started) * 1000, 2),
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            outcome=outcome_of(
                served=self.served is not None,
                status=self.status,
                attempts=attempts,
                cut=self.cut,
                client_gone=self.client_gone,
            ),
            error=self.error,
            cut=self.cut,
            client_gone=self.client_gone,
        )


SHUTTING_DOWN = "traywire is shutting down; try again when it is back"


async def execute(rt: Runtime, call: Call, d: Decision, request: web.Request) -> web.StreamResponse:
    trace = Trace()
    task = asyncio.current_task()
    assert task is not None
    rt.inflight.add(task)
    try:
        response = await _execute(rt, call, d, request, trace)
        trace.status = response.status
        return response
    except asyncio.CancelledError:
        if rt.stopping and not trace.began:
            # the server stops and this request is past the grace period:
            # answer it (nothing was sent yet) rather than cut the connection
            task.uncancel()
            trace.status, trace.error = 503, SHUTTING_DOWN
            return replies.error(call.dialect, 503, SHUTTING_DOWN, code="shutting_down")
        trace.client_gone = not rt.stopping
        trace.status = trace.status or 499
        raise
    finally:
        rt.inflight.discard(task)
        # Recorded just after the answer is on its way: aiohttp writes the
        # response this returns before the loop runs callbacks, and the loop
        # runs this before it reads anything more (so the next request, e.g.
        # GET /metrics, sees this one counted).
        asyncio.get_running_loop().call_soon(_observe, rt, trace, call, d, request.path)


def _observe(rt: Runtime, trace: Trace, call: Call, d: Decision, endpoint: str) -> None:
    rt.observe(trace.record(call, d, endpoint))


def record_rejection(
    rt: Runtime,
    call: Call,
    endpoint: str,
    response: web.Response,
    error: str,
    started: tuple[float, float],
) -> web.Response:
    """Count and log a request refused before any routing (bad JSON, a missing
    field, an unknown model, a body too large), then return ``response``.
    ``started``: (wall clock, monotonic) at arrival."""
    model = call.body.get("model")
    d = Decision(
        requested=model if isinstance(model, str) else "",
        capability=None,
        prompt_tokens=0,
        route=None,
        strategy=None,
        preference=rt.preference or rt.cfg.preference,
        plan=(),
        skipped=(),
    )
    trace = Trace()
    trace.wall, trace.started = started
    trace.status, trace.error = response.status, error
    asyncio.get_running_loop().call_soon(_observe, rt, trace, call, d, endpoint)
    return response


async def _execute(
    rt: Runtime, call: Call, d: Decision, request: web.Request, trace: Trace
) -> web.StreamResponse:
    cfg = rt.cfg
    larger_than = 0
    route = f"{d.capability}/{d.strategy or 'model'}"
    last: BackendError | None = None
    for att in d.plan:
        model = cfg.models[att.model]
        backend = cfg.backends[att.backend]
        if larger_than and model.context <= larger_than:
            trace.add(
                att.model,
                att.backend,
                "skipped",
                f"window {model.context} not larger than {larger_than}",
            )
            continue
        now = time.monotonic()
        if not rt.health.acquire_trial(backend.name, now):
            limited = rt.health.open_reason(backend.name) == "rate_limited"
            wait = rt.health.retry_in(backend.name, now)
            why = "rate-limited" if limited else "circuit open"
            if wait is not None:
                why += f" (retry in {wait:.0f}s)"
            trace.add(
                att.model,
                att.backend,
                "skipped",
                why,
                "rate_limited" if limited else "circuit_open",
            )
            continue
        adapter = ADAPTERS[backend.kind]
        try:
            prep = adapter.prepare(
                call.dialect,
                call.op,
                call.body,
                model.upstream,
                call.stream,
                extensions=backend.location == "local",
            )
        except tr.TranslationError as exc:
            rt.health.release_trial(backend.name)
            trace.add(att.model, att.backend, "failed", f"translation: {exc}", "translation")
            continue
        headers = {
            "X-Traywire-Model": model.name,
            "X-Traywire-Backend": backend.name,
            "X-Traywire-Route": route,
            "X-Traywire-Attempts": str(len(trace.attempts) + 1),
        }
        rt.health.begin(backend.name)
        try:
            if prep.stream:
                resp = await _stream(rt, call, backend, model, prep, d, request, headers, trace)
            else:
                resp = await _unary(rt, call, backend, model, prep, d, headers, trace)
            trace.add(att.model, att.backend, "served", trace.error, since=now)
            trace.served = (model.name, backend.name)
            return resp
        except BackendError as exc:
            _record(rt, backend.name, exc)
            last = exc
            trace.add(att.model, att.backend, "failed", str(exc), exc.kind, since=now)
            if not exc.failover:
                trace.error = str(exc)
                return _client_error(call.dialect, exc, headers)
            if exc.kind == "context_length":
                larger_than = max(larger_than, model.context)
            log.info("attempt %s on %s failed (%s): %s", model.name, backend.name, exc.kind, exc)
        except BaseException as exc:
            rt.health.release_trial(backend.name)
            if isinstance(exc, asyncio.CancelledError):
                why = "traywire stopped" if rt.stopping else "the client went away"
                trace.add(att.model, att.backend, "cancelled", why, since=now)
            raise
        finally:
            rt.health.end(backend.name)
    resp = _all_failed(call.dialect, d, trace.attempts, last)
    trace.error = d.note or "all attempts failed"
    return resp


def _record(rt: Runtime, backend: str, exc: BackendError) -> None:
    now = time.monotonic()
    if exc.kind == "rate_limited":
        rt.health.rate_limited(backend, now, exc.retry_after)
    elif exc.counts_against_backend:
        rt.health.failure(backend, now, exc.kind)
    else:
        # the backend answered properly (a client error, a missing model):
        # it is up, whatever the request's fate
        rt.health.success(backend, now)


def _client_error(dialect: Dialect, exc: BackendError, headers: dict[str, str]) -> web.Response:
    status = exc.status or 400
    message = tr.upstream_error_message(exc.body, default=str(exc))
    return replies.error(dialect, status, message, code=None, headers=headers)


def _all_failed(
    dialect: Dialect, d: Decision, tried: list[AttemptRecord], last: BackendError | None
) -> web.Response:
    if not d.plan:
        status = 400 if "window too small" in d.note else 503
        code = "context_length_exceeded" if status == 400 else "no_backend"
        return replies.error(
            dialect,
            status,
            d.note or "nothing can serve this request",
            code=code,
            extra={"skipped": [s._asdict() for s in d.skipped]},
        )
    kinds = {t.kind for t in tried if t.outcome == "failed" or t.kind}
    status = 429 if kinds == {"rate_limited"} else 503
    if kinds == {"context_length"} and last is not None:
        status = last.status or 400
    summary = "; ".join(f"{t.model} on {t.backend}: {t.error}" for t in tried)
    message = f"all {len(tried)} attempts failed: {summary}"
    attempts = [
        {
            "model": t.model,
            "backend": t.backend,
            "outcome": t.outcome,
            "error": t.error,
            **({"kind": t.kind} if t.kind else {}),
        }
        for t in tried
    ]
    return replies.error(
        dialect,
        status,
        message,
        code="all_attempts_failed",
        extra={"attempts": attempts},
        headers={"X-Traywire-Attempts": str(len(tried))},
    )


async def _unary(
    rt: Runtime,
    call: Call,
    backend: Backend,
    model: Model,
    prep: Prepared,
    d: Decision,
    headers: dict[str, str],
    trace: Trace,
) -> web.Response:
    adapter = ADAPTERS[backend.kind]
    t = backend.timeouts
    started = time.monotonic()
    r: Response | None = None
    try:
        async with asyncio.timeout(t.total):
            r = await _send(rt, backend, prep)
            raw = await r.read()
    except TransportError as exc:
        _close(r)
        raise _transport_error(exc, backend.name) from exc
    except TimeoutError as exc:
        _close(r)
        raise BackendError(
            "first_byte_timeout", f"no answer from {backend.name} within {t.total:g}s"
        ) from exc
    except BaseException:
        _close(r)
        raise
    status = r.status
    retry_after = r.headers.get("retry-after")
    if status >= 400:
        raise error_from_status(status, _decode(raw), retry_after)
    elapsed = time.monotonic() - started
    try:
        data = json.loads(raw)
        trace.tokens_in, trace.tokens_out = _usage(data)
        reported = _reported(rt, d, model)
        unchanged = isinstance(data, dict) and data.get("model") == reported
        out = adapter.response(
            prep,
            call.dialect,
            call.op,
            data,
            reported,
            new_ids(),
            call.body,
            int(elapsed * 1e9),
        )
    except (ValueError, tr.TranslationError, tr.StreamParseError, KeyError, TypeError) as exc:
        raise BackendError(
            "invalid_response", f"invalid answer from {backend.name}: {exc}"
        ) from exc
    now = time.monotonic()
    rt.health.success(backend.name, now, elapsed * 1000)
    trace.ttfb_ms = round(elapsed * 1000, 2)
    if trace.tokens_in or trace.tokens_out:
        rt.health.add_usage(model.name, now, trace.tokens_in + trace.tokens_out)
    if unchanged and out is data:
        # a same-dialect answer that already names the model the client is
        # told: the backend's own bytes, not a re-encoding of them
        return web.Response(body=raw, headers=headers, content_type="application/json")
    return replies.json_response(out, headers=headers)


async def _stream(
    rt: Runtime,
    call: Call,
    backend: Backend,
    model: Model,
    prep: Prepared,
    d: Decision,
    request: web.Request,
    headers: dict[str, str],
    trace: Trace,
) -> web.StreamResponse:
    t = backend.timeouts
    adapter = ADAPTERS[backend.kind]
    relay = adapter.relay(
        prep, call.dialect, call.op, _reported(rt, d, model), new_ids(), call.body
    )
    started = time.monotonic()
    r: Response | None = None
    first = b""
    try:
        async with asyncio.timeout(t.first_byte):
            r = await _send(rt, backend, prep)
            if r.status >= 400:
                raw = await r.read()
                raise error_from_status(r.status, _decode(raw), r.headers.get("retry-after"))
            while not first:
                chunk = await r.readany()
                if not chunk:
                    if relay.complete:
                        break
                    raise BackendError(
                        "invalid_response", f"{backend.name} ended the stream before any data"
                    )
                first = relay.feed(chunk)
    except BackendError:
        _close(r)
        raise
    except (tr.StreamParseError, tr.TranslationError) as exc:
        _close(r)
        raise BackendError(
            "invalid_response", f"invalid stream from {backend.name}: {exc}"
        ) from exc
    except tr.UpstreamError as exc:
        _close(r)
        raise BackendError("server_error", f"{backend.name}: {exc}") from exc
    except TimeoutError as exc:
        _close(r)
        raise BackendError(
            "first_byte_timeout", f"no data from {backend.name} within {t.first_byte:g}s"
        ) from exc
    except TransportError as exc:
        _close(r)
        raise _transport_error(exc, backend.name) from exc
    except BaseException:
        _close(r)
        raise
    assert r is not None
    now = time.monotonic()
    rt.health.success(backend.name, now, (now - started) * 1000)
    trace.ttfb_ms = round((now - trace.started) * 1000, 2)

    response = web.StreamResponse(status=200, headers=headers)
    response.content_type = _CONTENT_TYPE[call.dialect]
    response.headers["Cache-Control"] = "no-cache"
    problem: str | None = None
    kind = "reset"
    try:
        trace.began = True
        await response.prepare(request)
        await response.write(first)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None) as deadline:
            while True:
                deadline.reschedule(loop.time() + t.idle)
                chunk = await r.readany()
                if not chunk:
                    break
                out = relay.feed(chunk)
                if out:
                    await response.write(out)
        if not relay.complete:
            problem = f"{backend.name} closed the stream before it finished"
    except TimeoutError:
        problem, kind = f"{backend.name} sent nothing for {t.idle:g}s", "idle_timeout"
    except (tr.StreamParseError, tr.TranslationError) as exc:
        problem, kind = f"invalid stream from {backend.name}: {exc}", "invalid_response"
    except tr.UpstreamError as exc:
        problem, kind = f"{backend.name}: {exc}", "server_error"
    except TransportError as exc:
        problem = f"{backend.name} broke off the stream: {exc.detail}"
        kind = exc.kind
    except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
        _close(r)  # writing to the client failed: it went away
        raise asyncio.CancelledError from exc
    except asyncio.CancelledError:
        if not rt.stopping:
            _close(r)  # the client went away: stop the backend now
            raise
        # past the shutdown grace period: end the stream cleanly, with an error
        asyncio.current_task().uncancel()  # type: ignore[union-attr]
        problem, kind = SHUTTING_DOWN, "shutdown"
    except BaseException:
        _close(r)  # client gone (cancelled) or anything else: stop the backend now
        raise
    try:
        if problem is None:
            await response.write(relay.finish())
            r.release()
        else:
            _close(r)
            if kind != "shutdown":  # not the backend's fault
                rt.health.failure(backend.name, time.monotonic(), kind)
            trace.cut, trace.error = True, problem
            log.info("stream from %s cut: %s", backend.name, problem)
            await response.write(relay.error(problem))
        await response.write_eof()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        _close(r)
    trace.tokens_in, trace.tokens_out = relay.tokens_in, relay.tokens_out
    if relay.tokens:
        rt.health.add_usage(model.name, time.monotonic(), relay.tokens)
    return response


def _close(r: Response | None) -> None:
    if r is not None:
        r.close()


def _transport_error(exc: TransportError, backend: str) -> BackendError:
    return BackendError(exc.kind, f"{backend}: {exc.detail}")
