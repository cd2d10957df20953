"""Proxy overhead: traywire against a bare aiohttp pass-through, in one run.

    .venv/bin/python bench/bench_proxy.py            # about 3 minutes
    .venv/bin/python bench/bench_proxy.py --quick    # a few seconds, smoke run
    .venv/bin/python bench/bench_proxy.py --only big-bodies --baseline /path/to/tree
                                                     # one part (and its targets) alone
    .venv/bin/python bench/bench_proxy.py --pin      # proxies on their own CPU
    .venv/bin/python bench/bench_proxy.py --shared-state   # also traywire sharing state
                                                           # through Redis: on vs off
    .venv/bin/python bench/bench_proxy.py --profile py-spy   # or cprofile
    .venv/bin/python bench/bench_proxy.py --only startup --baseline /work/base
                                         # start-up and idle memory alone (~1 min)
    .venv/bin/python bench/bench_proxy.py --only stream-cpu --baseline DIR   # one part
    .venv/bin/python bench/pyspy_summary.py bench/results/traywire.pyspy.txt

Three servers, each its own process, all on 127.0.0.1:

- ``bench/fast_backend.py``: a tiny aiohttp fake OpenAI backend (fixed JSON;
  SSE streams of ``--chunks`` events, a model named ``delay-<ms>`` pauses
  between events);
- ``bench/passthrough.py``: the floor for any aiohttp proxy (body forwarded
  through one pooled ClientSession, response streamed back chunk by chunk);
- traywire: ``python -m traywire serve --config <tmp yaml> --port <free port>``
  with one openai backend (the fake) and two models (``bench``, and
  ``bench-slow`` = upstream ``delay-<ms>``).

The load generator is an aiohttp client in this process. Every figure is
measured against baselines from the same run, interleaved in rounds (the
order rotates each round) so the machine's noise falls on all targets alike:

- latency (sequential non-streaming requests after warm-up): p50/p99 direct,
  pass-through, traywire; the ADDED latency (proxy − direct) of traywire over
  the pass-through's, as a ratio (target ≤ 1.0, p50 and p99);
- streaming time to first byte (direct, pass-through, traywire);
- chunk forwarding: with the backend pausing 50 ms between events,
  the client's inter-event gaps through each proxy must match the backend's
  (not bunched at the end);
- requests per second at 32 concurrent clients for a fixed duration,
  traywire / pass-through (target ≥ 1.0); also each proxy's CPU time per
  request (from /proc/<pid>/stat, all threads and any child processes
  included: traywire's request-log writer thread counts), which the shared
  CPU cannot distort;
- peak memory: VmHWM of the traywire and pass-through processes;
- big bodies, 1,000 streams at once, CPU per streamed event, start-up and
  idle memory of the process tree: `proxy_more` (issue 17's targets).

Reading the throughput figures: on a 2-core machine the client, the backend
and the proxy share the CPUs, so req/s is only partly proxy-bound and the
req/s ratio understates a proxy's extra cost; "proxy CPU per request" (all of
the proxy process's threads and child processes, e.g. traywire's request-log
writer) does not.
``--pin`` gives the proxies a CPU of their own, but then the client and the
backend share the other one and often become the bottleneck. ``--profile``
figures are not comparable with unprofiled runs (cProfile slows traywire a
lot, py-spy a little). traywire's request log, where it has one, is kept
on but written to the run's temporary directory; nothing is written outside it
except ``bench/results/``.

The request log's writer ran in a child process until a same-run comparison
with a writer thread (``--compare-log-writers`` at commit 8f483d6, README
"Benchmarks") showed too small a gain to keep it.

Output: a table on stdout and ``bench/results/proxy.json``. Every loop is
bounded; the servers are stopped at the end (or on any error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import proxy_more

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")

# issue 17's targets, against the pass-through in the same run
LATENCY_TARGET = 1.0  # added latency p50 and p99
THROUGHPUT_TARGET = 1.0
CPU_TARGET = 1.05  # proxy CPU per request
STREAM_CPU_TARGET = 1.1  # proxy CPU per relayed event
BIG_LATENCY_TARGET = 1.3  # added latency of a 1 MB request
STALL_TARGET_MS = 5.0  # while a 10 MB body is handled
STARTUP_TARGET_S = 0.3
# --compile-each-start: keep the environment's PYTHONDONTWRITEBYTECODE (if set)
COMPILE_EACH_START = False
# the parts of a run (``--only``): latency also measures TTFB and chunk timing
PARTS = frozenset(("latency", "throughput", "stream-cpu", "big-bodies", "many-streams", "startup"))
MEMORY_TARGET_MIB = 45.0  # idle, the whole process tree


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    rounds: int  # latency / ttfb rounds (targets interleaved)
    latency_n: int  # sequential requests per target per round
    ttfb_n: int  # streams per target per round
    warmup: int  # requests per target before measuring
    chunk_streams: int  # slow streams per target (chunk-timing check)
    chunks: int  # SSE events per stream
    delay_ms: float  # backend pause between events in the chunk-timing check
    tp_rounds: int  # throughput rounds per target
    tp_seconds: float  # duration of one throughput round
    tp_max: int  # request cap per throughput round (bounded loop)
    concurrency: int
    big_rounds: int = 1  # big-body rounds (sizes 1 and 10 MiB)
    big_n: int = 2  # big requests per size, target and round
    many: int = 100  # streams started at once
    many_rounds: int = 1
    scpu_rounds: int = 2  # streamed-chunk CPU rounds
    scpu_seconds: float = 0.6
    start_rounds: int = 1  # fresh processes per target


QUICK = Settings(
    rounds=2,
    latency_n=150,
    ttfb_n=40,
    warmup=100,
    chunk_streams=1,
    chunks=10,
    delay_ms=50,
    tp_rounds=2,
    tp_seconds=0.6,
    tp_max=50_000,
    concurrency=32,
)
DEFAULT = Settings(
    rounds=8,
    latency_n=500,
    ttfb_n=100,
    warmup=500,
    chunk_streams=3,
    chunks=20,
    delay_ms=50,
    tp_rounds=12,
    tp_seconds=1.5,
    tp_max=200_000,
    concurrency=32,
    big_rounds=3,
    big_n=3,
    many=1000,
    many_rounds=2,
    scpu_rounds=6,
    scpu_seconds=1.5,
    start_rounds=5,
)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat fields from the state on (field 3 is index 0), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _tree_cpu_ticks(pid: int) -> tuple[int, int]:
    """CPU clock ticks (user + system) of ``pid`` itself, and of its children:
    the live descendants' utime + stime, plus everyone's cutime + cstime
    (children already exited and reaped)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            f = _stat(int(entry.name))
            if f is not None:
                parents[int(entry.name)] = int(f[1])
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo.extend(c for c, pp in parents.items() if pp == p and c not in tree)
    own = children = 0
    for p in tree:
        f = _stat(p)
        if f is not None:
            if p == pid:
                own += int(f[11]) + int(f[12])
                children += int(f[13]) + int(f[14])
            else:
                children += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return own, children


