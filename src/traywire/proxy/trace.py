"""What one request went through, turned into a `RequestRecord` at the end.

The executor fills a `Trace` as it goes (each step of the plan: skipped,
failed, served or cancelled; the first byte; tokens; whether a stream was cut
or the client left); the record is built once, after the answer is on its way,
and handed to the observers (request log, metrics).
"""

from __future__ import annotations

from ..clock import Clock
from ..errors import BackendError
from ..redact import REDACTOR
from ..types import (
    Attempt,
    AttemptRecord,
    Decision,
    Front,
    RequestRecord,
    outcome_of,
)


class Trace:
    __slots__ = (
        "attempts",
        "began",
        "client_gone",
        "clock",
        "cut",
        "error",
        "served",
        "started",
        "status",
        "tokens_in",
        "tokens_out",
        "ttfb_ms",
        "wall",
    )

    def __init__(self, clock: Clock, started: tuple[float, float] | None = None) -> None:
        """``started``: (wall clock, monotonic) at arrival; now if not given."""
        self.clock = clock
        self.wall, self.started = started or (clock.time(), clock.monotonic())
        self.attempts: list[AttemptRecord] = []
        self.served: tuple[str, str] | None = None
        self.status = 0
        self.ttfb_ms: float | None = None
        self.tokens_in = 0
        self.tokens_out = 0
        self.error = ""
        self.cut = False
        self.client_gone = False
        self.began = False  # the answer's head has gone to the client

    def elapsed_ms(self) -> float:
        return round((self.clock.monotonic() - self.started) * 1000, 2)

    def skipped(self, step: Attempt, why: str, kind: str = "") -> None:
        self.attempts.append(AttemptRecord(step.model, step.backend, "skipped", why, kind))

    def failed(self, step: Attempt, exc: BackendError, ms: float) -> None:
        why = REDACTOR.text(str(exc))  # backend text may echo a key
        self.attempts.append(
            AttemptRecord(step.model, step.backend, "failed", why, exc.kind, round(ms, 2))
        )

    def cancelled(self, step: Attempt, why: str, ms: float) -> None:
        self.attempts.append(
            AttemptRecord(step.model, step.backend, "cancelled", why, "", round(ms, 2))
        )

    def served_by(self, step: Attempt, ms: float) -> None:
        """``step`` answered (a stream cut later keeps its error here)."""
        self.attempts.append(
            AttemptRecord(step.model, step.backend, "served", self.error, "", round(ms, 2))
        )
        self.served = (step.model, step.backend)

    def record(self, dialect: Front, endpoint: str, stream: bool, d: Decision) -> RequestRecord:
        attempts = tuple(self.attempts)
        served = self.served
        cut, gone = self.cut, self.client_gone
        # positional, in `RequestRecord`'s field order (once per request)
        return RequestRecord(
            self.wall,
            dialect,
            endpoint,
            d.requested,
            d.capability,
            d.strategy,
            d.route,
            d.preference,
            d.prompt_tokens,
            stream,
            d.plan,
            d.skipped,
            attempts,
            served[0] if served else None,
            served[1] if served else None,
            self.status,
            self.ttfb_ms,
            self.elapsed_ms(),
            self.tokens_in,
            self.tokens_out,
            outcome_of(
                served=served is not None,
                status=self.status,
                attempts=attempts,
                cut=cut,
                client_gone=gone,
            ),
            self.error,
            cut,
            gone,
        )
