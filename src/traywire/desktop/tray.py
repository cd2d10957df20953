"""The tray icon: what it shows, as pure functions of a status snapshot.

Pure part (no I/O, no clock, no threads; safe on any thread):

* `Snapshot` - an immutable picture of the running proxy: the frozen
  `Runtime.status()`, the config's routing topology, the endpoint URL, whether
  start-at-login is on. `proxythread.Proxy.snapshot()` builds it.
* `icon_state`, `tooltip`, `menu_model` (a tuple of immutable `Item`s whose
  actions are `Command` values), `notices` / `notifications` (what changed
  between two snapshots worth a desktop notification) and `RateLimiter`
  (keeps a flapping backend from spamming; takes ``now``).

The pystray glue that shows it is `traywire.trayicon`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from .icon import IconState

__all__ = [
    "EMPTY_TOPOLOGY",
    "PREFERENCE_LABELS",
    "SEPARATOR",
    "Command",
    "Condition",
    "Item",
    "Notice",
    "RateLimiter",
    "Snapshot",
    "Topology",
    "backend_condition",
    "freeze",
    "icon_state",
    "menu_model",
    "not_running",
    "notices",
    "notifications",
    "thaw",
    "tooltip",
    "topology",
    "unreachable_routes",
]

log = logging.getLogger("traywire")

_EMPTY: Mapping[str, Any] = MappingProxyType({})

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
    routes: Mapping[str, tuple[str, ...]] = _EMPTY
    # Public model -> (backend, upstream model id).
    models: Mapping[str, tuple[str, str]] = _EMPTY
    # Exclusive group -> its member backends, in config order.
    groups: Mapping[str, tuple[str, ...]] = _EMPTY


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
    status: Mapping[str, Any] = _EMPTY
    topology: Topology = EMPTY_TOPOLOGY
    # Start at login is on (autostart.is_enabled()).
    autostart: bool = False
    # A line for the menu's header when something needs saying (e.g. a failed reload).
    note: str = ""


def not_running(url: str = "", note: str = "", autostart: bool = False) -> Snapshot:
    return Snapshot(running=False, url=url, note=note, autostart=autostart)


# --------------------------------------------------------------------------- reading it

Condition = Literal[
    "up", "degraded", "unknown", "rate_limited", "down", "no_key", "standby", "disabled"
]
_USABLE: tuple[Condition, ...] = ("up", "degraded", "unknown")
_SWITCH_DONE = ("done", "failed")

PREFERENCE_LABELS: tuple[tuple[str, str], ...] = (
    ("auto", "Auto"),
    ("prefer_local", "Prefer local"),
    ("prefer_cloud", "Prefer cloud"),
    ("local_only", "Local only"),
    ("cloud_only", "Cloud only"),
)
_PAUSED = ("local_only", "cloud_only")
_TOOLTIP_MAX = 127  # Windows cuts tooltips at 128 characters
_GROUP_LABELS = {"vllm": "vLLM"}


def _backends(s: Snapshot) -> Mapping[str, Mapping[str, Any]]:
    b = s.status.get("backends")
    return b if isinstance(b, Mapping) else _EMPTY


def _active(s: Snapshot) -> Mapping[str, Any]:
    a = s.status.get("active")
    return a if isinstance(a, Mapping) else _EMPTY


def _preference(s: Snapshot) -> str:
    p = s.status.get("preference")
    return p if isinstance(p, str) else "auto"


def _switches(s: Snapshot) -> Mapping[str, Mapping[str, Any]]:
    sw = s.status.get("switching")
    return sw if isinstance(sw, Mapping) else _EMPTY


def _switching(s: Snapshot, group: str) -> Mapping[str, Any] | None:
    """The group's running switch, if one runs."""
    sw = _switches(s).get(group)
    if isinstance(sw, Mapping) and sw.get("phase") not in _SWITCH_DONE:
        return sw
    return None


def _groups(s: Snapshot) -> dict[str, tuple[str, ...]]:
    """Exclusive group -> members: from the topology, else from the backends' status."""
    if s.topology.groups:
        return dict(s.topology.groups)
    out: dict[str, list[str]] = {}
    for name, b in _backends(s).items():
        g = b.get("exclusive_group")
        if isinstance(g, str) and g:
            out.setdefault(g, []).append(name)
    for g in _active(s):
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


