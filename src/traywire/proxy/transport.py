"""Keep-alive HTTP/1.1 connections to the backends: traywire's one HTTP client.

The request path, the probes, ``/api/ps`` and the vLLM switch's readiness
checks all go through one `Pool`. The contract is small:
``await pool.request(method, base, path, headers, body, connect_timeout=...)``
gives a `Response` once its head has arrived (status, lower-case headers); its
body comes with ``read(limit)`` (all of it, at most ``limit`` bytes) or
``readany()`` (what has arrived, decoded a bounded piece at a time; ``b""`` at
the end). ``release()`` hands a finished connection back to the pool;
``close()`` drops it (a cancelled or abandoned request must close, so the
backend sees the client go and stops generating). ``pool.get(base, path,
...)`` is a whole GET for the checks off the request path.

Low-level failures are mapped here, where they come in: they leave as
`TransportError`, a `BackendError` of one of traywire's kinds (refused, dns,
connect_timeout, tls, reset, invalid_response, too_large). Timeouts other than
the connect timeout are the caller's (it knows first-byte, idle and total).

Resending: a request is written once. A pooled connection found closed (or
with bytes nobody asked for) before the request is written is dropped and
another one used; once the request is written, any failure goes to the
failover rules, never to a silent second try, because the backend may already
be generating.

Idle connections close after ``keepalive_s`` on a timer, whether or not more
requests come. Base URLs keep their query strings (``?api-version=``).
``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` are honoured for backends that are
not on loopback (a CONNECT tunnel for https, absolute-form requests for http).

This module is the pool's policy: which connection a request gets, and when
idle ones close. One connection and the answer it carries are `connection`'s
(the I/O, on whatever asyncio loop runs it: uvloop in the app); where a base
URL leads, proxies included, is `origins`'; the protocol itself (llhttp
through httptools, content codings) is `http1`.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from .. import __version__
from ..errors import TransportError
from .connection import Connection, Response, connect, exchange
from .http1 import encode_head, encode_request
from .origins import Route, route_for, target

__all__ = ["Pool", "Response", "TransportError"]

# A request body bigger than this is written after its head as it is (one
# writev): copying it behind the head (a few ms for 10 MiB, with the page
# faults of a fresh buffer) would hold up the event loop.
_WRITE_APART = 64 << 10


class Pool:
    """Idle keep-alive connections per origin (scheme, host, port, proxy); no
    limit on how many run at once (backends have their own capacity; the
    router watches it). Who gets which connection and when idle ones close
    lives here; the connections only carry bytes."""

    def __init__(
        self,
        *,
        keepalive_s: float = 30.0,
        user_agent: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        """``ssl_context``: for https backends; the system's default trust
        store when None (made on first use). ``proxies``: scheme -> proxy URL,
        plus ``no`` (a NO_PROXY list); the environment's when None."""
        self.keepalive_s = keepalive_s
        self.user_agent = user_agent or f"traywire/{__version__}"
        self._idle: dict[tuple[Any, ...], list[Connection]] = {}
        self._ssl = ssl_context
        env = urllib.request.getproxies_environment() if proxies is None else proxies
        self._proxies = dict(env)
        self._routes: dict[str, Route] = {}
        self._closed = False
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set on first use
        self._sweep: asyncio.TimerHandle | None = None
        self.opened = 0  # connections made so far (for tests and /status)

    # ---------------------------------------------------------------- requests

    async def request(
        self,
        method: str,
        base: str,
        path: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
    ) -> Response:
        """Send one request; returns when the response head has arrived."""
        route = self._routes.get(base) or self._route(base)
        o = route.origin
        apart = len(body) > _WRITE_APART
        data = (encode_head if apart else encode_request)(
            method,
            route.absolute + target(o, path),
            o.host_header,
            (
                ("User-Agent", self.user_agent),
                ("Accept-Encoding", "identity"),
                *route.headers,
                *headers,
            ),
            body,
        )
        conn = self._get(route.key)
        if conn is None:
            conn = await self._open(route, connect_timeout)
        try:
            return await exchange(
                self, conn, data, no_body=method == "HEAD", body=body if apart else b""
            )
        except BaseException:
            conn.abort()
            raise

    async def get(
        self,
        base: str,
        path: str = "",
        headers: Sequence[tuple[str, str]] = (),
        *,
        timeout: float,
        limit: int,
    ) -> tuple[int, bytes]:
        """``GET base + path``: (status, body of at most ``limit`` bytes), all
        within ``timeout`` (else `TransportError` ``total_timeout``)."""
        r: Response | None = None
        try:
            async with asyncio.timeout(timeout):
                r = await self.request("GET", base, path, headers, b"", connect_timeout=timeout)
                body = await r.read(limit)
        except TimeoutError:
            if r is not None:
                r.close()
            raise TransportError("total_timeout", f"no answer within {timeout:g}s") from None
        except BaseException:
            if r is not None:
                r.close()
            raise
        return r.status, body

    # ---------------------------------------------------------------- routes and proxies

    def _route(self, base: str) -> Route:
        route = route_for(base, self._proxies)
        if len(self._routes) < 256:
            self._routes[base] = route
        return route

    async def _open(self, route: Route, timeout: float) -> Connection:
        if self._closed:
            raise TransportError("refused", "the connection pool is closed")
        self._loop = asyncio.get_running_loop()
        ctx = None
        if route.origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        conn = await connect(self, route, ctx, timeout=timeout, user_agent=self.user_agent)
        self.opened += 1
        return conn

    # ---------------------------------------------------------------- idle connections

    def _get(self, key: tuple[Any, ...]) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            conn.idle = False
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if conn.readable():  # EOF or unasked-for bytes not yet seen by the loop
                conn.close()
                continue
            return conn
        return None

    def release(self, conn: Connection) -> None:
        """A connection whose answer ended: idle, for the next request to its origin."""
        if self._closed or conn.closed:
            conn.close()
            return
        conn.idle = True
        conn.idle_since = now = self._loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweep is None:
            self._sweep = self._loop.call_at(now + self.keepalive_s, self._expire)

    def discard(self, conn: Connection) -> None:
        """An idle connection closed (by the backend or by us): forget it."""
        conn.idle = False
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    def _expire(self) -> None:
        """Close the connections idle for ``keepalive_s``; come back for the next."""
        self._sweep = None
        now = self._loop.time()
        oldest: float | None = None
        for key, idle in list(self._idle.items()):
            keep = []
            for conn in idle:
                if conn.closed:
                    conn.idle = False
                elif now - conn.idle_since >= self.keepalive_s:
                    conn.idle = False
                    conn.close()
                else:
                    keep.append(conn)
                    oldest = conn.idle_since if oldest is None else min(oldest, conn.idle_since)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        if oldest is not None and not self._closed:
            self._sweep = self._loop.call_at(oldest + self.keepalive_s, self._expire)

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def status(self) -> dict[str, int]:
        """For ``/status``: idle connections now, connections opened so far."""
        return {"idle": self.idle_count(), "opened": self.opened}

    async def close(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for conn in idle:
                conn.idle = False
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)
