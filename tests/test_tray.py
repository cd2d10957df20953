"""The tray's pure views of a status snapshot (icon state, tooltip, menu,
notifications, rate limiting) and the pystray glue, driven with hand-built
snapshots and a pystray Icon that records instead of drawing."""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from harness import config_for

from traywire.desktop import tray, trayicon
from traywire.desktop.menu import SEPARATOR, Command, Item, find_item, menu_model
from traywire.desktop.notices import Notice, RateLimiter, notices, notifications
from traywire.desktop.tray import (
    Snapshot,
    Topology,
    backend_condition,
    freeze,
    icon_badge,
    icon_state,
    thaw,
    tooltip,
    topology,
    unreachable_routes,
)

URL = "http://127.0.0.1:8484"


# --------------------------------------------------------------------------- building snapshots


def backend(
    health: str = "up",
    *,
    location: str = "local",
    enabled: bool = True,
    group: str | None = None,
    circuit: str = "closed",
    open_reason: str | None = None,
    no_key: bool = False,
    key: str | None = None,
    in_flight: int = 0,
    capacity: int = 4,
    latency_ms: float | None = 42.0,
    last_error: str | None = None,
    missing: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "kind": "openai",
        "url": "http://127.0.0.1:1/v1",
        "location": location,
        "capacity": capacity,
        "enabled": enabled,
        "exclusive_group": group,
        "key": key,
        "health": health,
        "circuit": circuit,
        "open_reason": open_reason,
        "in_flight": in_flight,
        "latency_ms": latency_ms,
        "last_error": last_error,
        "missing_models": list(missing),
        "no_key": no_key,
    }


# The default shape: a local Ollama, a cloud, two vLLM members (qwen active),
# a llama.cpp server. Routes: code (qwen -> cloud coder -> ollama coder),
# chat (ollama llama -> cloud), creative (dolphin -> cloud).
MODELS = {
    "llama": ("ollama", "llama3.1:latest"),
    "coder-local": ("ollama", "qwen2.5-coder:7b"),
    "coder-cloud": ("cloud", "qwen3-coder:480b"),
    "big-cloud": ("cloud", "gpt-oss:120b"),
    "qwen-vllm": ("vllm_qwen", "Qwen/Qwen2.5-Coder"),
    "dolphin-vllm": ("vllm_dolphin", "dolphin"),
    "cpp": ("llama_cpp", "default"),
}
ROUTES = {
    "code": ("qwen-vllm", "coder-cloud", "coder-local"),
    "chat": ("llama", "big-cloud"),
    "creative": ("dolphin-vllm", "big-cloud", "llama"),
}
GROUPS = {"vllm": ("vllm_qwen", "vllm_dolphin")}


def healthy_backends() -> dict[str, dict[str, Any]]:
    return {
        "ollama": backend(),
        "cloud": backend(location="cloud", key="keyring:ollama_cloud", capacity=8),
        "vllm_qwen": backend(group="vllm", capacity=16),
        "vllm_dolphin": backend("unknown", group="vllm", capacity=16, latency_ms=None),
        "llama_cpp": backend(capacity=2),
    }


def snap(
    backends: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    preference: str = "auto",
    active: Mapping[str, str | None] | None = None,
    switching: Mapping[str, Mapping[str, Any]] | None = None,
    running: bool = True,
    autostart: bool = False,
    routes: Mapping[str, tuple[str, ...]] | None = None,
    models: Mapping[str, tuple[str, str]] | None = None,
    groups: Mapping[str, tuple[str, ...]] | None = None,
    note: str = "",
) -> Snapshot:
    status = {
        "version": "0.1.0",
        "uptime_s": 12.0,
        "preference": preference,
        "active": dict(active if active is not None else {"vllm": "vllm_qwen"}),
        "switching": dict(switching or {}),
        "backends": {n: dict(b) for n, b in (backends or healthy_backends()).items()},
        "keyring": None,
    }
    topo = Topology(
        routes=MappingProxyType(dict(ROUTES if routes is None else routes)),
        models=MappingProxyType(dict(MODELS if models is None else models)),
        groups=MappingProxyType(dict(GROUPS if groups is None else groups)),
    )
    return Snapshot(
        running=running,
        url=URL,
        status=freeze(status),
        topology=topo,
        autostart=autostart,
        note=note,
    )


def with_backend(s: Snapshot, name: str, **changes: Any) -> Snapshot:
    backends = thaw(s.status["backends"])
    backends[name].update(changes)
    status = thaw(s.status)
    status["backends"] = backends
    return s._replace(status=freeze(status))


def texts(items: tuple[Item, ...]) -> list[str]:
    return [("---" if i.separator else i.text) for i in items]


# --------------------------------------------------------------------------- freeze / topology


