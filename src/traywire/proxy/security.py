"""Every check a request passes before its handler runs, in one place.

`guard` wraps each route's handler (`guarded`, used by `traywire.server.make_app`)
rather than being installed as an aiohttp middleware: the middleware
machinery costs every request about 8 µs of CPU (README, "Benchmarks"). In
order:

0. *Still open?* Once the server stops (`Gate.closing`), a request that
   arrives on a connection kept alive from before gets 503 ``shutting_down``
   with ``Connection: close`` and nothing else; the requests accepted before
   are counted in `Gate.accepted` so that the stop can wait for them.
1. *Who may call at all.* With a token configured (required off loopback),
   every request carries it (``Authorization: Bearer``, or
   ``X-Traywire-Token``): 401 otherwise. Without one, the ``Host`` must be a
   loopback name, so a web page on a DNS-rebound name cannot reach the proxy:
   403 ``forbidden_host``.
2. *Pages on other machines.* A state-changing request (any method but GET,
   HEAD, OPTIONS) that carries an ``Origin`` must come from a page on this
   machine (a loopback host, any port), so a site the user visits cannot
   spend their models or quota: 403 ``forbidden_origin``. Local web apps may
   use the model APIs, as Ollama lets them by default.
3. *Changing traywire itself* (``/admin/*``, and the dashboard's
   ``/ui/api/*``) asks more: an ``Origin``, when there is one, must pass
   `same_origin`; the body must be ``application/json`` (a form cannot send
   it without a CORS preflight, which traywire never answers); and the
   dashboard's per-app *session token* (`SESSION`, written into the page it
   serves, readable by nothing but that page) must come as
   ``X-Traywire-Session`` on every dashboard change and on every admin call
   from a browser (one that sends ``Origin``). Local clients that send no
   ``Origin`` (the tray, curl, scripts) call ``/admin`` without it.
4. *Nothing leaks.* An exception in a handler becomes an error in the caller's
   dialect (404/405/413 and a 500 without a traceback); everything under
   ``/ui`` is ``Cache-Control: no-store``.

The same-origin rule (DECISION). An ``Origin`` is the proxy's own only if it
is exactly the origin the request was sent to: the same scheme, host name and
port as ``request.scheme`` and its ``Host`` (default ports filled in,
case-insensitive; ``null`` and anything with a path, query or user part never
match). It is the one rule for admin and dashboard calls. Before, admin calls
took any loopback host with the proxy's port while dashboard calls wanted the
exact origin. The exact rule is the right one: a browser treats every
(scheme, host, port) as its own site, and so must traywire. Another loopback
address on the same port (``http://[::1]:8484``, ``http://127.0.0.2:8484``)
can be another program's listener, and ``http://localhost:8484`` is another
site than ``http://127.0.0.1:8484`` to the browser; a page on another port of
this machine (a dev server, another local app) is another site outright. None
of them may change traywire's state. The dashboard calls with relative URLs,
so its ``Origin`` is always exactly where it was loaded from: nothing it does
is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from yarl import URL

from . import replies

log = logging.getLogger("traywire")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The client token (None: loopback only, no token).
TOKEN: web.AppKey[str | None] = web.AppKey("token", str)
# The dashboard's session token; `new_session` makes it when the app is built.
SESSION: web.AppKey[str] = web.AppKey("dashboard_session", str)
SESSION_HEADER: Final = "X-Traywire-Session"

SAFE_METHODS: Final = ("GET", "HEAD", "OPTIONS")
SHUTTING_DOWN: Final = "traywire is shutting down; try again when it is back"


class Gate:
    """Whether the app still takes requests, and the requests it has taken
    that are running (their tasks), for `traywire.server`'s stop."""

    __slots__ = ("accepted", "closing")

    def __init__(self) -> None:
        self.closing = False
        self.accepted: dict[asyncio.Task[Any], web.Request] = {}


GATE: web.AppKey[Gate] = web.AppKey("gate", Gate)
_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


# --------------------------------------------------------------------------- the rules


def is_loopback(host: str) -> bool:
    """Is ``host`` (a name or an address, IPv6 with or without brackets) this machine?"""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_HOSTS: dict[str, str] = {}


def host_name(host: str) -> str:
    """The host name in a Host header (cached: clients send the same few)."""
    name = _HOSTS.get(host)
    if name is None:
        try:
            name = (URL(f"http://{host}").host or "").strip("[]").lower()
        except ValueError:
            name = ""
        if len(_HOSTS) < 64:
            _HOSTS[host] = name
    return name


def local_origin(origin: str) -> bool:
    """Is ``origin`` a page on this machine (any port)? Rule 2."""
    try:
        return origin != "null" and is_loopback(URL(origin).host or "")
    except ValueError:
        return False


