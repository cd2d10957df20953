"""Live backend health: in-flight counts, circuit breakers, latency, probes, usage.

`Health` is plain bookkeeping for one event-loop thread. It never reads the
system clock: every method that needs the time takes ``now`` (monotonic
seconds), and `attempt` reads the clock it was given, so tests drive it with
exact numbers.

Requests feed it through one context, `attempt`::

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

Circuit breaker, per backend::

    closed --N consecutive failures--> open --cooldown elapses--> half_open
    half_open --acquire_trial()--> (one trial in flight; the router sees "open")
    trial/probe success --> closed          trial/probe failure --> open again

* ``failure_threshold`` consecutive failures (requests or probes) open a closed
  circuit for ``cooldown_s``.
* A failure in the half-open phase re-opens it with an exponential back-off:
  the k-th re-open in a row lasts ``cooldown_s * 2**k``, capped at
  ``max_cooldown_s`` (default 10 x cooldown: 30, 60, 120, 240, 300, 300 s...).
  Closing the circuit resets k to 0.
* Half-open admits exactly one trial: `acquire_trial` returns True once. If the
  trial's outcome is never reported (`release_trial` not called either), another
  trial is allowed after ``trial_timeout_s``.
* Any success (a request or a probe) closes the circuit at once, even before the
  cooldown has run out: a backend that comes back is healthy within one probe
  interval.
* `rate_limited` opens the circuit until ``now + retry_after`` (``cooldown_s``
  when the server gave no Retry-After; capped at ``max_retry_after_s``). Such an
  opening is lifted only by time: a success before then does not close it
  (a probe listing models says nothing about a quota). After it, the usual
  half-open trial applies. Rate limits do not count as failures.

Latency: two EWMAs, one over request successes (``success(latency_ms=...)``)
and one over successful probes, because a generation takes far longer than a
``GET /models``. The snapshot's ``latency_ms`` is the request EWMA when there is
one, else the probe EWMA. The first sample sets the value; each next sample
``x`` gives ``alpha * x + (1 - alpha) * previous``.

Usage: tokens per public model name in buckets of ``usage_bucket_s`` seconds.
A bucket counts until ``usage_window_s`` after its end, so a token is counted
for at least the window and at most window + bucket seconds; memory is at most
``window / bucket + 1`` buckets per model.

Health word (status and change hook) depends only on recorded events, not on
the clock, so the hook fires exactly when something is recorded:

* ``down``: circuit opened by failures (open or half-open), or the last
  observation was a failed probe;
* ``degraded``: circuit opened by a rate limit, the last request failed (below
  the threshold), or the probe is missing some expected models;
* ``up``: the last observation succeeded;
* ``unknown``: nothing observed yet.

``no_key`` is reported beside the word, not folded into it.

`probe.Prober` runs the background probes that feed `probe_result`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Literal, NamedTuple

from ..clock import SYSTEM, Clock
from ..errors import BackendError
from ..types import BackendState, Circuit, Feature, LiveState, Preference

__all__ = ["Attempt", "ChangeHook", "Health", "HealthWord", "OpenReason"]

log = logging.getLogger(__name__)

HealthWord = Literal["up", "down", "degraded", "unknown"]
OpenReason = Literal["failures", "rate_limited"]
# (backend, old word, new word); runs on the event-loop thread.
ChangeHook = Callable[[str, HealthWord, HealthWord], None]

_NO_STRS: frozenset[str] = frozenset()
_NO_ACTIVE: Mapping[str, str] = MappingProxyType({})
_NO_LACKS: Mapping[str, frozenset[Feature]] = MappingProxyType({})


@dataclass
class _Backend:
    in_flight: int = 0
    consecutive_failures: int = 0
    # None: closed. Otherwise open until this time, then half-open.
    open_until: float | None = None
    open_reason: OpenReason | None = None
    # How many times in a row the circuit re-opened after a half-open failure.
    reopens: int = 0
    # When the half-open trial was handed out; None: no trial in flight.
    trial_at: float | None = None
    request_latency_ms: float | None = None
    probe_latency_ms: float | None = None
    # Outcome of the latest request or probe (rate limits excluded).
    last_ok: bool | None = None
    last_from_probe: bool = False
    last_error: str | None = None
    # What the failures that opened the circuit were ("3 × connection refused").
    opened_by: str = ""
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
        self.failure_threshold = failure_threshold
        self.cooldown_s = float(cooldown_s)
        self.max_cooldown_s = float(max_cooldown_s)
        self.latency_alpha = float(latency_alpha)
        self.usage_window_s = float(usage_window_s)
        self.usage_bucket_s = float(usage_bucket_s)
        self.trial_timeout_s = float(trial_timeout_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.clock = clock
        self._b: dict[str, _Backend] = {}
        self._expected: dict[str, frozenset[str]] = {}
        # model -> deque of [bucket index, tokens], oldest first.
        self._usage: dict[str, deque[list[int]]] = {}
        self._listeners: list[ChangeHook] = []
        self._version = 0
        self._cache: _Cached | None = None
        # What changed since the cached snapshot: these backends (None: anything,
        # rebuild all) and the usage totals. A request changes one backend
        # (in flight, latency), so the snapshot rebuilds one entry, not all.
        self._dirty: set[str] | None = None
        self._usage_dirty = True
        if on_change is not None:
            self._listeners.append(on_change)
        self.configure(backends, expected)

    # ----------------------------------------------------------- configuration

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self._b)

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
        return self._circuit(self._get(backend), now, router_view=True)

    def acquire_trial(self, backend: str, now: float) -> bool:
        """May a request go to ``backend`` now? Call it just before sending.

        Closed: always True. Open: False. Half-open: True exactly once (that
        request is the trial; report its outcome with success/failure/
        rate_limited, or `release_trial` if it never reached the backend).
        """
        b = self._get(backend)
        state = self._circuit(b, now, router_view=True)
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
        if retry_after_s is None or not math.isfinite(retry_after_s) or retry_after_s <= 0:
            wait = self.cooldown_s
        else:
            wait = min(float(retry_after_s), self.max_retry_after_s)
        until = now + wait
        if b.open_until is None or now >= b.open_until or until > b.open_until:
            b.open_until = until
            b.open_reason = "rate_limited"
            b.trial_at = None
        # else: already open for longer (e.g. after failures): keep that.
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
        idx = math.floor(now / self.usage_bucket_s)
        buckets = self._usage.setdefault(model, deque())
        if buckets and buckets[-1][0] == idx:
            buckets[-1][1] += tokens
        elif buckets and buckets[-1][0] > idx:
            # Out-of-order time: fold into the newest bucket rather than reorder.
            buckets[-1][1] += tokens
        else:
            buckets.append([idx, tokens])
        self._prune_usage(now)
        self._version += 1
        self._usage_dirty = True

    def usage(self, now: float) -> dict[str, int]:
        """Tokens per public model name within the window ending at ``now``."""
        self._prune_usage(now)
        return {m: sum(t for _, t in q) for m, q in self._usage.items()}

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
        return LiveState(
            backends=c.backends,
            active=MappingProxyType(dict(active)),
            usage=c.usage,
            preference=preference,
            random=random,
            lacks=lacks,
            features=features,
        )

    def status(self, now: float) -> dict[str, dict[str, object]]:
        """A JSON-able view per backend for `/status` (times as "seconds ago")."""
        out: dict[str, dict[str, object]] = {}
        for name, b in self._b.items():
            phase = self._circuit(b, now, router_view=False)
            retry_in = None
            if phase == "open" and b.open_until is not None:
                retry_in = round(b.open_until - now, 3)
            out[name] = {
                "health": b.word,
                "circuit": phase,
                "open_reason": b.open_reason,
                "retry_in_s": retry_in,
                "trial_in_flight": phase == "half_open" and self._trial_live(b, now),
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

    def _trial_live(self, b: _Backend, now: float) -> bool:
        return b.trial_at is not None and now < b.trial_at + self.trial_timeout_s

    def _circuit(self, b: _Backend, now: float, *, router_view: bool) -> Circuit:
        if b.open_until is None:
            return "closed"
        if now < b.open_until:
            return "open"
        if router_view and self._trial_live(b, now):
            return "open"
        return "half_open"

    def _close(self, b: _Backend) -> None:
        b.open_until = None
        b.open_reason = None
        b.trial_at = None

    def _ok(self, b: _Backend, now: float, *, from_probe: bool) -> None:
        b.consecutive_failures = 0
        b.last_ok = True
        b.last_from_probe = from_probe
        if b.open_until is not None and (b.open_reason != "rate_limited" or now >= b.open_until):
            self._close(b)
            b.reopens = 0

    def _fail(
        self, b: _Backend, now: float, kind: str, *, from_probe: bool, detail: str = ""
    ) -> None:
        b.consecutive_failures += 1
        b.last_ok = False
        b.last_from_probe = from_probe
        b.last_error = kind
        b.last_error_at = now
        why = f"{b.consecutive_failures} × {detail or kind}"
        if b.open_until is None:
            if b.consecutive_failures >= self.failure_threshold:
                b.reopens = 0
                self._open(b, now, self.cooldown_s)
                b.opened_by = why
        elif now >= b.open_until:
            # Half-open phase: the trial (or a probe standing in for it) failed.
            b.reopens += 1
            self._open(b, now, min(self.cooldown_s * 2.0**b.reopens, self.max_cooldown_s))
            b.opened_by = why
        # Already open: keep the current deadline.

    def _open(self, b: _Backend, now: float, seconds: float) -> None:
        b.open_until = now + seconds
        b.open_reason = "failures"
        b.trial_at = None

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

    def _usage_expiry(self, idx: int) -> float:
        return (idx + 1) * self.usage_bucket_s + self.usage_window_s

    def _prune_usage(self, now: float) -> None:
        dead: list[str] = []
        for model, q in self._usage.items():
            while q and self._usage_expiry(q[0][0]) <= now:
                q.popleft()
            if not q:
                dead.append(model)
        for model in dead:
            del self._usage[model]

    def _state(self, name: str, b: _Backend, now: float) -> tuple[BackendState, float]:
        """The router's view of one backend, and until when it holds."""
        until = math.inf
        if b.open_until is not None and now < b.open_until:
            until = b.open_until
        if b.trial_at is not None and self._trial_live(b, now):
            until = min(until, b.trial_at + self.trial_timeout_s)
        state = BackendState(
            in_flight=b.in_flight,
            circuit=self._circuit(b, now, router_view=True),
            latency_ms=self._latency(b),
            no_key=b.no_key,
            missing_models=self._missing(name, b),
        )
        return state, until

    def _usage_state(self, now: float) -> tuple[Mapping[str, int], float]:
        usage = self.usage(now)
        until = math.inf
        for q in self._usage.values():
            until = min(until, self._usage_expiry(q[0][0]))
        return MappingProxyType(usage), until

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
        return _Cached(
            version=self._version,
            built_at=c.built_at,
            valid_until=valid_until,
            backends=MappingProxyType(states),
            usage=usage,
        )


class Attempt:
    """One request to one backend, from just before it is sent to its outcome
    (see the module docstring)."""

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


def _r1(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _ago(now: float, t: float | None) -> float | None:
    return None if t is None else round(now - t, 3)