def test_freeze_is_deep_and_thaw_gives_plain_data_back() -> None:
    data = {"a": [1, {"b": [2, 3]}], "c": {"d": {4, 5}}, "e": "x"}
    frozen = freeze(data)
    assert isinstance(frozen, MappingProxyType)
    assert frozen["a"] == (1, MappingProxyType({"b": (2, 3)}))
    assert frozen["c"]["d"] == frozenset({4, 5})
    with pytest.raises(TypeError):
        frozen["e"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        frozen["a"][1]["b"] = ()  # type: ignore[index]
    assert thaw(freeze({"a": [1, {"b": [2]}]})) == {"a": [1, {"b": [2]}]}
    data["a"].append(9)  # the frozen copy does not follow the original
    assert len(frozen["a"]) == 2


def test_topology_follows_candidates_bands_and_chains() -> None:
    extra = """
models:
  m1: {backend: a, params_b: 7, tier: local, capabilities: [code], context: 8192}
  m2: {backend: b, params_b: 7, tier: local, capabilities: [code], context: 8192}
  m3: {backend: b, params_b: 7, tier: local, capabilities: [chat], context: 8192}
  m4: {backend: a, params_b: 7, tier: local, capabilities: [chat], context: 8192}
fallbacks:
  m1: [m2]
routes:
  code:
    strategy: direct
    candidates: [m1]
  chat:
    strategy: direct
    candidates: [m3]
"""
    cfg = config_for(
        {
            "a": {"kind": "openai", "url": "http://127.0.0.1:1/v1", "location": "local"},
            "b": {
                "kind": "openai",
                "url": "http://127.0.0.1:2/v1",
                "location": "local",
                "exclusive_group": "g",
            },
        },
        extra,
    )
    t = topology(cfg)
    assert dict(t.routes) == {"code": ("m1", "m2"), "chat": ("m3",)}
    assert t.models["m2"] == ("b", "m2")
    assert dict(t.groups) == {"g": ("b",)}


def test_topology_without_routes_treats_each_model_as_a_route() -> None:
    cfg = config_for(
        {"a": {"kind": "openai", "url": "http://127.0.0.1:1/v1", "location": "local"}},
        "models:\n  m1: {backend: a, params_b: 7, tier: local, capabilities: [chat],"
        " context: 8192}\n",
    )
    assert dict(topology(cfg).routes) == {"m1": ("m1",)}


def test_topology_of_the_default_config_covers_every_route() -> None:
    from traywire import config

    cfg = config.load(user_file=False)
    t = topology(cfg)
    assert set(t.routes) == set(cfg.routes)
    assert all(t.routes.values())
    assert "vllm" in t.groups


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("entry", "active", "expected"),
    [
        (backend(), {}, "up"),
        (backend("degraded"), {}, "degraded"),
        (backend("unknown"), {}, "unknown"),
        (backend("weird"), {}, "unknown"),
        (backend("down"), {}, "down"),
        (backend("up", circuit="open", open_reason="failures"), {}, "down"),
        (backend("degraded", circuit="open", open_reason="rate_limited"), {}, "rate_limited"),
        (backend(no_key=True), {}, "no_key"),
        (backend(enabled=False, no_key=True), {}, "disabled"),
        (backend(group="vllm"), {"vllm": "other"}, "standby"),
        (backend(group="vllm"), {"vllm": None}, "standby"),
        (backend(group="vllm"), {"vllm": "me"}, "up"),
    ],
)
def test_backend_condition(entry: dict[str, Any], active: dict[str, Any], expected: str) -> None:
    assert backend_condition("me", entry, active) == expected


# --------------------------------------------------------------------------- icon state


def test_all_up_is_healthy() -> None:
    assert icon_state(snap()) == "healthy"


def test_not_running_wins() -> None:
    s = snap(running=False)
    assert icon_state(s) == "not_running"
    assert icon_state(tray.not_running()) == "not_running"


def test_unknown_backends_do_not_alarm() -> None:
    backends = {n: {**b, "health": "unknown"} for n, b in healthy_backends().items()}
    assert icon_state(snap(backends)) == "healthy"


def test_a_down_backend_with_every_route_served_is_degraded() -> None:
    s = with_backend(snap(), "ollama", health="down", last_error="refused")
    assert unreachable_routes(s) == ()  # chat goes to big-cloud, code to qwen
    assert icon_state(s) == "degraded"


@pytest.mark.parametrize(
    "changes",
    [
        {"no_key": True},
        {"circuit": "open", "open_reason": "rate_limited", "health": "degraded"},
        {"health": "degraded"},
    ],
)
def test_no_key_rate_limits_and_degraded_health_are_degraded(changes: dict[str, Any]) -> None:
    s = snap(routes={"code": ROUTES["code"], "chat": ROUTES["chat"]})
    assert icon_state(with_backend(s, "cloud", **changes)) == "degraded"


