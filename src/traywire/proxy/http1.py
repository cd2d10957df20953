"""HTTP/1.1, client side, as plain data: request bytes out, response bytes in.

No sockets, no clock, no event loop (`transport` does the I/O). Just what
traywire needs to talk to its backends, and strict about it:

- requests: a method, a target, headers and a body with its length;
- responses: status line and headers (up to `MAX_HEAD` bytes), then a body
  delimited by Content-Length, chunked transfer coding (trailers read and
  dropped) or the end of the connection; none after 1xx/204/304 or a HEAD;
  interim 1xx responses skipped; ``gzip``/``deflate`` content codings
  decoded (traywire asks for ``identity``, but a server may not listen);
- anything else (a malformed status line or header, a bad chunk size, an
  unknown content coding, a body cut short) raises `ProtocolError`.

Why not aiohttp's client: on the request path it costs about 70 µs of CPU per
request on the benchmark machine, more than all the rest of what traywire does
(see README, "Benchmarks"). This module and `transport` cost a few µs.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

MAX_HEAD = 64 * 1024  # status line + headers
MAX_CHUNK_LINE = 4096  # a chunk-size line, extensions included

_CRLF = b"\r\n"
_HEX = b"0123456789abcdefABCDEF"


class ProtocolError(Exception):
    """The peer broke HTTP/1.1 (or closed the connection mid-response)."""


def encode_request(
    method: str, target: str, host: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """One request as bytes: Host first, then ``headers``, then Content-Length."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r}: line breaks are not allowed")
        lines.append(f"{name}: {value}\r\n")
    if body or method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("latin-1")
    return head + body if body else head


# body modes
_NONE, _LENGTH, _CHUNKED, _CLOSE = 0, 1, 2, 3
# chunked sub-states
_SIZE, _DATA, _DATA_END, _TRAILER = 0, 1, 2, 3


