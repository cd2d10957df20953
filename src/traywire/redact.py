"""Keys never leave: every configured secret is cut out of what traywire
returns, logs, stores or shows.

A backend may echo the ``Authorization`` header it received (in an error, a
debug field, anything); traywire passes backend text on in several places
(client errors, "all attempts failed" summaries, stream error events, answers
passed through as they are, log lines, the request log and the dashboard).
Each of those outputs goes through `REDACTOR` (`text`, `data`, `obj`), which
replaces every known secret value with ``[redacted]``; log records are
redacted as they are made (`install_logging`).

The secrets are the configured key values and the server token, registered by
whoever resolves them (`traywire.proxy.runtime`, the server). Values shorter
than `MIN_LENGTH` are not treated as secrets (they would match ordinary text).
When no secret is registered every call returns its input unchanged at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

MARK = "[redacted]"
MIN_LENGTH = 8


class Redactor:
    __slots__ = ("_bytes", "_lock", "_owners", "_texts")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[str, frozenset[str]] = {}
        self._texts: tuple[str, ...] = ()
        self._bytes: tuple[bytes, ...] = ()

    def set_secrets(self, owner: str, values: Iterable[str | None]) -> None:
        """The secrets ``owner`` knows now (replacing what it registered before)."""
        keep = frozenset(v for v in values if v and len(v) >= MIN_LENGTH)
        with self._lock:
            self._owners[owner] = keep
            # longest first: a key that contains another is cut whole
            every = sorted(set().union(*self._owners.values()), key=len, reverse=True)
            self._texts = tuple(every)
            self._bytes = tuple(v.encode("utf-8", "surrogatepass") for v in every)

    @property
    def active(self) -> bool:
        return bool(self._texts)

    def text(self, s: str) -> str:
        for secret in self._texts:
            if secret in s:
                s = s.replace(secret, MARK)
        return s

    def data(self, b: bytes) -> bytes:
        for secret in self._bytes:
            if secret in b:
                b = b.replace(secret, MARK.encode())
        return b

    def obj(self, value: Any) -> Any:
        """A JSON-able value with every string redacted (a copy where needed)."""
        if not self._texts:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                self.text(k) if isinstance(k, str) else k: self.obj(v) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.obj(v) for v in value]
        return value


REDACTOR = Redactor()

_installed = False


def install_logging() -> None:
    """Redact every log record as it is made (all loggers, every handler)."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if REDACTOR.active:
            message = record.getMessage()
            clean = REDACTOR.text(message)
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = REDACTOR.text(record.exc_text)
            if clean != message:
                record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