@dataclass
class Proc:
    name: str
    url: str
    popen: subprocess.Popen[bytes]
    log: Path
    pid: int = field(init=False)

    def __post_init__(self) -> None:
        self.pid = self.popen.pid

    def status(self, key: str) -> int:
        """A /proc/<pid>/status memory figure in KiB (VmHWM, VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def cpu(self) -> float:
        """User + system CPU seconds so far, of the process and all its descendants:
        the live ones (none, today, for either proxy) and the ones
        that have exited and been waited for (cutime + cstime). A child that
        exits between two readings moves from the first term to the second, so
        differences stay honest."""
        return sum(self.cpu_parts())

    def cpu_parts(self) -> tuple[float, float]:
        """(the process's own CPU seconds, its children's), as `cpu` counts them."""
        own, children = _tree_cpu_ticks(self.pid)
        return own / TICK, children / TICK

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def spawn(
    name: str,
    argv: Sequence[str],
    port: int,
    tmp: Path,
    cpus: set[int] | None,
    src: Path | None = None,
) -> Proc:
    """``src``: the source tree whose ``traywire`` it runs (default: this one's)."""
    log = tmp / f"{name}.log"
    # nothing of the run outside its temporary directory
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        XDG_DATA_HOME=str(tmp / "data"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        XDG_STATE_HOME=str(tmp / "state"),
        XDG_CACHE_HOME=str(tmp / "cache"),
    )
    env["PYTHONPATH"] = os.pathsep.join([str(src or ROOT / "src"), env.get("PYTHONPATH", "")])
    if not COMPILE_EACH_START:
        # Compiled bytecode kept between starts, as an installed traywire has it
        # (pip and the .deb compile it; a checkout writes it at its first run):
        # without it every start compiles each module's source again (~0.1 s for
        # traywire's). In the run's directory: no source tree is written to.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    if src is not None:
        env["XDG_DATA_HOME"] += "-" + name  # a request log of its own
    with log.open("wb") as out:
        p = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(tmp)
        )
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(p.pid, cpus)
    return Proc(name, f"http://{HOST}:{port}", p, log)


async def wait_ready(proc: Proc, session: aiohttp.ClientSession, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited: {proc.log.read_text()[-2000:]}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(proc.url + "/health") as r:
                if r.status == 200:
                    await r.read()
                    return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready in {timeout}s: {proc.log.read_text()[-2000:]}")


def _has_request_log() -> bool:
    if str(ROOT / "src") not in sys.path:
        sys.path.append(str(ROOT / "src"))
    try:
        from traywire import config
    except ImportError:
        return False
    return hasattr(getattr(config, "LogSettings", None), "path")


def traywire_config(backend_url: str, delay_ms: float, tmp: Path | None = None) -> str:
    # the request log (where this traywire has one) stays on, as a user has it,
    # but in the run's temporary directory
    log = (
        f'log:\n  path: "{tmp / "requests.sqlite3"}"\n'
        if tmp is not None and _has_request_log()
        else ""
    )
    return f"""\
extends: none
{log}health:
  probe_interval: 3600
backends:
  fast:
    kind: openai
    url: "{backend_url}/v1"
    location: local
    capacity: 64
models:
  bench:
    backend: fast
    params_b: 1
    tier: local
    capabilities: [chat]
    context: 4000000  # the big-body rounds: 10 MB of prompt
  bench-slow:
    backend: fast
    upstream: "delay-{delay_ms:g}"
    params_b: 1
    tier: local
    capabilities: [chat]
    context: 4000000  # the big-body rounds: 10 MB of prompt
"""


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    url: str  # base, requests go to url + /v1/chat/completions
    fast_model: str
    slow_model: str
    proc: Proc | None = None
    session: aiohttp.ClientSession | None = None

    def body(self, stream: bool, slow: bool = False) -> bytes:
        return json.dumps(
            {
                "model": self.slow_model if slow else self.fast_model,
                "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
                "max_tokens": 32,
                "stream": stream,
            }
        ).encode()


_JSON_HEADERS = {"Content-Type": "application/json"}


def percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


async def one_unary(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers=_JSON_HEADERS) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")
    return time.perf_counter() - t0


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes
) -> tuple[float, list[float], float]:
    """(time to first body byte, arrival time of each SSE event, total), from the send."""
    t0 = time.perf_counter()
    events: list[float] = []
    ttfb = float("nan")
    buf = b""
    async with session.post(url, data=body, headers=_JSON_HEADERS) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}: {await r.read()!r}")
        while True:
            chunk = await r.content.readany()
            now = time.perf_counter() - t0
            if not chunk:
                break
            if ttfb != ttfb:  # nan: the first body bytes
                ttfb = now
            buf += chunk
            n = buf.count(b"\n\n")
            if n:
                events.extend([now] * n)
                buf = buf[buf.rfind(b"\n\n") + 2 :]
    return ttfb, events, time.perf_counter() - t0


def rotate(xs: list[Target], i: int) -> list[Target]:
    k = i % len(xs)
    return xs[k:] + xs[:k]


async def bench_latency(targets: list[Target], s: Settings) -> dict[str, Any]:
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    per_round: list[dict[str, float]] = []
    for i in range(s.rounds):
        medians: dict[str, float] = {}
        for t in rotate(targets, i):
            assert t.session is not None
            url, body = t.url + "/v1/chat/completions", t.body(False)
            xs = [await one_unary(t.session, url, body) for _ in range(s.latency_n)]
            samples[t.name].extend(xs)
            medians[t.name] = statistics.median(xs)
        per_round.append(medians)
    out: dict[str, Any] = {}
    for name, xs in samples.items():
        out[name] = {
            "n": len(xs),
            "p50_ms": percentile(xs, 50) * 1e3,
            "p99_ms": percentile(xs, 99) * 1e3,
            "mean_ms": statistics.fmean(xs) * 1e3,
        }
    d, pt, tw = out["direct"], out["passthrough"], out["traywire"]
    for q in ("p50", "p99"):
        add_pt = pt[f"{q}_ms"] - d[f"{q}_ms"]
        add_tw = tw[f"{q}_ms"] - d[f"{q}_ms"]
        out[f"added_{q}_ms"] = {"passthrough": add_pt, "traywire": add_tw}
        out[f"added_{q}_ratio"] = add_tw / add_pt if add_pt > 0 else float("inf")
    if "baseline" in out:
        add_b = out["baseline"]["p50_ms"] - d["p50_ms"]
        add_pt = pt["p50_ms"] - d["p50_ms"]
        out["added_p50_ms"]["baseline"] = add_b
        out["baseline_added_p50_ratio"] = add_b / add_pt if add_pt > 0 else float("inf")
    if "shared" in out:
        out.update(shared_latency(out, per_round))
    ratios = [
        (m["traywire"] - m["direct"]) / (m["passthrough"] - m["direct"])
        for m in per_round
        if m["passthrough"] > m["direct"]
    ]
    out["added_p50_ratio_per_round"] = {
        "min": min(ratios, default=float("nan")),
        "median": statistics.median(ratios) if ratios else float("nan"),
        "max": max(ratios, default=float("nan")),
    }
    return out


