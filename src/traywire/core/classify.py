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
module reads no file. A token's weights (its own and its character n-grams')
are summed once and kept, so a turn costs about one dict look-up per distinct
token and one ``itemgetter`` call per use case for its distinct pairs. The file
ships those sums for a vocabulary (every token of the training corpus, the
lexicon and a list of common words), computed by the training script with
:meth:`Model.entry`, the very function that sums a token met for the first
time; tokens outside it are summed when first met and kept in a bounded cache.

The winner's margin over the runner-up (a difference of logits: 1.0 means
e times likelier) below ``min_margin`` gives the request to the configured
default use case; the reason says so. Either way the reason names the three
features that pushed the winner ahead of the runner-up most: tokens (with
their character n-grams) or token pairs.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import zlib
from array import array
from collections.abc import Callable, Iterable
from itertools import repeat
from math import sqrt
from operator import and_, itemgetter, lt, sub, xor
from typing import Any, NamedTuple, Protocol

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
_UNICODE_PATTERN = rf"[{_CJK}]|[^\s{_PUNCT}{_CJK}]{{1,32}}|[{_PUNCT}]{{1,32}}"


@functools.cache
def _unicode_rx() -> re.Pattern[str]:
    """Compiled at the first text that is not ASCII (a few ms at start otherwise)."""
    return re.compile(_UNICODE_PATTERN)


_CACHE_LIMIT = 20_000  # tokens summed at run time and kept (beyond the shipped vocabulary)

# A token's summed weights: (its feature count, its summed weight per use case).
Entry = tuple[int, int, int, int, int, int]
# What the model keeps of a token: its Entry, its own bucket (the left half of
# its pairs' buckets) and its right hash (the right half).
Known = tuple[Entry, int, int]

# The vocabulary's columns in the file: uint8 counts, int16 sums, uint32 hashes.
_U32 = next(code for code in "IL" if array(code).itemsize == 4)
_BIG_ENDIAN = array("H", b"\x00\x01")[0] == 1  # the file's numbers are little-endian
_VOCAB_CHECKS = 16  # entries of a loaded vocabulary checked against Model.entry


class Classification(NamedTuple):
    capability: Capability
    scores: dict[Capability, float]
    reason: str
    margin: float = 0.0
    features: tuple[str, ...] = ()


class Classifier(Protocol):
    """What routing needs of a classifier: a `Model`, or a stand-in that
    loads one on first use (`traywire.config.classifier.shipped`)."""

    def classify(
        self, text: str, default: Capability = "chat", min_margin: float = DEFAULT_MIN_MARGIN
    ) -> Classification: ...


# --------------------------------------------------------------------------- features


def window(text: str) -> str:
    """The part of a turn that is read."""
    if len(text) <= HEAD + TAIL:
        return text
    return text[:HEAD] + "\n" + text[-TAIL:]


def tokens(text: str) -> list[str]:
    """The lower-cased tokens of the window of ``text``, in order."""
    low = window(text).lower()
    return (_ASCII_RX if low.isascii() else _unicode_rx()).findall(low)


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


_Cut = Callable[[Any], tuple[Any, ...]]
_CUTS: dict[int, _Cut] = {}


