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
        return RequestRecord(
            ts=self.wall,
            dialect=dialect,
            endpoint=endpoint,
            requested=d.requested,
            capability=d.capability,
            strategy=d.strategy,
            route=d.route,
            preference=d.preference,
            prompt_tokens=d.prompt_tokens,
            stream=stream,
            plan=d.plan,
            skipped=d.skipped,
            attempts=attempts,
            served_model=self.served[0] if self.served else None,
            served_backend=self.served[1] if self.served else None,
            status=self.status,
            ttfb_ms=self.ttfb_ms,
            total_ms=self.elapsed_ms(),
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            outcome=outcome_of(
                served=self.served is not None,
                status=self.status,
                attempts=attempts,
                cut=self.cut,
                client_gone=self.client_gone,
            ),
            error=self.error,
            cut=self.cut,
            client_gone=self.client_gone,
        )
