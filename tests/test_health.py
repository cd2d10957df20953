"""Tests for the live-state tracker (`traywire.proxy.health`) and the probes
(`traywire.proxy.probe`).

The tracker is driven with a fake `now`; the probes talk to real aiohttp servers
on loopback ports.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import MappingProxyType

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from traywire.errors import BackendError
from traywire.proxy.health import Attempt, Health, HealthWord
from traywire.proxy.probe import Prober, ProbeResult, ProbeTarget, probe
from traywire.proxy.transport import Pool
from traywire.types import BackendState, LiveState

Changes = list[tuple[str, HealthWord, HealthWord]]


def recorder() -> tuple[Changes, Callable[[str, HealthWord, HealthWord], None]]:
    seen: Changes = []

    def hook(name: str, old: HealthWord, new: HealthWord) -> None:
        seen.append((name, old, new))

    return seen, hook


def fail_n(h: Health, name: str, now: float, n: int, kind: str = "timeout") -> None:
    for _ in range(n):
        h.failure(name, now, kind)


# ================================================================ circuit breaker


def test_circuit_opens_after_exactly_threshold_failures() -> None:
    h = Health(["a"], failure_threshold=3, cooldown_s=30)
    assert h.circuit("a", 0.0) == "closed"
    h.failure("a", 10.0, "timeout")
    h.failure("a", 11.0, "timeout")
    assert h.circuit("a", 11.0) == "closed"
    assert h.acquire_trial("a", 11.0) is True
    assert h.snapshot(11.0).backends["a"].circuit == "closed"
    h.failure("a", 12.0, "refused")
    assert h.circuit("a", 12.0) == "open"
    assert h.snapshot(12.0).backends["a"].circuit == "open"
    st_ = h.status(12.0)["a"]
    assert st_["consecutive_failures"] == 3
    assert st_["last_error"] == "refused"
    assert st_["retry_in_s"] == 30.0
    assert st_["health"] == "down"


def test_success_resets_the_consecutive_count() -> None:
    h = Health(["a"], failure_threshold=3)
    fail_n(h, "a", 1.0, 2)
    h.success("a", 2.0, 100.0)
    fail_n(h, "a", 3.0, 2)
    assert h.circuit("a", 3.0) == "closed"
    h.failure("a", 4.0, "timeout")
    assert h.circuit("a", 4.0) == "open"


def test_skip_while_open_then_half_open_after_cooldown() -> None:
    h = Health(["a"], failure_threshold=3, cooldown_s=30)
    fail_n(h, "a", 100.0, 3)
    for t in (100.0, 110.0, 129.999):
        assert h.circuit("a", t) == "open"
        assert h.acquire_trial("a", t) is False
    assert h.circuit("a", 130.0) == "half_open"
    assert h.snapshot(130.0).backends["a"].circuit == "half_open"
    # More failures while open do not extend the deadline.
    h.failure("a", 120.0, "timeout")
    assert h.circuit("a", 130.0) == "half_open"


def test_half_open_allows_exactly_one_trial() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30)
    h.failure("a", 0.0, "timeout")
    assert h.acquire_trial("a", 30.0) is True
    assert h.acquire_trial("a", 30.0) is False
    assert h.acquire_trial("a", 31.0) is False
    # The router now sees "open"; /status still says half-open with a trial out.
    assert h.circuit("a", 31.0) == "open"
    assert h.snapshot(31.0).backends["a"].circuit == "open"
    st_ = h.status(31.0)["a"]
    assert st_["circuit"] == "half_open"
    assert st_["trial_in_flight"] is True


def test_trial_success_closes() -> None:
    seen, hook = recorder()
    h = Health(["a"], failure_threshold=1, cooldown_s=30, on_change=hook)
    h.failure("a", 0.0, "timeout")
    assert h.acquire_trial("a", 30.0)
    h.success("a", 31.0, 250.0)
    assert h.circuit("a", 31.0) == "closed"
    assert h.acquire_trial("a", 31.0) is True
    assert h.acquire_trial("a", 31.0) is True
    assert h.status(31.0)["a"]["consecutive_failures"] == 0
    assert h.health("a") == "up"
    assert seen == [("a", "unknown", "down"), ("a", "down", "up")]


def test_trial_failure_reopens_with_exponential_backoff_capped() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30, max_cooldown_s=100)
    h.failure("a", 0.0, "timeout")  # open until 30
    assert h.acquire_trial("a", 30.0)
    h.failure("a", 31.0, "timeout")  # re-open #1: 60 s
    assert h.circuit("a", 90.999) == "open"
    assert h.circuit("a", 91.0) == "half_open"
    assert h.acquire_trial("a", 91.0)
    h.failure("a", 92.0, "timeout")  # re-open #2: 120 s, capped at 100
    assert h.circuit("a", 191.999) == "open"
    assert h.circuit("a", 192.0) == "half_open"
    assert h.acquire_trial("a", 192.0)
    h.success("a", 193.0)
    # Closing resets the back-off: the next opening lasts the base cooldown.
    h.failure("a", 200.0, "timeout")
    assert h.circuit("a", 229.999) == "open"
    assert h.circuit("a", 230.0) == "half_open"


def test_default_max_cooldown_is_ten_cooldowns() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30)
    assert h.breaker.max_cooldown_s == 300.0
    h.failure("a", 0.0, "x")
    now = 30.0
    lengths = []
    for _ in range(6):
        assert h.acquire_trial("a", now)
        h.failure("a", now, "x")
        length = float(h.status(now)["a"]["retry_in_s"])  # type: ignore[arg-type]
        lengths.append(length)
        now += length
    assert lengths == [60.0, 120.0, 240.0, 300.0, 300.0, 300.0]


def test_abandoned_trial_is_given_back() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30, trial_timeout_s=60)
    h.failure("a", 0.0, "timeout")
    assert h.acquire_trial("a", 30.0)
    h.release_trial("a")
    assert h.acquire_trial("a", 30.0)  # released: a new trial may go
    # Never reported: another trial after trial_timeout_s.
    assert h.acquire_trial("a", 89.999) is False
    assert h.snapshot(89.999).backends["a"].circuit == "open"
    assert h.snapshot(90.0).backends["a"].circuit == "half_open"
    assert h.acquire_trial("a", 90.0) is True


def test_retry_after_is_honoured() -> None:
    seen, hook = recorder()
    h = Health(["a"], failure_threshold=3, cooldown_s=30, on_change=hook)
    h.success("a", 99.0, 10.0)
    h.rate_limited("a", 100.0, 12.5)
    assert h.circuit("a", 100.0) == "open"
    assert h.acquire_trial("a", 112.499) is False
    # Successes (a slow request finishing, a probe listing models) do not lift it.
    h.success("a", 105.0, 10.0)
    h.probe_result("a", 106.0, True, 5.0, frozenset({"m"}))
    assert h.circuit("a", 112.499) == "open"
    assert h.circuit("a", 112.5) == "half_open"
    st_ = h.status(100.0)["a"]
    assert st_["open_reason"] == "rate_limited"
    assert st_["last_error"] == "rate_limited"
    assert st_["consecutive_failures"] == 0  # a rate limit is not a failure
    assert h.health("a") == "degraded"
    assert h.acquire_trial("a", 112.5) is True
    h.success("a", 113.0, 10.0)
    assert h.circuit("a", 113.0) == "closed"
    assert seen == [("a", "unknown", "up"), ("a", "up", "degraded"), ("a", "degraded", "up")]


def test_retry_after_missing_uses_cooldown_and_huge_is_capped() -> None:
    h = Health(["a", "b", "c"], cooldown_s=30, max_retry_after_s=600)
    h.rate_limited("a", 0.0, None)
    h.rate_limited("b", 0.0, 86400.0)
    h.rate_limited("c", 0.0, -5.0)
    assert h.status(0.0)["a"]["retry_in_s"] == 30.0
    assert h.status(0.0)["b"]["retry_in_s"] == 600.0
    assert h.status(0.0)["c"]["retry_in_s"] == 30.0


def test_retry_after_never_shortens_a_longer_opening() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30)
    h.failure("a", 0.0, "timeout")  # open until 30 (failures)
    h.rate_limited("a", 1.0, 5.0)  # until 6: shorter, ignored
    assert h.status(1.0)["a"]["open_reason"] == "failures"
    assert h.circuit("a", 29.0) == "open"
    h.rate_limited("a", 2.0, 60.0)  # until 62: longer, wins
    assert h.status(2.0)["a"]["open_reason"] == "rate_limited"
    assert h.circuit("a", 61.999) == "open"
    assert h.circuit("a", 62.0) == "half_open"


def test_rate_limited_trial_reopens_for_retry_after() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30)
    h.failure("a", 0.0, "timeout")
    assert h.acquire_trial("a", 30.0)
    h.rate_limited("a", 31.0, 10.0)
    assert h.circuit("a", 40.999) == "open"
    assert h.circuit("a", 41.0) == "half_open"
    assert h.acquire_trial("a", 41.0)


# ================================================================ probes -> tracker


def test_probe_success_closes_an_open_circuit_before_cooldown() -> None:
    seen, hook = recorder()
    h = Health(["a"], failure_threshold=3, cooldown_s=30, on_change=hook)
    fail_n(h, "a", 0.0, 3)
    assert h.circuit("a", 1.0) == "open"
    h.probe_result("a", 5.0, True, 12.0, frozenset({"m"}), "ok")
    assert h.circuit("a", 5.0) == "closed"
    assert h.acquire_trial("a", 5.0)
    assert h.health("a") == "up"
    assert seen[-1] == ("a", "down", "up")


def test_failed_probes_count_as_failures() -> None:
    seen, hook = recorder()
    h = Health(["a"], failure_threshold=3, cooldown_s=30, on_change=hook)
    h.probe_result("a", 0.0, False, 1.0, None, "connection refused")
    assert h.health("a") == "down"
    assert h.circuit("a", 0.0) == "closed"
    h.probe_result("a", 10.0, False, 1.0, None, "connection refused")
    h.probe_result("a", 20.0, False, 1.0, None, "connection refused")
    assert h.circuit("a", 20.0) == "open"
    st_ = h.status(25.0)["a"]
    assert st_["last_error"] == "connection refused"
    assert st_["last_error_ago_s"] == 5.0
    assert st_["last_probe_ok"] is False
    assert st_["last_probe_ago_s"] == 5.0
    assert seen == [("a", "unknown", "down")]  # no flapping while it stays down


def test_failed_probe_in_half_open_reopens_with_backoff() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30)
    h.probe_result("a", 0.0, False, None, None, "timeout")
    h.probe_result("a", 30.0, False, None, None, "timeout")  # half-open: re-open, 60 s
    assert h.circuit("a", 89.999) == "open"
    assert h.circuit("a", 90.0) == "half_open"


def test_request_failure_below_threshold_is_degraded() -> None:
    h = Health(["a"], failure_threshold=3)
    h.success("a", 0.0, 10.0)
    h.failure("a", 1.0, "http_502")
    assert h.health("a") == "degraded"
    h.success("a", 2.0, 10.0)
    assert h.health("a") == "up"


# ================================================================ latency


def test_latency_ewma_exact() -> None:
    h = Health(["a"], latency_alpha=0.3)
    assert h.snapshot(0.0).backends["a"].latency_ms is None
    h.success("a", 1.0, 100.0)
    assert h.snapshot(1.0).backends["a"].latency_ms == 100.0
    h.success("a", 2.0, 200.0)
    assert h.snapshot(2.0).backends["a"].latency_ms == pytest.approx(130.0)
    h.success("a", 3.0, 50.0)
    assert h.snapshot(3.0).backends["a"].latency_ms == pytest.approx(106.0)
    h.success("a", 4.0)  # no latency given: unchanged
    assert h.snapshot(4.0).backends["a"].latency_ms == pytest.approx(106.0)
    assert h.status(4.0)["a"]["latency_ms"] == 106.0


def test_probe_latency_is_kept_apart_and_used_only_without_requests() -> None:
    h = Health(["a"], latency_alpha=0.5)
    h.probe_result("a", 0.0, True, 10.0, None)
    h.probe_result("a", 1.0, True, 20.0, None)
    h.probe_result("a", 2.0, False, 9999.0, None, "timeout")  # failures are not timed
    assert h.snapshot(2.0).backends["a"].latency_ms == pytest.approx(15.0)
    h.success("a", 3.0, 800.0)
    assert h.snapshot(3.0).backends["a"].latency_ms == pytest.approx(800.0)
    st_ = h.status(3.0)["a"]
    assert st_["probe_latency_ms"] == 15.0
    assert st_["request_latency_ms"] == 800.0


# ================================================================ usage


def test_usage_window_sums_and_expiry() -> None:
    h = Health(usage_window_s=3600, usage_bucket_s=60)
    h.add_usage("big", 10.0, 100)  # bucket [0, 60)
    h.add_usage("big", 59.0, 20)  # same bucket
    h.add_usage("big", 70.0, 50)  # bucket [60, 120)
    h.add_usage("small", 130.0, 7)
    h.add_usage("small", 131.0, 0)  # ignored
    assert h.usage(200.0) == {"big": 170, "small": 7}
    assert h.snapshot(200.0).usage == {"big": 170, "small": 7}
    # A bucket counts until window seconds after its end.
    assert h.usage(3659.999) == {"big": 170, "small": 7}
    assert h.usage(3660.0) == {"big": 50, "small": 7}
    assert h.snapshot(3660.0).usage == {"big": 50, "small": 7}
    assert h.usage(3720.0) == {"small": 7}
    assert h.usage(3780.0) == {}
    assert h.snapshot(3780.0).usage == {}


def test_usage_memory_is_bounded() -> None:
    h = Health(usage_window_s=3600, usage_bucket_s=60)
    for s in range(0, 4 * 3600, 5):
        h.add_usage("m", float(s), 1)
    assert len(h._usage.buckets["m"]) <= 3600 // 60 + 1
    # Every second-5 token of the last 61 buckets, and nothing older.
    now = 4 * 3600 - 5.0
    assert h.usage(now) == {"m": 61 * 12}


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=5000, allow_nan=False),
            st.sampled_from(["x", "y"]),
            st.integers(min_value=1, max_value=1000),
        ),
        max_size=40,
    ),
    query=st.floats(min_value=0, max_value=9000, allow_nan=False),
)
def test_usage_matches_a_naive_model(events: list[tuple[float, str, int]], query: float) -> None:
    window, bucket = 600.0, 60.0
    h = Health(usage_window_s=window, usage_bucket_s=bucket)
    events = sorted(events)
    for t, model, n in events:
        h.add_usage(model, t, n)
    at = max([query, *(t for t, _, _ in events)])
    expected: dict[str, int] = {}
    for t, model, n in events:
        end = (int(t // bucket) + 1) * bucket
        if at < end + window:
            expected[model] = expected.get(model, 0) + n
    assert h.usage(at) == expected


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["fail", "ok", "acquire", "probe_ok", "probe_fail", "limit"]),
            st.floats(min_value=0, max_value=40, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_half_open_never_admits_two_trials(ops: list[tuple[str, float]]) -> None:
    h = Health(["a"], failure_threshold=2, cooldown_s=10, trial_timeout_s=1000)
    now = 0.0
    admitted_since_outcome = 0
    for op, dt in ops:
        now += dt
        if op == "acquire":
            was_closed = h.circuit("a", now) == "closed"
            if h.acquire_trial("a", now) and not was_closed:
                admitted_since_outcome += 1
            assert admitted_since_outcome <= 1
            continue
        admitted_since_outcome = 0
        if op == "fail":
            h.failure("a", now, "x")
        elif op == "ok":
            h.success("a", now, 1.0)
        elif op == "probe_ok":
            h.probe_result("a", now, True, 1.0, None)
        elif op == "probe_fail":
            h.probe_result("a", now, False, None, None, "x")
        else:
            h.rate_limited("a", now, dt)
        # The snapshot and the gate agree.
        snap = h.snapshot(now).backends["a"].circuit
        assert snap == h.circuit("a", now)


# ================================================================ models, flags, snapshot


def test_missing_models() -> None:
    seen, hook = recorder()
    h = Health(["vllm", "ollama"], expected={"vllm": ["qwen", "llama"]}, on_change=hook)
    assert h.missing_models("vllm") == frozenset()  # nothing known yet: skip nothing
    h.probe_result("vllm", 0.0, True, 5.0, frozenset({"qwen", "other"}))
    assert h.missing_models("vllm") == frozenset({"llama"})
    assert h.snapshot(0.0).backends["vllm"].missing_models == frozenset({"llama"})
    assert h.snapshot(0.0).backends["ollama"].missing_models == frozenset()
    assert h.health("vllm") == "degraded"
    assert h.status(0.0)["vllm"]["models"] == ["other", "qwen"]
    assert h.status(0.0)["vllm"]["missing_models"] == ["llama"]
    # A failed probe (no list) keeps the last list.
    h.probe_result("vllm", 1.0, False, None, None, "timeout")
    assert h.missing_models("vllm") == frozenset({"llama"})
    h.probe_result("vllm", 2.0, True, 5.0, frozenset({"qwen", "llama"}))
    assert h.missing_models("vllm") == frozenset()
    assert h.health("vllm") == "up"
    h.configure(["vllm", "ollama"], {"vllm": ["mistral"]})  # a reload routes another model
    assert h.snapshot(3.0).backends["vllm"].missing_models == frozenset({"mistral"})
    assert h.health("vllm") == "degraded"
    assert seen == [
        ("vllm", "unknown", "degraded"),
        ("vllm", "degraded", "down"),
        ("vllm", "down", "up"),
        ("vllm", "up", "degraded"),
    ]


def test_in_flight_and_no_key() -> None:
    h = Health(["a", "b"])
    h.begin("a")
    h.begin("a")
    attempt = h.attempt("b")
    assert attempt is not None
    with attempt:
        assert h.snapshot(0.0).backends["b"].in_flight == 1
    assert h.snapshot(0.0).backends["b"].in_flight == 0
    h.end("a")
    assert h.snapshot(0.0).backends["a"].in_flight == 1
    h.end("a")
    h.end("a")  # never negative
    assert h.snapshot(0.0).backends["a"].in_flight == 0
    attempt = h.attempt("a")
    assert attempt is not None
    with pytest.raises(RuntimeError), attempt:
        raise RuntimeError("boom")
    assert h.snapshot(0.0).backends["a"].in_flight == 0
    assert h.no_key("b") is False
    h.set_no_key("b")
    assert h.no_key("b") is True
    assert h.snapshot(0.0).backends["b"].no_key is True
    assert h.status(0.0)["b"]["no_key"] is True
    h.set_no_key("b", False)
    assert h.snapshot(0.0).backends["b"].no_key is False


def test_snapshot_is_immutable_and_independent() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30)
    active = {"gpu": "vllm"}
    snap = h.snapshot(0.0, active, "prefer_local", 0.25)
    assert isinstance(snap, LiveState)
    assert snap.backends == {"a": BackendState()}
    assert snap.active == {"gpu": "vllm"}
    assert snap.preference == "prefer_local"
    assert snap.random == 0.25
    with pytest.raises(TypeError):
        snap.backends["a"] = BackendState(in_flight=9)  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.usage["m"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.active["gpu"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.backends["a"].in_flight = 3  # type: ignore[misc]
    active["gpu"] = "llamacpp"
    h.begin("a")
    h.failure("a", 1.0, "timeout")
    h.add_usage("m", 1.0, 10)
    assert snap.active == {"gpu": "vllm"}
    assert snap.backends["a"] == BackendState()
    assert snap.usage == {}
    later = h.snapshot(1.0)
    assert later.backends["a"].circuit == "open"
    assert later.backends["a"].in_flight == 1
    assert later.usage == {"m": 10}
    assert later.active == {}
    assert isinstance(later.active, MappingProxyType)


def test_snapshot_is_cached_until_something_changes() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=30)
    h.failure("a", 0.0, "timeout")
    s1 = h.snapshot(1.0)
    s2 = h.snapshot(2.0, {"g": "a"}, None, 0.5)
    assert s2.backends is s1.backends  # nothing recorded, no deadline passed
    assert s2.active == {"g": "a"}
    # The cooldown deadline passes: rebuilt without any event.
    s3 = h.snapshot(30.0)
    assert s3.backends is not s1.backends
    assert s3.backends["a"].circuit == "half_open"
    assert h.snapshot(31.0).backends is s3.backends
    h.begin("a")
    assert h.snapshot(31.0).backends["a"].in_flight == 1


def test_status_is_json_able_and_complete() -> None:
    h = Health(["a", "fresh"], failure_threshold=3)
    h.probe_result("a", 10.0, True, 12.0, frozenset({"m:latest", "m"}), "ok")
    h.begin("a")
    h.failure("a", 12.0, "http_502")
    status = h.status(15.0)
    assert json.loads(json.dumps(status)) == status
    assert status["fresh"]["health"] == "unknown"
    assert status["fresh"]["circuit"] == "closed"
    assert status["fresh"]["latency_ms"] is None
    a = status["a"]
    assert a["health"] == "degraded"
    assert a["circuit"] == "closed"
    assert a["in_flight"] == 1
    assert a["consecutive_failures"] == 1
    assert a["last_error"] == "http_502"
    assert a["last_error_ago_s"] == 3.0
    assert a["latency_ms"] == 12.0
    assert a["last_probe_ago_s"] == 5.0
    assert a["last_probe_ok"] is True
    assert a["last_probe_detail"] == "ok"
    assert a["models"] == ["m", "m:latest"]
    assert a["retry_in_s"] is None


def test_hooks_survive_exceptions_and_can_be_removed() -> None:
    seen, hook = recorder()
    h = Health(["a"])

    def broken(name: str, old: HealthWord, new: HealthWord) -> None:
        raise ValueError("tray fell over")

    h.add_listener(broken)
    remove = h.add_listener(hook)
    h.success("a", 0.0, 1.0)
    assert seen == [("a", "unknown", "up")]
    remove()
    remove()  # idempotent
    h.probe_result("a", 1.0, False, None, None, "timeout")
    assert seen == [("a", "unknown", "up")]
    assert h.health("a") == "down"


def test_configure_keeps_state_of_retained_backends() -> None:
    h = Health(["a", "b"], failure_threshold=1)
    h.failure("a", 0.0, "timeout")
    h.configure(["a", "c"], expected={"c": ["m"]})
    assert h.backends == ("a", "c")
    assert h.circuit("a", 1.0) == "open"
    assert set(h.snapshot(1.0).backends) == {"a", "c"}
    # Unknown names are tracked on first use.
    h.success("z", 2.0, 1.0)
    assert "z" in h.snapshot(2.0).backends
    h.configure([])
    assert h.snapshot(2.0).backends == {}


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def monotonic(self) -> float:
        return self.t

    def time(self) -> float:
        return 1_700_000_000.0 + self.t


def _attempt(h: Health, backend: str) -> Attempt:
    a = h.attempt(backend)
    assert a is not None, f"{backend}'s circuit is open"
    return a


def test_attempt_records_each_kind_by_what_it_says_of_the_backend() -> None:
    clock = FakeClock()
    h = Health(["a"], failure_threshold=2, cooldown_s=30, clock=clock)
    # failures that count: two in a row open the circuit, reading the clock
    for _ in range(2):
        with pytest.raises(BackendError), _attempt(h, "a"):
            raise BackendError("refused", "cannot connect")
    assert h.attempt("a") is None
    assert h.why_skipped("a") == (
        "circuit open after 2 × connection refused (retry in 30s)",
        "circuit_open",
    )
    clock.t += 31  # the cooldown is over: one trial
    with _attempt(h, "a") as a:
        assert h.attempt("a") is None  # the trial is taken
        a.ok(12.0)
    assert h.circuit("a", clock.t) == "closed"
    assert h.status(clock.t)["a"]["request_latency_ms"] == 12.0
    # the request's own faults say the backend answered: they never open it
    for kind in ("client_error", "context_length", "translation", "model_not_found"):
        for _ in range(3):
            with pytest.raises(BackendError), _attempt(h, "a"):
                raise BackendError(kind, "the request's fault")
    assert h.circuit("a", clock.t) == "closed"
    assert h.health("a") == "up"
    # a rate limit opens it until its Retry-After, without counting a failure
    with pytest.raises(BackendError), _attempt(h, "a"):
        raise BackendError("rate_limited", "slow down", status=429, retry_after=7)
    assert h.why_skipped("a") == ("rate-limited (retry in 7s)", "rate_limited")
    assert h.status(clock.t)["a"]["consecutive_failures"] == 0


def test_attempt_without_outcome_gives_the_trial_back_and_counts_usage() -> None:
    clock = FakeClock()
    h = Health(["a"], failure_threshold=1, cooldown_s=5, clock=clock)
    h.failure("a", clock.t, "reset")
    clock.t += 6
    with pytest.raises(KeyboardInterrupt), _attempt(h, "a"):  # the client went away
        raise KeyboardInterrupt
    assert h.snapshot(clock.t).backends["a"].in_flight == 0
    with _attempt(h, "a") as a:  # the trial is free again
        a.ok()
        a.used("m", 40)
        # a stream that breaks after its first byte is recorded as well
        a.failed(BackendError("idle_timeout", "sent nothing for 1s"))
    assert h.circuit("a", clock.t) == "open"
    assert h.usage(clock.t) == {"m": 40}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"cooldown_s": -1},
        {"cooldown_s": 30, "max_cooldown_s": 10},
        {"latency_alpha": 0},
        {"latency_alpha": 1.5},
        {"usage_window_s": 0},
        {"usage_bucket_s": 0},
        {"trial_timeout_s": 0},
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Health(**kwargs)  # type: ignore[arg-type]


def test_zero_cooldown_goes_straight_to_half_open() -> None:
    h = Health(["a"], failure_threshold=1, cooldown_s=0)
    h.failure("a", 5.0, "timeout")
    assert h.circuit("a", 5.0) == "half_open"
    assert h.acquire_trial("a", 5.0)
    assert not h.acquire_trial("a", 5.0)


# ================================================================ real probes

Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp app on a free loopback port; yields a starter returning its root URL."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    p = Pool(proxies={})
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def release() -> asyncio.Event:
    """Set at teardown so hanging handlers finish before their server closes."""
    return asyncio.Event()


@pytest.fixture(autouse=True)
async def _release_hanging(release: asyncio.Event) -> AsyncIterator[None]:
    yield
    release.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def app_with(
    routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app


def json_handler(
    doc: object, status: int = 200
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(doc, status=status)

    return handler


def text_handler(
    text: str, status: int = 200
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=text, status=status)

    return handler


async def test_probe_ollama_tags(serve: Serve, pool: Pool) -> None:
    seen_auth: list[str | None] = []

    async def tags(request: web.Request) -> web.StreamResponse:
        seen_auth.append(request.headers.get("Authorization"))
        return web.json_response(
            {
                "models": [
                    {"name": "llama3:latest", "model": "llama3:latest", "size": 1},
                    {"name": "qwen2.5:7b", "model": "qwen2.5:7b"},
                    {"name": "alias", "model": "gpt-oss:120b-cloud"},
                    "junk",
                ]
            }
        )

    base = await serve(app_with({"/api/tags": tags}))
    r = await probe(pool, "ollama", base + "/", {"Authorization": "Bearer k"}, 2.0)
    assert r.ok is True
    assert r.detail == "ok"
    assert r.models == frozenset(
        {"llama3:latest", "llama3", "qwen2.5:7b", "alias", "gpt-oss:120b-cloud"}
    )
    assert r.latency_ms > 0
    assert seen_auth == ["Bearer k"]


async def test_probe_ollama_with_no_models(serve: Serve, pool: Pool) -> None:
    base = await serve(app_with({"/api/tags": json_handler({"models": []})}))
    r = await probe(pool, "ollama", base, {}, 2.0)
    assert (r.ok, r.models, r.detail) == (True, frozenset(), "ok")


async def test_probe_openai_models(serve: Serve, pool: Pool) -> None:
    doc = {
        "object": "list",
        "data": [
            {"id": "Qwen/Qwen2.5-7B-Instruct", "object": "model"},
            {"id": "lora-a", "object": "model"},
            {"object": "model"},
        ],
    }
    base = await serve(app_with({"/v1/models": json_handler(doc)}))
    r = await probe(pool, "openai", base + "/v1", {}, 2.0)
    assert r.ok is True
    assert r.models == frozenset({"Qwen/Qwen2.5-7B-Instruct", "lora-a"})
    assert r.detail == "ok"


async def test_probe_openai_404_then_health_ok(serve: Serve, pool: Pool) -> None:
    base = await serve(app_with({"/health": json_handler({"status": "ok"})}))
    r = await probe(pool, "openai", base + "/v1", {}, 2.0)
    assert (r.ok, r.models, r.detail) == (True, None, "ok (/health)")


async def test_probe_openai_health_503_is_loading(serve: Serve, pool: Pool) -> None:
    loading = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    base = await serve(app_with({"/health": json_handler(loading, 503)}))
    r = await probe(pool, "openai", base + "/v1", {}, 2.0)
    assert (r.ok, r.models, r.detail) == (False, None, "loading")


async def test_probe_openai_models_503_loading(serve: Serve, pool: Pool) -> None:
    loading = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    base = await serve(app_with({"/v1/models": json_handler(loading, 503)}))
    r = await probe(pool, "openai", base + "/v1", {}, 2.0)
    assert (r.ok, r.detail) == (False, "loading")


async def test_probe_openai_404_everywhere(serve: Serve, pool: Pool) -> None:
    base = await serve(app_with({}))
    r = await probe(pool, "openai", base + "/v1", {}, 2.0)
    assert (r.ok, r.detail) == (False, "HTTP 404")


@pytest.mark.parametrize(
    ("status", "detail"), [(500, "HTTP 500"), (401, "HTTP 401"), (503, "HTTP 503")]
)
async def test_probe_non_2xx(serve: Serve, pool: Pool, status: int, detail: str) -> None:
    base = await serve(
        app_with(
            {
                "/v1/models": text_handler("nope", status),
                "/api/tags": text_handler("nope", status),
            }
        )
    )
    for kind, url in (("openai", base + "/v1"), ("ollama", base)):
        r = await probe(pool, kind, url, {}, 2.0)  # type: ignore[arg-type]
        assert (r.ok, r.models, r.detail) == (False, None, detail)


async def test_probe_invalid_json(serve: Serve, pool: Pool) -> None:
    base = await serve(
        app_with(
            {
                "/v1/models": text_handler("<html>hello</html>"),
                "/api/tags": text_handler("{not json"),
            }
        )
    )
    r = await probe(pool, "openai", base + "/v1", {}, 2.0)
    assert (r.ok, r.models, r.detail) == (False, None, "invalid JSON")
    r = await probe(pool, "ollama", base, {}, 2.0)
    assert (r.ok, r.detail) == (False, "invalid JSON")


async def test_probe_unexpected_json_shape(serve: Serve, pool: Pool) -> None:
    base = await serve(
        app_with({"/v1/models": json_handler([1, 2]), "/api/tags": json_handler({"x": 1})})
    )
    r = await probe(pool, "openai", base + "/v1", {}, 2.0)
    assert r.ok is False and r.detail.startswith("unexpected JSON")
    r = await probe(pool, "ollama", base, {}, 2.0)
    assert r.ok is False and r.detail.startswith("unexpected JSON")


async def test_probe_refused(pool: Pool) -> None:
    port = free_port()
    for kind, url in (
        ("openai", f"http://127.0.0.1:{port}/v1"),
        ("ollama", f"http://127.0.0.1:{port}"),
    ):
        r = await probe(pool, kind, url, {}, 2.0)  # type: ignore[arg-type]
        assert (r.ok, r.models, r.detail) == (False, None, "connection refused")


async def test_probe_dns_failure(pool: Pool) -> None:
    r = await probe(pool, "ollama", "http://no-such-host.invalid", {}, 3.0)
    assert r.ok is False
    assert r.detail in {"DNS lookup failed", "timeout"}


async def test_probe_timeout(serve: Serve, pool: Pool, release: asyncio.Event) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"models": []})

    base = await serve(app_with({"/api/tags": hang}))
    # the handler never answers: only the probe's own timeout can end it
    r = await asyncio.wait_for(probe(pool, "ollama", base, {}, 0.2), 10)
    assert (r.ok, r.models, r.detail) == (False, None, "timeout")


async def test_probe_never_raises_on_bad_input(pool: Pool) -> None:
    r = await probe(pool, "bogus", "http://127.0.0.1:1", {}, 1.0)  # type: ignore[arg-type]
    assert r.ok is False and "unknown kind" in r.detail
    r = await probe(pool, "ollama", "not a url", {}, 1.0)
    assert (r.ok, r.detail) == (False, "invalid URL")


# ================================================================ Prober


async def start_on(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner


async def wait_for_word(h: Health, name: str, word: HealthWord, timeout: float) -> float:
    """Poll until the backend's health word is `word`; return the time it took."""
    t0 = time.monotonic()
    while h.health(name) != word:
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{name} still {h.health(name)!r}, wanted {word!r}")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


