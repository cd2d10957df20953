"""Time, injected: what reads the clock takes a `Clock`, so tests drive time
instead of sleeping. The routing core never reads one (time comes in with
its snapshot)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds for durations and deadlines (never goes back)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch, for records people read."""
        ...


class SystemClock:
    """The real clock: the `time` module's own functions (no Python frame in
    between: the request path reads the clock a dozen times)."""

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM = SystemClock()
