"""The router plans only models that can serve what a request needs (its kind,
images, tools, JSON output); the others are skipped with the reason; what no
configured model can do is the client's error, named as such."""

from __future__ import annotations

from itertools import product
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traywire import config
from traywire.core import routing
from traywire.types import FEATURES, Feature, LiveState, RouteRequest

CFG = config.load_texts(
    [
        (
            "needs.yaml",
            """
extends: none
backends:
  ol: {kind: ollama, url: "http://127.0.0.1:1", location: local, capacity: 4}
  cpp: {kind: openai, url: "http://127.0.0.1:2/v1", location: local, capacity: 1,
        single_model: true}
  cloud: {kind: openai, url: "https://example.invalid/v1", location: cloud, capacity: 8}
models:
  chatty: {backend: ol, params_b: 8, tier: local, capabilities: [chat], context: 8192}
  seer: {backend: ol, params_b: 11, tier: local, capabilities: [chat], context: 8192,
         features: [chat, vision]}
  embedder: {backend: ol, params_b: 0.1, tier: local, context: 8192, features: [embed]}
  cpp-chat: {backend: cpp, params_b: 1, tier: local, capabilities: [chat], context: 4096}
  big: {backend: cloud, params_b: 120, tier: cloud_standard, capabilities: [chat, code],
        context: 131072, features: [chat, completion, tools, json, vision]}
fallbacks:
  chatty: [cpp-chat]
routes:
  chat: {strategy: direct, candidates: [chatty, cpp-chat]}
  code: {strategy: direct, candidates: [big]}
auto: {default: chat}
""",
        )
    ]
)


def ask(model: str, kind: str = "chat", **needs: object) -> RouteRequest:
    return RouteRequest(model, "hello", "hello", None, 1, kind, **needs)  # type: ignore[arg-type]


def plan(d: routing.Decision) -> list[str]:  # type: ignore[name-defined]
    return [a.model for a in d.plan]


def skipped(d: routing.Decision) -> dict[str, str]:  # type: ignore[name-defined]
    return {s.model: s.reason for s in d.skipped}


def test_defaults_per_kind_and_declared_features() -> None:
    m = CFG.models
    assert m["chatty"].features == {"chat", "completion", "tools", "json"}
    assert not m["chatty"].features_declared
    assert m["cpp-chat"].features == {"chat", "completion", "json"}  # llama.cpp: no tools
    assert m["embedder"].features == {"embed"} and m["embedder"].capabilities == ()
    assert m["seer"].features_declared


def test_an_image_skips_models_without_vision_and_says_why() -> None:
    d = routing.decide(ask("chatty", images=1), CFG)
    assert plan(d) == []
    assert skipped(d) == {
        "chatty": "no vision (image input)",
        "cpp-chat": "no vision (image input)",
    }
    assert d.unmet == ("vision",)
    assert "needs vision (image input); models that have it: seer, big" in d.note
    # a route is widened to the models that can see
    d = routing.decide(ask("chat", images=2), CFG)
    assert plan(d) == ["seer", "big"]
    assert d.unmet == ()
    assert "chat has no model with vision" in d.plan[0].reason


def test_embeddings_go_to_embedding_models_only() -> None:
    for name in ("auto", "chat", "code"):
        d = routing.decide(ask(name, "embedding"), CFG)
        assert plan(d) == ["embedder"], name
        assert d.capability is None
    d = routing.decide(ask("chatty", "embedding"), CFG)
    assert plan(d) == [] and d.unmet == ("embed",)
    assert "models that have it: embedder" in d.note
    assert routing.decide(ask("embedder", "embedding"), CFG).plan[0].model == "embedder"
    # and an embedding model never answers a chat
    d = routing.decide(ask("embedder"), CFG)
    assert plan(d) == [] and d.unmet == ("chat",)


def test_tools_skip_a_server_that_cannot_call_them() -> None:
    d = routing.decide(ask("chatty", tools=True), CFG)
    assert plan(d) == ["chatty"]
    assert skipped(d) == {"cpp-chat": "no tool calling"}


def test_what_a_server_says_replaces_the_default_but_not_a_declaration() -> None:
    told = LiveState(
        features=MappingProxyType({"chatty": frozenset({"chat", "vision"})}),
        lacks=MappingProxyType({"cpp-chat": frozenset({"json"}), "seer": frozenset({"vision"})}),
    )
    assert plan(routing.decide(ask("chatty", images=1), CFG, told)) == ["chatty"]
    d = routing.decide(ask("chatty", structured=True), CFG, told)
    assert plan(d) == []  # the probe listed no json for chatty; cpp-chat said it has none
    assert skipped(d)["cpp-chat"] == "no JSON output (its server said so)"
    # seer declares vision: the config wins over what its server said
    assert plan(routing.decide(ask("seer", images=1), CFG, told)) == ["seer"]


def test_a_feature_nothing_has_names_no_model() -> None:
    cfg = config.load_texts(
        [("x.yaml", "extends: none\n" + CFG_TEXT_NO_VISION)]  # no model can see
    )
    d = routing.decide(ask("chat", images=1), cfg)
    assert d.unmet == ("vision",) and "no configured model has it" in d.note


CFG_TEXT_NO_VISION = """
backends:
  ol: {kind: ollama, url: "http://127.0.0.1:1", location: local, capacity: 4}
models:
  chatty: {backend: ol, params_b: 8, tier: local, capabilities: [chat], context: 8192}
routes:
  chat: {strategy: direct, candidates: [chatty]}
auto: {default: chat}
"""


@given(
    st.sampled_from(["auto", "chat", "code", "chatty", "seer", "embedder", "cpp-chat", "big"]),
    st.sampled_from(["chat", "completion", "embedding"]),
    st.integers(0, 2),
    st.booleans(),
    st.booleans(),
)
def test_a_plan_never_holds_a_model_that_cannot_serve_the_need(
    name: str, kind: str, images: int, tools: bool, structured: bool
) -> None:
    r = ask(name, kind, images=images, tools=tools, structured=structured)
    d = routing.decide(r, CFG)
    needs = routing.needs_of(r)
    for a in d.plan:
        assert needs <= CFG.models[a.model].features, (a.model, needs)
    if not d.plan:
        assert d.unmet, d.note  # empty only for want of a feature here
        assert set(d.unmet) <= needs


@pytest.mark.parametrize(("need", "has"), list(product(FEATURES, FEATURES)))
def test_each_need_against_each_feature(need: Feature, has: Feature) -> None:
    kind = {"chat": "chat", "completion": "completion", "embed": "embedding"}.get(need, "chat")
    extra = {"vision": {"images": 1}, "tools": {"tools": True}, "json": {"structured": True}}
    r = ask("solo", kind, **extra.get(need, {}))
    features = sorted({has, "chat"} if need in ("vision", "tools", "json") else {has})
    cfg = config.load_texts(
        [
            (
                "one.yaml",
                "extends: none\n"
                "backends: {ol: {kind: ollama, url: 'http://127.0.0.1:1', location: local, "
                "capacity: 1}}\n"
                "models: {solo: {backend: ol, params_b: 1, tier: local, capabilities: [chat], "
                f"context: 8192, features: [{', '.join(features)}]}}}}\n"
                "routes: {chat: {strategy: direct, candidates: [solo]}}\n",
            )
        ]
    )
    d = routing.decide(r, cfg)
    assert (plan(d) == ["solo"]) == (routing.needs_of(r) <= set(features))
