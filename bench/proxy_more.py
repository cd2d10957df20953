"""The rest of ``bench_proxy.py``'s measurements (issue 17): big bodies, a
thousand streams at once, streamed-chunk CPU, start-up and memory. Each runs
the pass-through and traywire in the same interleaved rounds, as the rest.

- big bodies: sequential chat requests of 1 MB (and 10 MB) through each
  target, the added latency against direct; meanwhile a *ticker* (a process
  of its own, so the client's sending of the body does not delay it) sends
  small requests one after another through the same proxy: its slowest answer
  during the big request, less its median when idle, is the stall. That
  stall is not the proxy's alone: the backend receiving the body, and on a
  2-core machine the client sending it and the proxy's own threads, delay
  the ticker too (the pass-through's stall at 10 MB is tens of ms, and
  direct's is not zero). So each round also gives each proxy's stall beyond
  direct's (same round: what the proxy added) and traywire's beyond the
  pass-through's (what traywire added to what any aiohttp proxy costs);
- 1,000 streams: that many clients connect and ask for a stream at once;
  completed streams, failures (resets, refusals), TTFB p50/p99;
- streamed-chunk CPU: like the throughput rounds, streams instead of plain
  answers; the proxy's CPU divided by the events it relayed;
- start-up: a fresh process until it has served a chat request (polling
  every 2 ms); memory: VmRSS of the process and every descendant, idle.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

_JSON = {"Content-Type": "application/json"}


def _pct(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def _spread(xs: Sequence[float]) -> dict[str, float]:
    if not xs:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def big_body(model: str, mib: float) -> bytes:
    """A chat request of about ``mib`` MiB: many ordinary turns."""
    turn = "The quarterly numbers show a steady rise in revenue across regions. " * 14
    n = max(1, int(mib * (1 << 20)) // (len(turn) + 40))
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": turn} for i in range(n)]
    messages.append({"role": "user", "content": "Summarise the above in one sentence."})
    body = {"model": model, "messages": messages, "max_tokens": 32, "stream": False}
    return json.dumps(body, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- tree


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, KiB."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo.extend(c for c, pp in parents.items() if pp == p and c not in tree)
    total = 0
    for p in tree:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# --------------------------------------------------------------------------- big bodies


async def _ticker(url: str, body: bytes, stop: asyncio.Event) -> list[tuple[float, float]]:
    """(start, latency) of small requests sent one after another until ``stop``."""
    out: list[tuple[float, float]] = []
    async with aiohttp.ClientSession() as session:
        while not stop.is_set() and len(out) < 100_000:
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=_JSON) as r:
                await r.read()
            out.append((t0, time.perf_counter() - t0))
    return out


class Ticker:
    """`_ticker` in a child process (``python proxy_more.py URL``, the body on
    stdin's first line): started, then asked for its ticks. ``time.perf_counter``
    is the system's monotonic clock, the same in both processes."""

    def __init__(self, url: str, body: bytes) -> None:
        self.p = subprocess.Popen(
            [sys.executable, __file__, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(body + b"\n")
        self.p.stdin.flush()
        self.p.stdout.readline()  # "ticking"

    def ticks(self) -> list[tuple[float, float]]:
        out, _ = self.p.communicate(b"stop\n", timeout=60)
        return [(a, b) for a, b in json.loads(out)]


async def _tick_main(url: str) -> None:
    loop = asyncio.get_running_loop()
    body = (await loop.run_in_executor(None, sys.stdin.buffer.readline)).rstrip(b"\n")
    stop = asyncio.Event()
    task = asyncio.ensure_future(_ticker(url, body, stop))
    sys.stdout.write("ticking\n")
    sys.stdout.flush()
    await loop.run_in_executor(None, sys.stdin.buffer.readline)
    stop.set()
    sys.stdout.write(json.dumps(await task))


def _beyond(rounds: Sequence[dict[str, float]], name: str, other: str) -> dict[str, float]:
    """Spread over rounds of ``name``'s worst stall less ``other``'s, ms."""
    return _spread([(w[name] - w[other]) * 1e3 for w in rounds if name in w and other in w])


async def big_bodies(
    targets: Sequence[Any],
    sizes: Sequence[float],
    n: int,
    rounds: int,
    small: Callable[[Any], bytes],
) -> dict[str, Any]:
    """Added latency of ``n`` sequential big requests per size, per target,
    and the ticker's worst answer while each was handled."""
    out: dict[str, Any] = {}
    for mib in sizes:
        lat: dict[str, list[float]] = {t.name: [] for t in targets}
        stall: dict[str, list[float]] = {t.name: [] for t in targets}
        idle: dict[str, list[float]] = {t.name: [] for t in targets}
        per_round: list[dict[str, float]] = []
        round_stall: list[dict[str, float]] = []  # worst stall per target, per round
        for i in range(rounds):
            medians: dict[str, float] = {}
            worst: dict[str, float] = {}
            for t in targets[i % len(targets) :] + targets[: i % len(targets)]:
                url = t.url + "/v1/chat/completions"
                body = big_body(t.fast_model, mib)
                async with aiohttp.ClientSession() as big:
                    # the ticker alone first: its usual answer time
                    ticker = Ticker(url, small(t))
                    await asyncio.sleep(0.3)
                    quiet = [x for _, x in ticker.ticks()]
                    idle[t.name].append(statistics.median(quiet))
                    xs = []
                    for _ in range(n):
                        ticker = Ticker(url, small(t))
                        await asyncio.sleep(0.05)
                        t0 = time.perf_counter()
                        try:
                            async with big.post(url, data=body, headers=_JSON) as r:
                                answer = await r.read()
                        finally:
                            t1 = time.perf_counter()
                            ticks = ticker.ticks()
                        if r.status != 200:
                            raise RuntimeError(f"{t.name}: HTTP {r.status}: {answer[:300]!r}")
                        xs.append(t1 - t0)
                        during = [x for s, x in ticks if s + x >= t0 and s <= t1]
                        if during:
                            stall[t.name].append(max(during) - statistics.median(quiet))
                            worst[t.name] = max(worst.get(t.name, 0.0), stall[t.name][-1])
                lat[t.name].extend(xs)
                medians[t.name] = statistics.median(xs)
            per_round.append(medians)
            round_stall.append(worst)
        res: dict[str, Any] = {}
        for name in lat:
            res[name] = {
                "p50_ms": _pct(lat[name], 50) * 1e3,
                "worst_stall_ms": max(stall[name], default=float("nan")) * 1e3,
                "stall_p50_ms": _pct(stall[name], 50) * 1e3,
                "tick_idle_ms": statistics.median(idle[name]) * 1e3,
            }
        d = res["direct"]["p50_ms"]
        proxies = [p for p in lat if p != "direct"]
        res["added_p50_ms"] = {p: res[p]["p50_ms"] - d for p in proxies}
        add_pt = res["added_p50_ms"]["passthrough"]
        for p in proxies:
            if p == "passthrough":
                continue
            key = "added_p50_ratio" if p == "traywire" else f"{p}_added_p50_ratio"
            res[key] = res["added_p50_ms"][p] / add_pt if add_pt > 0 else float("inf")
            key = "added_ratio_per_round" if p == "traywire" else f"{p}_added_ratio_per_round"
            res[key] = _spread(
                [
                    (m[p] - m["direct"]) / (m["passthrough"] - m["direct"])
                    for m in per_round
                    if m["passthrough"] > m["direct"]
                ]
            )
        # each round's worst stall beyond direct's and beyond the pass-through's (ms)
        res["stall_beyond_direct_ms"] = {p: _beyond(round_stall, p, "direct") for p in proxies}
        res["stall_beyond_passthrough_ms"] = {
            p: _beyond(round_stall, p, "passthrough") for p in proxies if p != "passthrough"
        }
        out[f"{mib:g}MiB"] = res
    return out


# --------------------------------------------------------------------------- many streams


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, t0: float) -> float:
    async with session.post(url, data=body, headers=_JSON) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}")
        first = float("nan")
        data = b""
        while True:
            chunk = await r.content.readany()
            if not chunk:
                break
            if first != first:
                first = time.perf_counter() - t0
            data += chunk
        if not data.rstrip().endswith(b"data: [DONE]"):
            raise RuntimeError("stream ended early")
        return first


async def many_streams(targets: Sequence[Any], n: int, rounds: int) -> dict[str, Any]:
    """``n`` clients ask for a stream at the same moment, per target and round."""
    ttfb: dict[str, list[float]] = {t.name: [] for t in targets}
    failed: dict[str, int] = {t.name: 0 for t in targets}
    kinds: dict[str, dict[str, int]] = {t.name: {} for t in targets}
    seconds: dict[str, list[float]] = {t.name: [] for t in targets}
    for i in range(rounds):
        for t in targets[i % len(targets) :] + targets[: i % len(targets)]:
            url, body = t.url + "/v1/chat/completions", t.body(True)
            conn = aiohttp.TCPConnector(limit=0, force_close=True)
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
                t0 = time.perf_counter()
                got = await asyncio.gather(
                    *(_one(s, url, body, t0) for _ in range(n)), return_exceptions=True
                )
                seconds[t.name].append(time.perf_counter() - t0)
            for g in got:
                if isinstance(g, BaseException):
                    failed[t.name] += 1
                    k = type(g).__name__
                    kinds[t.name][k] = kinds[t.name].get(k, 0) + 1
                else:
                    ttfb[t.name].append(g)
            await asyncio.sleep(0.5)  # let the sockets close
    return {
        t.name: {
            "streams": n * rounds,
            "completed": len(ttfb[t.name]),
            "failed": failed[t.name],
            "failures": kinds[t.name],
            "ttfb_p50_ms": _pct(ttfb[t.name], 50) * 1e3,
            "ttfb_p99_ms": _pct(ttfb[t.name], 99) * 1e3,
            "all_done_s": statistics.median(seconds[t.name]),
        }
        for t in targets
    }


# --------------------------------------------------------------------------- stream CPU


async def _stream_round(t: Any, seconds: float, concurrency: int) -> tuple[float, int]:
    """(proxy CPU seconds, streams done) for ``seconds`` of streams at ``concurrency``."""
    url, body = t.url + "/v1/chat/completions", t.body(True)
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline and done < 1_000_000:
                async with s.post(url, data=body, headers=_JSON) as r:
                    await r.read()
                done += 1

        cpu0 = t.proc.cpu()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return t.proc.cpu() - cpu0, done


async def stream_cpu(
    targets: Sequence[Any], rounds: int, seconds: float, concurrency: int, events: int
) -> dict[str, Any]:
    """Proxy CPU per relayed SSE event, streams at ``concurrency`` for ``seconds``."""
    acc = {t.name: [0.0, 0] for t in targets}
    per_round: list[dict[str, float]] = []
    for i in range(rounds):
        row: dict[str, float] = {}
        for t in targets[i % len(targets) :] + targets[: i % len(targets)]:
            cpu, done = await _stream_round(t, seconds, concurrency)
            acc[t.name][0] += cpu
            acc[t.name][1] += done * (events + 1)
            row[t.name] = cpu / max(1, done * (events + 1))
        per_round.append(row)
    out: dict[str, Any] = {
        t.name: {"cpu_us_per_event": acc[t.name][0] / max(1, acc[t.name][1]) * 1e6,
                 "events": acc[t.name][1]}
        for t in targets
    }  # fmt: skip
    out["ratio"] = out["traywire"]["cpu_us_per_event"] / out["passthrough"]["cpu_us_per_event"]
    out["ratio_per_round"] = _spread([r["traywire"] / r["passthrough"] for r in per_round])
    if "baseline" in out:  # another tree of traywire, in the same rounds
        base = out["baseline"]["cpu_us_per_event"]
        out["baseline_ratio"] = base / out["passthrough"]["cpu_us_per_event"]
        out["baseline_ratio_per_round"] = _spread(
            [r["baseline"] / r["passthrough"] for r in per_round]
        )
    return out


# --------------------------------------------------------------------------- start-up


async def _served(url: str, body: bytes, proc: subprocess.Popen[bytes], limit: float) -> float:
    """Seconds from now until ``url`` answers a chat request with 200."""
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        while time.perf_counter() - t0 < limit:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode} before serving")
            try:
                async with s.post(url, data=body, headers=_JSON) as r:
                    await r.read()
                    if r.status == 200:
                        return time.perf_counter() - t0
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.002)
    raise RuntimeError(f"not serving after {limit}s")


