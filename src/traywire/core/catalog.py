"""What each public name is, and what it can do: the listings (``/v1/models``,
``/api/tags``) and the model descriptions (``/api/show``) are read from here.

Pure: the config and a live-state snapshot in, plain values out. The proxy
(`traywire.proxy.ollama_api`) adds what a local Ollama says of its own models.

Order of a listing (DECISION): the models (config order), then the routes
(config order), then ``auto``, then the exact alias names (config order). Apps
that take the first name as their default (Open WebUI) then get a real model.

What a route (or ``auto``) can do (DECISION): what any of its candidates can
do, since the router sends each request to a candidate that has what it needs
(``auto``: the candidates of every route). Embeddings only where every
candidate makes them: an embeddings request for a chat route goes to the
embedding models, not to the route. Its window: the largest among its
candidates (a long prompt goes to the one that holds it). An alias is what
its target is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal, NamedTuple

from ..types import Feature, LiveState
from .routing import features_of, resolve_name
from .schema import Config, Model, Route

Kind = Literal["model", "route", "auto", "alias"]

# Ollama's words for what a model can do, in the order Ollama lists them.
_OLLAMA_WORDS: tuple[tuple[frozenset[Feature], str], ...] = (
    (frozenset({"chat", "completion"}), "completion"),
    (frozenset({"vision"}), "vision"),
    (frozenset({"tools"}), "tools"),
    (frozenset({"embed"}), "embedding"),
)
OLLAMA_ONLY = ("insert", "thinking")  # words traywire has no feature for

# Model families as Ollama names them (its ``general.architecture``), from the
# public name or the upstream id; first match (at the start of a word) wins.
_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"(?<![a-z])(?:{rx})"), family)
    for rx, family in (
        (r"gpt-?oss", "gptoss"),
        (r"qwen3-coder|qwen3.*-a\d+b", "qwen3moe"),
        (r"qwen3", "qwen3"),
        (r"qwen", "qwen2"),
        (r"deepseek-v[23]|kimi", "deepseek2"),
        (r"glm-?4\.[5-9]", "glm4moe"),
        (r"glm", "glm4"),
        (r"gemma-?3", "gemma3"),
        (r"gemma-?2", "gemma2"),
        (r"gemma", "gemma"),
        (r"phi", "phi3"),
        (r"nomic", "nomic-bert"),
        (r"bge|mxbai|minilm|bert", "bert"),
        (r"command-r", "command-r"),
        (r"granite", "granite"),
        (r"starcoder", "starcoder2"),
        (r"llama|mistral|mixtral|dolphin|mytho|hermes|vicuna|codellama", "llama"),
    )
)
_WORD = re.compile(r"[a-z][a-z0-9]*")
_QUANT = re.compile(
    r"(?<![a-z0-9])(q[2-8](?:_k)?(?:_[a-z0-9]+)?|iq[1-4]_[a-z0-9_]+|awq|gptq|fp16|bf16|fp8|int[48])"
    r"(?![a-z0-9])"
)

ROUTE_FAMILY = "traywire-route"
ALIAS_FAMILY = "traywire-alias"


class Entry(NamedTuple):
    """One public name: what it is and the models behind it."""

    name: str
    kind: Kind
    # An alias's target (a model or route name); the name itself otherwise.
    target: str
    # The model itself, or a route's candidates (bands included), config order.
    models: tuple[Model, ...]


def _route_models(route: Route, cfg: Config) -> list[Model]:
    names = [c.model for c in route.candidates]
    for band in route.bands:
        names += [c.model for c in band.candidates]
    return [cfg.models[n] for n in dict.fromkeys(names) if n in cfg.models]


def _of(name: str, target: str, kind: Kind, cfg: Config) -> Entry:
    if target in cfg.models:
        return Entry(name, kind, target, (cfg.models[target],))
    if target in cfg.routes:
        return Entry(name, kind, target, tuple(_route_models(cfg.routes[target], cfg)))
    # auto: every route's candidates
    models: dict[str, Model] = {}
    for route in cfg.routes.values():
        models.update((m.name, m) for m in _route_models(route, cfg))
    return Entry(name, kind, target, tuple(models.values()))


def listing(cfg: Config) -> list[Entry]:
    """Every name a client can ask for, in listing order (see the module docstring)."""
    out = [Entry(n, "model", n, (m,)) for n, m in cfg.models.items()]
    out += [_of(n, n, "route", cfg) for n in cfg.routes]
    if cfg.routes:
        out.append(_of("auto", "auto", "auto", cfg))
    seen = {e.name for e in out}
    for alias, target in cfg.aliases.exact.items():
        if alias not in seen and (target in cfg.models or target in cfg.routes or target == "auto"):
            out.append(_of(alias, target, "alias", cfg))
    return out


def entry(name: str, cfg: Config) -> Entry:
    """What ``name`` stands for, resolved as the router resolves it (aliases
    and patterns included); UnknownModelError when nothing takes it."""
    target, via = resolve_name(name, cfg)
    if not via:
        kind: Kind = "model" if target in cfg.models else "auto" if target == "auto" else "route"
        return _of(target, target, kind, cfg)
    return _of(name, target, "alias", cfg)


def features(e: Entry, state: LiveState) -> frozenset[Feature]:
    """What ``e`` can do (see the module docstring for routes)."""
    if len(e.models) == 1 and e.models[0].name == e.target:  # a model, or an alias of one
        return features_of(e.models[0], state)
    each = [features_of(m, state) for m in e.models]
    if not each:
        return frozenset()
    union = frozenset().union(*each)
    if not all("embed" in f for f in each):
        union -= {"embed"}
    return union


def context(e: Entry) -> int:
    """The window: a model's own, the largest of a route's candidates."""
    return max((m.context for m in e.models), default=0)


def ollama_capabilities(have: Iterable[Feature]) -> list[str]:
    """traywire features as Ollama's capability words (``completion``, ``vision``, ...)."""
    h = frozenset(have)
    return [word for feats, word in _OLLAMA_WORDS if h & feats]


def family(model: Model) -> str:
    """The model's family as Ollama names it, guessed from its names (a
    name no rule knows: its first word, ``mythomax``)."""
    text = f"{model.name} {model.upstream}".lower()
    for rx, fam in _FAMILIES:
        if rx.search(text):
            return fam
    word = _WORD.search(model.name.lower())
    return word.group(0) if word else "unknown"


def parameter_size(params_b: float) -> str:
    """``8B``, ``4.6B``, ``671B``, ``137M``, ``1T``."""
    if params_b <= 0:
        return ""
    if params_b < 1:
        return f"{round(params_b * 1000):d}M"
    if params_b >= 1000:
        return f"{round(params_b / 1000, 1):g}T"
    return f"{round(params_b, 1):g}B"


def quantization(model: Model) -> str:
    """The quantization its upstream id names (``AWQ``, ``Q4_K_M``), else ""."""
    found = _QUANT.findall(model.upstream.lower())
    return found[-1].upper() if found else ""


def kind_of(name: str, cfg: Config) -> Kind | None:
    """The kind of a listed name; None when it is not one."""
    if name in cfg.models:
        return "model"
    if name in cfg.routes:
        return "route"
    if name == "auto" and cfg.routes:
        return "auto"
    if name in cfg.aliases.exact:
        return "alias"
    return None


__all__ = [
    "ALIAS_FAMILY",
    "OLLAMA_ONLY",
    "ROUTE_FAMILY",
    "Entry",
    "Kind",
    "context",
    "entry",
    "family",
    "features",
    "kind_of",
    "listing",
    "ollama_capabilities",
    "parameter_size",
    "quantization",
]
