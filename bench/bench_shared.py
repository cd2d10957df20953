"""Shared state (Redis): how stale the other instances' view is, and what an
exchange costs.

    .venv/bin/python bench/bench_shared.py [--trials 100] [--interval 0.05]

A redis-server of its own (Debian package redis-server) on a free loopback
port, and two traywire runtimes sharing it, each with its own background
exchange (in one process, one event loop: what each instance does is the
same as in two). Figures:

- staleness: a request begins on one instance (its in-flight count goes up);
  how long until the other's router snapshot counts it. Each trial starts at
  a random moment of the exchanges' cycle; p50 / p99 / max over the trials
  (the README's bound: two intervals plus a round trip);
- one exchange (one script call: publish this instance's counts, read the
  others'), timed on its own, the background tasks stopped: wall time and
  this process's CPU time, and the share of a core the background task takes
  at the configured interval.

The proxy's request path itself is measured with shared state on and off by
``bench/bench_proxy.py --shared-state``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from traywire import config
from traywire.proxy.runtime import Runtime

CONFIG = """\
extends: none
log: {{enabled: false}}
backends:
  gpu: {{kind: openai, url: "http://127.0.0.1:9/v1", location: local, capacity: 8}}
  cloud: {{kind: openai, url: "http://127.0.0.1:9/v1", location: cloud, capacity: 8}}
models:
  m1: {{backend: gpu, upstream: a, params_b: 7, tier: local, capabilities: [chat], context: 8192}}
  m2: {{backend: cloud, upstream: b, params_b: 70, tier: cloud_standard, capabilities: [chat],
        context: 8192}}
shared_state: {{url: "{url}", interval: {interval}}}
"""


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def main_async(trials: int, interval: float, url: str, tmp: Path) -> None:
    path = tmp / "c.yaml"
    path.write_text(CONFIG.format(url=url, interval=interval))
    cfg = config.load(path)
    one, two = Runtime(cfg, keys={}), Runtime(cfg, keys={})
    await one.start(resolve_keys=False, probes=False)
    await two.start(resolve_keys=False, probes=False)
    try:
        while two.shared is None or len(two.shared.view.instances) < 1:
            await asyncio.sleep(0.01)
        delays: list[float] = []
        for _ in range(trials):
            await asyncio.sleep(random.uniform(0, 2 * interval))  # a random phase
            one.health.begin("gpu")
            t0 = time.perf_counter()
            while two.snapshot().backends["gpu"].in_flight != 1:
                await asyncio.sleep(0.0005)
            delays.append(time.perf_counter() - t0)
            one.health.end("gpu")
            while two.snapshot().backends["gpu"].in_flight != 0:
                await asyncio.sleep(0.001)
        ms = [d * 1e3 for d in delays]
        print(f"staleness over {trials} trials, interval {interval * 1e3:g} ms:")
        print(
            f"  p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms "
            f"(bound 2 x interval + a round trip: {2 * interval * 1e3:g} ms + RTT)"
        )
        # one exchange alone: the other instance stopped (its entries stay until
        # its lease ends), this one's task too, so the CPU time is the exchange's
        assert two.shared is not None and one.shared is not None
        await two.shared.close()
        shared = one.shared
        task = shared._task
        assert task is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        walls: list[float] = []
        cpus: list[float] = []
        for _ in range(300):
            c0, w0 = time.process_time(), time.perf_counter()
            await shared._exchange()
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
        wall_us = statistics.median(walls) * 1e6
        cpu_us = statistics.fmean(cpus) * 1e6
        print(f"one exchange: {wall_us:.0f} µs wall (median), {cpu_us:.0f} µs CPU (mean)")
        print(f"  background task: {cpu_us / (interval * 1e6) * 100:.2f}% of a core per instance")
    finally:
        await one.close()
        await two.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    exe = shutil.which("redis-server")
    if exe is None:
        print("needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="traywire-bench-shared-"))
    argv = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    redis = subprocess.Popen(
        [*argv, "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        asyncio.run(main_async(args.trials, args.interval, f"redis://127.0.0.1:{port}/0", tmp))
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