def test_a_disabled_or_standby_backend_does_not_degrade() -> None:
    s = with_backend(snap(), "llama_cpp", enabled=False, health="unknown")
    s = with_backend(s, "vllm_dolphin", health="down")  # standby: not running is normal
    assert icon_state(s) == "healthy"


def test_a_route_without_a_usable_backend_is_failing() -> None:
    s = with_backend(snap(), "ollama", health="down")
    s = with_backend(s, "cloud", health="down")
    assert unreachable_routes(s) == ("chat", "creative")
    assert icon_state(s) == "failing"


def test_an_inactive_member_serves_nothing() -> None:
    routes = {"creative": ("dolphin-vllm", "big-cloud")}
    s = with_backend(snap(routes=routes), "cloud", no_key=True)
    assert unreachable_routes(s) == ("creative",)
    s = snap(active={"vllm": "vllm_dolphin"})
    assert "code" not in unreachable_routes(s)  # code falls to cloud/ollama coders


def test_a_model_the_backend_does_not_serve_is_not_usable() -> None:
    routes = {"code": ("qwen-vllm",)}
    s = snap(routes=routes)
    assert icon_state(s) == "healthy"
    s = with_backend(s, "vllm_qwen", health="degraded", missing_models=["Qwen/Qwen2.5-Coder"])
    assert unreachable_routes(s) == ("code",)
    assert icon_state(s) == "failing"


@pytest.mark.parametrize(("pref", "badge"), [("local_only", "local"), ("cloud_only", "cloud")])
def test_local_or_cloud_only_is_a_badge_not_a_state(pref: str, badge: str) -> None:
    routes = {"any": ("llama", "big-cloud")}
    s = snap(preference=pref, routes=routes)
    assert (icon_state(s), icon_badge(s)) == ("healthy", badge)


def test_the_badge_never_hides_the_health() -> None:
    # local only with the cloud down: still degraded (amber), with the house badge
    s = with_backend(snap(preference="local_only"), "cloud", health="down")
    assert (icon_state(s), icon_badge(s)) == ("degraded", "local")
    routes = {"creative": ("dolphin-vllm", "big-cloud")}
    # local only: dolphin is standby, the cloud is ruled out
    assert unreachable_routes(snap(preference="local_only", routes=routes)) == ("creative",)
    s = snap(preference="local_only", routes={"chat": ("llama", "big-cloud")})
    assert (icon_state(s), icon_badge(s)) == ("healthy", "local")
    s = with_backend(s, "ollama", health="down")
    assert (icon_state(s), icon_badge(s)) == ("failing", "local")
    assert icon_badge(tray.not_running()) is None


def test_cloud_only_rules_out_local_models() -> None:
    s = snap(preference="cloud_only", routes={"chat": ("llama",)})
    assert (icon_state(s), icon_badge(s)) == ("failing", "cloud")


@pytest.mark.parametrize("pref", ["auto", "prefer_local", "prefer_cloud"])
def test_preferences_that_allow_both_have_no_badge(pref: str) -> None:
    s = snap(preference=pref)
    assert (icon_state(s), icon_badge(s)) == ("healthy", None)


def test_during_a_switch_the_group_serves_nothing() -> None:
    sw = {"vllm": {"from": "vllm_qwen", "to": "vllm_dolphin", "phase": "starting"}}
    s = snap(active={"vllm": None}, switching=sw, routes={"code": ("qwen-vllm",)})
    assert icon_state(s) == "failing"
    s = snap(active={"vllm": None}, switching=sw)
    assert icon_state(s) == "healthy"  # every route has a chain outside the group


# --------------------------------------------------------------------------- tooltip


def test_tooltip_says_backends_preference_and_active_member() -> None:
    s = with_backend(snap(preference="prefer_local"), "llama_cpp", health="down")
    assert tooltip(s) == "traywire — 3/4 backends up · prefer local · vLLM: qwen"


def test_tooltip_names_routes_without_backend_and_the_note() -> None:
    s = with_backend(snap(), "ollama", health="down")
    s = with_backend(s, "cloud", health="down")._replace(note="config not reloaded")
    assert tooltip(s) == (
        "traywire — 2/4 backends up · no backend for chat, creative · auto · vLLM: qwen · "
        "config not reloaded"
    )


def test_tooltip_while_switching_and_without_member() -> None:
    sw = {"vllm": {"from": "vllm_qwen", "to": "vllm_dolphin", "phase": "waiting"}}
    assert tooltip(snap(active={"vllm": None}, switching=sw)).endswith(
        "vLLM: switching to dolphin…"
    )
    done = {"vllm": {"from": "vllm_qwen", "to": "vllm_dolphin", "phase": "failed"}}
    assert tooltip(snap(active={"vllm": None}, switching=done)).endswith("vLLM: none")


