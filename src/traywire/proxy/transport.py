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

The protocol itself (llhttp through httptools, content codings) is `http1`;
this module does the I/O, on whatever asyncio loop runs it (uvloop in the
app). Flow control: a stream the client reads slowly pauses reading from the
backend past `HIGH_WATER` buffered bytes.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import os
import select
import socket
import ssl
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

from .. import __version__
from ..errors import BackendError
from .http1 import Decoder, ProtocolError, ResponseParser, encode_request

HIGH_WATER = 1 << 20  # bytes buffered from a backend before reading pauses
DECODE_STEP = 256 * 1024  # decoded bytes one readany() gives at most
_YIELD_EVERY = 16  # read(): let the loop run after this many pieces in a row


class TransportError(BackendError):
    """A failure below HTTP semantics, as one of traywire's error kinds."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.detail = detail


class _Origin(NamedTuple):
    key: tuple[str, str, int]  # scheme, host, port: what a pooled connection serves
    host: str
    port: int
    tls: bool
    host_header: str
    prefix: str  # the base URL's path, before each request's own path
    query: str  # the base URL's query string, after each request's own


_ORIGINS: dict[str, _Origin] = {}


def origin_of(base: str) -> _Origin:
    """The parts of a backend's base URL (cached: there are a handful)."""
    o = _ORIGINS.get(base)
    if o is None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("refused", f"invalid URL (not http or https): {base!r}")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as exc:
            raise TransportError("refused", f"invalid URL (bad port): {base!r}") from exc
        host = parts.hostname
        default = port == (443 if tls else 80)
        o = _Origin(
            (parts.scheme, host, port),
            host,
            port,
            tls,
            _authority(host, None if default else port),
            parts.path.rstrip("/"),
            parts.query,
        )
        if len(_ORIGINS) < 256:
            _ORIGINS[base] = o
    return o


