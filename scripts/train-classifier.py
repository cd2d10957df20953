"""Train the `auto` classifier and write src/traywire/config/classifier.bin.

    python scripts/train-classifier.py            # 5-fold CV report, then train and write
    python scripts/train-classifier.py --eval data/classifier/dev.jsonl [more.jsonl ...]
    python scripts/train-classifier.py --eval data/classifier/holdout.jsonl

Reads data/classifier/corpus.jsonl (one {"text", "label"} object per line;
"context" is ignored: the classifier sees the last user turn only; records
with "aug": true are programmatic variants of the record at line "src": they
train, never sit on the test side of a fold, and never train the fold that
tests their source) and data/classifier/lexicon.txt (domain terms per use case,
each a training row weighing LEXICON_WEIGHT of a prompt, in every fold's
training side). Prompts are weighted so that each use case counts the same.

The model is a multinomial logistic regression with L2 regularisation over
the hashed features of traywire.classify.features (the very function inference
uses), fitted by full-batch L-BFGS: deterministic, so retraining gives the same
bytes (the seed fixes the folds). Weights are quantised to int8 with one scale.

The file also ships the vocabulary: every token of the corpus, the lexicon,
data/classifier/words.txt (common English and technical words) and the numbers
in NUMBERS, each with its weight sums, computed from the quantised weights by
the model's own `entry` (what the app computes for a token it has not seen), so
that a request made of those tokens pays no summing. It changes no score.
Needs numpy (training only; the app does not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from traywire.config.classifier import MODEL_FILE, classifier, decode, encode  # noqa: E402
from traywire.core import classify  # noqa: E402

CORPUS = ROOT / "data" / "classifier" / "corpus.jsonl"
LEXICON = ROOT / "data" / "classifier" / "lexicon.txt"
WORDS = ROOT / "data" / "classifier" / "words.txt"
NUMBERS = (range(1000), range(1900, 2100))  # counts, amounts, years: shipped too
OUT = ROOT / "src" / "traywire" / "config" / MODEL_FILE
SEED = 14
FOLDS = 5
L2 = 1e-5
LEXICON_WEIGHT = 0.3  # a lexicon term counts this much of one prompt
BALANCE = True  # weigh prompts so that each use case counts the same
ITERS = 300
LABELS = classify.LABELS
K = len(LABELS)
THRESHOLDS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


# --------------------------------------------------------------------------- data


def load(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("label") not in LABELS or not isinstance(row.get("text"), str):
                raise SystemExit(f"{path}:{n}: needs a text and a label in {LABELS}")
            rows.append(row)
    return rows


def load_lexicon(path: Path) -> list[dict[str, Any]]:
    """Rows of the domain lexicon: "[label]" sections of comma-separated terms."""
    rows: list[dict[str, Any]] = []
    label = None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            label = line[1:-1]
            if label not in LABELS:
                raise SystemExit(f"{path}:{n}: unknown label {label!r}")
            continue
        if label is None:
            raise SystemExit(f"{path}:{n}: a term before any [label]")
        rows.extend({"text": t.strip(), "label": label} for t in line.split(",") if t.strip())
    return rows


def vocabulary(
    rows: Sequence[dict[str, Any]], lexicon: Sequence[dict[str, Any]], words: Path | None
) -> list[str]:
    """The texts whose tokens ship with the model (summed): the corpus, the
    lexicon, the word list (comments left out) and NUMBERS."""
    texts = [r["text"] for r in rows] + [r["text"] for r in lexicon]
    if words is not None:
        lines = words.read_text(encoding="utf-8").splitlines()
        texts += [line for line in lines if not line.lstrip().startswith("#")]
    texts += [" ".join(map(str, span)) for span in NUMBERS]
    return texts


class Matrix:
    """Rows of hashed features, scaled by 1/sqrt(total), as CSR over compact columns."""

    def __init__(self, texts: Sequence[str]) -> None:
        rows = [classify.features(t) for t in texts]
        self.buckets: Ints = np.array(sorted({b for r in rows for b in r}), dtype=np.int64)
        col = {int(b): i for i, b in enumerate(self.buckets)}
        indptr = [0]
        idx: list[int] = []
        val: list[float] = []
        for r in rows:
            norm = 1.0 / float(np.sqrt(sum(r.values()))) if r else 0.0
            for b in sorted(r):
                idx.append(col[b])
                val.append(r[b] * norm)
            indptr.append(len(idx))
        self.indptr: Ints = np.array(indptr, dtype=np.int64)
        self.idx: Ints = np.array(idx, dtype=np.int64)
        self.val: Floats = np.array(val, dtype=np.float64)
        self.n = len(rows)
        self.cols = len(self.buckets)

    def take(self, which: Sequence[int]) -> Matrix:
        sub = Matrix.__new__(Matrix)
        parts_idx, parts_val, indptr = [], [], [0]
        for i in which:
            a, b = self.indptr[i], self.indptr[i + 1]
            parts_idx.append(self.idx[a:b])
            parts_val.append(self.val[a:b])
            indptr.append(indptr[-1] + int(b - a))
        sub.buckets = self.buckets
        sub.cols = self.cols
        sub.n = len(which)
        sub.indptr = np.array(indptr, dtype=np.int64)
        sub.idx = np.concatenate(parts_idx) if parts_idx else np.zeros(0, np.int64)
        sub.val = np.concatenate(parts_val) if parts_val else np.zeros(0)
        return sub

    def rows_of_nnz(self) -> Ints:
        return np.repeat(np.arange(self.n), np.diff(self.indptr))

    def dot(self, w: Floats) -> Floats:
        """X @ w for w of shape (cols, K)."""
        out = np.zeros((self.n, w.shape[1]))
        rows = self.rows_of_nnz()
        for k in range(w.shape[1]):
            out[:, k] = np.bincount(rows, weights=self.val * w[self.idx, k], minlength=self.n)
        return out

    def tdot(self, g: Floats) -> Floats:
        """X.T @ g for g of shape (n, K)."""
        out = np.zeros((self.cols, g.shape[1]))
        rows = self.rows_of_nnz()
        for k in range(g.shape[1]):
            out[:, k] = np.bincount(self.idx, weights=self.val * g[rows, k], minlength=self.cols)
        return out


# --------------------------------------------------------------------------- fitting


def lbfgs(
    fg: Callable[[Floats], tuple[float, Floats]], x: Floats, iters: int, memory: int = 10
) -> Floats:
    """Minimise a smooth convex function (L-BFGS, Armijo backtracking)."""
    f, g = fg(x)
    ss: list[Floats] = []
    ys: list[Floats] = []
    for _ in range(iters):
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(ss), reversed(ys), strict=True):
            rho = 1.0 / float(y @ s)
            a = rho * float(s @ q)
            q -= a * y
            alphas.append((rho, a))
        if ss:
            q *= float(ss[-1] @ ys[-1]) / float(ys[-1] @ ys[-1])
        else:
            q /= max(1.0, float(np.linalg.norm(g)))
        for (s, y), (rho, a) in zip(zip(ss, ys, strict=True), reversed(alphas), strict=True):
            b = rho * float(y @ q)
            q += (a - b) * s
        d = -q
        slope = float(g @ d)
        if slope >= 0:
            ss.clear()
            ys.clear()
            d = -g
            slope = float(g @ d)
        step = 1.0
        while True:
            xn = x + step * d
            fn, gn = fg(xn)
            if fn <= f + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-12:
                return x
        s, y = xn - x, gn - g
        if float(s @ y) > 1e-12:
            ss.append(s)
            ys.append(y)
            if len(ss) > memory:
                ss.pop(0)
                ys.pop(0)
        x, f, g = xn, fn, gn
        if float(np.abs(g).max()) < 1e-6:
            break
    return x


def fit(
    x: Matrix, y: Ints, weight: Floats | None = None, l2: float = L2, iters: int = ITERS
) -> tuple[Floats, Floats]:
    """Weights (cols, K) and biases (K) minimising weighted mean cross-entropy + l2/2 |W|^2."""
    onehot = np.zeros((x.n, K))
    onehot[np.arange(x.n), y] = 1.0
    size = x.cols * K
    share = (np.ones(x.n) if weight is None else weight) / (x.n if weight is None else weight.sum())

    def fg(theta: Floats) -> tuple[float, Floats]:
        w = theta[:size].reshape(x.cols, K)
        b = theta[size:]
        z = x.dot(w) + b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        loss = -float(share @ np.log(p[np.arange(x.n), y] + 1e-300))
        loss += 0.5 * l2 * float(np.sum(w * w))
        gz = (p - onehot) * share[:, None]
        gw = x.tdot(gz) + l2 * w
        return loss, np.concatenate([gw.ravel(), gz.sum(axis=0)])

    theta = lbfgs(fg, np.zeros(size + K), iters)
    return theta[:size].reshape(x.cols, K), theta[size:]


def quantise(x: Matrix, w: Floats, b: Floats, meta: dict[str, Any]) -> classify.Model:
    """Int8 weights over all buckets, one table per use case, one scale for all."""
    scale = (float(np.abs(w).max()) or 1.0) / 127.0
    q = np.full((K, classify.BUCKETS), 128, dtype=np.uint8)  # stored as weight + 128
    q[:, x.buckets] = (np.clip(np.rint(w.T / scale), -127, 127) + 128).astype(np.uint8)
    tables = [q[k].tobytes() for k in range(K)]
    return classify.Model(tables, scale, [float(v) for v in b], meta)


def weights(rows: Sequence[dict[str, Any]]) -> Floats:
    """Per-row weights: each use case weighs the same in total; a lexicon term LEXICON_WEIGHT."""
    prompts = [r["label"] for r in rows if not r.get("lexicon")]
    share = {lab: len(prompts) / (K * max(1, prompts.count(lab))) for lab in LABELS}
    if not BALANCE:
        share = dict.fromkeys(LABELS, 1.0)
    return np.array([LEXICON_WEIGHT if r.get("lexicon") else share[r["label"]] for r in rows])


def train(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> classify.Model:
    """The model for corpus rows (and lexicon rows, marked "lexicon": true)."""
    x = Matrix([r["text"] for r in rows])
    y = np.array([LABELS.index(r["label"]) for r in rows], dtype=np.int64)
    w, b = fit(x, y, weights(rows))
    return quantise(x, w, b, meta)


# --------------------------------------------------------------------------- evaluation


def folds(rows: list[dict[str, Any]], k: int, seed: int) -> list[int]:
    """A stratified fold per row; augmented rows follow their source (test side: never)."""
    rng = random.Random(seed)
    fold = [-1] * len(rows)
    for label in LABELS:
        members = [i for i, r in enumerate(rows) if r["label"] == label and not r.get("aug")]
        rng.shuffle(members)
        for pos, i in enumerate(members):
            fold[i] = pos % k
    for i, r in enumerate(rows):
        if r.get("aug"):
            fold[i] = -1 - fold[int(r["src"])]  # -1 - f: train-only, but not in fold f's model
    return fold


def confusion(truth: Sequence[str], pred: Sequence[str]) -> str:
    width = max(len(x) for x in LABELS) + 2
    lines = [" " * width + "".join(f"{p[:8]:>10}" for p in LABELS) + "   (rows: true label)"]
    for t in LABELS:
        counts = [
            sum(1 for a, b in zip(truth, pred, strict=True) if a == t and b == p) for p in LABELS
        ]
        lines.append(f"{t:<{width}}" + "".join(f"{c:>10}" for c in counts))
    return "\n".join(lines)


def report(name: str, truth: Sequence[str], results: Sequence[classify.Classification]) -> float:
    """Print accuracy, per-label recall, the confusion matrix and the margin table."""
    pred = [r.capability for r in results]
    n = len(truth)
    acc = float(sum(a == b for a, b in zip(truth, pred, strict=True)) / n)
    print(f"\n== {name}: {n} prompts, accuracy {acc:.1%}")
    for lab in LABELS:
        idx = [i for i, t in enumerate(truth) if t == lab]
        if idx:
            ok = sum(pred[i] == lab for i in idx)
            print(f"   {lab:<11} {ok}/{len(idx)} = {ok / len(idx):.1%}")
    print(confusion(truth, pred))
    print("   margin     prompts  right there   right above   all, below -> chat")
    low = 0.0
    for t in THRESHOLDS[1:]:
        band = [i for i, r in enumerate(results) if low <= r.margin < t]
        above = [i for i in range(n) if results[i].margin >= t]
        in_band = sum(pred[i] == truth[i] for i in band) / len(band) if band else 0.0
        acc_above = sum(pred[i] == truth[i] for i in above) / len(above) if above else 0.0
        fallback = (
            sum((pred[i] if results[i].margin >= t else "chat") == truth[i] for i in range(n)) / n
        )
        print(
            f"   {low:4.2f}-{t:<4.2f}  {len(band) / n:7.1%}  {in_band:11.1%}   {acc_above:11.1%}"
            f"   {fallback:18.1%}"
        )
        low = t
    return acc


def cross_validate(
    rows: list[dict[str, Any]], lexicon: list[dict[str, Any]], k: int = FOLDS, seed: int = SEED
) -> float:
    """Stratified k-fold accuracy; the lexicon is on every fold's training side."""
    fold = folds(rows, k, seed) + [-1 - k] * len(lexicon)
    rows = rows + [{**r, "lexicon": True} for r in lexicon]
    full = Matrix([r["text"] for r in rows])
    y = np.array([LABELS.index(r["label"]) for r in rows], dtype=np.int64)
    sw = weights(rows)
    truth: list[str] = []
    results: list[classify.Classification] = []
    for f in range(k):
        train_idx = [i for i in range(len(rows)) if fold[i] != f and fold[i] != -1 - f]
        test_idx = [i for i in range(len(rows)) if fold[i] == f]
        w, b = fit(full.take(train_idx), y[train_idx], sw[train_idx])
        m = quantise(full, w, b, {})
        for i in test_idx:
            truth.append(rows[i]["label"])
            results.append(m.classify(rows[i]["text"], "chat", 0.0))
        done = list(zip(truth[-len(test_idx) :], results[-len(test_idx) :], strict=True))
        print(
            f"   fold {f + 1}/{k}: {sum(t == r.capability for t, r in done) / len(done):.1%}",
            flush=True,
        )
    return report(f"{k}-fold cross-validation (seed {seed})", truth, results)


