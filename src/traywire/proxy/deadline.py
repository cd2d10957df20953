"""Deadlines whose expiry is one of traywire's error kinds.

Time is an edge like the socket: a deadline that runs out inside
``with Deadline(seconds, kind, message)`` (or ``async with``) leaves it as a
`BackendError` of that kind (connect timeouts are the transport's own).

It works as ``asyncio.timeout`` does - one timer on the loop that cancels
the task when it fires, the cancellation turned into the error on the way out
of the block, a cancellation from anyone else (the client went away) left
alone - with two differences that matter on the request path: it is a plain
``with`` (no coroutines made to enter and leave it: one per request, two per
stream), and `extend` slides it without touching the loop's timers: it notes
the time, and the timer, when it fires, looks whether the allowance since
then has run out, else sets itself for when it will (a stream extends its
idle deadline on every chunk; rescheduling a timer each time cost more than
relaying the chunk).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from ..errors import BackendError

__all__ = ["Deadline"]


class Deadline:
    __slots__ = (
        "_cancelling",
        "_expired",
        "_handle",
        "_last",
        "_loop",
        "_task",
        "kind",
        "message",
        "seconds",
    )

    def __init__(
        self,
        seconds: float | None,
        kind: str,
        message: str,
        task: asyncio.Task[object] | None = None,
    ) -> None:
        """``seconds`` None: no deadline (the block runs as long as it takes).
        ``task``: the task the block runs in, where the caller has it (else
        the current one: on Python 3.11 finding it costs a getpid() call)."""
        self.seconds = seconds
        if task is not None:
            self._task = task
        self.kind = kind
        self.message = message
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    def extend(self) -> None:
        """Start the same allowance again from now (a stream that keeps flowing)."""
        if self._handle is not None:
            self._last = self._loop.time()

    def __enter__(self) -> Deadline:
        if self.seconds is None:
            return self
        try:
            task = self._task
        except AttributeError:
            current = asyncio.current_task()
            if current is None:
                raise RuntimeError("Deadline must be used inside a task") from None
            task = self._task = current
        loop = self._loop = task.get_loop()
        self._cancelling = task.cancelling()
        self._last = now = loop.time()
        self._handle = loop.call_at(now + self.seconds, self._fire)
        return self

    def _fire(self) -> None:
        assert self.seconds is not None
        due = self._last + self.seconds
        if self._loop.time() < due:  # extended since it was set
            self._handle = self._loop.call_at(due, self._fire)
            return
        self._handle = None
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        handle = self._handle
        if handle is not None:
            self._handle = None
            handle.cancel()
        if not self._expired:
            return
        self._expired = False
        # ours to take back; a cancellation someone else asked for as well
        # (the client went away at the same moment) stays a cancellation
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise BackendError(self.kind, self.message) from TimeoutError()

    async def __aenter__(self) -> Deadline:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
