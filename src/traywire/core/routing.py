"""The routing core: (request, config, live state) → an ordered plan of attempts.

Pure: no I/O, no clock, no randomness of its own (a uniform draw comes in
with the live state). The proxy executes the plan; it never decides.

How a plan is made:

1. Resolve the name the client asked for: a model (then its chain), a route
   (its strategy picks the first model: `strategies.order`), or ``auto``
   (classify the last user turn, then route as that capability). ``name``
   without a tag also matches ``name:latest``. Anything else raises
   UnknownModelError with the names the user can ask for. An embeddings
   request for a route or ``auto`` goes to the models that make embeddings
   (classifying its text means nothing).
2. Expand: each chosen model is followed by its fallback chain, then the
   route's other candidates follow, each with its own chain; repeats dropped.
3. Leave out, with a reason: models that cannot serve what the request
   needs (its kind - chat, completion, embeddings - input images, tools,
   JSON output: "no vision"), disabled backends, cloud backends under
   local_only (and local ones under cloud_only), inactive members of an
   exclusive group, cloud backends with no key, and models whose window
   cannot hold the prompt plus the reply (max_tokens, or REPLY_RESERVE).
   When a route or ``auto`` is left with no model that has what the request
   needs, the plan widens to every configured model that has it (config
   order); a model asked for by name is never swapped that way. An empty plan
   for want of a feature says so in ``Decision.unmet`` (the client's error).
4. prefer_local / prefer_cloud: among the models that have the request's
   capability, those in the preferred location move ahead (stable); models
   without it stay behind them, so a code request never reaches a general
   model before the code models are exhausted. A model asked for by name
   stays first.
5. Health: attempts on a backend whose circuit is open, or whose probe says
   the model is not served, move to the end ("tried last"). If every attempt
   is in that state, the order stays and the reasons say so.
6. Saturation: an attempt whose backend is at or above the saturation share of
   its capacity lets the next healthy, unsaturated attempt in the overflow
   direction (cloud, or local first under prefer_local/local_only) go ahead
   of it.
7. Cap: a plan holds at most ``max_attempts`` attempts (the config's, 16 by
   default). The route's candidates are ranked lazily and the plan is made
   from the first of them: enough usable ones of each location for steps 4-6
   to choose from, so a route of a thousand models costs what one of twenty
   does. The models not reached are neither planned nor listed as skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from ..errors import UnknownModelError
from ..types import (
    FEATURE_WORDS,
    PREFERENCES,
    Attempt,
    BackendState,
    Capability,
    Decision,
    Feature,
    LiveState,
    Location,
    Preference,
    RouteRequest,
    Skip,
    Strategy,
)
from .classify import classify
from .schema import Backend, Candidate, Config, Model, Route
from .strategies import rank
from .tokens import estimate

# Reply budget assumed when the client sets none, for the context-window check.
REPLY_RESERVE = 256

_IDLE = BackendState()


# A step of a plan in the making is the attempt it becomes (made once: the
# chains' steps once per config); its model is looked up by name.
_Step = Attempt


def _because(step: _Step, reason: str) -> _Step:
    """``step`` with another reason."""
    return Attempt(step.model, step.backend, step.upstream_model, reason)


class _Index(NamedTuple):
    models: dict[str, Model]  # the config's models (a plain dict: quicker to read)
    location: Mapping[str, Location]  # model -> location of its backend
    chain_steps: Mapping[str, tuple[_Step, ...]]  # model -> its chain with reasons
    # backend -> it, and per preference why its models are never planned ("": they may be)
    barred: Mapping[str, tuple[Backend, Mapping[str, str]]]


def _barred(backend: Backend, pref: Preference) -> str:
    """Why the config and ``pref`` alone keep ``backend``'s models out ("": they do not)."""
    if not backend.enabled:
        return f"backend {backend.name} is disabled"
    if pref == "local_only" and backend.location == "cloud":
        return f"local_only: cloud backend {backend.name} is never planned"
    if pref == "cloud_only" and backend.location == "local":
        return f"cloud_only: local backend {backend.name} is not planned"
    return ""


_CACHE: dict[int, tuple[Config, _Index]] = {}


