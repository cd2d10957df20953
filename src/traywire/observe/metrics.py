"""``GET /metrics``: Prometheus text format, through the official ``prometheus-client``.

Each app gets its own `CollectorRegistry` (never the process-global one, so
two proxies in one process, or a test suite, never share counters).

From every `RequestRecord` (an observer on the runtime):

- ``traywire_requests_total{route,capability,backend,model,outcome}``: the
  served backend and public model name (empty when nothing served), outcome
  as in the request log (served, failed, client_error, cut, cancelled);
- ``traywire_request_duration_seconds{backend}`` and
  ``traywire_time_to_first_byte_seconds{backend}`` histograms;
- ``traywire_fallbacks_total{from_backend,to_backend}``: a failed attempt
  followed by another attempt that was actually sent (skipped ones do not count);
- ``traywire_attempts_total{backend,outcome,kind}``: every attempt, skipped ones too;
- ``traywire_tokens_total{backend,model,direction}``: direction ``in`` (prompt)
  or ``out`` (reply), as the backend reported them.

Read from ``Runtime.status()`` at scrape time:

- ``traywire_backend_up{backend}`` (1 when the health word is up or degraded),
  ``traywire_backend_health{backend,health}`` (1 for the current word);
- ``traywire_circuit_state{backend,state}`` (1 for the current state of
  closed, open, half_open);
- ``traywire_in_flight{backend}``, ``traywire_capacity{backend}``,
  ``traywire_backend_latency_seconds{backend}`` (smoothed; absent until measured);
- ``traywire_request_log_records_total{result}`` (written, dropped, failed),
  ``traywire_request_log_queue`` and
  ``traywire_request_log_writer_restarts_total`` while the request log is open
  (the `wiring.RequestLogHandle` given to `setup`).

The request metrics are plain-Python aggregates (`aggregates.Counter`, `aggregates.Histogram`),
not prometheus-client's ``Counter``/``Histogram``, whose lock per update and
bucket walk in Python cost several microseconds per request; `exposition`
renders them at scrape time as prometheus-client metric families (same names,
types, labels, help, buckets and ``_created`` series), so the text still comes
from prometheus-client's encoders, classic or OpenMetrics.

Concurrency: `Metrics.observe` is the only writer and runs on the proxy's
event loop thread, so it takes no lock. A scrape may run on another thread
(``render`` is plain, synchronous code): it never iterates the live dicts,
but copies them first with ``dict(d)`` and each histogram cell with
``list(cell)``. Those copies are single C calls that run no Python code (the
keys are tuples of ``str``, hashed in C, and are not even rehashed by the
copy), so under the GIL they cannot interleave with a write (and on a
free-threaded build each holds the object's own lock), so every copy is a
consistent snapshot of its dict or cell: a histogram's buckets, count and sum
always agree. Different series may be one request apart, as with
prometheus-client's per-child locks. A new label set gets its ``created`` time
before its value, and the scrape copies values before created times, so every
copied value has one.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

from aiohttp import web

from ..types import RequestRecord
from .aggregates import Counter, Histogram

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..proxy.runtime import Runtime
    from .wiring import RequestLogHandle

__all__ = ["METRICS", "Metrics", "setup"]

DURATION_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
TTFB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class Metrics:
    """The metrics of one app: its registry, the request observer and the handler.

    `observe` updates plain dicts without locks: it is only ever called on the
    proxy's event loop thread (runtime observers run there), so there is a
    single writer. A scrape may run on any thread; it reads through copies
    (see the module docstring).
    """

    def __init__(self, rt: Runtime, request_log: RequestLogHandle | None = None) -> None:
        self.rt = rt
        self.requests = Counter(
            "traywire_requests",
            "Requests handled, by route, capability, serving backend and model, and outcome",
            ("route", "capability", "backend", "model", "outcome"),
        )
        self.duration = Histogram(
            "traywire_request_duration_seconds",
            "Time from a request's arrival until its response was complete",
            ("backend",),
            DURATION_BUCKETS,
        )
        self.ttfb = Histogram(
            "traywire_time_to_first_byte_seconds",
            "Time from a request's arrival until the first byte of its answer",
            ("backend",),
            TTFB_BUCKETS,
        )
        self.fallbacks = Counter(
            "traywire_fallbacks",
            "Failed attempts followed by an attempt on the next backend",
            ("from_backend", "to_backend"),
        )
        self.attempts = Counter(
            "traywire_attempts",
            "Attempts by backend, outcome (served, failed, skipped, cancelled) and error kind",
            ("backend", "outcome", "kind"),
        )
        self.tokens = Counter(
            "traywire_tokens",
            "Tokens the backends reported, prompt (in) and reply (out)",
            ("backend", "model", "direction"),
        )
        self.request_log = request_log
        self._registry: CollectorRegistry | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """prometheus-client's registry for this app, made at the first scrape
        (prometheus-client is imported then, not at start: `exposition`)."""
        if self._registry is None:
            from . import exposition

            recorded = (self.requests, self.duration, self.ttfb, self.fallbacks, self.attempts)
            self._registry = exposition.registry(
                (*recorded, self.tokens), self.rt, self.request_log
            )
        return self._registry

    def observe(self, rec: RequestRecord) -> None:
        """Count one request: the hot path, a few dict updates (no locks, see the class)."""
        backend = rec.served_backend or ""
        model = rec.served_model or ""
        counts = self.requests.values
        key: tuple[str, ...] = (
            rec.route or "",
            rec.capability or "",
            backend,
            model,
            rec.outcome,
        )
        if key in counts:
            counts[key] += 1.0
        else:
            self.requests.inc(key)
        bkey = (backend,)
        cell = self.duration.cells.get(bkey) or self.duration.cell(bkey)
        amount = rec.total_ms / 1000.0
        cell[bisect_left(self.duration.bounds, amount)] += 1.0
        cell[-1] += amount
        if rec.ttfb_ms is not None:
            cell = self.ttfb.cells.get(bkey) or self.ttfb.cell(bkey)
            amount = rec.ttfb_ms / 1000.0
            cell[bisect_left(self.ttfb.bounds, amount)] += 1.0
            cell[-1] += amount
        pending: str | None = None  # backend of a failed attempt awaiting the next one
        counts = self.attempts.values
        for a in rec.attempts:
            key = (a.backend, a.outcome, a.kind)
            if key in counts:
                counts[key] += 1.0
            else:
                self.attempts.inc(key)
            if a.outcome == "skipped":
                continue
            if pending is not None:
                self.fallbacks.inc((pending, a.backend))
            pending = a.backend if a.outcome == "failed" else None
        if rec.served_backend is not None:
            counts = self.tokens.values
            key = (backend, model, "in")
            if key in counts:
                counts[key] += max(0, rec.tokens_in)
            else:
                self.tokens.inc(key, max(0, rec.tokens_in))
            key = (backend, model, "out")
            if key in counts:
                counts[key] += max(0, rec.tokens_out)
            else:
                self.tokens.inc(key, max(0, rec.tokens_out))

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for an ``Accept`` header: (body, content type)."""
        from . import exposition

        return exposition.render(self.registry, accept)

    async def handle(self, request: web.Request) -> web.Response:
        body, content_type = self.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


def setup(app: web.Application, rt: Runtime, request_log: RequestLogHandle | None) -> Metrics:
    """Count every request ``rt`` observes; ``GET /metrics`` is the returned
    object's ``handle`` (`server` adds the route). ``request_log``: the app's
    (its counters are served too)."""
    m = Metrics(rt, request_log)
    app[METRICS] = m
    rt.observers.append(m.observe)

    async def detach(app: web.Application) -> None:
        if m.observe in rt.observers:
            rt.observers.remove(m.observe)

    app.on_cleanup.append(detach)
    return m
