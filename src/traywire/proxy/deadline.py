"""Deadlines whose expiry is one of traywire's error kinds.

Time is an edge like the socket: an ``asyncio.timeout`` that runs out inside
``async with Deadline(seconds, kind, message)`` leaves it as a
`BackendError` of that kind (connect timeouts are the transport's own).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ..errors import BackendError


class Deadline:
    __slots__ = ("_cm", "kind", "message", "seconds")

    def __init__(self, seconds: float | None, kind: str, message: str) -> None:
        self.seconds = seconds
        self.kind = kind
        self.message = message
        self._cm: asyncio.Timeout | None = None

    def extend(self) -> None:
        """Start the same allowance again from now (a stream that keeps flowing)."""
        assert self._cm is not None and self.seconds is not None
        self._cm.reschedule(asyncio.get_running_loop().time() + self.seconds)

    async def __aenter__(self) -> Deadline:
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
