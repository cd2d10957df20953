"""Big request bodies in-process: what checking one costs, and how long it
holds up the event loop (no HTTP, no other process).

    .venv/bin/python bench/bench_body.py                      # this tree
    .venv/bin/python bench/bench_body.py --baseline /work/base   # and another, same run

For chat bodies of 1, 2, 4 and 10 MiB (`proxy_more.big_body`: ~1,000
ordinary turns per MiB), per source tree:

- ``check``: the body's bytes to the checked request (`endpoints._checked`:
  decode, nesting and surrogate limits, per-message checks, what the router
  reads), on this thread, ms per MiB;
- ``decode``: msgspec's decode alone, the floor, ms per MiB;
- ``handled`` and ``loop lag``: the proxy's own way (`endpoints._check`: here
  or on a worker thread past ``BIG_BODY``) inside a uvloop loop on which a
  ticker sleeps 0.2 ms over and over; the time to handle the body, and the
  ticker's worst lateness meanwhile: how long every other stream of the
  proxy waited (uvloop's timers are millisecond-grained: ~1 ms of any
  figure is the timer's).

Each tree runs in a child process of its own (its ``src`` first on the path),
the trees alternating round by round; figures are medians of the rounds, with
their min..max. The machine's other load shows in the spread.
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
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES = (1, 2, 4, 10)


def _child(src: str, mib: float, reps: int) -> dict[str, Any]:
    """One round for one tree and size, in this (child) process."""
    sys.path.insert(0, src)
    import uvloop
    from proxy_more import big_body

    from traywire import fastjson, threads
    from traywire.core import request as inbound
    from traywire.proxy import endpoints

    raw = big_body("bench", mib)

    def parse(b: dict[str, Any]) -> inbound.Inbound:
        return inbound.parse("openai", "chat", b)

    def timed(fn: Any) -> float:
        xs = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            xs.append(time.perf_counter() - t0)
        return min(xs)

    check = timed(lambda: endpoints._checked(raw, parse, None))
    decode = timed(lambda: fastjson.loads(raw))

    async def handle() -> None:
        if hasattr(endpoints, "_check"):
            await endpoints._check(raw, parse, None)
        elif len(raw) > endpoints.BIG_BODY:  # a tree from before `_check`
            await threads.run_blocking(endpoints._checked, raw, parse, None)
        else:
            endpoints._checked(raw, parse, None)

    async def lagged() -> tuple[float, float]:
        lags: list[float] = []
        stop = asyncio.Event()

        async def tick() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await asyncio.sleep(0.0002)
                lags.append(time.perf_counter() - t0 - 0.0002)

        task = asyncio.ensure_future(tick())
        await asyncio.sleep(0.01)
        lags.clear()
        t0 = time.perf_counter()
        await handle()
        took = time.perf_counter() - t0
        await asyncio.sleep(0.003)
        stop.set()
        await task
        return took, max(lags)

    async def main() -> list[tuple[float, float]]:
        return [await lagged() for _ in range(reps)]

    uvloop.install()
    runs = asyncio.run(main())
    return {
        "check_ms_per_mib": check * 1e3 / mib,
        "decode_ms_per_mib": decode * 1e3 / mib,
        "handled_ms": statistics.median(t for t, _ in runs) * 1e3,
        "loop_lag_ms": statistics.median(lag for _, lag in runs) * 1e3,
        "loop_lag_worst_ms": max(lag for _, lag in runs) * 1e3,
    }


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):6.2f} ({min(xs):.2f}..{max(xs):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, help="another source tree, same rounds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=9, help="bodies per round")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        src, mib, reps = a.child
        print(json.dumps(_child(src, float(mib), int(reps))))
        return 0
    trees = {"this": HERE.parent / "src"}
    if a.baseline:
        trees["baseline"] = a.baseline / "src"
    res: dict[str, dict[float, list[dict[str, float]]]] = {n: {m: [] for m in SIZES} for n in trees}
    names = list(trees)
    for r in range(a.rounds):
        for mib in SIZES:
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(trees[name]), str(mib), str(a.reps)],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=HERE,
                )
                res[name][mib].append(json.loads(out.stdout))
    print(f"{a.rounds} rounds x {a.reps} bodies; median of rounds (min..max)")
    print(f"{'':16}{'check ms/MiB':>22}{'decode ms/MiB':>22}{'handled ms':>22}{'loop lag ms':>22}")
    for mib in SIZES:
        for name in names:
            rows = res[name][mib]
            print(
                f"{f'{mib} MiB {name}':16}"
                + "".join(
                    f"{_spread([x[k] for x in rows]):>22}"
                    for k in ("check_ms_per_mib", "decode_ms_per_mib", "handled_ms", "loop_lag_ms")
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