def _origin_of(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an origin; None if ``url`` is not a bare origin."""
    try:
        u = URL(url)
    except ValueError:
        return None
    if not u.absolute or u.user is not None or u.raw_path not in ("", "/"):
        return None
    if u.raw_query_string or u.raw_fragment:
        return None
    scheme = u.scheme.lower()
    return scheme, (u.host or "").strip("[]").lower(), u.port or _DEFAULT_PORTS.get(scheme)


def same_origin(origin: str, request: web.Request) -> bool:
    """Is ``origin`` exactly the origin ``request`` was sent to (scheme, host,
    port)? The one rule for admin and dashboard calls (see the module docstring)."""
    given = _origin_of(origin)
    return given is not None and given == _origin_of(f"{request.scheme}://{request.host}")


def token_ok(request: web.Request, token: str) -> bool:
    """The token as a bearer (OpenAI SDKs' api_key), ``x-api-key`` (Anthropic
    SDKs') or ``X-Traywire-Token``."""
    given = request.headers.get("Authorization", "")
    if given.lower().startswith("bearer "):
        given = given[7:]
    else:
        given = request.headers.get("x-api-key") or request.headers.get("X-Traywire-Token") or ""
    return hmac.compare_digest(given.encode(), token.encode())


def new_session(app: web.Application) -> str:
    """Make this app's dashboard session token (the page carries it)."""
    session = secrets.token_urlsafe(32)
    app[SESSION] = session
    return session


def session_ok(request: web.Request) -> bool:
    given = request.headers.get(SESSION_HEADER, "")
    return hmac.compare_digest(given.encode(), request.app[SESSION].encode())


# --------------------------------------------------------------------------- the guard


def _no_store(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# Ollama's model management: it changes what is on the machine.
MANAGEMENT = frozenset({"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"})


def _refusal(request: web.Request) -> web.StreamResponse | None:
    """Rules 1-3: the answer that refuses ``request``, or None to let it through
    (`guard` adds ``no-store`` under /ui)."""
    path = request.path
    token = request.app[TOKEN]
    if token is not None:
        if not token_ok(request, token):
            return replies.error(
                replies.dialect_of(path),
                401,
                "missing or wrong token (Authorization: Bearer ...)",
                code="invalid_api_key",
            )
    elif host_name(request.headers.get("Host", "")) not in _LOOPBACK_NAMES:
        return replies.error(
            replies.dialect_of(path),
            403,
            f"Host {request.host!r} is not this proxy's own",
            code="forbidden_host",
        )
    method = request.method
    if method in SAFE_METHODS:
        return None
    origin = request.headers.get("Origin")
    if origin is not None and not local_origin(origin):
        return replies.error(
            replies.dialect_of(path),
            403,
            f"requests from origin {origin!r} are refused",
            code="forbidden_origin",
        )
    if path in MANAGEMENT and origin is not None and not same_origin(origin, request):
        # pulling and deleting models changes the machine: no web page of
        # another origin (even one on this machine) may ask for it
        return replies.error("ollama", 403, f"model management from origin {origin!r} is refused")
    if path.startswith("/admin/"):
        if origin is not None and not same_origin(origin, request):
            return replies.error(None, 403, "cross-origin admin call refused", code="forbidden")
        if request.content_type != "application/json":
            return replies.error(None, 415, "admin calls take application/json")
        if origin is not None and not session_ok(request):
            return replies.error(
                None, 403, f"browser admin calls need {SESSION_HEADER}: use the dashboard at /ui"
            )
    elif path.startswith("/ui/api/"):
        if origin is not None and not same_origin(origin, request):
            return replies.error(None, 403, f"requests from origin {origin!r} are refused")
        if not session_ok(request):
            return replies.error(
                None, 403, f"missing or wrong {SESSION_HEADER} (reload the dashboard)"
            )
        if method == "POST" and request.content_type != "application/json":
            return replies.error(None, 415, "dashboard calls take application/json")
    return None


def shutting_down(path: str) -> web.Response:
    """503 ``shutting_down`` in the path's dialect, closing the connection."""
    response = replies.error(replies.dialect_of(path), 503, SHUTTING_DOWN, code="shutting_down")
    response.force_close()  # "Connection: close"
    return response


async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rules 0-3, then ``handler``; its exceptions become answers (rule 4).
    One coroutine per request (it runs on every one)."""
    gate = request.app[GATE]
    if gate.closing:
        # read what the client sends first (within the body limit): closing
        # with its body unread would reset the connection under the answer
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):  # a slow sender does not hold the stop
                await request.read()
        return shutting_down(request.path)
    # (with the loop named: on Python 3.11 current_task() alone calls getpid())
    task = asyncio.current_task(request.task.get_loop())
    assert task is not None
    gate.accepted[task] = request
    try:
        path = request.path
        refused = _refusal(request)
        if refused is not None:
            return _no_store(refused) if path == "/ui" or path.startswith("/ui/") else refused
        if (
            path == "/"
            and request.method == "GET"
            and "text/html" in request.headers.get("Accept", "")
        ):
            # a browser opening the proxy's address gets the dashboard
            return web.Response(status=302, headers={"Location": "/ui"})
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _http_error(request, exc)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            response = replies.error(
                replies.dialect_of(path),
                500,
                "internal error in traywire (see its log)",
                code="internal_error",
            )
        if path == "/ui" or path.startswith("/ui/"):
            _no_store(response)
        return response
    finally:
        gate.accepted.pop(task, None)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no route, wrong method, body too large), in
    the path's dialect."""
    dialect = replies.dialect_of(request.path)
    if exc.status == 405:
        return replies.error(dialect, 405, f"{request.method} is not allowed on {request.path}")
    if exc.status == 404:
        return replies.error(dialect, 404, f"no such endpoint: {request.path}", code="unknown_url")
    if exc.status == 413:
        return replies.error(dialect, 413, "request body too large")
    return replies.error(dialect, exc.status, exc.reason)


def guarded(handler: Handler) -> Handler:
    """``handler`` behind `guard` (how `traywire.server.make_app` registers
    every route): a partial, so aiohttp calls `guard` itself."""
    return functools.partial(guard, handler=handler)
