"""Tests for `traywire.proxy.transport`: the keep-alive connection pool.

Every test talks to a real server on 127.0.0.1: mostly tiny asyncio servers
that read requests and write raw bytes (`RawServer`), so the wire is exactly
what the test says; a few use an aiohttp web server. Every async test is
bounded in time (`bounded`), and every server is closed on the way out.

The async tests run on pytest-asyncio's loop (asyncio_mode = "auto"); the app
runs on uvloop, so `test_on_uvloop` runs each of them once more on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import gzip
import hashlib
import inspect
import ipaddress
import json
import socket
import ssl
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from traywire.proxy.connection import DECODE_STEP
from traywire.proxy.origins import no_proxy, origin_of
from traywire.proxy.transport import Pool, TransportError

CT = 5.0  # connect timeout towards servers that are up
F = TypeVar("F", bound=Callable[..., Awaitable[None]])


def bounded(seconds: float = 10.0) -> Callable[[F], F]:
    """The test fails (TimeoutError) rather than hang past ``seconds``."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> None:
            async with asyncio.timeout(seconds):
                await fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


# ================================================================ raw servers


@dataclass
class Request:
    line: str  # "POST /v1/chat HTTP/1.1"
    fields: list[tuple[str, str]]  # (lower-case name, value), in order
    body: bytes

    @property
    def path(self) -> str:
        return self.line.split(" ")[1]

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.fields)


@dataclass
class Peer:
    """The server's side of one connection."""

    server: RawServer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    n: int  # 1 for the server's first connection

    async def request(self) -> Request | None:
        """The next request (recorded in ``server.requests``); None when the client
        closes (which sets ``server.closed(n)``)."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.server.closed(self.n).set()
            return None
        line, *rest = head[:-4].decode("latin-1").split("\r\n")
        fields = [(k.strip().lower(), v.strip()) for k, _, v in (f.partition(":") for f in rest)]
        body = await self.reader.readexactly(int(dict(fields).get("content-length", "0")))
        req = Request(line, fields, body)
        self.server.requests.append(req)
        return req

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until_close(self) -> None:
        """Read and drop until the client closes; then set ``server.closed(n)``."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.server.closed(self.n).set()


Handler = Callable[[Peer], Awaitable[None]]


@dataclass
class RawServer:
    handler: Handler
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    _closed: dict[int, asyncio.Event] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await asyncio.wait_for(self._server.wait_closed(), 5)

    def closed(self, n: int) -> asyncio.Event:
        """Set once the server saw the client close connection ``n``."""
        return self._closed.setdefault(n, asyncio.Event())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(Peer(self, reader, writer, self.connections))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


def ok(body: bytes = b"ok", *headers: str, version: str = "1.1") -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers).encode()
    return b"HTTP/%s 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (
        version.encode(),
        extra,
        len(body),
        body,
    )


async def echo(peer: Peer) -> None:
    """Keep-alive: answer every request with its target as the body."""
    while (req := await peer.request()) is not None:
        await peer.send(ok(req.path.encode()))


@contextlib.asynccontextmanager
async def open_pool(**kwargs: Any) -> AsyncIterator[Pool]:
    kwargs.setdefault("proxies", {})  # whatever this machine's environment says
    pool = Pool(**kwargs)
    try:
        yield pool
    finally:
        await pool.close()


async def get(pool: Pool, base: str, path: str = "/", method: str = "GET") -> tuple[int, bytes]:
    resp = await pool.request(method, base, path, [], b"", connect_timeout=CT)
    return resp.status, await resp.read()


async def fails(kind: str, aw: Awaitable[object]) -> TransportError:
    with pytest.raises(TransportError) as info:
        await aw
    assert info.value.kind == kind, info.value.detail
    return info.value


async def closes_within(srv: RawServer, n: int, seconds: float = 2.0) -> None:
    await asyncio.wait_for(srv.closed(n).wait(), seconds)


# ================================================================ requests and reuse


