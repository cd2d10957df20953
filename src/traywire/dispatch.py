"""Requests for the app's fixed paths go straight to their handler.

aiohttp's `Application` finds each request's route by walking its router
(`UrlDispatcher.resolve`: the path's URL parts from the longest, a coroutine
per candidate resource) and builds a new match info for every request: ~33k
CPU instructions a request, 6% of a bare aiohttp pass-through's whole cost
(callgrind, `bench/passthrough.py` with and without its Application).

`direct` looks the route up in a dict instead, for a request whose target
is exactly one of the app's plain paths (no query string, no escapes) and
that has no ``Expect`` header, and gives it a match info made once per route
(frozen: nothing can change it). Every other request goes through the
Application as before. Handlers see the same request either way:
``request.app``, ``request.match_info.route``. Measured saving in traywire:
~11k instructions a request (callgrind, 680k -> 669k; the rest of the 33k
is the Application's request object and task, which stay).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

__all__ = ["direct"]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def direct(app: web.Application, fallback: Handler) -> Handler:
    """The server's request handler for ``app`` (frozen, routes all added):
    plain paths by a dict, the rest by ``fallback`` (the Application's own).
    An app with middlewares keeps ``fallback`` alone (they run on every
    request)."""
    if app.middlewares or not app.frozen:
        return fallback
    table: dict[tuple[str, str], UrlMappingMatchInfo] = {}
    for resource in app.router.resources():
        if not isinstance(resource, web.PlainResource):
            continue
        for route in resource:
            if route.method == hdrs.METH_ANY:
                continue
            info = UrlMappingMatchInfo({}, route)
            info.add_app(app)
            info.freeze()
            # the first route registered for a method and path is the router's
            table.setdefault((route.method, resource.canonical), info)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        info = table.get((request.method, request.raw_path))
        if info is None or hdrs.EXPECT in request.headers:
            return await fallback(request)
        request._match_info = info  # type: ignore[attr-defined]  # as Application._handle does
        # (a web.Request: the Application's request factory made it)
        return await info.handler(cast(web.Request, request))

    return handle
