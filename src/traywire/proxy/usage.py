"""Tokens served per public model name, over a sliding window of time.

Tokens are counted in buckets of ``bucket_s`` seconds. A bucket counts until
``window_s`` after its end, so a token is counted for at least the window and
at most window + bucket seconds; memory is at most ``window / bucket + 1``
buckets per model. Nothing here reads a clock: every call takes ``now``.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["UsageWindow"]


class UsageWindow:
    """Tokens per model name within the last ``window_s`` seconds (the ``usage_based`` strategy).

    The totals are kept as tokens come and go, and the earliest expiry is
    remembered: recording a request and reading the totals are O(1) until a
    bucket expires (they run once per request)."""

    def __init__(self, window_s: float, bucket_s: float) -> None:
        self.window_s = float(window_s)
        self.bucket_s = float(bucket_s)
        # model -> deque of [bucket index, tokens], oldest first.
        self.buckets: dict[str, deque[list[int]]] = {}
        self._totals: dict[str, int] = {}
        self._next_expiry = math.inf  # when the oldest bucket of any model expires

    def add(self, model: str, now: float, tokens: int) -> None:
        """Count ``tokens`` (> 0) served for ``model`` at ``now``."""
        if now >= self._next_expiry:
            self.prune(now)
        idx = math.floor(now / self.bucket_s)
        buckets = self.buckets.get(model)
        if buckets is None:
            buckets = self.buckets[model] = deque()
        if buckets and buckets[-1][0] >= idx:
            # the current bucket (or, with out-of-order time, the newest one:
            # folded into it rather than reordered)
            buckets[-1][1] += tokens
        else:
            buckets.append([idx, tokens])
            if len(buckets) == 1:
                self._next_expiry = min(self._next_expiry, self._expiry(idx))
        self._totals[model] = self._totals.get(model, 0) + tokens

    def totals(self, now: float) -> dict[str, int]:
        """Tokens per model within the window ending at ``now``."""
        if now >= self._next_expiry:
            self.prune(now)
        return dict(self._totals)

    def holds_until(self) -> float:
        """When the oldest bucket leaves the window (the totals change then)."""
        return self._next_expiry

    def prune(self, now: float) -> None:
        dead: list[str] = []
        until = math.inf
        for model, q in self.buckets.items():
            while q and self._expiry(q[0][0]) <= now:
                self._totals[model] -= q.popleft()[1]
            if q:
                until = min(until, self._expiry(q[0][0]))
            else:
                dead.append(model)
        for model in dead:
            del self.buckets[model]
            del self._totals[model]
        self._next_expiry = until

    def _expiry(self, idx: int) -> float:
        return (idx + 1) * self.bucket_s + self.window_s
