"""`auto`: tell which use case a request is from its content.

A small linear model (multinomial logistic regression, trained by
``scripts/train-classifier.py`` on ``data/classifier/corpus.jsonl``) scores the
last user turn for each use case: code, reasoning, analytical, creative, chat.

It reads the lower-cased window of the turn (at most its first 6,000 and last
2,000 characters, so a 200,000-character prompt costs about what a short one
does), cut into tokens: runs of letters and digits and runs of punctuation
(both cut into pieces of at most 32 characters), and single CJK characters;
numbers are read as zeros (at most four). The features, hashed into
``2**BITS`` buckets with ``zlib.crc32`` of their UTF-8 bytes:

- each distinct token;
- the character 3-, 4- and 5-grams of each distinct token padded with spaces
  (" token ");
- each distinct pair of neighbouring tokens (its bucket: the left token's
  bucket XOR the right token's second hash).

Feature counts are divided by the square root of their total, so long and
short prompts score on one scale. :func:`features` is the reference definition;
the training script calls it, so training and inference hash alike.

Inference is plain Python (standard library only) over one table of int8
weights per use case. The weights come in with the config: `traywire.config`
reads the package file ``config/classifier.bin`` (once, on first use) and
hands `Model.from_raw` of it to the router as ``cfg.auto.classifier``; this
module reads no file. A token's weights (its own and its character n-grams') are summed once and
cached, so a warm turn costs about one dict look-up per distinct token and one
``itemgetter`` call per use case for its distinct pairs.

The winner's margin over the runner-up (a difference of logits: 1.0 means
e times likelier) below ``min_margin`` gives the request to the configured
default use case; the reason says so. Either way the reason names the three
features that pushed the winner ahead of the runner-up most: tokens (with
their character n-grams) or token pairs.
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from collections.abc import Iterable
from math import sqrt
from operator import itemgetter, sub, xor
from typing import Any, NamedTuple

from ..types import CAPABILITIES, Capability

HEAD = 6000
TAIL = 2000

BITS = 18
BUCKETS = 1 << BITS
_MASK = BUCKETS - 1
_SEED_LEFT = 0x5EED0001
_SEED_RIGHT = 0x5EED0002
GRAMS = (3, 4, 5)
MAX_TOKEN = 32  # longer runs are cut into tokens of at most this many characters
DEFAULT_MIN_MARGIN = 0.0

LABELS: tuple[Capability, ...] = CAPABILITIES
FORMAT = "traywire-classifier/1"

# Tokens. ASCII text (most requests) takes the simpler expression; for other
# text the full one gives the same tokens on its ASCII parts.
_PUNCT = r"!-/:-@\[-`{-~¡¿«»‘’“”„…–—·•。，、？！：；（）【】「」『』《》〈〉～"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_ASCII_RX = re.compile(r"[^\s!-/:-@\[-`{-~]{1,32}|[!-/:-@\[-`{-~]{1,32}")
_UNICODE_RX = re.compile(rf"[{_CJK}]|[^\s{_PUNCT}{_CJK}]{{1,32}}|[{_PUNCT}]{{1,32}}")

_CACHE_LIMIT = 20_000

# A cached token: (its feature count, its summed weight per use case).
Entry = tuple[int, int, int, int, int, int]


class Classification(NamedTuple):
    capability: Capability
    scores: dict[Capability, float]
    reason: str
    margin: float = 0.0
    features: tuple[str, ...] = ()


# --------------------------------------------------------------------------- features


def window(text: str) -> str:
    """The part of a turn that is read."""
    if len(text) <= HEAD + TAIL:
        return text
    return text[:HEAD] + "\n" + text[-TAIL:]


def tokens(text: str) -> list[str]:
    """The lower-cased tokens of the window of ``text``, in order."""
    low = window(text).lower()
    return (_ASCII_RX if low.isascii() else _UNICODE_RX).findall(low)


def left_bucket(token: str) -> int:
    """A token's own bucket; also the left half of its pairs' buckets."""
    return zlib.crc32(token.encode(), _SEED_LEFT) & _MASK


def right_hash(token: str) -> int:
    """The right half of the bucket of a pair this token ends."""
    return zlib.crc32(token.encode(), _SEED_RIGHT) & _MASK


def pair_bucket(left: str, right: str) -> int:
    return left_bucket(left) ^ right_hash(right)


_SLICES: dict[int, tuple[slice, ...]] = {}


def _slices(size: int) -> tuple[slice, ...]:
    s = _SLICES.get(size)
    if s is None:
        s = _SLICES[size] = tuple(slice(i, i + n) for n in GRAMS for i in range(size - n + 1))
    return s


def gram_buckets(token: str) -> list[int]:
    """Buckets of the character 3/4/5-grams of " token "."""
    padded = " " + token + " "
    crc, mask = zlib.crc32, _MASK
    if padded.isascii():
        raw = padded.encode()
        return [crc(raw[s]) & mask for s in _slices(len(raw))]
    return [crc(padded[s].encode()) & mask for s in _slices(len(padded))]


def feature_token(token: str) -> str:
    """The form a token's features are hashed from: numbers become zeros (at most 4)."""
    return "0" * min(len(token), 4) if token.isdigit() else token


