"""The dashboard's place in the app, without the dashboard's code.

`setup` puts the dashboard's state on the app (its session token, the
runtime, the request log, the config file) and `routes` lists its endpoints;
their handlers (`traywire.observe.dashboard`, with the key store and the
request-log queries they use) are imported at the first dashboard request,
not at start: a proxy that is never asked for its dashboard does not load it.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from ..proxy.runtime import Runtime
from ..proxy.security import new_session
from .wiring import RequestLogHandle

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DASH_RUNTIME: web.AppKey[Runtime] = web.AppKey("dashboard_runtime", Runtime)
DASH_LOG: web.AppKey[RequestLogHandle] = web.AppKey("dashboard_log", RequestLogHandle)
# The config file the proxy was started with (None: the default layering).
CONFIG_FILE: web.AppKey[str | None] = web.AppKey("config_file", str)
# The page and its files, read at the first page request (name -> body, type).
FILES: web.AppKey[dict[str, tuple[bytes, str]]] = web.AppKey("dashboard_files", dict)


def _lazy(name: str) -> Handler:
    """`traywire.observe.dashboard`'s handler ``name``, imported when first called."""

    async def handler(request: web.Request) -> web.StreamResponse:
        found: Handler = getattr(importlib.import_module(f"{__package__}.dashboard"), name)
        return await found(request)

    handler.__name__ = handler.__qualname__ = name
    return handler


def routes() -> list[tuple[str, str, Handler]]:
    """The dashboard's endpoints: (method, path, handler); `server` adds them."""
    return [
        ("GET", "/ui", _lazy("page")),
        ("GET", "/ui/", _lazy("page_slash")),
        ("GET", "/ui/api/meta", _lazy("meta")),
        ("GET", "/ui/api/requests", _lazy("requests")),
        ("GET", r"/ui/api/requests/{id:\d{1,18}}", _lazy("one_request")),
        ("GET", "/ui/api/latency", _lazy("latency")),
        ("GET", "/ui/api/keys", _lazy("keys")),
        ("POST", "/ui/api/keys", _lazy("set_key")),
        ("DELETE", "/ui/api/keys/{name}", _lazy("delete_key")),
        ("POST", "/ui/api/reload", _lazy("reload")),
        ("GET", "/ui/{name:[a-z]+\\.[a-z]+}", _lazy("static")),
    ]


def setup(
    app: web.Application,
    rt: Runtime,
    request_log: RequestLogHandle,
    *,
    config_file: str | Path | None = None,
) -> None:
    """The dashboard's state on ``app`` (call before the app starts): the
    runtime, the request log it reads (`wiring.setup`'s handle); its endpoints
    are `routes`."""
    new_session(app)
    app[DASH_RUNTIME] = rt
    app[DASH_LOG] = request_log
    app[CONFIG_FILE] = None if config_file is None else str(config_file)
    app[FILES] = {}  # filled by the first page request
