"""The tray icon: what it shows, as pure functions of a status snapshot.

Pure (no I/O, no clock, no threads; safe on any thread):

* `Snapshot` - an immutable picture of the running proxy: the frozen
  `Runtime.status()`, the config's routing topology, the endpoint URL, whether
  start-at-login is on. `proxythread.Proxy.snapshot()` builds it.
* reading it: each backend's `Condition`, the routes no usable backend
  serves, `icon_state` and `tooltip`.

The menu made of it is `menu`'s, the desktop notifications `notices`'; the
pystray glue that shows them all is `trayicon`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from .icon import Badge, IconState

__all__ = [
    "EMPTY_TOPOLOGY",
    "PREFERENCE_LABELS",
    "Condition",
    "Snapshot",
    "Topology",
    "backend_condition",
    "freeze",
    "icon_badge",
    "icon_state",
    "not_running",
    "thaw",
    "tooltip",
    "topology",
    "unreachable_routes",
]

EMPTY: Mapping[str, Any] = MappingProxyType({})

# --------------------------------------------------------------------------- snapshot


def freeze(value: Any) -> Any:
    """A deeply immutable copy of JSON-like data: dicts become read-only
    mappings, lists and tuples become tuples, sets frozensets."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain dicts and lists again (e.g. to print a snapshot as JSON)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | frozenset):
        return [thaw(v) for v in value]
    return value


class Topology(NamedTuple):
    """What the config says about reachability, for the icon's colour."""

    # Route (or, in a config without routes, model) -> every public model a
    # request for it may end up on: its candidates and their fallback chains.
    routes: Mapping[str, tuple[str, ...]] = EMPTY
    # Public model -> (backend, upstream model id).
    models: Mapping[str, tuple[str, str]] = EMPTY
    # Exclusive group -> its member backends, in config order.
    groups: Mapping[str, tuple[str, ...]] = EMPTY


EMPTY_TOPOLOGY = Topology()


def topology(cfg: Any) -> Topology:
    """The `Topology` of a `config.Config`."""
    models = {name: (m.backend, m.upstream) for name, m in cfg.models.items()}
    fallbacks: Mapping[str, Sequence[str]] = cfg.fallbacks

    def reach(names: Iterable[str]) -> tuple[str, ...]:
        out: dict[str, None] = {}
        for n in names:
            out.setdefault(n)
            for f in fallbacks.get(n, ()):
                out.setdefault(f)
        return tuple(m for m in out if m in models)

    routes: dict[str, tuple[str, ...]] = {}
    for name, route in cfg.routes.items():
        cands = [c.model for c in route.candidates]
        for band in getattr(route, "bands", ()):
            cands.extend(c.model for c in band.candidates)
        routes[name] = reach(cands)
    if not routes:
        routes = {name: reach([name]) for name in models}
    groups = {name: tuple(g.members) for name, g in cfg.groups.items()}
    return Topology(
        routes=MappingProxyType(routes),
        models=MappingProxyType(models),
        groups=MappingProxyType(groups),
    )


class Snapshot(NamedTuple):
    """Everything the tray shows, immutable (pass it between threads freely)."""

    running: bool
    # The proxy's base URL, e.g. http://127.0.0.1:8484 ("" when unknown).
    url: str = ""
    # `Runtime.status()`, deeply frozen (see `freeze`).
    status: Mapping[str, Any] = EMPTY
    topology: Topology = EMPTY_TOPOLOGY
    # Start at login is on (autostart.is_enabled()).
    autostart: bool = False
    # A line for the menu's header when something needs saying (e.g. a failed reload).
    note: str = ""
    # Why the OS keyring cannot take a key ("" when it can, or when unknown).
    keyring: str = ""


def not_running(url: str = "", note: str = "", autostart: bool = False) -> Snapshot:
    return Snapshot(running=False, url=url, note=note, autostart=autostart)


# --------------------------------------------------------------------------- reading it

Condition = Literal[
    "up", "degraded", "unknown", "rate_limited", "down", "no_key", "standby", "disabled"
]
USABLE: tuple[Condition, ...] = ("up", "degraded", "unknown")
SWITCH_DONE = ("done", "failed")

PREFERENCE_LABELS: tuple[tuple[str, str], ...] = (
    ("auto", "Auto"),
    ("prefer_local", "Prefer local"),
    ("prefer_cloud", "Prefer cloud"),
    ("local_only", "Local only"),
    ("cloud_only", "Cloud only"),
)
_BADGES: Mapping[str, Badge] = MappingProxyType({"local_only": "local", "cloud_only": "cloud"})
_TOOLTIP_MAX = 127  # Windows cuts tooltips at 128 characters
_GROUP_LABELS = {"vllm": "vLLM"}


def backends_of(s: Snapshot) -> Mapping[str, Mapping[str, Any]]:
    b = s.status.get("backends")
    return b if isinstance(b, Mapping) else EMPTY


def active_of(s: Snapshot) -> Mapping[str, Any]:
    a = s.status.get("active")
    return a if isinstance(a, Mapping) else EMPTY


def preference_of(s: Snapshot) -> str:
    p = s.status.get("preference")
    return p if isinstance(p, str) else "auto"


