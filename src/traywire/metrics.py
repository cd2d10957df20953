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
- ``traywire_request_log_records_total{result}`` (written, dropped, failed) and
  ``traywire_request_log_queue`` when a request log is attached.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import reqlog
from .types import RequestRecord

if TYPE_CHECKING:
    from .runtime import Runtime

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
CIRCUIT_STATES = ("closed", "open", "half_open")
HEALTH_WORDS = ("up", "degraded", "down", "unknown")


class _Live(Collector):
    """Gauges read from the runtime at scrape time (on the proxy's loop)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> Iterable[Metric]:
        return ()  # names are fixed and unique; no need to collect at registration

    def collect(self) -> Iterator[Metric]:
        status = self.rt.status()
        up = GaugeMetricFamily(
            "traywire_backend_up", "1 when the backend is up or degraded", labels=["backend"]
        )
        health = GaugeMetricFamily(
            "traywire_backend_health",
            "1 for the backend's current health word",
            labels=["backend", "health"],
        )
        circuit = GaugeMetricFamily(
            "traywire_circuit_state",
            "1 for the backend's current circuit state",
            labels=["backend", "state"],
        )
        in_flight = GaugeMetricFamily(
            "traywire_in_flight", "Requests in flight to the backend", labels=["backend"]
        )
        capacity = GaugeMetricFamily(
            "traywire_capacity", "Configured concurrent capacity of the backend", labels=["backend"]
        )
        latency = GaugeMetricFamily(
            "traywire_backend_latency_seconds",
            "Smoothed latency of the backend's recent requests (or probes)",
            labels=["backend"],
        )
        for name, b in status["backends"].items():
            word = b.get("health", "unknown")
            up.add_metric([name], 1.0 if word in ("up", "degraded") else 0.0)
            for w in HEALTH_WORDS:
                health.add_metric([name, w], 1.0 if word == w else 0.0)
            state = b.get("circuit", "closed")
            for s in CIRCUIT_STATES:
                circuit.add_metric([name, s], 1.0 if state == s else 0.0)
            in_flight.add_metric([name], float(b.get("in_flight") or 0))
            capacity.add_metric([name], float(b.get("capacity") or 0))
            if b.get("latency_ms") is not None:
                latency.add_metric([name], float(b["latency_ms"]) / 1000.0)
        yield from (up, health, circuit, in_flight, capacity, latency)
        log = reqlog.attached(self.rt)
        if log is not None:
            records = CounterMetricFamily(
                "traywire_request_log_records",
                "Request records written to the request log, dropped (queue full) or lost",
                labels=["result"],
            )
            records.add_metric(["written"], float(log.written))
            records.add_metric(["dropped"], float(log.dropped))
            records.add_metric(["failed"], float(log.failed))
            yield records
            yield GaugeMetricFamily(
                "traywire_request_log_queue",
                "Request records waiting for the log writer",
                value=float(log.queued),
            )


class Metrics:
    """The metrics of one app: its registry, the request observer and the handler."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._children: dict[tuple[Any, ...], Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "traywire_requests",
            "Requests handled, by route, capability, serving backend and model, and outcome",
            ["route", "capability", "backend", "model", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "traywire_request_duration_seconds",
            "Time from a request's arrival until its response was complete",
            ["backend"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "traywire_time_to_first_byte_seconds",
            "Time from a request's arrival until the first byte of its answer",
            ["backend"],
            buckets=TTFB_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "traywire_fallbacks",
            "Failed attempts followed by an attempt on the next backend",
            ["from_backend", "to_backend"],
            registry=r,
        )
        self.attempts = Counter(
            "traywire_attempts",
            "Attempts by backend, outcome (served, failed, skipped) and error kind",
            ["backend", "outcome", "kind"],
            registry=r,
        )
        self.tokens = Counter(
            "traywire_tokens",
            "Tokens the backends reported, prompt (in) and reply (out)",
            ["backend", "model", "direction"],
            registry=r,
        )
        r.register(_Live(rt))

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: label look-ups take a lock each."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, rec: RequestRecord) -> None:
        c = self._child
        backend = rec.served_backend or ""
        model = rec.served_model or ""
        c(
            self.requests,
            rec.route or "",
            rec.capability or "",
            backend,
            model,
            reqlog.outcome_of(rec),
        ).inc()
        c(self.duration, backend).observe(rec.total_ms / 1000.0)
        if rec.ttfb_ms is not None:
            c(self.ttfb, backend).observe(rec.ttfb_ms / 1000.0)
        pending: str | None = None  # backend of a failed attempt awaiting the next one
        for a in rec.attempts:
            c(self.attempts, a.backend, a.outcome, a.kind).inc()
            if a.outcome == "skipped":
                continue
            if pending is not None:
                c(self.fallbacks, pending, a.backend).inc()
            pending = a.backend if a.outcome == "failed" else None
        if rec.served_backend is not None:
            c(self.tokens, backend, model, "in").inc(max(0, rec.tokens_in))
            c(self.tokens, backend, model, "out").inc(max(0, rec.tokens_out))

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for an ``Accept`` header: (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def handle(self, request: web.Request) -> web.Response:
        body, content_type = self.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


def setup(app: web.Application, rt: Runtime) -> Metrics:
    """Serve ``GET /metrics`` on ``app`` and count every request ``rt`` observes."""
    m = Metrics(rt)
    app[METRICS] = m
    rt.observers.append(m.observe)
    app.router.add_get("/metrics", m.handle)

    async def detach(app: web.Application) -> None:
        if m.observe in rt.observers:
            rt.observers.remove(m.observe)

    app.on_cleanup.append(detach)
    return m
