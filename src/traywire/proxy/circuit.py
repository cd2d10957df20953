"""Circuit breakers: when a backend is tried, skipped, or given one trial.

`Breaker` holds the rules (thresholds and times); each backend's
`CircuitState` holds where it stands. `health.Health` keeps one state per
backend and applies the rules when it records an outcome. Nothing here reads
a clock: every call takes ``now`` (monotonic seconds).

Per backend::

    closed --N consecutive failures--> open --cooldown elapses--> half_open
    half_open --a trial is taken--> (one trial in flight; the router sees "open")
    trial/probe success --> closed          trial/probe failure --> open again

* ``failure_threshold`` consecutive failures (requests or probes) open a closed
  circuit for ``cooldown_s``.
* A failure in the half-open phase re-opens it with an exponential back-off:
  the k-th re-open in a row lasts ``cooldown_s * 2**k``, capped at
  ``max_cooldown_s`` (default 10 x cooldown: 30, 60, 120, 240, 300, 300 s...).
  Closing the circuit resets k to 0.
* Half-open admits exactly one trial (`Health.acquire_trial` returns True
  once). If the trial's outcome is never reported (nor the trial released),
  another trial is allowed after ``trial_timeout_s``.
* Any success (a request or a probe) closes the circuit at once, even before the
  cooldown has run out: a backend that comes back is healthy within one probe
  interval.
* A rate limit opens the circuit until ``now + retry_after`` (``cooldown_s``
  when the server gave no Retry-After; capped at ``max_retry_after_s``). Such an
  opening is lifted only by time: a success before then does not close it
  (a probe listing models says nothing about a quota). After it, the usual
  half-open trial applies. Rate limits do not count as failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..types import Circuit

__all__ = ["Breaker", "CircuitState", "OpenReason"]

OpenReason = Literal["failures", "rate_limited"]


@dataclass
class CircuitState:
    """Where one backend's circuit stands."""

    consecutive_failures: int = 0
    # None: closed. Otherwise open until this time, then half-open.
    open_until: float | None = None
    open_reason: OpenReason | None = None
    # How many times in a row the circuit re-opened after a half-open failure.
    reopens: int = 0
    # When the half-open trial was handed out; None: no trial in flight.
    trial_at: float | None = None
    # What the failures that opened the circuit were ("3 × connection refused").
    opened_by: str = ""


@dataclass
class Breaker:
    """The rules every backend's circuit follows (see the module docstring)."""

    failure_threshold: int = 3
    cooldown_s: float = 30.0
    max_cooldown_s: float = 300.0
    trial_timeout_s: float = 120.0
    max_retry_after_s: float = 3600.0

    def trial_live(self, c: CircuitState, now: float) -> bool:
        """Is a half-open trial out, and not yet given up on?"""
        return c.trial_at is not None and now < c.trial_at + self.trial_timeout_s

    def phase(self, c: CircuitState, now: float, *, router_view: bool) -> Circuit:
        """closed, open or half_open; as the router sees it, a taken trial reads "open"."""
        if c.open_until is None:
            return "closed"
        if now < c.open_until:
            return "open"
        if router_view and self.trial_live(c, now):
            return "open"
        return "half_open"

    def holds_until(self, c: CircuitState, now: float) -> float:
        """Until when the router's view (`phase`) stays what it is now."""
        until = math.inf
        if c.open_until is not None and now < c.open_until:
            until = c.open_until
        if c.trial_at is not None and self.trial_live(c, now):
            until = min(until, c.trial_at + self.trial_timeout_s)
        return until

    def succeeded(self, c: CircuitState, now: float) -> None:
        """A request or probe succeeded: close, unless a rate limit still runs."""
        c.consecutive_failures = 0
        if c.open_until is not None and (c.open_reason != "rate_limited" or now >= c.open_until):
            self._close(c)
            c.reopens = 0

    def failed(self, c: CircuitState, now: float, what: str) -> None:
        """A failure that counts against the backend (``what``: a few words)."""
        c.consecutive_failures += 1
        why = f"{c.consecutive_failures} × {what}"
        if c.open_until is None:
            if c.consecutive_failures >= self.failure_threshold:
                c.reopens = 0
                self._open(c, now, self.cooldown_s)
                c.opened_by = why
        elif now >= c.open_until:
            # Half-open phase: the trial (or a probe standing in for it) failed.
            c.reopens += 1
            self._open(c, now, min(self.cooldown_s * 2.0**c.reopens, self.max_cooldown_s))
            c.opened_by = why
        # Already open: keep the current deadline.

    def rate_limited(self, c: CircuitState, now: float, retry_after_s: float | None) -> None:
        """A 429 (Retry-After in seconds, if the server gave one)."""
        if retry_after_s is None or not math.isfinite(retry_after_s) or retry_after_s <= 0:
            wait = self.cooldown_s
        else:
            wait = min(float(retry_after_s), self.max_retry_after_s)
        until = now + wait
        if c.open_until is None or now >= c.open_until or until > c.open_until:
            c.open_until = until
            c.open_reason = "rate_limited"
            c.trial_at = None
        # else: already open for longer (e.g. after failures): keep that.

    def adopt(
        self, c: CircuitState, now: float, seconds: float, reason: OpenReason, why: str
    ) -> None:
        """Another instance opened this backend's circuit for ``seconds`` more
        (shared state): open it here until then, unless it already is for longer."""
        until = now + seconds
        if c.open_until is None or now >= c.open_until or until > c.open_until:
            c.open_until, c.open_reason, c.trial_at, c.opened_by = until, reason, None, why

    @staticmethod
    def _close(c: CircuitState) -> None:
        c.open_until = None
        c.open_reason = None
        c.trial_at = None

    @staticmethod
    def _open(c: CircuitState, now: float, seconds: float) -> None:
        c.open_until = now + seconds
        c.open_reason = "failures"
        c.trial_at = None