async def test_prober_marks_backend_healthy_within_one_interval() -> None:
    interval = 0.4
    port = free_port()
    seen, hook = recorder()
    h = Health(["local"], failure_threshold=1, cooldown_s=60)
    prober = Prober(
        h,
        [ProbeTarget("local", "ollama", f"http://127.0.0.1:{port}")],
        interval_s=interval,
        timeout_s=0.2,
        on_change=hook,
    )
    prober.start()
    runner: web.AppRunner | None = None
    try:
        await wait_for_word(h, "local", "down", 2.0)
        assert h.circuit("local", time.monotonic()) == "open"  # cooldown 60 s, far away
        assert h.status(time.monotonic())["local"]["last_probe_detail"] == "connection refused"
        hits: list[int] = []

        async def tags(request: web.Request) -> web.StreamResponse:
            hits.append(h.health("local") == "up")
            return web.json_response({"models": []})

        runner = await start_on(app_with({"/api/tags": tags}), port)
        await wait_for_word(h, "local", "up", 3.0)
        # the first probe that reached it (the next round) marked it up, with
        # no request in between and the 60 s cooldown far away
        assert hits[:1] == [False]
        assert h.circuit("local", time.monotonic()) == "closed"
        assert seen == [("local", "unknown", "down"), ("local", "down", "up")]
    finally:
        await prober.stop()
        if runner is not None:
            await runner.cleanup()


