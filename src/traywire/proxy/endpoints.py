"""The proxy's HTTP endpoints: the OpenAI, Anthropic and Ollama APIs, the model
listings, and traywire's own health and admin calls (`routes`). A request is
checked, the router asked, and the plan handed to `failover`; nothing here
decides routes. `traywire.server` makes them an aiohttp application, with the
observers' endpoints (``/status``, ``/metrics``, the dashboard)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import __version__, fastjson, threads
from ..core import fields, routing
from ..core import request as inbound
from ..errors import ConfigError, UnknownModelError
from ..types import Dialect, Front, Op
from . import failover, fronts, ollama_api, replies
from .ollama_manage import ModelManagement
from .runtime import Runtime
from .switch import SwitchBusy

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Every route is registered `guarded` (`traywire.server`): `security.guard`
# checks each request (host, token, origin, session) before its handler runs.


async def unmatched(request: web.Request) -> web.StreamResponse:
    """No route takes this request: 405 if the path has routes for other methods, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


# --------------------------------------------------------------------------- inference


class _Refused(Exception):
    """A request refused before routing: its status, message and error code."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


async def _body(request: web.Request) -> dict[str, Any]:
    return (await _read(request))[1]


async def _read(request: web.Request) -> tuple[bytes, dict[str, Any]]:
    """The body's bytes, and the JSON object they hold (or `_Refused`)."""
    raw = await _bytes(request)
    return raw, _json(raw)


