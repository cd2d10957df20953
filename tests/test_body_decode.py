"""A request body's bytes to a checked JSON object (`fields.json_object`), and
the checks' fast paths for big bodies: each gives the outcome and the message
the full path gives, for every input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traywire import fastjson
from traywire.core import fields, validate
from traywire.core.fields import MAX_DEPTH, BadRequest, json_object


def _outcome(raw: bytes, **kw: Any) -> tuple[str, object]:
    try:
        return "ok", json_object(raw, **kw)
    except BadRequest as exc:
        return "refused", exc.message


_FAST = {"loads": fastjson.loads, "strict": fastjson.strict}  # the proxy's


def _nested(depth: int, shape: str, leaf: str) -> object:
    """A JSON object whose deepest container sits at ``depth`` (the object is 1)."""
    inner: object = json.loads(leaf)
    for level in range(depth - 1, 0, -1):
        inner = [inner] if shape == "list" or (shape == "mixed" and level % 2) else {"k": inner}
    return {"model": "m", "x": inner} if depth > 1 else inner


@pytest.mark.parametrize("shape", ["list", "dict", "mixed"])
@pytest.mark.parametrize("leaf", ["{}", "[]", '{"a": 1, "b": "s"}', "[1, 2]"])
@pytest.mark.parametrize("pad", [0, 10_000])  # small bodies count brackets first, big ones walk
def test_nesting_is_refused_at_65_levels_exactly(shape: str, leaf: str, pad: int) -> None:
    for depth, allowed in ((MAX_DEPTH - 1, True), (MAX_DEPTH, True), (MAX_DEPTH + 1, False)):
        body = _nested(depth - 1, shape, leaf)  # the leaf container adds a level
        assert isinstance(body, dict)
        body["pad"] = "p" * pad
        raw = json.dumps(body).encode()
        for kw in (_FAST, {}):
            kind, got = _outcome(raw, **kw)
            if allowed:
                assert (kind, got) == ("ok", body), (depth, kw)
            else:
                assert (kind, got) == ("refused", "request body: nested deeper than 64 levels")


def test_a_deep_value_among_thousands_of_plain_messages_is_found() -> None:
    turns: list[Any] = [{"role": "user", "content": "x" * 50} for _ in range(3000)]
    # body 1, messages 2, a message 3: its "extra" object at 4, k + 1 levels deep
    for k, kind in ((MAX_DEPTH - 3, "refused"), (MAX_DEPTH - 4, "ok")):
        for shape in ("dict", "mixed"):
            extra = _nested(k, shape, "{}")
            turns[1717] = {"role": "user", "content": "x", "extra": extra}
            raw = json.dumps({"model": "m", "messages": turns}).encode()
            assert _outcome(raw, **_FAST)[0] == kind, (k, shape)
            assert _outcome(raw)[0] == kind, (k, shape)


ODD = [
    b"",
    b"  \n",
    b"[1]",
    b'"s"',
    b"{",
    b'{"a": NaN}',
    b'{"a": 1e400}',
    b'{"a": 123456789012345678901234567890}',
    b'{"a": 1, "a": 2}',
    b'{"a": "\\ud800"}',
    b'{"\\udc00": 1}',
    b'{"a": ["ok", {"b": "x\\udfffy"}]}',
    b'{"a": "\\ud83d\\ude00"}',
    b'{"a": "\\udc00\\ud800"}',
    b'{"a": "\xff"}',
    b'\xef\xbb\xbf{"a": 1}',
    b'{"a": "tab\there"}',
    b'{"a": 1} x',
    b'{"m":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"m":' + b"[" * 200 + b"]" * 200 + b"}",
]


_BIG = b"x" * 300_000
_TURN = b'{"role":"user","content":"' + b"y" * 900 + b'"}'
_TURNS = b"[" + b",".join([_TURN] * 400) + b"]"


def _big(*middle: bytes) -> bytes:
    return b'{"model":"m","pad":"' + _BIG + b'",' + b"".join(middle) + b',"z":[1,{"a":null}]}'


BIG_ODD = [
    _big(b'"messages":' + _TURNS),
    _big(b'"n":1.5,"e":1e5,"t":true,"f":false,"u":null,"i":-0,"s":"","l":[],"o":{}'),
    _big(b'"messages":' + _TURNS[:-1] + b',{"role":"user","content":"\\ud800"}]'),
    _big(b'"messages":' + _TURNS[:-1] + b',{"role":"user","content":NaN}]'),
    _big(b'"messages":' + _TURNS[:-1] + b",1e400]"),
    _big(b'"messages":' + _TURNS[:-1] + b",]"),
    _big(b'"messages":' + _TURNS + b',"messages":[]'),  # the last one counts
    _big(b'"m":' + b"[" * 70 + _TURNS + b"]" * 70),
    _big(b'"prompt":"' + _BIG + b'\\udfff"'),
    _big(b'"\\ud800":1'),
    _big(b'"messages":' + _TURNS) + b"x",
    b"[" + _TURNS + b"]",
]


@pytest.mark.parametrize("raw", ODD + BIG_ODD)
def test_the_strict_decoder_changes_no_outcome_or_message(raw: bytes) -> None:
    full = _outcome(raw, loads=fastjson.loads)
    assert _outcome(raw, **_FAST) == full
    assert _outcome(raw) == full  # the standard library's


_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
_role = st.sampled_from(["user", "assistant", "system", "developer", "tool", "function", "x", 3])
_message = st.one_of(
    # plain turns, the fast paths' (and every role, valid or not, with them)
    st.fixed_dictionaries({"role": _role, "content": st.text(max_size=5)}),
    st.fixed_dictionaries(
        {"role": _role, "content": _value},
        optional={"name": _value, "tool_call_id": _value, "images": _value},
    ),
    _value,
)


def _reference(check: Any, msgs: list[Any]) -> tuple[str, object]:
    """What the per-message check alone makes of the messages."""
    try:
        out = [check(m, i) for i, m in enumerate(msgs)]
    except BadRequest as exc:
        return "refused", exc.message
    users = [text for role, text, _ in out if role == "user"]
    return "ok", ("\n".join(text for _, text, _ in out), users[-1] if users else "")


def _agree(msgs: list[Any]) -> None:
    for parse, check in (
        (validate.openai_chat, validate._openai_message),
        (validate.ollama_chat, validate._ollama_message),
    ):
        try:
            r = parse({"model": "m", "messages": msgs})
            got: tuple[str, object] = "ok", (r.prompt, r.last_user)
        except BadRequest as exc:
            got = "refused", exc.message
        assert got == _reference(check, msgs), msgs


@given(st.lists(_message, min_size=1, max_size=6))
def test_plain_message_fast_paths_agree_with_the_full_check(msgs: list[Any]) -> None:
    _agree(msgs)


@pytest.mark.parametrize("role", ["user", "assistant", "system", "developer", "tool", "function",
                                  "x", 3, None, ["user"]])  # fmt: skip
@pytest.mark.parametrize("content", ["text", "", None, 3, ["a"], [{"type": "text", "text": "t"}]])
def test_every_two_field_message_agrees_with_the_full_check(role: object, content: object) -> None:
    plain = {"role": role, "content": content}
    _agree([plain])
    _agree([{"role": "user", "content": "before"}, plain, {"role": "assistant", "content": "a"}])
    _agree([{"content": content, "role": role}])  # key order
    _agree([{"role": role, "text": content}])  # two fields, not those two


def test_fields_needs_no_fast_decoder() -> None:
    # core's default is the standard library's, as before
    assert fields.json_object(b'{"a": [1]}') == {"a": [1]}
