"""The `auto` classifier: the shipped model's accuracy, its explanations and
fallback, the window rule, and that training and inference agree.

Accuracy is checked on every labelled evaluation file present:
data/classifier/dev.jsonl (always) and data/classifier/holdout.jsonl (when
it has been added). Needs numpy for the retraining tests (a test extra; the
app itself does not use it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from traywire import config
from traywire.config.classifier import MODEL_FILE, classifier, decode, encode
from traywire.core import classify, routing
from traywire.errors import ConfigError
from traywire.types import RouteRequest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "classifier"
EVAL_FILES = [p for p in (DATA / "dev.jsonl", DATA / "holdout.jsonl") if p.exists()]
TARGET = 0.95


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def trainer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "train_classifier", ROOT / "scripts" / "train-classifier.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("path", EVAL_FILES, ids=[p.name for p in EVAL_FILES])
def test_shipped_model_reaches_the_target_on_held_out_prompts(path: Path) -> None:
    data = rows(path)
    assert len(data) >= 100
    auto = config.load(user_file=False).auto  # as shipped: its threshold and default
    right = sum(
        classify.classify(r["text"], auto.classifier, auto.default, auto.min_margin).capability
        == r["label"]
        for r in data
    )
    assert right / len(data) >= TARGET, f"{path.name}: {right}/{len(data)}"


def test_dev_set_is_not_in_the_corpus() -> None:
    corpus = {" ".join(r["text"].lower().split()) for r in rows(DATA / "corpus.jsonl")}
    dev = [" ".join(r["text"].lower().split()) for r in rows(DATA / "dev.jsonl")]
    assert not [t for t in dev if t in corpus]


def test_corpus_size_and_balance() -> None:
    data = [r for r in rows(DATA / "corpus.jsonl") if not r.get("aug")]
    assert len(data) >= 2500
    for label in classify.LABELS:
        assert sum(r["label"] == label for r in data) >= 400, label


def test_shipped_model_was_trained_on_the_current_corpus() -> None:
    meta = classifier().meta
    digest = hashlib.sha256((DATA / "corpus.jsonl").read_bytes()).hexdigest()
    assert meta["corpus_sha256"] == digest, "retrain: python scripts/train-classifier.py"
    lexicon = hashlib.sha256((DATA / "lexicon.txt").read_bytes()).hexdigest()
    assert meta["lexicon_sha256"] == lexicon, "retrain: python scripts/train-classifier.py"
    words = hashlib.sha256((DATA / "words.txt").read_bytes()).hexdigest()
    assert meta["words_sha256"] == words, "retrain: python scripts/train-classifier.py"


def test_model_file_is_small() -> None:
    assert (ROOT / "src" / "traywire" / "config" / MODEL_FILE).stat().st_size < 2_000_000


# --------------------------------------------------------------------------- explanations


@pytest.mark.parametrize(
    ("prompt", "label"),
    [
        ("Write a haiku about the sea at night", "creative"),
        ("Fix this Python traceback: KeyError: 'id' in line 12", "code"),
        ("A bat and a ball cost $1.10 in total. How much is the ball?", "reasoning"),
        ("What are the pros and cons of remote work for a small team?", "analytical"),
        ("hi! how are you today?", "chat"),
    ],
)
def test_reason_names_the_winner_its_margin_and_features(prompt: str, label: str) -> None:
    c = classify.classify(prompt, classifier())
    assert c.capability == label
    assert set(c.scores) == set(classify.LABELS)
    assert all(isinstance(v, float) for v in c.scores.values())
    ranked = sorted(c.scores.values(), reverse=True)
    assert c.scores[label] == ranked[0]
    assert c.margin == pytest.approx(ranked[0] - ranked[1])
    # features are tokens or neighbouring pairs of tokens of the prompt
    assert 1 <= len(c.features) <= 3
    toks = classify.tokens(prompt)
    pairs = {f"{a} {b}" for a, b in itertools.pairwise(toks)}
    assert all(f in toks or f in pairs for f in c.features), c.features
    named = ", ".join(repr(f) for f in c.features)
    assert c.reason == f"{label} (margin {c.margin:.1f}: {named})"


def test_features_named_are_what_pushed_the_winner() -> None:
    m = classifier()
    c = m.classify("please write a limerick about my cat")
    assert "limerick" in c.features
    # dropping the top feature lowers the winner's lead
    without = m.classify("please write a about my cat")
    assert (
        without.scores["creative"] - max(v for k, v in without.scores.items() if k != "creative")
        < c.margin
    )


def test_low_margin_falls_back_to_the_default() -> None:
    text = "write a limerick about my cat"
    sure = classify.classify(text, classifier(), "chat", 0.0)
    assert sure.capability == "creative"
    unsure = classify.classify(text, classifier(), "analytical", sure.margin + 0.01)
    assert unsure.capability == "analytical"
    assert unsure.margin == sure.margin and unsure.scores == sure.scores
    assert unsure.reason.startswith("analytical (default: low margin ")
    assert "for creative over" in unsure.reason and "'limerick'" in unsure.reason
    lower = classify.classify(text, classifier(), "analytical", sure.margin - 0.01)
    assert lower.capability == "creative"


def test_no_tokens_means_no_signal() -> None:
    for text in ("", "   \n\t "):
        c = classify.classify(text, classifier(), "code")
        assert c.capability == "code" and c.reason == "code (default: no signal)"
        assert c.features == ()


# --------------------------------------------------------------------------- the window


def test_a_huge_prompt_classifies_like_its_window() -> None:
    head = "Please look at this Python stack trace and tell me why it crashes.\n"
    filler = "The quarterly revenue grew in every region and margins held. " * 4000
    tail = "\nTraceback (most recent call last): KeyError: 'user_id'"
    text = head + filler + tail
    assert len(text) > 200_000
    win = classify.window(text)
    assert len(win) == classify.HEAD + classify.TAIL + 1
    assert win.startswith(head) and win.endswith(tail)
    assert classify.classify(text, classifier()) == classify.classify(win, classifier())
    assert len(classify.tokens(text)) <= classify.HEAD + classify.TAIL


def test_tokens_are_cut_and_bounded() -> None:
    toks = classify.tokens("x" * 100 + " ```python\ndef f(): pass```")
    assert toks[:4] == ["x" * 32] * 3 + ["x" * 4]
    assert "```" in toks and "python" in toks
    assert classify.tokens("如何在JavaScript中") == ["如", "何", "在", "javascript", "中"]


# --------------------------------------------------------------------------- training == inference


def test_training_uses_the_inference_feature_function() -> None:
    tc = trainer()
    assert tc.classify is classify
    x = tc.Matrix(["Why does my Rust code panic?", "write a sonnet"])
    f = classify.features("Why does my Rust code panic?")
    row = {
        int(tc.np.asarray(x.buckets)[x.idx[i]]): float(x.val[i])
        for i in range(x.indptr[0], x.indptr[1])
    }
    norm = math.sqrt(sum(f.values()))
    assert row == pytest.approx({b: n / norm for b, n in f.items()})


def test_the_hashes_are_fixed() -> None:
    # crc32 of the UTF-8 bytes: the same on every platform, Python version and
    # PYTHONHASHSEED, so a model trained anywhere reads the same everywhere
    code = (
        "from traywire.core import classify as c; "
        "print(c.left_bucket('python'), c.right_hash('python'), *c.gram_buckets('ab'), "
        "c.pair_bucket('how', 'many'), c.left_bucket('ελληνικά'))"
    )
    for seed in ("0", "123"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT / "src")},
        )
        golden = "258370 230380 181600 86504 194776 50028 209250"
        assert out.stdout.split() == golden.split()


def test_fast_scores_equal_the_reference_features() -> None:
    m = classifier()
    texts = [r["text"] for r in rows(DATA / "corpus.jsonl")[::25]]
    texts += ["", "a", "a b", "12 345 6789", "日本語のテキスト", "x" * 500]
    for text in texts:
        feats = classify.features(text)
        got = m.classify(text)
        if not feats:
            assert got.reason.endswith("(default: no signal)")
            continue
        norm = math.sqrt(sum(feats.values()))
        for k, label in enumerate(classify.LABELS):
            ref = m.bias[k] + m.scale * sum(m.weight(k, b) * n for b, n in feats.items()) / norm
            assert got.scores[label] == pytest.approx(ref, abs=1e-9), (text, label)


def test_retraining_reproduces_the_same_weights(tmp_path: Path) -> None:
    tc = trainer()
    data = rows(DATA / "corpus.jsonl")
    subset = [r for r in data if not r.get("aug")][::12]
    lexicon = tc.load_lexicon(DATA / "lexicon.txt")[::10]
    train = subset + [{**r, "lexicon": True} for r in lexicon]
    texts = tc.vocabulary(subset[::5], lexicon, DATA / "words.txt")
    blobs = []
    for _ in range(2):
        m = tc.train(train, {"test": 1})
        m.preload(texts)
        blobs.append(encode(m))
    first, second = blobs
    assert first == second
    back = decode(first)
    assert encode(back) == first
    assert len(back.vocabulary) > 1000
    # the small model already separates the use cases on its own training prompts
    right = sum(back.classify(r["text"]).capability == r["label"] for r in subset)
    assert right / len(subset) > 0.9


def test_eval_command_prints_accuracy_and_confusion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tc = trainer()
    assert tc.main(["--eval", str(DATA / "dev.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "(rows: true label)" in out


# --------------------------------------------------------------------------- runtime


def test_the_core_reads_no_file_and_the_config_reads_the_model_once() -> None:
    code = (
        "import sys, builtins; from traywire.core import classify, routing; "
        "bad = [m for m in ('numpy', 'aiohttp', 'yaml', 'importlib.resources') "
        "if m in sys.modules]; assert not bad, bad; "
        "from traywire.config.classifier import classifier; "
        "assert classifier() is classifier(); "
        "assert classifier().classify('write a haiku about rain').capability == 'creative'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT / "src")})


def test_the_token_cache_stays_bounded() -> None:
    m = decode((ROOT / "src" / "traywire" / "config" / MODEL_FILE).read_bytes())
    shipped = m.vocabulary
    for i in range(0, 30_000, 1000):
        m.classify(" ".join(f"w{i + j}x" for j in range(1000)))
    assert len(m._cache) <= 20_000
    assert m.vocabulary == shipped  # what is forgotten is only what was learned
    m.forget()
    # the file's vocabulary stays in its columns, read into the cache as met
    assert len(m._cache) == len(m._left) == len(m._right) == 0
    assert m.vocabulary == shipped


# --------------------------------------------------------------------------- the vocabulary


def bare(m: classify.Model) -> classify.Model:
    """The same weights without the shipped vocabulary."""
    return classify.Model(m.tables, m.scale, m.bias, m.meta)


def test_the_vocabulary_holds_the_corpus_lexicon_and_word_list() -> None:
    tc = trainer()
    texts = tc.vocabulary(
        tc.load(DATA / "corpus.jsonl"), tc.load_lexicon(DATA / "lexicon.txt"), DATA / "words.txt"
    )
    expected = {t for text in texts for t in classify.tokens(text)}
    assert set(classifier().vocabulary) == expected
    assert {"python", "function", "2024", "haiku", "the", "?"} <= expected


def reference_entry(m: classify.Model, tok: str) -> classify.Known:
    """A token's entry from the reference definitions, one weight at a time."""
    ids = classify.token_buckets(tok)
    sums = tuple(sum(m.weight(k, b) for b in ids) for k in range(len(classify.LABELS)))
    form = classify.feature_token(tok)
    return (len(ids), *sums), classify.left_bucket(form), classify.right_hash(form)


