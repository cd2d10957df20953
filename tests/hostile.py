"""A hostile backend: raw sockets, an Ollama API that misbehaves on request.

The misbehaviour is chosen by the model name the proxy asks for (the
configured model's ``upstream``), one of `BEHAVIOURS`:

- ``ok``: a valid chat answer, keep-alive;
- ``gzip-bomb``: 1 MB of gzip that expands to 1 GiB (``Content-Length`` set;
  a stream request gets it chunked, as NDJSON would come);
- ``huge``: a plain 100 MB answer, its length announced;
- ``huge-chunked``: the same in 1 MiB chunks, no length announced;
- ``continue-forever``: ``100 Continue`` after ``100 Continue``, never an answer;
- ``bare-lf``: a valid answer whose head ends its lines with LF alone;
- ``obs-fold``: a valid answer with a folded (obs-fold) header;
- ``close-keep-alive``: a valid answer with ``Connection: close`` then
  ``Connection: keep-alive``; the server keeps the connection open;
- ``crash-on-reuse``: a valid answer on a connection's first request; on a
  later one it reads the request, then resets the connection (a backend that
  crashed mid-generation);
- ``done-never-ends``: a whole NDJSON stream, ``"done": true`` included, in
  a chunked body that never ends; ``done-never-closes`` the same with no
  framing (the body ends only when the server closes, and it never does);
- ``sse-done-never-ends``: the OpenAI way: a whole SSE answer with
  ``data: [DONE]``, in a chunked body that never ends;
- ``sse-keepalive-only``: SSE comments (``: keep-alive``) every 0.1 s and
  nothing else, forever; ``sse-then-keepalive``: one data event, then only
  comments, forever.

Runs its own event loop on a thread of its own, so a proxy in another thread
(or process) talks to it as to any server. Records every request
(`requests`) and sets `closed(n)` when the proxy closes connection ``n``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

GIB = 1 << 30
MIB = 1 << 20


@functools.cache
def gzip_bomb(size: int = GIB) -> bytes:
    """A gzip stream of ``size`` zero bytes (a multiple of 1 MiB), about a
    thousandth of that: one block, full-flushed so that every further block
    compresses to the same bytes, repeated."""
    block = bytes(MIB)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    again = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    assert again == z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)  # the same bytes each time
    end = z.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(size // MIB):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + first + again * (size // MIB - 1) + end + trailer


def chat_answer(model: str, content: str = "hello from the hostile backend") -> bytes:
    return json.dumps(
        {
            "model": model,
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 3,
            "eval_count": 5,
        }
    ).encode()


@dataclass
class Request:
    conn: int  # the server's connection number, from 1
    nth: int  # 0 for the connection's first request
    method: str
    path: str
    model: str
    stream: bool


@dataclass
class Peer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    req: Request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


# A behaviour answers one request; it returns whether to keep the connection.
Behaviour = Callable[[Peer], Awaitable[bool]]


def _head(status: str, *fields: str, sep: str = "\r\n") -> bytes:
    return (sep.join([f"HTTP/1.1 {status}", *fields]) + sep + sep).encode("latin-1")


async def ok(peer: Peer) -> bool:
    body = chat_answer(peer.req.model)
    await peer.send(
        _head("200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}") + body
    )
    return True


async def gzip_bomb_answer(peer: Peer) -> bool:
    bomb = gzip_bomb()
    if peer.req.stream:
        await peer.send(
            _head(
                "200 OK",
                "Content-Type: application/x-ndjson",
                "Content-Encoding: gzip",
                "Transfer-Encoding: chunked",
            )
        )
        for i in range(0, len(bomb), 64 * 1024):
            piece = bomb[i : i + 64 * 1024]
            await peer.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        await peer.send(b"0\r\n\r\n")
        return True
    fields = ("Content-Type: application/json", "Content-Encoding: gzip")
    await peer.send(_head("200 OK", *fields, f"Content-Length: {len(bomb)}") + bomb)
    return True


async def huge(peer: Peer) -> bool:
    size, block = 100 * 1000 * 1000, b"x" * MIB
    await peer.send(_head("200 OK", "Content-Type: application/json", f"Content-Length: {size}"))
    sent = 0
    while sent < size:
        piece = block[: size - sent]
        await peer.send(piece)
        sent += len(piece)
    return True


async def huge_chunked(peer: Peer) -> bool:
    await peer.send(_head("200 OK", "Content-Type: application/json", "Transfer-Encoding: chunked"))
    block = b"%x\r\n%s\r\n" % (MIB, b"x" * MIB)
    for _ in range(100):
        await peer.send(block)
    await peer.send(b"0\r\n\r\n")
    return True


async def continue_forever(peer: Peer) -> bool:
    batch = b"HTTP/1.1 100 Continue\r\n\r\n" * 2000
    while True:
        await peer.send(batch)
        await asyncio.sleep(0)


async def bare_lf(peer: Peer) -> bool:
    body = chat_answer(peer.req.model, "bare LF")
    fields = ("Content-Type: application/json", f"Content-Length: {len(body)}")
    await peer.send(_head("200 OK", *fields, sep="\n") + body)
    return True


async def obs_fold(peer: Peer) -> bool:
    body = chat_answer(peer.req.model, "obs-fold")
    fields = (
        "Content-Type: application/json",
        "X-Folded: first,\r\n  second",
        f"Content-Length: {len(body)}",
    )
    await peer.send(_head("200 OK", *fields) + body)
    return True


async def close_keep_alive(peer: Peer) -> bool:
    body = chat_answer(peer.req.model, "close, then keep-alive")
    fields = (
        "Content-Type: application/json",
        "Connection: close",
        "Connection: keep-alive",
        f"Content-Length: {len(body)}",
    )
    await peer.send(_head("200 OK", *fields) + body)
    return True  # the server does not close: the client must


async def crash_on_reuse(peer: Peer) -> bool:
    if peer.req.nth == 0:
        return await ok(peer)
    await asyncio.sleep(0.05)  # "generating"
    peer.reset()
    return False


def _ndjson_lines(model: str) -> list[bytes]:
    words = ["The", " whole", " answer", "."]
    lines = [
        json.dumps({"model": model, "message": {"role": "assistant", "content": w}, "done": False})
        for w in words
    ]
    lines.append(
        json.dumps(
            {
                "model": model,
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 3,
                "eval_count": 4,
            }
        )
    )
    return [line.encode() + b"\n" for line in lines]


async def _hold(peer: Peer) -> bool:
    """Keep the connection open, silent, until the client closes it."""
    await peer.reader.read()  # b"" once the client is gone
    return False


async def done_never_ends(peer: Peer) -> bool:
    await peer.send(
        _head("200 OK", "Content-Type: application/x-ndjson", "Transfer-Encoding: chunked")
    )
    for line in _ndjson_lines(peer.req.model):
        await peer.send(b"%x\r\n%s\r\n" % (len(line), line))
    return await _hold(peer)  # and never the last chunk


async def done_never_closes(peer: Peer) -> bool:
    await peer.send(_head("200 OK", "Content-Type: application/x-ndjson", "Connection: close"))
    for line in _ndjson_lines(peer.req.model):
        await peer.send(line)
    return await _hold(peer)


def _sse_chunk(model: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def sse_done_never_ends(peer: Peer) -> bool:
    await peer.send(
        _head("200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked")
    )
    events = [_sse_chunk(peer.req.model, w) for w in ("The", " whole", " answer.")]
    events += [_sse_chunk(peer.req.model, None, "stop"), b"data: [DONE]\n\n"]
    for e in events:
        await peer.send(b"%x\r\n%s\r\n" % (len(e), e))
    return await _hold(peer)


async def _keepalives(peer: Peer, first: bytes = b"") -> bool:
    await peer.send(
        _head("200 OK", "Content-Type: text/event-stream", "Transfer-Encoding: chunked")
    )
    if first:
        await peer.send(b"%x\r\n%s\r\n" % (len(first), first))
    comment = b": keep-alive\n\n"
    while True:
        await peer.send(b"%x\r\n%s\r\n" % (len(comment), comment))
        await asyncio.sleep(0.1)


async def sse_keepalive_only(peer: Peer) -> bool:
    return await _keepalives(peer)


async def sse_then_keepalive(peer: Peer) -> bool:
    return await _keepalives(peer, _sse_chunk(peer.req.model, "Hello"))


BEHAVIOURS: dict[str, Behaviour] = {
    "ok": ok,
    "gzip-bomb": gzip_bomb_answer,
    "huge": huge,
    "huge-chunked": huge_chunked,
    "continue-forever": continue_forever,
    "bare-lf": bare_lf,
    "obs-fold": obs_fold,
    "close-keep-alive": close_keep_alive,
    "crash-on-reuse": crash_on_reuse,
    "done-never-ends": done_never_ends,
    "done-never-closes": done_never_closes,
    "sse-done-never-ends": sse_done_never_ends,
    "sse-keepalive-only": sse_keepalive_only,
    "sse-then-keepalive": sse_then_keepalive,
}


class Hostile:
    """The server; `start()` returns it running, `stop()` ends it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.requests: list[Request] = []
        self.connections = 0
        self._closed: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def closed(self, n: int) -> threading.Event:
        """Set once the client closed (or reset) connection ``n``."""
        with self._lock:
            return self._closed.setdefault(n, threading.Event())

    def asked(self, model: str) -> list[Request]:
        return [r for r in self.requests if r.model == model]

    def start(self) -> Hostile:
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop
        )
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def shut() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n, nth = self.connections, 0
        try:
            while True:
                req = await self._request(reader, n, nth)
                if req is None:
                    break
                nth += 1
                peer = Peer(reader, writer, req)
                if req.method == "GET":
                    body = json.dumps({"models": []}).encode()
                    await peer.send(_head("200 OK", f"Content-Length: {len(body)}") + body)
                    continue
                if not await BEHAVIOURS.get(req.model, ok)(peer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed(n).set()
            writer.close()

    async def _request(self, reader: asyncio.StreamReader, n: int, nth: int) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        line, *fields = head[:-4].decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        doc: dict[str, Any] = json.loads(body) if body else {}
        method, path, _ = line.split(" ", 2)
        req = Request(n, nth, method, path, str(doc.get("model", "")), doc.get("stream") is True)
        self.requests.append(req)
        return req
