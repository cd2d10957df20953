"""Live backend health: in-flight counts, circuit breakers, latency, probes, usage.

`Health` is plain bookkeeping for one event-loop thread. It never reads the
system clock: every method that needs the time takes ``now`` (monotonic
seconds), and `attempt` reads the clock it was given, so tests drive it with
exact numbers.

Requests feed it through one `Attempt` each (`attempt.py`: what each
outcome means for the backend); the circuit breaker's rules are `circuit.py`'s,
the usage window `usage.py`'s.

Latency: two EWMAs, one over request successes (``success(latency_ms=...)``)
and one over successful probes, because a generation takes far longer than a
``GET /models``. The snapshot's ``latency_ms`` is the request EWMA when there is
one, else the probe EWMA. The first sample sets the value; each next sample
``x`` gives ``alpha * x + (1 - alpha) * previous``.

Usage: tokens per public model name within ``usage_window_s``, in buckets
of ``usage_bucket_s`` seconds (`usage.UsageWindow`).

Health word (status and change hook) depends only on recorded events, not on
the clock, so the hook fires exactly when something is recorded:

* ``down``: circuit opened by failures (open or half-open), or the last
  observation was a failed probe;
* ``degraded``: circuit opened by a rate limit, the last request failed (below
  the threshold), or the probe is missing some expected models;
* ``up``: the last observation succeeded;
* ``unknown``: nothing observed yet.

``no_key`` is reported beside the word, not folded into it.

With shared state (`shared.Shared`), `set_elsewhere` gives the other
instances' in-flight counts, latencies and usage: the snapshot adds them to
this instance's own (`status` and `in_flight` stay this instance's).

`probe.Prober` runs the background probes that feed `probe_result`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, NamedTuple

from ..clock import SYSTEM, Clock
from ..types import BackendState, Circuit, Feature, LiveState, Preference
from .attempt import Attempt
from .circuit import Breaker, CircuitState, OpenReason
from .shared_view import View, merge_one, merge_usage
from .usage import UsageWindow

__all__ = ["Attempt", "ChangeHook", "Health", "HealthWord", "OpenReason"]

log = logging.getLogger(__name__)

HealthWord = Literal["up", "down", "degraded", "unknown"]
# (backend, old word, new word); runs on the event-loop thread.
ChangeHook = Callable[[str, HealthWord, HealthWord], None]

_NO_STRS: frozenset[str] = frozenset()
_NO_ACTIVE: Mapping[str, str] = MappingProxyType({})
_NO_LACKS: Mapping[str, frozenset[Feature]] = MappingProxyType({})


@dataclass
class _Backend(CircuitState):
    in_flight: int = 0
    request_latency_ms: float | None = None
    probe_latency_ms: float | None = None
    # Outcome of the latest request or probe (rate limits excluded).
    last_ok: bool | None = None
    last_from_probe: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    last_probe_at: float | None = None
    last_probe_ok: bool | None = None
    last_probe_detail: str = ""
    models: frozenset[str] | None = None
    no_key: bool = False
    word: HealthWord = "unknown"


class _Cached(NamedTuple):
    version: int
    built_at: float
    valid_until: float
    backends: Mapping[str, BackendState]
    usage: Mapping[str, int]


class Health:
    """Per-backend live state for the router, plus a JSON view for `/status`."""

    def __init__(
        self,
        backends: Iterable[str] = (),
        *,
        expected: Mapping[str, Iterable[str]] | None = None,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        max_cooldown_s: float | None = None,
        latency_alpha: float = 0.3,
        usage_window_s: float = 3600.0,
        usage_bucket_s: float = 60.0,
        trial_timeout_s: float = 120.0,
        max_retry_after_s: float = 3600.0,
        on_change: ChangeHook | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if max_cooldown_s is None:
            max_cooldown_s = 10.0 * cooldown_s
        if not cooldown_s >= 0 or not max_cooldown_s >= cooldown_s:
            raise ValueError("need 0 <= cooldown_s <= max_cooldown_s")
        if not 0 < latency_alpha <= 1:
            raise ValueError("latency_alpha must be in (0, 1]")
        if not usage_window_s > 0 or not usage_bucket_s > 0:
            raise ValueError("usage_window_s and usage_bucket_s must be > 0")
        if not trial_timeout_s > 0 or not max_retry_after_s > 0:
            raise ValueError("trial_timeout_s and max_retry_after_s must be > 0")
        self.breaker = Breaker(
            failure_threshold,
            float(cooldown_s),
            float(max_cooldown_s),
            float(trial_timeout_s),
            float(max_retry_after_s),
        )
        self.latency_alpha = float(latency_alpha)
        self.clock = clock
        self._b: dict[str, _Backend] = {}
        self._expected: dict[str, frozenset[str]] = {}
        self._usage = UsageWindow(usage_window_s, usage_bucket_s)
        self._listeners: list[ChangeHook] = []
        self._version = 0
        self._cache: _Cached | None = None
        # What changed since the cached snapshot: these backends (None: anything,
        # rebuild all) and the usage totals. A request changes one backend
        # (in flight, latency), so the snapshot rebuilds one entry, not all.
        self._dirty: set[str] | None = None
        self._usage_dirty = True
        # What other instances have in flight and served (`proxy.shared`):
        # added to this one's in the snapshot; None: alone
        self._elsewhere: View | None = None
        if on_change is not None:
            self._listeners.append(on_change)
        self.configure(backends, expected)

    # ----------------------------------------------------------- configuration

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self._b)

    @property
    def usage_bucket_s(self) -> float:
        """The usage window's bucket (seconds)."""
        return self._usage.bucket_s

    def configure(
        self, backends: Iterable[str], expected: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        """Set the backend list (e.g. on config reload).

        Backends that stay keep their state; new ones start unknown; the others
        are forgotten. ``expected`` maps a backend to the upstream model ids the
        config routes to it (used for ``missing_models``); backends absent from
        it expect nothing. Leave out single-model servers that ignore the
        request's model field (llama.cpp, llama-cpp-python): their one model id
        is usually a file path that would never match.
        """
        self._b = {n: self._b.get(n) or _Backend() for n in dict.fromkeys(backends)}
        self._expected = {k: frozenset(v) for k, v in (expected or {}).items()}
        self._changed()
        for name, b in self._b.items():
            self._settle(name, b)

    def add_listener(self, hook: ChangeHook) -> Callable[[], None]:
        """Call ``hook(backend, old, new)`` when a health word changes.

        Returns a function that removes the hook. Exceptions from hooks are
        logged and swallowed.
        """
        self._listeners.append(hook)

        def remove() -> None:
            if hook in self._listeners:
                self._listeners.remove(hook)

        return remove

    # ---------------------------------------------------------------- in-flight

    def in_flight(self, backend: str) -> int:
        """Requests this instance has in flight on ``backend``."""
        b = self._b.get(backend)
        return b.in_flight if b is not None else 0

    def latency_ms(self, backend: str) -> float | None:
        """This instance's smoothed latency of ``backend`` (requests, else probes)."""
        b = self._b.get(backend)
        return self._latency(b) if b is not None else None

    def set_elsewhere(self, view: View | None) -> None:
        """Other instances' load, latencies and usage, for the snapshot."""
        self._elsewhere = view
        self._changed()
        self._usage_dirty = True

    def begin(self, backend: str) -> None:
        self._get(backend).in_flight += 1
        self._changed(backend)

    def end(self, backend: str) -> None:
        b = self._get(backend)
        b.in_flight = max(0, b.in_flight - 1)
        self._changed(backend)

    def attempt(self, backend: str) -> Attempt | None:
        """Start one request to ``backend``: None if its circuit is open (skip
        it), else an `Attempt` counted in flight (and holding the half-open
        trial, if this is it) until its ``with`` block ends."""
        now = self.clock.monotonic()
        if not self.acquire_trial(backend, now):
            return None
        self.begin(backend)
        return Attempt(self, backend, now)

    # ------------------------------------------------------------------ circuit

    def open_reason(self, backend: str) -> OpenReason | None:
        """Why the circuit is open ("failures" or "rate_limited"), if it is."""
        b = self._b.get(backend)
        return b.open_reason if b is not None else None

    def retry_in(self, backend: str, now: float) -> float | None:
        """Seconds until an open circuit allows a trial, if it is open."""
        b = self._b.get(backend)
        if b is None or b.open_until is None:
            return None
        return max(0.0, b.open_until - now)

    def why_skipped(self, backend: str) -> tuple[str, str]:
        """Why `attempt` refused ``backend`` now: (reason, kind), the kind
        being "rate_limited" or "circuit_open"."""
        limited = self.open_reason(backend) == "rate_limited"
        b = self._b.get(backend)
        why = "rate-limited" if limited else "circuit open"
        if not limited and b is not None and b.opened_by:
            why += f" after {b.opened_by}"
        wait = self.retry_in(backend, self.clock.monotonic())
        if wait is not None:
            why += f" (retry in {wait:.0f}s)"
        return why, "rate_limited" if limited else "circuit_open"

    def circuit(self, backend: str, now: float) -> Circuit:
        """The circuit as the router should see it (a taken trial reads "open")."""
        return self.breaker.phase(self._get(backend), now, router_view=True)

    def acquire_trial(self, backend: str, now: float) -> bool:
        """May a request go to ``backend`` now? Call it just before sending.

        Closed: always True. Open: False. Half-open: True exactly once (that
        request is the trial; report its outcome with success/failure/
        rate_limited, or `release_trial` if it never reached the backend).
        """
        b = self._get(backend)
        state = self.breaker.phase(b, now, router_view=True)
        if state == "closed":
            return True
        if state == "open":
            return False
        b.trial_at = now
        self._changed(backend)
        return True

    def release_trial(self, backend: str) -> None:
        """Give back a trial whose request was abandoned before any outcome."""
        b = self._get(backend)
        if b.trial_at is not None:
            b.trial_at = None
            self._changed(backend)

    # ----------------------------------------------------------------- outcomes

    def success(self, backend: str, now: float, latency_ms: float | None = None) -> None:
        b = self._get(backend)
        if latency_ms is not None:
            b.request_latency_ms = self._ewma(b.request_latency_ms, latency_ms)
        b.last_success_at = now
        self._ok(b, now, from_probe=False)
        self._settle(backend, b)

    def failure(self, backend: str, now: float, kind: str, detail: str = "") -> None:
        """A request to ``backend`` failed because of the backend.

        ``kind`` is a short word for `/status` ("timeout", "refused",
        "http_502", ...), ``detail`` a few words for people ("connection
        refused"). Client errors (HTTP 400 for a bad request) are not backend
        failures and should not be reported here.
        """
        b = self._get(backend)
        self._fail(b, now, kind, from_probe=False, detail=detail)
        self._settle(backend, b)

    def rate_limited(self, backend: str, now: float, retry_after_s: float | None = None) -> None:
        """The backend answered 429/503 with an optional Retry-After (seconds)."""
        b = self._get(backend)
        self.breaker.rate_limited(b, now, retry_after_s)
        b.last_error = "rate_limited"
        b.last_error_at = now
        self._settle(backend, b)

    def probe_result(
        self,
        backend: str,
        now: float,
        ok: bool,
        latency_ms: float | None = None,
        models: frozenset[str] | None = None,
        detail: str = "",
    ) -> None:
        """Record a probe. Success closes a failure-opened circuit; failure counts.

        ``models`` (the ids the server lists) replaces the remembered list when
        given; None keeps the previous list (e.g. a failed probe, or a server
        that only answered ``/health``).
        """
        b = self._get(backend)
        b.last_probe_at = now
        b.last_probe_ok = ok
        b.last_probe_detail = detail or ("ok" if ok else "failed")
        if models is not None:
            b.models = frozenset(models)
        if ok:
            if latency_ms is not None:
                b.probe_latency_ms = self._ewma(b.probe_latency_ms, latency_ms)
            self._ok(b, now, from_probe=True)
        else:
            self._fail(b, now, detail or "probe_failed", from_probe=True, detail=detail)
        self._settle(backend, b)

    def shared_open(
        self, backend: str, now: float, seconds: float, reason: OpenReason, why: str
    ) -> None:
        """Another instance opened ``backend``'s circuit (`proxy.shared`)."""
        b = self._get(backend)
        self.breaker.adopt(b, now, seconds, reason, why)
        self._settle(backend, b)

    def set_no_key(self, backend: str, no_key: bool = True) -> None:
        b = self._get(backend)
        if b.no_key != no_key:
            b.no_key = no_key
            self._changed(backend)

    def no_key(self, backend: str) -> bool:
        b = self._b.get(backend)
        return b is not None and b.no_key

    # -------------------------------------------------------------------- usage

    def add_usage(self, model: str, now: float, tokens: int) -> None:
        """Count ``tokens`` served for public model name ``model`` at ``now``."""
        if tokens <= 0:
            return
        self._usage.add(model, now, tokens)
        self._version += 1
        self._usage_dirty = True

    def usage(self, now: float) -> dict[str, int]:
        """Tokens per public model name within the window ending at ``now``."""
        return self._usage.totals(now)

    # ---------------------------------------------------------------- snapshots

    def health(self, backend: str) -> HealthWord:
        return self._get(backend).word

    def missing_models(self, backend: str) -> frozenset[str]:
        return self._missing(backend, self._get(backend))

    def snapshot(
        self,
        now: float,
        active: Mapping[str, str] = _NO_ACTIVE,
        preference: Preference | None = None,
        random: float = 0.0,
        lacks: Mapping[str, frozenset[Feature]] = _NO_LACKS,
        features: Mapping[str, frozenset[Feature]] = _NO_LACKS,
    ) -> LiveState:
        """An immutable `LiveState` for the router.

        The per-backend part and the usage totals are cached and rebuilt only
        when something was recorded or a time boundary (cooldown end, trial
        timeout, usage bucket expiry) has passed.
        """
        c = self._cache
        if c is None or self._dirty is None or not c.built_at <= now < c.valid_until:
            c = self._cache = self._build(now)
        elif c.version != self._version:
            c = self._cache = self._update(c, now)
        # (positionally, as the tuple it is: see `_state`)
        return tuple.__new__(
            LiveState,
            (
                c.backends,
                # (a read-only view is the caller's copy: `Runtime.snapshot`)
                active if type(active) is MappingProxyType else MappingProxyType(dict(active)),
                c.usage,
                preference,
                random,
                features,
                lacks,
            ),
        )

    def status(self, now: float) -> dict[str, dict[str, object]]:
        """A JSON-able view per backend for `/status` (times as "seconds ago")."""
        out: dict[str, dict[str, object]] = {}
        for name, b in self._b.items():
            phase = self.breaker.phase(b, now, router_view=False)
            retry_in = None
            if phase == "open" and b.open_until is not None:
                retry_in = round(b.open_until - now, 3)
            out[name] = {
                "health": b.word,
                "circuit": phase,
                "open_reason": b.open_reason,
                "retry_in_s": retry_in,
                "trial_in_flight": phase == "half_open" and self.breaker.trial_live(b, now),
                "in_flight": b.in_flight,
                "consecutive_failures": b.consecutive_failures,
                "last_error": b.last_error,
                "opened_by": b.opened_by or None if b.open_until is not None else None,
                "last_error_ago_s": _ago(now, b.last_error_at),
                "last_success_ago_s": _ago(now, b.last_success_at),
                "latency_ms": _r1(self._latency(b)),
                "request_latency_ms": _r1(b.request_latency_ms),
                "probe_latency_ms": _r1(b.probe_latency_ms),
                "last_probe_ago_s": _ago(now, b.last_probe_at),
                "last_probe_ok": b.last_probe_ok,
                "last_probe_detail": b.last_probe_detail or None,
                "models": sorted(b.models) if b.models is not None else None,
                "missing_models": sorted(self._missing(name, b)),
                "no_key": b.no_key,
            }
        return out

    # ---------------------------------------------------------------- internals

    def _get(self, backend: str) -> _Backend:
        b = self._b.get(backend)
        if b is None:
            b = self._b[backend] = _Backend()
            self._changed()
        return b

    def _changed(self, backend: str | None = None) -> None:
        """Something changed: ``backend``'s state, or (None) anything."""
        self._version += 1
        if backend is None:
            self._dirty = None
        elif self._dirty is not None:
            self._dirty.add(backend)

    def _ewma(self, prev: float | None, sample: float) -> float:
        if prev is None:
            return float(sample)
        return self.latency_alpha * sample + (1.0 - self.latency_alpha) * prev

    def _ok(self, b: _Backend, now: float, *, from_probe: bool) -> None:
        b.last_ok = True
        b.last_from_probe = from_probe
        self.breaker.succeeded(b, now)

    def _fail(
        self, b: _Backend, now: float, kind: str, *, from_probe: bool, detail: str = ""
    ) -> None:
        b.last_ok = False
        b.last_from_probe = from_probe
        b.last_error = kind
        b.last_error_at = now
        self.breaker.failed(b, now, detail or kind)

    def _missing(self, name: str, b: _Backend) -> frozenset[str]:
        expected = self._expected.get(name)
        if b.models is None or not expected:
            return _NO_STRS
        return expected - b.models

    def _word(self, name: str, b: _Backend) -> HealthWord:
        if b.open_until is not None:
            return "degraded" if b.open_reason == "rate_limited" else "down"
        if b.last_ok is None:
            return "unknown"
        if not b.last_ok:
            return "down" if b.last_from_probe else "degraded"
        if self._missing(name, b):
            return "degraded"
        return "up"

    def _settle(self, name: str, b: _Backend) -> None:
        """Bump the version and fire the change hooks if the word changed."""
        self._changed(name)
        new = self._word(name, b)
        old = b.word
        if new == old:
            return
        b.word = new
        for hook in list(self._listeners):
            try:
                hook(name, old, new)
            except Exception:
                log.exception("health change hook failed for %s", name)

    def _latency(self, b: _Backend) -> float | None:
        return b.request_latency_ms if b.request_latency_ms is not None else b.probe_latency_ms

    def _state(self, name: str, b: _Backend, now: float) -> tuple[BackendState, float]:
        """The router's view of one backend, and until when it holds."""
        if b.open_until is None and b.trial_at is None and self._elsewhere is None:
            # the common case, made as the tuple it is (a NamedTuple's own
            # constructor takes keywords: ~1 µs, on every request's snapshot,
            # as each changes its backend's in-flight count)
            state = tuple.__new__(
                BackendState,
                (b.in_flight, "closed", self._latency(b), b.no_key, self._missing(name, b)),
            )
            return state, math.inf
        state = BackendState(
            in_flight=b.in_flight,
            circuit=self.breaker.phase(b, now, router_view=True),
            latency_ms=self._latency(b),
            no_key=b.no_key,
            missing_models=self._missing(name, b),
        )
        if self._elsewhere is not None:
            state = merge_one(name, state, self._elsewhere)
        return state, self.breaker.holds_until(b, now)

    def _usage_state(self, now: float) -> tuple[Mapping[str, int], float]:
        usage: Mapping[str, int] = MappingProxyType(self.usage(now))
        if self._elsewhere is not None:
            usage = merge_usage(usage, self._elsewhere)
        return usage, self._usage.holds_until()

    def _build(self, now: float) -> _Cached:
        valid_until = math.inf
        states: dict[str, BackendState] = {}
        for name, b in self._b.items():
            states[name], until = self._state(name, b, now)
            valid_until = min(valid_until, until)
        usage, until = self._usage_state(now)
        self._dirty, self._usage_dirty = set(), False
        return _Cached(
            version=self._version,
            built_at=now,
            valid_until=min(valid_until, until),
            backends=MappingProxyType(states),
            usage=usage,
        )

    def _update(self, c: _Cached, now: float) -> _Cached:
        """``c`` with the changed backends (and usage) brought up to ``now``.
        A deadline that went away leaves ``valid_until`` early: that only
        brings the next full rebuild forward."""
        assert self._dirty is not None
        valid_until = c.valid_until
        states = dict(c.backends)
        for name in self._dirty:
            b = self._b.get(name)
            if b is None:
                states.pop(name, None)
                continue
            states[name], until = self._state(name, b, now)
            valid_until = min(valid_until, until)
        usage = c.usage
        if self._usage_dirty:
            usage, until = self._usage_state(now)
            valid_until = min(valid_until, until)
        self._dirty, self._usage_dirty = set(), False
        # (positionally: see `_state`; this runs on nearly every request)
        return tuple.__new__(
            _Cached, (self._version, c.built_at, valid_until, MappingProxyType(states), usage)
        )


def _r1(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _ago(now: float, t: float | None) -> float | None:
    return None if t is None else round(now - t, 3)