async def _bytes(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[RUNTIME].cfg.server.max_body_mb
        raise _Refused(
            413, f"request body over the {limit:g} MiB limit", "request_too_large"
        ) from None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        return fields.json_object(raw, fastjson.loads, fastjson.strict)
    except fields.BadRequest as exc:
        raise _Refused(400, exc.message, "invalid_json") from None


# A body larger than this is decoded, then checked, on a worker thread (two
# hops: the event loop gets the GIL back between msgspec's decode, which
# keeps it, ~0.6 ms per MiB, and the checks). A smaller one is checked where
# it is: ~1 ms per MiB, less than the hops to a thread and back cost on a
# busy machine, and no longer a wait for the other streams than the thread's
# GIL hold would be (bench/bench_body.py measures both).
BIG_BODY = 2 << 20


def _checked(
    raw: bytes,
    parse: Callable[[dict[str, Any]], inbound.Inbound],
    legacy: ollama_api.Adapter | None,
) -> tuple[dict[str, Any], inbound.Inbound | _Refused]:
    """The body's JSON object (or `_Refused`), and the request read from it
    or why it is refused."""
    body = _json(raw)
    return body, _inbound(body, raw, parse, legacy)


def _inbound(
    body: dict[str, Any],
    raw: bytes,
    parse: Callable[[dict[str, Any]], inbound.Inbound],
    legacy: ollama_api.Adapter | None,
) -> inbound.Inbound | _Refused:
    """The request read from ``body`` (decoded from ``raw``), or why it is refused."""
    try:
        inb = parse(legacy.request(body) if legacy is not None else body)
    except inbound.BadRequest as exc:
        return _Refused(400, exc.message, "invalid_request", exc.param)
    if legacy is None and inb.original is None:
        inb = inb._replace(raw=raw)
    return inb


async def _check(
    raw: bytes,
    parse: Callable[[dict[str, Any]], inbound.Inbound],
    legacy: ollama_api.Adapter | None,
) -> tuple[dict[str, Any], inbound.Inbound | _Refused]:
    """`_checked`, here or (a body over `BIG_BODY`) on a worker thread."""
    if len(raw) <= BIG_BODY:
        return _checked(raw, parse, legacy)
    body = await threads.run_blocking(_json, raw)
    return body, await threads.run_blocking(_inbound, body, raw, parse, legacy)


def _serving(
    speaks: Front,
    parse: Callable[[dict[str, Any]], inbound.Inbound],
    legacy: ollama_api.Adapter | None = None,
) -> Handler:
    """A handler that reads the body, checks it with ``parse``, asks the router
    and hands the plan to `failover`; a refusal before that is answered in
    ``speaks`` (logged and counted like any other request). ``legacy``: an old
    endpoint served as this one (its body made into this one's, the answer
    reshaped; e.g. Ollama's /api/embeddings)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        rt = request.app[RUNTIME]
        started = (rt.clock.time(), rt.clock.monotonic())
        seen: dict[str, Any] | None = None  # the body, once decoded (for the log)
        try:
            body, inb = await _check(await _bytes(request), parse, legacy)
            seen = body
            if isinstance(inb, _Refused):
                raise inb
            try:
                decision = routing.decide(inb.route, rt.cfg, rt.snapshot())
            except UnknownModelError as exc:
                raise _Refused(404, str(exc), "model_not_found", "model") from None
        except _Refused as r:
            # answered here, but logged and counted like any other request
            response = replies.error(speaks, r.status, r.message, param=r.param, code=r.code)
            return failover.record_rejection(
                rt, speaks, seen, request.path, response, r.message, started
            )
        answer = await failover.execute(rt, inb, decision, request, started)
        return legacy.answer(body, answer) if legacy is not None else answer

    return handle


def inference(dialect: Dialect, op: Op, legacy: ollama_api.Adapter | None = None) -> Handler:
    """The OpenAI and Ollama endpoints: checked in their own dialect."""
    return _serving(dialect, lambda body: inbound.parse(dialect, op, body), legacy)


def front(which: Front) -> Handler:
    """``/v1/messages`` (Anthropic) and ``/v1/responses`` (OpenAI Responses):
    translated to OpenAI chat here, then served as any chat request."""
    return _serving(which, lambda body: fronts.parse(which, body))


async def count_tokens(request: web.Request) -> web.Response:
    """``/v1/messages/count_tokens``: traywire's estimate, as Anthropic's API answers."""
    try:
        body = await _body(request)
        return replies.json_response(fronts.count_tokens(body))
    except _Refused as r:
        return replies.error("anthropic", r.status, r.message)
    except inbound.BadRequest as exc:
        return replies.error("anthropic", 400, exc.message)


# --------------------------------------------------------------------------- traywire's own


async def health(request: web.Request) -> web.Response:
    return replies.json_response({"status": "ok", "version": __version__})


async def _admin_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return replies.error(None, 400, "invalid JSON")
    if not isinstance(body, dict):
        return replies.error(None, 400, "expected a JSON object")
    return body


async def set_preference(request: web.Request) -> web.Response:
    body = await _admin_body(request)
    if isinstance(body, web.Response):
        return body
    rt = request.app[RUNTIME]
    if "preference" not in body:
        return replies.error(None, 400, 'expected {"preference": ...} (null: the config\'s)')
    value = body["preference"]
    try:
        if value is not None and not isinstance(value, str):
            raise ValueError("preference must be a string, or null for the config's")
        rt.set_preference(value)  # null: back to the config's
    except ValueError as exc:
        return replies.error(None, 400, str(exc))
    return replies.json_response(
        {
            "preference": rt.preference or rt.cfg.preference,
            "preference_source": "runtime" if rt.preference else "config",
        }
    )


async def _group_member(request: web.Request) -> tuple[str, str] | web.Response:
    """The ``{"group": ..., "member": ...}`` of an admin call, or its 400."""
    body = await _admin_body(request)
    if isinstance(body, web.Response):
        return body
    group, member = body.get("group"), body.get("member")
    if not isinstance(group, str) or not isinstance(member, str):
        return replies.error(None, 400, 'expected {"group": ..., "member": ...}')
    return group, member


async def set_active(request: web.Request) -> web.Response:
    asked = await _group_member(request)
    if isinstance(asked, web.Response):
        return asked
    rt = request.app[RUNTIME]
    group, member = asked
    try:
        rt.set_active(group, member)
    except SwitchBusy as exc:
        return replies.error(None, 409, str(exc))
    except ValueError as exc:
        return replies.error(None, 400, str(exc))
    return replies.json_response({"active": {group: member}})


async def start_switch(request: web.Request) -> web.Response:
    """Start switching a group's server to a member; 202 at once, progress in /status."""
    asked = await _group_member(request)
    if isinstance(asked, web.Response):
        return asked
    rt = request.app[RUNTIME]
    group, member = asked
    try:
        rt.switcher.begin(group, member)
    except SwitchBusy as exc:
        return replies.error(None, 409, str(exc))
    except ValueError as exc:
        return replies.error(None, 400, str(exc))
    state = rt.switcher.status(time.monotonic())[group]
    return replies.json_response({"switching": {group: state}}, status=202)


async def reload_config(request: web.Request) -> web.Response:
    """``POST /admin/reload`` (body ``{}``): read the config file(s) again and
    apply them, as SIGHUP does; 400 for a bad config (nothing changes), 409
    while a group switches."""
    body = await _admin_body(request)
    if isinstance(body, web.Response):
        return body
    try:
        message, restart = await request.app[RUNTIME].reload_config("POST /admin/reload")
    except ConfigError as exc:
        return replies.error(None, 400, str(exc))
    except SwitchBusy as exc:
        return replies.error(None, 409, str(exc))
    return replies.json_response({"ok": True, "message": message, "restart_needed": restart})


def routes(oll: ollama_api.OllamaApi) -> list[tuple[str, str, Handler]]:
    """(method, path, handler) of every endpoint of the proxy's own."""
    models = ModelManagement(oll)
    return [
        ("POST", "/v1/chat/completions", inference("openai", "chat")),
        ("POST", "/v1/completions", inference("openai", "completion")),
        ("POST", "/v1/embeddings", inference("openai", "embed")),
        ("POST", "/v1/messages", front("anthropic")),
        ("POST", "/v1/messages/count_tokens", count_tokens),
        ("POST", "/v1/responses", front("responses")),
        ("GET", "/v1/models", oll.v1_models),
        ("GET", r"/v1/models/{model:[\s\S]+}", oll.v1_model),
        ("POST", "/api/chat", inference("ollama", "chat")),
        ("POST", "/api/generate", inference("ollama", "completion")),
        ("POST", "/api/embed", inference("ollama", "embed")),
        ("POST", "/api/embeddings", inference("ollama", "embed", ollama_api.LEGACY_EMBEDDINGS)),
        ("GET", "/api/tags", oll.tags),
        ("POST", "/api/show", oll.show),
        ("GET", "/api/ps", oll.ps),
        ("GET", "/api/version", oll.version),
        ("POST", "/api/pull", models.manage("pull")),
        ("POST", "/api/push", models.manage("push")),
        ("POST", "/api/create", models.manage("create")),
        ("POST", "/api/copy", models.manage("copy")),
        ("DELETE", "/api/delete", models.manage("delete")),
        ("GET", "/health", health),
        ("POST", "/admin/preference", set_preference),
        ("POST", "/admin/active", set_active),
        ("POST", "/admin/switch", start_switch),
        ("POST", "/admin/reload", reload_config),
        ("GET", "/", oll.root),  # and HEAD, as Ollama answers them
    ]
