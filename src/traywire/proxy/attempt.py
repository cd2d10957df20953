"""One request to one backend, from just before it is sent to its outcome.

Requests feed `health.Health` through this one context::

    a = health.attempt(backend)          # None: the circuit is open, skip it
    with a:                              # counted in flight until the block ends
        ...                              # a.ok(latency_ms) once the answer begins
                                         # a BackendError leaving the block is
                                         # recorded by its kind (see below)

A `BackendError` is recorded by what it says about the backend: a rate limit
opens the circuit until its Retry-After; a failure that counts against the
backend (`BackendError.counts_against_backend`) counts toward opening it; any
other (the request's own fault, a model the backend does not have) shows the
backend answered, like a success. Anything else leaving the block (the client
went away) records no outcome and gives back a half-open trial.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from ..errors import BackendError

if TYPE_CHECKING:  # health.py makes attempts; an Attempt only reports to it
    from .health import Health

__all__ = ["Attempt"]


class Attempt:
    """One request to one backend (see the module docstring); made by `Health.attempt`."""

    __slots__ = ("_done", "_failure", "_health", "backend", "started")

    def __init__(self, health: Health, backend: str, started: float) -> None:
        self._health = health
        self.backend = backend
        self.started = started  # monotonic
        self._done = False
        self._failure: BackendError | None = None

    def elapsed_ms(self) -> float:
        return (self._health.clock.monotonic() - self.started) * 1000

    def ok(self, latency_ms: float | None = None) -> None:
        """The answer began (or, not streamed, arrived whole)."""
        self._done = True
        self._health.success(self.backend, self._health.clock.monotonic(), latency_ms)

    def failed(self, exc: BackendError) -> None:
        """Record ``exc`` by its kind (also after `ok`: a stream that broke)."""
        self._done = True
        self._failure = exc
        h, now = self._health, self._health.clock.monotonic()
        if exc.kind == "rate_limited":
            h.rate_limited(self.backend, now, exc.retry_after)
        elif exc.counts_against_backend:
            h.failure(self.backend, now, exc.kind, exc.short)
        else:  # it answered: the request, not the backend, was the problem
            h.success(self.backend, now)

    def used(self, model: str, tokens: int) -> None:
        """``tokens`` (prompt + reply) served by public model name ``model``."""
        self._health.add_usage(model, self._health.clock.monotonic(), tokens)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        h = self._health
        h.end(self.backend)
        if isinstance(exc, BackendError):
            if exc is not self._failure:
                self.failed(exc)
        elif not self._done:
            h.release_trial(self.backend)
