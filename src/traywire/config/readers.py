"""Typed readers over merged config data, and the one error format.

Every error is ``file:line key.path: message``: the line is where the layer
that set the value wrote it (the origin kept by `layers.Layers`); a value
with no origin of its own is reported at its nearest ancestor that has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NoReturn, TypeVar, cast

from ..core.schema import SWITCH_PLACEHOLDERS, format_path
from ..errors import ConfigError

_T = TypeVar("_T")


class Reader:
    """Reads values out of the merged data; every failure names file:line and key path."""

    def __init__(self, data: dict[str, Any], origins: dict[str, str], sources: tuple[str, ...]):
        self.data = data
        self.origins = origins
        self.sources = sources

    # -- reporting
    def where(self, path: tuple[Any, ...]) -> str:
        p = path
        while True:
            found = self.origins.get(format_path(p))
            if found:
                return found
            if not p:
                return self.sources[-1] if self.sources else "<config>"
            p = p[:-1]

    def fail(self, path: tuple[Any, ...], msg: str) -> NoReturn:
        raise ConfigError(f"{self.where(path)} {format_path(path) or '<top level>'}: {msg}")

    # -- typed readers
    def mapping(
        self,
        value: Any,
        path: tuple[Any, ...],
        allowed: Iterable[str],
        required: Iterable[str] = (),
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {kind(value)}")
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                import difflib  # only for the error's hint

                hint = difflib.get_close_matches(key, allowed, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.fail(
                    (*path, key), f"unknown key{extra}; expected one of: {', '.join(allowed)}"
                )
        missing = [key for key in required if key not in value]
        if len(missing) == 1:
            self.fail(path, f"missing required key {missing[0]!r}")
        if missing:
            # all of them at once: a user writing a new entry fixes it in one go
            self.fail(path, f"missing required keys {', '.join(map(repr, missing))}")
        return value

    def string(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {kind(value)}")
        return value

    def choice(self, value: Any, path: tuple[Any, ...], options: tuple[_T, ...]) -> _T:
        if value not in options:
            import difflib  # only for the error's hint

            hint = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.fail(
                path,
                f"{value!r} is not one of: {', '.join(str(o) for o in options)}{extra}",
            )
        return cast(_T, value)

    def number(
        self,
        value: Any,
        path: tuple[Any, ...],
        *,
        low: float | None = None,
        high: float | None = None,
        integer: bool = False,
        low_open: bool = False,
    ) -> float:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            self.fail(
                path, f"expected {'an integer' if integer else 'a number'}, got {kind(value)}"
            )
        if low is not None and (value <= low if low_open else value < low):
            self.fail(path, f"must be {'>' if low_open else '>='} {low}, got {value}")
        if high is not None and value > high:
            self.fail(path, f"must be <= {high}, got {value}")
        return float(value)

    def boolean(self, value: Any, path: tuple[Any, ...]) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {kind(value)}")
        return value

    def key_ref(self, value: Any, path: tuple[Any, ...]) -> str:
        text = self.string(value, path)
        if not re.fullmatch(r"(keyring|env):[A-Za-z0-9_.\-]+", text):
            self.fail(
                path,
                "expected a key reference 'keyring:NAME' or 'env:VAR', never the key itself "
                "(store a key with: traywire keys set NAME)",
            )
        return text

    def argv(self, value: Any, path: tuple[Any, ...], *, placeholders: bool) -> tuple[str, ...]:
        import string

        if not isinstance(value, list) or not value:
            self.fail(
                path,
                "expected a non-empty list: the program, then its arguments (no shell), "
                f"got {kind(value)}",
            )
        out: list[str] = []
        for i, item in enumerate(value):
            p = (*path, i)
            if isinstance(item, bool) or not isinstance(item, str | int):
                self.fail(p, f"expected a string, got {kind(item)}")
            text = str(item)
            if placeholders:
                known = ", ".join("{" + n + "}" for n in SWITCH_PLACEHOLDERS)
                try:
                    fields = [f for f in string.Formatter().parse(text) if f[1] is not None]
                except ValueError as exc:
                    self.fail(p, f"{text!r}: {exc} (write {{{{ and }}}} for literal braces)")
                for _, fname, fspec, conv in fields:
                    if fname not in SWITCH_PLACEHOLDERS or fspec or conv:
                        self.fail(p, f"unknown placeholder in {text!r}; expected one of: {known}")
            out.append(text)
        if not out[0]:
            self.fail((*path, 0), "expected a program name, got an empty string")
        return tuple(out)


def kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"
