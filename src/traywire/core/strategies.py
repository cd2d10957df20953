"""Route strategies: which of a route's candidates goes first, and why.

`order` puts a route's candidates in the order its strategy chooses
(``direct``, ``weighted``, ``least_loaded``, ``fastest_response``,
``usage_based``, ``most_capacity``, ``context_based``, and the bands of
``complexity_based``) and says why the first one leads. Pure, as the rest of
the routing core: load, latency, usage and the random draw for weighted
choices come in with the live state.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from ..types import BackendState, LiveState, Strategy
from .schema import Band, Candidate, Config, Route

__all__ = ["order", "rank"]

_IDLE = BackendState()


def order(
    route: Route, cfg: Config, state: LiveState, tokens: int, need: int
) -> tuple[list[Candidate], str]:
    """The route's candidates, chosen one first, and why."""
    ranked, why = rank(route, cfg, state, tokens, need)
    return list(ranked), why


def rank(
    route: Route, cfg: Config, state: LiveState, tokens: int, need: int
) -> tuple[Iterator[Candidate], str]:
    """`order`, lazily: the candidates come as they are taken, so a router that
    needs the first few of a route of a thousand does not rank them all (the
    sorting strategies merge per-backend runs ordered once per config)."""
    cands = route.candidates
    why = ""
    ranked: Iterator[Candidate]
    if route.bands:
        measure = tokens if route.measure == "prompt_tokens" else need
        band = _band(route.bands, measure)
        bound = f"≤{band.upto}" if band.upto is not None else "unbounded"
        what = "prompt tokens" if route.measure == "prompt_tokens" else "tokens (prompt+reply)"
        why = f"{measure} {what} → band {band.label} ({bound}); "
        first = list(_by_strategy(band.candidates, route, cfg, state, need))
        rest_strategy = route.strategy if route.strategy != "complexity_based" else "direct"
        names = {c.model for c in first}
        if rest_strategy in _SORTS:
            # a sort orders a subset as it orders the whole: no copy needed
            whole = _by_strategy(cands, route, cfg, state, need, rest_strategy)
            rest: Iterable[Candidate] = (c for c in whole if c.model not in names)
        else:
            rest = _by_strategy(
                tuple(c for c in cands if c.model not in names),
                route, cfg, state, need, rest_strategy,
            )  # fmt: skip
        ranked = itertools.chain(first, rest)
    else:
        ranked = iter(_by_strategy(cands, route, cfg, state, need))
    head = next(ranked)
    return itertools.chain((head,), ranked), why + _explain(
        route.strategy, head.model, cfg, state, need, route
    )


# strategies that sort (stably: ties keep the route's order)
_SORTS = ("least_loaded", "fastest_response", "usage_based", "most_capacity")


def _by_strategy(
    cands: tuple[Candidate, ...],
    route: Route,
    cfg: Config,
    state: LiveState,
    need: int,
    strategy: Strategy | None = None,
) -> Iterable[Candidate]:
    s = strategy or route.strategy
    if len(cands) < 2 or s == "direct":
        return cands
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
    if s in _SORTS:
        return _sorted(cands, cfg, state, s)
    if s == "context_based":
        room = 1.0 - route.headroom
        for i, c in enumerate(cands):
            if need <= cfg.models[c.model].context * room:
                return [c, *cands[:i], *cands[i + 1 :]]
        return cands
    return cands


class _Runs(NamedTuple):
    """A candidate tuple ordered once: each model's position (None where a
    model is named twice), and per backend its (position, candidate) runs, by
    position and by (-window, position); whether every candidate has a weight."""

    pos: dict[str, int] | None
    by_backend: dict[str, list[tuple[int, Candidate]]]
    by_window: dict[str, list[tuple[int, int, Candidate]]]
    weighted: bool


_RUNS: dict[int, tuple[tuple[Candidate, ...], Config, _Runs]] = {}


