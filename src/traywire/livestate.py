"""The live state `traywire route` decides with, so it plans what the server would.

Three sources:

- `from_running`: the running traywire's ``GET /status``, fetched (``--live``);
- `from_source`: a ``/status`` answer by URL or saved to a file, or a
  hand-written state file (backends' in_flight, circuit, latency_ms, no_key,
  missing_models; active; usage; preference; random);
- `from_saved`: with no running instance at hand, what the tray saved (the
  preference, the active vLLM member) plus the keys read the way the server
  reads them, so a cloud model whose key is missing is skipped here too.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .core.schema import Config
from .types import FEATURES, PREFERENCES, BackendState, Feature, LiveState

MAX_STATUS = 4 << 20  # bytes of a /status answer


class StateError(Exception):
    """The state could not be read; the message says where and why."""


def from_saved(cfg: Config) -> LiveState:
    """The tray's saved choices, and which keys are missing (as the server sees them)."""
    from . import secrets, statefile

    saved = statefile.load(statefile.default_path())
    active = {
        g: m for g, m in saved.active.items() if g in cfg.groups and m in cfg.groups[g].members
    }
    backends: dict[str, BackendState] = {}
    for b in cfg.backends.values():
        if b.key is None:
            continue
        try:
            value = secrets.resolve(b.key)
        except secrets.SecretsError:
            value = None
        if not value:
            backends[b.name] = BackendState(no_key=True)
    return LiveState(
        backends=MappingProxyType(backends),
        active=MappingProxyType(active),
        preference=saved.preference,
    )


def from_running(cfg: Config) -> LiveState:
    """The running instance's state (where it said it listens, else the config's port)."""
    from . import statefile
    from .desktop import instance

    url = instance.running_url(statefile.state_dir(), wait=0) or (
        f"http://127.0.0.1:{cfg.server.port}"
    )
    return from_source(url.rstrip("/") + "/status", cfg)


def from_source(source: str, cfg: Config) -> LiveState:
    """A ``/status`` answer or a state file, by URL or path."""
    if source.startswith(("http://", "https://")):
        try:
            req = urllib.request.Request(source, headers={"Accept": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                raw = r.read(MAX_STATUS + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise StateError(f"cannot read the live state from {source}: {exc}") from exc
        if len(raw) > MAX_STATUS:
            raise StateError(f"{source}: the answer is larger than {MAX_STATUS} bytes")
    else:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read state file {source}: {exc}") from exc
    what = "the live state from" if source.startswith(("http://", "https://")) else "state file"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"cannot read {what} {source}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StateError(f"{source}: expected a JSON object")
    if "uptime_s" in data or "version" in data:
        return _from_status(data, cfg, source)
    return _from_file(data, cfg, source)


def _from_status(data: dict[str, Any], cfg: Config, where: str) -> LiveState:
    """A running traywire's ``/status``, as it is: what its router sees."""
    backends: dict[str, BackendState] = {}
    for name, b in _obj(data.get("backends", {}), where, "backends").items():
        if name not in cfg.backends or not isinstance(b, Mapping):
            continue  # another config: only what both know
        circuit = b.get("circuit", "closed")
        if circuit == "half_open" and b.get("trial_in_flight"):
            circuit = "open"  # the router sees a taken trial as open
        latency = b.get("latency_ms")
        missing = b.get("missing_models") or []
        backends[name] = BackendState(
            in_flight=int(b.get("in_flight") or 0),
            circuit=circuit if circuit in ("closed", "open", "half_open") else "closed",
            latency_ms=float(latency) if isinstance(latency, int | float) else None,
            no_key=bool(b.get("no_key")),
            missing_models=frozenset(m for m in missing if isinstance(m, str)),
        )
    active = {
        g: (m or "")
        for g, m in _obj(data.get("active", {}), where, "active").items()
        if g in cfg.groups
    }
    pref = data.get("preference") if data.get("preference_source") == "runtime" else None
    usage = {
        m: int(t)
        for m, t in _obj(data.get("usage", {}), where, "usage").items()
        if isinstance(t, int) and not isinstance(t, bool)
    }
    lacks: dict[str, frozenset[Feature]] = {}
    for m, feats in _obj(data.get("learned", {}), where, "learned").items():
        if isinstance(feats, list):
            lacks[m] = frozenset(f for f in feats if f in FEATURES)
    return LiveState(
        backends=MappingProxyType(backends),
        active=MappingProxyType(active),
        usage=MappingProxyType(usage),
        preference=pref if pref in PREFERENCES else None,
        lacks=MappingProxyType(lacks),
    )


def _from_file(data: dict[str, Any], cfg: Config, path: str) -> LiveState:
    """A hand-written state file (strict: every key is checked)."""
    unknown = set(data) - {"backends", "active", "usage", "preference", "random"}
    if unknown:
        raise StateError(f"{path}: unknown keys: {', '.join(sorted(unknown))}")
    backends: dict[str, BackendState] = {}
    for name, spec in _obj(data.get("backends", {}), path, "backends").items():
        if name not in cfg.backends:
            raise StateError(f"{path}: backends.{name}: no such backend in the config")
        spec = _obj(spec, path, f"backends.{name}")
        fields = set(BackendState._fields)
        bad = set(spec) - fields
        if bad:
            raise StateError(f"{path}: backends.{name}: unknown keys: {', '.join(sorted(bad))}")
        where = f"{path}: backends.{name}"
        if "in_flight" in spec and not _count(spec["in_flight"]):
            raise StateError(f"{where}.in_flight: a non-negative integer")
        lat = spec.get("latency_ms")
        if lat is not None and (isinstance(lat, bool) or not isinstance(lat, int | float)):
            raise StateError(f"{where}.latency_ms: a number of milliseconds or null")
        if "no_key" in spec and not isinstance(spec["no_key"], bool):
            raise StateError(f"{where}.no_key: true or false")
        if "missing_models" in spec:
            mm = spec["missing_models"]
            if not isinstance(mm, list) or not all(isinstance(m, str) for m in mm):
                raise StateError(f"{where}.missing_models: a list of model names")
            spec["missing_models"] = frozenset(mm)
        if spec.get("circuit", "closed") not in ("closed", "open", "half_open"):
            raise StateError(f"{path}: backends.{name}.circuit: closed, open or half_open")
        backends[name] = BackendState(**spec)
    active = _obj(data.get("active", {}), path, "active")
    for group, member in active.items():
        if group not in cfg.groups or member not in cfg.groups[group].members:
            raise StateError(f"{path}: active.{group}: {member!r} is not a member of that group")
    pref = data.get("preference")
    if pref is not None and pref not in PREFERENCES:
        raise StateError(f"{path}: preference: one of {', '.join(PREFERENCES)}")
    rnd = data.get("random", 0.0)
    if not isinstance(rnd, int | float) or not 0 <= rnd < 1:
        raise StateError(f"{path}: random: a number in [0, 1)")
    usage = _obj(data.get("usage", {}), path, "usage")
    for model, tokens in usage.items():
        if not _count(tokens):
            raise StateError(f"{path}: usage.{model}: a non-negative integer")
    return LiveState(
        backends=MappingProxyType(backends),
        active=MappingProxyType(dict(active)),
        usage=MappingProxyType(dict(usage)),
        preference=pref,
        random=float(rnd),
    )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _obj(value: Any, path: str, key: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise StateError(f"{path}: {key}: expected a JSON object")
    return dict(value)
