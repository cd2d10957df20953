"""Checking the fields of an inbound JSON body: the pieces every dialect's
validator is made of.

`json_object` turns a body's bytes into a JSON object within the inbound
bounds (nesting depth, no lone surrogates); the ``opt_*`` checks take a
field that may be absent (``null`` means "not given", as the APIs treat it)
and raise `BadRequest` naming it when it has the wrong type or range, as
``"<param>: <problem>"``. Type names in messages are: null, boolean, int,
float, string, list, object. Pure: no I/O.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any, NoReturn

from ..errors import TraywireError

__all__ = [
    "MAX_DEPTH",
    "MAX_MODEL",
    "BadRequest",
    "body_object",
    "describe",
    "fail",
    "is_int",
    "is_num",
    "json_object",
    "model_name",
    "name_str",
    "objects",
    "opt_bool",
    "opt_int",
    "opt_list",
    "opt_num",
    "opt_obj",
    "opt_stop",
    "opt_str",
    "positive",
    "req_str",
    "str_list",
    "tname",
]


class BadRequest(TraywireError):
    """A request body the proxy refuses (answered with a 400 in the caller's dialect)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


_TYPE_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "int",
    float: "float",
    str: "string",
    list: "list",
    dict: "object",
}


def tname(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def fail(param: str, problem: str) -> NoReturn:
    raise BadRequest(f"{param}: {problem}", param)


MAX_DEPTH = 64  # nesting of objects and lists in a request body
MAX_MODEL = 256  # characters of a model name
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


# A body this small skips the nesting walk when its brackets are few (counted
# in C); a bigger one is walked, which costs little (see `_check_depth`).
_SMALL = 4096


def json_object(
    raw: bytes,
    loads: Callable[[bytes], Any] = json.loads,
    strict: Callable[[bytes], Any] | None = None,
) -> dict[str, Any]:
    """A request body's bytes as a JSON object, or BadRequest: not JSON, not an
    object, nested deeper than `MAX_DEPTH`, or holding a lone UTF-16 surrogate
    (``"\\ud800"``: JSON allows the escape, but it is no character and no
    backend could be sent it). ``loads``: a faster decoder that raises as
    ``json.loads`` does (the proxy's, `traywire.fastjson.loads`). ``strict``:
    one tried first that refuses every lone surrogate and raises on anything
    it does not take (`traywire.fastjson.strict`): what it decodes needs no
    surrogate scan; what it refuses goes through ``loads`` and every check,
    for the same outcome and message as without it."""
    if strict is not None:
        try:
            body = strict(raw)
        except Exception:  # refused: the full path below names the problem
            pass
        else:
            if isinstance(body, dict):
                if len(raw) > _SMALL or raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
                    _check_depth(body)
                return body
    if not raw or raw.isspace():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        body = loads(raw)
    except RecursionError:
        raise BadRequest(f"request body: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body: expected a JSON object")
    # (byte counts in C first: an ordinary body skips both walks)
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        _check_depth(body)
    if _SURROGATE.search(raw):
        _check_text(body)
    return body


def _check_depth(body: dict[str, Any]) -> None:
    """BadRequest if ``body`` (a decoded JSON object) nests deeper than `MAX_DEPTH`.

    Only the containers the garbage collector tracks are walked into: CPython
    (and msgspec, which follows its rule) leaves a dict untracked only while it
    holds no dict or list, and nothing else JSON decodes to is tracked; so an
    untracked child is a leaf one level down, and ``filter(gc.is_tracked, ...)``
    skips, in C, the thousands of plain ``{"role": ..., "content": ...}``
    messages of a big body. Below a container at the limit, any container is
    too deep, tracked or not."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth >= MAX_DEPTH:
            if any(isinstance(v, dict | list) for v in children):
                raise BadRequest(f"request body: nested deeper than {MAX_DEPTH} levels")
            continue
        stack.extend(zip(filter(gc.is_tracked, children), repeat(depth + 1)))


def _check_text(body: object) -> None:
    stack: list[object] = [body]
    while stack:
        value = stack.pop()
        texts: list[str] = []
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            texts.extend(k for k in value if isinstance(k, str))
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest(
                    "request body: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), "
                    "which is not a character"
                ) from None


def body_object(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"request body: expected a JSON object, got {tname(body)}")
    return body


def positive(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: object) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and math.isfinite(v)
    )


def model_name(body: Mapping[str, Any]) -> str:
    v = body.get("model")
    if v is None:
        fail("model", "required string")
    if not isinstance(v, str):
        fail("model", f"expected a string, got {tname(v)}")
    if not v.strip():
        fail("model", "must not be empty")
    if len(v) > MAX_MODEL:
        fail("model", f"longer than {MAX_MODEL} characters")
    return v


def req_str(d: Mapping[str, Any], key: str, path: str) -> str:
    """A string that must be there (it may be empty)."""
    v = d.get(key)
    if not isinstance(v, str):
        fail(path, f"expected a string, got {tname(v)}")
    return v


def name_str(d: Mapping[str, Any], key: str, path: str) -> str:
    """A non-empty string that must be there (a name, an id)."""
    v = d.get(key)
    if not isinstance(v, str) or not v:
        fail(path, "required string")
    return v


def opt_list(d: Mapping[str, Any], key: str, path: str) -> list[Any] | None:
    v = d.get(key)
    if v is not None and not isinstance(v, list):
        fail(path, f"expected a list, got {tname(v)}")
    return v


def objects(
    items: Sequence[object], path: str, what: str = "an object"
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, item) for each item of a list, each checked to be an object
    (``what`` names one in the message)."""
    for k, item in enumerate(items):
        p = f"{path}[{k}]"
        if not isinstance(item, dict):
            fail(p, f"expected {what}, got {tname(item)}")
        yield p, item


def opt_bool(d: Mapping[str, Any], key: str, path: str) -> None:
    v = d.get(key)
    if v is not None and not isinstance(v, bool):
        fail(path, f"expected a boolean, got {tname(v)}")


def opt_str(d: Mapping[str, Any], key: str, path: str) -> None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        fail(path, f"expected a string, got {tname(v)}")


def opt_obj(d: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    v = d.get(key)
    if v is not None and not isinstance(v, dict):
        fail(path, f"expected an object, got {tname(v)}")
    return v


def opt_int(
    d: Mapping[str, Any], key: str, path: str, lo: int | None = None, hi: int | None = None
) -> None:
    v = d.get(key)
    if v is None:
        return
    ok = is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
    if ok:
        return
    if lo == 1 and hi is None:
        want = "a positive integer"
    elif lo == 0 and hi is None:
        want = "a non-negative integer"
    elif lo is not None and hi is not None:
        want = f"an integer between {lo} and {hi}"
    else:
        want = "an integer"
    fail(path, f"expected {want}, got {describe(v)}")


def opt_num(
    d: Mapping[str, Any], key: str, path: str, lo: float | None = None, hi: float | None = None
) -> None:
    v = d.get(key)
    if v is None:
        return
    if is_num(v) and (lo is None or v >= lo) and (hi is None or v <= hi):
        return
    if isinstance(v, float) and not math.isfinite(v):
        fail(path, f"expected a finite number, got {v}")
    want = (
        f"a number between {lo:g} and {hi:g}" if lo is not None and hi is not None else ("a number")
    )
    fail(path, f"expected {want}, got {describe(v)}")


def describe(v: object) -> str:
    """The value itself for numbers and short strings, else its type name."""
    if is_num(v) or (isinstance(v, str) and len(v) <= 40):
        return repr(v)
    return tname(v)


def str_list(v: object, path: str, *, allow_str: bool, what: str) -> None:
    if isinstance(v, str) and allow_str:
        return
    if not isinstance(v, list):
        fail(path, f"expected {what}, got {tname(v)}")
    for i, item in enumerate(v):
        if not isinstance(item, str):
            fail(f"{path}[{i}]", f"expected a string, got {tname(item)}")


def opt_stop(d: Mapping[str, Any], key: str, path: str) -> None:
    v = d.get(key)
    if v is not None:
        str_list(v, path, allow_str=True, what="a string or a list of strings")