def _conditions(s: Snapshot) -> dict[str, Condition]:
    active = _active(s)
    return {n: backend_condition(n, e, active) for n, e in _backends(s).items()}


def _model_usable(s: Snapshot, model: str, conds: Mapping[str, Condition]) -> bool:
    ref = s.topology.models.get(model)
    if ref is None:
        return False
    backend, upstream = ref
    if conds.get(backend) not in _USABLE:
        return False
    entry = _backends(s).get(backend, _EMPTY)
    pref = _preference(s)
    location = entry.get("location")
    if (pref == "local_only" and location == "cloud") or (
        pref == "cloud_only" and location == "local"
    ):
        return False
    return upstream not in (entry.get("missing_models") or ())


def unreachable_routes(s: Snapshot) -> tuple[str, ...]:
    """Routes (in config order) with no model on a usable backend under the preference."""
    conds = _conditions(s)
    return tuple(
        route
        for route, models in s.topology.routes.items()
        if not any(_model_usable(s, m, conds) for m in models)
    )


def icon_state(s: Snapshot) -> IconState:
    """not_running > failing (a route has no usable backend) > paused (local or
    cloud only) > degraded (some backend down, every route served) > healthy."""
    if not s.running:
        return "not_running"
    if unreachable_routes(s):
        return "failing"
    if _preference(s) in _PAUSED:
        return "paused"
    if any(c not in ("up", "unknown", "standby", "disabled") for c in _conditions(s).values()):
        return "degraded"
    return "healthy"


def _group_label(group: str) -> str:
    return _GROUP_LABELS.get(group, group)


def _member_label(group: str, member: str) -> str:
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
    conds = _conditions(s)
    counted = [c for c in conds.values() if c not in ("standby", "disabled")]
    up = sum(c in ("up", "degraded") for c in counted)
    parts = [f"{up}/{len(counted)} backends up"]
    dead = unreachable_routes(s)
    if dead:
        parts.append("no backend for " + ", ".join(dead))
    parts.append(_pref_text(_preference(s)))
    active = _active(s)
    for group in _groups(s):
        sw = _switching(s, group)
        label = _group_label(group)
        if sw is not None:
            parts.append(f"{label}: switching to {_member_label(group, str(sw.get('to')))}…")
        elif active.get(group):
            parts.append(f"{label}: {_member_label(group, str(active[group]))}")
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


# --------------------------------------------------------------------------- menu model


class Command(NamedTuple):
    """What activating a menu item asks for.

    ``copy`` (text), ``set_preference`` (preference), ``set_active`` (group,
    member), ``open_dashboard``, ``set_key`` (keyring name), ``open_config``,
    ``reload``, ``toggle_autostart``, ``quit``.
    """

    name: str
    args: tuple[str, ...] = ()


class Item(NamedTuple):
    text: str
    command: Command | None = None
    # None: not checkable; True/False: a check (or radio) item.
    checked: bool | None = None
    # One of a set of mutually exclusive choices (shown as a radio where the
    # platform can, else as a check mark).
    radio: bool = False
    enabled: bool = True
    submenu: tuple[Item, ...] | None = None
    separator: bool = False


SEPARATOR = Item("", separator=True)


