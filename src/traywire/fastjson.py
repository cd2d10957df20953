"""JSON on the request path: msgspec where it parses, the stdlib where it does not.

msgspec decodes and encodes several times faster than the ``json`` module
(``bench/bench_proxy.py``, README "Benchmarks"). Input msgspec refuses but the
standard library takes (``NaN``, a lone ``\\ud800`` escape, a number out of
range) goes on to ``json`` as before, so every caller keeps its behaviour and
its messages for odd input; only the common case gets faster.
"""

from __future__ import annotations

import json
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