class ResponseParser:
    """Feed it the bytes of one response as they arrive.

    ``feed`` returns the body bytes (decoded) that the data completed; after the
    head, ``status``, ``reason`` and ``headers`` (lower-case names; a repeated
    header keeps its last value) are set; ``done`` turns true at the end of the
    message, and then ``keep_alive`` tells whether the connection may carry the
    next request. Bytes past the end of the message make the connection
    unusable (``keep_alive`` false), they are not a second response.
    """

    __slots__ = (
        "_buf",
        "_chunk_left",
        "_chunk_state",
        "_decoder",
        "_head_request",
        "_left",
        "_mode",
        "done",
        "headers",
        "keep_alive",
        "reason",
        "status",
    )

    def __init__(self, *, head_request: bool = False) -> None:
        self._head_request = head_request
        self._buf = b""
        self._mode = -1  # not yet known: the head is not complete
        self._left = 0
        self._chunk_state = _SIZE
        self._chunk_left = 0
        self._decoder: zlib._Decompress | None = None
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self.done = False

    @property
    def has_head(self) -> bool:
        return self._mode >= 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            if data:
                self.keep_alive = False  # unasked-for bytes: never reuse this connection
            return b""
        if self._mode < 0:
            data = self._buf + data if self._buf else data
            self._buf = b""
            while self._mode < 0:
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    # the last 3 bytes may begin the blank line that ends the head
                    if len(data) - 3 > MAX_HEAD:
                        raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
                    self._buf = data
                    return b""
                if end > MAX_HEAD:
                    raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
                self._head(data[:end])
                data = data[end + 4 :]
            if self.done:
                if data:
                    self.keep_alive = False
                return b""
        mode = self._mode
        if mode == _LENGTH:
            left = self._left
            if len(data) >= left:
                if len(data) > left:
                    self.keep_alive = False
                    data = data[:left]
                self._left = 0
                self.done = True
            else:
                self._left = left - len(data)
            return self._decode(data)
        if mode == _CHUNKED:
            return self._decode(self._chunks(data))
        return self._decode(data)  # _CLOSE: everything until the end

    def feed_eof(self) -> bytes:
        """The connection closed: the end of a close-delimited body; for any
        other response not yet complete, a `ProtocolError`."""
        if self.done:
            return b""
        if self._mode == _CLOSE:
            self.done = True
            self.keep_alive = False
            return self._flush()
        if self._mode < 0:
            raise ProtocolError("connection closed before a complete response head")
        raise ProtocolError("connection closed before the end of the response body")

    # ------------------------------------------------------------------ head

    def _head(self, head: bytes) -> None:
        crlf = head.count(_CRLF)
        if head.count(b"\n") != crlf or head.count(b"\r") != crlf:
            raise ProtocolError("a bare CR or LF in the response head")
        lines = head.split(_CRLF)
        status_line = lines[0]
        version = status_line[:9]
        if version not in (b"HTTP/1.1 ", b"HTTP/1.0 ") or len(status_line) < 12:
            raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        code = status_line[9:12]
        if not code.isdigit() or (len(status_line) > 12 and status_line[12:13] != b" "):
            raise ProtocolError(f"bad status code in {status_line[:80]!r}")
        status = int(code)
        if status < 100:
            raise ProtocolError(f"bad status code {status}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name:
                raise ProtocolError(f"malformed header line {line[:80]!r}")
            key = name.decode("latin-1").lower()
            text = value.strip(b" \t").decode("latin-1")
            if key == "content-length" and headers.get(key, text) != text:
                raise ProtocolError("two different Content-Length headers")
            headers[key] = text
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("the backend switched protocols")
            return  # an interim response (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self.reason = status_line[13:].decode("latin-1")
        self.headers = headers
        connection = headers.get("connection", "").lower()
        if version == b"HTTP/1.1 ":
            self.keep_alive = "close" not in connection
        else:
            self.keep_alive = "keep-alive" in connection
        coding = headers.get("content-encoding", "identity").strip().lower()
        if coding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._decoder = zlib.decompressobj()
        elif coding not in ("identity", ""):
            raise ProtocolError(f"unsupported content coding {coding!r}")
        transfer = headers.get("transfer-encoding", "").strip().lower()
        if self._head_request or status in (204, 304):
            self._mode = _NONE
            self.done = True
        elif transfer:
            if transfer != "chunked":
                raise ProtocolError(f"unsupported transfer coding {transfer!r}")
            self._mode = _CHUNKED
            if "content-length" in headers:
                self.keep_alive = False  # both framings: chunked wins, then close (RFC 9112 6.3)
        elif "content-length" in headers:
            raw = headers["content-length"]
            if not (raw.isascii() and raw.isdigit()):
                raise ProtocolError(f"bad Content-Length {raw!r}")
            self._left = int(raw)
            self._mode = _LENGTH
            if self._left == 0:
                self.done = True
        else:
            self._mode = _CLOSE
            self.keep_alive = False

    # ------------------------------------------------------------------ body

    def _chunks(self, data: bytes) -> bytes:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        out: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size and not self.done:
            state = self._chunk_state
            if state == _DATA:
                take = min(self._chunk_left, size - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._chunk_state = _DATA_END
                continue
            end = data.find(_CRLF, pos)
            if end < 0:
                rest = data[pos:]
                if len(rest) > MAX_CHUNK_LINE:
                    raise ProtocolError("chunk-size line too long")
                self._buf = rest
                break
            if end - pos > MAX_CHUNK_LINE:
                raise ProtocolError("chunk-size or trailer line too long")
            line = data[pos:end]
            pos = end + 2
            if state == _SIZE:
                digits = line.split(b";", 1)[0].strip(b" \t")
                if not digits or len(digits) > 16 or digits.strip(_HEX):
                    raise ProtocolError(f"bad chunk size {line[:40]!r}")
                n = int(digits, 16)
                if n == 0:
                    self._chunk_state = _TRAILER
                else:
                    self._chunk_left = n
                    self._chunk_state = _DATA
            elif state == _DATA_END:
                if line:
                    raise ProtocolError("chunk data longer than its size")
                self._chunk_state = _SIZE
            else:  # _TRAILER: header lines until an empty one
                if not line:
                    self.done = True
        if self.done and pos < size:
            self.keep_alive = False
        return b"".join(out) if len(out) != 1 else out[0]

    def _decode(self, data: bytes) -> bytes:
        if self._decoder is None:
            return data
        try:
            out = self._decoder.decompress(data) if data else b""
            if self.done:
                out += self._decoder.flush()
        except zlib.error as exc:
            raise ProtocolError(f"cannot decode the response body: {exc}") from None
        if self.done and not self._decoder.eof:
            raise ProtocolError("the compressed response body is cut short")
        return out

    def _flush(self) -> bytes:
        if self._decoder is None:
            return b""
        try:
            out = self._decoder.flush()
        except zlib.error as exc:
            raise ProtocolError(f"cannot decode the response body: {exc}") from None
        if not self._decoder.eof:
            raise ProtocolError("the compressed response body is cut short")
        return out
