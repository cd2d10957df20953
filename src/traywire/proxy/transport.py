"""Keep-alive HTTP/1.1 connections to the backends, for the request path.

The contract is small: ``await pool.request(method, base, path, headers, body,
connect_timeout=...)`` gives a `Response` once its head has arrived (status,
lower-case headers); its body comes with ``read()`` (all of it) or
``readany()`` (what has arrived; ``b""`` at the end). ``release()`` hands a
finished connection back to the pool; ``close()`` drops it (a cancelled or
abandoned request must close, so the backend sees the client go and stops
generating).

Low-level failures are mapped here, where they come in: they leave as
`TransportError`, a `BackendError` of one of traywire's kinds (refused, dns,
connect_timeout, reset, invalid_response). Timeouts other than the connect
timeout are the caller's (it knows first-byte, idle and total).

A connection reused from the pool that the backend had already closed (an idle
keep-alive timeout on its side) fails with no byte of answer; then the request
is sent once more on a new connection. That is the only retry here: every
other failure is the failover policy's business.

The protocol itself (bytes in, bytes out) is `http1`; this module does the
I/O, on whatever asyncio loop runs it (uvloop in the app). Flow control: a
stream the client reads slowly pauses reading from the backend past
`HIGH_WATER` buffered bytes.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
import time
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import urlsplit

from .. import __version__
from ..errors import BackendError
from .http1 import ProtocolError, ResponseParser, encode_request

HIGH_WATER = 1 << 20  # bytes buffered from a backend before reading pauses


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


_ORIGINS: dict[str, _Origin] = {}


def origin_of(base: str) -> _Origin:
    """The parts of a backend's base URL (cached: there are a handful)."""
    o = _ORIGINS.get(base)
    if o is None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("refused", f"not an http(s) URL: {base!r}")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as exc:
            raise TransportError("refused", f"bad port in {base!r}") from exc
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        default = port == (443 if tls else 80)
        o = _Origin(
            (parts.scheme, host, port),
            host,
            port,
            tls,
            shown if default else f"{shown}:{port}",
            parts.path.rstrip("/"),
        )
        if len(_ORIGINS) < 256:
            _ORIGINS[base] = o
    return o


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.error: TransportError | None = None
        self.closed = False
        self.got_bytes = False
        self.reused = False
        self.idle = False  # in the pool, waiting for a request
        self.idle_since = 0.0
        self.key: tuple[str, str, int] = ("", "", 0)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
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
        if self.error is None and not self.parser.done:
            if exc is not None:  # reset, not a clean end: no body ends this way
                why = f"{type(exc).__name__}: {exc}"
                self.error = TransportError("reset", f"connection lost: {why}")
            else:
                try:
                    body = self.parser.feed_eof()
                except ProtocolError as perr:
                    self.error = TransportError("reset", f"connection closed: {perr}")
                else:
                    if body:
                        self.chunks.append(body)
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
        w = self.loop.create_future()
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


class Response:
    """A backend's answer: the head now, the body as it comes."""

    __slots__ = ("_conn", "_pool", "headers", "status")

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = conn.parser.status
        self.headers = conn.parser.headers

    async def readany(self) -> bytes:
        """The body bytes that have arrived (waits for some); ``b""`` at the end."""
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

    async def read(self) -> bytes:
        """The whole body."""
        parts: list[bytes] = []
        while True:
            chunk = await self.readany()
            if not chunk:
                return b"".join(parts) if len(parts) != 1 else parts[0]
            parts.append(chunk)

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


def _connect_error(exc: OSError, o: _Origin) -> TransportError:
    where = f"{o.host}:{o.port}"
    if isinstance(exc, socket.gaierror):
        return TransportError("dns", f"DNS lookup failed for {o.host}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return TransportError("refused", f"TLS with {where} failed: {exc}")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return TransportError("refused", f"cannot connect to {where}: {reason}")


class Pool:
    """Idle keep-alive connections per origin (scheme, host, port); no limit on
    how many run at once (backends have their own capacity; the router
    watches it)."""

    def __init__(
        self,
        *,
        keepalive_s: float = 30.0,
        user_agent: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context``: for https backends; the system's default trust
        store when None (made on first use)."""
        self.keepalive_s = keepalive_s
        self.user_agent = user_agent or f"traywire/{__version__}"
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._ssl = ssl_context
        self._closed = False
        self.opened = 0  # connections made so far (for tests and /status)

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
        o = origin_of(base)
        data = encode_request(
            method,
            o.prefix + path,
            o.host_header,
            (("User-Agent", self.user_agent), ("Accept-Encoding", "identity"), *headers),
            body,
        )
        while True:
            conn = self._get(o)
            if conn is None:
                conn = await self._open(o, connect_timeout)
            try:
                return await self._exchange(conn, data, head=method == "HEAD")
            except TransportError as exc:
                # a pooled connection the backend closed while it sat idle: the
                # request never reached it, so try once on a new connection
                if conn.reused and not conn.got_bytes and exc.kind == "reset":
                    continue
                raise
            except BaseException:
                conn.abort()
                raise

    async def _exchange(self, conn: _Connection, data: bytes, *, head: bool) -> Response:
        if head:
            conn.parser = ResponseParser(head_request=True)
        if conn.transport is None or conn.closed:
            raise TransportError("reset", "connection closed before the request was sent")
        conn.transport.write(data)
        while not conn.parser.has_head:
            if conn.error is not None:
                conn.close()
                raise conn.error
            if conn.closed:
                raise TransportError("reset", "connection closed before an answer")
            await conn.wait()
        if conn.error is not None:
            conn.close()
            raise conn.error
        return Response(self, conn)

    def _get(self, o: _Origin) -> _Connection | None:
        idle = self._idle.get(o.key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            conn.idle = False
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self.keepalive_s:
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    def _put(self, conn: _Connection) -> None:
        if self._closed or conn.closed:
            conn.close()
            return
        conn.parser = ResponseParser()
        conn.got_bytes = False
        conn.idle = True
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.key, []).append(conn)

    async def _open(self, o: _Origin, timeout: float) -> _Connection:
        if self._closed:
            raise TransportError("refused", "the connection pool is closed")
        loop = asyncio.get_running_loop()
        ctx = None
        if o.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    o.host,
                    o.port,
                    ssl=ctx,
                    server_hostname=o.host if ctx else None,
                )
        except TimeoutError as exc:
            raise TransportError(
                "connect_timeout", f"connect timeout to {o.host}:{o.port}"
            ) from exc
        except OSError as exc:
            raise _connect_error(exc, o) from exc
        conn.key = o.key  # asyncio and uvloop set TCP_NODELAY themselves
        self.opened += 1
        return conn

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def close(self) -> None:
        """Close every idle connection; connections in use close when released."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        await asyncio.sleep(0)