def _fmt_latency(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return ""
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


_CONDITION_TEXT: Mapping[Condition, str] = {
    "up": "up",
    "degraded": "degraded",
    "unknown": "checking…",
    "rate_limited": "rate-limited",
    "down": "down",
    "no_key": "no key",
    "standby": "standby",
    "disabled": "disabled",
}


def _backend_item(name: str, entry: Mapping[str, Any], cond: Condition) -> Item:
    parts = [_CONDITION_TEXT[cond]]
    if cond == "down" and entry.get("last_error"):
        parts[0] += f" ({entry['last_error']})"
    if cond == "degraded" and entry.get("missing_models"):
        parts[0] += " (missing " + ", ".join(map(str, entry["missing_models"])) + ")"
    if cond in _USABLE:
        latency = _fmt_latency(entry.get("latency_ms"))
        if latency:
            parts.append(latency)
    if cond != "disabled":
        parts.append(f"{entry.get('in_flight', 0)}/{entry.get('capacity', '?')}")
    return Item(f"{name} — " + " · ".join(parts), enabled=cond != "disabled")


def _group_item(s: Snapshot, group: str, members: Sequence[str]) -> Item:
    label = _group_label(group)
    active = _active(s).get(group)
    sw = _switching(s, group)
    models_by_backend: dict[str, list[str]] = {}
    for model, (backend, _up) in s.topology.models.items():
        models_by_backend.setdefault(backend, []).append(model)
    items: list[Item] = []
    for member in members:
        text = _member_label(group, member)
        served = models_by_backend.get(member)
        if served and served != [text]:
            text += f" ({', '.join(served)})"
        if sw is not None and sw.get("to") == member:
            text += f" — switching… ({sw.get('phase')})"
        items.append(
            Item(
                text,
                Command("set_active", (group, member)),
                checked=member == active,
                radio=True,
                enabled=sw is None,
            )
        )
    last = _switches(s).get(group)
    if sw is None and isinstance(last, Mapping) and last.get("phase") == "failed":
        error = str(last.get("error") or "unknown error")
        items.append(SEPARATOR)
        items.append(Item(f"Last switch to {last.get('to')} failed: {error}", enabled=False))
    title = f"{label} model" + (" — switching…" if sw is not None else "")
    return Item(title, submenu=tuple(items))


def _key_names(s: Snapshot) -> list[tuple[str, bool]]:
    """keyring names the backends use, and whether each is set."""
    out: dict[str, bool] = {}
    for entry in _backends(s).values():
        ref = entry.get("key")
        if isinstance(ref, str) and ref.startswith("keyring:"):
            name = ref.split(":", 1)[1]
            missing = bool(entry.get("no_key"))
            out[name] = out.get(name, True) and not missing
    return list(out.items())


def _key_item(s: Snapshot) -> Item:
    names = _key_names(s)
    if not names:
        return Item("Set cloud API key…", enabled=False)
    if len(names) == 1:
        name, is_set = names[0]
        suffix = "" if is_set else " (not set)"
        return Item(f"Set cloud API key…{suffix}", Command("set_key", (name,)))
    return Item(
        "Set cloud API key",
        submenu=tuple(
            Item(f"{name}…" + ("" if is_set else " (not set)"), Command("set_key", (name,)))
            for name, is_set in names
        ),
    )


def menu_model(s: Snapshot) -> tuple[Item, ...]:
    """The tray menu, top to bottom."""
    header = Item(tooltip(s), enabled=False)
    tail = (
        SEPARATOR,
        Item("Open config file", Command("open_config")),
        Item("Reload config", Command("reload"), enabled=s.running),
        SEPARATOR,
        Item("Start at login", Command("toggle_autostart"), checked=s.autostart),
        SEPARATOR,
        Item("Quit traywire", Command("quit")),
    )
    if not s.running:
        return (header, *tail)
    openai_url = f"{s.url}/v1"
    items: list[Item] = [
        header,
        SEPARATOR,
        Item(f"Copy OpenAI endpoint   {openai_url}", Command("copy", (openai_url,))),
        Item(f"Copy Ollama endpoint   {s.url}", Command("copy", (s.url,))),
        SEPARATOR,
    ]
    conds = _conditions(s)
    backends = tuple(_backend_item(n, e, conds[n]) for n, e in _backends(s).items())
    items.append(Item("Backends", submenu=backends or (Item("(none)", enabled=False),)))
    pref = _preference(s)
    items.append(
        Item(
            "Routing",
            submenu=tuple(
                Item(label, Command("set_preference", (value,)), checked=pref == value, radio=True)
                for value, label in PREFERENCE_LABELS
            ),
        )
    )
    for group, members in _groups(s).items():
        items.append(_group_item(s, group, members))
    items += [
        SEPARATOR,
        Item("Open dashboard", Command("open_dashboard")),
        _key_item(s),
    ]
    return (*items, *tail)


def find_item(items: Iterable[Item], *path: str) -> Item | None:
    """The item whose text starts with ``path[-1]``, under submenus starting with
    the earlier path parts (for tests and scripted use)."""
    head, rest = path[0], path[1:]
    for it in items:
        if not it.separator and it.text.startswith(head):
            if not rest:
                return it
            if it.submenu is not None:
                return find_item(it.submenu, *rest)
    return None


# --------------------------------------------------------------------------- notifications


class Notice(NamedTuple):
    # Rate limiting happens per key (one per backend, one per group).
    key: str
    text: str


def notices(old: Snapshot | None, new: Snapshot) -> list[Notice]:
    """What is worth a desktop notification between two snapshots: a backend
    that was serving going down, a down backend coming back, a switch that
    finished or failed. Nothing at start (``old`` None or not running)."""
    if old is None or not old.running or not new.running:
        return []
    out: list[Notice] = []
    old_c, new_c = _conditions(old), _conditions(new)
    groups = set(_groups(new))
    busy = {g for g in groups if _switching(old, g) is not None or _switching(new, g) is not None}
    finished: set[str] = set()
    for g in groups:
        now_sw = _switches(new).get(g)
        before = _switches(old).get(g)
        if not isinstance(now_sw, Mapping) or now_sw.get("phase") not in _SWITCH_DONE:
            continue
        if isinstance(before, Mapping) and _same_switch(before, now_sw):
            continue
        finished.add(g)
        label = _group_label(g)
        to = _member_label(g, str(now_sw.get("to")))
        if now_sw.get("phase") == "done":
            out.append(Notice(f"switch:{g}", f"{label} now serves {to}"))
        else:
            err = now_sw.get("error") or "unknown error"
            out.append(Notice(f"switch:{g}", f"Switching {label} to {to} failed: {err}"))
    for name, cond in new_c.items():
        was = old_c.get(name)
        entry = _backends(new).get(name, _EMPTY)
        if entry.get("exclusive_group") in busy | finished:
            continue
        if was in ("up", "degraded") and cond == "down":
            why = entry.get("last_error")
            out.append(Notice(f"backend:{name}", f"{name} is down" + (f" ({why})" if why else "")))
        elif was == "down" and cond in ("up", "degraded"):
            out.append(Notice(f"backend:{name}", f"{name} is back"))
    return out


def _same_switch(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("from", "to", "phase", "elapsed_s", "error")
    return all(a.get(k) == b.get(k) for k in keys)


def notifications(old: Snapshot | None, new: Snapshot) -> list[str]:
    """The texts of `notices`."""
    return [n.text for n in notices(old, new)]


class RateLimiter:
    """At most ``burst`` notifications per key in any ``window`` seconds.

    A notice over the limit is held (a later one for the same key replaces it)
    and `flush` releases it once the key is allowed again, unless it says what
    the last one shown for that key said (a backend that went down and came
    back while held is not news). Pure: the caller passes ``now``.
    """

    def __init__(self, window: float = 60.0, burst: int = 2) -> None:
        if window <= 0 or burst < 1:
            raise ValueError("need window > 0 and burst >= 1")
        self.window = window
        self.burst = burst
        self._sent: dict[str, deque[float]] = {}
        self._held: dict[str, Notice] = {}
        self._last: dict[str, str] = {}

    def _allowed(self, key: str, now: float) -> bool:
        q = self._sent.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return len(q) < self.burst

    def _send(self, n: Notice, now: float) -> Notice:
        self._sent.setdefault(n.key, deque()).append(now)
        self._last[n.key] = n.text
        return n

    def offer(self, n: Notice, now: float) -> list[Notice]:
        """``[n]`` if it may be shown now, else ``[]`` (held)."""
        if self._allowed(n.key, now):
            self._held.pop(n.key, None)
            return [self._send(n, now)]
        self._held[n.key] = n
        return []

    def flush(self, now: float) -> list[Notice]:
        """Held notices whose key is allowed again (and which are still news)."""
        out: list[Notice] = []
        for key in list(self._held):
            if not self._allowed(key, now):
                continue
            n = self._held.pop(key)
            if self._last.get(key) != n.text:
                out.append(self._send(n, now))
        return out

    @property
    def held(self) -> tuple[Notice, ...]:
        return tuple(self._held.values())
