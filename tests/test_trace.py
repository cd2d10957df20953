"""What a request went through becomes its record field by field (the
request log and the metrics read these fields by name)."""

from __future__ import annotations

from fakeclock import FakeClock

from traywire.errors import BackendError
from traywire.proxy.trace import Trace
from traywire.types import Attempt, Decision, Skip


def test_record_carries_every_field_by_name() -> None:
    clock = FakeClock()
    d = Decision(
        requested="asked",
        capability="code",
        prompt_tokens=123,
        route="code",
        strategy="priority",
        preference="prefer_local",
        plan=(Attempt("m1", "b1", "up1", "first"), Attempt("m2", "b2", "up2", "second")),
        skipped=(Skip("m3", "b3", "disabled"),),
    )
    trace = Trace(clock, (clock.time() - 5.0, clock.monotonic()))
    trace.failed(d.plan[0], BackendError("refused", "connection refused"), 3.0)
    clock.advance(0.25)
    trace.served_by(d.plan[1], 7.5)
    trace.status, trace.ttfb_ms = 200, 12.5
    trace.tokens_in, trace.tokens_out = 11, 22
    rec = trace.record("anthropic", "/v1/messages", True, d)
    assert rec.ts == clock.time() - 5.25
    assert (rec.dialect, rec.endpoint, rec.stream) == ("anthropic", "/v1/messages", True)
    assert (rec.requested, rec.capability, rec.strategy, rec.route) == (
        "asked",
        "code",
        "priority",
        "code",
    )
    assert (rec.preference, rec.prompt_tokens) == ("prefer_local", 123)
    assert rec.plan == d.plan and rec.skipped == d.skipped
    assert [(a.model, a.outcome, a.kind) for a in rec.attempts] == [
        ("m1", "failed", "refused"),
        ("m2", "served", ""),
    ]
    assert (rec.served_model, rec.served_backend) == ("m2", "b2")
    assert (rec.status, rec.ttfb_ms, rec.total_ms) == (200, 12.5, 250.0)
    assert (rec.tokens_in, rec.tokens_out) == (11, 22)
    assert (rec.outcome, rec.error, rec.cut, rec.client_gone) == ("served", "", False, False)


def test_a_client_gone_and_a_cut_stream_are_their_own_outcomes() -> None:
    clock = FakeClock()
    d = Decision(
        requested="m",
        capability=None,
        prompt_tokens=0,
        route=None,
        strategy=None,
        preference="balanced",
        plan=(Attempt("m", "b", "m", "by name"),),
        skipped=(),
    )
    cut = Trace(clock)
    cut.served_by(d.plan[0], 1.0)
    cut.cut, cut.error, cut.status = True, "b: reset", 200
    rec = cut.record("openai", "/v1/chat/completions", True, d)
    assert (rec.outcome, rec.cut, rec.client_gone, rec.error) == ("cut", True, False, "b: reset")
    gone = Trace(clock)
    gone.client_gone, gone.status = True, 499
    rec = gone.record("openai", "/v1/chat/completions", False, d)
    assert (rec.outcome, rec.client_gone, rec.served_model) == ("cancelled", True, None)
