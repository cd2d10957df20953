"""Desktop notifications: what changed between two `tray.Snapshot`s that is
worth telling (`notices`), and a `RateLimiter` that keeps a flapping backend
from spamming. Pure: the caller passes ``now``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

from .tray import (
    EMPTY,
    SWITCH_DONE,
    Snapshot,
    backends_of,
    conditions,
    group_label,
    groups_of,
    member_label,
    running_switch,
    switches_of,
)

__all__ = ["Notice", "RateLimiter", "notices", "notifications"]


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
    old_c, new_c = conditions(old), conditions(new)
    groups = set(groups_of(new))
    busy = {
        g
        for g in groups
        if running_switch(old, g) is not None or running_switch(new, g) is not None
    }
    finished: set[str] = set()
    for g in groups:
        now_sw = switches_of(new).get(g)
        before = switches_of(old).get(g)
        if not isinstance(now_sw, Mapping) or now_sw.get("phase") not in SWITCH_DONE:
            continue
        if isinstance(before, Mapping) and _same_switch(before, now_sw):
            continue
        finished.add(g)
        label = group_label(g)
        to = member_label(g, str(now_sw.get("to")))
        if now_sw.get("phase") == "done":
            out.append(Notice(f"switch:{g}", f"{label} now serves {to}"))
        else:
            err = now_sw.get("error") or "unknown error"
            out.append(Notice(f"switch:{g}", f"Switching {label} to {to} failed: {err}"))
    for name, cond in new_c.items():
        was = old_c.get(name)
        entry = backends_of(new).get(name, EMPTY)
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
