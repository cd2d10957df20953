"""Shared pieces of the dashboard tests (tests/test_dashboard*.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fakes import FakeBackend, FakeFactory
from harness import ProxyThread
from proxy_fixtures import make_config, model, ollama_backend, openai_backend, raw

from traywire.config import Config

KEY_NAME = "cloud_key"
CHAT_ROUTE = "everyday chat, on b"
_META = re.compile(r'<meta name="traywire-session" content="([^"]+)">')


def dash_config(
    fo: FakeBackend,
    fv: FakeBackend,
    fc: FakeBackend,
    log_path: Path,
    *,
    group: tuple[FakeBackend, FakeBackend] | None = None,
) -> Config:
    """Backends a (Ollama, model "one"), b (OpenAI, "two", one's fallback) and c
    (a cloud one with key ``keyring:cloud_key``, model "cloudy"), route "chat"
    (model "two", with a description); with ``group``,
    two vLLM-like members v1/v2 of exclusive group "vllm" (no switch section)."""
    backends: dict[str, Any] = {
        "a": ollama_backend(fo, capacity=4),
        "b": openai_backend(fv, capacity=2),
        "c": openai_backend(fc, "cloud", key=f"keyring:{KEY_NAME}", capacity=8),
    }
    models: dict[str, Any] = {
        "one": model("a", "m1"),
        "two": model("b", "M2"),
        "cloudy": model("c", "C1", tier="cloud_standard", params_b=70),
    }
    other: dict[str, Any] = {}
    if group is not None:
        v1, v2 = group
        backends["v1"] = openai_backend(v1, exclusive_group="vllm", capacity=2)
        backends["v2"] = openai_backend(v2, exclusive_group="vllm", capacity=2)
        models["vone"] = model("v1", "V1")
        models["vtwo"] = model("v2", "V2")
        other["exclusive_groups"] = {"vllm": {"active": "v1"}}
    return make_config(
        backends,
        models,
        fallbacks={"one": ["two"], "two": ["one"]},
        routes={"chat": {"strategy": "direct", "candidates": ["two"], "description": CHAT_ROUTE}},
        log={"path": str(log_path)},
        **other,
    )


@dataclass
class Dash:
    fo: FakeBackend
    fv: FakeBackend
    fc: FakeBackend
    p: ProxyThread


def start_dash(fakes: FakeFactory, proxies: Any, tmp_path: Path, *, group: bool = False) -> Dash:
    fo = fakes("ollama", name="oll", models=["m1"])
    fv = fakes("openai", name="vl", models=["M2"])
    fc = fakes("openai", name="cloud", models=["C1"])
    members = None
    if group:
        members = (
            fakes("openai", name="v1", models=["V1"]),
            fakes("openai", name="v2", models=["V2"]),
        )
    cfg = dash_config(fo, fv, fc, tmp_path / "log" / "requests.sqlite3", group=members)
    return Dash(fo, fv, fc, proxies(cfg))


def session_of(p: ProxyThread) -> str:
    """The session token, read from the page as the browser would."""
    r = raw(p, "GET", "/ui")
    assert r.status == 200, r
    m = _META.search(r.body.decode())
    assert m is not None, r.body[:500]
    return m.group(1)