@bounded()
async def test_round_trip_sends_what_it_should() -> None:
    async with RawServer(echo) as srv, open_pool() as pool:
        headers = [("X-Custom", "yes"), ("Authorization", "Bearer k")]
        body = b'{"model": "m"}'
        base = srv.url + "/v1/"
        resp = await pool.request("POST", base, "/chat", headers, body, connect_timeout=CT)
        assert (resp.status, resp.headers["content-length"]) == (200, "8")
        assert await resp.read() == b"/v1/chat"
        (req,) = srv.requests
        assert req.line == "POST /v1/chat HTTP/1.1"
        assert req.fields[0] == ("host", f"127.0.0.1:{srv.port}")
        h = req.headers
        assert h["content-length"] == str(len(body)) and req.body == body
        assert h["user-agent"].startswith("traywire/")
        assert h["accept-encoding"] == "identity"
        assert (h["x-custom"], h["authorization"]) == ("yes", "Bearer k")
        assert pool.idle_count() == 1


def test_origin_of() -> None:
    o = origin_of("http://[::1]:8080/v1/")
    assert (o.host, o.port, o.tls, o.host_header, o.prefix) == (
        "::1",
        8080,
        False,
        "[::1]:8080",
        "/v1",
    )
    assert origin_of("https://example.com:443").host_header == "example.com"
    assert origin_of("http://example.com:80/").host_header == "example.com"
    assert origin_of("https://example.com").port == 443
    for bad in ("ftp://example.com", "http://", "http://h:99999", "localhost:8080"):
        with pytest.raises(TransportError) as info:
            origin_of(bad)
        assert info.value.kind == "refused"


@bounded()
async def test_a_big_body_goes_whole_after_its_head_and_the_connection_is_reused() -> None:
    # past transport._WRITE_APART the body is written as it is, after the head
    body = bytes(range(256)) * 12_289  # ~3 MiB, every byte value
    async with RawServer(echo) as srv, open_pool() as pool:
        for path in ("/big", "/again"):
            resp = await pool.request("POST", srv.url, path, [], body, connect_timeout=CT)
            assert (resp.status, await resp.read()) == (200, path.encode())
        assert [(r.path, r.headers["content-length"]) for r in srv.requests] == [
            ("/big", str(len(body))),
            ("/again", str(len(body))),
        ]
        assert all(r.body == body for r in srv.requests)
        assert (pool.opened, srv.connections) == (1, 1)


@bounded()
async def test_keep_alive_reuses_one_connection() -> None:
    async with RawServer(echo) as srv, open_pool() as pool:
        for path in ("/a", "/b", "/c"):
            assert await get(pool, srv.url, path) == (200, path.encode())
        assert await get(pool, srv.url + "/v1", "/d") == (200, b"/v1/d")  # same origin
        assert (pool.opened, srv.connections, pool.idle_count()) == (1, 1, 1)
        assert [r.path for r in srv.requests] == ["/a", "/b", "/c", "/v1/d"]


@bounded()
async def test_concurrent_requests_each_get_a_connection_and_their_own_answer() -> None:
    n = 5
    everyone_asked = asyncio.Barrier(n)

    async def handler(peer: Peer) -> None:
        req = await peer.request()
        assert req is not None
        await everyone_asked.wait()  # no answer until all n requests are in flight
        await peer.send(ok(req.path.encode()))
        await echo(peer)

    async with RawServer(handler) as srv, open_pool() as pool:
        paths = [f"/r{i}" for i in range(n)]
        got = await asyncio.gather(*(get(pool, srv.url, p) for p in paths))
        assert got == [(200, p.encode()) for p in paths]
        assert pool.opened == srv.connections == n
        assert pool.idle_count() == n


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (ok(b"x", "Connection: close"), False),
        (ok(b"x", version="1.0"), False),
        (ok(b"x") + b"JUNK", False),  # bytes past the end
        (ok(b"x", "Connection: keep-alive", version="1.0"), True),
    ],
    ids=["connection close", "http/1.0", "extra bytes", "http/1.0 keep-alive"],
)
@bounded()
async def test_connection_reused_only_when_the_answer_allows(answer: bytes, reused: bool) -> None:
    async def handler(peer: Peer) -> None:  # never closes first
        while await peer.request() is not None:
            await peer.send(answer)

    async with RawServer(handler) as srv, open_pool() as pool:
        assert await get(pool, srv.url) == (200, b"x")
        assert await get(pool, srv.url) == (200, b"x")
        assert pool.opened == srv.connections == (1 if reused else 2)
        if not reused:
            await closes_within(srv, 1)  # the client closed the first connection


