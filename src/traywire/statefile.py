"""What traywire remembers across restarts, the tray app and ``traywire serve``
alike: the routing preference and the active member of each exclusive group
(vLLM). At start it is applied before the proxy listens (and the active
managed member's server is started); it is saved when either changes and at
the stop (`Keeper` for ``serve``, `desktop.proxythread.Proxy` for the app).
While a group switches, the member kept is the one that was really active
before (or the target, if it was ready when traywire stopped).

A small JSON file in the platformdirs state dir (``~/.local/state/traywire/``
on Linux), written atomically (temporary file, fsync, rename)::

    {"version": 1, "preference": "prefer_local", "active": {"vllm": "vllm_dolphin"}}

The preference is kept only when it was set at run time (the tray, the
dashboard, ``/admin/preference``); resetting it to the config's removes it.
An unreadable file is ignored (with a warning): losing it costs a click,
refusing to start would cost more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from . import threads
from .types import PREFERENCES, Preference

__all__ = ["FILENAME", "Keeper", "State", "apply", "capture", "default_path", "load", "save"]

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
    state_listeners: list[Callable[[], None]]

    def set_preference(self, value: str | None) -> None: ...

    def set_active(self, group: str, member: str) -> None: ...

    def remembered_active(self) -> dict[str, str]: ...


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
    """What of a Runtime's state is worth saving (see `Runtime.remembered_active`)."""
    return State(rt.preference, MappingProxyType(rt.remembered_active()))


class Keeper:
    """Keeps a Runtime's state in ``path`` (``traywire serve``): `start`
    applies the saved state (before the proxy starts) and saves on every
    change, from a worker thread; `finish` saves what is left to save."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: State | None = None
        self._pending: asyncio.Task[None] | None = None
        self._rt: _Runtime | None = None

    def start(self, rt: _Runtime) -> list[str]:
        """Apply the saved state to ``rt`` (on its loop); the problems, if any."""
        saved = load(self.path)
        self._saved = saved
        problems = apply(rt, saved)
        for p in problems:
            log.warning("saved state not applied: %s", p)
        self._rt = rt
        rt.state_listeners.append(self._changed)
        return problems

    def _changed(self) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._save_soon())

    async def _save_soon(self) -> None:
        await asyncio.sleep(0)  # one write for the changes of one step
        if self._rt is not None:
            await threads.run_blocking(self._store, capture(self._rt))

    def _store(self, state: State) -> None:
        if state == self._saved:
            return
        try:
            save(self.path, state)
        except OSError as exc:
            log.warning("cannot save the state file %s: %s", self.path, exc)
            return
        self._saved = state

    async def finish(self) -> None:
        """Save the state as it is now (call after the proxy stopped, on its loop)."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        if self._rt is not None:
            self._store(capture(self._rt))