def test_tooltip_and_menu_while_the_active_member_starts() -> None:
    sw = {"vllm": {"kind": "start", "from": None, "to": "vllm_qwen", "phase": "waiting"}}
    s = snap(active={"vllm": None}, switching=sw)
    assert tooltip(s).endswith("vLLM: starting qwen…")
    group = find_item(menu_model(s), "vLLM model")
    assert group is not None and group.text == "vLLM model — starting…"
    assert group.submenu is not None
    starting = [t for t in texts(group.submenu) if t.endswith("— starting… (waiting)")]
    assert len(starting) == 1 and starting[0].startswith("qwen")


def test_tooltip_not_running_and_length_limit() -> None:
    assert tooltip(tray.not_running()) == "traywire — not running"
    many = {f"group{i}": (f"group{i}_member",) for i in range(20)}
    text = tooltip(snap(groups=many, active={g: m[0] for g, m in many.items()}))
    assert len(text) <= 127
    assert text.endswith("…")


# --------------------------------------------------------------------------- menu


def test_menu_layout() -> None:
    items = menu_model(snap(autostart=True))
    assert texts(items) == [
        "traywire — 4/4 backends up · auto · vLLM: qwen",
        "---",
        f"Copy OpenAI endpoint   {URL}/v1",
        f"Copy Ollama endpoint   {URL}",
        "---",
        "Backends",
        "Routing",
        "vLLM model",
        "---",
        "Open dashboard",
        "Set cloud API key…",
        "---",
        "Open config file",
        "Reload config",
        "---",
        "Start at login",
        "---",
        "Quit traywire",
    ]
    assert items[0].enabled is False
    assert items[2].command == Command("copy", (f"{URL}/v1",))
    assert items[3].command == Command("copy", (URL,))
    assert find_item(items, "Open dashboard").command == Command("open_dashboard")  # type: ignore[union-attr]
    assert find_item(items, "Set cloud API key").command == Command("set_key", ("ollama_cloud",))  # type: ignore[union-attr]
    assert find_item(items, "Open config").command == Command("open_config")  # type: ignore[union-attr]
    assert find_item(items, "Reload").command == Command("reload")  # type: ignore[union-attr]
    start = find_item(items, "Start at login")
    assert start is not None and start.checked is True and not start.radio
    assert start.command == Command("toggle_autostart")
    assert find_item(items, "Quit").command == Command("quit")  # type: ignore[union-attr]
    assert find_item(menu_model(snap(autostart=False)), "Start at login").checked is False  # type: ignore[union-attr]


def test_routing_radio_has_the_five_preferences_with_the_current_one_checked() -> None:
    for pref, label in tray.PREFERENCE_LABELS:
        routing = find_item(menu_model(snap(preference=pref)), "Routing")
        assert routing is not None and routing.submenu is not None
        assert texts(routing.submenu) == [
            "Auto",
            "Prefer local",
            "Prefer cloud",
            "Local only",
            "Cloud only",
        ]
        assert all(i.radio for i in routing.submenu)
        assert [i.text for i in routing.submenu if i.checked] == [label]
        assert [i.command for i in routing.submenu] == [
            Command("set_preference", (p,)) for p, _ in tray.PREFERENCE_LABELS
        ]


def test_backends_submenu_shows_state_latency_and_load() -> None:
    backends = healthy_backends()
    backends["ollama"].update(in_flight=3, latency_ms=1534.0)
    backends["cloud"].update(no_key=True)
    backends["llama_cpp"].update(health="down", last_error="refused", latency_ms=None)
    backends["extra"] = backend(enabled=False)
    backends["limited"] = backend(
        "degraded", circuit="open", open_reason="rate_limited", latency_ms=200.4
    )
    backends["partial"] = backend("degraded", missing=("m9",), latency_ms=None)
    sub = find_item(menu_model(snap(backends)), "Backends")
    assert sub is not None and sub.submenu is not None
    assert texts(sub.submenu) == [
        "ollama — up · 1.5 s · 3/4",
        "cloud — no key · 0/8",
        "vllm_qwen — up · 42 ms · 0/16",
        "vllm_dolphin — standby · 0/16",
        "llama_cpp — down (refused) · 0/2",
        "extra — disabled",
        "limited — rate-limited · 0/4",
        "partial — degraded (missing m9) · 0/4",
    ]
    enabled = {i.text.split(" ")[0]: i.enabled for i in sub.submenu}
    assert enabled["extra"] is False and enabled["ollama"] is True
    assert all(i.command is None for i in sub.submenu)


