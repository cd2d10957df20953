"""Summarise a py-spy ``--format raw`` (collapsed stacks) file.

    python bench/pyspy_summary.py bench/results/traywire.pyspy.txt [--top 40]
        [--rate 500 --requests N]   # also µs per request

Prints each function's inclusive share (its own time plus everything it
called, each sample counted once per function) and self share, of all
non-idle samples.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    # "func (path/file.py:123)" -> "func (path/file.py)"
    return _LINE.sub(")", frame.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--grep", help="only functions whose name/file contain this")
    ap.add_argument("--rate", type=float, default=0, help="py-spy --rate used (samples/s)")
    ap.add_argument("--requests", type=int, default=0, help="requests served while sampling")
    a = ap.parse_args()
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in a.file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [frame_name(f) for f in stack.split(";")]
        for f in set(frames):
            incl[f] += n
        self_[frames[-1]] += n
    per = 1e6 / a.rate / a.requests if a.rate and a.requests else 0.0
    print(f"{total} samples" + (f", {total * per:.1f} µs sampled per request" if per else ""))
    print(f"{'incl %':>7} {'self %':>7}" + (f" {'incl µs/req':>11}" if per else "") + "  function")
    shown = 0
    for f, n in incl.most_common():
        if a.grep and a.grep not in f:
            continue
        us = f" {n * per:11.1f}" if per else ""
        print(f"{100 * n / total:7.1f} {100 * self_[f] / total:7.1f}{us}  {f}")
        shown += 1
        if shown >= a.top:
            break


if __name__ == "__main__":
    main()
