"""The dashboard: one web page at ``/ui``, served by the proxy itself.

The page is plain HTML, CSS and a little JavaScript from ``traywire/ui/`` (no
build step, nothing fetched from the network). It reads ``/status`` and the
JSON below, and changes things through ``/admin/preference``,
``/admin/switch`` / ``/admin/active`` and the calls marked *changes*::

    GET    /ui                      the page
    GET    /ui/app.css, app.js, icon.svg
    GET    /ui/api/meta             names for the page's menus: backends,
                                    capabilities, outcomes, preferences, groups;
                                    each model's backend and tier, each
                                    route's strategy and description
    GET    /ui/api/requests         the request log, newest first; query:
                                    limit, before (an id: older pages),
                                    backend, capability, outcome
    GET    /ui/api/requests/{id}    one request with its plan, skipped
                                    candidates and attempts
    GET    /ui/api/latency          per-backend latency per minute, last hour
                                    (query: minutes, bucket seconds)
    GET    /ui/api/keys             key names the config refers to and whether
                                    each is set (never a value)
    POST   /ui/api/keys             changes: {"name", "value"} into the OS keyring
    DELETE /ui/api/keys/{name}      changes: remove a key from the OS keyring
    POST   /ui/api/reload           changes: read the config file again

Safety: every check is `traywire.proxy.security`'s (its docstring has the
rules). In short: each app makes a *session token* when it is created and
this page carries it, as ``<meta name="traywire-session">`` (the page's
Content-Security-Policy allows no inline script, so ``app.js`` reads it from
there). No response carries CORS headers, so only a page this proxy served
can read the token. It must come as the ``X-Traywire-Session`` header on
every call here that changes something (those take only ``application/json``
and only from the page's own origin) and on every browser ``/admin/*`` call.
A form on another site, or on another port of this machine, can neither set
the header nor read the page, so it changes nothing. Everything under ``/ui``
is ``no-store``.

Key values go one way only: from the request body into the keyring. No
response, page, URL or log line carries one; errors are redacted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from importlib import resources
from typing import Any, Final

from aiohttp import web

from .. import __version__, threads
from .. import secrets as keystore
from ..errors import ConfigError
from ..proxy import replies
from ..proxy.runtime import Runtime
from ..proxy.security import SESSION, SESSION_HEADER
from ..proxy.switch import SwitchBusy
from ..types import CAPABILITIES, OUTCOMES, PREFERENCES
from .dashboard_routes import CONFIG_FILE, DASH_LOG, DASH_RUNTIME, FILES
from .logqueries import LogQueries

__all__ = ["CONFIG_FILE", "SESSION", "SESSION_HEADER"]

log = logging.getLogger("traywire")

_MAX_KEY_LEN: Final = 8192
_MAX_PAGE: Final = 200

_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": _CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_STATIC: Final = {
    "app.css": "text/css",
    "app.js": "text/javascript",
    "icon.svg": "image/svg+xml",
}

# --------------------------------------------------------------------------- helpers


def _error(status: int, message: str) -> web.Response:
    return replies.error(None, status, message)


def _ok(obj: object, status: int = 200) -> web.Response:
    return replies.json_response(obj, status=status)


async def _json_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        return _error(400, f"invalid JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, "expected a JSON object")
    return body


def _int_arg(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return value


def _key_refs(rt: Runtime) -> dict[tuple[str, str], list[str]]:
    """(kind, name) of each key reference in the config -> backends using it."""
    out: dict[tuple[str, str], list[str]] = {}
    for b in rt.cfg.backends.values():
        if b.key is None:
            continue
        try:
            ref = keystore.parse_key_ref(b.key)
        except ValueError:
            continue
        out.setdefault((ref.kind, ref.name), []).append(b.name)
    return out


def _users(rt: Runtime, name: str) -> list[str]:
    return _key_refs(rt).get(("keyring", name), [])


# --------------------------------------------------------------------------- the page


async def page(request: web.Request) -> web.Response:
    body, _ = _files(request.app)["index.html"]
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=_PAGE_HEADERS)


async def page_slash(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "/ui"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = _files(request.app).get(name)
    if found is None or name == "index.html":
        raise web.HTTPNotFound()
    body, ctype = found
    return web.Response(
        body=body,
        content_type=ctype,
        charset="utf-8" if ctype.startswith("text/") else None,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def _files(app: web.Application) -> dict[str, tuple[bytes, str]]:
    """The page (with this app's session token) and its files, read once."""
    files = app[FILES]
    if not files:
        files.update(_load_files(app[SESSION]))
    return files


def _load_files(session: str) -> dict[str, tuple[bytes, str]]:
    folder = resources.files("traywire.observe").joinpath("ui")
    files = {name: (folder.joinpath(name).read_bytes(), ctype) for name, ctype in _STATIC.items()}
    html = folder.joinpath("index.html").read_text(encoding="utf-8")
    files["index.html"] = (html.replace("{{session}}", session).encode(), "text/html")
    return files


# --------------------------------------------------------------------------- reading


async def meta(request: web.Request) -> web.Response:
    rt = request.app[DASH_RUNTIME]
    cfg = rt.cfg
    return _ok(
        {
            "version": __version__,
            "backends": list(cfg.backends),
            "models": {
                name: {
                    "backend": m.backend,
                    "tier": m.tier,
                    "capabilities": list(m.capabilities),
                    "context": m.context,
                }
                for name, m in cfg.models.items()
            },
            "routes": {
                name: {"strategy": r.strategy, "description": r.description}
                for name, r in cfg.routes.items()
            },
            "capabilities": list(CAPABILITIES),
            "outcomes": list(OUTCOMES),
            "preferences": list(PREFERENCES),
            "groups": {
                name: {"members": list(g.members), "switch": g.switch is not None}
                for name, g in cfg.groups.items()
            },
            "log": _queries(request) is not None,
            "config_file": request.app[CONFIG_FILE],
        }
    )


def _queries(request: web.Request) -> LogQueries | None:
    """The request log's queries while it is open."""
    return request.app[DASH_LOG].queries


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """A request as the list shows it: without its plan and left-out candidates
    (``skipped_count`` says how many were left out; ``attempts`` are there)."""
    out = {k: v for k, v in row.items() if k not in ("plan", "skipped")}
    out["skipped_count"] = len(row.get("skipped") or ())
    return out


async def requests(request: web.Request) -> web.Response:
    lg = _queries(request)
    if lg is None:
        return _ok({"requests": [], "next_before": None, "log": False})
    q = request.query
    try:
        limit = _int_arg(request, "limit", 50, 1, _MAX_PAGE) or 50
        before = _int_arg(request, "before", None, 1, 2**62)
        outcome = q.get("outcome") or None
        if outcome is not None and outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of: {', '.join(OUTCOMES)}")
    except ValueError as exc:
        return _error(400, str(exc))
    rows = await threads.run_blocking(
        lg.recent,
        limit,
        before,
        q.get("backend") or None,
        q.get("capability") or None,
        outcome,
    )
    next_before = rows[-1]["id"] if len(rows) == limit else None
    return _ok({"requests": [_summary(r) for r in rows], "next_before": next_before, "log": True})


async def one_request(request: web.Request) -> web.Response:
    lg = _queries(request)
    rid = int(request.match_info["id"])
    row = None if lg is None else await threads.run_blocking(lg.get, rid)
    if row is None:
        return _error(404, f"no request {rid} in the log")
    return _ok(row)


_SERIES_FIELDS: Final = ("t", "count", "avg_ms", "p95_ms", "max_ms", "failures")


async def latency(request: web.Request) -> web.Response:
    rt = request.app[DASH_RUNTIME]
    try:
        minutes = _int_arg(request, "minutes", 60, 1, 24 * 60) or 60
        bucket = _int_arg(request, "bucket", 60, 10, 3600) or 60
    except ValueError as exc:
        return _error(400, str(exc))
    lg = _queries(request)
    now = time.time()
    # whole buckets only: the first starts at a multiple of bucket
    since = math.floor((now - minutes * 60) / bucket + 1) * bucket
    names = list(rt.cfg.backends)
    if lg is None:
        return _ok({"since": since, "bucket_s": bucket, "backends": {}, "log": False})

    def read() -> dict[str, list[dict[str, Any]]]:
        every = lg.latency_many(names, since, float(bucket), until=now)
        return {
            name: [{k: point[k] for k in _SERIES_FIELDS} for point in every[name]] for name in names
        }

    return _ok(
        {
            "since": since,
            "bucket_s": bucket,
            "backends": await threads.run_blocking(read),
            "log": True,
        }
    )


async def keys(request: web.Request) -> web.Response:
    rt = request.app[DASH_RUNTIME]
    refs = _key_refs(rt)
    names = sorted(n for kind, n in refs if kind == "keyring")

    def read() -> tuple[dict[str, bool], str | None]:
        problem = keystore.keyring_problem()  # even with no names: the forms need to know
        if problem is not None:
            return {}, _keyring_explanation(problem)
        if not names:
            return {}, None
        try:
            return keystore.list_keys(names), None
        except keystore.SecretsError as exc:
            return {}, str(exc)

    found, problem = await threads.run_blocking(read)
    out = []
    for (kind, name), backends in sorted(
        refs.items(), key=lambda kv: (kv[0][0] != "keyring", kv[0])
    ):
        if kind == "keyring":
            is_set: bool | None = found.get(name) if problem is None else None
        else:
            is_set = bool(os.environ.get(name))
        out.append({"name": name, "kind": kind, "set": is_set, "backends": backends})
    return _ok({"keys": out, "keyring": problem})


def _keyring_explanation(problem: keystore.KeyringUnavailable) -> str:
    """Why this page cannot store keys, and what to do instead (the key forms
    are disabled with this beside them)."""
    return (
        f"The OS keyring is not usable here ({problem.reason or 'no backend'}), so keys cannot "
        "be saved from this page. Quick fix: refer to the key as env:VAR in the config and "
        f"set that variable where traywire starts; or {keystore.short_fix()}. "
        "`traywire doctor` says more."
    )


# --------------------------------------------------------------------------- changing


async def set_key(request: web.Request) -> web.Response:
    rt = request.app[DASH_RUNTIME]
    body = await _json_body(request)
    if isinstance(body, web.Response):
        return body
    name, value = body.get("name"), body.get("value")
    if not isinstance(name, str) or not isinstance(value, str):
        return _error(400, 'expected {"name": ..., "value": ...} (strings)')
    try:
        keystore.validate_key_name(name)
    except ValueError as exc:
        return _error(400, str(exc))
    if len(value) > _MAX_KEY_LEN:
        return _error(400, f"the key is longer than {_MAX_KEY_LEN} characters")

    def store() -> bool:
        existed = keystore.list_keys([name])[name]
        keystore.set_key(name, value)
        return existed

    try:
        existed = await threads.run_blocking(store)
    except keystore.KeyringUnavailable as exc:
        return _error(503, keystore.redact(str(exc), [value]))
    except (keystore.SecretsError, ValueError) as exc:
        return _error(400, keystore.redact(str(exc), [value]))
    await rt.refresh_keys()
    log.info("key %s %s from the dashboard", name, "replaced" if existed else "stored")
    return _ok({"name": name, "set": True, "replaced": existed, "backends": _users(rt, name)})


async def delete_key(request: web.Request) -> web.Response:
    rt = request.app[DASH_RUNTIME]
    name = request.match_info["name"]
    try:
        keystore.validate_key_name(name)
    except ValueError as exc:
        return _error(400, str(exc))
    try:
        deleted = await threads.run_blocking(keystore.delete_key, name)
    except keystore.KeyringUnavailable as exc:
        return _error(503, str(exc))
    except keystore.SecretsError as exc:
        return _error(400, str(exc))
    await rt.refresh_keys()
    if deleted:
        log.info("key %s deleted from the dashboard", name)
    return _ok({"name": name, "deleted": deleted, "backends": _users(rt, name)})


async def reload(request: web.Request) -> web.Response:
    """Read the config again (the file the proxy was started with, over the
    user's and the built-in one) and apply it; a bad one changes nothing."""
    rt = request.app[DASH_RUNTIME]
    try:
        message, restart = await rt.reload_config("from the dashboard")
    except ConfigError as exc:
        return _error(400, str(exc))
    except SwitchBusy as exc:
        return _error(409, str(exc))
    return _ok({"ok": True, "message": message, "restart_needed": restart})
