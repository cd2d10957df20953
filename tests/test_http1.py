"""Tests for `traywire.proxy.http1`: request encoding, the client-side
response parser (llhttp through httptools, with traywire's limits) and the
content-coding decoder.

Pure data in, data out: no sockets. Every malformed case is fed whole and one
byte at a time: the verdict must not depend on how the bytes arrive.
"""

from __future__ import annotations

import gzip
import time
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traywire.proxy.http1 import (
    MAX_HEAD,
    MAX_INTERIM,
    Decoder,
    ProtocolError,
    ResponseParser,
    encode_request,
)


def decoded(p: ResponseParser, pieces: list[bytes]) -> bytes:
    """The body pieces with their content coding undone, as `transport` does."""
    if not p.has_head:
        return b"".join(pieces)
    d = Decoder.for_headers(p.headers)
    if d is None:
        return b"".join(pieces)
    out = []
    for piece in pieces:
        d.push(piece)
        while d.pending:
            out.append(d.pull(1000))
    if p.done:
        d.finish()
    return b"".join(out)


def parse(
    raw: bytes, *, eof: bool = False, head_request: bool = False
) -> tuple[ResponseParser, bytes]:
    """Feed ``raw`` in one piece (then the end of the connection if ``eof``)."""
    p = ResponseParser()
    p.begin(no_body=head_request)
    body = p.feed(raw)
    if eof:
        p.feed_eof()
    return p, decoded(p, [body])


def parse_pieces(pieces: list[bytes], *, eof: bool = False) -> tuple[ResponseParser, bytes]:
    p = ResponseParser()
    body = [p.feed(piece) for piece in pieces]
    if eof:
        p.feed_eof()
    return p, decoded(p, body)


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailer + b"\r\n"


# ================================================================ encode_request


def test_get_without_body_is_exact_with_host_first_and_no_content_length() -> None:
    raw = encode_request("GET", "/v1/models", "127.0.0.1:8080", [("Accept", "*/*")], b"")
    assert raw == b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\n\r\n"


def test_post_headers_keep_their_order_then_content_length_then_body() -> None:
    raw = encode_request(
        "POST", "/v1/chat", "h", [("B-Second", "2"), ("A-First", "1")], b'{"x": 1}'
    )
    assert raw == (
        b"POST /v1/chat HTTP/1.1\r\nHost: h\r\nB-Second: 2\r\nA-First: 1\r\n"
        b'Content-Length: 8\r\n\r\n{"x": 1}'
    )


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_empty_body_of_a_non_get_method_says_content_length_zero(method: str) -> None:
    raw = encode_request(method, "/", "h", [], b"")
    assert raw.endswith(b"\r\nContent-Length: 0\r\n\r\n")
    assert raw.startswith(f"{method} / HTTP/1.1\r\nHost: h\r\n".encode())


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_and_head_without_body_have_no_content_length(method: str) -> None:
    assert b"content-length" not in encode_request(method, "/", "h", [], b"").lower()


def test_get_with_a_body_says_its_length() -> None:
    raw = encode_request("GET", "/", "h", [], b"abc")
    assert raw.endswith(b"Content-Length: 3\r\n\r\nabc")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Bad", "a\r\nInjected: 1"),
        ("X-Bad", "a\nInjected: 1"),
        ("X-Bad", "a\rb"),
        ("X-Bad\r\nInjected", "1"),
        ("X-Bad\n", "1"),
        ("X\r", "1"),
    ],
)
def test_line_breaks_in_a_header_name_or_value_raise(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="line breaks"):
        encode_request("POST", "/", "h", [("Ok", "1"), (name, value)], b"x")


# ================================================================ framing


def test_content_length_body() -> None:
    p, body = parse(
        b"HTTP/1.1 201 Created Just Now\r\nContent-Type: text/plain\r\n"
        b"X-Empty:\r\nX-Pad: \t padded \t\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert (p.status, body, p.done, p.keep_alive) == (
        201,
        b"hello",
        True,
        True,
    )
    assert p.headers == {
        "content-type": "text/plain",
        "x-empty": "",
        "x-pad": "padded",
        "content-length": "5",
    }


def test_status_line_without_reason_and_a_repeated_header_keeps_the_last() -> None:
    p, body = parse(b"HTTP/1.1 200\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n")
    assert (p.status, p.headers["x-a"], body, p.done) == (200, "2", b"", True)


