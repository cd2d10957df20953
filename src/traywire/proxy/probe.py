"""Cheap liveness probes for backends, and a background `Prober` feeding `Health`.

A probe never loads a model: it only lists what the server has.

* kind "ollama": ``GET {base}/api/tags``; model names from ``models[].name``
  and ``models[].model`` (a ``name:latest`` is also listed as ``name``, since
  Ollama treats the two as the same model).
* kind "openai": ``base`` is the API base ending in ``/v1``.
  ``GET {base}/models``; ids from ``data[].id``. On 404 it asks the server
  root's ``/health`` (llama.cpp): 200 is up (no model list), 503 means the model
  is still loading, which is *not* up (detail "loading"). A 503 from
  ``/models`` whose body mentions loading also gives "loading".

`probe` never raises (except `asyncio.CancelledError`, which it lets through
so the `Prober` can stop promptly); failures come back as ``ok=False`` with a
short ``detail``. Probes use the proxy's one HTTP client (`transport.Pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from ..types import BackendKind
from .health import ChangeHook, Health
from .origins import origin_of
from .transport import Pool, TransportError

__all__ = ["ProbeResult", "ProbeTarget", "Prober", "probe"]

log = logging.getLogger(__name__)

# A model list larger than this is not a model list.
MAX_BODY_BYTES = 4 * 1024 * 1024

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ProbeResult(NamedTuple):
    ok: bool
    # Wall time of the whole probe (including a /health fallback), in ms.
    latency_ms: float
    # Model ids the server listed; None if it gave no list (failure, /health).
    models: frozenset[str] | None
    # "ok", "ok (/health)", "loading", "timeout", "connection refused",
    # "DNS lookup failed", "HTTP 500", "invalid JSON", "TLS: <the problem>", ...
    detail: str


class _Fail(Exception):
    """A probe failure with its detail string (internal)."""


# Transport error kinds as probe details (tls keeps the transport's words).
_DETAILS = {
    "refused": "connection refused",
    "dns": "DNS lookup failed",
    "connect_timeout": "timeout",
    "total_timeout": "timeout",
    "reset": "server disconnected",
    "invalid_response": "bad response",
    "too_large": "response too large",
}


async def probe(
    pool: Pool,
    kind: BackendKind,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
) -> ProbeResult:
    """Probe one backend; ``timeout_s`` bounds the whole probe."""
    start = time.perf_counter()
    hdrs = dict(headers or {})
    base = base_url.rstrip("/")
    models: frozenset[str] | None = None
    get = _getter(pool, hdrs, timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            origin_of(base)  # a bad URL says so before anything is sent
            if kind == "ollama":
                models, detail = await _probe_ollama(get, base)
            elif kind == "openai":
                models, detail = await _probe_openai(get, base)
            else:
                raise _Fail(f"unknown kind {kind!r}")
        ok = True
    except _Fail as e:
        ok, detail = False, str(e)
    except TimeoutError:
        ok, detail = False, "timeout"
    except TransportError as e:
        ok, detail = False, _describe(e)
    except Exception as e:  # never raise: a probe answers, it does not crash the loop
        log.debug("probe of %s failed unexpectedly", base, exc_info=True)
        ok, detail = False, f"error: {type(e).__name__}"
    latency_ms = (time.perf_counter() - start) * 1000.0
    return ProbeResult(ok, latency_ms, models if ok else None, detail)


_Get = Callable[[str, str], Awaitable[tuple[int, bytes]]]


async def _probe_ollama(get: _Get, base: str) -> tuple[frozenset[str], str]:
    status, body = await get(base, "/api/tags")
    if not 200 <= status < 300:
        raise _Fail(f"HTTP {status}")
    doc = _json(body)
    entries = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise _Fail("unexpected JSON (no models list)")
    names: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for key in ("name", "model"):
            value = entry.get(key)
            if isinstance(value, str) and value:
                names.add(value)
                if value.endswith(":latest"):
                    names.add(value.removesuffix(":latest"))
    return frozenset(names), "ok"


async def _probe_openai(get: _Get, base: str) -> tuple[frozenset[str] | None, str]:
    status, body = await get(base, "/models")
    if status == 404:
        parts = urlsplit(base)  # the server's root keeps the base's query, if any
        root = urlunsplit(parts._replace(path=parts.path.removesuffix("/v1")))
        hstatus, _ = await get(root, "/health")
        if 200 <= hstatus < 300:
            return None, "ok (/health)"
        if hstatus == 503:
            raise _Fail("loading")
        if hstatus == 404:
            raise _Fail("HTTP 404")
        raise _Fail(f"HTTP {hstatus} (/health)")
    if status == 503 and b"loading" in body.lower():
        raise _Fail("loading")
    if not 200 <= status < 300:
        raise _Fail(f"HTTP {status}")
    doc = _json(body)
    entries = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise _Fail("unexpected JSON (no data list)")
    ids = {
        e["id"] for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str) and e["id"]
    }
    return frozenset(ids), "ok"


def _getter(pool: Pool, headers: dict[str, str], timeout_s: float) -> _Get:
    items = tuple(headers.items())

    async def get(base: str, path: str) -> tuple[int, bytes]:
        return await pool.get(base, path, items, timeout=timeout_s, limit=MAX_BODY_BYTES)

    return get


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        raise _Fail("invalid JSON") from None


def _describe(exc: TransportError) -> str:
    if exc.kind == "tls":
        return f"TLS: {exc.detail}"
    if exc.kind == "refused":
        if exc.detail.startswith("invalid URL"):
            return "invalid URL"
        reason = exc.detail.rpartition(": ")[2]  # "cannot connect to h:p: <why>"
        if reason and "refused" not in reason.lower():
            return f"cannot connect ({reason})"
    return _DETAILS.get(exc.kind, exc.kind)


# ------------------------------------------------------------------- Prober


class ProbeTarget(NamedTuple):
    backend: str
    kind: BackendKind
    base_url: str
    headers: Mapping[str, str] = _NO_HEADERS


class Prober:
    """Probes every target each ``interval_s`` seconds on the running loop.

    Results go to ``health.probe_result`` with ``now=clock()``. Backends whose
    ``no_key`` flag is set are skipped (a cloud API without a key only says
    401). ``on_change(backend, old, new)`` is registered on the `Health` while
    running, so it also sees changes caused by request outcomes; it runs on
    the event-loop thread (a tray on another thread must hand it over).

    Keep ``timeout_s`` below ``interval_s``: then a backend that comes back is
    seen healthy within one interval.
    """

    def __init__(
        self,
        health: Health,
        targets: Iterable[ProbeTarget] = (),
        *,
        interval_s: float = 15.0,
        timeout_s: float = 5.0,
        pool: Pool | None = None,
        on_change: ChangeHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        learn: Callable[[ProbeTarget, ProbeResult], Awaitable[None]] | None = None,
    ) -> None:
        """``learn(target, result)``: called after each probe that found the
        backend up (to ask what its models can do; see `learn`)."""
        if not interval_s > 0 or not timeout_s > 0:
            raise ValueError("interval_s and timeout_s must be > 0")
        self.health = health
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self._targets: tuple[ProbeTarget, ...] = tuple(targets)
        self._pool = pool
        self._own_pool: Pool | None = None  # when none is given: made on first use
        self._on_change = on_change
        self._unhook: Callable[[], None] | None = None
        self._clock = clock
        self._learn = learn
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def targets(self) -> tuple[ProbeTarget, ...]:
        return self._targets

    def set_targets(self, targets: Iterable[ProbeTarget]) -> None:
        """Replace the targets (config reload); takes effect from the next round."""
        self._targets = tuple(targets)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the background loop (call from within the running event loop)."""
        if self.running:
            return
        if self._on_change is not None and self._unhook is None:
            self._unhook = self.health.add_listener(self._on_change)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="traywire-prober")

    def probe_soon(self) -> None:
        """Cut the current wait short and run a round now (e.g. a tray "refresh")."""
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the loop (and any probe in progress) and wait for it to finish."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        if self._own_pool is not None:
            pool, self._own_pool = self._own_pool, None
            await pool.close()

    async def probe_all(self) -> dict[str, ProbeResult]:
        """Run one round now, feed `Health`, and return the results by backend."""
        pool = self._pool_for_use()
        targets = [t for t in self._targets if not self.health.no_key(t.backend)]
        results = await asyncio.gather(
            *(probe(pool, t.kind, t.base_url, t.headers, self.timeout_s) for t in targets)
        )
        now = self._clock()
        out: dict[str, ProbeResult] = {}
        for t, r in zip(targets, results, strict=True):
            self.health.probe_result(t.backend, now, r.ok, r.latency_ms, r.models, r.detail)
            out[t.backend] = r
        if self._learn is not None:
            learned = await asyncio.gather(
                *(self._learn(t, r) for t, r in zip(targets, results, strict=True) if r.ok),
                return_exceptions=True,
            )
            for exc in learned:
                if isinstance(exc, Exception):
                    log.warning("asking a backend what its models can do failed: %r", exc)
        return out

    def _pool_for_use(self) -> Pool:
        if self._pool is not None:
            return self._pool
        if self._own_pool is None:
            self._own_pool = Pool()
        return self._own_pool

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._wake.clear()
            try:
                await self.probe_all()
            except Exception:  # keep probing whatever a hook or target did
                log.exception("probe round failed")
            delay = self.interval_s - (loop.time() - started)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
