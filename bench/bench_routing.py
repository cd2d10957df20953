"""Time the routing decision (issue: median < 30 µs short chat, < 2 ms for 200k chars).

    .venv/bin/python bench/bench_routing.py

Each case is timed in batches; the figure is the median time per decision over
the batches, with the request already parsed (what the proxy does per request)
and, separately, parse + decide from the JSON body.

Then the `auto` classifier alone (targets: < 50 µs for a 200-character prompt,
< 2 ms for a 200,000-character one): warm is the steady state (every token of
the prompt already summed: shipped in the model's vocabulary or met before);
cold is the model as loaded, before every call (the shipped vocabulary, no
token met yet: `Model.forget`); "no vocab" is colder still: a model without
the shipped vocabulary, emptied before every call, so every token is summed.
The cold figures include emptying the cache.
"""

from __future__ import annotations

import statistics
import time
from types import MappingProxyType

from traywire import config
from traywire.config.classifier import classifier
from traywire.core import request, routing
from traywire.core.classify import Model
from traywire.types import BackendState, LiveState

CFG = config.load(user_file=False)
STATE = LiveState(
    backends=MappingProxyType(
        {b: BackendState(in_flight=1, latency_ms=120.0) for b in CFG.backends}
    ),
    usage=MappingProxyType({"llama3.1:latest": 5000, "gpt-oss:120b-cloud": 300}),
    random=0.42,
)
BIG = ("The quarterly numbers show a steady rise in revenue across regions. " * 3000)[:200_000]

CASES = [
    ("short chat, model=chat", "chat", "hello, how are you?"),
    ("short chat, model=auto", "auto", "hello, how are you?"),
    ("short chat, explicit model", "llama3.1:latest", "hello, how are you?"),
    ("code, complexity band", "code", "write a python function that reverses a string"),
    ("200,000-char prompt, auto", "auto", BIG),
    ("200,000-char prompt, large_context", "large_context", BIG),
]


def big_config(n: int = 1000) -> config.Config:
    """``n`` models on 10 backends (half local, half cloud), each with a
    fallback chain of three; every route (and so ``auto``) names all of them."""
    lines = ["extends: none", "backends:"]
    for b in range(10):
        loc = "local" if b % 2 == 0 else "cloud"
        lines += [f"  b{b}:", "    kind: openai", f'    url: "http://127.0.0.1:{9000 + b}/v1"',
                  f"    location: {loc}", "    capacity: 8"]  # fmt: skip
    lines.append("models:")
    for i in range(n):
        lines += [f"  m{i}:", f"    backend: b{i % 10}", f"    params_b: {1 + i % 70}",
                  f"    tier: {'local' if i % 2 == 0 else 'cloud_standard'}",
                  "    capabilities: [chat, code, reasoning, analytical, creative]",
                  "    context: 32768"]  # fmt: skip
    lines.append("fallbacks:")
    for i in range(n):
        lines.append(f"  m{i}: [m{(i + 1) % n}, m{(i + 2) % n}, m{(i + 3) % n}]")
    lines.append("routes:")
    names = ", ".join(f"m{i}" for i in range(n))
    for r in ("chat", "code", "reasoning", "analytical", "creative"):
        lines += [f"  {r}:", "    strategy: usage_based", f"    candidates: [{names}]"]
    lines += ["auto:", "  default: chat"]
    return config.load_texts([("<1000 models>", "\n".join(lines) + "\n")])


def timeit(fn: object, batch: int, batches: int = 15) -> float:
    f = fn  # type: ignore[assignment]
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(batch):
            f()  # type: ignore[operator]
        samples.append((time.perf_counter_ns() - t0) / batch)
    return statistics.median(samples) / 1000.0  # µs


PROMPT_200 = (
    "Hi! Could you help me write a Python function that reads a CSV of daily sales, "
    "groups the rows by month and returns the total per month? I'd like type hints "
    "and a short test too. Thanks a lot!"
)[:200]
BIG_TEXT = (
    "Quarterly review: revenue rose in the north, fell in the south; churn is stable; "
    "hiring paused; the new warehouse opened late. What should we prioritise next? "
) * 1300


def main() -> None:
    print(f"{'case':40} {'decide µs':>10} {'parse+decide µs':>16}")
    for label, model, text in CASES:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        r = request.parse("openai", "chat", body).route
        batch = 2000 if len(text) < 1000 else 100
        decide = timeit(lambda r=r: routing.decide(r, CFG, STATE), batch)
        full = timeit(
            lambda b=body: routing.decide(request.parse("openai", "chat", b).route, CFG, STATE),
            batch,
        )
        print(f"{label:40} {decide:10.1f} {full:16.1f}")

    t0 = time.perf_counter()
    big = big_config()
    load_s = time.perf_counter() - t0
    big_state = LiveState(
        backends=MappingProxyType({b: BackendState(in_flight=1) for b in big.backends}),
        random=0.42,
    )
    print(f"\n1,000 models (config loaded in {load_s * 1e3:.0f} ms; routes name all of them)")
    big_cases = (
        ("short chat, model=auto", "auto"),
        ("short chat, model=chat", "chat"),
        ("short chat, explicit model", "m7"),
    )
    for label, model_name in big_cases:
        body = {
            "model": model_name,
            "messages": [{"role": "user", "content": "hello, how are you?"}],
        }
        r = request.parse("openai", "chat", body).route
        us = timeit(lambda r=r: routing.decide(r, big, big_state), 200)
        plan = len(routing.decide(r, big, big_state).plan)
        print(f"{label:40} {us:10.1f}   (plan of {plan})")

    model = classifier()
    bare = Model(model.tables, model.scale, model.bias)  # no shipped vocabulary
    margin = CFG.auto.min_margin

    def cold(text: str) -> None:
        model.forget()  # as loaded: the vocabulary, no token met yet
        model.classify(text, "chat", margin)

    def colder(text: str) -> None:
        bare.forget()  # every token is new to it
        bare.classify(text, "chat", margin)

    print(f"\n{'classifier alone':40} {'warm µs':>10} {'cold µs':>16} {'no vocab µs':>12}")
    for label, text in (
        (f"{len(PROMPT_200)}-char prompt", PROMPT_200),
        (f"{len(BIG_TEXT):,}-char prompt (repeated text)", BIG_TEXT),
        (f"{len(BIG):,}-char prompt (bench text above)", BIG),
    ):
        batch = 2000 if len(text) < 1000 else 50
        warm = timeit(lambda t=text: model.classify(t, "chat", margin), batch)
        chill = timeit(lambda t=text: cold(t), max(batch // 10, 5))
        chillier = timeit(lambda t=text: colder(t), max(batch // 10, 5))
        print(f"{label:40} {warm:10.1f} {chill:16.1f} {chillier:12.1f}")


if __name__ == "__main__":
    main()