def test_group_submenu_one_radio_per_member_active_checked() -> None:
    models = {**MODELS, "qwen-14b-vllm": ("vllm_qwen", "Qwen/14B")}
    g = find_item(menu_model(snap(models=models)), "vLLM model")
    assert g is not None and g.submenu is not None
    assert texts(g.submenu) == ["qwen (qwen-vllm, qwen-14b-vllm)", "dolphin (dolphin-vllm)"]
    assert [i.checked for i in g.submenu] == [True, False]
    assert all(i.radio and i.enabled for i in g.submenu)
    assert g.submenu[1].command == Command("set_active", ("vllm", "vllm_dolphin"))


def test_group_submenu_while_switching() -> None:
    sw = {"vllm": {"from": "vllm_qwen", "to": "vllm_dolphin", "phase": "starting"}}
    g = find_item(menu_model(snap(active={"vllm": None}, switching=sw)), "vLLM model")
    assert g is not None and g.submenu is not None
    assert g.text == "vLLM model — switching…"
    assert texts(g.submenu) == [
        "qwen (qwen-vllm)",
        "dolphin (dolphin-vllm) — switching… (starting)",
    ]
    assert [i.checked for i in g.submenu] == [False, False]
    assert not any(i.enabled for i in g.submenu)


def test_group_submenu_after_a_failed_switch() -> None:
    sw = {"vllm": {"to": "vllm_dolphin", "phase": "failed", "error": "start exited 1"}}
    g = find_item(menu_model(snap(switching=sw)), "vLLM model")
    assert g is not None and g.submenu is not None
    assert g.submenu[-2] == SEPARATOR
    assert g.submenu[-1] == Item(
        "Last switch to vllm_dolphin failed: start exited 1", enabled=False
    )
    assert all(i.enabled for i in g.submenu[:2])


def test_one_submenu_per_group_and_groups_from_status_without_topology() -> None:
    backends = healthy_backends()
    backends["gpu2_a"] = backend(group="gpu2")
    backends["gpu2_b"] = backend(group="gpu2")
    s = snap(backends, active={"vllm": "vllm_qwen", "gpu2": "gpu2_b"}, groups={})
    items = menu_model(s)
    assert find_item(items, "vLLM model") is not None
    g2 = find_item(items, "gpu2 model")
    assert g2 is not None and g2.submenu is not None
    assert [(i.text, i.checked) for i in g2.submenu] == [("a", False), ("b", True)]


def test_key_item_variants() -> None:
    no_keys = {"ollama": backend()}
    item = find_item(menu_model(snap(no_keys, groups={}, active={})), "Set cloud API key")
    # no backend refers to a keyring key: the dashboard's form still takes one
    assert item == Item("Set cloud API key…", Command("set_key", ("",)))
    missing = healthy_backends()
    missing["cloud"]["no_key"] = True
    item = find_item(menu_model(snap(missing)), "Set cloud API key")
    assert item is not None and item.text == "Set cloud API key… (not set)"
    two = healthy_backends()
    two["other"] = backend(location="cloud", key="keyring:other", no_key=True)
    two["envkey"] = backend(location="cloud", key="env:OPENAI_API_KEY")
    item = find_item(menu_model(snap(two)), "Set cloud API key")
    assert item is not None and item.submenu is not None
    assert texts(item.submenu) == ["ollama_cloud…", "other… (not set)"]
    assert item.submenu[1].command == Command("set_key", ("other",))


@pytest.mark.parametrize("where", ["snapshot", "status"])
def test_key_item_without_a_keyring_says_why(where: str) -> None:
    s = snap()
    if where == "snapshot":  # the app's own check at start
        s = s._replace(keyring="no backend")
    else:  # the proxy could not read a key from it
        s = s._replace(status=freeze({**thaw(s.status), "keyring": "The OS keyring is..."}))
    item = find_item(menu_model(s), "Set cloud API key")
    assert item == Item("Set cloud API key — no OS keyring (run `traywire doctor`)", enabled=False)


def test_menu_when_not_running() -> None:
    items = menu_model(tray.not_running(URL, note="port in use"))
    assert texts(items) == [
        "traywire — not running · port in use",
        "---",
        "Open config file",
        "Reload config",
        "---",
        "Start at login",
        "---",
        "Quit traywire",
    ]
    assert find_item(items, "Reload config").enabled is False  # type: ignore[union-attr]


def test_find_item() -> None:
    items = menu_model(snap())
    assert find_item(items, "Routing", "Local only").command == Command(  # type: ignore[union-attr]
        "set_preference", ("local_only",)
    )
    assert find_item(items, "Routing", "Nope") is None
    assert find_item(items, "Nope") is None


# --------------------------------------------------------------------------- notifications


def test_no_notifications_at_start_or_when_nothing_changed() -> None:
    s = with_backend(snap(), "ollama", health="down")
    assert notifications(None, s) == []
    assert notifications(snap(running=False), s) == []
    assert notifications(snap(), snap()) == []
    assert notifications(snap(), snap(running=False)) == []


