"""GET /metrics: it parses as Prometheus text, its counters move with real
traffic through the proxy, and its gauges read the live state."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import openai
import prometheus_client
import pytest
from fakes import FakeBackend
from harness import ProxyThread
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from proxy_fixtures import (
    USER,
    clients,
    fakes,
    make_config,
    model,
    ollama_backend,
    openai_backend,
    proxies,
    raw,
    wait_until,
)

from traywire.observe import metrics
from traywire.proxy.runtime import Runtime
from traywire.types import Attempt, AttemptRecord, RequestRecord, outcome_of

__all__ = ["clients", "fakes", "proxies"]


# --------------------------------------------------------------------------- helpers


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        found = [
            s.value
            for f in self.families.values()
            for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        return float(sum(found))

    def has(self, name: str, **labels: str) -> bool:
        return any(
            s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
            for f in self.families.values()
            for s in f.samples
        )


def scrape(p: ProxyThread) -> Scrape:
    r = raw(p, "GET", "/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain")
    return Scrape(r.body.decode())


@dataclass
class Pair:
    fo: FakeBackend  # backend "a" (Ollama, capacity 3), model "one"
    fv: FakeBackend  # backend "b" (OpenAI), model "two", one's fallback
    p: ProxyThread
    oc: openai.OpenAI


@pytest.fixture
def pair(fakes: Any, proxies: Any, clients: Any, tmp_path: Any) -> Pair:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    cfg = make_config(
        {"a": ollama_backend(fo, capacity=3), "b": openai_backend(fv)},
        {"one": model("a", "m1"), "two": model("b", "M2")},
        fallbacks={"one": ["two"], "two": ["one"]},
        log={"path": str(tmp_path / "requests.sqlite3")},
    )
    p = proxies(cfg)
    return Pair(fo, fv, p, clients.openai(p))


def record(attempts: tuple[AttemptRecord, ...], served: tuple[str, str] | None) -> RequestRecord:
    return RequestRecord(
        ts=0.0,
        dialect="openai",
        endpoint="/v1/chat/completions",
        requested="code",
        capability="code",
        strategy="direct",
        route="code",
        preference="auto",
        prompt_tokens=3,
        stream=False,
        plan=(Attempt("one", "a", "m1", "r"),),
        skipped=(),
        attempts=attempts,
        served_model=served[0] if served else None,
        served_backend=served[1] if served else None,
        status=200 if served else 503,
        ttfb_ms=20.0 if served else None,
        total_ms=1500.0,
        tokens_in=7 if served else 0,
        tokens_out=11 if served else 0,
        outcome=outcome_of(
            served=served is not None, status=200 if served else 503, attempts=attempts
        ),
    )


# --------------------------------------------------------------------------- through the proxy


def test_metrics_parse_and_start_at_zero(pair: Pair) -> None:
    s = scrape(pair.p)
    for family in (
        "traywire_requests",
        "traywire_request_duration_seconds",
        "traywire_time_to_first_byte_seconds",
        "traywire_fallbacks",
        "traywire_attempts",
        "traywire_tokens",
        "traywire_backend_up",
        "traywire_circuit_state",
        "traywire_in_flight",
        "traywire_capacity",
    ):
        assert family in s.families, family
    assert s.value("traywire_requests_total") == 0
    assert s.value("traywire_capacity", backend="a") == 3
    assert s.value("traywire_capacity", backend="b") == 4  # the default
    assert s.value("traywire_in_flight", backend="a") == 0
    assert s.value("traywire_circuit_state", backend="a", state="closed") == 1
    assert s.value("traywire_circuit_state", backend="a", state="open") == 0
    assert s.value("traywire_backend_up", backend="a") == 0  # nothing observed yet
    assert not s.has("traywire_backend_latency_seconds", backend="a")


def test_counters_move_with_traffic(pair: Pair) -> None:
    resp = pair.oc.chat.completions.create(model="one", messages=USER)
    assert resp.usage is not None
    s = scrape(pair.p)
    assert s.value("traywire_requests_total", backend="a", model="one", outcome="served") == 1
    assert s.value("traywire_attempts_total", backend="a", outcome="served", kind="") == 1
    assert s.value("traywire_tokens_total", backend="a", model="one", direction="in") == (
        resp.usage.prompt_tokens
    )
    assert s.value("traywire_tokens_total", backend="a", model="one", direction="out") == (
        resp.usage.completion_tokens
    )
    assert s.value("traywire_request_duration_seconds_count", backend="a") == 1
    assert s.value("traywire_time_to_first_byte_seconds_count", backend="a") == 1
    assert s.value("traywire_request_duration_seconds_sum", backend="a") > 0
    assert s.value("traywire_fallbacks_total") == 0
    assert s.value("traywire_backend_up", backend="a") == 1
    assert s.value("traywire_backend_latency_seconds", backend="a") > 0

    # failover: a fails once, b serves
    pair.fo.status(500, times=1)
    pair.oc.chat.completions.create(model="one", messages=USER)
    s = scrape(pair.p)
    assert s.value("traywire_fallbacks_total", from_backend="a", to_backend="b") == 1
    assert (
        s.value("traywire_attempts_total", backend="a", outcome="failed", kind="server_error") == 1
    )
    assert s.value("traywire_requests_total", backend="b", model="two", outcome="served") == 1
    assert s.value("traywire_requests_total") == 2

    # a client error: no fallback, its own outcome
    pair.fo.status(400, body={"error": "nope"}, times=1)
    with pytest.raises(openai.BadRequestError):
        pair.oc.chat.completions.create(model="one", messages=USER)
    s = scrape(pair.p)
    assert s.value("traywire_requests_total", backend="", outcome="client_error") == 1
    assert s.value("traywire_fallbacks_total") == 1
    assert s.value("traywire_attempts_total", backend="a", kind="client_error") == 1

    # both down: every attempt fails, one fallback a -> b
    pair.fo.refuse()
    pair.fv.refuse()
    with pytest.raises(openai.InternalServerError):
        pair.oc.chat.completions.create(model="one", messages=USER)
    s = scrape(pair.p)
    assert s.value("traywire_requests_total", outcome="failed") == 1
    assert s.value("traywire_fallbacks_total", from_backend="a", to_backend="b") == 2
    assert s.value("traywire_attempts_total", backend="b", outcome="failed", kind="refused") == 1
    assert s.value("traywire_requests_total") == 4
    # the request log's own counters are there too
    assert wait_until(
        lambda: scrape(pair.p).value("traywire_request_log_records_total", result="written") == 4
    )
    assert scrape(pair.p).value("traywire_request_log_records_total", result="dropped") == 0


def test_in_flight_gauge_follows_a_slow_stream(pair: Pair) -> None:
    pair.fo.chunk_delay = 0.15
    done = threading.Event()

    def run() -> None:
        try:
            list(pair.oc.chat.completions.create(model="one", messages=USER, stream=True))
        finally:
            done.set()

    t = threading.Thread(target=run)
    t.start()
    try:
        assert wait_until(lambda: scrape(pair.p).value("traywire_in_flight", backend="a") == 1, 5)
        s = scrape(pair.p)
        assert s.value("traywire_in_flight", backend="b") == 0
        assert s.value("traywire_capacity", backend="a") == 3
    finally:
        t.join(20)
    assert done.is_set()
    s = scrape(pair.p)
    assert s.value("traywire_in_flight", backend="a") == 0
    assert s.value("traywire_requests_total", backend="a", outcome="served") == 1


def test_circuit_and_health_gauges(pair: Pair) -> None:
    pair.fo.refuse()
    for _ in range(2):  # failure_threshold is 2 in the test config
        pair.oc.chat.completions.create(model="one", messages=USER)
    s = scrape(pair.p)
    assert s.value("traywire_circuit_state", backend="a", state="open") == 1
    assert s.value("traywire_circuit_state", backend="a", state="closed") == 0
    assert s.value("traywire_backend_up", backend="a") == 0
    assert s.value("traywire_backend_health", backend="a", health="down") == 1
    assert s.value("traywire_backend_up", backend="b") == 1
    assert s.value("traywire_fallbacks_total", from_backend="a", to_backend="b") == 2


def test_each_app_has_its_own_registry(pair: Pair, proxies: Any) -> None:
    pair.oc.chat.completions.create(model="one", messages=USER)
    other = proxies(pair.p.cfg)
    assert scrape(other).value("traywire_requests_total") == 0
    assert scrape(pair.p).value("traywire_requests_total") == 1
    assert not any(m.name.startswith("traywire") for m in REGISTRY.collect())


def test_openmetrics_on_request(pair: Pair) -> None:
    r = raw(pair.p, "GET", "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.body.rstrip().endswith(b"# EOF")


# --------------------------------------------------------------------------- the observer alone


def test_fallbacks_count_only_attempts_actually_sent(pair: Pair) -> None:
    m = metrics.Metrics(Runtime(pair.p.cfg))
    m.observe(
        record(
            (
                AttemptRecord("one", "a", "failed", "x", "reset"),
                AttemptRecord("three", "c", "skipped", "circuit open"),
                AttemptRecord("two", "b", "served"),
            ),
            ("two", "b"),
        )
    )
    m.observe(
        record(
            (
                AttemptRecord("one", "a", "failed", "x", "refused"),
                AttemptRecord("two", "b", "failed", "x", "refused"),
                AttemptRecord("three", "c", "skipped", "circuit open"),
            ),
            None,
        )
    )
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    s = Scrape(body.decode())
    assert s.value("traywire_fallbacks_total", from_backend="a", to_backend="b") == 2
    assert s.value("traywire_fallbacks_total") == 2  # never to c (skipped), never from b
    assert s.value("traywire_attempts_total", backend="c", outcome="skipped", kind="") == 2
    assert (
        s.value("traywire_requests_total", route="code", capability="code", outcome="served") == 1
    )
    assert s.value("traywire_requests_total", backend="", model="", outcome="failed") == 1
    assert s.value("traywire_tokens_total", backend="b", model="two", direction="in") == 7
    assert s.value("traywire_tokens_total", backend="b", model="two", direction="out") == 11
    assert not s.has("traywire_tokens_total", backend="")
    # 1.5 s lands in the 2.5 s bucket and above, not in the 1 s one
    assert s.value("traywire_request_duration_seconds_bucket", backend="b", le="1.0") == 0
    assert s.value("traywire_request_duration_seconds_bucket", backend="b", le="2.5") == 1
    assert s.value("traywire_time_to_first_byte_seconds_count", backend="") == 0


# --------------------------------------------------------------------------- same text as before


class Reference:
    """The design `Metrics.observe` replaced, kept as the reference: prometheus-client's
    own Counter and Histogram in a private registry, updated per request."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
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
            buckets=metrics.DURATION_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "traywire_time_to_first_byte_seconds",
            "Time from a request's arrival until the first byte of its answer",
            ["backend"],
            buckets=metrics.TTFB_BUCKETS,
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
            "Attempts by backend, outcome (served, failed, skipped, cancelled) and error kind",
            ["backend", "outcome", "kind"],
            registry=r,
        )
        self.tokens = Counter(
            "traywire_tokens",
            "Tokens the backends reported, prompt (in) and reply (out)",
            ["backend", "model", "direction"],
            registry=r,
        )

    def observe(self, rec: RequestRecord) -> None:
        backend = rec.served_backend or ""
        model = rec.served_model or ""
        outcome = rec.outcome
        self.requests.labels(rec.route or "", rec.capability or "", backend, model, outcome).inc()
        self.duration.labels(backend).observe(rec.total_ms / 1000.0)
        if rec.ttfb_ms is not None:
            self.ttfb.labels(backend).observe(rec.ttfb_ms / 1000.0)
        pending: str | None = None
        for a in rec.attempts:
            self.attempts.labels(a.backend, a.outcome, a.kind).inc()
            if a.outcome == "skipped":
                continue
            if pending is not None:
                self.fallbacks.labels(pending, a.backend).inc()
            pending = a.backend if a.outcome == "failed" else None
        if rec.served_backend is not None:
            self.tokens.labels(backend, model, "in").inc(max(0, rec.tokens_in))
            self.tokens.labels(backend, model, "out").inc(max(0, rec.tokens_out))


def changed(rec: RequestRecord, **fields: Any) -> RequestRecord:
    """``rec`` with ``fields`` changed, and its outcome decided again from them."""
    r = rec._replace(**fields)
    return r._replace(
        outcome=outcome_of(
            served=r.served_backend is not None,
            status=r.status,
            attempts=r.attempts,
            cut=r.cut,
            client_gone=r.client_gone,
        )
    )


def varied_records() -> list[RequestRecord]:
    """Every path of `observe`: served, failover over a skipped candidate, all failed,
    client error, cut, cancelled, no route, no ttfb, bucket edges, +Inf, odd tokens."""
    fail_a = AttemptRecord("one", "a", "failed", "x", "server_error")
    skip_c = AttemptRecord("three", "c", "skipped", "circuit open")
    served_a = record((AttemptRecord("one", "a", "served"),), ("one", "a"))
    served_b = record((fail_a, skip_c, AttemptRecord("two", "b", "served")), ("two", "b"))
    failed = record((fail_a, AttemptRecord("two", "b", "failed", "x", "refused"), skip_c), None)
    client_error = record((AttemptRecord("one", "a", "failed", "x", "client_error"),), None)
    return [
        served_a,
        served_b,
        failed,
        changed(client_error, status=400),
        changed(served_a, cut=True, total_ms=1000.0, ttfb_ms=10.0),  # exactly on bucket edges
        changed(served_b, client_gone=True, ttfb_ms=None, total_ms=0.0),
        changed(served_a, route=None, capability=None, total_ms=900_000.0, ttfb_ms=75_000.0),
        changed(served_a, tokens_in=-1, tokens_out=0, total_ms=0.123, ttfb_ms=0.001),
        changed(served_b, served_model="three", served_backend="c", total_ms=250.0),
        record((), None),
        served_a,
        failed,
    ]


RECORDED = (
    "traywire_requests",
    "traywire_request_duration_seconds",
    "traywire_time_to_first_byte_seconds",
    "traywire_fallbacks",
    "traywire_attempts",
    "traywire_tokens",
)


def samples(families: Any) -> dict[str, list[tuple[str, tuple[tuple[str, str], ...], float]]]:
    """Family -> its samples (name, labels, value), ``_created`` values blanked
    (they are creation times, different between two objects); order kept."""
    out: dict[str, list[tuple[str, tuple[tuple[str, str], ...], float]]] = {}
    for f in families:
        if f.name.removesuffix("_created") not in RECORDED:  # nor the live gauges
            continue
        assert f.name not in out
        out[f.name] = [
            (
                s.name,
                tuple(sorted(s.labels.items())),
                0.0 if s.name.endswith("_created") else s.value,
            )
            for s in f.samples
        ]
        out[f.name + " meta"] = [(f.type, (("help", f.documentation),), 0.0)]
    return out


def expositions(registry: CollectorRegistry) -> tuple[Any, Any]:
    text = generate_latest(registry).decode()
    om = generate_openmetrics(registry).decode()
    parsed = samples(text_string_to_metric_families(text)), samples(openmetrics_families(om))
    assert all(f in p for p in parsed for f in RECORDED)
    return parsed


