"""Deadlines whose expiry is one of traywire's error kinds.

Time is an edge like the socket: an ``asyncio.timeout`` that runs out inside
``async with Deadline(seconds, kind, message)`` leaves it as a
`BackendError` of that kind (connect timeouts are the transport's own).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ..errors import BackendError


class _Sliding(asyncio.Timeout):  # type: ignore[misc]  # (final in typeshed only)
    """An ``asyncio.timeout`` that `extend` moves without touching the loop's
    timers: it notes the time, and the timer, when it fires, looks whether the
    allowance since then has run out, else sets itself for when it will. (A
    stream extends its idle deadline on every chunk: rescheduling the timer
    each time cost more than relaying the chunk.)"""

    def __init__(self, seconds: float, loop: asyncio.AbstractEventLoop) -> None:
        self.seconds = seconds
        self.loop = loop
        self.last = loop.time()
        super().__init__(self.last + seconds)

    def _on_timeout(self) -> None:
        due = self.last + self.seconds
        if self.loop.time() < due:
            self.reschedule(due)
        else:
            super()._on_timeout()  # type: ignore[misc]


# asyncio's timer callback, which _Sliding overrides (a private name: where a
# Python lacks it, extend reschedules the timer itself)
_SLIDES = hasattr(asyncio.Timeout, "_on_timeout")


class Deadline:
    __slots__ = ("_cm", "kind", "message", "seconds")

    def __init__(self, seconds: float | None, kind: str, message: str) -> None:
        self.seconds = seconds
        self.kind = kind
        self.message = message
        self._cm: asyncio.Timeout | None = None

    def extend(self) -> None:
        """Start the same allowance again from now (a stream that keeps flowing)."""
        cm = self._cm
        assert cm is not None and self.seconds is not None
        if isinstance(cm, _Sliding):
            cm.last = cm.loop.time()
        else:
            cm.reschedule(asyncio.get_running_loop().time() + self.seconds)

    async def __aenter__(self) -> Deadline:
        if self.seconds is not None and _SLIDES:
            self._cm = _Sliding(self.seconds, asyncio.get_running_loop())
        else:
            self._cm = asyncio.timeout(self.seconds)
        await self._cm.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._cm is not None
        try:
            await self._cm.__aexit__(exc_type, exc, tb)
        except TimeoutError as timeout:
            raise BackendError(self.kind, self.message) from timeout