async def bench_ttfb(targets: list[Target], s: Settings) -> dict[str, Any]:
    ttfb: dict[str, list[float]] = {t.name: [] for t in targets}
    total: dict[str, list[float]] = {t.name: [] for t in targets}
    for i in range(s.rounds):
        for t in rotate(targets, i):
            assert t.session is not None
            url, body = t.url + "/v1/chat/completions", t.body(True)
            for _ in range(s.ttfb_n):
                first, events, whole = await one_stream(t.session, url, body)
                if len(events) != s.chunks + 1:
                    raise RuntimeError(f"{t.name}: {len(events)} events, want {s.chunks + 1}")
                ttfb[t.name].append(first)
                total[t.name].append(whole)
    out: dict[str, Any] = {}
    for name in ttfb:
        out[name] = {
            "n": len(ttfb[name]),
            "ttfb_p50_ms": percentile(ttfb[name], 50) * 1e3,
            "ttfb_p99_ms": percentile(ttfb[name], 99) * 1e3,
            "stream_p50_ms": percentile(total[name], 50) * 1e3,
        }
    d = out["direct"]["ttfb_p50_ms"]
    add_pt = out["passthrough"]["ttfb_p50_ms"] - d
    add_tw = out["traywire"]["ttfb_p50_ms"] - d
    out["added_ttfb_p50_ms"] = {"passthrough": add_pt, "traywire": add_tw}
    out["added_ttfb_p50_ratio"] = add_tw / add_pt if add_pt > 0 else float("inf")
    return out


async def bench_chunks(targets: list[Target], s: Settings) -> dict[str, Any]:
    """Slow streams: gaps between content events at the client vs the backend's pause."""
    delay = s.delay_ms / 1e3
    out: dict[str, Any] = {"delay_ms": s.delay_ms, "events": s.chunks}
    for t in targets:
        assert t.session is not None
        url, body = t.url + "/v1/chat/completions", t.body(True, slow=True)
        gaps: list[float] = []
        firsts: list[float] = []
        spans: list[float] = []
        for _ in range(s.chunk_streams):
            _, events, _ = await one_stream(t.session, url, body)
            content = events[: s.chunks]  # the last event is [DONE]
            if len(content) != s.chunks:
                raise RuntimeError(f"{t.name}: {len(events)} events in the slow stream")
            gaps.extend(b - a for a, b in itertools.pairwise(content))
            firsts.append(content[0])
            spans.append(content[-1] - content[0])
        within = sum(0.5 * delay <= g <= 1.5 * delay for g in gaps) / len(gaps)
        expected_span = (s.chunks - 1) * delay
        ok = (
            abs(statistics.median(gaps) - delay) <= 0.2 * delay
            and within >= 0.9
            and max(firsts) < 0.5 * expected_span
            and min(spans) >= 0.8 * expected_span
        )
        out[t.name] = {
            "gap_p50_ms": statistics.median(gaps) * 1e3,
            "gap_min_ms": min(gaps) * 1e3,
            "gap_max_ms": max(gaps) * 1e3,
            "gaps_within_50pct": within,
            "first_event_ms": max(firsts) * 1e3,
            "span_ms": statistics.median(spans) * 1e3,
            "expected_span_ms": expected_span * 1e3,
            "streamed": ok,
        }
    return out


async def throughput_round(
    t: Target, s: Settings
) -> tuple[int, int, float, float | None, float, float | None]:
    """(ok, errors, seconds, proxy CPU seconds or None, client CPU seconds,
    the part of the proxy CPU seconds its child processes used, or None)."""
    url, body = t.url + "/v1/chat/completions", t.body(False)
    conn = aiohttp.TCPConnector(limit=s.concurrency, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=conn) as session:
        # open the connections first
        await asyncio.gather(*(one_unary(session, url, body) for _ in range(s.concurrency)))
        ok = errors = 0
        budget = s.tp_max
        deadline = 0.0

        async def worker() -> None:
            nonlocal ok, errors, budget
            while budget > 0 and time.perf_counter() < deadline:
                budget -= 1
                try:
                    async with session.post(url, data=body, headers=_JSON_HEADERS) as r:
                        await r.read()
                        if r.status == 200:
                            ok += 1
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        cpu0 = t.proc.cpu_parts() if t.proc else None
        c0 = time.process_time()
        t0 = time.perf_counter()
        deadline = t0 + s.tp_seconds
        await asyncio.gather(*(worker() for _ in range(s.concurrency)))
        elapsed = time.perf_counter() - t0
        client_cpu = time.process_time() - c0
        cpu1 = t.proc.cpu_parts() if t.proc else None
    if cpu0 is None or cpu1 is None:
        return ok, errors, elapsed, None, client_cpu, None
    kids = cpu1[1] - cpu0[1]
    return ok, errors, elapsed, cpu1[0] - cpu0[0] + kids, client_cpu, kids


async def bench_throughput(targets: list[Target], s: Settings) -> dict[str, Any]:
    """Direct once (the client's own ceiling), then pass-through and traywire in
    adjacent pairs, the order swapped each round; the headline ratio is the
    median of the paired ratios (noise from other tenants cancels best there)."""
    acc: dict[str, dict[str, float]] = {
        t.name: dict.fromkeys(("ok", "errors", "seconds", "cpu", "client_cpu", "children_cpu"), 0.0)
        for t in targets
    }

    async def one(t: Target) -> float:
        ok, errors, secs, cpu, ccpu, kids = await throughput_round(t, s)
        a = acc[t.name]
        a["ok"] += ok
        a["errors"] += errors
        a["seconds"] += secs
        a["cpu"] += cpu or 0.0
        a["client_cpu"] += ccpu
        a["children_cpu"] += kids or 0.0
        return ok / secs

    by_name = {t.name: t for t in targets}
    await one(by_name["direct"])
    pair = [by_name[n] for n in ("passthrough", "traywire", "baseline", "shared") if n in by_name]
    per_round: list[dict[str, float]] = []
    for i in range(s.tp_rounds):
        order = rotate(pair, i) if len(pair) > 2 else (pair if i % 2 == 0 else pair[::-1])
        per_round.append({t.name: await one(t) for t in order})
    out: dict[str, Any] = {"concurrency": s.concurrency, "round_seconds": s.tp_seconds,
                           "rounds": s.tp_rounds}  # fmt: skip
    for t in targets:
        a = acc[t.name]
        entry: dict[str, Any] = {
            "requests": int(a["ok"]),
            "errors": int(a["errors"]),
            "rps": a["ok"] / a["seconds"],
            "client_cpu_share": a["client_cpu"] / a["seconds"],
        }
        if t.proc is not None:
            entry["proxy_cpu_us_per_req"] = a["cpu"] / max(1, a["ok"]) * 1e6
            entry["proxy_children_cpu_us_per_req"] = a["children_cpu"] / max(1, a["ok"]) * 1e6
            entry["proxy_cpu_share"] = a["cpu"] / a["seconds"]
        out[t.name] = entry
    rr = [r["traywire"] / r["passthrough"] for r in per_round]
    out["rps_ratio"] = statistics.median(rr)
    out["rps_ratio_pooled"] = out["traywire"]["rps"] / out["passthrough"]["rps"]
    out["rps_ratio_per_round"] = {"min": min(rr), "median": statistics.median(rr), "max": max(rr)}
    out["cpu_per_req_ratio"] = (
        out["traywire"]["proxy_cpu_us_per_req"] / out["passthrough"]["proxy_cpu_us_per_req"]
    )
    if "baseline" in by_name:
        out["baseline_rps_ratio"] = statistics.median(
            r["baseline"] / r["passthrough"] for r in per_round
        )
        out["baseline_cpu_per_req_ratio"] = (
            out["baseline"]["proxy_cpu_us_per_req"] / out["passthrough"]["proxy_cpu_us_per_req"]
        )
    if "shared" in by_name:
        out["shared_rps_ratio"] = statistics.median(r["shared"] / r["traywire"] for r in per_round)
        out["shared_cpu_per_req_ratio"] = (
            out["shared"]["proxy_cpu_us_per_req"] / out["traywire"]["proxy_cpu_us_per_req"]
        )
    return out


