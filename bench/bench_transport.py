"""Upstream client cost: traywire's `transport.Pool` against aiohttp's ClientSession.

    .venv/bin/python bench/bench_transport.py [--n 3000] [--rounds 5]

Starts ``bench/fast_backend.py`` in its own process and, in this process on
uvloop, sends sequential keep-alive POSTs of a small chat body and reads each
whole answer, with:

- aiohttp: one ``aiohttp.ClientSession`` set up as traywire set up its own
  before (pooled connector, no cookie jar, per-request timeout);
- transport: ``traywire.proxy.transport.Pool``, as the request path uses it now;

interleaved in rounds. Reported per request: this process's CPU time
(``time.process_time``; the backend's is not counted) and the wall-clock
round trip, medians over rounds, and the ratio transport / aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from bench_proxy import free_port  # noqa: E402

from traywire.app import new_event_loop  # noqa: E402
from traywire.proxy.transport import Pool  # noqa: E402

BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}
).encode()


async def measure(n: int, rounds: int, base: str) -> dict[str, dict[str, float]]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60),
        auto_decompress=True,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    timeout = aiohttp.ClientTimeout(total=600, sock_connect=3)
    pool = Pool()
    json_headers = {"Content-Type": "application/json"}
    pool_headers = (("Content-Type", "application/json"),)

    async def with_aiohttp() -> bytes:
        async with session.post(
            base + "/v1/chat/completions", data=BODY, headers=json_headers, timeout=timeout
        ) as r:
            return await r.read()

    async def with_transport() -> bytes:
        r = await pool.request(
            "POST", base + "/v1", "/chat/completions", pool_headers, BODY, connect_timeout=3
        )
        return await r.read()

    clients = {"aiohttp": with_aiohttp, "transport": with_transport}
    cpu: dict[str, list[float]] = {k: [] for k in clients}
    wall: dict[str, list[float]] = {k: [] for k in clients}
    try:
        for fn in clients.values():  # warm-up: connections, caches
            for _ in range(300):
                assert b"choices" in await fn()
        for r in range(rounds):
            names = list(clients)
            if r % 2:
                names.reverse()
            for name in names:
                fn = clients[name]
                c0, t0 = time.process_time(), time.perf_counter()
                for _ in range(n):
                    await fn()
                c1, t1 = time.process_time(), time.perf_counter()
                cpu[name].append((c1 - c0) / n * 1e6)
                wall[name].append((t1 - t0) / n * 1e6)
    finally:
        await session.close()
        await pool.close()
    return {
        name: {"cpu_us": statistics.median(cpu[name]), "wall_us": statistics.median(wall[name])}
        for name in clients
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="requests per client per round")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, str(HERE / "fast_backend.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or backend.poll() is not None:
                    raise SystemExit("the fast backend did not start") from None
                time.sleep(0.05)
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            res = runner.run(measure(a.n, a.rounds, base))
    finally:
        backend.terminate()
        backend.wait(10)
    a_, t_ = res["aiohttp"], res["transport"]
    print(f"{'per request (median of rounds)':34}{'aiohttp':>10}{'transport':>11}{'ratio':>8}")
    print(
        f"{'client CPU (µs)':34}{a_['cpu_us']:>10.1f}{t_['cpu_us']:>11.1f}"
        f"{t_['cpu_us'] / a_['cpu_us']:>8.2f}"
    )
    print(
        f"{'round trip (µs)':34}{a_['wall_us']:>10.1f}{t_['wall_us']:>11.1f}"
        f"{t_['wall_us'] / a_['wall_us']:>8.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