def _authority(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _target(o: _Origin, path: str) -> str:
    """The request target: the base's path, then ``path``, the queries merged."""
    target = o.prefix + path if path else o.prefix or "/"
    if o.query:
        target += ("&" if "?" in target else "?") + o.query
    return target


# ------------------------------------------------------------------ proxies


class _Proxy(NamedTuple):
    host: str
    port: int
    headers: tuple[tuple[str, str], ...]  # Proxy-Authorization, when the URL has credentials

    @property
    def where(self) -> str:
        return _authority(self.host, self.port)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_proxy(host: str, port: int, no_proxy: str | None) -> bool:
    """Does NO_PROXY (``*``, host names and domains, IP networks, each with an
    optional port) exempt ``host``?"""
    if not no_proxy:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip(".")
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if host.lower() == name or host.lower().endswith("." + name):
            return True
    return False


def _parse_proxy(url: str) -> _Proxy:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http" or not parts.hostname:
        raise TransportError("refused", f"unsupported proxy {url!r} (only http:// proxies)")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise TransportError("refused", f"bad port in the proxy URL {url!r}") from exc
    headers: tuple[tuple[str, str], ...] = ()
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = (("Proxy-Authorization", "Basic " + base64.b64encode(cred.encode()).decode()),)
    return _Proxy(parts.hostname, port, headers)


class _Route(NamedTuple):
    """How to reach one base URL: directly or through a proxy."""

    key: tuple[Any, ...]  # what a pooled connection serves
    origin: _Origin
    proxy: _Proxy | None
    absolute: str  # "http://host:port" before the target (plain http through a proxy)
    headers: tuple[tuple[str, str], ...]  # sent with every request


# ------------------------------------------------------------------ one connection


if hasattr(select, "poll"):

    def _poller(fd: int) -> Callable[[], bool]:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return lambda: bool(p.poll(0))

else:  # Windows: select() works on sockets

    def _poller(fd: int) -> Callable[[], bool]:
        return lambda: bool(select.select([fd], [], [], 0)[0])


def _never() -> bool:
    return False


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.readable: Callable[[], bool] = _never  # bytes or EOF waiting in the socket?
        self.parser = ResponseParser()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.error: TransportError | None = None
        self.closed = False
        self.idle = False  # in the pool, waiting for a request
        self.idle_since = 0.0
        self.key: tuple[Any, ...] = ()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.readable = _poller(sock.fileno())

    def data_received(self, data: bytes) -> None:
        if self.idle:
            # nothing was asked: a late "408 Request Timeout" before a close,
            # or garbage; either way this connection cannot carry a request
            self.close()
            return
        if self.error is not None:
            return
        try:
            body = self.parser.feed(data)
        except ProtocolError as exc:
            self._fail(TransportError("invalid_response", f"invalid HTTP response: {exc}"))
            return
        if body:
            self.chunks.append(body)
            self.buffered += len(body)
            if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.readable = _never
        if self.idle:
            self.pool._discard(self)
        elif self.error is None and not self.parser.done:
            if exc is not None:  # reset, not a clean end: no body ends this way
                why = f"{type(exc).__name__}: {exc}"
                self.error = TransportError("reset", f"connection lost: {why}")
            else:
                try:
                    self.parser.feed_eof()
                except ProtocolError as perr:
                    self.error = TransportError("reset", f"connection closed: {perr}")
        self._wake()

    # helpers

    def _fail(self, error: TransportError) -> None:
        self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    async def wait(self) -> None:
        w = self.pool._loop.create_future()
        self.waiter = w
        try:
            await w
        finally:
            if self.waiter is w:
                self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def take(self) -> bytes:
        """Everything buffered (and resume reading if it was paused)."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        return data


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


class Response:
    """A backend's answer: the head now, the body as it comes."""

    __slots__ = ("_conn", "_decoder", "_pool", "headers", "status")

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = conn.parser.status
        self.headers = conn.parser.headers
        self._decoder = (
            Decoder.for_headers(self.headers) if "content-encoding" in self.headers else None
        )

    async def readany(self) -> bytes:
        """The body bytes that have arrived, decoded (waits for some; at most
        `DECODE_STEP` of a compressed body at once); ``b""`` at the end."""
        dec = self._decoder
        if dec is None:
            return await self._raw()
        try:
            while True:
                if dec.pending:
                    out = dec.pull(DECODE_STEP)
                    if out:
                        return out
                raw = await self._raw()
                if not raw:
                    dec.finish()
                    return b""
                dec.push(raw)
        except ProtocolError as exc:
            self.close()
            raise TransportError("invalid_response", f"invalid HTTP response: {exc}") from None

    async def read(self, limit: int | None = None, *, limit_name: str = "") -> bytes:
        """The whole body; past ``limit`` decoded bytes a `TransportError`
        ``too_large`` that names the limit (``limit_name``: the setting)."""
        if limit is not None and self._decoder is None:
            length = self.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                self.close()
                raise self._too_large(limit, limit_name, f" ({length} bytes announced)")
        first = b""
        buf: bytearray | None = None  # past one piece: one growing block, handed back whole
        n = 0
        while True:
            chunk = await self.readany()
            if not chunk:
                return first if buf is None else bytes(buf)
            if buf is None and not first:
                first = chunk
            else:
                if buf is None:
                    buf, first = bytearray(first), b""
                buf += chunk
            if limit is not None and len(buf if buf is not None else first) > limit:
                self.close()
                buf = None  # not kept alive by the traceback
                raise self._too_large(limit, limit_name, "")
            n += 1
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a long answer decoded in a row: let others run

    @staticmethod
    def _too_large(limit: int, name: str, extra: str) -> TransportError:
        setting = f", {name}" if name else ""
        return TransportError(
            "too_large", f"the answer is larger than the limit of {_mib(limit)}{setting}{extra}"
        )

    async def _raw(self) -> bytes:
        conn = self._conn
        if conn is None:
            return b""
        while not conn.chunks:
            if conn.parser.done:
                self.release()
                return b""
            if conn.error is not None:
                self.close()
                raise conn.error
            if conn.closed:
                self.close()
                raise TransportError("reset", "connection closed before the end of the response")
            await conn.wait()
        return conn.take()

    def release(self) -> None:
        """Done with it: a finished connection goes back to the pool, any other closes."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.parser.done and conn.parser.keep_alive and not conn.chunks:
                self._pool._put(conn)
            else:
                conn.close()

    def close(self) -> None:
        """Drop the connection now (the backend sees it close)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort() if not conn.parser.done else conn.close()


def _connect_error(exc: OSError, host: str, port: int, what: str) -> TransportError:
    where = _authority(host, port)
    if isinstance(exc, socket.gaierror):
        return TransportError("dns", f"DNS lookup failed for {what}{host}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        return TransportError("tls", f"the TLS certificate of {where} is not accepted: {why}")
    if isinstance(exc, ssl.SSLError):
        return TransportError("tls", f"TLS with {where} failed: {exc.reason or exc}")
    reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
    return TransportError("refused", f"cannot connect to {what}{where}: {reason}")


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
        self._idle: dict[tuple[Any, ...], list[_Connection]] = {}
        self._ssl = ssl_context
        env = urllib.request.getproxies_environment() if proxies is None else proxies
        self._proxies = dict(env)
        self._routes: dict[str, _Route] = {}
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
        data = encode_request(
            method,
            route.absolute + _target(o, path),
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
            return await self._exchange(conn, data, no_body=method == "HEAD")
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

    async def _exchange(self, conn: _Connection, data: bytes, *, no_body: bool) -> Response:
        if conn.transport is None or conn.closed:
            raise TransportError("reset", "connection closed before the request was sent")
        parser = conn.parser
        parser.begin(no_body=no_body)
        conn.transport.write(data)
        while not parser.has_head:
            if conn.error is not None:
                conn.close()
                raise conn.error
            if conn.closed:
                raise TransportError("reset", "connection closed before an answer")
            await conn.wait()
        if conn.error is not None:
            conn.close()
            raise conn.error
        try:
            return Response(self, conn)
        except ProtocolError as exc:
            conn.close()
            raise TransportError("invalid_response", f"invalid HTTP response: {exc}") from None

    # ---------------------------------------------------------------- routes and proxies

    def _route(self, base: str) -> _Route:
        o = origin_of(base)
        proxy = None
        scheme, host, port = o.key
        url = self._proxies.get(scheme)
        if url and not _is_loopback(host) and not _no_proxy(host, port, self._proxies.get("no")):
            proxy = _parse_proxy(url)
        absolute, headers = "", cast(tuple[tuple[str, str], ...], ())
        if proxy is not None and not o.tls:
            absolute, headers = f"http://{o.host_header}", proxy.headers
        route = _Route((*o.key, proxy), o, proxy, absolute, headers)
        if len(self._routes) < 256:
            self._routes[base] = route
        return route

    async def _tunnel(self, conn: _Connection, route: _Route, ctx: ssl.SSLContext) -> None:
        """CONNECT through the proxy, then TLS with the backend inside the tunnel."""
        o, proxy = route.origin, route.proxy
        assert proxy is not None
        authority = _authority(o.host, o.port)
        data = encode_request(
            "CONNECT", authority, authority, (("User-Agent", self.user_agent), *proxy.headers), b""
        )
        resp = await self._exchange(conn, data, no_body=True)
        if not 200 <= resp.status < 300:
            raise TransportError(
                "refused", f"the proxy {proxy.where} answered {resp.status} to CONNECT {authority}"
            )
        assert conn.transport is not None
        tls = await self._loop.start_tls(conn.transport, conn, ctx, server_hostname=o.host)
        if tls is None:
            raise TransportError("reset", f"the proxy {proxy.where} closed the tunnel")
        conn.connection_made(tls)

    async def _open(self, route: _Route, timeout: float) -> _Connection:
        if self._closed:
            raise TransportError("refused", "the connection pool is closed")
        loop = self._loop = asyncio.get_running_loop()
        o, proxy = route.origin, route.proxy
        ctx = None
        if o.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        host, port = (proxy.host, proxy.port) if proxy else (o.host, o.port)
        what = "the proxy " if proxy else ""
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self),
                    host,
                    port,
                    ssl=ctx if proxy is None else None,
                    server_hostname=o.host if ctx and proxy is None else None,
                )
                if proxy is not None and ctx is not None:
                    await self._tunnel(conn, route, ctx)
        except TimeoutError as exc:
            if conn is not None:
                conn.abort()
            where = _authority(host, port)
            raise TransportError("connect_timeout", f"connect timeout to {what}{where}") from exc
        except OSError as exc:
            if conn is not None:
                conn.abort()
            if conn is not None:  # in the tunnel: the backend's TLS
                raise _connect_error(exc, o.host, o.port, "") from exc
            raise _connect_error(exc, host, port, what) from exc
        except BaseException:
            if conn is not None:
                conn.abort()
            raise
        conn.key = route.key  # asyncio and uvloop set TCP_NODELAY themselves
        self.opened += 1
        return conn

    # ---------------------------------------------------------------- idle connections

    def _get(self, key: tuple[Any, ...]) -> _Connection | None:
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

    def _put(self, conn: _Connection) -> None:
        if self._closed or conn.closed:
            conn.close()
            return
        conn.idle = True
        conn.idle_since = now = self._loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweep is None:
            self._sweep = self._loop.call_at(now + self.keepalive_s, self._expire)

    def _discard(self, conn: _Connection) -> None:
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