def test_shipped_sums_equal_what_the_model_computes() -> None:
    m = classifier()
    vocab = m.vocabulary
    sample = [*list(vocab)[::37], "2024", "0", "python", "?", "日", "x" * 32]
    sample = [t for t in sample if t in vocab]
    assert len(sample) > 200
    assert any(not t.isascii() for t in sample) and any(t.isdigit() for t in sample)
    for tok in sample:
        assert vocab[tok] == m.entry(tok) == reference_entry(m, tok), tok
    # and for any token, shipped or not, of every length and kind
    for tok in ["", "a", "ab", "q" * 32, "zzqx", "123456", "ελληνικά", "日", "€", "»»"]:
        assert m.entry(tok) == reference_entry(m, tok), tok


@pytest.mark.parametrize("path", EVAL_FILES, ids=[p.name for p in EVAL_FILES])
def test_the_vocabulary_changes_no_classification(path: Path) -> None:
    auto = config.load(user_file=False).auto
    shipped = decode((ROOT / "src" / "traywire" / "config" / MODEL_FILE).read_bytes())
    assert shipped.vocabulary
    without = bare(shipped)
    for r in rows(path):
        a = shipped.classify(r["text"], auto.default, auto.min_margin)
        b = without.classify(r["text"], auto.default, auto.min_margin)
        assert a == b, r["text"]  # capability, scores, margin, reason, features
        assert a.capability == b.capability and a.margin == b.margin
    # warm (every token met) as cold
    for r in rows(path)[::7]:
        assert shipped.classify(r["text"]) == without.classify(r["text"])


