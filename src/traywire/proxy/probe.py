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
short ``detail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import aiohttp

from ..types import BackendKind
from .health import ChangeHook, Health

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
    # "DNS lookup failed", "HTTP 500", "invalid JSON", ...
    detail: str


class _Fail(Exception):
    """A probe failure with its detail string (internal)."""


async def probe(
    session: aiohttp.ClientSession,
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
    try:
        async with asyncio.timeout(timeout_s):
            if kind == "ollama":
                models, detail = await _probe_ollama(session, base, hdrs)
            elif kind == "openai":
                models, detail = await _probe_openai(session, base, hdrs)
            else:
                raise _Fail(f"unknown kind {kind!r}")
        ok = True
    except _Fail as e:
        ok, detail = False, str(e)
    except TimeoutError:
        ok, detail = False, "timeout"
    except aiohttp.ClientError as e:
        ok, detail = False, _describe(e)
    except Exception as e:  # never raise: a probe answers, it does not crash the loop
        log.debug("probe of %s failed unexpectedly", base, exc_info=True)
        ok, detail = False, f"error: {type(e).__name__}"
    latency_ms = (time.perf_counter() - start) * 1000.0
    return ProbeResult(ok, latency_ms, models if ok else None, detail)


async def _probe_ollama(
    session: aiohttp.ClientSession, base: str, headers: dict[str, str]
) -> tuple[frozenset[str], str]:
    status, body = await _get(session, f"{base}/api/tags", headers)
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


async def _probe_openai(
    session: aiohttp.ClientSession, base: str, headers: dict[str, str]
) -> tuple[frozenset[str] | None, str]:
    status, body = await _get(session, f"{base}/models", headers)
    if status == 404:
        root = base.removesuffix("/v1")
        hstatus, _ = await _get(session, f"{root}/health", headers)
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


async def _get(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    async with session.get(url, headers=headers) as resp:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Fail("response too large")
            chunks.append(chunk)
        return resp.status, b"".join(chunks)


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        raise _Fail("invalid JSON") from None


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS error"
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        if isinstance(err, socket.gaierror):
            return "DNS lookup failed"
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect ({err.strerror or type(err).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "bad response body"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "connection error"
    return f"client error: {type(exc).__name__}"


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
        session: aiohttp.ClientSession | None = None,
        on_change: ChangeHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0 or not timeout_s > 0:
            raise ValueError("interval_s and timeout_s must be > 0")
        self.health = health
        self.interval_s = float(interval_s)
        self.timeout_s = float(timeout_s)
        self._targets: tuple[ProbeTarget, ...] = tuple(targets)
        self._session = session
        self._own_session: aiohttp.ClientSession | None = None
        self._on_change = on_change
        self._unhook: Callable[[], None] | None = None
        self._clock = clock
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
        if self._own_session is not None:
            session, self._own_session = self._own_session, None
            await session.close()

    async def probe_all(self) -> dict[str, ProbeResult]:
        """Run one round now, feed `Health`, and return the results by backend."""
        session = self._session_for_use()
        targets = [t for t in self._targets if not self.health.no_key(t.backend)]
        results = await asyncio.gather(
            *(probe(session, t.kind, t.base_url, t.headers, self.timeout_s) for t in targets)
        )
        now = self._clock()
        out: dict[str, ProbeResult] = {}
        for t, r in zip(targets, results, strict=True):
            self.health.probe_result(t.backend, now, r.ok, r.latency_ms, r.models, r.detail)
            out[t.backend] = r
        return out

    def _session_for_use(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession()
        return self._own_session

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