def _index(cfg: Config) -> _Index:
    hit = _CACHE.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    location = {n: cfg.backends[m.backend].location for n, m in cfg.models.items()}
    chains: dict[str, tuple[_Step, ...]] = {}
    for name, model in cfg.models.items():
        steps = []
        for i, other in enumerate(cfg.fallbacks.get(name, ()), 1):
            fb = cfg.models[other]
            change = fb.params_b / model.params_b - 1
            same = model.primary_capability in fb.capabilities
            steps.append(
                Attempt(
                    fb.name,
                    fb.backend,
                    fb.upstream,
                    (
                        f"fallback {i} of {name}'s chain ({change:+.0%} params"
                        f"{', same capability' if same else ''})"
                    ),
                )
            )
        chains[name] = tuple(steps)
    index = _Index(
        models=dict(cfg.models),
        location=location,
        chain_steps=chains,
        barred={n: (b, {p: _barred(b, p) for p in PREFERENCES}) for n, b in cfg.backends.items()},
    )
    if len(_CACHE) > 8:
        _CACHE.clear()
    _CACHE[id(cfg)] = (cfg, index)
    return index


def resolve_name(name: str, cfg: Config) -> tuple[str, str]:
    """The configured name a client's model name refers to, and how ("" when
    it is that name); UnknownModelError when nothing takes it."""
    if name in cfg.models or name in cfg.routes or (name == "auto" and cfg.routes):
        return name, ""
    if ":" not in name and f"{name}:latest" in cfg.models:
        return f"{name}:latest", ""
    if name.endswith(":latest") and name[: -len(":latest")] in cfg.models:
        return name[: -len(":latest")], ""  # Ollama clients add the tag
    al = cfg.aliases
    target = al.exact.get(name)
    if target is not None:
        return target, f"alias {name} → {target}"
    for pattern, rx, target in _patterns(cfg):
        if rx.fullmatch(name):
            return target, f"alias {pattern} → {target}"
    if al.unknown is not None:
        return al.unknown, f"unknown name {name}: aliases.unknown → {al.unknown}"
    raise UnknownModelError(name, cfg.names())


_PATTERNS: dict[int, tuple[Config, tuple[tuple[str, re.Pattern[str], str], ...]]] = {}


def _patterns(cfg: Config) -> tuple[tuple[str, re.Pattern[str], str], ...]:
    """The config's alias patterns as regexes (``*`` any run, ``?`` one character)."""
    hit = _PATTERNS.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    out = tuple(
        (p, re.compile(re.escape(p).replace(r"\*", ".*").replace(r"\?", "."), re.S), target)
        for p, target in cfg.aliases.patterns
    )
    if len(_PATTERNS) > 8:
        _PATTERNS.clear()
    _PATTERNS[id(cfg)] = (cfg, out)
    return out


_NO_STATE = LiveState()


_KIND_FEATURE: Mapping[str, Feature] = {
    "chat": "chat",
    "completion": "completion",
    "embedding": "embed",
}


def special_needs(request: RouteRequest) -> tuple[Feature, ...]:
    """What ``request`` needs beyond its kind: vision (input images), tools,
    json (JSON output), in that order."""
    return (
        *(("vision",) if request.images else ()),
        *(("tools",) if request.tools else ()),
        *(("json",) if request.structured else ()),
    )


def needs_of(request: RouteRequest) -> frozenset[Feature]:
    """What a model must be able to do to serve ``request``."""
    return frozenset((_KIND_FEATURE[request.kind], *special_needs(request)))


def features_of(model: Model, state: LiveState) -> frozenset[Feature]:
    """What ``model`` can do: as the config declares it, else as its server
    said (a probe's list, less what it answered it cannot do)."""
    if model.features_declared:
        return model.features
    have = state.features.get(model.name, model.features)
    lacks = state.lacks.get(model.name)
    return have - lacks if lacks else have