def test_a_vocabulary_from_other_weights_is_refused() -> None:
    m = classifier()
    raw = m.to_raw()
    assert classify.Model.from_raw(raw).vocabulary == m.vocabulary
    # the first two use cases' weights swapped: the sums no longer fit them
    head, size = raw.index(b"\n") + 1, classify.BUCKETS
    other = raw[:head] + raw[head + size : head + 2 * size] + raw[head : head + size]
    other += raw[head + 2 * size :]
    assert len(other) == len(raw)
    with pytest.raises(ValueError, match="does not match the weights"):
        classify.Model.from_raw(other)
    with pytest.raises(ValueError, match="vocabulary"):
        classify.Model.from_raw(raw[:-1])
    plain = bare(m).to_raw()
    assert b"vocab" not in plain.split(b"\n", 1)[0]
    assert not classify.Model.from_raw(plain).vocabulary


# --------------------------------------------------------------------------- config and routing


def test_min_margin_is_configurable_and_validated(tmp_path: Path) -> None:
    assert config.load(user_file=False).auto.min_margin == config.AutoSettings().min_margin
    path = tmp_path / "t.yaml"
    path.write_text("auto:\n  default: chat\n  min_margin: 1.5\n", encoding="utf-8")
    assert config.load(path, user_file=False).auto.min_margin == 1.5
    for bad in ("-1", "fast", "50"):
        path.write_text(f"auto:\n  min_margin: {bad}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="min_margin"):
            config.load(path, user_file=False)


def test_routing_passes_min_margin() -> None:
    cfg = config.load(user_file=False)
    text = "write a limerick about my cat"
    r = RouteRequest("auto", text, text)
    assert routing.decide(r, cfg).capability == "creative"
    unsure = replace(cfg, auto=replace(cfg.auto, min_margin=99.0))
    d = routing.decide(r, unsure)
    assert d.capability == "chat" and d.route == "chat"
    assert d.plan[0].reason.startswith("auto → chat (default: low margin")
