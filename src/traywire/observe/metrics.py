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

The request metrics are plain-Python aggregates (`_Counter`, `_Histogram`),
not prometheus-client's ``Counter``/``Histogram``, whose lock per update and
bucket walk in Python cost several microseconds per request; `_Recorded`
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

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import prometheus_client.metrics
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ..types import RequestRecord

if TYPE_CHECKING:
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
CIRCUIT_STATES = ("closed", "open", "half_open")
HEALTH_WORDS = ("up", "degraded", "down", "unknown")


class _Live(Collector):
    """Gauges read from the runtime and the request log at scrape time."""

    def __init__(self, rt: Runtime, request_log: RequestLogHandle | None) -> None:
        self.rt = rt
        self.request_log = request_log

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
        writer = None if self.request_log is None else self.request_log.writer
        if writer is not None:
            c = writer.counters()
            records = CounterMetricFamily(
                "traywire_request_log_records",
                "Request records written to the request log, dropped (queue full) or lost",
                labels=["result"],
            )
            records.add_metric(["written"], float(c.written))
            records.add_metric(["dropped"], float(c.dropped))
            records.add_metric(["failed"], float(c.failed))
            yield records
            yield GaugeMetricFamily(
                "traywire_request_log_queue",
                "Request records waiting for the log writer",
                value=float(c.queued + c.writing),
            )
            yield CounterMetricFamily(
                "traywire_request_log_writer_restarts",
                "Times the request log's writer thread was replaced",
                value=float(c.writer_restarts),
            )


class _Counter:
    """A labelled counter as plain dicts: label tuple -> value, and -> created time."""

    __slots__ = ("created", "doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        """The slow path of `Metrics.observe` (first sight of ``key``), and for tests."""
        values = self.values
        if key not in values:
            self.created[key] = time.time()  # before the value: see `family`
            values[key] = 0.0
        values[key] += amount

    def family(self) -> CounterMetricFamily:
        values = dict(self.values)  # GIL-atomic copies (see the module docstring)
        created = dict(self.created)
        use_created = _use_created()
        f = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in values.items():
            f.add_metric(key, value, created=created[key] if use_created else None)
        return f


class _Histogram:
    """A labelled histogram as plain lists: label tuple -> [bucket counts..., sum].

    A cell holds one count per bucket (not cumulative; the last is ``+Inf``)
    followed by the sum of the observed values; ``_count`` is the sum of the
    bucket counts, so a cell copied whole is always self-consistent.
    """

    __slots__ = ("bounds", "cells", "created", "doc", "labels", "les", "name")

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.bounds = (*buckets, math.inf)  # as prometheus-client adds +Inf
        # as prometheus-client spells ``le`` (untyped there)
        self.les = tuple(floatToGoString(b) for b in self.bounds)  # type: ignore[no-untyped-call]
        self.cells: dict[tuple[str, ...], list[float]] = {}
        self.created: dict[tuple[str, ...], float] = {}

    def cell(self, key: tuple[str, ...]) -> list[float]:
        """The slow path of `Metrics.observe` (first sight of ``key``)."""
        cell = self.cells.get(key)
        if cell is None:
            self.created[key] = time.time()  # before the cell: see `family`
            cell = self.cells[key] = [0.0] * (len(self.bounds) + 1)
        return cell

    def family(self) -> HistogramMetricFamily:
        cells = {k: list(c) for k, c in dict(self.cells).items()}  # GIL-atomic copies
        created = dict(self.created)
        use_created = _use_created()
        f = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, cell in cells.items():
            acc = 0.0
            buckets = []
            for le, n in zip(self.les, cell[:-1], strict=True):
                acc += n
                buckets.append((le, acc))
            f.add_metric(key, buckets, cell[-1])
            if use_created:
                f.add_sample(
                    f"{self.name}_created", dict(zip(self.labels, key, strict=True)), created[key]
                )
        return f


def _use_created() -> bool:
    """prometheus-client's switch for ``_created`` series (env var or
    ``disable_created_metrics()``), read at scrape time as its own metrics do."""
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


class _Recorded(Collector):
    """The request counters and histograms, rendered from `Metrics`' aggregates."""

    def __init__(self, metrics: tuple[_Counter | _Histogram, ...]) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return [
            CounterMetricFamily(m.name, m.doc, labels=m.labels)
            if isinstance(m, _Counter)
            else HistogramMetricFamily(m.name, m.doc, labels=m.labels)
            for m in self.metrics
        ]

    def collect(self) -> Iterator[Metric]:
        for m in self.metrics:
            yield m.family()


class Metrics:
    """The metrics of one app: its registry, the request observer and the handler.

    `observe` updates plain dicts without locks: it is only ever called on the
    proxy's event loop thread (runtime observers run there), so there is a
    single writer. A scrape may run on any thread; it reads through copies
    (see the module docstring).
    """

    def __init__(self, rt: Runtime, request_log: RequestLogHandle | None = None) -> None:
        self.rt = rt
        self.requests = _Counter(
            "traywire_requests",
            "Requests handled, by route, capability, serving backend and model, and outcome",
            ("route", "capability", "backend", "model", "outcome"),
        )
        self.duration = _Histogram(
            "traywire_request_duration_seconds",
            "Time from a request's arrival until its response was complete",
            ("backend",),
            DURATION_BUCKETS,
        )
        self.ttfb = _Histogram(
            "traywire_time_to_first_byte_seconds",
            "Time from a request's arrival until the first byte of its answer",
            ("backend",),
            TTFB_BUCKETS,
        )
        self.fallbacks = _Counter(
            "traywire_fallbacks",
            "Failed attempts followed by an attempt on the next backend",
            ("from_backend", "to_backend"),
        )
        self.attempts = _Counter(
            "traywire_attempts",
            "Attempts by backend, outcome (served, failed, skipped, cancelled) and error kind",
            ("backend", "outcome", "kind"),
        )
        self.tokens = _Counter(
            "traywire_tokens",
            "Tokens the backends reported, prompt (in) and reply (out)",
            ("backend", "model", "direction"),
        )
        self.registry = CollectorRegistry(auto_describe=True)
        recorded = (self.requests, self.duration, self.ttfb, self.fallbacks, self.attempts)
        self.registry.register(_Recorded((*recorded, self.tokens)))
        self.registry.register(_Live(rt, request_log))

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
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

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
