"""What the tray app remembers across restarts: the routing preference and the
active member of each exclusive group (vLLM).

A small JSON file in the platformdirs state dir (``~/.local/state/traywire/``
on Linux), written atomically (temporary file, fsync, rename)::

    {"version": 1, "preference": "prefer_local", "active": {"vllm": "vllm_dolphin"}}

Only what was changed at run time is kept: a preference or member that comes
from the config stays the config's business. An unreadable file is ignored
(with a warning): losing it costs a click, refusing to start would cost more.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from ..types import PREFERENCES, Preference

__all__ = ["FILENAME", "State", "apply", "capture", "default_path", "load", "save"]

log = logging.getLogger("traywire")

FILENAME = "state.json"
VERSION = 1


class State(NamedTuple):
    preference: Preference | None = None
    # exclusive group -> member backend
    active: Mapping[str, str] = MappingProxyType({})

    def as_json(self) -> dict[str, Any]:
        return {"version": VERSION, "preference": self.preference, "active": dict(self.active)}


def state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("traywire", appauthor=False))


def default_path() -> Path:
    return state_dir() / FILENAME


def load(path: Path) -> State:
    """The saved state; an empty `State` if there is none or it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return State()
    except (OSError, ValueError) as exc:
        log.warning("ignoring the state file %s: %s", path, exc)
        return State()
    if not isinstance(data, dict):
        log.warning("ignoring the state file %s: not a JSON object", path)
        return State()
    pref = data.get("preference")
    if pref not in PREFERENCES:
        if pref is not None:
            log.warning("state file %s: ignoring unknown preference %r", path, pref)
        pref = None
    active_raw = data.get("active")
    active: dict[str, str] = {}
    if isinstance(active_raw, dict):
        active = {
            g: m for g, m in active_raw.items() if isinstance(g, str) and isinstance(m, str) and m
        }
    return State(pref, MappingProxyType(active))


def save(path: Path, state: State) -> None:
    """Write ``state`` atomically (readers see the old or the new file, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(state.as_json(), indent=2, sort_keys=True) + "\n").encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _Runtime(Protocol):
    """The part of `runtime.Runtime` this module uses."""

    preference: Preference | None
    active: dict[str, str]

    def set_preference(self, value: str) -> None: ...

    def set_active(self, group: str, member: str) -> None: ...


def apply(rt: _Runtime, state: State) -> list[str]:
    """Apply a loaded state to a Runtime (on its loop, before it serves).

    Entries the current config does not allow (a group or member since
    removed) are skipped; the returned list says which and why.
    """
    problems: list[str] = []
    if state.preference is not None:
        try:
            rt.set_preference(state.preference)
        except ValueError as exc:
            problems.append(f"preference: {exc}")
    for group, member in state.active.items():
        try:
            rt.set_active(group, member)
        except ValueError as exc:
            problems.append(f"active {group}: {exc}")
    return problems


def capture(rt: _Runtime) -> State:
    """What of a Runtime's state is worth saving (what was set at run time)."""
    active = {g: m for g, m in rt.active.items() if m}
    return State(rt.preference, MappingProxyType(active))