def test_a_backend_going_down_and_coming_back() -> None:
    up = snap()
    down = with_backend(up, "ollama", health="down", last_error="refused")
    assert notices(up, down) == [Notice("backend:ollama", "ollama is down (refused)")]
    assert notifications(down, up) == ["ollama is back"]
    opened = with_backend(up, "cloud", circuit="open", open_reason="failures", health="down")
    assert notifications(up, opened) == ["cloud is down"]


def test_unknown_to_down_and_standby_members_are_quiet() -> None:
    start = with_backend(snap(), "llama_cpp", health="unknown")
    assert notifications(start, with_backend(start, "llama_cpp", health="down")) == []
    s = with_backend(snap(), "vllm_dolphin", health="up")
    assert notifications(s, with_backend(s, "vllm_dolphin", health="down")) == []
    s = with_backend(snap(), "llama_cpp", enabled=False)
    assert notifications(s, with_backend(s, "llama_cpp", health="down")) == []


def test_switch_finished_and_failed() -> None:
    running = {"vllm": {"from": "vllm_qwen", "to": "vllm_dolphin", "phase": "waiting"}}
    done = {"vllm": {**running["vllm"], "phase": "done", "elapsed_s": 12.0}}
    failed = {"vllm": {**running["vllm"], "phase": "failed", "error": "timeout", "elapsed_s": 3}}
    before = snap(active={"vllm": None}, switching=running)
    after = snap(active={"vllm": "vllm_dolphin"}, switching=done)
    assert notices(before, after) == [Notice("switch:vllm", "vLLM now serves dolphin")]
    broken = snap(active={"vllm": None}, switching=failed)
    assert notifications(before, broken) == ["Switching vLLM to dolphin failed: timeout"]
    # a finished switch is news once
    assert notifications(after, after) == []
    # one that started and ended between two snapshots is news too
    assert notifications(snap(), after) == ["vLLM now serves dolphin"]


def test_member_health_during_a_switch_is_not_news() -> None:
    running = {"vllm": {"from": "vllm_qwen", "to": "vllm_dolphin", "phase": "stopping"}}
    before = snap()
    during = with_backend(
        snap(active={"vllm": None}, switching=running), "vllm_qwen", health="down"
    )
    assert notifications(before, during) == []
    done = {"vllm": {**running["vllm"], "phase": "done", "elapsed_s": 5.0}}
    after = with_backend(
        snap(active={"vllm": "vllm_dolphin"}, switching=done), "vllm_dolphin", health="up"
    )
    after = with_backend(after, "vllm_qwen", health="down")
    down_before = with_backend(during, "vllm_dolphin", health="down")
    assert notifications(down_before, after) == ["vLLM now serves dolphin"]


# --------------------------------------------------------------------------- rate limiting


def n(key: str, text: str) -> Notice:
    return Notice(key, text)


def test_rate_limiter_allows_a_burst_then_holds() -> None:
    rl = RateLimiter(window=60, burst=2)
    assert rl.offer(n("b:a", "a is down"), 0) == [n("b:a", "a is down")]
    assert rl.offer(n("b:a", "a is back"), 5) == [n("b:a", "a is back")]
    assert rl.offer(n("b:a", "a is down"), 10) == []
    assert rl.held == (n("b:a", "a is down"),)
    # other keys are not affected
    assert rl.offer(n("b:b", "b is down"), 11) == [n("b:b", "b is down")]
    assert rl.flush(59) == []
    assert rl.flush(60) == [n("b:a", "a is down")]  # the t=0 one left the window
    assert rl.held == ()


def test_rate_limiter_latest_held_wins_and_stale_news_is_dropped() -> None:
    rl = RateLimiter(window=60, burst=2)
    rl.offer(n("k", "down"), 0)
    rl.offer(n("k", "back"), 1)
    for t, text in [(2, "down"), (3, "back"), (4, "down"), (5, "back")]:
        assert rl.offer(n("k", text), t) == []
    # it flapped and ended where the user last saw it: nothing to say
    assert rl.flush(100) == []
    assert rl.held == ()
    rl.offer(n("k", "down"), 101)
    rl.offer(n("k", "back"), 102)
    rl.offer(n("k", "down"), 103)
    assert rl.flush(161) == [n("k", "down")]


def test_rate_limiter_window_slides() -> None:
    rl = RateLimiter(window=10, burst=1)
    assert rl.offer(n("k", "1"), 0) == [n("k", "1")]
    assert rl.offer(n("k", "2"), 9.9) == []
    assert rl.offer(n("k", "3"), 10) == [n("k", "3")]
    assert rl.held == ()


def test_rate_limiter_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        RateLimiter(window=0)
    with pytest.raises(ValueError):
        RateLimiter(burst=0)