def evaluate(paths: Sequence[Path], model: classify.Model) -> dict[str, float]:
    out = {}
    for p in paths:
        rows = load(p)
        results = [model.classify(r["text"], "chat", 0.0) for r in rows]
        out[str(p)] = report(str(p), [r["label"] for r in rows], results)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--lexicon",
        default=str(LEXICON),
        help="domain terms as extra light rows (an empty string: none)",
    )
    ap.add_argument(
        "--words",
        default=str(WORDS),
        help="common words whose sums ship with the model (an empty string: none)",
    )
    ap.add_argument(
        "--eval",
        type=Path,
        nargs="+",
        metavar="FILE.jsonl",
        help="evaluate the shipped model (or --model) on labelled files; no training",
    )
    ap.add_argument("--model", type=Path, help="with --eval: another model file than the shipped")
    ap.add_argument("--no-cv", action="store_true", help="skip cross-validation")
    args = ap.parse_args(argv)

    if args.eval:
        m = decode(args.model.read_bytes()) if args.model else classifier()
        evaluate(args.eval, m)
        return 0

    rows = load(args.corpus)
    lexicon = load_lexicon(Path(args.lexicon)) if args.lexicon else []
    counts = {lab: sum(1 for r in rows if r["label"] == lab) for lab in LABELS}
    aug = sum(1 for r in rows if r.get("aug"))
    print(f"corpus {args.corpus}: {len(rows)} prompts ({aug} augmented): {counts}")
    print(f"lexicon: {len(lexicon)} terms, each weighing {LEXICON_WEIGHT} of a prompt")
    if not args.no_cv:
        cross_validate(rows, lexicon)
    meta: dict[str, Any] = {
        "corpus_sha256": sha256(args.corpus),
        "lexicon_sha256": sha256(Path(args.lexicon)) if args.lexicon else None,
        "words_sha256": sha256(Path(args.words)) if args.words else None,
        "prompts": len(rows),
        "per_label": counts,
        "l2": L2,
        "lexicon_weight": LEXICON_WEIGHT,
        "iters": ITERS,
        "seed": SEED,
    }
    m = train(rows + [{**r, "lexicon": True} for r in lexicon], meta)
    m.preload(vocabulary(rows, lexicon, Path(args.words) if args.words else None))
    blob = encode(m)
    args.out.write_bytes(blob)
    print(f"\nwrote {args.out} ({len(blob):,} bytes; vocabulary: {len(m.vocabulary):,} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