def decide(request: RouteRequest, cfg: Config, state: LiveState = _NO_STATE) -> Decision:
    idx = _index(cfg)
    name, via = resolve_name(request.model, cfg)
    tokens = estimate(request)
    need = tokens + (request.max_tokens if request.max_tokens else REPLY_RESERVE)
    pref: Preference = state.preference or cfg.preference
    needs = needs_of(request)

    capability: Capability | None
    route: Route | None = None
    strategy: Strategy | None = None
    note = ""
    if name in cfg.models:
        model = cfg.models[name]
        capability = model.primary_capability if "embed" not in needs else None
        steps: Iterable[_Step] = [
            Attempt(name, model.backend, model.upstream, via or "requested by name"),
            *idx.chain_steps[name],
        ]
    elif "embed" in needs:
        capability = None
        steps = _widen(cfg, state, needs, f"{name}: an embeddings request")
    else:
        if name == "auto":
            cls = classify(
                request.last_user or request.prompt,
                cfg.auto.classifier,
                cfg.auto.default,
                cfg.auto.min_margin,
            )
            capability = cls.capability
            route_name = capability if capability in cfg.routes else cfg.auto.default
            route = cfg.routes[route_name]
            lead = f"auto → {cls.reason} → route {route_name}"
            if via:
                lead = f"{via}; {lead}"
        else:
            route = cfg.routes[name]
            capability = _route_capability(route, cfg)
            lead = f"{via}: route {name}" if via else f"route {name}"
        strategy = route.strategy
        ordered, why = rank(route, cfg, state, tokens, need)
        steps = _expand(ordered, f"{lead} ({route.strategy}): {why}", idx)

    live = _Live(cfg, idx, state, pref)
    plan, skipped = _filter(steps, idx, live, need, needs, cfg.max_attempts, capability)
    if not plan and name not in cfg.models and any(s.lacks for s in skipped):
        # a route (or auto) none of whose models can serve what is needed
        wider = _widen(cfg, state, needs, f"{name} has no model with {_words(_telling(needs))}")
        seen = {s.model for s in skipped}
        more, more_skipped = _filter(
            [s for s in wider if s.model not in seen], idx, live, need, needs
        )
        plan, skipped = more, skipped + more_skipped
    unmet: tuple[Feature, ...] = ()
    if not plan:
        unmet = _unmet(skipped, needs)
        note = _empty_note(pref, skipped, name, unmet, cfg, state)
    else:
        if pref in ("prefer_local", "prefer_cloud") and capability is not None:
            plan = _prefer(plan, pref, capability, idx, keep_first=name in cfg.models)
        if live.risky:
            plan = _health(plan, live)
        if live.full:
            plan = _saturation(plan, cfg, live, pref, idx)
        del plan[cfg.max_attempts :]

    return Decision(
        requested=request.model,
        capability=capability,
        prompt_tokens=tokens,
        route=route.name if route else None,
        strategy=strategy,
        preference=pref,
        plan=tuple(plan),
        skipped=tuple([Skip(s.model, s.backend, s.reason) for s in skipped]),
        note=note,
        unmet=unmet,
    )


def _words(features: frozenset[Feature] | tuple[Feature, ...]) -> str:
    return " and ".join(FEATURE_WORDS[f] for f in sorted(features))


def _telling(needs: frozenset[Feature]) -> frozenset[Feature]:
    """The needs worth naming: a chat that needs vision is "vision"."""
    special = needs - {"chat", "completion"}
    return special or needs


def _widen(cfg: Config, state: LiveState, needs: frozenset[Feature], lead: str) -> list[_Step]:
    """Every configured model that has what is needed, in config order."""
    return [
        Attempt(
            m.name,
            m.backend,
            m.upstream,
            f"{lead}: {m.name} has it" if i == 0 else f"also has {_words(_telling(needs))}",
        )
        for i, m in enumerate(m for m in cfg.models.values() if needs <= features_of(m, state))
    ]


def _unmet(skipped: list[_Skipped], needs: frozenset[Feature]) -> tuple[Feature, ...]:
    """What left the plan empty, where only features did (or no model at all
    has them): the needs that stopped the models."""
    if not skipped:
        return tuple(sorted(_telling(needs)))
    if not all(s.lacks for s in skipped):
        return ()
    lacking: set[Feature] = set()
    for s in skipped:
        lacking |= s.lacks
    return tuple(sorted(lacking & needs))


def _route_capability(route: Route, cfg: Config) -> Capability:
    if route.name in ("code", "reasoning", "analytical", "creative", "chat"):
        return route.name  # type: ignore[return-value]
    return cfg.models[route.candidates[0].model].primary_capability


def _expand(ordered: Iterable[Candidate], lead: str, idx: _Index) -> Iterator[_Step]:
    """Each candidate, then its chain; repeats dropped. Lazy: steps are made
    as `_filter` takes them."""
    seen: set[str] = set()
    models, chains = idx.models, idx.chain_steps
    for i, cand in enumerate(ordered):
        name = cand.model
        if name in seen:
            continue
        m = models[name]
        yield Attempt(name, m.backend, m.upstream, lead if i == 0 else f"route candidate {i + 1}")
        seen.add(name)
        for step in chains[name]:
            if step.model not in seen:
                seen.add(step.model)
                yield step


