"""A clock tests move by hand (`traywire.clock.Clock`): no sleeping, no flakes."""

from __future__ import annotations

import threading


class FakeClock:
    """Starts at ``start`` monotonic seconds; only `advance` moves it.
    Safe to read from the proxy's loop thread while a test thread advances it."""

    EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: what `time()` reads at start

    def __init__(self, start: float = 1000.0) -> None:
        self._t = start
        self._start = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._t

    def time(self) -> float:
        return self.EPOCH + (self._t - self._start)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds
