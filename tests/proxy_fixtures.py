"""Shared pieces of the proxy's end-to-end tests (tests/test_proxy_*.py).

The real proxy (`harness.ProxyThread`) runs against real loopback fakes
(`fakes.FakeBackend`); clients are the official `openai` and `ollama` packages,
or raw HTTP where a client library cannot express the case.

Import the fixtures explicitly in a test module::

    from proxy_fixtures import clients, fakes, proxies
    __all__ = ["clients", "fakes", "proxies"]
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ollama
import openai
import pytest
import yaml
from fakes import FakeBackend, FakeFactory
from harness import ProxyThread, config_for

from traywire.config import Config
from traywire.observe.logqueries import LogQueries
from traywire.observe.wiring import REQUEST_LOG, RequestLogHandle

# Short timeouts so that every timeout case costs a second or two.
FAST_TIMEOUTS = {"connect": 1, "first_byte": 2, "idle": 1, "total": 10}
FAST_HEALTH = {"cooldown": 1, "failure_threshold": 2}

USER = [{"role": "user", "content": "Hello there, who are you?"}]


# --------------------------------------------------------------------------- config


def ollama_backend(fake: FakeBackend, location: str = "local", **extra: Any) -> dict[str, Any]:
    return {"kind": "ollama", "url": fake.url, "location": location, **extra}


def openai_backend(fake: FakeBackend, location: str = "local", **extra: Any) -> dict[str, Any]:
    return {"kind": "openai", "url": fake.url + "/v1", "location": location, **extra}


def model(
    backend: str,
    upstream: str,
    *,
    params_b: float = 8,
    tier: str = "local",
    capabilities: tuple[str, ...] = ("chat",),
    context: int = 8192,
    features: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    out = {
        "backend": backend,
        "upstream": upstream,
        "params_b": params_b,
        "tier": tier,
        "capabilities": list(capabilities),
        "context": context,
    }
    if features is not None:
        out["features"] = list(features)
    return out


# What the fakes can do: everything (they also make embeddings and read images).
EVERYTHING = ("chat", "completion", "embed", "vision", "tools", "json")


def make_config(
    backends: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, Mapping[str, Any]],
    *,
    fallbacks: Mapping[str, list[str]] | None = None,
    routes: Mapping[str, Any] | None = None,
    health: Mapping[str, Any] | None = None,
    timeouts: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    **other: Any,
) -> Config:
    """A complete config (``extends: none``) with fast timeouts and a fast circuit."""
    doc: dict[str, Any] = {
        "defaults": {"timeouts": dict(timeouts or FAST_TIMEOUTS)},
        "health": dict(health or FAST_HEALTH),
        "models": dict(models),
    }
    if fallbacks:
        doc["fallbacks"] = dict(fallbacks)
    if routes:
        doc["routes"] = dict(routes)
    if server:
        doc["server"] = dict(server)
    doc.update(other)
    return config_for(backends, yaml.safe_dump(doc, sort_keys=False))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def fakes() -> Iterator[FakeFactory]:
    """``fakes("ollama", name="oll", models=["m1"])`` -> a running fake, stopped at teardown."""
    factory = FakeFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


class Proxies:
    def __init__(self) -> None:
        self.started: list[ProxyThread] = []

    def __call__(self, cfg: Config, **kwargs: Any) -> ProxyThread:
        p = ProxyThread(cfg, **kwargs).start()
        self.started.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.started:
            if not p.loop.is_closed():
                p.stop()


@pytest.fixture
def proxies() -> Iterator[Proxies]:
    """``proxies(cfg, **ProxyThread kwargs)`` -> a started proxy, stopped at teardown."""
    p = Proxies()
    try:
        yield p
    finally:
        p.stop_all()


class Clients:
    """Official clients pointed at a proxy, closed at teardown."""

    def __init__(self) -> None:
        self._open: list[Any] = []

    def openai(self, p: ProxyThread, api_key: str = "x", **kwargs: Any) -> openai.OpenAI:
        c = openai.OpenAI(
            base_url=p.url + "/v1", api_key=api_key, max_retries=0, timeout=20, **kwargs
        )
        self._open.append(c)
        return c

    def ollama(self, p: ProxyThread, **kwargs: Any) -> ollama.Client:
        kwargs.setdefault("timeout", 20)
        c = ollama.Client(host=p.url, **kwargs)
        self._open.append(c)
        return c

    def close(self) -> None:
        for c in self._open:
            try:
                if isinstance(c, openai.OpenAI):
                    c.close()
                else:
                    c._client.close()
            except Exception:
                pass


@pytest.fixture
def clients() -> Iterator[Clients]:
    c = Clients()
    try:
        yield c
    finally:
        c.close()


# --------------------------------------------------------------------------- raw HTTP


class Raw:
    """A raw HTTP answer."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Raw {self.status} {self.body[:300]!r}>"


def raw(
    p: ProxyThread,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 20,
) -> Raw:
    """One request with http.client: full control over Host, body bytes and headers."""
    hdrs = dict(headers or {})
    data: bytes | None
    if body is None or isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", p.server.port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        payload = r.read()
        return Raw(r.status, {k.lower(): v for k, v in r.getheaders()}, payload)
    finally:
        conn.close()


def status_of(p: ProxyThread) -> dict[str, Any]:
    r = raw(p, "GET", "/status")
    assert r.status == 200, r
    return r.json()  # type: ignore[no-any-return]


def request_log(p: ProxyThread) -> RequestLogHandle:
    """The proxy's request log handle (writer and queries while it is open)."""
    return p.server.app[REQUEST_LOG]


def wait_logged(p: ProxyThread, n: int, timeout: float = 5.0) -> LogQueries:
    """Wait until the proxy's request log holds ``n`` requests (records are
    observed just after the response, so a client can be done a moment before
    its record is queued); its queries."""
    handle = request_log(p)
    writer, queries = handle.writer, handle.queries
    assert writer is not None and queries is not None, handle.status()
    assert wait_until(lambda: writer.flush(1) and queries.count() >= n, timeout), (
        writer.counters(),
        queries.count(),
    )
    return queries


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def sse_payloads(body: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    out = []
    for event in body.decode().split("\n\n"):
        for line in event.splitlines():
            if line.startswith("data:"):
                out.append(line[5:].strip())
    return out


def ndjson_lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def chat_paths(fake: FakeBackend) -> int:
    """How many inference requests the fake received (probes and listings excluded)."""
    inference = {
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
    }
    return sum(1 for r in fake.requests if r.path in inference)
