"""The routing core against the v1.7 design (shared/seed/routing-architecture-v1.7.txt)."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traywire import config
from traywire.core import routing
from traywire.errors import UnknownModelError
from traywire.types import BackendState, Decision, LiveState, RouteRequest

CFG = config.load(user_file=False)

DEEPSEEK = "deepseek-v3.1:671b-cloud"
KIMI = "kimi-k2:1t-cloud"
QWEN3 = "qwen3-coder:480b-cloud"
OSS120 = "gpt-oss:120b-cloud"
OSS20 = "gpt-oss:20b-cloud"
GLM = "glm-4.6:cloud"
CODER7 = "qwen2.5-coder:7b"
LLAMA = "llama3.1:latest"
MYTHO = "mythomax-l2-13b"
VLLM_QWEN = "qwen-coder-vllm"
DOLPHIN = "dolphin-vllm"

# The design's chains, copied by hand from the seed.
SEED_CHAINS = {
    DEEPSEEK: [KIMI, OSS120, LLAMA],
    KIMI: [DEEPSEEK, OSS120, LLAMA],
    QWEN3: [OSS120, VLLM_QWEN, CODER7],
    OSS120: [OSS20, LLAMA, MYTHO],
    OSS20: [GLM, LLAMA],
    GLM: [LLAMA, MYTHO],
    CODER7: [VLLM_QWEN, LLAMA],
    LLAMA: [MYTHO, OSS20],
    MYTHO: [LLAMA, OSS120],
}


def req(model: str, prompt: str = "hello", max_tokens: int | None = None) -> RouteRequest:
    return RouteRequest(model, prompt, prompt, max_tokens, 1)


def with_tokens(model: str, tokens: int, max_tokens: int | None = None) -> RouteRequest:
    """A request whose estimated prompt is exactly `tokens` (framing: 4 + 3)."""
    r = req(model, "x" * ((tokens - 7) * 4), max_tokens)
    assert routing.decide(r, CFG).prompt_tokens == tokens
    return r


def models(d: Decision) -> list[str]:
    return [a.model for a in d.plan]


def state(**backends: BackendState) -> LiveState:
    return LiveState(backends=MappingProxyType(backends))


def overlay(text: str) -> config.Config:
    return config.load_texts([("default", config.default_config_text()), ("overlay.yaml", text)])


# --------------------------------------------------------------------------- chains


@pytest.mark.parametrize("head", list(SEED_CHAINS))
def test_every_seed_chain_is_configured_and_planned(head: str) -> None:
    assert list(CFG.fallbacks[head]) == SEED_CHAINS[head]
    d = routing.decide(req(head), CFG)
    assert models(d) == [head, *SEED_CHAINS[head]]
    assert d.plan[0].reason == "requested by name"
    for i, a in enumerate(d.plan[1:], 1):
        assert a.reason.startswith(f"fallback {i} of {head}'s chain")
    # the plan names the backend and the upstream id the backend knows
    for a in d.plan:
        assert a.backend == CFG.models[a.model].backend
        assert a.upstream_model == CFG.models[a.model].upstream


def test_cloud_models_go_to_ollama_cloud_under_their_upstream_names() -> None:
    d = routing.decide(req(DEEPSEEK), CFG)
    assert (d.plan[0].backend, d.plan[0].upstream_model) == ("ollama_cloud", "deepseek-v3.1:671b")
    assert d.plan[-1].backend == "ollama"


def test_chain_reasons_show_parameter_change() -> None:
    d = routing.decide(req(DEEPSEEK), CFG)
    assert "+49% params" in d.plan[1].reason
    assert "-99% params" in d.plan[3].reason


def test_name_without_tag_means_latest() -> None:
    assert models(routing.decide(req("llama3.1"), CFG))[0] == LLAMA


def test_latest_tag_matches_both_ways() -> None:
    assert routing.decide(req("llama3.1"), CFG).plan[0].model == LLAMA
    # Ollama clients add ":latest" to a name without a tag
    assert routing.decide(req(f"{MYTHO}:latest"), CFG).plan[0].model == MYTHO


def test_unknown_model_lists_the_names_the_user_can_ask_for() -> None:
    with pytest.raises(UnknownModelError) as exc:
        routing.decide(req("no-such-model-9"), CFG)
    msg = str(exc.value)
    assert "'no-such-model-9'" in msg
    for name in ("auto", "code", DEEPSEEK, LLAMA, "large_context"):
        assert name in msg


# --------------------------------------------------------------------------- routes vs seed


SEED_ROUTES = {
    "code": ("complexity_based", [QWEN3, VLLM_QWEN, CODER7]),
    "analytical": ("context_based", [DEEPSEEK, KIMI, CODER7]),
    "reasoning": ("direct", [DEEPSEEK, KIMI, LLAMA]),
    "creative": ("usage_based", [MYTHO, LLAMA, OSS120]),
    "chat": ("usage_based", [LLAMA, OSS120, OSS20, GLM]),
    "high_throughput": ("least_loaded", [VLLM_QWEN]),
    "low_latency": ("fastest_response", ["llama-cpp-native", "llama-cpp-python"]),
    "large_context": ("most_capacity", [KIMI, "llama-cpp-python"]),
}


@pytest.mark.parametrize("name", list(SEED_ROUTES))
def test_every_seed_route_is_configured(name: str) -> None:
    strategy, cands = SEED_ROUTES[name]
    route = CFG.routes[name]
    assert route.strategy == strategy
    assert [c.model for c in route.candidates] == cands
    d = routing.decide(req(name), CFG)
    assert d.route == name and d.strategy == strategy
    assert d.plan, d


def test_performance_routes_reach_the_seed_backends() -> None:
    assert routing.decide(req("high_throughput"), CFG).plan[0].backend == "vllm_qwen"
    low = routing.decide(req("low_latency"), CFG)
    assert [a.backend for a in low.plan[:2]] == ["llama_cpp_native", "llama_cpp_python"]
    big = routing.decide(req("large_context"), CFG)
    assert big.plan[0].model == KIMI
    assert "llama_cpp_python" in [a.backend for a in big.plan]


@pytest.mark.parametrize(
    ("tokens", "first", "band"),
    [
        (8, CODER7, "simple"),
        (49, CODER7, "simple"),
        (50, VLLM_QWEN, "medium"),
        (100, VLLM_QWEN, "medium"),
        (101, QWEN3, "complex"),
        (5000, QWEN3, "complex"),
    ],
)
def test_code_complexity_bands(tokens: int, first: str, band: str) -> None:
    d = routing.decide(with_tokens("code", tokens), CFG)
    assert d.capability == "code"
    assert d.plan[0].model == first
    assert f"band {band}" in d.plan[0].reason
    assert d.plan[0].reason.startswith("route code (complexity_based)")


def test_code_band_weights_are_the_seeds() -> None:
    bands = CFG.routes["code"].bands
    assert [(b.label, b.upto, [(c.model, c.weight) for c in b.candidates]) for b in bands] == [
        ("simple", 49, [(CODER7, 30)]),
        ("medium", 100, [(VLLM_QWEN, 50)]),
        ("complex", None, [(QWEN3, 20)]),
    ]


def test_complex_code_keeps_code_capability_down_the_chain() -> None:
    d = routing.decide(with_tokens("code", 300), CFG)
    assert models(d) == [QWEN3, OSS120, VLLM_QWEN, CODER7]
    assert all("code" in CFG.models[m].capabilities for m in models(d))


@pytest.mark.parametrize(
    ("max_tokens", "first", "band"),
    [(None, MYTHO, "standard"), (700, MYTHO, "standard"), (2000, OSS120, "long")],
)
def test_creative_length_bands(max_tokens: int | None, first: str, band: str) -> None:
    d = routing.decide(req("creative", "Write a story about a lighthouse", max_tokens), CFG)
    assert d.plan[0].model == first
    assert f"band {band}" in d.plan[0].reason


def test_creative_long_prompt_goes_to_the_high_quality_band() -> None:
    d = routing.decide(with_tokens("creative", 900, max_tokens=200), CFG)
    assert d.plan[0].model == OSS120
    assert [
        (b.label, [(c.model, c.weight) for c in b.candidates]) for b in CFG.routes["creative"].bands
    ] == [("standard", [(MYTHO, 70)]), ("long", [(OSS120, 30)])]


# --------------------------------------------------------------------------- strategies


def test_direct_keeps_listed_order() -> None:
    assert models(routing.decide(req("reasoning"), CFG)) == [DEEPSEEK, KIMI, OSS120, LLAMA]


def test_weighted_uses_the_snapshot_draw() -> None:
    cfg = overlay(
        "routes:\n  pool:\n    strategy: weighted\n    candidates:\n"
        f"      - {{model: {LLAMA}, weight: 1}}\n      - {{model: {MYTHO}, weight: 3}}\n"
    )
    assert routing.decide(req("pool"), cfg, LiveState(random=0.2)).plan[0].model == LLAMA
    assert routing.decide(req("pool"), cfg, LiveState(random=0.3)).plan[0].model == MYTHO
    assert routing.decide(req("pool"), cfg, LiveState(random=0.99)).plan[0].model == MYTHO


def test_weighted_choice_within_a_band() -> None:
    cfg = overlay(
        "routes:\n  code:\n    bands:\n"
        f"      - {{upto: 49, candidates: [{{model: {CODER7}, weight: 30}}, "
        f"{{model: {VLLM_QWEN}, weight: 70}}]}}\n"
        f"      - {{candidates: [{QWEN3}]}}\n"
    )
    assert routing.decide(req("code"), cfg, LiveState(random=0.1)).plan[0].model == CODER7
    assert routing.decide(req("code"), cfg, LiveState(random=0.5)).plan[0].model == VLLM_QWEN


def test_least_loaded_uses_in_flight_over_capacity() -> None:
    cfg = overlay(
        "routes:\n  pool:\n    strategy: least_loaded\n"
        "    candidates: [llama-cpp-native, qwen-coder-vllm]\n"
    )
    # native: 1/2 = 0.5; vllm: 4/16 = 0.25
    s = state(llama_cpp_native=BackendState(in_flight=1), vllm_qwen=BackendState(in_flight=4))
    d = routing.decide(req("pool"), cfg, s)
    assert d.plan[0].model == VLLM_QWEN
    assert "least loaded (4/16 in flight)" in d.plan[0].reason
    s = state(llama_cpp_native=BackendState(in_flight=0), vllm_qwen=BackendState(in_flight=4))
    assert routing.decide(req("pool"), cfg, s).plan[0].model == "llama-cpp-native"


def test_fastest_response_uses_smoothed_latency() -> None:
    s = state(
        llama_cpp_native=BackendState(latency_ms=300.0),
        llama_cpp_python=BackendState(latency_ms=120.0),
    )
    d = routing.decide(req("low_latency"), CFG, s)
    assert d.plan[0].model == "llama-cpp-python"
    assert "120 ms" in d.plan[0].reason
    # an unmeasured backend goes after measured ones
    s = state(llama_cpp_python=BackendState(latency_ms=900.0))
    assert routing.decide(req("low_latency"), CFG, s).plan[0].model == "llama-cpp-python"


def test_usage_based_balances_tokens_by_weight() -> None:
    # llama3.1 weight 70 with 7,000 tokens (100/weight) vs gpt-oss:120b weight 10 with 500 (50)
    s = LiveState(usage=MappingProxyType({LLAMA: 7000, OSS120: 500, OSS20: 900, GLM: 2000}))
    d = routing.decide(req("chat"), CFG, s)
    assert d.plan[0].model == OSS120
    assert "least used (500 tokens in window)" in d.plan[0].reason
    s = LiveState(usage=MappingProxyType({LLAMA: 100, OSS120: 500, OSS20: 500, GLM: 500}))
    assert routing.decide(req("chat"), CFG, s).plan[0].model == LLAMA


def test_most_capacity_prefers_the_largest_window_then_free_capacity() -> None:
    cfg = overlay(
        "routes:\n  big:\n    strategy: most_capacity\n"
        f"    candidates: [llama-cpp-python, {QWEN3}, {KIMI}]\n"
    )
    # kimi and qwen3-coder both hold 262,144; both on ollama_cloud, so equal load -> list order
    assert models(routing.decide(req("big"), cfg))[:2] == [QWEN3, OSS120]
    cfg2 = overlay(
        "routes:\n  big:\n    strategy: most_capacity\n"
        "    candidates: [llama-cpp-native, mythomax-l2-13b, qwen-coder-vllm]\n"
    )
    assert routing.decide(req("big"), cfg2).plan[0].model == VLLM_QWEN


def test_context_based_moves_past_windows_without_headroom() -> None:
    # 150k tokens: deepseek's 163,840 holds it, but not with 25% headroom; kimi's 262,144 does.
    d = routing.decide(with_tokens("analytical", 150_000), CFG)
    assert d.plan[0].model == KIMI
    assert DEEPSEEK in models(d)
    assert CODER7 in [s.model for s in d.skipped]
    small = routing.decide(req("analytical", "Compare these two tables"), CFG)
    assert small.plan[0].model == DEEPSEEK


# --------------------------------------------------------------------------- context


def test_models_whose_window_is_too_small_are_skipped_with_the_reason() -> None:
    d = routing.decide(req(MYTHO, "Write a saga", max_tokens=6000), CFG)
    assert MYTHO not in models(d)
    skip = next(s for s in d.skipped if s.model == MYTHO)
    assert "window too small" in skip.reason and "4096" in skip.reason
    assert models(d) == [LLAMA, OSS120]  # llama3.1's 8,192 holds 6,000 + the prompt


def test_no_model_fits_gives_an_empty_plan_that_says_why() -> None:
    d = routing.decide(with_tokens(LLAMA, 300_000), CFG)
    assert d.plan == ()
    assert "window too small" in d.note


# --------------------------------------------------------------------------- saturation


def test_saturated_local_backend_overflows_to_cloud() -> None:
    s = state(ollama=BackendState(in_flight=4))  # 4/4 >= 80%
    d = routing.decide(req("code", "write a python function"), CFG, s)
    assert d.plan[0].model == QWEN3
    assert "overflow: ollama saturated (4/4 in flight ≥ 80%)" in d.plan[0].reason
    assert d.plan[1].model == CODER7  # the saturated choice goes right behind it


def test_saturation_threshold_is_eighty_percent_of_capacity() -> None:
    medium = with_tokens("code", 70)
    below = routing.decide(medium, CFG, state(vllm_qwen=BackendState(in_flight=12)))  # 75%
    assert below.plan[0].model == VLLM_QWEN
    at = routing.decide(medium, CFG, state(vllm_qwen=BackendState(in_flight=13)))  # 81%
    assert at.plan[0].model == QWEN3
    assert at.plan[1].model == VLLM_QWEN


def test_saturation_threshold_is_configurable() -> None:
    cfg = overlay("saturation: 0.5\n")
    d = routing.decide(req("code", "fix my bug"), cfg, state(ollama=BackendState(in_flight=2)))
    assert d.plan[0].backend == "ollama_cloud"


def test_under_prefer_local_overflow_goes_to_the_next_local_backend() -> None:
    s = LiveState(
        backends=MappingProxyType({"ollama": BackendState(in_flight=4)}), preference="prefer_local"
    )
    d = routing.decide(req("code", "write a python function"), CFG, s)
    assert d.plan[0].model == VLLM_QWEN
    assert "overflow" in d.plan[0].reason


def test_overflow_never_targets_an_open_circuit() -> None:
    s = state(ollama=BackendState(in_flight=4), ollama_cloud=BackendState(circuit="open"))
    d = routing.decide(req("code", "write a python function"), CFG, s)
    assert d.plan[0].model == VLLM_QWEN


# --------------------------------------------------------------------------- health


def test_open_circuits_are_tried_last() -> None:
    s = state(ollama_cloud=BackendState(circuit="open"))
    d = routing.decide(req(DEEPSEEK), CFG, s)
    assert models(d) == [LLAMA, DEEPSEEK, KIMI, OSS120]
    assert all("circuit open on ollama_cloud" in a.reason for a in d.plan[1:])


def test_when_every_candidate_is_down_the_plan_still_tries_them_in_order() -> None:
    s = state(ollama_cloud=BackendState(circuit="open"), ollama=BackendState(circuit="open"))
    d = routing.decide(req(DEEPSEEK), CFG, s)
    assert models(d) == [DEEPSEEK, KIMI, OSS120, LLAMA]
    assert all("every candidate is down" in a.reason for a in d.plan)


def test_half_open_circuit_gets_its_trial() -> None:
    d = routing.decide(req(DEEPSEEK), CFG, state(ollama_cloud=BackendState(circuit="half_open")))
    assert d.plan[0].model == DEEPSEEK


def test_a_backend_not_serving_the_model_is_tried_last() -> None:
    upstream = CFG.models[VLLM_QWEN].upstream
    s = state(vllm_qwen=BackendState(missing_models=frozenset({upstream})))
    d = routing.decide(with_tokens("code", 70), CFG, s)
    assert d.plan[0].model == CODER7
    assert d.plan[-1].model == VLLM_QWEN and "does not list" in d.plan[-1].reason


def test_cloud_backend_without_key_is_skipped_with_that_reason() -> None:
    d = routing.decide(req(DEEPSEEK), CFG, state(ollama_cloud=BackendState(no_key=True)))
    assert models(d) == [LLAMA]
    assert all("no key for ollama_cloud" in s.reason for s in d.skipped)


def test_disabled_backend_never_appears() -> None:
    cfg = overlay("backends:\n  ollama_cloud:\n    enabled: false\n")
    d = routing.decide(req("reasoning"), cfg)
    assert models(d) == [LLAMA]
    assert {s.reason for s in d.skipped} == {"backend ollama_cloud is disabled"}


# --------------------------------------------------------------------------- preference


def test_local_only_never_plans_cloud() -> None:
    s = LiveState(preference="local_only")
    d = routing.decide(req(QWEN3), CFG, s)
    assert models(d) == [VLLM_QWEN, CODER7]
    assert {a.backend for a in d.plan} <= {"ollama", "vllm_qwen"}
    assert any("local_only" in sk.reason for sk in d.skipped)
    assert models(routing.decide(req("reasoning"), CFG, s)) == [LLAMA]


def test_local_only_with_nothing_local_gives_an_empty_plan_and_says_so() -> None:
    d = routing.decide(with_tokens("analytical", 50_000), CFG, LiveState(preference="local_only"))
    assert d.plan == ()
    assert d.note.startswith("local_only: no local model can serve 'analytical'")


def test_cloud_only_never_plans_local() -> None:
    d = routing.decide(req("chat"), CFG, LiveState(preference="cloud_only"))
    assert d.plan and all(CFG.backends[a.backend].location == "cloud" for a in d.plan)
    d = routing.decide(req("low_latency"), CFG, LiveState(preference="cloud_only"))
    assert d.plan == () and d.note.startswith("cloud_only")


def test_prefer_local_puts_capable_local_models_first() -> None:
    d = routing.decide(with_tokens("code", 300), CFG, LiveState(preference="prefer_local"))
    assert models(d) == [VLLM_QWEN, CODER7, QWEN3, OSS120]
    assert "moved ahead: prefer_local" in d.plan[0].reason
    d = routing.decide(req("reasoning"), CFG, LiveState(preference="prefer_local"))
    assert d.plan[0].model == LLAMA


def test_prefer_cloud_keeps_capability_preservation() -> None:
    d = routing.decide(req("code", "fix this bug"), CFG, LiveState(preference="prefer_cloud"))
    # the cloud code models come first; the general llama3.1 stays behind every code model
    assert models(d) == [QWEN3, OSS120, CODER7, VLLM_QWEN, LLAMA]


def test_a_model_asked_for_by_name_stays_first_under_a_preference() -> None:
    d = routing.decide(req(DEEPSEEK), CFG, LiveState(preference="prefer_local"))
    assert models(d) == [DEEPSEEK, LLAMA, KIMI, OSS120]


def test_the_config_preference_applies_when_the_snapshot_has_none() -> None:
    cfg = overlay("preference: local_only\n")
    d = routing.decide(req(DEEPSEEK), cfg)
    assert d.preference == "local_only" and models(d) == [LLAMA]


# --------------------------------------------------------------------------- exclusive groups


def test_only_the_active_vllm_member_is_planned() -> None:
    d = routing.decide(req(DOLPHIN), CFG)
    assert models(d) == [MYTHO, LLAMA]
    assert (
        "not the active member of exclusive group vllm (active: vllm_qwen)" in d.skipped[0].reason
    )
    switched = LiveState(active=MappingProxyType({"vllm": "vllm_dolphin"}))
    assert routing.decide(req(DOLPHIN), CFG, switched).plan[0].model == DOLPHIN
    code = routing.decide(with_tokens("code", 70), CFG, switched)
    assert VLLM_QWEN not in models(code) and code.plan[0].model == CODER7
    ht = routing.decide(req("high_throughput"), CFG, switched)
    assert ht.plan[0].model == CODER7  # down the vLLM model's chain


# --------------------------------------------------------------------------- auto


AUTO_CASES = {
    "code": [
        "```python\ndef f(x):\n    return x\n```\nwhy does this return None?",
        "Traceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 'id'",
        "Write a bash script that renames every .jpeg file to .jpg",
        "How do I fix this Rust compiler error about borrowing?",
        "Refactor this JavaScript function to use async/await",
    ],
    "reasoning": [
        "Prove that the square root of 2 is irrational.",
        "Solve the equation 3x + 7 = 22 step by step.",
        "A riddle: how many times can you subtract 5 from 25?",
        "What is the probability of rolling two sixes with two dice?",
    ],
    "analytical": [
        "Compare PostgreSQL and MySQL: pros and cons for a small team.",
        "Summarize this quarterly report and list the key metrics.",
        "Analyze the trend in this sales data and forecast next month.",
        "Evaluate these three vendors versus our requirements in a table.",
    ],
    "creative": [
        "Write a poem about the autumn sea.",
        "Tell me a story about a dragon who is afraid of fire.",
        "Write a haiku about coffee.",
        "Once upon a time, a robot wanted to paint. Continue the fairy tale.",
    ],
    "chat": [
        "hello!",
        "hey, how are you today?",
        "thanks, that was helpful",
        "good morning",
    ],
}


@pytest.mark.parametrize(
    ("expected", "prompt"), [(cap, p) for cap, ps in AUTO_CASES.items() for p in ps]
)
def test_auto_classifies_and_routes_as_that_capability(expected: str, prompt: str) -> None:
    d = routing.decide(req("auto", prompt), CFG)
    assert d.capability == expected
    assert d.route == expected
    assert d.plan[0].reason.startswith(f"auto → {expected}")


def test_auto_without_any_signal_uses_the_default() -> None:
    # The trained classifier reads any token (even "zqx wvv") as some signal; a
    # turn with no token at all has none. (Low margins fall back too: test_classify.)
    d = routing.decide(req("auto", " \n "), CFG)
    assert d.capability == "chat" and "no signal" in d.plan[0].reason


def test_auto_reads_the_last_user_turn() -> None:
    r = RouteRequest(
        "auto", "Write a poem\nthanks!\nWrite a python script", "Write a python script"
    )
    assert routing.decide(r, CFG).capability == "code"


# --------------------------------------------------------------------------- properties

BACKENDS = sorted(CFG.backends)
NAMES = CFG.names()

backend_state = st.builds(
    BackendState,
    in_flight=st.integers(0, 20),
    circuit=st.sampled_from(["closed", "open", "half_open"]),
    latency_ms=st.none() | st.floats(1, 5000),
    no_key=st.booleans(),
    missing_models=st.frozensets(
        st.sampled_from([m.upstream for m in CFG.models.values()]), max_size=2
    ),
)
live_state = st.builds(
    LiveState,
    backends=st.dictionaries(st.sampled_from(BACKENDS), backend_state).map(MappingProxyType),
    active=st.sampled_from([{}, {"vllm": "vllm_qwen"}, {"vllm": "vllm_dolphin"}]).map(
        MappingProxyType
    ),
    usage=st.dictionaries(st.sampled_from(sorted(CFG.models)), st.integers(0, 100_000)).map(
        MappingProxyType
    ),
    preference=st.none()
    | st.sampled_from(["auto", "prefer_local", "prefer_cloud", "local_only", "cloud_only"]),
    random=st.floats(0, 1, exclude_max=True),
)
prompts = st.sampled_from(["hi", "write a python function", "prove it", "x" * 500, "tell a story"])
# one config per backend with that backend disabled, plus the default
CONFIGS = [CFG] + [overlay(f"backends:\n  {b}:\n    enabled: false\n") for b in BACKENDS]


@settings(max_examples=400, deadline=None)
@given(
    live_state,
    st.sampled_from(NAMES),
    prompts,
    st.sampled_from(range(len(CONFIGS))),
    st.none() | st.integers(1, 4000),
)
def test_plan_invariants(s: LiveState, name: str, prompt: str, ci: int, mt: int | None) -> None:
    cfg = CONFIGS[ci]
    d = routing.decide(req(name, prompt, mt), cfg, s)
    pref = s.preference or cfg.preference
    locs = [cfg.backends[a.backend].location for a in d.plan]
    if pref == "local_only":
        assert "cloud" not in locs
    if pref == "cloud_only":
        assert "local" not in locs
    pairs = [(a.backend, a.model) for a in d.plan]
    assert len(pairs) == len(set(pairs))
    for a in d.plan:
        assert cfg.backends[a.backend].enabled
        assert a.backend == cfg.models[a.model].backend
        assert a.upstream_model == cfg.models[a.model].upstream
        assert a.reason

    # a healthy attempt, if any, comes first
    def down(backend: str, model: str) -> bool:
        b = s.backends.get(backend, BackendState())
        return b.circuit == "open" or cfg.models[model].upstream in b.missing_models

    if any(not down(a.backend, a.model) for a in d.plan):
        assert not down(d.plan[0].backend, d.plan[0].model)
    # pure: same inputs, same decision
    assert routing.decide(req(name, prompt, mt), cfg, s) == d


@settings(max_examples=300, deadline=None)
@given(
    live_state.map(
        lambda s: s._replace(
            backends=MappingProxyType({k: v._replace(no_key=False) for k, v in s.backends.items()})
        )
    ),
    st.sampled_from(NAMES),
    prompts,
)
def test_known_model_plans_are_never_empty_unless_the_preference_rules_all_out(
    s: LiveState, name: str, prompt: str
) -> None:
    d = routing.decide(req(name, prompt), CFG, s)
    if not d.plan and d.unmet:  # a model that cannot chat (an embedding model)
        assert d.unmet == ("chat",) and "chat" not in CFG.models[name].features
    elif not d.plan:
        pref = s.preference or CFG.preference
        assert pref in ("local_only", "cloud_only")
        assert d.note.startswith(pref)
