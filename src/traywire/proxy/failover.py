"""Executing a plan: send to the first attempt, move on when it fails.

The one place where retries and failover live; one loop over the plan. Every
failure reaches it as a `BackendError`, mapped where it came in (transport,
relay, adapter, deadline), and health is fed through one `Attempt` per step.
The rules:

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

Size: a non-streamed answer is read up to ``server.max_answer_mb`` (decoded);
past it the attempt fails as ``too_large``. A request is written to a backend
once: the transport never resends it after a failure (the backend may have
started generating); the next attempt is the plan's next step.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import uuid
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web

from ..core.fields import MAX_MODEL
from ..core.request import Inbound
from ..core.schema import Backend, Model
from ..errors import BackendError
from ..redact import REDACTOR
from ..types import AttemptRecord, Decision, Front
from . import dialects as tr
from . import fronts, replies
from .backends import ADAPTERS, Ids, Prepared, error_from_status, wire_body
from .deadline import Deadline
from .health import Attempt
from .relay import KEEP_ALIVE
from .runtime import Runtime
from .trace import Trace
from .transport import Response

log = logging.getLogger("traywire")

_CONTENT_TYPE = {
    "openai": "text/event-stream",
    "ollama": "application/x-ndjson",
    "anthropic": "text/event-stream",
    "responses": "text/event-stream",
}
_STREAM_HEADERS = {
    front: {"Content-Type": kind, "Cache-Control": "no-cache"}
    for front, kind in _CONTENT_TYPE.items()
}


class _StreamAnswer(web.StreamResponse):
    """A streamed answer whose head goes out in one write with its first
    bytes (aiohttp's own answers do this; its StreamResponse writes the head
    alone at ``prepare``). Every write is made at once: the head waits for
    nothing."""

    _send_headers_immediately = False


_JSON_HEADERS = (("Content-Type", "application/json"),)
_ID_PREFIX = f"chatcmpl-{uuid.uuid4().hex[:12]}"
_ids = itertools.count(1)

SHUTTING_DOWN = "traywire is shutting down; try again when it is back"


def new_ids(rt: Runtime) -> Ids:
    """Response ids unique to this process (a random prefix and a counter)."""
    return Ids(_ID_PREFIX, next(_ids), rt.clock.time())


async def execute(
    rt: Runtime,
    inb: Inbound,
    d: Decision,
    request: web.Request,
    started: tuple[float, float] | None = None,
) -> web.StreamResponse:
    """Serve ``inb`` along the plan of ``d``; always answers in the client's
    dialect. ``started``: (wall clock, monotonic) at arrival; now if not given."""
    trace = Trace(rt.clock, started)
    # (with the loop named: on Python 3.11 current_task() alone calls getpid())
    task = asyncio.current_task(request.task.get_loop())
    assert task is not None
    rt.inflight.add(task)
    try:
        response = await _run(rt, inb, d, request, trace, task)
        trace.status = response.status
        return response
    except asyncio.CancelledError:
        if rt.stopping and not trace.began:
            # the server stops and this request is past the grace period:
            # answer it (nothing was sent yet) rather than cut the connection
            task.uncancel()
            trace.status, trace.error = 503, SHUTTING_DOWN
            return replies.error(inb.front, 503, SHUTTING_DOWN, code="shutting_down")
        trace.client_gone = not rt.stopping
        trace.status = trace.status or 499
        raise
    finally:
        rt.inflight.discard(task)
        # Recorded just after the answer is on its way: aiohttp writes the
        # response this returns before the loop runs callbacks, and the loop
        # runs this before it reads anything more (so the next request, e.g.
        # GET /metrics, sees this one counted).
        task.get_loop().call_soon(  # (the task's loop: no getpid() as get_running_loop has)
            _observe, rt, trace, inb.front, request.path, inb.stream, d
        )


def _observe(
    rt: Runtime, trace: Trace, dialect: Front, endpoint: str, stream: bool, d: Decision
) -> None:
    rt.observe(trace.record(dialect, endpoint, stream, d))


def record_rejection(
    rt: Runtime,
    dialect: Front,
    body: dict[str, Any] | None,
    endpoint: str,
    response: web.Response,
    error: str,
    started: tuple[float, float],
) -> web.Response:
    """Count and log a request refused before any routing (bad JSON, a missing
    field, an unknown model, a body too large), then return ``response``.
    ``started``: (wall clock, monotonic) at arrival."""
    model = body.get("model") if body is not None else None
    d = Decision(
        requested=model[:MAX_MODEL] if isinstance(model, str) else "",
        capability=None,
        prompt_tokens=0,
        route=None,
        strategy=None,
        preference=rt.preference or rt.cfg.preference,
        plan=(),
        skipped=(),
    )
    trace = Trace(rt.clock, started)
    trace.status, trace.error = response.status, error
    stream = body is not None and body.get("stream") is True
    asyncio.get_running_loop().call_soon(_observe, rt, trace, dialect, endpoint, stream, d)
    return response


async def _run(
    rt: Runtime,
    inb: Inbound,
    d: Decision,
    request: web.Request,
    trace: Trace,
    task: asyncio.Task[Any],
) -> web.StreamResponse:
    cfg = rt.cfg
    larger_than = 0  # after a context-length error: only larger windows
    # capability/strategy ("embed" where no use case applies: embeddings)
    route = f"{d.capability or 'embed'}/{d.strategy or 'model'}"
    last: BackendError | None = None
    for step in d.plan:
        model = cfg.models[step.model]
        backend = cfg.backends[step.backend]
        if larger_than and model.context <= larger_than:
            trace.skipped(step, f"window {model.context} not larger than {larger_than}")
            continue
        attempt = rt.health.attempt(backend.name)
        if attempt is None:
            trace.skipped(step, *rt.health.why_skipped(backend.name))
            continue
        headers = {
            "X-Traywire-Model": model.name,
            "X-Traywire-Backend": backend.name,
            "X-Traywire-Route": route,
            "X-Traywire-Attempts": str(len(trace.attempts) + 1),
        }
        try:
            with attempt:
                prep = ADAPTERS[backend.kind].prepare(
                    inb.dialect,
                    inb.op,
                    inb.body,
                    model.upstream,
                    inb.stream,
                    extensions=backend.location == "local",
                )
                send = _stream if prep.stream else _unary
                job = _Job(rt, inb, backend, model, prep, d, request, headers, trace, attempt, task)
                resp = await send(job)
        except BackendError as exc:
            last = exc
            trace.failed(step, exc, attempt.elapsed_ms())
            if not exc.failover:
                trace.error = REDACTOR.text(str(exc))
                return _client_error(inb.front, exc, headers)
            if exc.kind == "context_length":
                larger_than = max(larger_than, model.context)
            elif exc.kind == "unsupported":
                rt.learn_lack(model.name, inb.route, str(exc))
            log.info("attempt %s on %s failed (%s): %s", model.name, backend.name, exc.kind, exc)
            continue
        except asyncio.CancelledError:
            why = "traywire stopped" if rt.stopping else "the client went away"
            trace.cancelled(step, why, attempt.elapsed_ms())
            raise
        trace.served_by(step, attempt.elapsed_ms())
        return resp
    resp = _all_failed(inb.front, d, trace.attempts, last, route)
    trace.error = d.note or "all attempts failed"
    return resp


def _client_error(dialect: Front, exc: BackendError, headers: dict[str, str]) -> web.Response:
    status = exc.status or 400
    message = REDACTOR.text(tr.upstream_error_message(exc.body, default=str(exc)))
    return replies.error(dialect, status, message, code=None, headers=headers)


def _all_failed(
    dialect: Front,
    d: Decision,
    tried: list[AttemptRecord],
    last: BackendError | None,
    route: str,
) -> web.Response:
    """Nothing served the request: say why, model by model - the router's
    skips too, a model asked for by name first - in the client's dialect.

    Status: 400 when the request itself is the reason (a need no planned model
    has, a window too small, every attempt refused for the request's sake),
    429 when every attempt was rate-limited, else 503."""
    headers = {"X-Traywire-Route": route, "X-Traywire-Attempts": str(len(tried))}
    skips = sorted(d.skipped, key=lambda s: s.model != d.requested)  # asked-for first
    not_planned = [{"model": s.model, "backend": s.backend, "reason": s.reason} for s in skips]
    if not d.plan:
        if d.unmet:
            status, code = 400, "unsupported_request"
        elif "window too small" in d.note:
            status, code = 400, "context_length_exceeded"
        else:
            status, code = 503, "no_backend"
        return replies.error(
            dialect,
            status,
            REDACTOR.text(d.note or "nothing can serve this request"),
            code=code,
            extra={"skipped": not_planned},
            headers=headers,
        )
    failed = {t.kind for t in tried if t.outcome == "failed"}
    passed_over = {t.kind for t in tried if t.outcome == "skipped" and t.kind}
    status, code = 503, "all_attempts_failed"
    if failed | passed_over == {"rate_limited"}:
        status = 429
    elif failed and not passed_over and failed <= BackendError.THE_REQUEST:
        # every backend that answered refused the request itself
        status = last.status if last and last.status and 400 <= last.status < 500 else 400
        code = "context_length_exceeded" if failed == {"context_length"} else "unsupported_request"
    n = len(tried)
    head = f"all {n} attempts failed" if n != 1 else "the 1 attempt failed"
    parts = [f"{t.model} on {t.backend}: {t.error}" for t in tried]
    message = f"{head}: " + "; ".join(parts)
    if skips:
        message += "; not planned: " + "; ".join(f"{s.model} ({s.reason})" for s in skips)
    if skips and skips[0].model == d.requested:
        message = f"{d.requested} was not planned ({skips[0].reason}); {message}"
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
        code=code,
        extra={"attempts": attempts, "skipped": not_planned},
        headers=headers,
    )


# --------------------------------------------------------------------------- one attempt


class _Job(NamedTuple):
    """One attempt, for `_unary` or `_stream` to send: the request (with its
    plan, trace and the client's connection) and the step tried."""

    rt: Runtime
    inb: Inbound
    backend: Backend
    model: Model
    prep: Prepared
    d: Decision
    request: web.Request
    headers: dict[str, str]
    trace: Trace
    attempt: Attempt
    task: asyncio.Task[Any]  # the request's


async def _accepted(rt: Runtime, inb: Inbound, backend: Backend, prep: Prepared) -> Response:
    """POST the prepared request to ``backend`` (its key, if any, goes only
    there); an error status raises its kind (the body read for it); otherwise
    the answer whose body is still to be read."""
    assert rt.pool is not None
    auth = ADAPTERS[backend.kind].headers(rt.key_for(backend.name))
    r = await rt.pool.request(
        "POST",
        backend.url,
        prep.path,
        (*_JSON_HEADERS, *auth.items()) if auth else _JSON_HEADERS,
        wire_body(prep.body, inb.body, inb.raw),
        connect_timeout=backend.timeouts.connect,
    )
    if r.status < 400:
        return r
    try:
        raw = await r.read(_max_answer(rt), limit_name=_MAX_ANSWER)
    finally:
        r.close()  # read to its end it is back in the pool already
    raise error_from_status(r.status, _decode(raw), r.headers.get("retry-after"))


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:500]


def _reported(rt: Runtime, d: Decision, model: Model) -> str:
    how = rt.cfg.server.report_model
    return model.name if how == "served" else model.upstream if how == "upstream" else d.requested


def _max_answer(rt: Runtime) -> int:
    """The largest non-streamed answer (or error body) read from a backend, in bytes."""
    return int(rt.cfg.server.max_answer_mb * (1 << 20))


_MAX_ANSWER = "server.max_answer_mb"


def _close(r: Response | None) -> None:
    if r is not None:
        r.close()


async def _unary(job: _Job) -> web.Response:
    rt, inb, backend, model, prep, d, _request, headers, trace, attempt, task = job
    total = backend.timeouts.total
    r: Response | None = None
    try:
        with Deadline(total, "total_timeout", f"no answer within {total:g}s", task):
            r = await _accepted(rt, inb, backend, prep)
            raw = await r.read(_max_answer(rt), limit_name=_MAX_ANSWER)
    except BaseException:
        _close(r)
        raise
    elapsed_ms = attempt.elapsed_ms()
    reported, ids = _reported(rt, d, model), new_ids(rt)
    answer = ADAPTERS[backend.kind].answer(
        prep, inb.dialect, inb.op, raw, reported, ids, inb.body, int(elapsed_ms * 1e6)
    )
    if inb.front != inb.dialect:  # Anthropic or Responses: say it again in theirs
        answer = answer._replace(body=fronts.answer(inb, answer.body, reported, ids))
    attempt.ok(elapsed_ms)
    trace.ttfb_ms = round(elapsed_ms, 2)
    trace.tokens_in, trace.tokens_out = answer.tokens_in, answer.tokens_out
    if answer.tokens_in or answer.tokens_out:
        attempt.used(model.name, answer.tokens_in + answer.tokens_out)
    if isinstance(answer.body, bytes):
        body = REDACTOR.data(answer.body)  # passed through: may echo a key
        return web.Response(body=body, headers=headers, content_type="application/json")
    return replies.json_response(REDACTOR.obj(answer.body), headers=headers)


async def _stream(job: _Job) -> web.StreamResponse:
    rt, inb, backend, model, prep, d, request, headers, trace, attempt, task = job
    t = backend.timeouts
    reported, ids = _reported(rt, d, model), new_ids(rt)
    relay = ADAPTERS[backend.kind].relay(prep, inb.dialect, inb.op, reported, ids, inb.body)
    if inb.front != inb.dialect:  # Anthropic or Responses
        relay = fronts.relay(inb, relay, reported, ids, d.prompt_tokens)
    r: Response | None = None
    first = b""
    try:
        first_byte = f"no data within {t.first_byte:g}s"
        with Deadline(t.first_byte, "first_byte_timeout", first_byte, task):
            r = await _accepted(rt, inb, backend, prep)
            while not first:
                chunk = await r.readany()
                if not chunk:
                    if relay.complete:
                        break
                    raise BackendError("invalid_response", "the stream ended before any data")
                first = relay.feed(chunk)
                if first == KEEP_ALIVE:
                    first = b""  # alive, but not an answer yet: no commitment
    except BaseException:
        _close(r)
        raise
    attempt.ok(attempt.elapsed_ms())
    trace.ttfb_ms = trace.elapsed_ms()

    response = _StreamAnswer(status=200, headers={**headers, **_STREAM_HEADERS[inb.front]})
    problem: BackendError | None = None
    stopped = False
    pending = REDACTOR.data(first)  # goes out with the head, and the end if it came too
    try:
        trace.began = True
        await response.prepare(request)
        # once the backend sent its end marker the answer is whole: do not
        # wait for its body to end too
        if not relay.ended:
            await response.write(pending)
            pending = b""
            whole = Deadline(
                t.stream, "total_timeout", f"still streaming after {t.stream:g}s", task
            )
            idle = Deadline(t.idle, "idle_timeout", f"sent nothing for {t.idle:g}s", task)
            with whole, idle:
                while not relay.ended:
                    idle.extend()
                    chunk = await r.readany()
                    if not chunk:
                        break
                    out = relay.feed(chunk)
                    if out:
                        await response.write(REDACTOR.data(out))
        if not relay.complete:
            problem = BackendError("reset", "closed the stream before it finished")
    except BackendError as exc:
        problem = exc
    except (ConnectionResetError, aiohttp.ClientConnectionResetError) as exc:
        _close(r)  # writing to the client failed: it went away
        raise asyncio.CancelledError from exc
    except asyncio.CancelledError:
        if not rt.stopping:
            _close(r)  # the client went away: stop the backend now
            raise
        # past the shutdown grace period: end the stream cleanly, with an error
        task.uncancel()
        stopped = True
    except BaseException:
        _close(r)
        raise
    try:
        if problem is None and not stopped:
            r.release()  # back to the pool if its body ended, else closed
            await response.write_eof(pending + relay.finish())
        else:
            _close(r)
            if problem is not None:
                attempt.failed(problem)
                message = REDACTOR.text(f"{backend.name}: {problem}")
                log.info("stream from %s cut (%s): %s", backend.name, problem.kind, problem)
            else:
                message = SHUTTING_DOWN  # not the backend's fault
            trace.cut, trace.error = True, message
            await response.write_eof(pending + relay.error(message))
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        _close(r)
    trace.tokens_in, trace.tokens_out = relay.tokens_in, relay.tokens_out
    if relay.tokens:
        attempt.used(model.name, relay.tokens)
    return response
