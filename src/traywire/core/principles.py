"""The design's four principles, checked against a configuration.

Each finding is a warning (the config still works); `traywire check` prints
them. The checks, and the decisions behind them:

1. Graceful degradation: a cloud model's chain does not reach a smaller local
   model before its second hop (the design keeps the quality tier 2+ hops).
2. Quality preservation: a chain's first hop that is local and keeps less
   than ``1 - principles.max_first_hop_drop`` of the parameters while a cloud
   model with the same primary capability would keep more (a "local cliff").
3. Complexity awareness: a complexity_based route sends its simplest band to
   the cloud only, or its most complex band to local models only.
4. Capability preservation: a chain of a model whose primary capability is
   code reaches a model without code while code models still follow in it.
5. Request kinds (not the design's; traywire's own): a chain or a route can
   never serve a kind it is asked for - a chat model's chain or a route
   reaching a model that cannot chat (an embedding model), an embedding
   model's chain reaching one that cannot embed - and no configured model
   makes embeddings at all (every embeddings request would be refused).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from .schema import Config, Model, format_path


class Warning_(NamedTuple):
    principle: str
    where: str  # key path
    origin: str  # file:line
    message: str

    def __str__(self) -> str:
        loc = f"{self.origin} " if self.origin else ""
        return f"{loc}{self.where}: {self.message} ({self.principle})"


def _path(*parts: str) -> str:
    return format_path(parts)


def check(cfg: Config) -> list[Warning_]:
    out: list[Warning_] = []
    loc = {n: cfg.backends[m.backend].location for n, m in cfg.models.items()}

    def warn(principle: str, path: str, message: str) -> None:
        out.append(Warning_(principle, path, cfg.where(path), message))

    for head_name, chain in cfg.fallbacks.items():
        head = cfg.models[head_name]
        path = _path("fallbacks", head_name)
        if not chain:
            continue
        # 1. graceful degradation
        if loc[head_name] == "cloud":
            first = cfg.models[chain[0]]
            if loc[first.name] == "local" and first.params_b < head.params_b:
                warn(
                    "graceful degradation",
                    path,
                    f"the first fallback {first.name} is a smaller local model; keep a cloud "
                    "model of the same or the next tier for at least one hop",
                )
        # 2. quality preservation
        first = cfg.models[chain[0]]
        kept = first.params_b / head.params_b
        if loc[first.name] == "local" and kept < 1 - cfg.principles.max_first_hop_drop:
            alt = _cloud_alternative(cfg, head, kept, loc)
            if alt is not None:
                warn(
                    "quality preservation",
                    path,
                    f"first hop {first.name} keeps {kept:.0%} of {head_name}'s parameters "
                    f"while cloud model {alt.name} ({alt.params_b:g}B) could take it first",
                )
        # 4. capability preservation
        if head.primary_capability == "code":
            for i, name in enumerate(chain):
                if "code" not in cfg.models[name].capabilities:
                    later = [n for n in chain[i + 1 :] if "code" in cfg.models[n].capabilities]
                    if later:
                        warn(
                            "capability preservation",
                            f"{path}[{i}]",
                            f"{name} has no code capability but code models follow it "
                            f"({', '.join(later)}); put them first",
                        )
                    break
    # 5. request kinds
    for head_name, chain in cfg.fallbacks.items():
        kinds = cfg.models[head_name].features & _KINDS
        for i, name in enumerate(chain):
            lacking = kinds - cfg.models[name].features
            if lacking:
                warn(
                    "request kinds",
                    _path("fallbacks", head_name) + f"[{i}]",
                    f"{name} cannot serve {_kinds(lacking)}, which requests for {head_name} "
                    "are; it will always be skipped for them",
                )
    for route in cfg.routes.values():
        for c in route.candidates:
            if "chat" not in cfg.models[c.model].features:
                warn(
                    "request kinds",
                    _path("routes", route.name, "candidates"),
                    f"{c.model} cannot chat, and a route is asked for chats; it will "
                    "always be skipped",
                )
    if not any("embed" in m.features for m in cfg.models.values()):
        warn(
            "request kinds",
            "models",
            "no model makes embeddings (features: [embed]); every embeddings request "
            "will be refused",
        )
    # 3. complexity awareness
    for route in cfg.routes.values():
        if route.strategy != "complexity_based" or len(route.bands) < 2:
            continue
        path = _path("routes", route.name, "bands")
        simple = {loc[c.model] for c in route.bands[0].candidates}
        complex_ = {loc[c.model] for c in route.bands[-1].candidates}
        if simple == {"cloud"}:
            warn(
                "complexity awareness",
                f"{path}[0]",
                "the simplest band goes to the cloud only; simple tasks belong on local models",
            )
        if complex_ == {"local"}:
            warn(
                "complexity awareness",
                f"{path}[{len(route.bands) - 1}]",
                "the most complex band goes to local models only; complex tasks belong "
                "in the cloud",
            )
    return out


_KINDS = frozenset({"chat", "completion", "embed"})


def _kinds(features: frozenset[str]) -> str:
    words = {"chat": "chats", "completion": "plain completions", "embed": "embeddings"}
    return " or ".join(words[f] for f in sorted(features))


def _cloud_alternative(
    cfg: Config, head: Model, kept: float, loc: Mapping[str, str]
) -> Model | None:
    best: Model | None = None
    for m in cfg.models.values():
        if m.name == head.name or loc[m.name] != "cloud":
            continue
        if not cfg.backends[m.backend].enabled:
            continue
        if head.primary_capability not in m.capabilities:
            continue
        if m.params_b / head.params_b > kept and (best is None or m.params_b > best.params_b):
            best = m
    return best
