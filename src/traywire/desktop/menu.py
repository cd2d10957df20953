"""The tray menu, as immutable data: a tuple of `Item`s whose actions are
`Command` values, made from a `tray.Snapshot` by `menu_model`.

Pure (no I/O, no pystray): `trayicon` turns the items into pystray's menu and
runs the commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .tray import (
    PREFERENCE_LABELS,
    USABLE,
    Condition,
    Snapshot,
    active_of,
    backends_of,
    conditions,
    group_label,
    groups_of,
    member_label,
    preference_of,
    running_switch,
    switches_of,
    tooltip,
)

__all__ = ["SEPARATOR", "Command", "Item", "find_item", "menu_model"]


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
    if cond in USABLE:
        latency = _fmt_latency(entry.get("latency_ms"))
        if latency:
            parts.append(latency)
    if cond != "disabled":
        parts.append(f"{entry.get('in_flight', 0)}/{entry.get('capacity', '?')}")
    return Item(f"{name} — " + " · ".join(parts), enabled=cond != "disabled")


def _group_item(s: Snapshot, group: str, members: Sequence[str]) -> Item:
    label = group_label(group)
    active = active_of(s).get(group)
    sw = running_switch(s, group)
    models_by_backend: dict[str, list[str]] = {}
    for model, (backend, _up) in s.topology.models.items():
        models_by_backend.setdefault(backend, []).append(model)
    items: list[Item] = []
    for member in members:
        text = member_label(group, member)
        served = models_by_backend.get(member)
        if served and served != [text]:
            text += f" ({', '.join(served)})"
        if sw is not None and sw.get("to") == member:
            verb = "starting" if sw.get("kind") == "start" else "switching"
            text += f" — {verb}… ({sw.get('phase')})"
        items.append(
            Item(
                text,
                Command("set_active", (group, member)),
                checked=member == active,
                radio=True,
                enabled=sw is None,
            )
        )
    last = switches_of(s).get(group)
    if sw is None and isinstance(last, Mapping) and last.get("phase") == "failed":
        error = str(last.get("error") or "unknown error")
        items.append(SEPARATOR)
        items.append(Item(f"Last switch to {last.get('to')} failed: {error}", enabled=False))
    doing = "" if sw is None else " — starting…" if sw.get("kind") == "start" else " — switching…"
    title = f"{label} model{doing}"
    return Item(title, submenu=tuple(items))


def _key_names(s: Snapshot) -> list[tuple[str, bool]]:
    """keyring names the backends use, and whether each is set."""
    out: dict[str, bool] = {}
    for entry in backends_of(s).values():
        ref = entry.get("key")
        if isinstance(ref, str) and ref.startswith("keyring:"):
            name = ref.split(":", 1)[1]
            missing = bool(entry.get("no_key"))
            out[name] = out.get(name, True) and not missing
    return list(out.items())


def _key_item(s: Snapshot) -> Item:
    """Enabled whenever the dashboard can take a key (the OS keyring is usable);
    otherwise the label says why."""
    problem = s.keyring or s.status.get("keyring")
    if problem:
        return Item("Set cloud API key — no OS keyring (run `traywire doctor`)", enabled=False)
    names = _key_names(s)
    if not names:  # the dashboard's form takes any name
        return Item("Set cloud API key…", Command("set_key", ("",)))
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


def _shared_item(s: Snapshot) -> Item | None:
    """Shared state (several instances, config shared_state): how it stands."""
    st = s.status.get("shared_state")
    if not isinstance(st, Mapping):
        return None
    if st.get("state") == "unreachable":
        return Item(str(st.get("note") or "shared state: unreachable"), enabled=False)
    n = len(st.get("instances") or ())
    if st.get("state") == "connected":
        return Item(f"shared state: {n} instance{'s' if n != 1 else ''}", enabled=False)
    return Item("shared state: connecting…", enabled=False)


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
    conds = conditions(s)
    backends = tuple(_backend_item(n, e, conds[n]) for n, e in backends_of(s).items())
    items.append(Item("Backends", submenu=backends or (Item("(none)", enabled=False),)))
    shared = _shared_item(s)
    if shared is not None:
        items.append(shared)
    pref = preference_of(s)
    items.append(
        Item(
            "Routing",
            submenu=tuple(
                Item(label, Command("set_preference", (value,)), checked=pref == value, radio=True)
                for value, label in PREFERENCE_LABELS
            ),
        )
    )
    for group, members in groups_of(s).items():
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
