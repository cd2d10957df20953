"""HTTP/1.1, client side, as plain data: request bytes out, response events in.

No sockets, no clock, no event loop (`transport` does the I/O). The response
side is llhttp (through `httptools`, the parser behind uvicorn) driven by
callbacks; this module only reacts to its events and enforces traywire's
limits:

- requests: a method, a target, headers and a body with its length
  (`encode_request`);
- responses (`ResponseParser`): status line and headers, at most `MAX_HEAD`
  bytes, then the body as llhttp frames it (Content-Length, chunked, or until
  the connection closes; none after 1xx/204/304, nor for a request that asked
  for no body: HEAD, CONNECT); at most `MAX_INTERIM` interim (1xx) responses
  are skipped; obs-fold is unfolded and a bare LF ends a line (both are what
  RFC 9112 asks of a recipient); ``Connection: close`` anywhere ends the
  connection;
- content codings (`Decoder`): ``gzip``/``deflate`` decoded as the body is
  read, never more than the reader asks for at a time, so a small answer that
  expands enormously costs only what the reader accepts;
- anything else (a malformed head, a bad chunk, an unknown coding, a body cut
  short, too many interim responses) raises `ProtocolError`.

Why not aiohttp's client: on the request path it costs about three times the
CPU per request of `transport` with this module (README, "Benchmarks").
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable

import httptools

MAX_HEAD = 64 * 1024  # status line + headers, interim responses included
MAX_INTERIM = 8  # 100 Continue, 103 Early Hints, ... before the real answer
_INPUT_STEP = 64 * 1024  # compressed bytes handed to zlib at once


class ProtocolError(Exception):
    """The peer broke HTTP/1.1 (or closed the connection mid-response)."""


class _Stop(Exception):
    """Raised from a callback to stop llhttp: the message is over for us."""


def encode_request(
    method: str, target: str, host: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """One request as bytes: Host first, then ``headers``, then Content-Length."""
    head = encode_head(method, target, host, headers, body)
    return head + body if body else head


def encode_head(
    method: str, target: str, host: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """`encode_request`'s head alone (a big body is written after it as it is,
    not copied behind it)."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r}: line breaks are not allowed")
        lines.append(f"{name}: {value}\r\n")
    if body or method not in ("GET", "HEAD", "CONNECT"):
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class ResponseParser:
    """The responses of one connection, one at a time.

    ``begin()`` before each request; then ``feed`` the bytes as they arrive:
    it returns the body bytes (as sent: content codings are `Decoder`'s) that
    the data completed. Once the head is in (``has_head``), ``status`` and
    ``headers`` (lower-case names; a repeated header keeps its last value) are
    set; ``done`` turns true at the end of the message, and then
    ``keep_alive`` tells whether the connection may carry the next request.
    Bytes past the end of the message make the connection unusable
    (``keep_alive`` false); they are never a second response.
    """

    __slots__ = (
        "_fed",
        "_head_bytes",
        "_interim",
        "_is_interim",
        "_no_body",
        "_out",
        "_p",
        "_stale",
        "close_delimited",
        "done",
        "has_head",
        "headers",
        "keep_alive",
        "max_head",
        "max_interim",
        "status",
    )

    def __init__(self, *, max_head: int = MAX_HEAD, max_interim: int = MAX_INTERIM) -> None:
        self.max_head = max_head
        self.max_interim = max_interim
        self._p = self._new_parser()
        self._stale = False
        self._out: list[bytes] = []
        self.begin()

    def _new_parser(self) -> httptools.HttpResponseParser:
        p = httptools.HttpResponseParser(self)
        # obs-fold becomes a space, a bare LF ends a line, spaces may follow a
        # chunk size (RFC 9112 5.2, 2.2, 7.1.1); framing (Content-Length,
        # Transfer-Encoding, the chunks themselves) stays strict
        p.set_dangerous_leniencies(
            lenient_headers=True,
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
        )
        return p

    def begin(self, *, no_body: bool = False) -> None:
        """Ready for the answer to the next request (``no_body``: a HEAD or
        CONNECT, whose answer ends with its head)."""
        if self._stale:
            self._p = self._new_parser()
            self._stale = False
        self._no_body = no_body
        self._fed = 0
        self._head_bytes = 0
        self._interim = 0
        self._is_interim = False
        self._out.clear()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.has_head = False
        self.close_delimited = False
        self.keep_alive = False
        self.done = False

    # ---------------------------------------------------------------- input

    def feed(self, data: bytes) -> bytes:
        if self.done:
            if data:
                self.keep_alive = False  # unasked-for bytes: never reuse this connection
            return b""
        try:
            self._p.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, ProtocolError):
                self._stale = True
                raise cause from None
            if not isinstance(cause, _Stop):
                self._stale = True
                raise ProtocolError(f"invalid HTTP response: {cause or exc}") from None
            self._stale = True  # stopped mid-message: the next answer needs a new parser
        except httptools.HttpParserUpgrade:
            self._stale = True
            raise ProtocolError("the backend switched protocols") from None
        except httptools.HttpParserError as exc:
            self._stale = True
            if not self.done:
                raise ProtocolError(str(exc) or type(exc).__name__) from None
            self.keep_alive = False  # garbage after a complete answer
        if not self.has_head:
            self._fed += len(data)
            if self._fed > self.max_head + 4:  # + the blank line that ends it
                self._stale = True
                raise ProtocolError(f"response head longer than {self.max_head} bytes")
        out = self._out
        if not out:
            return b""
        body = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return body

    def feed_eof(self) -> None:
        """The connection closed: the end of a close-delimited body; for any
        other response not yet complete, a `ProtocolError`."""
        self._stale = True
        if self.done:
            return
        if self.close_delimited:
            self.done = True
            return
        if not self.has_head:
            raise ProtocolError("connection closed before a complete response head")
        raise ProtocolError("connection closed before the end of the response body")

    # ---------------------------------------------------------------- llhttp's callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.has_head:
            return  # a trailer (after a chunked body): read and dropped
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.max_head:
            raise ProtocolError(f"response head longer than {self.max_head} bytes")
        if name[-1:] in (b" ", b"\t"):  # llhttp's leniency lets "Name : value" through
            raise ProtocolError(f"whitespace before the colon of {name!r}")
        if value[-1:] in (b" ", b"\t"):
            value = value.rstrip(b" \t")
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_message_begin(self) -> None:
        if self.done:
            self.keep_alive = False  # a second answer nobody asked for
            raise _Stop

    def on_headers_complete(self) -> None:
        p = self._p
        status = p.get_status_code()
        if p.get_http_version() not in ("1.1", "1.0"):
            raise ProtocolError(f"not an HTTP/1.x response (HTTP/{p.get_http_version()})")
        if not 100 <= status <= 999:
            raise ProtocolError(f"bad status code {status}")
        if status < 200:
            if status == 101:
                raise ProtocolError("the backend switched protocols")
            self._is_interim = True  # 100 Continue, 103 Early Hints: the real one follows
            return
        self.status = status
        self.has_head = True
        self.keep_alive = p.should_keep_alive()  # llhttp: any "close" token wins
        transfer = self.headers.get("transfer-encoding")
        if transfer is not None and transfer.strip().lower() != "chunked":
            raise ProtocolError(f"unsupported transfer coding {transfer!r}")
        if self._no_body:
            self.done = True
            raise _Stop
        self.close_delimited = (
            transfer is None and "content-length" not in self.headers and status not in (204, 304)
        )
        if self.close_delimited:
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self._out.append(body)

    def on_message_complete(self) -> None:
        if self._is_interim:
            self._is_interim = False
            self._interim += 1
            if self._interim > self.max_interim:
                raise ProtocolError(f"more than {self.max_interim} interim (1xx) responses")
            self.headers = {}
            self._head_bytes = 0
            return
        self.done = True