def _runs(cands: tuple[Candidate, ...], cfg: Config) -> _Runs:
    hit = _RUNS.get(id(cands))
    if hit is not None and hit[0] is cands and hit[1] is cfg:
        return hit[2]
    pos = {c.model: i for i, c in enumerate(cands)}
    by_backend: dict[str, list[tuple[int, Candidate]]] = {}
    for i, c in enumerate(cands):
        by_backend.setdefault(cfg.models[c.model].backend, []).append((i, c))
    by_window = {
        b: sorted(((-cfg.models[c.model].context, i, c) for i, c in run), key=lambda t: t[:2])
        for b, run in by_backend.items()
    }
    weighted = all(c.weight > 0 for c in cands)
    runs = _Runs(pos if len(pos) == len(cands) else None, by_backend, by_window, weighted)
    if len(_RUNS) > 64:
        _RUNS.clear()
    _RUNS[id(cands)] = (cands, cfg, runs)
    return runs


def _load(cfg: Config, state: LiveState, backend: str) -> float:
    return state.backends.get(backend, _IDLE).in_flight / cfg.backends[backend].capacity


def _latency(state: LiveState, backend: str) -> tuple[bool, float]:
    lat = state.backends.get(backend, _IDLE).latency_ms
    return (lat is None, lat or 0.0)  # unmeasured last


def _sorted(
    cands: tuple[Candidate, ...], cfg: Config, state: LiveState, s: Strategy
) -> Iterable[Candidate]:
    """A sorting strategy's order (its key is the backend's load or latency;
    for most_capacity the window first), as a lazy merge of the per-backend
    runs. Ties keep the route's order."""
    runs = _runs(cands, cfg)
    if s == "usage_based":
        return _least_used(cands, state, runs.pos, runs.weighted)
    if runs.pos is None:  # a model named twice: sorted whole, as they come
        backend = {c.model: cfg.models[c.model].backend for c in cands}
        if s == "least_loaded":
            return sorted(cands, key=lambda c: _load(cfg, state, backend[c.model]))
        if s == "fastest_response":
            return sorted(cands, key=lambda c: _latency(state, backend[c.model]))
        return sorted(
            cands,
            key=lambda c: (-cfg.models[c.model].context, _load(cfg, state, backend[c.model])),
        )
    merged: Iterator[tuple[Any, ...]]
    if s == "most_capacity":
        merged = heapq.merge(
            *(
                [(w, _load(cfg, state, b), i, c) for w, i, c in run]
                for b, run in runs.by_window.items()
            ),
            key=lambda t: t[:3],
        )
    else:
        keys = {
            b: (_load(cfg, state, b),) if s == "least_loaded" else _latency(state, b)
            for b in runs.by_backend
        }
        merged = heapq.merge(
            *(_keyed(keys[b], run) for b, run in runs.by_backend.items()),
            key=lambda t: t[:-1],
        )
    return (t[-1] for t in merged)


def _keyed(key: tuple[Any, ...], run: list[tuple[int, Candidate]]) -> Iterator[tuple[Any, ...]]:
    return ((*key, i, c) for i, c in run)


def _least_used(
    cands: tuple[Candidate, ...], state: LiveState, pos: dict[str, int] | None, weighted: bool
) -> Iterable[Candidate]:
    """usage_based: the least share of usage (tokens / weight) first, ties in
    the route's order, weightless ones last. The unused all share 0, so only
    the used ones (the live state's usage names them) are sorted."""
    usage = state.usage
    if weighted and not any(usage.values()):
        return cands  # all unused: the route's order

    def share(c: Candidate) -> float:
        return usage.get(c.model, 0) / c.weight if c.weight > 0 else float("inf")

    used = {m: u for m, u in usage.items() if u}
    if pos is None or len(used) * 4 >= len(cands) or any(u < 0 for u in used.values()):
        return sorted(cands, key=share)
    ranked = sorted(
        (u / cands[i].weight, i, cands[i])
        for m, u in used.items()
        if (i := pos.get(m, -1)) >= 0 and cands[i].weight > 0
    )
    return itertools.chain(
        (c for c in cands if c.weight > 0 and c.model not in used),
        (c for _, _, c in ranked),
        (c for c in cands if c.weight <= 0),
    )


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