def test_nothing_is_known_until_the_head_is_complete() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\nContent-Len") == b""
    assert (p.has_head, p.status, p.done) == (False, 0, False)
    assert p.feed(b"gth: 4\r\n\r") == b""
    assert not p.has_head
    assert p.feed(b"\nab") == b"ab"
    assert (p.has_head, p.status, p.done) == (True, 200, False)
    assert p.feed(b"cd") == b"cd"
    assert p.done and p.keep_alive


def test_bytes_past_the_content_length_are_dropped_and_forbid_reuse() -> None:
    p, body = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert (body, p.done, p.keep_alive) == (b"ok", True, False)


def test_bytes_arriving_after_the_end_forbid_reuse_but_an_empty_feed_does_not() -> None:
    p, _ = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert p.feed(b"") == b""
    assert p.keep_alive
    assert p.feed(b"x") == b""
    assert p.done and not p.keep_alive


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"1 ;ext\r\n \r\n"
        b"00A\r\n0123456789\r\n"
        b"0;last=1\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n"
    )
    p, body = parse(raw)
    assert (body, p.done, p.keep_alive) == (b"hello 0123456789", True, True)
    assert "x-trailer" not in p.headers  # trailers are read and dropped


def test_chunked_body_is_not_done_before_the_final_empty_line() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"abc")
    p, body = parse(raw[:-2])
    assert (body, p.done) == (b"abc", False)
    assert p.feed(b"\r\n") == b""
    assert p.done and p.keep_alive


def test_chunked_data_past_the_last_chunk_forbids_reuse() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"abc") + b"junk"
    p, body = parse(raw)
    assert (body, p.done, p.keep_alive) == (b"abc", True, False)


