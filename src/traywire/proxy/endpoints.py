"""The proxy's HTTP endpoints: the OpenAI, Anthropic and Ollama APIs, the model
listings, and traywire's own health and admin calls (`routes`). A request is
checked, the router asked, and the plan handed to `failover`; nothing here
decides routes. `traywire.server` makes them an aiohttp application, with the
observers' endpoints (``/status``, ``/metrics``, the dashboard)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import __version__
from ..core import fields, routing
from ..core import request as inbound
from ..errors import BackendError, UnknownModelError
from ..types import Dialect, Front, Op
from . import failover, fronts, replies
from .runtime import Runtime
from .switch import SwitchBusy

RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime", Runtime)
# What /api/version reports: an Ollama version recent enough that Ollama
# clients enable their features (tools, embed), plus traywire's own.
OLLAMA_COMPAT_VERSION = "0.12.6"

_PS_LIMIT = 4 * 1024 * 1024  # an /api/ps listing larger than this is not one

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
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[RUNTIME].cfg.server.max_body_mb
        raise _Refused(
            413, f"request body over the {limit:g} MiB limit", "request_too_large"
        ) from None
    try:
        return fields.json_object(raw)
    except fields.BadRequest as exc:
        raise _Refused(400, exc.message, "invalid_json") from None


def _serving(speaks: Front, parse: Callable[[dict[str, Any]], inbound.Inbound]) -> Handler:
    """A handler that reads the body, checks it with ``parse``, asks the router
    and hands the plan to `failover`; a refusal before that is answered in
    ``speaks`` (logged and counted like any other request)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        rt = request.app[RUNTIME]
        started = (rt.clock.time(), rt.clock.monotonic())
        body: dict[str, Any] | None = None
        try:
            body = await _body(request)
            try:
                inb = parse(body)
            except inbound.BadRequest as exc:
                raise _Refused(400, exc.message, "invalid_request", exc.param) from None
            try:
                decision = routing.decide(inb.route, rt.cfg, rt.snapshot())
            except UnknownModelError as exc:
                raise _Refused(404, str(exc), "model_not_found", "model") from None
        except _Refused as r:
            # answered here, but logged and counted like any other request
            response = replies.error(speaks, r.status, r.message, param=r.param, code=r.code)
            return failover.record_rejection(
                rt, speaks, body, request.path, response, r.message, started
            )
        return await failover.execute(rt, inb, decision, request)

    return handle


def inference(dialect: Dialect, op: Op) -> Handler:
    """The OpenAI and Ollama endpoints: checked in their own dialect."""
    return _serving(dialect, lambda body: inbound.parse(dialect, op, body))


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


# --------------------------------------------------------------------------- listings


def _served_by(rt: Runtime, name: str) -> list[str]:
    cfg = rt.cfg
    if name in cfg.models:
        return [cfg.models[name].backend]
    route = cfg.routes.get(name)
    if route is None:
        return sorted({m.backend for m in cfg.models.values()})
    return sorted({cfg.models[c.model].backend for c in route.candidates})


async def list_models(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    data = []
    for name in rt.cfg.names():
        kind = "model" if name in rt.cfg.models else "alias"
        data.append(
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "traywire",
                "traywire": {"kind": kind, "backends": _served_by(rt, name)},
            }
        )
    return replies.json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    name = request.match_info["model"]
    if name not in rt.cfg.names():
        return replies.error("openai", 404, f"unknown model {name!r}", code="model_not_found")
    return replies.json_response(
        {"id": name, "object": "model", "created": 0, "owned_by": "traywire"}
    )


async def tags(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    models = []
    for name in rt.cfg.names():
        m = rt.cfg.models.get(name)
        details = {
            "format": "",
            "family": "",
            "families": None,
            "parameter_size": f"{m.params_b:g}B" if m else "",
            "quantization_level": "",
            "parent_model": "",
        }
        models.append(
            {
                "name": name,
                "model": name,
                "modified_at": "1970-01-01T00:00:00Z",
                "size": 0,
                "digest": "",
                "details": details,
            }
        )
    return replies.json_response({"models": models})


async def version(request: web.Request) -> web.Response:
    return replies.json_response({"version": OLLAMA_COMPAT_VERSION, "traywire": __version__})


async def ps(request: web.Request) -> web.Response:
    """What is loaded where, from the Ollama backends (they say; others do not)."""
    rt = request.app[RUNTIME]
    pool = rt.pool
    assert pool is not None

    async def one(name: str) -> list[dict[str, Any]]:
        b = rt.cfg.backends[name]
        try:
            status, body = await pool.get(
                b.url,
                "/api/ps",
                tuple(rt.auth_headers(b).items()),
                timeout=2,
                limit=_PS_LIMIT,
            )
            data = json.loads(body) if status == 200 else {}
        except (BackendError, ValueError):
            return []
        out = []
        for m in (data.get("models") if isinstance(data, dict) else None) or []:
            if isinstance(m, dict):
                m["traywire_backend"] = name
                out.append(m)
        return out

    names = [
        n
        for n, b in rt.cfg.backends.items()
        if b.kind == "ollama" and b.enabled and b.location == "local"
    ]
    results = await asyncio.gather(*(one(n) for n in names))
    return replies.json_response({"models": [m for r in results for m in r]})


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
    try:
        rt.set_preference(body.get("preference"))  # type: ignore[arg-type]
    except ValueError as exc:
        return replies.error(None, 400, str(exc))
    return replies.json_response({"preference": rt.preference})


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


async def root(request: web.Request) -> web.Response:
    return web.Response(text="traywire is running\n")


def routes() -> list[tuple[str, str, Handler]]:
    """(method, path, handler) of every endpoint of the proxy's own."""
    return [
        ("POST", "/v1/chat/completions", inference("openai", "chat")),
        ("POST", "/v1/completions", inference("openai", "completion")),
        ("POST", "/v1/embeddings", inference("openai", "embed")),
        ("POST", "/v1/messages", front("anthropic")),
        ("POST", "/v1/messages/count_tokens", count_tokens),
        ("POST", "/v1/responses", front("responses")),
        ("GET", "/v1/models", list_models),
        ("GET", r"/v1/models/{model:[\s\S]+}", get_model),
        ("POST", "/api/chat", inference("ollama", "chat")),
        ("POST", "/api/generate", inference("ollama", "completion")),
        ("POST", "/api/embed", inference("ollama", "embed")),
        ("GET", "/api/tags", tags),
        ("GET", "/api/version", version),
        ("GET", "/api/ps", ps),
        ("GET", "/health", health),
        ("POST", "/admin/preference", set_preference),
        ("POST", "/admin/active", set_active),
        ("POST", "/admin/switch", start_switch),
        ("GET", "/", root),
    ]
