"""CPU per request of the request log's file work: making the row and the
insert (`logfile.Writer.write`) at the batch sizes the writer thread sees,
and the retention pass that deletes it again later.

    .venv/bin/python bench/bench_reqlog.py [--baseline /path/to/other/tree] [--rounds 5]

Each tree runs in a child process of its own, one round at a time, the trees
taking turns (the machine's drift falls on both alike); a round writes a
fresh file filled to 50,000 requests (not timed), then 50,000 more in
batches of each size with a retention pass back to 50,000 after every 5,000
(as the writer thread does: max_requests / 10; a tree whose early passes
look at the oldest rows only has its thorough pass, once a minute, counted
as at 3,000 requests/s). Figures are CPU µs (process
time) per request, the insert and its later deletion: medians of the
rounds, with their spread (checkpoints fall where they fall, on either). The records are like the
proxy's (a one-step plan, one attempt); a tree whose ``row_of`` takes the
record alone (schema 1) has its rows made in the timed part too, as its
request path did.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (30, 300, 600)
FULL = 50_000
# requests in one prune_interval (60 s) at 3,000 requests/s
INTERVAL_REQUESTS = 180_000


def records(n: int, t0: float) -> list[Any]:
    from traywire.types import Attempt, AttemptRecord, RequestRecord

    plan = (Attempt("bench", "fast", "bench", "requested model"),)
    out = []
    for i in range(n):
        att = (AttemptRecord("bench", "fast", "served", "", "", 0.61 + i % 7),)
        out.append(
            RequestRecord(
                ts=t0 + i * 1e-3,
                dialect="openai",
                endpoint="/v1/chat/completions",
                requested="bench",
                capability="chat",
                strategy="priority",
                route=None,
                preference="local",
                prompt_tokens=9,
                stream=False,
                plan=plan,
                skipped=(),
                attempts=att,
                served_model="bench",
                served_backend="fast",
                status=200,
                ttfb_ms=0.5 + i % 5,
                total_ms=0.7 + i % 5,
                tokens_in=9,
                tokens_out=12,
                outcome="served",
            )
        )
    return out


def child() -> None:
    """One round for the tree on sys.path; prints a JSON object."""
    from traywire.observe import logfile

    old_api = len(inspect.signature(logfile.row_of).parameters) == 1
    # schema 2: early passes look at the oldest rows only, a thorough one (every
    # row) runs once per prune_interval
    two_kinds = "thorough" in inspect.signature(logfile.Writer.prune).parameters
    quick: dict[str, Any] = {"thorough": False} if two_kinds else {}

    def write(w: Any, batch: list[Any]) -> None:
        w.write([logfile.row_of(r) for r in batch] if old_api else batch)

    out: dict[str, float] = {}
    for size in BATCHES:
        path = Path(tempfile.mkdtemp(prefix="bench-reqlog-")) / "requests.sqlite3"
        logfile.open_file(path)
        w = logfile.Writer(path)
        t = 1.8e9
        for _ in range(FULL // 1000):  # a full log first, not timed
            write(w, records(1000, t))
            t += 1.0
        batches = [records(size, t + k * size * 1e-3) for k in range(FULL // size)]
        now = t + FULL * 1e-3
        writing = pruning = 0.0
        since = 0
        for batch in batches:
            c0 = time.process_time()
            write(w, batch)
            c1 = time.process_time()
            writing += c1 - c0
            since += len(batch)
            if since >= FULL // 10:  # as the writer thread does
                w.prune(now, 86400 * 30, FULL, **quick)
                pruning += time.process_time() - c1
                since = 0
        n = len(batches) * size
        if two_kinds:  # one thorough pass per INTERVAL_REQUESTS requests
            c0 = time.process_time()
            w.prune(now, 86400 * 30, FULL, thorough=True)
            pruning += (time.process_time() - c0) * n / INTERVAL_REQUESTS
        out[f"write {size}"] = writing / n * 1e6
        out[f"prune {size}"] = pruning / n * 1e6
        out[f"total {size}"] = (writing + pruning) / n * 1e6
        w.close()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, help="another source tree, measured in turn")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, str(a.child / "src"))
        child()
        return
    trees = {"this": ROOT}
    if a.baseline:
        trees["baseline"] = a.baseline.resolve()
    res: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for rnd in range(a.rounds):
        order = list(trees.items())
        for name, tree in order if rnd % 2 == 0 else order[::-1]:
            text = subprocess.run(
                [sys.executable, __file__, "--child", str(tree)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            res[name].append(json.loads(text))
    keys = list(res["this"][0])
    print(f"CPU µs per request, median of {a.rounds} rounds (min..max)")
    print(f"{'':12}" + "".join(f"{k:>19}" for k in keys))
    for name in trees:
        cells = []
        for k in keys:
            xs = [r[k] for r in res[name]]
            cells.append(f"{statistics.median(xs):5.1f} ({min(xs):.1f}..{max(xs):.1f})")
        print(f"{name:12}" + "".join(f"{c:>19}" for c in cells))
    if a.baseline:
        ratio = [
            statistics.median(r[k] for r in res["this"])
            / statistics.median(r[k] for r in res["baseline"])
            for k in keys
        ]
        print(f"{'ratio':12}" + "".join(f"{x:>19.2f}" for x in ratio))


if __name__ == "__main__":
    main()