def test_transfer_encoding_with_content_length_is_refused() -> None:
    """Both framings (RFC 9112 6.3 calls it a possible smuggling attempt): llhttp refuses."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    with pytest.raises(ProtocolError, match="Content-Length"):
        parse(raw + chunked(b"abcdef"))


def test_close_delimited_body_ends_with_the_connection() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst ") == b"first "
    assert p.feed(b"second") == b"second"
    assert not p.done and not p.keep_alive
    p.feed_eof()
    assert p.done and not p.keep_alive
    p.feed_eof()  # idempotent once done
    assert p.done


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body_whatever_the_headers_say(status: int) -> None:
    raw = b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status
    p, body = parse(raw)
    assert (p.status, body, p.done, p.keep_alive) == (status, b"", True, True)
    assert p.feed(b"0123456789") == b""
    assert not p.keep_alive


def test_head_response_has_no_body() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Encoding: gzip\r\n\r\n"
    p, body = parse(raw, head_request=True)
    assert (p.status, p.headers["content-length"], body, p.done, p.keep_alive) == (
        200,
        "100",
        b"",
        True,
        True,
    )
    # the same head, not for a HEAD request, waits for 100 bytes
    assert not parse(raw)[0].done


def test_interim_responses_are_skipped() -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    p, body = parse(raw)
    assert (p.status, body, p.done) == (200, b"ok", True)
    assert "link" not in p.headers
    p, body = parse_pieces([raw[:26], raw[26:80], raw[80:]])
    assert (p.status, body, p.done) == (200, b"ok", True)


def test_interim_responses_are_capped_and_cost_linear_time() -> None:
    """Issue 12, finding 4: endless 100 Continue cost quadratic time and never ended."""
    one = b"HTTP/1.1 100 Continue\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    p, body = parse(one * MAX_INTERIM + final)
    assert (p.status, body, p.done) == (200, b"ok", True)
    with pytest.raises(ProtocolError, match="interim"):
        parse(one * (MAX_INTERIM + 1) + final)
    # a megabyte of them fails at once, however it is split
    flood = one * ((1 << 20) // len(one))
    t0 = time.perf_counter()
    with pytest.raises(ProtocolError, match="interim"):
        parse(flood)
    with pytest.raises(ProtocolError, match="interim"):
        parse_pieces([flood[i : i + 7] for i in range(0, 2000, 7)])
    assert time.perf_counter() - t0 < 0.1


def test_a_bare_lf_head_is_parsed_at_once() -> None:
    """Issue 12, finding 4: a head with bare LFs waited for the timeout."""
    p, body = parse(b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok")
    assert (p.status, p.headers["x-a"], body, p.done, p.keep_alive) == (200, "1", b"ok", True, True)
    p, body = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok")  # mixed
    assert (body, p.done) == (b"ok", True)


def test_obs_fold_is_unfolded_to_a_space() -> None:
    """Issue 12, finding 4: RFC 9112 5.2 asks a user agent to replace obs-fold
    with spaces; it was rejected."""
    p, body = parse(
        GOOD + b"X-Long: first\r\n  continued\r\n\tmore: x\r\nContent-Length: 2\r\n\r\nok"
    )
    assert p.headers["x-long"].split() == ["first", "continued", "more:", "x"]
    assert (body, p.done) == (b"ok", True)


def test_a_long_chunk_extension_is_skipped_without_buffering() -> None:
    raw = CHUNKED + b"5;" + b"x" * (1 << 20) + b"\r\nhello\r\n0\r\n\r\n"
    p, body = parse_pieces([raw[i : i + 65536] for i in range(0, len(raw), 65536)])
    assert (body, p.done) == (b"hello", True)


def test_a_parser_carries_one_answer_after_another() -> None:
    p = ResponseParser()
    for i in range(3):
        p.begin(no_body=i == 1)
        assert p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n") == b""
        assert p.has_head and p.done is (i == 1)
        if i != 1:
            assert p.feed(b"%d" % i) == b"%d" % i
        assert p.done and p.keep_alive


def test_an_interim_response_alone_is_no_head() -> None:
    p, _ = parse(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert (p.has_head, p.status) == (False, 0)
    with pytest.raises(ProtocolError):
        p.feed_eof()


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0", True),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive", False),  # close-delimited body
        (b"HTTP/1.1 200 OK", False),  # close-delimited body
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 0",
            False,
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0", False),
    ],
    ids=[
        "1.1",
        "1.1 close",
        "1.1 Close",
        "1.1 keep-alive",
        "1.0",
        "1.0 keep-alive",
        "1.0 Keep-Alive",
        "1.0 keep-alive no length",
        "1.1 no length",
        "close then keep-alive",  # issue 12, finding 4: it kept the connection
        "keep-alive, close",
    ],
)
def test_keep_alive_rules(head: bytes, keep_alive: bool) -> None:
    p, _ = parse(head + b"\r\n\r\n", eof=True)
    assert p.done
    assert p.keep_alive is keep_alive


# ================================================================ content codings

TEXT = b"The quick brown fox jumps over the lazy dog. " * 50


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("x-gzip", gzip.compress(TEXT)),
        ("GZIP", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("identity", TEXT),
    ],
    ids=["gzip", "x-gzip", "GZIP", "deflate", "identity"],
)
def test_content_codings_are_decoded(coding: str, encoded: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\n" % coding.encode()
    p, body = parse(head + b"Content-Length: %d\r\n\r\n" % len(encoded) + encoded)
    assert (body, p.done) == (TEXT, True)
    p, body = parse(
        head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(encoded[:7], encoded[7:])
    )
    assert (body, p.done) == (TEXT, True)
    p, body = parse(head + b"\r\n" + encoded, eof=True)
    assert (body, p.done) == (TEXT, True)


def test_gzip_body_fed_byte_by_byte() -> None:
    encoded = gzip.compress(TEXT)
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(encoded)
    p, body = parse_pieces([bytes([b]) for b in raw + encoded])
    assert (body, p.done, p.keep_alive) == (TEXT, True, True)


# ================================================================ malformed input

GOOD = b"HTTP/1.1 200 OK\r\n"
CHUNKED = GOOD + b"Transfer-Encoding: chunked\r\n\r\n"
# a valid gzip header, then a deflate block of the reserved type 3
BAD_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x07garbage"
RAW_DEFLATE = zlib.compress(TEXT)[2:-4]  # deflate data without its zlib wrapper

MALFORMED = {
    "not http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "http/2 line": b"HTTP/2 200 OK\r\n\r\n",
    "http/1.2": b"HTTP/1.2 200 OK\r\n\r\n",
    "lower-case version": b"http/1.1 200 OK\r\n\r\n",
    "short status": b"HTTP/1.1 20\r\n\r\n",
    "non-digit status": b"HTTP/1.1 2x0 OK\r\n\r\n",
    "status then no space": b"HTTP/1.1 200OK\r\n\r\n",
    "two spaces": b"HTTP/1.1  200 OK\r\n\r\n",
    "status below 100": b"HTTP/1.1 099 Low\r\n\r\n",
    "101 switching": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    "header without colon": GOOD + b"Content-Length 0\r\n\r\n",
    "empty header name": GOOD + b": value\r\n\r\n",
    "space before colon": GOOD + b"Content-Length : 0\r\n\r\n",
    "tab before colon": GOOD + b"Content-Length\t: 0\r\n\r\n",
    "space in name": GOOD + b"Content Length: 0\r\n\r\n",
    "content-length letters": GOOD + b"Content-Length: abc\r\n\r\n",
    "content-length negative": GOOD + b"Content-Length: -1\r\n\r\n",
    "content-length plus": GOOD + b"Content-Length: +5\r\n\r\n",
    "content-length hex": GOOD + b"Content-Length: 0x10\r\n\r\n",
    "content-length fraction": GOOD + b"Content-Length: 1.5\r\n\r\n",
    "content-length list": GOOD + b"Content-Length: 5, 5\r\n\r\n",
    "content-length empty": GOOD + b"Content-Length: \r\n\r\n",
    "transfer gzip": GOOD + b"Transfer-Encoding: gzip\r\n\r\n",
    "transfer gzip, chunked": GOOD + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
    "transfer identity": GOOD + b"Transfer-Encoding: identity\r\n\r\n",
    "chunk size 0x1": CHUNKED + b"0x1\r\na\r\n0\r\n\r\n",
    "chunk size +5": CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n",
    "chunk size -1": CHUNKED + b"-1\r\n",
    "chunk size 1_0": CHUNKED + b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
    "chunk size inner space": CHUNKED + b"1 0\r\n",
    "chunk size empty": CHUNKED + b"\r\nhello\r\n0\r\n\r\n",
    "chunk size only extension": CHUNKED + b";ext=1\r\n",
    "chunk size not hex": CHUNKED + b"g\r\n",
    "chunk size 17 digits": CHUNKED + b"1" + b"0" * 16 + b"\r\n",
    "transfer-encoding and length": GOOD
    + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "two content-lengths": GOOD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "http/0.9-ish": b"HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n",
    "chunk data too long": CHUNKED + b"5\r\nhelloX\r\n0\r\n\r\n",
    "chunk data no crlf": CHUNKED + b"5\r\nhello0\r\n\r\n",
    "content-encoding br": GOOD + b"Content-Encoding: br\r\nContent-Length: 0\r\n\r\n",
    "content-encoding compress": GOOD + b"Content-Encoding: compress\r\nContent-Length: 0\r\n\r\n",
    "stacked content-encoding": GOOD + b"Content-Encoding: gzip, deflate\r\n\r\n",
    "not gzip": GOOD + b"Content-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
    "corrupt gzip": GOOD
    + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(BAD_GZIP)
    + BAD_GZIP,
    "raw deflate": GOOD
    + b"Content-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(RAW_DEFLATE)
    + RAW_DEFLATE,
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_response_raises(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(raw)


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_response_raises_when_fed_byte_by_byte(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_pieces([bytes([b]) for b in raw])


def test_head_longer_than_max_head_raises_complete_or_not() -> None:
    big = GOOD + b"X-Big: " + b"a" * MAX_HEAD + b"\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(ProtocolError, match="head longer"):
        parse(big)
    p = ResponseParser()  # a head that never ends: raises once past the limit
    p.feed(GOOD + b"X-Big: " + b"a" * (MAX_HEAD - 100))
    with pytest.raises(ProtocolError, match="head longer"):
        p.feed(b"a" * 200)


def test_a_head_just_under_the_limit_is_fine() -> None:
    head = GOOD + b"Content-Length: 0\r\nX-Big: "
    head += b"a" * (MAX_HEAD - 1000 - len(head))
    p, _ = parse(head + b"\r\n\r\n")
    assert p.done and len(p.headers["x-big"]) > MAX_HEAD - 1100


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        GOOD + b"Content-Length: 10\r\n\r\n",
        GOOD + b"Content-Length: 10\r\n\r\nshort",
        CHUNKED,
        CHUNKED + b"5\r\nhel",
        CHUNKED + b"5\r\nhello\r\n",
        CHUNKED + b"5\r\nhello\r\n0\r\n",
        CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n",
    ],
    ids=[
        "nothing",
        "half a head",
        "no body",
        "half a body",
        "no chunk",
        "half a chunk",
        "no last chunk",
        "no final line",
        "half the trailers",
    ],
)
def test_connection_closed_before_the_end_raises(raw: bytes) -> None:
    p = ResponseParser()
    p.feed(raw)
    with pytest.raises(ProtocolError, match="connection closed"):
        p.feed_eof()
    assert not p.done


def test_corrupt_gzip_in_a_close_delimited_body_raises() -> None:
    with pytest.raises(ProtocolError, match="decode"):
        parse_pieces([GOOD + b"Content-Encoding: gzip\r\n\r\n", BAD_GZIP])


def test_a_gzip_bomb_is_decoded_only_as_far_as_the_reader_asks() -> None:
    """Issue 12, finding 1: 1 MB of gzip expanding to 1 GiB was decoded at once."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    bomb = b"".join(z.compress(block) for _ in range(256)) + z.flush()  # 256 MiB of zeros
    assert len(bomb) < 300_000
    d = Decoder("gzip")
    d.push(bomb)
    t0 = time.perf_counter()
    out = d.pull(1 << 20)
    assert len(out) == 1 << 20 and d.pending
    assert time.perf_counter() - t0 < 0.1
    total = len(out)
    while d.pending:
        piece = d.pull(256 * 1024)
        assert len(piece) <= 256 * 1024
        total += len(piece)
    assert total == 256 << 20
    d.finish()