@pytest.mark.parametrize("created", [True, False])
def test_exposition_identical_to_prometheus_client_metrics(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, created: bool
) -> None:
    # prometheus-client's switch for _created series (PROMETHEUS_DISABLE_CREATED_SERIES)
    monkeypatch.setattr(prometheus_client.metrics, "_use_created", created)
    ref = Reference()
    m = metrics.Metrics(Runtime(pair.p.cfg))
    before = time.time()
    assert expositions(m.registry) == expositions(ref.registry)  # empty: same families
    for rec in varied_records():
        ref.observe(rec)
        m.observe(rec)
        assert expositions(m.registry) == expositions(ref.registry)
    text, om = expositions(m.registry)
    assert text["traywire_request_duration_seconds"]  # not vacuous
    assert text["traywire_fallbacks"] and text["traywire_tokens"]
    # classic text: _created as gauge families of their own; OpenMetrics: in the family
    assert ("traywire_requests_created" in text) == created
    assert ("traywire_request_duration_seconds_created" in text) == created
    assert any(s[0] == "traywire_tokens_created" for s in om["traywire_tokens"]) == created
    # the created times themselves: when each series was first seen
    created_values = [
        s.value
        for f in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in f.samples
        if s.name.endswith("_created")
    ]
    assert bool(created_values) == created
    assert all(before <= v <= time.time() for v in created_values)


def test_scrape_on_another_thread_reads_consistent_series(pair: Pair) -> None:
    m = metrics.Metrics(Runtime(pair.p.cfg))
    rec = record(
        (AttemptRecord("one", "a", "failed", "x", "reset"), AttemptRecord("two", "b", "served")),
        ("two", "b"),
    )
    stop = threading.Event()
    seen: list[float] = []
    errors: list[BaseException] = []

    def scrape_loop() -> None:
        try:
            while not stop.is_set():
                s = Scrape(m.render()[0].decode())
                count = s.value("traywire_request_duration_seconds_count", backend="b")
                inf = s.value("traywire_request_duration_seconds_bucket", backend="b", le="+Inf")
                total = s.value("traywire_request_duration_seconds_sum", backend="b")
                assert (
                    count
                    == inf
                    == s.value("traywire_request_duration_seconds_bucket", backend="b", le="2.5")
                )
                assert total == 1.5 * count  # sum, buckets and count from one moment
                seen.append(count)
        except BaseException as e:  # reported below, on the test's thread
            errors.append(e)

    t = threading.Thread(target=scrape_loop)
    t.start()
    try:
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            for _ in range(200):
                m.observe(rec)
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors[0]
    assert len(seen) > 1 and seen == sorted(seen)
