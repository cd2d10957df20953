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
    """Tokens per model name within the last ``window_s`` seconds (the ``usage_based`` strategy)."""

    def __init__(self, window_s: float, bucket_s: float) -> None:
        self.window_s = float(window_s)
        self.bucket_s = float(bucket_s)
        # model -> deque of [bucket index, tokens], oldest first.
        self.buckets: dict[str, deque[list[int]]] = {}

    def add(self, model: str, now: float, tokens: int) -> None:
        """Count ``tokens`` (> 0) served for ``model`` at ``now``."""
        idx = math.floor(now / self.bucket_s)
        buckets = self.buckets.setdefault(model, deque())
        if buckets and buckets[-1][0] == idx:
            buckets[-1][1] += tokens
        elif buckets and buckets[-1][0] > idx:
            # Out-of-order time: fold into the newest bucket rather than reorder.
            buckets[-1][1] += tokens
        else:
            buckets.append([idx, tokens])
        self.prune(now)

    def totals(self, now: float) -> dict[str, int]:
        """Tokens per model within the window ending at ``now``."""
        self.prune(now)
        return {m: sum(t for _, t in q) for m, q in self.buckets.items()}

    def holds_until(self) -> float:
        """When the oldest bucket leaves the window (the totals change then)."""
        until = math.inf
        for q in self.buckets.values():
            until = min(until, self._expiry(q[0][0]))
        return until

    def prune(self, now: float) -> None:
        dead: list[str] = []
        for model, q in self.buckets.items():
            while q and self._expiry(q[0][0]) <= now:
                q.popleft()
            if not q:
                dead.append(model)
        for model in dead:
            del self.buckets[model]

    def _expiry(self, idx: int) -> float:
        return (idx + 1) * self.bucket_s + self.window_s
