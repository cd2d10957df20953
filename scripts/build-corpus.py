"""Build data/classifier/corpus.jsonl (and dev.jsonl) from the hand-written sources.

    python scripts/build-corpus.py

data/classifier/dev.txt, in the same format, becomes dev.jsonl: a small
private check set in another style, never trained on.

Batches are data/classifier/batches/*.txt. A record starts with a line
``§label`` (the label may be followed by a space and the first line of the
prompt); the lines after it, up to the next record, are the rest of the
prompt. ``§> text`` lines before a record are earlier turns (its "context"),
``§# ...`` lines are comments. Every prompt was written by hand for this
project.

A few records (about 5%, seeded) get a programmatic variant marked
``"aug": true`` with ``"src"`` the line index of the original: lower-cased
without punctuation, or with keyboard typos. Training uses them; the test side
of a cross-validation fold never does.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "classifier"
LABELS = ("code", "reasoning", "analytical", "creative", "chat")
SEED = 14
AUG_SHARE = 0.05
_NEIGHBOURS = {
    "a": "sqw",
    "b": "vn",
    "c": "xv",
    "d": "sf",
    "e": "wr",
    "f": "dg",
    "g": "fh",
    "h": "gj",
    "i": "uo",
    "j": "hk",
    "k": "jl",
    "l": "k",
    "m": "n",
    "n": "bm",
    "o": "ip",
    "p": "o",
    "q": "w",
    "r": "et",
    "s": "ad",
    "t": "ry",
    "u": "yi",
    "v": "cb",
    "w": "qe",
    "x": "zc",
    "y": "tu",
    "z": "x",
}


def parse(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    context: list[str] = []
    current: dict[str, Any] | None = None
    lines: list[str] = []

    def close() -> None:
        if current is not None:
            text = "\n".join(lines).strip()
            if not text:
                raise SystemExit(f"{path}: empty prompt for {current['label']}")
            current["text"] = text
            rows.append(current)

    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("§#"):
            continue
        if line.startswith("§>"):
            close()
            current, lines = None, []
            context.append(line[2:].strip())
            continue
        if line.startswith("§"):
            close()
            label, _, first = line[1:].partition(" ")
            if label not in LABELS:
                raise SystemExit(f"{path}:{n}: unknown label {label!r}")
            current = {"label": label, "batch": path.stem}
            if context:
                current["context"] = context
                context = []
            lines = [first] if first else []
            continue
        if current is None:
            if line.strip():
                raise SystemExit(f"{path}:{n}: text outside a record")
            continue
        lines.append(line)
    close()
    return rows


def typos(text: str, rng: random.Random) -> str:
    chars = list(text)
    spots = [i for i, c in enumerate(chars) if c.isalpha() and c.lower() in _NEIGHBOURS]
    for i in rng.sample(spots, k=min(len(spots), max(1, len(spots) // 40))):
        kind = rng.randrange(3)
        if kind == 0:
            chars[i] = rng.choice(_NEIGHBOURS[chars[i].lower()])
        elif kind == 1:
            chars[i] = ""
        elif i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def flatten(text: str) -> str:
    return re.sub(r"[^\w\s']+", " ", text.lower()).replace("  ", " ").strip()


def main() -> int:
    rows: list[dict[str, Any]] = []
    for path in sorted((DATA / "batches").glob("*.txt")):
        rows.extend(parse(path))
    seen: dict[str, str] = {}
    for r in rows:
        key = " ".join(r["text"].lower().split())
        if key in seen:
            where = f"{r['batch']} and {seen[key]}"
            raise SystemExit(f"duplicate prompt in {where}: {r['text'][:60]!r}")
        seen[key] = r["batch"]
    rng = random.Random(SEED)
    short = [i for i, r in enumerate(rows) if len(r["text"]) < 300 and "\n" not in r["text"]]
    picks = sorted(rng.sample(short, k=int(len(rows) * AUG_SHARE)))
    out: list[dict[str, Any]] = [
        {
            "text": r["text"],
            "label": r["label"],
            **({"context": r["context"]} if "context" in r else {}),
        }
        for r in rows
    ]
    for i in picks:
        text = rows[i]["text"]
        variant = flatten(text) if rng.random() < 0.5 else typos(text, rng)
        if variant and variant != text:
            out.append({"text": variant, "label": rows[i]["label"], "aug": True, "src": i})
    with (DATA / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for r in out:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {lab: sum(1 for r in rows if r["label"] == lab) for lab in LABELS}
    print(f"{len(rows)} prompts + {len(out) - len(rows)} augmented: {counts}", file=sys.stderr)
    dev = parse(DATA / "dev.txt")
    leaked = [r["text"][:60] for r in dev if " ".join(r["text"].lower().split()) in seen]
    if leaked:
        raise SystemExit(f"dev prompts also in the corpus: {leaked}")
    with (DATA / "dev.jsonl").open("w", encoding="utf-8") as f:
        for r in dev:
            f.write(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n")
    counts = {lab: sum(1 for r in dev if r["label"] == lab) for lab in LABELS}
    print(f"dev: {len(dev)} prompts: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