async def test_prober_stop_cancels_promptly_and_cleans_up(release: asyncio.Event) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"models": []})

    port = free_port()
    runner = await start_on(app_with({"/api/tags": hang}), port)
    seen, hook = recorder()
    h = Health(["slow"])
    prober = Prober(
        h,
        [ProbeTarget("slow", "ollama", f"http://127.0.0.1:{port}")],
        interval_s=30,
        timeout_s=20,
        on_change=hook,
    )
    try:
        prober.start()
        prober.start()  # idempotent
        assert prober.running
        await asyncio.sleep(0.2)  # the probe is now stuck in the request (for 20 s)
        await asyncio.wait_for(prober.stop(), 5)  # cancelled, not waited for
        assert not prober.running
        assert prober._own_pool is None
        assert h.health("slow") == "unknown"  # the cancelled probe recorded nothing
        h.success("slow", 0.0, 1.0)
        assert seen == []  # the hook left with the prober
        await prober.stop()  # idempotent
    finally:
        release.set()
        await runner.cleanup()


async def test_probe_all_feeds_health_and_skips_no_key(serve: Serve, pool: Pool) -> None:
    base = await serve(
        app_with(
            {
                "/api/tags": json_handler({"models": [{"name": "a:latest", "model": "a:latest"}]}),
                "/v1/models": json_handler({"data": [{"id": "q"}]}),
            }
        )
    )
    h = Health(["ol", "oa", "cloud"], expected={"oa": ["q", "r"]})
    h.set_no_key("cloud")
    prober = Prober(
        h,
        [
            ProbeTarget("ol", "ollama", base),
            ProbeTarget("oa", "openai", base + "/v1"),
            ProbeTarget("cloud", "openai", "http://127.0.0.1:1/v1", {"Authorization": "x"}),
        ],
        pool=pool,
        timeout_s=2.0,
    )
    results = await prober.probe_all()
    assert set(results) == {"ol", "oa"}
    assert all(isinstance(r, ProbeResult) and r.ok for r in results.values())
    assert h.health("ol") == "up"
    assert h.health("oa") == "degraded"
    assert h.missing_models("oa") == frozenset({"r"})
    assert h.health("cloud") == "unknown"
    snap = h.snapshot(time.monotonic())
    assert snap.backends["ol"].latency_ms is not None
    assert snap.backends["oa"].missing_models == frozenset({"r"})
    await prober.stop()  # never started: harmless; the shared pool stays open
    assert not pool._closed and prober._own_pool is None