# ================================================================ bugs found


def test_content_length_superscript_digit_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse(GOOD + b"Content-Length: \xb2\r\n\r\nab")


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(TEXT)[:-8]),
        ("gzip", gzip.compress(TEXT)[:40]),
        ("deflate", zlib.compress(TEXT)[:-4]),
        ("deflate", zlib.compress(TEXT)[:30]),
    ],
    ids=["gzip without trailer", "gzip cut in half", "deflate without adler32", "deflate cut"],
)
def test_truncated_compressed_body_raises(coding: str, encoded: bytes) -> None:
    raw = GOOD + b"Content-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (
        coding.encode(),
        len(encoded),
    )
    with pytest.raises(ProtocolError):
        parse(raw + encoded)
    with pytest.raises(ProtocolError):  # close-delimited: the same at the end of the connection
        parse(GOOD + b"Content-Encoding: %s\r\n\r\n" % coding.encode() + encoded, eof=True)


@pytest.mark.parametrize("value", [b"a\nInjected: 1", b"a\rb"], ids=["LF", "CR"])
def test_line_break_inside_a_header_value(value: bytes) -> None:
    try:
        p, _ = parse(GOOD + b"X-A: " + value + b"\r\nContent-Length: 0\r\n\r\n")
    except ProtocolError:
        return
    assert "\n" not in p.headers["x-a"] and "\r" not in p.headers["x-a"]