@bounded()
async def test_head_204_and_100_continue_keep_the_connection() -> None:
    async def handler(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            if req.line.startswith("HEAD"):
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            elif req.path == "/204":
                await peer.send(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                await peer.send(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after 100"))

    async with RawServer(handler) as srv, open_pool() as pool:
        resp = await pool.request("HEAD", srv.url, "/", [], b"", connect_timeout=CT)
        assert (resp.status, resp.headers["content-length"], await resp.read()) == (
            200,
            "1000",
            b"",
        )
        assert await get(pool, srv.url, "/204") == (204, b"")
        assert await get(pool, srv.url, "/x") == (200, b"after 100")
        assert pool.opened == srv.connections == 1


@bounded()
async def test_aiohttp_server_round_trip_reuse_and_chunked_stream() -> None:
    async def info(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")  # (host, port): one per connection
        body = (await request.read()).decode()
        return web.json_response({"peer": list(peer), "body": body, **request.headers})

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(b"part %d;" % i)
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/info", info)
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with open_pool() as pool:
            peers = []
            for i in range(3):
                r = await pool.request(
                    "POST", base, "/info", [("X-N", str(i))], b"b%d" % i, connect_timeout=CT
                )
                got = json.loads(await r.read())
                assert (got["body"], got["X-N"], got["Host"]) == (f"b{i}", str(i), base[7:])
                peers.append(tuple(got["peer"]))
            assert len(set(peers)) == 1 and pool.opened == 1
            r = await pool.request("GET", base, "/stream", [], b"", connect_timeout=CT)
            assert r.headers["transfer-encoding"] == "chunked"
            assert await r.read() == b"".join(b"part %d;" % i for i in range(5))
            assert pool.opened == 1 and pool.idle_count() == 1
    finally:
        await runner.cleanup()


# ================================================================ closed connections and the retry


@bounded()
async def test_server_closing_an_idle_connection_costs_nothing() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(ok(b"one"))  # then close: an idle timeout on the server's side

    async with RawServer(handler) as srv, open_pool() as pool:
        assert await get(pool, srv.url) == (200, b"one")
        await asyncio.sleep(0.2)
        assert await get(pool, srv.url) == (200, b"one")
        assert pool.opened == srv.connections == 2


@bounded()
async def test_idle_connection_answered_408_then_closed_is_not_reused() -> None:
    async def handler(peer: Peer) -> None:
        if peer.n == 1:
            await peer.request()
            await peer.send(ok(b"first"))
            await asyncio.sleep(0.1)  # idle on the client's side, then the backend gives up
            await peer.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")
            return
        await echo(peer)

    async with RawServer(handler) as srv, open_pool() as pool:
        assert await get(pool, srv.url, "/first") == (200, b"first")
        await asyncio.sleep(0.4)
        assert await get(pool, srv.url, "/second") == (200, b"/second")
        assert pool.opened == srv.connections == 2


@bounded()
async def test_reused_connection_closed_after_the_request_is_not_resent() -> None:
    """The backend may have started generating: the request goes once, the
    failure goes to the failover rules (issue 12, finding 4)."""

    async def handler(peer: Peer) -> None:
        if peer.n == 1:
            await peer.request()
            await peer.send(ok(b"first"))
            await peer.request()  # the backend dies as the second request comes in
            return
        await echo(peer)

    async with RawServer(handler) as srv, open_pool() as pool:
        assert await get(pool, srv.url, "/first") == (200, b"first")
        ask = pool.request("POST", srv.url, "/second", [], b"payload", connect_timeout=CT)
        await fails("reset", ask)
        assert pool.opened == srv.connections == 1
        assert [(r.path, r.body) for r in srv.requests] == [
            ("/first", b""),
            ("/second", b"payload"),
        ]
        assert await get(pool, srv.url, "/third") == (200, b"/third")  # a new connection


def _blocking_server(answers: int) -> tuple[int, threading.Event, threading.Event, list[bytes]]:
    """A server on a thread of its own: answers ``answers`` requests on one
    connection; closes it when ``close`` is set (then sets ``closed``); each
    later connection is echoed. Returns (port, close, closed, requests)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    close, closed = threading.Event(), threading.Event()
    seen: list[bytes] = []

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                for _ in range(answers):
                    seen.append(conn.recv(65536))
                    conn.sendall(ok(b"first"))
                close.wait(10)
            closed.set()
            conn, _ = listener.accept()
            with conn:
                seen.append(conn.recv(65536))
                conn.sendall(ok(b"second", "Connection: close"))

    threading.Thread(target=serve, daemon=True).start()
    return port, close, closed, seen


@bounded()
async def test_pooled_connection_found_closed_before_writing_is_replaced() -> None:
    """The backend closed the idle connection and the loop has not yet seen
    it: found closed before the request is written, another connection carries it."""
    port, close, closed, seen = _blocking_server(1)
    base = f"http://127.0.0.1:{port}"
    async with open_pool() as pool:
        assert await get(pool, base, "/first") == (200, b"first")
        close.set()
        assert closed.wait(5)
        time.sleep(0.1)  # the FIN is in; the loop has not run since (no await)
        assert pool.idle_count() == 1
        assert await get(pool, base, "/second") == (200, b"second")
        assert pool.opened == 2
        assert [r.split(b" ")[1] for r in seen] == [b"/first", b"/second"]


@bounded()
async def test_new_connection_closed_without_answer_is_reset_not_retried() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()

    async with RawServer(handler) as srv, open_pool() as pool:
        await fails("reset", get(pool, srv.url))
        assert pool.opened == srv.connections == 1
        assert pool.idle_count() == 0


@bounded()
async def test_no_retry_once_the_backend_started_answering() -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(ok(b"first"))
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-")  # then close

    async with RawServer(handler) as srv, open_pool() as pool:
        assert await get(pool, srv.url) == (200, b"first")
        await fails("reset", get(pool, srv.url))
        assert pool.opened == srv.connections == 1


@bounded()
async def test_idle_connections_expire_after_keepalive_s() -> None:
    async with RawServer(echo) as srv, open_pool(keepalive_s=0.05) as pool:
        assert await get(pool, srv.url, "/a") == (200, b"/a")
        await asyncio.sleep(0.2)
        assert await get(pool, srv.url, "/b") == (200, b"/b")
        assert pool.opened == srv.connections == 2
        await closes_within(srv, 1)


@bounded()
async def test_idle_connections_close_on_a_timer_without_further_requests() -> None:
    """Issue 12, finding 9: closed by the keep-alive timer, not by the next request."""
    async with RawServer(echo) as srv, open_pool(keepalive_s=0.3) as pool:
        t0 = time.monotonic()
        await asyncio.gather(get(pool, srv.url, "/a"), get(pool, srv.url, "/b"))
        assert pool.status() == {"idle": 2, "opened": 2}
        await asyncio.sleep(0.15)
        assert await get(pool, srv.url, "/c") == (200, b"/c")  # one of them, idle again
        await closes_within(srv, 1, 3)
        await closes_within(srv, 2, 3)
        assert 0.3 <= time.monotonic() - t0 < 2
        assert pool.status() == {"idle": 0, "opened": 2}


# ================================================================ connect failures


@bounded()
async def test_refused_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    async with open_pool() as pool:
        await fails("refused", get(pool, f"http://127.0.0.1:{port}"))
        assert pool.opened == 0


@bounded(30)
async def test_unresolvable_host_is_dns() -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(socket.gaierror):
        await loop.getaddrinfo("nonexistent.invalid", 80)
        pytest.skip("this resolver answers for the reserved .invalid domain")
    async with open_pool() as pool:
        # a generous connect timeout: it covers the lookup, and a resolver may be slow
        ask = pool.request("GET", "http://nonexistent.invalid", "/", [], b"", connect_timeout=25)
        err = await fails("dns", ask)
        assert "nonexistent.invalid" in err.detail


@bounded()
async def test_connect_timeout_when_the_accept_queue_is_full() -> None:
    # Linux drops a SYN while the listener's accept queue is full (backlog 0
    # holds one connection; nobody accepts): the client's connect hangs until
    # the timeout. Reliable on Linux loopback, on both event loops.
    with socket.socket() as listener, contextlib.ExitStack() as fillers:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            s = fillers.enter_context(socket.socket())
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
        await asyncio.sleep(0.05)
        async with open_pool() as pool:
            t0 = time.monotonic()
            with pytest.raises(TransportError) as info:
                await pool.request(
                    "GET", f"http://127.0.0.1:{port}", "/", [], b"", connect_timeout=0.3
                )
            assert info.value.kind == "connect_timeout"
            assert 0.25 < time.monotonic() - t0 < 3


# ================================================================ streaming


@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
@bounded()
async def test_readany_gives_each_piece_as_it_is_sent(framing: str) -> None:
    pieces = [b"one ", b"two two ", b"three"]
    got = [asyncio.Event() for _ in pieces]

    async def handler(peer: Peer) -> None:
        await peer.request()
        head = {
            "chunked": "Transfer-Encoding: chunked\r\n",
            "length": f"Content-Length: {sum(map(len, pieces))}\r\n",
            "close": "",
        }[framing]
        await peer.send(f"HTTP/1.1 200 OK\r\n{head}\r\n".encode())
        for piece, event in zip(pieces, got, strict=True):
            await peer.send(
                b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece
            )
            await event.wait()  # the next piece only once the client has this one
        if framing == "chunked":
            await peer.send(b"0\r\n\r\n")
        if framing != "close":
            await peer.until_close()

    async with RawServer(handler) as srv, open_pool() as pool:
        resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
        for piece, event in zip(pieces, got, strict=True):
            assert await resp.readany() == piece
            event.set()
        assert await resp.readany() == b""
        assert await resp.readany() == b""
        assert pool.idle_count() == (0 if framing == "close" else 1)


@bounded(30)
async def test_flow_control_pauses_a_fast_backend_then_resumes() -> None:
    total, block = 32 << 20, bytes(range(256)) * 256
    sent = 0

    async def handler(peer: Peer) -> None:
        nonlocal sent
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        while sent < total:
            await peer.send(block)  # drain() blocks while the client does not read
            sent += len(block)
        await peer.until_close()

    async with RawServer(handler) as srv, open_pool() as pool:
        resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
        last = -1
        while sent != last:  # until the server makes no progress for 0.3 s
            last = sent
            await asyncio.sleep(0.3)
        assert 0 < sent < total // 2, f"the backend got {sent} bytes out unread"
        digest, n = hashlib.sha256(), 0
        while chunk := await resp.readany():
            digest.update(chunk)
            n += len(chunk)
        assert n == total
        assert digest.digest() == hashlib.sha256(block * (total // len(block))).digest()
        assert pool.idle_count() == 1


@pytest.mark.parametrize("framing", ["length", "close"])
@bounded()
async def test_gzip_answer_is_decoded(framing: str) -> None:
    text = b"traywire " * 1000
    encoded = gzip.compress(text)
    length = f"Content-Length: {len(encoded)}\r\n" if framing == "length" else ""
    answer = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n{length}\r\n".encode() + encoded

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        if framing == "length":
            await peer.until_close()

    async with RawServer(handler) as srv, open_pool() as pool:
        assert await get(pool, srv.url) == (200, text)


# ================================================================ broken answers


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["not http", "bad length", "unknown coding"],
)
@bounded()
async def test_garbage_answer_is_invalid_response(answer: bytes) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)
        await peer.until_close()

    async with RawServer(handler) as srv, open_pool() as pool:
        await fails("invalid_response", get(pool, srv.url))
        await closes_within(srv, 1)
        assert pool.idle_count() == 0


@bounded()
async def test_garbage_mid_body_is_invalid_response() -> None:
    got_abc = asyncio.Event()

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await got_abc.wait()
        await peer.send(b"zz\r\n")
        await peer.until_close()

    async with RawServer(handler) as srv, open_pool() as pool:
        resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
        assert await resp.readany() == b"abc"
        got_abc.set()
        await fails("invalid_response", resp.readany())
        await closes_within(srv, 1)


@pytest.mark.parametrize(
    ("answer", "in_head"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Le", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", False),
    ],
    ids=["head", "length body", "chunked body"],
)
@bounded()
async def test_answer_cut_short_is_reset(answer: bytes, in_head: bool) -> None:
    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(answer)  # then close

    async with RawServer(handler) as srv, open_pool() as pool:
        if in_head:
            await fails("reset", get(pool, srv.url))
        else:
            resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
            assert resp.status == 200
            await fails("reset", resp.read())
        assert pool.opened == 1 and pool.idle_count() == 0


# ================================================================ giving up on a response


def _holding(first: bytes) -> Handler:
    """Answer the first request with ``first``, then wait for the client to go."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(first)
        await peer.until_close()

    return handler


@bounded()
async def test_close_during_a_stream_closes_the_connection_promptly() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
    async with RawServer(_holding(head)) as srv, open_pool() as pool:
        resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
        assert await resp.readany() == b"first"
        resp.close()
        await closes_within(srv, 1)
        assert pool.idle_count() == 0


@bounded()
async def test_release_before_the_end_closes_the_connection() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"
    async with RawServer(_holding(head)) as srv, open_pool() as pool:
        resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
        resp.release()
        await closes_within(srv, 1)
        assert pool.idle_count() == 0


@bounded()
async def test_cancelling_a_request_aborts_its_connection() -> None:
    asked = asyncio.Event()

    async def handler(peer: Peer) -> None:
        if peer.n == 1:
            await peer.request()
            asked.set()
            await peer.until_close()  # never answers
        else:
            await echo(peer)

    async with RawServer(handler) as srv, open_pool() as pool:
        task = asyncio.create_task(get(pool, srv.url, "/slow"))
        await asyncio.wait_for(asked.wait(), 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await closes_within(srv, 1)
        assert pool.idle_count() == 0
        assert await get(pool, srv.url, "/next") == (200, b"/next")
        assert pool.opened == srv.connections == 2


@bounded()
async def test_pool_close_closes_idle_connections_and_in_use_ones_on_release() -> None:
    async with RawServer(echo) as srv, open_pool() as pool:
        assert await get(pool, srv.url, "/a") == (200, b"/a")
        busy = await pool.request("GET", srv.url, "/b", [], b"", connect_timeout=CT)
        assert pool.idle_count() == 0  # the one connection is busy again
        assert await get(pool, srv.url, "/c") == (200, b"/c")  # a second connection
        assert pool.idle_count() == 1
        await pool.close()
        await closes_within(srv, 2)  # the idle one
        assert pool.idle_count() == 0
        assert await busy.read() == b"/b"  # released: closed, not pooled
        await closes_within(srv, 1)
        assert pool.idle_count() == 0
        await fails("refused", get(pool, srv.url))


# ================================================================ https


@functools.cache
def _self_signed() -> tuple[bytes, bytes]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "traywire test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("backend.test"),  # reached through a proxy's tunnel
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@contextlib.contextmanager
def _tls_contexts() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    """(server context, client context trusting the server's certificate)."""
    pytest.importorskip("cryptography")
    cert, key = _self_signed()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "cert.pem").write_bytes(cert)
        (Path(d) / "key.pem").write_bytes(key)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(Path(d) / "cert.pem", Path(d) / "key.pem")
    yield server, ssl.create_default_context(cadata=cert.decode())


@bounded()
async def test_https_with_a_trusted_self_signed_certificate() -> None:
    with _tls_contexts() as (server_ctx, client_ctx):
        async with (
            RawServer(echo, tls=server_ctx) as srv,
            open_pool(ssl_context=client_ctx) as pool,
        ):
            assert srv.url.startswith("https://")
            assert await get(pool, srv.url, "/a") == (200, b"/a")
            assert await get(pool, srv.url, "/b") == (200, b"/b")
            assert pool.opened == srv.connections == 1
            assert srv.requests[0].headers["host"] == f"127.0.0.1:{srv.port}"


@bounded()
async def test_https_with_an_untrusted_certificate_is_refused() -> None:
    with _tls_contexts() as (server_ctx, _):
        async with RawServer(echo, tls=server_ctx) as srv, open_pool() as pool:
            err = await fails("tls", get(pool, srv.url))
            assert "certificate" in err.detail and "self-signed" in err.detail, err.detail
            assert f"127.0.0.1:{srv.port}" in err.detail
            assert pool.opened == 0 and srv.requests == []


# ================================================================ proxies from the environment


@dataclass
class FakeProxy:
    """An HTTP proxy: a CONNECT tunnel to ``target`` (whatever the host asked
    for), or, for an absolute-form request, an answer echoing its request line."""

    target: int  # the port every tunnel leads to, on 127.0.0.1
    status: int = 200  # the answer to CONNECT
    seen: list[Request] = field(default_factory=list)

    async def __aenter__(self) -> FakeProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks: set[asyncio.Task[Any]] = set()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            peer = Peer(RawServer(echo), reader, writer, 1)
            while (req := await peer.request()) is not None:
                self.seen.append(req)
                if not req.line.startswith("CONNECT "):
                    await peer.send(ok(req.line.encode()))
                    continue
                if self.status != 200:
                    await peer.send(b"HTTP/1.1 %d No\r\nContent-Length: 0\r\n\r\n" % self.status)
                    return
                up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
                await peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")

                async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                    with contextlib.suppress(ConnectionError):
                        while data := await r.read(65536):
                            w.write(data)
                            await w.drain()
                    w.close()

                await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
                return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@bounded()
async def test_http_backend_through_a_proxy_is_asked_in_absolute_form() -> None:
    async with FakeProxy(0) as proxy:
        url = f"http://user:p%40ss@127.0.0.1:{proxy.port}"
        async with open_pool(proxies={"http": url}) as pool:
            base = "http://backend.test:8080/v1?api-version=2"
            status, body = await pool.get(base, "/models", timeout=CT, limit=1000)
            assert (status, body) == (
                200,
                b"GET http://backend.test:8080/v1/models?api-version=2 HTTP/1.1",
            )
            assert await pool.get(base, "/again", timeout=CT, limit=1000) == (
                200,
                b"GET http://backend.test:8080/v1/again?api-version=2 HTTP/1.1",
            )
            assert pool.opened == 1
        req = proxy.seen[0]
        assert req.headers["host"] == "backend.test:8080"
        assert req.headers["proxy-authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss


@bounded()
async def test_https_backend_through_a_connect_tunnel() -> None:
    with _tls_contexts() as (server_ctx, client_ctx):
        async with (
            RawServer(echo, tls=server_ctx) as srv,
            FakeProxy(0) as proxy,
        ):
            proxy.target = srv.port
            proxies = {"https": f"127.0.0.1:{proxy.port}"}  # no scheme: http:// meant
            async with open_pool(ssl_context=client_ctx, proxies=proxies) as pool:
                assert await get(pool, "https://backend.test/v1", "/a") == (200, b"/v1/a")
                assert await get(pool, "https://backend.test/v1", "/b") == (200, b"/v1/b")
                assert pool.opened == srv.connections == 1
            assert [r.line for r in proxy.seen] == ["CONNECT backend.test:443 HTTP/1.1"]
            assert [r.headers["host"] for r in srv.requests] == ["backend.test"] * 2


@bounded()
async def test_a_proxy_refusing_the_tunnel_is_refused_naming_it() -> None:
    async with FakeProxy(0, status=407) as proxy:
        proxies = {"https": f"http://127.0.0.1:{proxy.port}"}
        async with open_pool(proxies=proxies) as pool:
            err = await fails("refused", get(pool, "https://backend.test"))
            assert f"127.0.0.1:{proxy.port} answered 407 to CONNECT backend.test:443" in err.detail


@bounded()
async def test_loopback_and_no_proxy_hosts_go_direct() -> None:
    async with RawServer(echo) as srv, open_pool(proxies={"http": "http://127.0.0.1:9"}) as pool:
        assert await get(pool, srv.url, "/direct") == (200, b"/direct")  # never via the proxy
        assert await get(pool, f"http://localhost:{srv.port}", "/too") == (200, b"/too")
    assert no_proxy("api.corp.example", 443, "localhost, .corp.example")
    assert no_proxy("corp.example", 443, "corp.example")
    assert not no_proxy("notcorp.example", 443, "corp.example")
    assert no_proxy("anything", 80, "*")
    assert no_proxy("10.1.2.3", 80, "10.0.0.0/8")
    assert not no_proxy("11.1.2.3", 80, "10.0.0.0/8")
    assert no_proxy("h.example", 8080, "h.example:8080")
    assert not no_proxy("h.example", 443, "h.example:8080")
    assert not no_proxy("h.example", 443, None)


def test_proxies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    pool = Pool()
    assert pool._route("https://api.example/v1").proxy is not None
    assert pool._route("https://x.internal.example/v1").proxy is None
    assert pool._route("https://127.0.0.1:8443/v1").proxy is None
    assert pool._route("http://api.example/v1").proxy is None  # no HTTP_PROXY


# ================================================================ bounded answers


@bounded()
async def test_base_url_query_is_merged_with_the_request_path() -> None:
    async with RawServer(echo) as srv, open_pool() as pool:
        base = srv.url + "/openai/deployments/d?api-version=2024-06-01"
        assert await get(pool, base, "/chat/completions") == (
            200,
            b"/openai/deployments/d/chat/completions?api-version=2024-06-01",
        )
        assert await get(pool, base, "/x?stream=1") == (
            200,
            b"/openai/deployments/d/x?stream=1&api-version=2024-06-01",
        )


@pytest.mark.parametrize("framing", ["length", "chunked"])
@bounded()
async def test_read_past_the_limit_is_too_large_naming_it(framing: str) -> None:
    size = 3 << 20

    async def handler(peer: Peer) -> None:
        await peer.request()
        if framing == "length":
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        else:
            await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(3):
                block = b"x" * (1 << 20)
                await peer.send(
                    block if framing == "length" else b"%x\r\n%s\r\n" % (len(block), block)
                )
        await peer.until_close()

    async with RawServer(handler) as srv, open_pool() as pool:
        resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
        err = await fails("too_large", resp.read(1 << 20, limit_name="server.max_answer_mb"))
        assert "1 MiB, server.max_answer_mb" in err.detail
        assert ("announced" in err.detail) is (framing == "length")
        await closes_within(srv, 1)
        assert pool.idle_count() == 0


@bounded(30)
async def test_a_gzip_bomb_is_read_in_bounded_pieces() -> None:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(z.compress(bytes(1 << 20)) for _ in range(64)) + z.flush()

    async def handler(peer: Peer) -> None:
        await peer.request()
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        await peer.send(head % len(bomb) + bomb)
        await echo(peer)

    async with RawServer(handler) as srv, open_pool() as pool:
        resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
        total = 0
        while piece := await resp.readany():
            assert len(piece) <= DECODE_STEP
            total += len(piece)
        assert total == 64 << 20
        assert pool.idle_count() == 1  # the whole answer was read: reusable


@bounded()
async def test_get_gives_status_and_body_within_a_timeout() -> None:
    async def handler(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            if req.path == "/slow":
                await peer.until_close()
                return
            await peer.send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")

    async with RawServer(handler) as srv, open_pool() as pool:
        assert await pool.get(srv.url, "/x", timeout=CT, limit=100) == (404, b"nope")
        err = await fails("total_timeout", pool.get(srv.url, "/slow", timeout=0.2, limit=100))
        assert "0.2s" in err.detail
        await fails("too_large", pool.get(srv.url, "/x", timeout=CT, limit=2))


# ================================================================ bugs found


@bounded()
async def test_bytes_received_while_idle_make_a_connection_unusable() -> None:
    async def handler(peer: Peer) -> None:
        if peer.n == 1:
            await peer.request()
            await peer.send(ok(b"first"))
            await asyncio.sleep(0.1)  # the client has pooled the connection
            await peer.send(
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )
            await asyncio.sleep(1)  # the close follows a little later
            return
        await echo(peer)

    async with RawServer(handler) as srv, open_pool() as pool:
        assert await get(pool, srv.url, "/first") == (200, b"first")
        await asyncio.sleep(0.3)  # the 408 has arrived, the close has not
        assert await get(pool, srv.url, "/second") == (200, b"/second")


@bounded()
async def test_non_ascii_digit_content_length_is_invalid_response() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab"
    async with RawServer(_holding(answer)) as srv, open_pool() as pool:
        await fails("invalid_response", get(pool, srv.url))


@bounded()
async def test_close_delimited_body_ended_by_a_reset_is_an_error_not_the_end() -> None:
    """A body that runs until the connection closes ends with a clean close;
    a reset (RST) in the middle of it is a failure, not a short answer."""

    async def handler(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart of it")
        await asyncio.sleep(0.1)
        sock = peer.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.writer.transport.abort()

    async with RawServer(handler) as srv, open_pool() as pool:
        resp = await pool.request("GET", srv.url, "/", [], b"", connect_timeout=CT)
        assert resp.status == 200
        await fails("reset", resp.read())

    async def clean(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n\r\nall of it")

    async with RawServer(clean) as srv, open_pool() as pool:
        assert await get(pool, srv.url) == (200, b"all of it")


# ================================================================ the same on uvloop


def _uvloop_cases() -> list[Any]:
    """Every async test above, with its parameters if any."""
    cases = []
    for name, fn in list(globals().items()):
        if not name.startswith("test_"):
            continue
        if not inspect.iscoroutinefunction(fn):
            continue
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            cases.append(pytest.param(fn, {}, id=name))
            continue
        (mark,) = marks
        names = mark.args[0].split(",") if isinstance(mark.args[0], str) else mark.args[0]
        ids = mark.kwargs.get("ids") or [str(v) for v in mark.args[1]]
        for case_id, values in zip(ids, mark.args[1], strict=True):
            args = dict(zip(names, values if len(names) > 1 else [values], strict=True))
            cases.append(pytest.param(fn, args, id=f"{name}[{case_id}]"))
    return cases


@pytest.mark.parametrize(("case", "args"), _uvloop_cases())
def test_on_uvloop(case: Callable[..., Coroutine[Any, Any, None]], args: dict[str, Any]) -> None:
    uvloop = pytest.importorskip("uvloop")  # not on Windows, where traywire runs without it
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(case(**args))
