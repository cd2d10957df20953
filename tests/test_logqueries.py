"""Reading the request log: the dashboard's queries (filters, paging, one
request, latency series), past usage seeding ``usage_based`` routing. (The
file's schema: test_logfile.py.)"""

from __future__ import annotations

import pytest
from reqlog_helpers import BASE, Clock, Logs, logs, make_record

from traywire.observe import wiring
from traywire.proxy.health import Health
from traywire.types import AttemptRecord

__all__ = ["logs"]


def test_recent_filters_and_pages(logs: Logs) -> None:
    lg = logs()
    q = logs.queries(lg)
    failed = (
        AttemptRecord("one", "a", "failed", "HTTP 500", "server_error", 3.0),
        AttemptRecord("two", "b", "served", ms=9.0),
    )
    lg.observe(make_record(BASE + 1, capability="code"))  # id 1: a, served
    lg.observe(make_record(BASE + 2, served=("two", "b"), attempts=failed))  # id 2: a failed, b
    lg.observe(make_record(BASE + 3, served=None, status=503, attempts=failed[:1]))  # id 3
    lg.observe(make_record(BASE + 4, served=None, status=400, attempts=()))  # id 4
    lg.observe(make_record(BASE + 5, cut=True))  # id 5
    lg.observe(make_record(BASE + 6, served=None, client_gone=True, status=499, attempts=()))
    assert lg.flush()
    ids = [r["id"] for r in q.recent()]
    assert ids == [6, 5, 4, 3, 2, 1]
    assert [r["outcome"] for r in q.recent()] == [
        "cancelled",
        "cut",
        "client_error",
        "failed",
        "served",
        "served",
    ]
    assert [r["id"] for r in q.recent(2)] == [6, 5]
    assert [r["id"] for r in q.recent(2, before_id=5)] == [4, 3]
    assert [r["id"] for r in q.recent(backend="b")] == [2]
    assert [r["id"] for r in q.recent(backend="a")] == [5, 3, 2, 1]
    assert [r["id"] for r in q.recent(capability="code")] == [1]
    assert [r["id"] for r in q.recent(outcome="served")] == [2, 1]
    assert [r["id"] for r in q.recent(outcome="served", backend="a", before_id=2)] == [1]
    two = q.get(2)
    assert two is not None
    assert [(a["n"], a["backend"], a["outcome"], a["kind"]) for a in two["attempts"]] == [
        (1, "a", "failed", "server_error"),
        (2, "b", "served", ""),
    ]
    assert two["skipped"] == [
        {"model": "three", "backend": "c", "reason": "cloud under local_only"}
    ]
    # a name that needs escaping in JSON is found among the attempts too
    odd = (AttemptRecord("one", 'we"ird\\', "failed", "x", "reset"), failed[1])
    lg.observe(make_record(BASE + 7, served=("two", "b"), attempts=odd))  # id 7
    assert lg.flush()
    assert [r["id"] for r in q.recent(backend='we"ird\\')] == [7]
    assert [r["id"] for r in q.recent(backend="we")] == []
    with pytest.raises(ValueError):
        q.recent(outcome="bogus")
    with pytest.raises(ValueError):
        q.recent(0)


def test_latency_series(logs: Logs) -> None:
    t0 = 1_800_000_000.0 - (1_800_000_000.0 % 60)
    lg = logs()
    q = logs.queries(lg, clock=Clock(t0 + 179))
    for ms in (100.0, 200.0, 300.0, 400.0):
        lg.observe(make_record(t0 + 5, total_ms=ms, ttfb_ms=ms / 2))
    lg.observe(make_record(t0 + 130, total_ms=50.0, ttfb_ms=None))
    lg.observe(make_record(t0 + 10, served=("two", "b"), total_ms=999.0))  # another backend
    failed = (
        AttemptRecord("one", "a", "failed", "x", "reset"),
        AttemptRecord("two", "b", "served"),
    )
    lg.observe(make_record(t0 + 70, served=("two", "b"), attempts=failed))
    assert lg.flush()
    series = q.latency_series("a", t0, 60)
    assert [b["t"] for b in series] == [t0, t0 + 60, t0 + 120]
    first, second, third = series
    assert first["count"] == 4
    assert (first["avg_ms"], first["p50_ms"], first["p95_ms"], first["max_ms"]) == (
        250.0,
        200.0,
        400.0,
        400.0,
    )
    assert (first["ttfb_avg_ms"], first["ttfb_p50_ms"]) == (125.0, 100.0)
    assert first["failures"] == 0
    assert second["count"] == 0 and second["avg_ms"] is None and second["failures"] == 1
    assert third["count"] == 1 and third["avg_ms"] == 50.0 and third["ttfb_avg_ms"] is None
    assert [b["count"] for b in q.latency_series("b", t0, 3600)] == [2]
    # the dashboard's: every backend from one pass, the same figures
    assert q.latency_many(["a", "b", "idle"], t0, 60) == {
        "a": series,
        "b": q.latency_series("b", t0, 60),
        "idle": q.latency_series("idle", t0, 60),
    }
    assert [b["failures"] for b in q.latency_many(["idle"], t0, 60)["idle"]] == [0, 0, 0]


def test_seed_usage_places_tokens_where_they_happened(logs: Logs) -> None:
    now = 1_800_000_000.0
    lg = logs(clock=Clock(now))
    q = logs.queries(lg)
    lg.observe(make_record(now - 100, served=("x", "a"), total_ms=1000, tokens=(10, 5)))
    lg.observe(make_record(now - 3500, served=("y", "b"), total_ms=0, tokens=(4, 3)))
    lg.observe(make_record(now - 4000, served=("x", "a"), tokens=(100, 100)))  # too old
    lg.observe(make_record(now - 50, served=None, status=503, tokens=(0, 0)))  # nothing served
    lg.observe(make_record(now - 20, served=("x", "a"), tokens=(0, 0)))  # no tokens
    assert lg.flush()
    health = Health(["a", "b"], usage_window_s=3600, usage_bucket_s=60)
    mono = 1000.0
    seeded = wiring.seed_usage(health, q, now, mono, 3600)
    assert seeded == 22
    assert health.usage(mono) == {"x": 15, "y": 7}
    # y finished 3500 s ago: it leaves the window about 100 s (+ one bucket) from now
    assert health.usage(mono + 161) == {"x": 15}
    assert health.usage(mono + 3600 + 61) == {}
    # per model and minute of finishing, oldest first
    assert [(b.model, b.tokens) for b in q.usage_buckets(now - 3600, 60)] == [("y", 7), ("x", 15)]
    assert [(b.model, b.tokens) for b in q.usage_buckets(now - 200, 60)] == [("x", 15)]
    with pytest.raises(ValueError):
        q.usage_buckets(now, 0)