def test_head_of_exactly_max_head_bytes_does_not_depend_on_the_split() -> None:
    head = GOOD + b"Content-Length: 0\r\nX-Big: "
    raw = head + b"a" * (MAX_HEAD - len(head)) + b"\r\n\r\n"
    assert parse(raw)[0].done  # accepted in one piece
    p, _ = parse_pieces([raw[:-1], raw[-1:]])
    assert p.done


# ================================================================ property: split anywhere


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bytes, bool]:
    """(raw response, its decoded body, whether it ends with the connection)."""
    body = draw(st.binary(max_size=3000) | st.just(TEXT))
    coding = draw(st.sampled_from(["identity", "gzip", "deflate"]))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    encoded = {"identity": body, "gzip": gzip.compress(body), "deflate": zlib.compress(body)}[
        coding
    ]
    head = b""
    if draw(st.booleans()):
        head += b"HTTP/1.1 100 Continue\r\n\r\n"
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    head += b"HTTP/" + version + b" 200 OK\r\nX-Test: v\r\n"
    if coding != "identity":
        head += b"Content-Encoding: " + coding.encode() + b"\r\n"
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(encoded) + encoded, body, False
    if framing == "close":
        return head + b"\r\n" + encoded, body, True
    cuts = sorted(draw(st.lists(st.integers(0, len(encoded)), max_size=6)))
    pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
    ext = draw(st.sampled_from([b"", b";a=b", b" ;x"]))
    trailer = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
    raw = head + b"Transfer-Encoding: chunked\r\n\r\n"
    raw += b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext, p) for p in pieces if p)
    return raw + b"0" + ext + b"\r\n" + trailer + b"\r\n", body, False


@settings(max_examples=300, deadline=None)
@given(response=responses(), data=st.data())
def test_split_anywhere_gives_the_same_response(
    response: tuple[bytes, bytes, bool], data: st.DataObject
) -> None:
    raw, body, eof = response
    whole, whole_body = parse(raw, eof=eof)
    assert whole_body == body and whole.done and whole.status == 200
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(raw) - 1), max_size=20))))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    split, split_body = parse_pieces(pieces, eof=eof)
    assert split_body == body
    assert (split.status, split.headers, split.done, split.keep_alive) == (
        whole.status,
        whole.headers,
        whole.done,
        whole.keep_alive,
    )
