"""Plans stay short: at most ``max_attempts`` attempts, and a route's
candidates ranked lazily (per-backend runs merged) in exactly the order a
plain stable sort by the strategy's key gives."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traywire import config
from traywire.core import routing, strategies
from traywire.errors import ConfigError
from traywire.types import BackendState, LiveState, RouteRequest

N_BACKENDS = 5


def _config(n: int, strategy: str, extra: str = "", weights: bool = False) -> config.Config:
    lines = ["extends: none", "backends:"]
    for b in range(N_BACKENDS):
        lines += [f"  b{b}:", "    kind: openai", f'    url: "http://127.0.0.1:{9000 + b}/v1"',
                  f"    location: {'local' if b % 2 == 0 else 'cloud'}",
                  f"    capacity: {1 + b}"]  # fmt: skip
    lines.append("models:")
    for i in range(n):
        lines += [f"  m{i}:", f"    backend: b{(i * 7) % N_BACKENDS}", "    params_b: 1",
                  "    tier: local", "    capabilities: [chat]",
                  f"    context: {4096 * (1 + i % 3)}"]  # fmt: skip
    lines.append("fallbacks:")
    lines += [f"  m{i}: [m{(i + 1) % n}, m{(i + 2) % n}]" for i in range(n)]
    cands = ", ".join(f"{{model: m{i}, weight: {i % 4}}}" if weights else f"m{i}" for i in range(n))
    lines += [
        "routes:",
        "  chat:",
        f"    strategy: {strategy}",
        f"    candidates: [{cands}]",
    ]
    return config.load_texts([("test.yaml", "\n".join(lines) + "\n" + extra)])


SORTS = ("least_loaded", "fastest_response", "usage_based", "most_capacity")
CFGS = {s: _config(40, s, weights=True) for s in SORTS}


@settings(max_examples=60, deadline=None)
@given(
    strategy=st.sampled_from(SORTS),
    in_flight=st.lists(st.integers(0, 6), min_size=N_BACKENDS, max_size=N_BACKENDS),
    latency=st.lists(
        st.none() | st.floats(1, 50).map(round), min_size=N_BACKENDS, max_size=N_BACKENDS
    ),
    usage=st.dictionaries(
        st.integers(0, 39).map(lambda i: f"m{i}"), st.integers(0, 5), max_size=12
    ),
)
def test_lazy_ranking_is_the_stable_sort_by_the_strategys_key(
    strategy: str, in_flight: list[int], latency: list[float | None], usage: dict[str, int]
) -> None:
    cfg = CFGS[strategy]
    s = LiveState(
        backends=MappingProxyType(
            {
                f"b{b}": BackendState(in_flight=in_flight[b], latency_ms=latency[b])
                for b in range(N_BACKENDS)
            }
        ),
        usage=MappingProxyType(usage),
    )
    route = cfg.routes["chat"]

    def backend(m: str) -> BackendState:
        return s.backends[cfg.models[m].backend]

    def load(m: str) -> float:
        return backend(m).in_flight / cfg.backends[cfg.models[m].backend].capacity

    keys = {
        "least_loaded": lambda c: load(c.model),
        "fastest_response": lambda c: (backend(c.model).latency_ms is None,
                                       backend(c.model).latency_ms or 0.0),
        "usage_based": lambda c: usage.get(c.model, 0) / c.weight if c.weight > 0 else float("inf"),
        "most_capacity": lambda c: (-cfg.models[c.model].context, load(c.model)),
    }  # fmt: skip
    want = sorted(route.candidates, key=keys[strategy])
    got, _ = strategies.order(route, cfg, s, 10, 100)
    assert [c.model for c in got] == [c.model for c in want]


def _ask(cfg: config.Config, model: str = "chat") -> list[str]:
    d = routing.decide(RouteRequest(model, "hello", "hello", None, 1), cfg, LiveState())
    return [a.model for a in d.plan]


@pytest.mark.parametrize("strategy", [*SORTS, "direct"])
def test_a_plan_holds_max_attempts_from_the_head_of_the_order(strategy: str) -> None:
    big = _config(1000, strategy)
    plan = _ask(big)
    assert len(plan) == 16  # the schema's default
    assert len(set(plan)) == 16
    small = _config(1000, strategy, extra="max_attempts: 3\n")
    assert _ask(small) == plan[:3]


def test_a_model_asked_by_name_keeps_its_chain_within_the_cap() -> None:
    cfg = _config(30, "direct", extra="max_attempts: 2\n")
    assert _ask(cfg, "m5") == ["m5", "m6"]
    assert _ask(_config(30, "direct"), "m5") == ["m5", "m6", "m7"]


def test_max_attempts_must_be_a_positive_integer() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        _config(3, "direct", extra="max_attempts: 0\n")