def token_buckets(token: str) -> list[int]:
    """Every bucket a distinct token adds: its own, then its character n-grams'."""
    form = feature_token(token)
    return [left_bucket(form), *gram_buckets(form)]


def features(text: str) -> dict[int, int]:
    """The hashed feature counts of a turn (before scaling by 1/sqrt(total)).

    The reference definition: the training script calls it, and
    :meth:`Model.classify` must score the same sums (a test checks).
    """
    toks = tokens(text)
    counts: dict[int, int] = {}
    for tok in dict.fromkeys(toks):
        for b in token_buckets(tok):
            counts[b] = counts.get(b, 0) + 1
    forms = [feature_token(t) for t in toks]
    for b in {pair_bucket(a, c) for a, c in itertools.pairwise(forms)}:
        counts[b] = counts.get(b, 0) + 1
    return counts


# --------------------------------------------------------------------------- the model


class Model:
    """One weight per bucket and use case, one scale, a bias per use case.

    Weights are int8 stored as bytes offset by 128 (byte = weight + 128), one
    ``bytes`` of BUCKETS per use case: reading a byte gives a cached small int.
    """

    __slots__ = ("_cache", "_left", "_right", "bias", "meta", "scale", "tables")

    def __init__(
        self,
        tables: list[bytes],
        scale: float,
        bias: Iterable[float],
        meta: dict[str, Any] | None = None,
    ) -> None:
        if len(tables) != len(LABELS) or any(len(t) != BUCKETS for t in tables):
            raise ValueError(f"expected {len(LABELS)} tables of {BUCKETS} weights")
        self.tables = tables
        self.scale = float(scale)
        self.bias = tuple(float(b) for b in bias)
        self.meta = dict(meta or {})
        # per token: (feature count, summed offset weight per use case), and its hashes
        self._cache: dict[str, Entry] = {}
        self._left: dict[str, int] = {}
        self._right: dict[str, int] = {}

    def weight(self, k: int, bucket: int) -> int:
        """The int8 weight of one bucket for use case number ``k``."""
        return self.tables[k][bucket] - 128

    # ------------------------------------------------------------------ file format

    @classmethod
    def from_raw(cls, raw: bytes) -> Model:
        """Read the training script's format (uncompressed: `traywire.config`
        reads the gzip file): a JSON header line, then the weights."""
        end = raw.index(b"\n")
        head = json.loads(raw[:end])
        if head.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if head.get("bits") != BITS or tuple(head.get("labels", ())) != LABELS:
            raise ValueError("the model was trained for other features or labels")
        body = raw[end + 1 :]
        if len(body) != BUCKETS * len(LABELS):
            raise ValueError("truncated weights")
        tables = [body[k * BUCKETS : (k + 1) * BUCKETS] for k in range(len(LABELS))]
        return cls(tables, head["scale"], head["bias"], head.get("meta", {}))

    def to_raw(self) -> bytes:
        head = {
            "format": FORMAT,
            "bits": BITS,
            "labels": list(LABELS),
            "scale": self.scale,
            "bias": list(self.bias),
            "meta": self.meta,
        }
        line = json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        return line + b"".join(self.tables)

    # ------------------------------------------------------------------ scoring

    def _entry(self, tok: str) -> Entry:
        ids = token_buckets(tok)
        n = len(ids)
        get = itemgetter(*ids) if n > 1 else lambda t: (t[ids[0]],)
        t0, t1, t2, t3, t4 = self.tables
        entry = (
            n,
            sum(get(t0)) - 128 * n,
            sum(get(t1)) - 128 * n,
            sum(get(t2)) - 128 * n,
            sum(get(t3)) - 128 * n,
            sum(get(t4)) - 128 * n,
        )
        self._cache[tok] = entry
        self._left[tok] = ids[0]
        self._right[tok] = right_hash(feature_token(tok))
        return entry

    def classify(
        self,
        text: str,
        default: Capability = "chat",
        min_margin: float = DEFAULT_MIN_MARGIN,
    ) -> Classification:
        toks = tokens(text)
        if not toks:
            scores = dict(zip(LABELS, self.bias, strict=True))
            return Classification(default, scores, f"{default} (default: no signal)")
        # distinct tokens and their weight sums (cached per token)
        uniq = list(dict.fromkeys(toks))
        cache = self._cache
        if len(cache) + len(uniq) > _CACHE_LIMIT:
            cache.clear()
            self._left.clear()
            self._right.clear()
        get = cache.get
        entries = [get(t) or self._entry(t) for t in uniq]
        cols = list(zip(*entries, strict=True))
        # distinct pairs: the left bucket of a token XOR the right hash of the next
        if len(toks) > 2:
            lefts = itemgetter(*toks)(self._left)
            rights = itemgetter(*toks[1:])(self._right)
            steps = list(map(xor, lefts, rights))
        else:
            steps = [self._left[a] ^ self._right[b] for a, b in itertools.pairwise(toks)]
        pairs = list(dict.fromkeys(steps))
        if len(pairs) > 1:
            pick = itemgetter(*pairs)
            pair_w: list[tuple[int, ...]] = [pick(t) for t in self.tables]
        else:
            pair_w = [tuple(t[p] for p in pairs) for t in self.tables]
        offset = 128 * len(pairs)
        norm = self.scale / sqrt(sum(cols[0]) + len(pairs))
        logits = [
            b + norm * (sum(tok_w) + sum(pw) - offset)
            for b, tok_w, pw in zip(self.bias, cols[1:], pair_w, strict=True)
        ]
        order = sorted(range(len(LABELS)), key=logits.__getitem__, reverse=True)
        win, run = order[0], order[1]
        margin = logits[win] - logits[run]
        # what pushed the winner ahead of the runner-up most: tokens, then pairs
        push = [
            *map(sub, cols[win + 1], cols[run + 1]),
            *map(sub, pair_w[win], pair_w[run]),
        ]
        named: list[str] = []
        taken: set[int] = set()
        for value in sorted(push, reverse=True)[:3]:
            if value <= 0:
                break
            i = push.index(value)
            while i in taken:  # equal pushes: the next one, in order
                i = push.index(value, i + 1)
            taken.add(i)
            if i < len(uniq):
                named.append(uniq[i])
            else:
                at = steps.index(pairs[i - len(uniq)])
                named.append(f"{toks[at]} {toks[at + 1]}")
        scores = dict(zip(LABELS, logits, strict=True))
        why = ", ".join(map(repr, named))
        best = LABELS[win]
        if margin < min_margin:
            reason = (
                f"{default} (default: low margin {margin:.1f} < {min_margin:g} "
                f"for {best} over {LABELS[run]}: {why})"
            )
            return Classification(default, scores, reason, margin, tuple(named))
        reason = f"{best} (margin {margin:.1f}: {why})"
        return Classification(best, scores, reason, margin, tuple(named))


def classify(
    text: str,
    model: Model | None,
    default: Capability = "chat",
    min_margin: float = DEFAULT_MIN_MARGIN,
) -> Classification:
    """The use case of a turn, with its per-use-case scores and why.

    A winner whose margin over the runner-up is below ``min_margin`` gives way
    to ``default`` (routing passes the configured ``auto.min_margin``). With
    no model (a config built without one) every turn is ``default``.
    """
    if model is None:
        return Classification(default, {}, f"{default} (no classifier: the default)", 0.0, ())
    return model.classify(text, default, min_margin)