def switches_of(s: Snapshot) -> Mapping[str, Mapping[str, Any]]:
    sw = s.status.get("switching")
    return sw if isinstance(sw, Mapping) else EMPTY


def running_switch(s: Snapshot, group: str) -> Mapping[str, Any] | None:
    """The group's running switch, if one runs."""
    sw = switches_of(s).get(group)
    if isinstance(sw, Mapping) and sw.get("phase") not in SWITCH_DONE:
        return sw
    return None


def groups_of(s: Snapshot) -> dict[str, tuple[str, ...]]:
    """Exclusive group -> members: from the topology, else from the backends' status."""
    if s.topology.groups:
        return dict(s.topology.groups)
    out: dict[str, list[str]] = {}
    for name, b in backends_of(s).items():
        g = b.get("exclusive_group")
        if isinstance(g, str) and g:
            out.setdefault(g, []).append(name)
    for g in active_of(s):
        out.setdefault(g, [])
    return {g: tuple(m) for g, m in out.items()}


def backend_condition(name: str, entry: Mapping[str, Any], active: Mapping[str, Any]) -> Condition:
    """One backend's state as the tray shows it."""
    if not entry.get("enabled", True):
        return "disabled"
    group = entry.get("exclusive_group")
    if group and active.get(group) != name:
        return "standby"
    if entry.get("no_key"):
        return "no_key"
    if entry.get("circuit") == "open":
        return "rate_limited" if entry.get("open_reason") == "rate_limited" else "down"
    health = entry.get("health", "unknown")
    if health in ("up", "down", "degraded"):
        return health  # type: ignore[no-any-return]
    return "unknown"


def conditions(s: Snapshot) -> dict[str, Condition]:
    active = active_of(s)
    return {n: backend_condition(n, e, active) for n, e in backends_of(s).items()}


def _model_usable(s: Snapshot, model: str, conds: Mapping[str, Condition]) -> bool:
    ref = s.topology.models.get(model)
    if ref is None:
        return False
    backend, upstream = ref
    if conds.get(backend) not in USABLE:
        return False
    entry = backends_of(s).get(backend, EMPTY)
    pref = preference_of(s)
    location = entry.get("location")
    if (pref == "local_only" and location == "cloud") or (
        pref == "cloud_only" and location == "local"
    ):
        return False
    return upstream not in (entry.get("missing_models") or ())


def unreachable_routes(s: Snapshot) -> tuple[str, ...]:
    """Routes (in config order) with no model on a usable backend under the preference."""
    conds = conditions(s)
    return tuple(
        route
        for route, models in s.topology.routes.items()
        if not any(_model_usable(s, m, conds) for m in models)
    )


def icon_state(s: Snapshot) -> IconState:
    """The health the icon shows: not_running > failing (a route has no usable
    backend under the preference) > degraded (some backend down, every route
    served) > healthy. The preference never hides it: see `icon_badge`."""
    if not s.running:
        return "not_running"
    if unreachable_routes(s):
        return "failing"
    if any(c not in ("up", "unknown", "standby", "disabled") for c in conditions(s).values()):
        return "degraded"
    return "healthy"


def icon_badge(s: Snapshot) -> Badge | None:
    """The preference's badge on the icon: a house for local only, a cloud for
    cloud only; None for the preferences that allow both (and when not running)."""
    return _BADGES.get(preference_of(s)) if s.running else None


def group_label(group: str) -> str:
    return _GROUP_LABELS.get(group, group)


def member_label(group: str, member: str) -> str:
    for sep in ("_", "-", ":"):
        prefix = group + sep
        if member.startswith(prefix) and len(member) > len(prefix):
            return member[len(prefix) :]
    return member


def _pref_text(pref: str) -> str:
    return dict(PREFERENCE_LABELS).get(pref, pref).lower()


def _summary(s: Snapshot) -> str:
    """The status line without the app name."""
    if not s.running:
        return "not running" + (f" · {s.note}" if s.note else "")
    conds = conditions(s)
    counted = [c for c in conds.values() if c not in ("standby", "disabled")]
    up = sum(c in ("up", "degraded") for c in counted)
    parts = [f"{up}/{len(counted)} backends up"]
    dead = unreachable_routes(s)
    if dead:
        parts.append("no backend for " + ", ".join(dead))
    parts.append(_pref_text(preference_of(s)))
    active = active_of(s)
    for group in groups_of(s):
        sw = running_switch(s, group)
        label = group_label(group)
        if sw is not None:
            verb = "starting" if sw.get("kind") == "start" else "switching to"
            parts.append(f"{label}: {verb} {member_label(group, str(sw.get('to')))}…")
        elif active.get(group):
            parts.append(f"{label}: {member_label(group, str(active[group]))}")
        else:
            parts.append(f"{label}: none")
    if s.note:
        parts.append(s.note)
    return " · ".join(parts)


def tooltip(s: Snapshot) -> str:
    """E.g. ``traywire — 5/6 backends up · prefer local · vLLM: qwen``."""
    text = f"traywire — {_summary(s)}"
    if len(text) > _TOOLTIP_MAX:
        text = text[: _TOOLTIP_MAX - 1] + "…"
    return text