# --------------------------------------------------------------------------- pystray glue


def pystray_base() -> Any:
    """pystray's display-independent ``_base`` module, loaded without running
    ``pystray/__init__`` (which picks a backend and needs a display)."""
    import importlib.util

    name = "_traywire_test_pystray_base"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("pystray")
    assert spec is not None and spec.submodule_search_locations
    path = f"{next(iter(spec.submodule_search_locations))}/_base.py"
    base_spec = importlib.util.spec_from_file_location(name, path)
    assert base_spec is not None and base_spec.loader is not None
    module = importlib.util.module_from_spec(base_spec)
    sys.modules[name] = module
    base_spec.loader.exec_module(module)
    return module


_base = pystray_base()


@pytest.fixture
def fake_pystray(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    class Icon(_base.Icon):  # type: ignore[misc,name-defined]
        """Records what pystray's backends would do; no display."""

        HAS_MENU_RADIO = True
        HAS_NOTIFICATION = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.log: list[tuple[str, Any]] = []

        def _show(self) -> None:
            self.log.append(("show", None))

        def _hide(self) -> None:
            self.log.append(("hide", None))

        def _update_icon(self) -> None:
            self._icon_valid = True
            self.log.append(("icon", self.icon))

        def _update_title(self) -> None:
            self.log.append(("title", self.title))

        def _update_menu(self) -> None:
            self.log.append(("menu", self.menu))

        def _notify(self, message: str, title: str | None = None) -> None:
            self.log.append(("notify", message))

        def _run(self) -> None:
            self._mark_ready()

        def _stop(self) -> None:
            self.log.append(("stop", None))

    Icon.__module__ = "pystray._fake"
    mod = types.ModuleType("pystray")
    mod.Icon = Icon  # type: ignore[attr-defined]
    mod.Menu = _base.Menu  # type: ignore[attr-defined]
    mod.MenuItem = _base.MenuItem  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pystray", mod)
    return mod


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pystray_item(menu: Any, *path: str) -> Any:
    items = list(menu)
    for i, part in enumerate(path):
        found = next(x for x in items if x.text.startswith(part))
        if i == len(path) - 1:
            return found
        items = list(found.submenu)
    raise AssertionError(path)


def test_tray_builds_the_pystray_menu_from_the_model(fake_pystray: types.ModuleType) -> None:
    got: list[Command] = []
    t = trayicon.Tray(got.append, snap(preference="prefer_cloud"), clock=Clock())
    assert t.backend == "fake"
    icon = t.icon
    assert icon.title == "traywire — 4/4 backends up · prefer cloud · vLLM: qwen"
    assert icon.icon.size == (64, 64)
    menu = icon.menu
    header = pystray_item(menu, "traywire")
    assert header.enabled is False
    local = pystray_item(menu, "Routing", "Local only")
    cloud = pystray_item(menu, "Routing", "Prefer cloud")
    assert (local.checked, local.radio, cloud.checked, cloud.radio) == (False, True, True, True)
    dolphin = pystray_item(menu, "vLLM model", "dolphin")
    assert (dolphin.checked, dolphin.radio) == (False, True)
    start = pystray_item(menu, "Start at login")
    assert (start.checked, start.radio) == (False, False)
    assert pystray_item(menu, "Backends", "ollama").checked is None
    # a separator is pystray's
    assert fake_pystray.Menu.SEPARATOR in list(menu)
    # activating items calls the handler with the command, as the backends do
    local(icon)
    dolphin(icon)
    pystray_item(menu, "Copy OpenAI")(icon)
    pystray_item(menu, "Quit")(icon)
    assert got == [
        Command("set_preference", ("local_only",)),
        Command("set_active", ("vllm", "vllm_dolphin")),
        Command("copy", (f"{URL}/v1",)),
        Command("quit"),
    ]


def test_tray_without_radio_support_uses_check_marks(
    fake_pystray: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_pystray.Icon, "HAS_MENU_RADIO", False)  # type: ignore[attr-defined]
    t = trayicon.Tray(lambda c: None, snap())
    auto = pystray_item(t.icon.menu, "Routing", "Auto")
    assert (auto.checked, auto.radio) == (True, False)


def test_a_failing_handler_does_not_break_the_menu(fake_pystray: types.ModuleType) -> None:
    def boom(cmd: Command) -> None:
        raise RuntimeError("nope")

    t = trayicon.Tray(boom, snap())
    pystray_item(t.icon.menu, "Reload")(t.icon)  # logged, not raised


def test_post_applies_changes_and_notifies_with_rate_limit(
    fake_pystray: types.ModuleType,
) -> None:
    clock = Clock()
    t = trayicon.Tray(lambda c: None, snap(), clock=clock, limiter=RateLimiter(60, 1))
    icon = t.icon
    icon.log.clear()
    t.post(snap())  # nothing changed: nothing done
    assert icon.log == []
    down = with_backend(snap(), "ollama", health="down", last_error="refused")
    t.post(down)
    assert t.shown.state == "degraded"
    kinds = [k for k, _ in icon.log]
    assert "icon" not in kinds  # hidden icon: pystray updates the image when shown
    assert icon.icon is t._image("degraded", None)
    assert icon.title == "traywire — 3/4 backends up · auto · vLLM: qwen"
    assert ("notify", "ollama is down (refused)") in icon.log
    assert pystray_item(icon.menu, "Backends", "ollama").text == "ollama — down (refused) · 0/4"
    icon.log.clear()
    clock.now += 5
    t.post(snap())  # back, within the window: held
    assert t.shown.state == "healthy"
    assert not [m for k, m in icon.log if k == "notify"]
    clock.now += 60
    t.post(snap())  # nothing changed, but the held notice is released now
    assert [m for k, m in icon.log if k == "notify"] == ["ollama is back"]


def test_the_preference_badge_changes_the_image_and_keeps_the_health(
    fake_pystray: types.ModuleType,
) -> None:
    from traywire.desktop.icon import draw_icon

    t = trayicon.Tray(lambda c: None, snap(), clock=Clock())
    down = with_backend(snap(preference="local_only"), "cloud", health="down")
    t.post(down)
    assert (t.shown.state, t.shown.badge) == ("degraded", "local")
    assert t.icon.icon.tobytes() == draw_icon("degraded", 64, "local").tobytes()
    t.post(snap(preference="cloud_only", routes={"chat": ("big-cloud",)}))
    assert (t.shown.state, t.shown.badge) == ("healthy", "cloud")
    assert t.icon.icon.tobytes() == draw_icon("healthy", 64, "cloud").tobytes()


def test_without_a_notification_service_notices_are_logged(
    fake_pystray: types.ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    t = trayicon.Tray(lambda c: None, snap(), clock=Clock(), notifications=False)
    assert not t.can_notify
    t.icon.log.clear()
    with caplog.at_level("INFO", logger="traywire"):
        t.post(with_backend(snap(), "ollama", health="down"))
    assert [k for k, _ in t.icon.log if k == "notify"] == []
    assert "notification: ollama is down" in caplog.text


def test_several_notices_become_one_notification(fake_pystray: types.ModuleType) -> None:
    t = trayicon.Tray(lambda c: None, snap(), clock=Clock())
    s = with_backend(snap(), "ollama", health="down")
    s = with_backend(s, "llama_cpp", health="down")
    t.icon.log.clear()
    t.post(s)
    assert [m for k, m in t.icon.log if k == "notify"] == ["ollama is down\nllama_cpp is down"]


def test_run_and_stop(fake_pystray: types.ModuleType) -> None:
    ready: list[bool] = []
    t = trayicon.Tray(lambda c: None, snap())
    t.run(lambda: ready.append(True))
    t.icon._setup_thread.join(5)
    assert ready == [True]
    assert t.icon.visible
    t.stop()
    t.stop()
    assert [k for k, _ in t.icon.log].count("stop") == 1
    # after stop, snapshots are not applied any more
    t.post(snap(running=False))
    assert t.shown.state == "healthy"


def test_a_tray_loop_that_fails_releases_pystrays_setup_thread(
    fake_pystray: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any) -> None:
        raise RuntimeError("no notification service")

    monkeypatch.setattr(fake_pystray.Icon, "_run", broken)  # type: ignore[attr-defined]
    ready: list[bool] = []
    t = trayicon.Tray(lambda c: None, snap())
    with pytest.raises(RuntimeError):
        t.run(lambda: ready.append(True))
    t.icon._setup_thread.join(5)
    assert not t.icon._setup_thread.is_alive()
    assert ready == []


def test_copy_falls_back_to_clipboard_tools(
    fake_pystray: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], bytes]] = []

    def run(argv: list[str], input: bytes, check: bool, timeout: float) -> None:
        calls.append((argv, input))

    monkeypatch.setattr(trayicon.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(trayicon.threads, "run_process", run)
    t = trayicon.Tray(lambda c: None, snap())
    assert t.copy("http://x/v1") is True
    assert calls and calls[0][1] == b"http://x/v1"
    monkeypatch.setattr(trayicon.shutil, "which", lambda name: None)
    assert t.copy("y") is False


def test_importing_tray_does_not_import_pystray() -> None:
    import subprocess

    code = "import sys, traywire.desktop.tray, traywire.desktop.menu, traywire.desktop.notices, "
    code += "traywire.desktop.proxythread, traywire.desktop.run, "
    code += "traywire.cli; "
    code += "print('pystray' in sys.modules, 'gi' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