# --------------------------------------------------------------------------- filters


class _Skipped(NamedTuple):
    model: str
    backend: str
    reason: str
    lacks: frozenset[Feature] = frozenset()


class _Where(NamedTuple):
    """What one backend means for this decision (its part of the reasons)."""

    why: str  # why none of its models is planned ("": they may be)
    state: BackendState
    location: Location
    capacity: int
    down: bool  # circuit open
    saturated: bool


_new_where = tuple.__new__  # _Where(...) without its Python-level __new__


class _Live(dict[str, _Where]):
    """Backend name -> `_Where`, worked out at the first model on it (per
    decision: it depends on the config, the live state and the preference).
    ``risky``: a plannable backend is down or misses a model; ``full``: one is
    saturated (without either, health and saturation change nothing)."""

    __slots__ = ("barred", "cfg", "full", "pref", "risky", "state")

    def __init__(self, cfg: Config, idx: _Index, state: LiveState, pref: Preference) -> None:
        super().__init__()
        self.cfg = cfg
        self.barred = idx.barred
        self.state = state
        self.pref = pref
        self.risky = self.full = False

    def __missing__(self, name: str) -> _Where:
        state = self.state
        backend, barred = self.barred[name]
        b = state.backends.get(name, _IDLE)
        why = barred.get(self.pref)
        if why is None:  # not a preference the config knows: its own checks only
            why = _barred(backend, self.pref)
        down = full = False
        if why:
            pass
        elif (
            backend.exclusive_group is not None
            and (active := _active(self.cfg, state, backend.exclusive_group)) != name
        ):
            why = (
                f"{name} is not the active member of exclusive group "
                f"{backend.exclusive_group} (active: {active or 'none'})"
            )
        elif b.no_key:
            why = f"no key for {name} ({_key_hint(backend.key)})"
        else:
            down = b.circuit == "open"
            full = b.in_flight / backend.capacity >= self.cfg.saturation
            self.risky = self.risky or down or bool(b.missing_models)
            self.full = self.full or full
        where = self[name] = _new_where(
            _Where, (why, b, backend.location, backend.capacity, down, full)
        )
        return where


def _filter(
    steps: Iterable[_Step],
    idx: _Index,
    live: _Live,
    need: int,
    needs: frozenset[Feature],
    enough: int | None = None,
    capability: Capability | None = None,
) -> tuple[list[_Step], list[_Skipped]]:
    """The steps that can serve, and why the others cannot. With ``enough``:
    stop taking steps once what preference, health and saturation choose
    among is there: ``enough`` healthy ones kept (of ``capability``, in the
    preferred location under prefer_local/prefer_cloud), and as many
    unsaturated healthy ones in each location as saturated ones were kept
    (the overflow moves one ahead of each)."""
    keep: list[_Step] = []
    skipped: list[_Skipped] = []
    healthy = saturated = 0
    ready_local = ready_cloud = 0  # healthy and unsaturated
    state = live.state
    pref = live.pref
    want: Location | None = (
        "local" if pref == "prefer_local" else "cloud" if pref == "prefer_cloud" else None
    )
    probed = bool(state.features) or bool(state.lacks)
    models = idx.models
    for step in steps:
        if (
            enough is not None
            and healthy >= enough
            and saturated <= (ready_local if ready_local < ready_cloud else ready_cloud)
        ):
            break
        m = models[step.model]
        have = m.features if m.features_declared or not probed else features_of(m, state)
        if not needs <= have:
            missing = needs - have
            told = not m.features_declared and missing & state.lacks.get(m.name, frozenset())
            why = "no " + _words(frozenset(missing)) + (" (its server said so)" if told else "")
            skipped.append(_Skipped(m.name, m.backend, why, frozenset(missing)))
            continue
        where = live[m.backend]
        if where.why:
            skipped.append(_Skipped(m.name, m.backend, where.why))
            continue
        if need > m.context:
            why = f"window too small: needs {need} tokens, {m.name} holds {m.context}"
            skipped.append(_Skipped(m.name, m.backend, why))
            continue
        keep.append(step)
        if enough is not None:
            if where.down or m.upstream in where.state.missing_models:
                continue
            if (want is None or where.location == want) and (
                capability is None or capability in m.capabilities
            ):
                healthy += 1
            if where.saturated:
                saturated += 1
            elif where.location == "local":
                ready_local += 1
            else:
                ready_cloud += 1
    return keep, skipped


