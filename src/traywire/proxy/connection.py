"""One keep-alive HTTP/1.1 connection to a backend, and the answer it carries.

`connect` opens a `Connection` (TCP, TLS, or a CONNECT tunnel through a
proxy); `exchange` writes one request on it and returns the `Response` once
the head has arrived. The connection only carries bytes: which connection a
request gets, and when idle ones close, is the pool's (`transport.Pool`), the
`Owner` the connection hands itself back to. The protocol (llhttp through
httptools, content codings) is `http1`'s; low-level failures leave here as
`TransportError`.

Flow control: a stream the client reads slowly pauses reading from the
backend past `HIGH_WATER` buffered bytes.
"""

from __future__ import annotations

import asyncio
import collections
import os
import select
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import TransportError
from .http1 import Decoder, ProtocolError, ResponseParser, encode_request
from .origins import Route, authority

__all__ = ["DECODE_STEP", "HIGH_WATER", "Connection", "Owner", "Response", "connect", "exchange"]

HIGH_WATER = 1 << 20  # bytes buffered from a backend before reading pauses
DECODE_STEP = 256 * 1024  # decoded bytes one readany() gives at most
_YIELD_EVERY = 16  # read(): let the loop run after this many pieces in a row


class Owner(Protocol):
    """What a connection needs from the pool that opened it."""

    def release(self, conn: Connection) -> None:
        """A connection whose answer ended, for the next request."""
        ...

    def discard(self, conn: Connection) -> None:
        """An idle connection closed (by the backend or by us): forget it."""
        ...


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


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; carries one request at a time."""

    def __init__(self, owner: Owner, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
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
            self.owner.discard(self)
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


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


class Response:
    """A backend's answer: the head now, the body as it comes."""

    __slots__ = ("_conn", "_decoder", "_owner", "headers", "status")

    def __init__(self, owner: Owner, conn: Connection) -> None:
        self._owner = owner
        self._conn: Connection | None = conn
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
            conn = self._conn
            if conn is not None and conn.chunks:
                return conn.take()  # (what `_raw` does, without its await)
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
                self._owner.release(conn)
            else:
                conn.close()

    def close(self) -> None:
        """Drop the connection now (the backend sees it close)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort() if not conn.parser.done else conn.close()


async def exchange(
    owner: Owner, conn: Connection, data: bytes, *, no_body: bool, body: bytes = b""
) -> Response:
    """Write one request (``data``, then ``body`` if any: a big body goes as it
    is, in the same system call, not copied behind its head) on ``conn``; the
    `Response` once its head has arrived."""
    if conn.transport is None or conn.closed:
        raise TransportError("reset", "connection closed before the request was sent")
    parser = conn.parser
    parser.begin(no_body=no_body)
    if body:
        conn.transport.writelines((data, body))
    else:
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
        return Response(owner, conn)
    except ProtocolError as exc:
        conn.close()
        raise TransportError("invalid_response", f"invalid HTTP response: {exc}") from None


async def connect(
    owner: Owner,
    route: Route,
    ctx: ssl.SSLContext | None,
    *,
    timeout: float,
    user_agent: str,
) -> Connection:
    """A new connection along ``route`` (``ctx``: for an https origin), within ``timeout``."""
    loop = asyncio.get_running_loop()
    o, proxy = route.origin, route.proxy
    host, port = (proxy.host, proxy.port) if proxy else (o.host, o.port)
    what = "the proxy " if proxy else ""
    conn: Connection | None = None
    try:
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                lambda: Connection(owner, loop),
                host,
                port,
                ssl=ctx if proxy is None else None,
                server_hostname=o.host if ctx and proxy is None else None,
            )
            if proxy is not None and ctx is not None:
                await _tunnel(owner, conn, route, ctx, user_agent)
    except TimeoutError as exc:
        if conn is not None:
            conn.abort()
        where = authority(host, port)
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
    return conn


async def _tunnel(
    owner: Owner, conn: Connection, route: Route, ctx: ssl.SSLContext, user_agent: str
) -> None:
    """CONNECT through the proxy, then TLS with the backend inside the tunnel."""
    o, proxy = route.origin, route.proxy
    assert proxy is not None
    where = authority(o.host, o.port)
    data = encode_request(
        "CONNECT", where, where, (("User-Agent", user_agent), *proxy.headers), b""
    )
    resp = await exchange(owner, conn, data, no_body=True)
    if not 200 <= resp.status < 300:
        raise TransportError(
            "refused", f"the proxy {proxy.where} answered {resp.status} to CONNECT {where}"
        )
    assert conn.transport is not None
    tls = await conn.loop.start_tls(conn.transport, conn, ctx, server_hostname=o.host)
    if tls is None:
        raise TransportError("reset", f"the proxy {proxy.where} closed the tunnel")
    conn.connection_made(tls)


def _connect_error(exc: OSError, host: str, port: int, what: str) -> TransportError:
    where = authority(host, port)
    if isinstance(exc, socket.gaierror):
        return TransportError("dns", f"DNS lookup failed for {what}{host}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        return TransportError("tls", f"the TLS certificate of {where} is not accepted: {why}")
    if isinstance(exc, ssl.SSLError):
        return TransportError("tls", f"TLS with {where} failed: {exc.reason or exc}")
    reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
    return TransportError("refused", f"cannot connect to {what}{where}: {reason}")