async def test_probe_soon_runs_a_round_early(serve: Serve) -> None:
    calls: list[float] = []

    async def tags(request: web.Request) -> web.StreamResponse:
        calls.append(time.monotonic())
        return web.json_response({"models": []})

    base = await serve(app_with({"/api/tags": tags}))
    h = Health(["a"])
    prober = Prober(h, [ProbeTarget("a", "ollama", base)], interval_s=30, timeout_s=1)
    prober.start()
    try:
        await wait_for_word(h, "a", "up", 2.0)
        assert len(calls) == 1
        prober.probe_soon()
        t0 = time.monotonic()
        while len(calls) < 2 and time.monotonic() - t0 < 2.0:
            await asyncio.sleep(0.01)
        assert len(calls) == 2
    finally:
        await prober.stop()


# --------------------------------------------------------------------------- incremental snapshots

_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "begin",
                "end",
                "success",
                "failure",
                "rate_limited",
                "trial",
                "release",
                "usage",
                "no_key",
                "probe_ok",
                "probe_fail",
                "snapshot",
            ]
        ),
        st.sampled_from(["a", "b", "c"]),
        st.floats(min_value=0.0, max_value=40.0),  # seconds since the previous step
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_a_snapshot_updated_in_place_equals_one_built_from_scratch(ops: list[tuple]) -> None:
    """Snapshots rebuild only what changed since the last one; whatever the
    sequence of events and times, that must equal a snapshot built afresh."""
    h = Health(["a", "b", "c"], failure_threshold=2, cooldown_s=10.0, usage_window_s=60.0)
    now = 1000.0
    for op, name, dt in ops:
        now += dt
        if op == "begin":
            h.begin(name)
        elif op == "end":
            h.end(name)
        elif op == "success":
            h.success(name, now, 12.0 + dt)
        elif op == "failure":
            h.failure(name, now, "refused")
        elif op == "rate_limited":
            h.rate_limited(name, now, dt)
        elif op == "trial":
            h.acquire_trial(name, now)
        elif op == "release":
            h.release_trial(name)
        elif op == "usage":
            h.add_usage(f"m-{name}", now, int(dt * 10) + 1)
        elif op == "no_key":
            h.set_no_key(name, dt > 20)
        elif op == "probe_ok":
            h.probe_result(name, now, True, 5.0)
        elif op == "probe_fail":
            h.probe_result(name, now, False, detail="timeout")
        got = h.snapshot(now)
        fresh = Health(["a", "b", "c"])
        fresh._b, fresh._usage, fresh._expected = h._b, h._usage, h._expected
        fresh.breaker = h.breaker
        want = fresh.snapshot(now)
        assert dict(got.backends) == dict(want.backends), (op, name, now)
        assert dict(got.usage) == dict(want.usage), (op, name, now)