def _key_hint(ref: str | None) -> str:
    """How to set a missing key, from its reference."""
    if ref is None:
        return "no key reference"
    kind, _, name = ref.partition(":")
    if kind == "keyring":
        return f"set it with `traywire keys set {name}`"
    return f"set the environment variable {name}"


def _active(cfg: Config, state: LiveState, group: str) -> str:
    # "" (not None): the group has no active member (a switch is running or failed).
    active = state.active.get(group)
    return cfg.groups[group].active if active is None else active


def _empty_note(
    pref: Preference,
    skipped: list[_Skipped],
    name: str,
    unmet: tuple[Feature, ...],
    cfg: Config,
    state: LiveState,
) -> str:
    if unmet:
        able = [m.name for m in cfg.models.values() if set(unmet) <= features_of(m, state)]
        has = f"models that have it: {', '.join(able)}" if able else "no configured model has it"
        return f"{name!r} cannot serve this request: it needs {_words(unmet)}; {has}"
    if pref == "local_only":
        return (
            f"local_only: no local model can serve {name!r}; nothing was planned on a cloud backend"
        )
    if pref == "cloud_only":
        return f"cloud_only: no cloud model can serve {name!r}"
    reasons = sorted({s.reason.split(":")[0] for s in skipped})
    return f"no model can serve {name!r}: " + "; ".join(reasons)


def _prefer(
    plan: list[_Step], pref: Preference, cap: Capability, idx: _Index, keep_first: bool
) -> list[_Step]:
    want: Location = "local" if pref == "prefer_local" else "cloud"
    head = plan[:1] if keep_first else []
    body = plan[1:] if keep_first else plan
    models, location = idx.models, idx.location
    capable = [s for s in body if cap in models[s.model].capabilities]
    others = [s for s in body if cap not in models[s.model].capabilities]
    preferred = [s for s in capable if location[s.model] == want]
    rest = [s for s in capable if location[s.model] != want]
    moved = [
        s if i == capable.index(s) else _because(s, f"{s.reason}; moved ahead: {pref}")
        for i, s in enumerate(preferred)
    ]
    return head + moved + rest + others


def _health(plan: list[_Step], live: _Live) -> list[_Step]:
    good: list[_Step] = []
    bad: list[_Step] = []
    for s in plan:
        where = live[s.backend]
        if where.down:
            bad.append(_because(s, f"{s.reason}; circuit open on {s.backend}"))
        elif s.upstream_model in where.state.missing_models:
            bad.append(
                _because(s, f"{s.reason}; {s.backend} does not list {s.upstream_model} (probe)")
            )
        else:
            good.append(s)
    if not bad:
        return plan
    if not good:
        return [
            _because(s, f"{s.reason}; every candidate is down, trying in order anyway") for s in bad
        ]
    return good + [_because(s, f"{s.reason} — tried last") for s in bad]


def _saturation(
    plan: list[_Step], cfg: Config, live: _Live, pref: Preference, idx: _Index
) -> list[_Step]:
    if len(plan) < 2:
        return plan

    def saturated(s: _Step) -> bool:
        return live[s.backend].saturated

    def ok(s: _Step) -> bool:
        where = live[s.backend]
        return (
            not where.down
            and s.upstream_model not in where.state.missing_models
            and not where.saturated
        )

    order: tuple[Location, ...] = (
        ("local", "cloud") if pref in ("prefer_local", "local_only") else ("cloud", "local")
    )
    plan = list(plan)
    done: set[str] = set()
    i = 0
    while i < len(plan):
        s = plan[i]
        if s.model not in done and saturated(s):
            done.add(s.model)
            target = None
            for where in order:
                target = next(
                    (
                        j
                        for j in range(i + 1, len(plan))
                        if idx.location[plan[j].model] == where and ok(plan[j])
                    ),
                    None,
                )
                if target is not None:
                    break
            if target is not None:
                full = live[s.backend]
                t = plan.pop(target)
                plan.insert(
                    i,
                    _because(
                        t,
                        (
                            f"{t.reason}; overflow: {s.backend} saturated "
                            f"({full.state.in_flight}/{full.capacity} in flight "
                            f"≥ {cfg.saturation:.0%})"
                        ),
                    ),
                )
                continue
        i += 1
    return plan
