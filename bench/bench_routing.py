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