async def startup(
    spawners: dict[str, Callable[[], tuple[Any, str, bytes]]], rounds: int
) -> dict[str, Any]:
    """Per target: seconds from spawn to its first served chat request, the
    CPU seconds the process had used by then (user + system, all threads: on a
    busy shared machine a steadier figure than the wall clock), and the
    process tree's VmRSS once idle (1 s later)."""
    times: dict[str, list[float]] = {n: [] for n in spawners}
    cpu: dict[str, list[float]] = {n: [] for n in spawners}
    rss: dict[str, list[int]] = {n: [] for n in spawners}
    names = list(spawners)
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            proc, url, body = spawners[name]()
            try:
                # the clock starts with the spawn (Popen returned just now)
                times[name].append(await _served(url, body, proc.popen, 30) + proc.spawn_s)
                cpu[name].append(proc.cpu())
                await asyncio.sleep(1.0)
                rss[name].append(tree_rss_kib(proc.pid))
            finally:
                proc.stop()
    out: dict[str, Any] = {
        n: {
            "ready_s": statistics.median(times[n]),
            "ready_s_spread": _spread(times[n]),
            "ready_cpu_s": statistics.median(cpu[n]),
            "ready_cpu_s_spread": _spread(cpu[n]),
            "idle_tree_rss_mib": statistics.median(rss[n]) / 1024,
            "idle_tree_rss_mib_spread": _spread([x / 1024 for x in rss[n]]),
        }
        for n in names
    }
    return out


if __name__ == "__main__":  # the ticker's child process
    asyncio.run(_tick_main(sys.argv[1]))