# ------------------------------------------------------------- shared state on vs off


SHARED_TARGET = 1.05  # added latency with shared state on / off


def shared_latency(out: dict[str, Any], per_round: list[dict[str, float]]) -> dict[str, Any]:
    """traywire with shared state on (a Redis, another instance sharing it)
    against the same traywire without, both measured in the same rounds."""
    d = out["direct"]["p50_ms"]
    add_on, add_off = out["shared"]["p50_ms"] - d, out["traywire"]["p50_ms"] - d
    per = [
        (m["shared"] - m["direct"]) / (m["traywire"] - m["direct"])
        for m in per_round
        if m["traywire"] > m["direct"]
    ]
    return {
        "shared_added_p50_ms": add_on,
        "shared_added_p50_ratio": add_on / add_off if add_off > 0 else float("inf"),
        "shared_p50_ratio": out["shared"]["p50_ms"] / out["traywire"]["p50_ms"],
        "shared_p99_ratio": out["shared"]["p99_ms"] / out["traywire"]["p99_ms"],
        "shared_added_ratio_per_round": {
            "min": min(per, default=float("nan")),
            "median": statistics.median(per) if per else float("nan"),
            "max": max(per, default=float("nan")),
        },
    }


async def bench_shared_interleaved(targets: list[Target], s: Settings) -> dict[str, Any]:
    """Shared state on vs off, request by request: direct, traywire without and
    traywire with shared state take turns (the order rotating), so a load
    change on the shared machine falls on all three alike; the added latency
    of each over direct, per block of requests (`rounds` blocks: the verdict is
    the median of the blocks' ratios) and pooled."""
    by_name = {t.name: t for t in targets}
    trio = [by_name[n] for n in ("direct", "traywire", "shared")]
    n = s.rounds * s.latency_n
    xs: dict[str, list[float]] = {t.name: [] for t in trio}
    for i in range(n):
        for t in rotate(trio, i):
            assert t.session is not None
            xs[t.name].append(await one_unary(t.session, t.url + "/v1/chat/completions",
                                              t.body(False)))  # fmt: skip
    block = max(1, n // s.rounds)
    ratios = []
    for b in range(0, n, block):
        d, off, on = (statistics.median(xs[k][b : b + block]) for k in ("direct", "traywire",
                                                                        "shared"))  # fmt: skip
        if off > d:
            ratios.append((on - d) / (off - d))
    d, off, on = (percentile(xs[k], 50) for k in ("direct", "traywire", "shared"))
    return {
        "requests_each": n,
        "p50_ms": {"direct": d * 1e3, "off": off * 1e3, "on": on * 1e3},
        "added_p50_ms": {"off": (off - d) * 1e3, "on": (on - d) * 1e3},
        "added_p50_ratio": (on - d) / (off - d) if off > d else float("inf"),
        "p50_ratio": on / off,
        "p99_ratio": percentile(xs["shared"], 99) / percentile(xs["traywire"], 99),
        "added_ratio_per_block": {
            "blocks": len(ratios),
            "min": min(ratios, default=float("nan")),
            "median": statistics.median(ratios) if ratios else float("nan"),
            "max": max(ratios, default=float("nan")),
        },
    }


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the run's own (Debian package redis-server)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("--shared-state needs redis-server (apt-get install redis-server)")
    port = free_port()
    (tmp / "redis").mkdir(exist_ok=True)
    argv = [exe, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(tmp / "redis")]  # fmt: skip
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
            return p, f"redis://{HOST}:{port}/0"
        time.sleep(0.02)
    p.kill()
    raise RuntimeError("redis-server did not start")


def shared_table(r: dict[str, Any]) -> str:
    L, P, i = r["latency"], r["throughput"], r["shared_interleaved"]
    pr, pb = L["shared_added_ratio_per_round"], i["added_ratio_per_block"]
    ok = pb["median"] <= SHARED_TARGET  # the blocks' ratios: robust to the load drifting
    return "\n".join(
        [
            f"\n{'shared state on vs off, interleaved':40}{'off':>10}{'on':>10}{'on/off':>9}",
            f"{'latency p50 (ms)':40}{i['p50_ms']['off']:10.3f}{i['p50_ms']['on']:10.3f}"
            f"{i['p50_ratio']:9.3f}",
            f"{'added latency p50 (ms)':40}{i['added_p50_ms']['off']:10.3f}"
            f"{i['added_p50_ms']['on']:10.3f}{i['added_p50_ratio']:9.3f}",
            f"{'latency p99 ratio':40}{'':20}{i['p99_ratio']:9.3f}",
            f"per block of {i['requests_each'] // max(1, pb['blocks'])} requests each: "
            f"added-latency ratio {pb['min']:.3f}..{pb['max']:.3f} (median {pb['median']:.3f}); "
            f"target <= {SHARED_TARGET}: {'MET' if ok else 'MISSED'}",
            f"\n{'the same, in the rounds above':40}{'off':>10}{'on':>10}{'on/off':>9}",
            f"{'latency p50 (ms)':40}{L['traywire']['p50_ms']:10.3f}{L['shared']['p50_ms']:10.3f}"
            f"{L['shared_p50_ratio']:9.3f}",
            f"{'latency p99 (ms)':40}{L['traywire']['p99_ms']:10.3f}{L['shared']['p99_ms']:10.3f}"
            f"{L['shared_p99_ratio']:9.3f}",
            f"{'added latency p50 (ms)':40}{L['added_p50_ms']['traywire']:10.3f}"
            f"{L['shared_added_p50_ms']:10.3f}{L['shared_added_p50_ratio']:9.3f}",
            f"{'req/s at ' + str(P['concurrency']) + ' clients':40}{P['traywire']['rps']:10.0f}"
            f"{P['shared']['rps']:10.0f}{P['shared_rps_ratio']:9.3f}",
            f"{'proxy CPU per request (µs)':40}{P['traywire']['proxy_cpu_us_per_req']:10.0f}"
            f"{P['shared']['proxy_cpu_us_per_req']:10.0f}{P['shared_cpu_per_req_ratio']:9.3f}",
            f"per-round added-latency ratio on/off {pr['min']:.3f}..{pr['max']:.3f} "
            f"(median {pr['median']:.3f})",
        ]
    )


# --------------------------------------------------------------------------- run


def _fresh(
    name: str, argv: list[str], tmp: Path, cpus: set[int] | None, src: Path | None = None
) -> tuple[Proc, str, bytes]:
    """A new process of a proxy on a free port (``argv`` ends with --port),
    its chat URL and a request body; ``spawn_s``: how long the spawn took."""
    port = free_port()
    t0 = time.perf_counter()
    p = spawn(f"{name}-fresh", [*argv, str(port)], port, tmp, cpus, src)
    p.spawn_s = time.perf_counter() - t0  # type: ignore[attr-defined]
    return p, p.url + "/v1/chat/completions", Target(name, p.url, "bench", "bench").body(False)


async def warm(targets: list[Target], n: int) -> None:
    for t in targets:
        assert t.session is not None
        url = t.url + "/v1/chat/completions"
        for _ in range(n):
            await one_unary(t.session, url, t.body(False))
        for _ in range(max(5, n // 10)):
            await one_stream(t.session, url, t.body(True))


def start_profiler(kind: str, tw: Proc, seconds: float) -> subprocess.Popen[bytes] | None:
    if kind != "py-spy":
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    RESULTS.mkdir(parents=True, exist_ok=True)
    argv = [
        exe, "record", "--pid", str(tw.pid), "--duration", str(int(seconds) + 1),
        "--rate", "500", "--format", "raw", "--output", str(RESULTS / "traywire.pyspy.txt"),
        "--nonblocking",
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def run(
    s: Settings,
    pin: bool,
    profile: str | None,
    baseline: Path | None = None,
    shared: bool = False,
    only: frozenset[str] = PARTS,
) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    proxy_cpus = client_cpus = None
    if pin and len(cpus) >= 2:
        proxy_cpus, client_cpus = {cpus[-1]}, set(cpus[:-1])
        os.sched_setaffinity(0, client_cpus)
    tmp = Path(tempfile.mkdtemp(prefix="traywire-bench-"))
    procs: list[Proc] = []
    py = sys.executable
    try:
        bport, pport, tport = free_port(), free_port(), free_port()
        backend = spawn(
            "backend",
            [py, str(HERE / "fast_backend.py"), "--port", str(bport), "--chunks", str(s.chunks)],
            bport,
            tmp,
            client_cpus,
        )
        procs.append(backend)
        pt_argv = [py, str(HERE / "passthrough.py"), "--upstream", backend.url, "--port"]
        pt = spawn("passthrough", [*pt_argv, str(pport)], pport, tmp, proxy_cpus)
        procs.append(pt)
        cfg = tmp / "traywire.yaml"
        cfg.write_text(traywire_config(backend.url, s.delay_ms, tmp))
        tw_argv = [py]
        if profile == "cprofile":
            tw_argv += ["-m", "cProfile", "-o", str(RESULTS / "traywire.cprof")]
            RESULTS.mkdir(parents=True, exist_ok=True)
        tw_argv += ["-m", "traywire", "serve", "--config", str(cfg), "--port", str(tport)]
        tw_argv += ["--log-level", "warning", "--grace", "2"]
        tw = spawn("traywire", tw_argv, tport, tmp, proxy_cpus)
        cfg_fresh = tmp / "fresh.yaml"  # a request log of its own
        cfg_fresh.write_text(traywire_config(backend.url, s.delay_ms, tmp / "fresh"))
        (tmp / "fresh").mkdir()
        tw_fresh = [py, "-m", "traywire", "serve", "--config", str(cfg_fresh)]
        tw_fresh += ["--log-level", "warning"]
        tw_fresh += ["--grace", "2", "--port"]
        procs.append(tw)
        base: Proc | None = None
        if baseline is not None:
            # another version of traywire (e.g. a worktree of an earlier commit),
            # the same config, measured in the same interleaved rounds
            bport = free_port()
            b_argv = [py, "-m", "traywire", "serve", "--config", str(cfg), "--port", str(bport)]
            b_argv += ["--log-level", "warning", "--grace", "2"]
            base = spawn("baseline", b_argv, bport, tmp, proxy_cpus, src=baseline / "src")
            procs.append(base)
        on: Proc | None = None
        if shared:
            # the same traywire with shared state on, and a second instance
            # sharing it (idle: its exchanges are what the first one reads)
            redis, url = start_redis(tmp)
            procs.append(Proc("redis", url, redis, tmp / "redis.log"))
            scfg = tmp / "shared.yaml"
            scfg.write_text(cfg.read_text() + f'shared_state:\n  url: "{url}"\n')
            for name in ("peer", "shared"):
                port = free_port()
                argv = [py, "-m", "traywire", "serve", "--config", str(scfg), "--port", str(port)]
                argv += ["--log-level", "warning", "--grace", "2"]
                p = spawn(name, argv, port, tmp, proxy_cpus)
                procs.append(p)
                on = p

        async with aiohttp.ClientSession() as probe:
            for p in procs:
                if p.name != "redis":
                    await wait_ready(p, probe)
        proxies = [p for p in (pt, tw, base, on) if p is not None]
        rss_idle = {p.name: p.status("VmRSS") for p in proxies}
        tree_idle = {p.name: proxy_more.tree_rss_kib(p.pid) for p in proxies}

        targets = [
            Target("direct", backend.url, "bench", f"delay-{s.delay_ms:g}"),
            Target("passthrough", pt.url, "bench", f"delay-{s.delay_ms:g}", pt),
            Target("traywire", tw.url, "bench", "bench-slow", tw),
        ]
        if base is not None:
            targets.append(Target("baseline", base.url, "bench", "bench-slow", base))
        if on is not None:
            targets.append(Target("shared", on.url, "bench", "bench-slow", on))
        for t in targets:
            t.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        results: dict[str, Any] = {}
        t0 = time.perf_counter()
        # streamed-event CPU: the pass-through, traywire (and the baseline's)
        scpu = [t for t in targets if t.name in ("passthrough", "traywire", "baseline")]
        try:
            await warm(targets, s.warmup)
            spy = None
            if profile == "py-spy":
                dur = s.rounds * s.latency_n * 3 * 1.5e-3 + s.tp_rounds * s.tp_seconds * 3
                spy = start_profiler(profile, tw, dur)
            if "latency" in only:
                results["latency"] = await bench_latency(targets, s)
                if on is not None:
                    results["shared_interleaved"] = await bench_shared_interleaved(targets, s)
                results["ttfb"] = await bench_ttfb(targets, s)
                results["chunks"] = await bench_chunks(targets, s)
            if "throughput" in only:
                results["throughput"] = await bench_throughput(targets, s)
            trio = targets[:3]
            if "stream-cpu" in only:
                results["stream_cpu"] = await proxy_more.stream_cpu(
                    scpu, s.scpu_rounds, s.scpu_seconds, s.concurrency, s.chunks
                )
            if "big-bodies" in only:
                # the baseline tree too, where there is one: same rounds, same ticker
                results["big_bodies"] = await proxy_more.big_bodies(
                    [t for t in targets if t.name != "shared"],
                    (1, 10),
                    s.big_n,
                    s.big_rounds,
                    lambda t: t.body(False),
                )
            if "many-streams" in only:
                results["many_streams"] = await proxy_more.many_streams(
                    trio[1:], s.many, s.many_rounds
                )
            # what traywire's request log made of all this: a log that dropped
            # records would make traywire look cheaper than it is
            async with aiohttp.ClientSession() as probe, probe.get(tw.url + "/status") as r:
                results["request_log"] = (await r.json()).get("request_log")
            if on is not None:  # it did share: it saw the peer, and was never cut off
                async with aiohttp.ClientSession() as probe, probe.get(on.url + "/status") as r:
                    results["shared_state"] = (await r.json()).get("shared_state")
            if spy is not None:
                _, err = spy.communicate(timeout=120)
                if spy.returncode:
                    print(f"py-spy failed: {err.decode()[-500:]}", file=sys.stderr)
        finally:
            for t in targets:
                if t.session is not None:
                    await t.session.close()
        results["memory_kib"] = {
            p.name: {
                "VmHWM": p.status("VmHWM"),
                "VmRSS_idle": rss_idle.get(p.name, 0),
                "tree_RSS_idle": tree_idle.get(p.name, 0),
            }
            for p in proxies
        }
        results["memory_kib"]["hwm_ratio"] = (
            results["memory_kib"]["traywire"]["VmHWM"]
            / results["memory_kib"]["passthrough"]["VmHWM"]
        )
        if "startup" in only:
            results["startup"] = await proxy_more.startup(
                {
                    "passthrough": lambda: _fresh("passthrough", pt_argv, tmp, proxy_cpus),
                    "traywire": lambda: _fresh("traywire", tw_fresh, tmp, proxy_cpus),
                },
                s.start_rounds,
            )
        results["seconds"] = time.perf_counter() - t0
        for p in procs:
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} died during the run: {p.log.read_text()[-2000:]}")
        results["pinned"] = (
            {"proxies": sorted(proxy_cpus), "client_and_backend": sorted(client_cpus or ())}
            if proxy_cpus
            else None
        )
        return results
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def run_startup_only(
    s: Settings, baseline: Path | None, rounds: int, script: bool
) -> dict[str, Any]:
    """Only the start-up and idle-memory rounds (``--only startup``): the fake
    backend, then fresh pass-through and traywire processes in turns (and the
    baseline tree's traywire, and the ``traywire`` console script, if asked)."""
    tmp = Path(tempfile.mkdtemp(prefix="traywire-bench-"))
    py = sys.executable
    backend: Proc | None = None
    try:
        bport = free_port()
        argv = [py, str(HERE / "fast_backend.py"), "--port", str(bport), "--chunks", str(s.chunks)]
        backend = spawn("backend", argv, bport, tmp, None)
        async with aiohttp.ClientSession() as probe:
            await wait_ready(backend, probe)
        pt_argv = [py, str(HERE / "passthrough.py"), "--upstream", backend.url, "--port"]
        spawners = {"passthrough": lambda: _fresh("passthrough", pt_argv, tmp, None)}
        trees = [("traywire", None)]
        if baseline is not None:
            trees.append(("baseline", baseline / "src"))
        for name, src in trees:
            (tmp / name).mkdir()
            cfg = tmp / f"{name}.yaml"  # a request log of its own
            cfg.write_text(traywire_config(backend.url, s.delay_ms, tmp / name))
            tail = ["serve", "--config", str(cfg), "--log-level", "warning", "--grace", "2"]
            runs = [(name, [py, "-m", "traywire", *tail, "--port"])]
            if script:  # what a user starts: the console script next to the interpreter
                exe = str(Path(py).parent / "traywire")
                runs.append((f"{name}-script", [exe, *tail, "--port"]))
            for label, a in runs:
                spawners[label] = lambda a=a, label=label, src=src: _fresh(  # type: ignore[misc]
                    label, a, tmp, None, src
                )
        await proxy_more.startup(spawners, 1)  # warm-up: bytecode cache, the OS's file cache
        return {"startup": await proxy_more.startup(spawners, rounds)}
    finally:
        if backend is not None:
            backend.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def startup_table(r: dict[str, Any]) -> str:
    st = r["startup"]
    rows = [
        f"{'(medians, min..max)':20}{'ready s':>8}{'':14}{'CPU s to ready':>15}{'':14}"
        f"{'idle tree MiB':>14}"
    ]
    for name, x in st.items():
        sp, c, m = x["ready_s_spread"], x["ready_cpu_s_spread"], x["idle_tree_rss_mib_spread"]
        rows.append(
            f"{name:20}{x['ready_s']:8.3f} ({sp['min']:.3f}..{sp['max']:.3f})"
            f"{x['ready_cpu_s']:9.3f} ({c['min']:.3f}..{c['max']:.3f})"
            f"{x['idle_tree_rss_mib']:9.1f} ({m['min']:.1f}..{m['max']:.1f})"
        )
    tw = st["traywire"]
    rows.append(
        f"targets: start-up {tw['ready_s']:.3f} s (< {STARTUP_TARGET_S}): "
        f"{'MET' if tw['ready_s'] < STARTUP_TARGET_S else 'MISSED'}; idle tree "
        f"{tw['idle_tree_rss_mib']:.1f} MiB (< {MEMORY_TARGET_MIB}): "
        f"{'MET' if tw['idle_tree_rss_mib'] < MEMORY_TARGET_MIB else 'MISSED'}"
    )
    return "\n".join(rows)


def baseline_table(r: dict[str, Any]) -> str:
    """traywire against the baseline tree's, both against the pass-through."""
    L, P, M = r["latency"], r["throughput"], r["memory_kib"]
    mib = 1024
    return "\n".join(
        [
            f"\n{'same run, against the pass-through':40}{'traywire':>12}{'baseline':>12}",
            f"{'added latency p50 ratio':40}{L['added_p50_ratio']:12.2f}"
            f"{L['baseline_added_p50_ratio']:12.2f}",
            f"{'req/s ratio (median of rounds)':40}{P['rps_ratio']:12.2f}"
            f"{P['baseline_rps_ratio']:12.2f}",
            f"{'proxy CPU per request ratio':40}{P['cpu_per_req_ratio']:12.2f}"
            f"{P['baseline_cpu_per_req_ratio']:12.2f}",
            f"{'proxy CPU per request (µs)':40}{P['traywire']['proxy_cpu_us_per_req']:12.0f}"
            f"{P['baseline']['proxy_cpu_us_per_req']:12.0f}",
            f"{'peak RSS VmHWM (MiB)':40}{M['traywire']['VmHWM'] / mib:12.1f}"
            f"{M['baseline']['VmHWM'] / mib:12.1f}",
        ]
    )


def verdicts(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "latency" in r:
        lat = r["latency"]["added_p50_ratio"]
        lat99 = r["latency"]["added_p99_ratio"]
        streamed = all(r["chunks"][n]["streamed"] for n in ("direct", "passthrough", "traywire"))
        out |= {
            "added_latency_ratio_p50": {"value": lat, "target": f"<= {LATENCY_TARGET}",
                                        "met": lat <= LATENCY_TARGET},
            "added_latency_ratio_p99": {"value": lat99, "target": f"<= {LATENCY_TARGET}",
                                        "met": lat99 <= LATENCY_TARGET},
            "chunks_forwarded_as_they_arrive": {"met": streamed},
        }  # fmt: skip
    if "throughput" in r:
        rps = r["throughput"]["rps_ratio"]
        cpu = r["throughput"]["cpu_per_req_ratio"]
        out |= {
            "throughput_ratio": {"value": rps, "target": f">= {THROUGHPUT_TARGET}",
                                 "met": rps >= THROUGHPUT_TARGET},
            "cpu_per_request_ratio": {"value": cpu, "target": f"<= {CPU_TARGET}",
                                      "met": cpu <= CPU_TARGET},
        }  # fmt: skip
    if "stream_cpu" in r:
        v = r["stream_cpu"]["ratio"]
        out["stream_cpu_per_event_ratio"] = {
            "value": v, "target": f"<= {STREAM_CPU_TARGET}", "met": v <= STREAM_CPU_TARGET
        }  # fmt: skip
    if "big_bodies" in r:
        v = r["big_bodies"]["1MiB"]["added_p50_ratio"]
        out["big_body_1mib_added_latency_ratio"] = {
            "value": v, "target": f"<= {BIG_LATENCY_TARGET}", "met": v <= BIG_LATENCY_TARGET
        }  # fmt: skip
        v = r["big_bodies"]["10MiB"]["traywire"]["worst_stall_ms"]
        out["stall_ms_10mib"] = {
            "value": v, "target": f"<= {STALL_TARGET_MS}", "met": v <= STALL_TARGET_MS
        }  # fmt: skip
        # the ticker's stall holds the machine's (client, backend, 2 shared
        # cores) as well as the proxy's: what traywire adds beyond the
        # pass-through's, same round, is the proxy's own part of it
        v = r["big_bodies"]["10MiB"]["stall_beyond_passthrough_ms"]["traywire"]["median"]
        out["stall_ms_10mib_beyond_passthrough"] = {
            "value": v, "target": f"<= {STALL_TARGET_MS}", "met": v <= STALL_TARGET_MS
        }  # fmt: skip
    if "many_streams" in r:
        m = r["many_streams"]
        ok = m["traywire"]["failed"] == 0
        out["many_streams_complete"] = {"value": m["traywire"]["failed"], "target": "0 failed",
                                        "met": ok}  # fmt: skip
        v = m["traywire"]["ttfb_p99_ms"] / m["passthrough"]["ttfb_p99_ms"]
        out["many_streams_ttfb_p99_ratio"] = {"value": v, "target": "<= 1.0", "met": v <= 1.0}
    if "startup" in r:
        v = r["startup"]["traywire"]["ready_s"]
        out["startup_s"] = {"value": v, "target": f"< {STARTUP_TARGET_S}",
                            "met": v < STARTUP_TARGET_S}  # fmt: skip
        v = r["startup"]["traywire"]["idle_tree_rss_mib"]
        out["idle_tree_mib"] = {"value": v, "target": f"< {MEMORY_TARGET_MIB}",
                                "met": v < MEMORY_TARGET_MIB}  # fmt: skip
    return out


def table(r: dict[str, Any]) -> str:
    rows = [f"{'':34}{'direct':>12}{'passthrough':>13}{'traywire':>12}{'tw/pt':>9}"]
    if "latency" in r and "throughput" in r:
        rows.extend(main_rows(r))
    rows.extend(more_rows(r))
    v = r["verdicts"]
    rows.append("")
    rows.append("targets: traywire against the pass-through in this run")
    for key, x in v.items():
        value = x.get("value")
        shown = (
            "" if value is None else f"{value:.2f} " if isinstance(value, float) else f"{value} "
        )
        rows.append(f"  {key:36} {shown}({x.get('target', '')}): {'MET' if x['met'] else 'MISSED'}")
    return "\n".join(rows)


def main_rows(r: dict[str, Any]) -> list[str]:
    """Latency, TTFB, chunk timing, throughput and memory rows."""
    L, T, C, P = r["latency"], r["ttfb"], r["chunks"], r["throughput"]
    names = ("direct", "passthrough", "traywire")
    widths = (12, 13, 12)
    rows: list[str] = []

    def row(label: str, vals: Sequence[float | None], ratio: float | None, fmt: str) -> None:
        cells = "".join(
            f"{'-' if v is None else format(v, fmt):>{w}}"
            for v, w in zip(vals, widths, strict=True)
        )
        rows.append(f"{label:34}{cells}{'' if ratio is None else format(ratio, '.2f'):>9}")

    row("latency p50 (ms)", [L[n]["p50_ms"] for n in names], None, ".3f")
    row("latency p99 (ms)", [L[n]["p99_ms"] for n in names], None, ".3f")
    a50, a99 = L["added_p50_ms"], L["added_p99_ms"]
    row("added latency p50 (ms)", [None, a50["passthrough"], a50["traywire"]],
        L["added_p50_ratio"], ".3f")  # fmt: skip
    row("added latency p99 (ms)", [None, a99["passthrough"], a99["traywire"]],
        L["added_p99_ratio"], ".3f")  # fmt: skip
    row("stream TTFB p50 (ms)", [T[n]["ttfb_p50_ms"] for n in names], None, ".3f")
    at = T["added_ttfb_p50_ms"]
    row("added TTFB p50 (ms)", [None, at["passthrough"], at["traywire"]],
        T["added_ttfb_p50_ratio"], ".3f")  # fmt: skip
    row(f"{C['events']}-event stream p50 (ms)", [T[n]["stream_p50_ms"] for n in names], None,
        ".3f")  # fmt: skip
    row(f"chunk gap p50 (ms, backend {C['delay_ms']:g})", [C[n]["gap_p50_ms"] for n in names],
        None, ".1f")  # fmt: skip
    row("chunk gap min / max (ms)", [C[n]["gap_min_ms"] for n in names], None, ".1f")
    row("", [C[n]["gap_max_ms"] for n in names], None, ".1f")
    row("first event at (ms)", [C[n]["first_event_ms"] for n in names], None, ".1f")
    rows.append(
        f"{'streamed as they arrive':34}"
        + "".join(
            f"{'yes' if C[n]['streamed'] else 'NO':>{w}}"
            for n, w in zip(names, widths, strict=True)
        )
    )
    row(f"req/s at {P['concurrency']} clients", [P[n]["rps"] for n in names], P["rps_ratio"],
        ".0f")  # fmt: skip
    row("proxy CPU per request (µs)",
        [None, P["passthrough"]["proxy_cpu_us_per_req"], P["traywire"]["proxy_cpu_us_per_req"]],
        P["cpu_per_req_ratio"], ".0f")  # fmt: skip
    row("  of which child processes (µs)",
        [None, P["passthrough"].get("proxy_children_cpu_us_per_req"),
         P["traywire"].get("proxy_children_cpu_us_per_req")], None, ".1f")  # fmt: skip
    row("proxy CPU busy (share of 1 core)",
        [None, P["passthrough"]["proxy_cpu_share"], P["traywire"]["proxy_cpu_share"]], None,
        ".2f")  # fmt: skip
    M = r["memory_kib"]
    row("peak RSS VmHWM (MiB)", [None, M["passthrough"]["VmHWM"] / 1024,
        M["traywire"]["VmHWM"] / 1024], M["hwm_ratio"], ".1f")  # fmt: skip
    row("idle RSS after start (MiB)", [None, M["passthrough"]["VmRSS_idle"] / 1024,
        M["traywire"]["VmRSS_idle"] / 1024], None, ".1f")  # fmt: skip
    lr, pr = L["added_p50_ratio_per_round"], P["rps_ratio_per_round"]
    rows.append(
        f"per-round spread: added-latency ratio {lr['min']:.2f}..{lr['max']:.2f} "
        f"(median {lr['median']:.2f}); rps ratio {pr['min']:.2f}..{pr['max']:.2f} "
        f"(median of {P['rounds']} paired rounds, the tw/pt figure; pooled "
        f"{P['rps_ratio_pooled']:.2f})"
    )
    rl = r.get("request_log") or {}
    if rl.get("open"):
        rows.append(
            f"traywire's request log: {rl['written']} written, {rl['dropped']} dropped, "
            f"{rl['failed']} failed, {rl['queued'] + rl['writing']} still queued"
        )
    return rows


def more_rows(r: dict[str, Any]) -> list[str]:
    """The big-body, stream-CPU, 1,000-stream and start-up rows."""
    rows: list[str] = []
    if "stream_cpu" in r:
        c = r["stream_cpu"]
        sp = c["ratio_per_round"]
        rows.append(
            f"{'proxy CPU per streamed event (µs)':34}{'':>12}"
            f"{c['passthrough']['cpu_us_per_event']:13.1f}{c['traywire']['cpu_us_per_event']:12.1f}"
            f"{c['ratio']:9.2f}   rounds {sp['min']:.2f}..{sp['max']:.2f}"
        )
        if "baseline" in c:
            sp = c["baseline_ratio_per_round"]
            rows.append(
                f"{'  the baseline tree (µs; /pt)':34}{'':>25}"
                f"{c['baseline']['cpu_us_per_event']:12.1f}{c['baseline_ratio']:9.2f}"
                f"   rounds {sp['min']:.2f}..{sp['max']:.2f}"
            )
    for size, b in r.get("big_bodies", {}).items():
        a, sp = b["added_p50_ms"], b["added_ratio_per_round"]
        rows.append(
            f"{size + ' request, added p50 (ms)':34}{'':>12}{a['passthrough']:13.2f}"
            f"{a['traywire']:12.2f}{b['added_p50_ratio']:9.2f}   rounds "
            f"{sp['min']:.2f}..{sp['max']:.2f}"
        )
        rows.append(
            f"{'  worst ticker stall meanwhile (ms)':34}{b['direct']['worst_stall_ms']:12.1f}"
            f"{b['passthrough']['worst_stall_ms']:13.1f}{b['traywire']['worst_stall_ms']:12.1f}"
            f"   (median {b['direct']['stall_p50_ms']:.1f} / "
            f"{b['passthrough']['stall_p50_ms']:.1f} / {b['traywire']['stall_p50_ms']:.1f})"
        )
        bd, bp = b["stall_beyond_direct_ms"], b["stall_beyond_passthrough_ms"]["traywire"]
        rows.append(
            f"{'  beyond direct, median of rounds':34}{'':>12}"
            f"{bd['passthrough']['median']:13.1f}{bd['traywire']['median']:12.1f}"
            f"   rounds {bd['traywire']['min']:.1f}..{bd['traywire']['max']:.1f}"
        )
        rows.append(
            f"{'  traywire beyond pass-through':34}{'':>12}{'':>13}{bp['median']:12.1f}"
            f"   rounds {bp['min']:.1f}..{bp['max']:.1f}"
        )
        if "baseline" in b:
            sp = b["baseline_added_ratio_per_round"]
            rows.append(
                f"{'  baseline: added p50 (ms), stall':34}{'':>12}{'':>13}"
                f"{b['added_p50_ms']['baseline']:12.2f}{b['baseline_added_p50_ratio']:9.2f}"
                f"   rounds {sp['min']:.2f}..{sp['max']:.2f}; worst stall "
                f"{b['baseline']['worst_stall_ms']:.1f}, beyond pass-through "
                f"{b['stall_beyond_passthrough_ms']['baseline']['median']:.1f}"
            )
    m = r.get("many_streams")
    if m:
        n, k = r["meta"]["settings"]["many"], m["traywire"]["streams"]
        rows.append(
            f"{f'{n} streams at once, completed of {k}':34}{'':>12}"
            f"{m['passthrough']['completed']:13d}{m['traywire']['completed']:12d}"
        )
        rows.append(
            f"{'  TTFB p50 / p99 (ms)':34}{'':>12}"
            f"{m['passthrough']['ttfb_p50_ms']:6.0f} /{m['passthrough']['ttfb_p99_ms']:5.0f}"
            f"{m['traywire']['ttfb_p50_ms']:5.0f} /{m['traywire']['ttfb_p99_ms']:5.0f}"
        )
        if m["passthrough"]["failed"] or m["traywire"]["failed"]:
            rows.append(f"  failures: {m['passthrough']['failures']} / {m['traywire']['failures']}")
    st = r.get("startup")
    if st:
        pt, tw = st["passthrough"], st["traywire"]
        rows.append(
            f"{'start-up to a served request (s)':34}{'':>12}{pt['ready_s']:13.3f}"
            f"{tw['ready_s']:12.3f}   rounds {tw['ready_s_spread']['min']:.3f}.."
            f"{tw['ready_s_spread']['max']:.3f}"
        )
        rows.append(
            f"{'idle RSS, whole process tree (MiB)':34}{'':>12}{pt['idle_tree_rss_mib']:13.1f}"
            f"{tw['idle_tree_rss_mib']:12.1f}"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds, for smoke runs")
    ap.add_argument(
        "--pin",
        action="store_true",
        help="pin the proxies to the last CPU, client and backend to the others",
    )
    ap.add_argument(
        "--profile",
        choices=["py-spy", "cprofile"],
        help="profile traywire: py-spy samples it into bench/results/"
        "traywire.pyspy.txt; cprofile runs it under cProfile "
        "(bench/results/traywire.cprof, slows it: figures then not comparable)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also run the traywire of another source tree (e.g. a git worktree of an "
        "earlier commit) in the same rounds, and compare",
    )
    ap.add_argument(
        "--shared-state",
        action="store_true",
        help="also run traywire with shared state on (a redis-server of the run's own and a "
        "second instance sharing it) in the same rounds, and compare on vs off",
    )
    ap.add_argument(
        "--only",
        type=lambda v: frozenset(v.split(",")),
        default=PARTS,
        metavar="PART[,PART]",
        help=f"run only these parts (default all): {', '.join(sorted(PARTS))}; "
        "startup alone: start-up to a served request and idle memory of the process tree "
        "(with --baseline, the baseline tree's too)",
    )
    ap.add_argument(
        "--big-rounds",
        type=int,
        metavar="N",
        help="big-body rounds (default 3, --quick 1; 3 bodies per size and target each)",
    )
    ap.add_argument(
        "--start-rounds", type=int, metavar="N", help="fresh processes per target (start-up)"
    )
    ap.add_argument(
        "--script",
        action="store_true",
        help="--only startup: also start the `traywire` console script (what a user runs)",
    )
    ap.add_argument(
        "--compile-each-start",
        action="store_true",
        help="no bytecode cache for the processes it starts when the environment says "
        "PYTHONDONTWRITEBYTECODE (each start compiles every module's source, as before)",
    )
    ap.add_argument("--output", type=Path, help="default: bench/results/proxy.json "
                    "(startup.json with --only startup)")  # fmt: skip
    args = ap.parse_args(argv)  # fmt: skip
    if args.only - PARTS:
        ap.error(f"--only: unknown part(s) {', '.join(sorted(args.only - PARTS))}")
    s = QUICK if args.quick else DEFAULT
    global COMPILE_EACH_START
    COMPILE_EACH_START = args.compile_each_start
    if args.start_rounds is not None:
        s.start_rounds = max(1, args.start_rounds)
    if args.big_rounds:
        s = dataclasses.replace(s, big_rounds=args.big_rounds)
    if args.only == {"startup"}:
        r = asyncio.run(run_startup_only(s, args.baseline, s.start_rounds, args.script))
        r["meta"] = {"mode": "startup", "rounds": s.start_rounds, "loadavg": os.getloadavg(),
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "compile_each_start": COMPILE_EACH_START}  # fmt: skip
        print(startup_table(r))
        out = args.output or RESULTS / "startup.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=2, default=float) + "\n")
        print(f"\nwritten: {out}")
        return 0
    args.output = args.output or RESULTS / "proxy.json"
    load0 = os.getloadavg()
    r = asyncio.run(run(s, args.pin, args.profile, args.baseline, args.shared_state, args.only))
    r["verdicts"] = verdicts(r)
    r["meta"] = {
        "mode": "quick" if args.quick else "default",
        "settings": s.__dict__,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "cpus": os.cpu_count(),
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "profile": args.profile,
        "only": sorted(args.only),
    }
    print(table(r))
    if args.baseline is not None and "latency" in r and "throughput" in r:
        print(baseline_table(r))
    if args.shared_state:
        print(shared_table(r))
        st = r.get("shared_state") or {}
        print(f"shared state at the end: {st.get('state')}, instances {st.get('instances')}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(r, indent=2, default=float) + "\n")
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