class Decoder:
    """A content coding (gzip, deflate) undone as the reader asks.

    ``push`` compressed bytes in; ``pull(n)`` gives at most ``n`` decoded bytes
    (``pending`` says whether input is left to decode); ``finish`` at the end
    of the body checks that the compressed stream was complete. Memory stays
    within what is pushed plus ``n``, whatever the compression ratio.
    """

    __slots__ = ("_queue", "_used", "_z")

    def __init__(self, coding: str) -> None:
        if coding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise ProtocolError(f"unsupported content coding {coding!r}")
        self._queue: deque[memoryview] = deque()
        self._used = False

    @staticmethod
    def for_headers(headers: dict[str, str]) -> Decoder | None:
        """The decoder the response's Content-Encoding needs (None: identity)."""
        coding = headers.get("content-encoding")
        if coding is None:
            return None
        coding = coding.strip().lower()
        return None if coding in ("identity", "") else Decoder(coding)

    def push(self, data: bytes) -> None:
        if data:
            self._queue.append(memoryview(data))
            self._used = True

    @property
    def pending(self) -> bool:
        return not self._z.eof and bool(self._z.unconsumed_tail or self._queue)

    def pull(self, limit: int) -> bytes:
        z, queue = self._z, self._queue
        out: list[bytes] = []
        room = limit
        try:
            while room > 0 and not z.eof:
                src: bytes | memoryview
                if z.unconsumed_tail:
                    src = z.unconsumed_tail
                elif queue:
                    head = queue[0]
                    if len(head) > _INPUT_STEP:  # small steps: the tail zlib keeps stays small
                        src = head[:_INPUT_STEP]
                        queue[0] = head[_INPUT_STEP:]
                    else:
                        src = queue.popleft()
                else:
                    break
                got = z.decompress(src, room)
                room -= len(got)
                out.append(got)
        except zlib.error as exc:
            raise ProtocolError(f"cannot decode the response body: {exc}") from None
        if z.eof:
            queue.clear()  # anything after the compressed stream is dropped
        return b"".join(out)

    def finish(self) -> None:
        if self._used and not self._z.eof:  # (no body at all is no body: HEAD, 204)
            raise ProtocolError("the compressed response body is cut short")
