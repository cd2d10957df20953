"""Route strategies: which of a route's candidates goes first, and why.

`order` puts a route's candidates in the order its strategy chooses
(``direct``, ``weighted``, ``least_loaded``, ``fastest_response``,
``usage_based``, ``most_capacity``, ``context_based``, and the bands of
``complexity_based``) and says why the first one leads. Pure, as the rest of
the routing core: load, latency, usage and the random draw for weighted
choices come in with the live state.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..types import BackendState, LiveState, Strategy
from .schema import Band, Candidate, Config, Route

__all__ = ["order"]

_IDLE = BackendState()


def _load(cfg: Config, state: LiveState, model: str) -> float:
    backend = cfg.models[model].backend
    return state.backends.get(backend, _IDLE).in_flight / cfg.backends[backend].capacity


def order(
    route: Route, cfg: Config, state: LiveState, tokens: int, need: int
) -> tuple[list[Candidate], str]:
    """The route's candidates, chosen one first, and why."""
    cands = list(route.candidates)
    why = ""
    if route.bands:
        measure = tokens if route.measure == "prompt_tokens" else need
        band = _band(route.bands, measure)
        bound = f"≤{band.upto}" if band.upto is not None else "unbounded"
        what = "prompt tokens" if route.measure == "prompt_tokens" else "tokens (prompt+reply)"
        why = f"{measure} {what} → band {band.label} ({bound}); "
        first = _by_strategy(list(band.candidates), route, cfg, state, need)
        rest_strategy = route.strategy if route.strategy != "complexity_based" else "direct"
        names = {c.model for c in first}
        rest = _by_strategy(
            [c for c in cands if c.model not in names], route, cfg, state, need, rest_strategy
        )
        ordered = first + rest
    else:
        ordered = _by_strategy(cands, route, cfg, state, need)
    head = ordered[0].model
    return ordered, why + _explain(route.strategy, head, cfg, state, need, route)


def _by_strategy(
    cands: list[Candidate],
    route: Route,
    cfg: Config,
    state: LiveState,
    need: int,
    strategy: Strategy | None = None,
) -> list[Candidate]:
    s = strategy or route.strategy
    if len(cands) < 2 or s == "direct":
        return cands
    pos = {c.model: i for i, c in enumerate(cands)}
    if s in ("weighted", "complexity_based"):
        total = sum(c.weight for c in cands)
        if total <= 0:
            return cands
        point = state.random * total
        for i, c in enumerate(cands):
            point -= c.weight
            if point < 0:
                return [c, *cands[:i], *cands[i + 1 :]]
        return cands
    if s == "least_loaded":
        return sorted(cands, key=lambda c: (_load(cfg, state, c.model), pos[c.model]))
    if s == "fastest_response":

        def latency(c: Candidate) -> tuple[bool, float, int]:
            lat = state.backends.get(cfg.models[c.model].backend, _IDLE).latency_ms
            return (lat is None, lat or 0.0, pos[c.model])

        return sorted(cands, key=latency)
    if s == "usage_based":

        def used(c: Candidate) -> tuple[float, int]:
            u = state.usage.get(c.model, 0)
            share = u / c.weight if c.weight > 0 else float("inf")
            return (share, pos[c.model])

        return sorted(cands, key=used)
    if s == "most_capacity":
        return sorted(
            cands,
            key=lambda c: (-cfg.models[c.model].context, _load(cfg, state, c.model), pos[c.model]),
        )
    if s == "context_based":
        room = 1.0 - route.headroom
        for i, c in enumerate(cands):
            if need <= cfg.models[c.model].context * room:
                return [c, *cands[:i], *cands[i + 1 :]]
        return cands
    return cands


def _band(bands: Sequence[Band], measure: int) -> Band:
    for band in bands:
        if band.upto is None or measure <= band.upto:
            return band
    return bands[-1]


def _explain(
    strategy: Strategy, head: str, cfg: Config, state: LiveState, need: int, route: Route
) -> str:
    m = cfg.models[head]
    b = state.backends.get(m.backend, _IDLE)
    if strategy == "least_loaded":
        return f"{head} least loaded ({b.in_flight}/{cfg.backends[m.backend].capacity} in flight)"
    if strategy == "fastest_response":
        lat = "unmeasured" if b.latency_ms is None else f"{b.latency_ms:.0f} ms"
        return f"{head} fastest ({lat})"
    if strategy == "usage_based":
        return f"{head} least used ({state.usage.get(head, 0)} tokens in window)"
    if strategy == "most_capacity":
        return f"{head} has the largest window ({m.context} tokens)"
    if strategy == "context_based":
        room = int(m.context * (1.0 - route.headroom))
        return f"{head} is the first whose window holds {need} tokens with headroom ({room})"
    if strategy in ("weighted", "complexity_based"):
        return f"{head} chosen by weight"
    return f"{head} first"
