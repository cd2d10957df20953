"""The running proxy: its aiohttp application, and the server that listens.

`make_app` puts together the proxy's endpoints (`proxy.endpoints`), the
observers' (``/status`` with the request log's state, ``/metrics``, the
dashboard), every one behind `proxy.security.guard`; `Server` binds it
(`proxy.listener`: the connection cap, the head timeout) and drains it on
stop. This module sits above both parts so that neither imports the other
both ways: the observers read the proxy's runtime, the proxy knows nothing of
them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from . import dispatch
from .observe import dashboard_routes, metrics, wiring
from .proxy import endpoints, listener, ollama_api, replies
from .proxy.endpoints import RUNTIME
from .proxy.runtime import Runtime
from .proxy.security import GATE, TOKEN, Gate, guarded, is_loopback
from .redact import REDACTOR

__all__ = ["Server", "make_app"]

log = logging.getLogger("traywire")


async def status(request: web.Request) -> web.Response:
    body = request.app[RUNTIME].status()
    body["request_log"] = request.app[wiring.REQUEST_LOG].status()
    return replies.json_response(body)


def make_app(
    rt: Runtime, token: str | None = None, *, config_file: str | Path | None = None
) -> web.Application:
    app = web.Application(client_max_size=int(rt.cfg.server.max_body_mb * 1024 * 1024))
    app[RUNTIME] = rt
    app[TOKEN] = token
    app[GATE] = Gate()  # open until `Server.stop`
    if config_file is not None:  # what a reload reads
        rt.config_file = str(config_file)
    request_log = wiring.setup(app, rt)  # the request log (config log:), opened at startup
    m = metrics.setup(app, rt, request_log)  # counts every request
    # the session token; the dashboard's code is imported at its first request
    dashboard_routes.setup(app, rt, request_log, config_file=config_file)
    oll = ollama_api.setup(app, rt)  # listings, /api/show, model management, /
    routes: list[tuple[str, str, endpoints.Handler]] = [
        *endpoints.routes(oll),
        ("GET", "/status", status),
        ("GET", "/metrics", m.handle),
        *dashboard_routes.routes(),
    ]
    r = app.router
    for method, path, handler in routes:
        if method == "GET":
            r.add_get(path, guarded(handler))  # and HEAD
        else:
            r.add_route(method, path, guarded(handler))
    # last: whatever no route above takes gets its 404/405 from the guard, in
    # the caller's dialect
    r.add_route("*", r"/{tail:[\s\S]*}", guarded(endpoints.unmatched))  # CR/LF in paths too

    async def lifecycle(app: web.Application) -> Any:
        yield
        await app[RUNTIME].close()

    app.cleanup_ctx.append(lifecycle)
    return app


class _Runner(web.AppRunner):
    """aiohttp's runner, with the app's plain paths dispatched by a dict (`dispatch`)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.request_handler = dispatch.direct(self.app, server.request_handler)
        return server


class Server:
    """A running proxy: start() binds, stop() drains in-flight requests then closes."""

    def __init__(
        self,
        rt: Runtime,
        host: str,
        port: int,
        *,
        token: str | None = None,
        grace: float = 10.0,
        config_file: str | Path | None = None,
        head_timeout: float | None = None,
        max_connections: int | None = None,
    ) -> None:
        """``head_timeout``, ``max_connections``: the config's (server:) unless given."""
        if not is_loopback(host) and not token:
            raise ValueError(
                f"refusing to listen on {host}: a non-loopback listener needs a token "
                "(set server.token to keyring:NAME or env:VAR)"
            )
        self.rt = rt
        rt.listen_port = port or None
        self.host = host
        self.port = port
        self.grace = grace
        REDACTOR.set_secrets("server token", [token])
        self.app = make_app(rt, token, config_file=config_file)
        self.runner = _Runner(
            self.app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=grace,
            # a connection that has not sent its request head by then is closed
            # (slow clients), as is one idle that long between requests
            keepalive_timeout=head_timeout or rt.cfg.server.head_timeout,
            logger=listener.OneLineLogger(logging.getLogger("traywire.http"), {}),
        )
        self.site: listener.CappedSite | None = None
        self.max_connections = max_connections or rt.cfg.server.max_connections

    async def start(
        self, *, probes: bool = True, resolve_keys: bool = True, launch: bool = True
    ) -> None:
        """Listen; ``launch``: also start the managed vLLM servers that are active."""
        limits = listener.raise_open_file_limit()
        await self.rt.start(probes=probes, resolve_keys=resolve_keys, launch=launch)
        await self.runner.setup()
        site = listener.CappedSite(
            self.runner,
            self.host,
            self.port,
            max_connections=listener.connection_limit(
                self.max_connections, limits[0] if limits else None
            ),
            clock=self.rt.clock,
        )
        await site.start()
        self.site = site
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        """Stop without cutting what was accepted.

        At once: no new connections, and a new request on a connection kept
        alive from before gets 503 ``shutting_down`` with ``Connection:
        close`` (`security.Gate`). Every request accepted before runs to its
        end within the grace period (``grace``, or the one given at
        construction). What still runs when it is over is ended with an error
        in its dialect (a stream: an error event, then its end; an answer not
        yet begun: 503), and the log names each one. Then close."""
        grace = self.grace if grace is None else grace
        gate = self.app[GATE]
        gate.closing = True
        accepted = {t: f"{r.method} {r.path}" for t, r in gate.accepted.items()}  # taken before
        for site in list(self.runner.sites):
            await site.stop()
        rt = self.rt
        pending = {t for t in accepted if not t.done()}
        if pending:
            log.info(
                "stopping: %d request(s) in progress may finish within %g s",
                len(pending),
                grace,
            )
            await asyncio.wait(pending, timeout=grace)
        left = sorted(((accepted[t], t) for t in pending if not t.done()), key=lambda x: x[0])
        if left:
            rt.stopping = True
            log.warning(
                "the grace period of %g s is over: ending %d request(s) still running: %s",
                grace,
                len(left),
                ", ".join(what for what, _ in left),
            )
            for _, t in left:
                t.cancel()
            await asyncio.wait([t for _, t in left], timeout=2.0)
        elif pending:
            log.info("stopping: every request in progress finished")
        await self.runner.cleanup()


# Young-generation collections per this many net container allocations
# (Python's default: 700). A request allocates a few hundred short-lived
# objects, nearly all freed by reference counting; collecting every 700 made
# the cyclic collector ~1.5% of the proxy's instructions per request.
GC_THRESHOLD_0 = 10_000


SETTLE_AFTER_S = 1.0  # after start: the first requests are not held up by it


def settle_heap_soon() -> None:
    """`settle_heap` a moment after start (on the running loop)."""
    asyncio.get_running_loop().call_later(SETTLE_AFTER_S, settle_heap)


def settle_heap() -> None:
    """Once serving: what start-up made (config, modules, tables) moves out
    of the cyclic collector's sight (`gc.freeze`), so the collections the
    request path triggers scan only what requests allocate, and young
    collections run less often (`GC_THRESHOLD_0`). Measured by instruction
    counts per request (bench/bench_proxy.py's notes in the README)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD_0, gen1, gen2)