def _cut(size: int) -> _Cut:
    """One call that cuts a padded token of ``size`` into its n-grams (in
    :func:`_slices` order): an ``itemgetter`` of the slices."""
    cut = _CUTS.get(size)
    if cut is None:
        s = _slices(size)
        # (itemgetter of one item gives the item, not a tuple)
        one: _Cut = (lambda x: (x[s[0]],)) if s else (lambda x: ())
        cut = _CUTS[size] = itemgetter(*s) if len(s) > 1 else one
    return cut


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

    A token's summed weights and hashes are kept per token, up to
    ``_CACHE_LIMIT`` tokens met at run time (then forgotten). The file's
    vocabulary stays in its compact columns (a few hundred KiB), read into the
    cache the first time a request has the token: no summing, and no memory
    for the thousands of tokens a run never meets. Tokens :meth:`preload`
    adds (the training script) are kept in the cache for good.
    """

    __slots__ = (
        "_cache",
        "_columns",
        "_known",
        "_learned",
        "_left",
        "_right",
        "_rows",
        "bias",
        "meta",
        "scale",
        "tables",
    )

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
        # per token: (feature count, summed weight per use case), and its hashes
        self._cache: dict[str, Entry] = {}
        self._left: dict[str, int] = {}
        self._right: dict[str, int] = {}
        self._known: tuple[str, ...] = ()  # the vocabulary, sorted: kept for good
        self._learned: list[str] = []  # tokens summed at run time, in the cache too
        # the file's vocabulary: token -> its row in the columns (count, the
        # sums per use case, own buckets and right hashes)
        self._rows: dict[str, int] = {}
        self._columns: tuple[Any, ...] = ()

    def weight(self, k: int, bucket: int) -> int:
        """The int8 weight of one bucket for use case number ``k``."""
        return self.tables[k][bucket] - 128

    # ------------------------------------------------------------------ per token

    def entry(self, tok: str) -> Known:
        """What the model keeps of a token: (its feature count and summed weight
        per use case, its own bucket, its right hash). Caches nothing.

        The same sums as adding :func:`token_buckets`' weights one by one, and
        the function that both the training script (for the shipped vocabulary)
        and :meth:`classify` (for a token met for the first time) call.
        """
        form = "0" * min(len(tok), 4) if tok.isdigit() else tok  # feature_token
        raw = form.encode()
        crc, mask = zlib.crc32, _MASK
        if form.isascii():
            padded = b" " + raw + b" "
            grams: Iterable[bytes] = (_CUTS.get(len(padded)) or _cut(len(padded)))(padded)
        else:
            text = " " + form + " "
            grams = map(str.encode, (_CUTS.get(len(text)) or _cut(len(text)))(text))
        left = crc(raw, _SEED_LEFT) & mask
        ids = [left, *map(and_, map(crc, grams), repeat(mask))]
        n = len(ids)
        get = itemgetter(*ids) if n > 1 else lambda t: (t[ids[0]],)
        t0, t1, t2, t3, t4 = self.tables
        off = 128 * n
        entry = (
            n,
            sum(get(t0)) - off,
            sum(get(t1)) - off,
            sum(get(t2)) - off,
            sum(get(t3)) - off,
            sum(get(t4)) - off,
        )
        return entry, left, crc(raw, _SEED_RIGHT) & mask

    def _row(self, tok: str) -> Known | None:
        """A file vocabulary token's entry, from the columns (None: not in it)."""
        i = self._rows.get(tok)
        if i is None:
            return None
        counts, (s0, s1, s2, s3, s4), lefts, rights = self._columns
        return (counts[i], s0[i], s1[i], s2[i], s3[i], s4[i]), lefts[i], rights[i]

    def _learn(self, tok: str) -> Entry:
        """A token met for the first time: from the vocabulary, else summed; kept."""
        i = self._rows.get(tok)
        if i is None:
            entry, self._left[tok], self._right[tok] = self.entry(tok)
        else:
            counts, (s0, s1, s2, s3, s4), lefts, rights = self._columns
            entry = (counts[i], s0[i], s1[i], s2[i], s3[i], s4[i])
            self._left[tok], self._right[tok] = lefts[i], rights[i]
        self._cache[tok] = entry
        self._learned.append(tok)
        return entry

    def forget(self) -> None:
        """Drop the tokens learned at run time (the vocabulary stays)."""
        cache, left, right = self._cache, self._left, self._right
        for tok in self._learned:
            del cache[tok], left[tok], right[tok]
        self._learned.clear()

    def preload(self, texts: Iterable[str]) -> None:
        """Add every token of these texts to the vocabulary: summed now, kept
        for good, and written by :meth:`to_raw` (the training script's use)."""
        self.forget()
        new = {t for text in texts for t in tokens(text)}.difference(self._cache, self._rows)
        for tok in new:
            self._cache[tok], self._left[tok], self._right[tok] = self.entry(tok)
        self._known = tuple(sorted(new.union(self._known)))

    @property
    def vocabulary(self) -> dict[str, Known]:
        """The shipped vocabulary: each token's :meth:`entry`, as kept."""
        cache, left, right = self._cache, self._left, self._right
        out: dict[str, Known] = {}
        for t in self._known:
            row = self._row(t)
            out[t] = row if row is not None else (cache[t], left[t], right[t])
        return out

    # ------------------------------------------------------------------ file format

    @classmethod
    def from_raw(cls, raw: bytes) -> Model:
        """Read the training script's format (uncompressed: `traywire.config`
        reads the gzip file): a JSON header line, then the weights, then the
        vocabulary if any (see :meth:`to_raw`)."""
        end = raw.index(b"\n")
        head = json.loads(raw[:end])
        if head.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if head.get("bits") != BITS or tuple(head.get("labels", ())) != LABELS:
            raise ValueError("the model was trained for other features or labels")
        body = memoryview(raw)[end + 1 :]
        size = BUCKETS * len(LABELS)
        if len(body) < size:
            raise ValueError("truncated weights")
        tables = [bytes(body[k * BUCKETS : (k + 1) * BUCKETS]) for k in range(len(LABELS))]
        model = cls(tables, head["scale"], head["bias"], head.get("meta", {}))
        model._load_vocabulary(body[size:], head.get("vocab", 0), head.get("vocab_text", 0))
        return model

    def _load_vocabulary(self, body: memoryview, n: int, text_size: int) -> None:
        k = len(LABELS)
        if len(body) != (text_size + n * (1 + 2 * k + 8) if n else 0):
            raise ValueError("truncated or overlong vocabulary")
        if not n:
            return
        words = str(body[:text_size], "utf-8").split("\n")
        at = text_size
        counts = body[at : at + n]
        at += n
        sums = array("h")
        sums.frombytes(body[at : at + 2 * k * n])
        at += 2 * k * n
        hashes = array(_U32)
        hashes.frombytes(body[at:])
        if _BIG_ENDIAN:
            sums.byteswap()
            hashes.byteswap()
        if len(words) != n or not words[0] or not all(map(lt, words, words[1:])):
            raise ValueError("malformed vocabulary")
        columns = [sums[j * n : (j + 1) * n] for j in range(k)]
        self._columns = (bytes(counts), columns, hashes[:n], hashes[n:])
        self._rows = dict(zip(words, range(n), strict=True))
        self._known = tuple(words)
        # a vocabulary summed from other weights would score wrong without a sound
        for tok in words[:: max(1, n // _VOCAB_CHECKS)]:
            if self.entry(tok) != self._row(tok):
                raise ValueError(f"the vocabulary does not match the weights ({tok!r})")

    def to_raw(self) -> bytes:
        """The header line, the weights (one table per use case), then the
        vocabulary if any: its tokens joined by newlines (UTF-8, "vocab_text"
        bytes), their counts (uint8), their sums per use case (int16, one
        column per use case), their own buckets and their right hashes (uint32,
        one column each); numbers little-endian, "vocab" tokens, sorted."""
        head: dict[str, Any] = {
            "format": FORMAT,
            "bits": BITS,
            "labels": list(LABELS),
            "scale": self.scale,
            "bias": list(self.bias),
            "meta": self.meta,
        }
        vocab = b""
        if self._known:
            known = self._known
            kept = self.vocabulary
            entries = [kept[t][0] for t in known]
            text = "\n".join(known).encode()
            sums = array("h", [e[j] for j in range(1, len(LABELS) + 1) for e in entries])
            hashes = array(_U32, [kept[t][1] for t in known])
            hashes.extend(kept[t][2] for t in known)
            if _BIG_ENDIAN:
                sums.byteswap()
                hashes.byteswap()
            vocab = text + bytes(e[0] for e in entries) + sums.tobytes() + hashes.tobytes()
            head["vocab"] = len(known)
            head["vocab_text"] = len(text)
        line = json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        return line + b"".join(self.tables) + vocab

    # ------------------------------------------------------------------ scoring

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
        if len(self._learned) + len(uniq) > _CACHE_LIMIT:
            self.forget()
        get = self._cache.get
        entries = [get(t) or self._learn(t) for t in uniq]
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
    model: Classifier | None,
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
