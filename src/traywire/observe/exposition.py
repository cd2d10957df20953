"""The ``/metrics`` exposition: `metrics`' aggregates and the runtime's live
gauges as prometheus-client metric families, rendered by its encoders.

Imported at the first scrape, not at start (prometheus-client is ~1 MiB and
~15 ms of start-up a proxy that is never scraped does not need).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import prometheus_client.metrics
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

from .aggregates import CIRCUIT_STATES, HEALTH_WORDS, Counter, Histogram

if TYPE_CHECKING:
    from ..proxy.runtime import Runtime
    from .wiring import RequestLogHandle


def registry(
    recorded: tuple[Counter | Histogram, ...], rt: Runtime, request_log: RequestLogHandle | None
) -> CollectorRegistry:
    """An app's own registry (never the process-global one)."""
    r = CollectorRegistry(auto_describe=True)
    r.register(_Recorded(recorded))
    r.register(_Live(rt, request_log))
    return r


def render(r: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The exposition for an ``Accept`` header: (body, content type)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(r), content_type


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


def counter_family(self: Counter) -> CounterMetricFamily:
    values = dict(self.values)  # GIL-atomic copies (see the module docstring)
    created = dict(self.created)
    use_created = _use_created()
    f = CounterMetricFamily(self.name, self.doc, labels=self.labels)
    for key, value in values.items():
        f.add_metric(key, value, created=created[key] if use_created else None)
    return f


def histogram_family(self: Histogram) -> HistogramMetricFamily:
    cells = {k: list(c) for k, c in dict(self.cells).items()}  # GIL-atomic copies
    created = dict(self.created)
    use_created = _use_created()
    # as prometheus-client spells ``le`` (untyped there)
    les = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]
    f = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
    for key, cell in cells.items():
        acc = 0.0
        buckets = []
        for le, n in zip(les, cell[:-1], strict=True):
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

    def __init__(self, metrics: tuple[Counter | Histogram, ...]) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return [
            CounterMetricFamily(m.name, m.doc, labels=m.labels)
            if isinstance(m, Counter)
            else HistogramMetricFamily(m.name, m.doc, labels=m.labels)
            for m in self.metrics
        ]

    def collect(self) -> Iterator[Metric]:
        for m in self.metrics:
            yield counter_family(m) if isinstance(m, Counter) else histogram_family(m)
