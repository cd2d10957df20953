"""JSON on the request path: msgspec where it parses, the stdlib where it does not.

msgspec decodes and encodes several times faster than the ``json`` module
(``bench/bench_proxy.py``, README "Benchmarks"). Input msgspec refuses but the
standard library takes (``NaN``, a lone ``\\ud800`` escape, a number out of
range) goes on to ``json`` as before, so every caller keeps its behaviour and
its messages for odd input; only the common case gets faster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_STD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# msgspec's decoder alone, for callers with a full path of their own for what
# it refuses (`traywire.core.fields.json_object`): it raises (msgspec.DecodeError,
# ValidationError, RecursionError) on anything but plain JSON, and refuses every
# lone surrogate escape (``"\\ud800"``), so a string it returns is always valid
# Unicode.
strict: Callable[[bytes], Any] = _decode


_RAW_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
# About this many bytes of JSON are decoded between two pauses of `strict_sliced`.
SLICE = 128 << 10


def strict_sliced(data: bytes) -> Any:
    """`strict`, for a big body decoded on a worker thread: the same result and
    the same refusals, but the GIL is let go (``time.sleep(0)``) every `SLICE`
    bytes or so, so the event loop is not held up for the whole decode (a
    10 MiB body takes ~7 ms in one go; msgspec keeps the GIL while it runs).
    The object's values and a big list's items are found first (msgspec skips
    over them, ~0.3 ms/MiB each pass) and then decoded one by one; anything
    msgspec refuses raises, as `strict` does."""
    top = _RAW_TOP.decode(data)  # a JSON object, or raises
    time.sleep(0)
    out: dict[str, Any] = {}
    done = 0
    for key, value in top.items():
        if len(value) > SLICE and memoryview(value)[0] == 0x5B:  # a big list: '['
            items = _RAW_LIST.decode(value)
            time.sleep(0)
            decoded: list[Any] = []
            for item in items:
                decoded.append(_decode(item))
                done += len(item)
                if done > SLICE:
                    time.sleep(0)
                    done = 0
            out[key] = decoded
        else:
            out[key] = _decode(value)
            done += len(value)
        if done > SLICE:
            time.sleep(0)
            done = 0
    return out


def loads(data: bytes | bytearray | str) -> Any:
    """``json.loads``, faster: raises `ValueError` (or `RecursionError`) as it does."""
    try:
        return _decode(data)
    except (msgspec.MsgspecError, RecursionError):
        return json.loads(data)


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON (``separators=(",", ":")``, non-ASCII kept)."""
    try:
        return _encode(obj)
    except (TypeError, ValueError, OverflowError, msgspec.MsgspecError):
        return _STD.encode(obj).encode()
