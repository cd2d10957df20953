"""Can a tray icon show here, and can it notify? The checks behind the app's
start-up notices and `traywire doctor`.

`diagnose` says why no tray icon can be shown (None: it can), from what a
`Probes` finds: pystray's backend, the D-Bus session bus, a StatusNotifier
host or an X11 system tray. `notifications_problem` says why there are no
desktop notifications (the tray works without them: news then goes to the
log and the menu's status line). `SystemProbes` asks the real system (D-Bus
through Gio, X11 through python-xlib); nothing is touched at import.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

__all__ = [
    "Probes",
    "SystemProbes",
    "TrayProblem",
    "diagnose",
    "notifications_notice",
    "notifications_problem",
]

log = logging.getLogger("traywire")

_SNI_WATCHER = "org.kde.StatusNotifierWatcher"
_NOTIFICATIONS = "org.freedesktop.Notifications"


# --------------------------------------------------------------------------- can a tray show?


class TrayProblem(NamedTuple):
    what: str  # what is missing
    fix: str  # how to fix it

    def message(self, url: str) -> str:
        """The start-up notice: one line."""
        return (
            f"traywire: no tray icon: {self.what}. Fix: {self.fix}. "
            f"Serving at {url} until Ctrl-C (details: `traywire doctor`)."
        )


class Probes(Protocol):
    """What `diagnose` asks the system (a fake in tests)."""

    def load_backend(self) -> str: ...  # pystray's backend name; raises if it cannot load

    def session_bus(self) -> str | None: ...  # None, or why there is no session bus

    def has_notifications(self) -> bool: ...

    def has_sni_host(self) -> bool: ...  # a StatusNotifierItem host (KDE, GNOME + extension)

    def has_xembed_tray(self) -> bool: ...  # an X11 system tray (trayer, stalonetray, panels)

    def use_backend(self, name: str) -> None: ...  # make pystray load this backend


def _tray_host_fix(env: Mapping[str, str]) -> str:
    desktop = env.get("XDG_CURRENT_DESKTOP", "").lower()
    if "gnome" in desktop or "ubuntu" in desktop:
        return (
            "install and enable GNOME's AppIndicator extension "
            "(package gnome-shell-extension-appindicator), then log in again"
        )
    return "run a system tray (your panel's tray applet, or trayer / stalonetray)"


def diagnose(probes: Probes, env: Mapping[str, str], platform: str) -> TrayProblem | None:
    """Why no tray icon can be shown, or None if it can. (No notification
    service is not a reason: see `notifications_problem`.)"""
    linux = platform not in ("darwin", "win32", "cygwin")
    if linux and not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return TrayProblem(
            "no graphical session (DISPLAY and WAYLAND_DISPLAY are not set)",
            "start traywire in your desktop session, or use `traywire serve` on a server",
        )
    # With no StatusNotifier host, pystray's AppIndicator backend falls back to an
    # X11 tray icon through libayatana-appindicator, which prints a Gdk-CRITICAL
    # (gdk_window_thaw_toplevel_updates) when it shows. pystray's GTK backend puts
    # the same icon in the same tray without it.
    if (
        linux
        and not env.get("PYSTRAY_BACKEND")
        and env.get("DISPLAY")
        and probes.session_bus() is None
        and not probes.has_sni_host()
        and probes.has_xembed_tray()
    ):
        probes.use_backend("gtk")
    try:
        backend = probes.load_backend()
    except Exception as exc:
        what = f"pystray cannot load a tray backend ({type(exc).__name__}: {exc})"
        fix = "check PYSTRAY_BACKEND and the display"
        if linux:
            fix = (
                "install PyGObject with GTK 3 and AppIndicator (Debian/Ubuntu: python3-gi "
                "gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1; in a virtualenv: "
                "pip install PyGObject)"
            )
        return TrayProblem(what, fix)
    if backend == "dummy":
        return TrayProblem(
            "PYSTRAY_BACKEND=dummy selects pystray's backend that shows nothing",
            "unset PYSTRAY_BACKEND",
        )
    if backend in ("appindicator", "gtk"):
        why = probes.session_bus()
        if why is not None:
            return TrayProblem(
                f"no D-Bus session bus ({why})",
                "start traywire inside your desktop session, or under dbus-run-session",
            )
    if backend == "appindicator":
        if not (probes.has_sni_host() or probes.has_xembed_tray()):
            return TrayProblem(
                "no tray host (no StatusNotifier host, no X11 system tray)", _tray_host_fix(env)
            )
    elif backend in ("gtk", "xorg") and not probes.has_xembed_tray():
        return TrayProblem(
            f"no X11 system tray (pystray's {backend} backend needs one)", _tray_host_fix(env)
        )
    return None


def notifications_problem(probes: Probes, platform: str) -> TrayProblem | None:
    """Why desktop notifications cannot be shown (Linux: no notification
    service on the session bus), or None. Ask after `diagnose` found no problem."""
    if platform in ("darwin", "win32", "cygwin"):
        return None
    why = probes.session_bus()
    if why is None and probes.has_notifications():
        return None
    return TrayProblem(
        f"no notification service ({_NOTIFICATIONS} on the session bus)"
        if why is None
        else f"no D-Bus session bus ({why})",
        "run a notification daemon (your desktop's, or dunst / mako)",
    )


def notifications_notice(problem: TrayProblem) -> str:
    """The start-up notice for `notifications_problem`: one line."""
    return (
        f"traywire: no desktop notifications: {problem.what}. Fix: {problem.fix}. "
        "Until then, what they would say goes to this log and the menu's first line."
    )


class SystemProbes:
    """`Probes` on the real system: pystray, D-Bus through Gio, X11 through python-xlib."""

    def __init__(self, env: Mapping[str, str], timeout_ms: int = 3000) -> None:
        self.env = env
        self.timeout_ms = timeout_ms
        self._bus: Any = None

    def use_backend(self, name: str) -> None:
        os.environ["PYSTRAY_BACKEND"] = name  # read when pystray is imported

    def load_backend(self) -> str:
        import pystray

        return str(pystray.Icon.__module__).rsplit(".", 1)[-1].lstrip("_")

    def _gio(self) -> tuple[Any, Any]:
        return (
            importlib.import_module("gi.repository.Gio"),
            importlib.import_module("gi.repository.GLib"),
        )

    def session_bus(self) -> str | None:
        try:
            gio, _ = self._gio()
            self._bus = gio.bus_get_sync(gio.BusType.SESSION, None)
        except Exception as exc:
            return str(getattr(exc, "message", None) or exc)
        return None

    def _call(self, method: str, args: tuple[Any, ...], sig: str | None) -> Any:
        gio, glib = self._gio()
        params = glib.Variant(sig, args) if sig else None
        reply = self._bus.call_sync(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            method,
            params,
            None,
            gio.DBusCallFlags.NONE,
            self.timeout_ms,
            None,
        )
        return reply.unpack()

    def _has_owner(self, name: str) -> bool:
        return bool(self._call("NameHasOwner", (name,), "(s)")[0])

    def has_notifications(self) -> bool:
        if self._bus is None and self.session_bus() is not None:
            return False
        try:
            if self._has_owner(_NOTIFICATIONS):
                return True
            # Not running: D-Bus activation may start one (as pystray would).
            self._call("StartServiceByName", (_NOTIFICATIONS, 0), "(su)")
            return self._has_owner(_NOTIFICATIONS)
        except Exception as exc:
            log.debug("notification service check: %s", exc)
            return False

    def has_sni_host(self) -> bool:
        if self._bus is None and self.session_bus() is not None:
            return False
        try:
            if not self._has_owner(_SNI_WATCHER):
                return False
            gio, glib = self._gio()
            reply = self._bus.call_sync(
                _SNI_WATCHER,
                "/StatusNotifierWatcher",
                "org.freedesktop.DBus.Properties",
                "Get",
                glib.Variant("(ss)", (_SNI_WATCHER, "IsStatusNotifierHostRegistered")),
                None,
                gio.DBusCallFlags.NONE,
                self.timeout_ms,
                None,
            )
            return bool(reply.unpack()[0])
        except Exception as exc:
            log.debug("StatusNotifier host check: %s", exc)
            return False

    def has_xembed_tray(self) -> bool:
        if not self.env.get("DISPLAY"):
            return False
        try:
            xdisplay = importlib.import_module("Xlib.display")
            d = xdisplay.Display(self.env["DISPLAY"])
            try:
                atom = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
                owner = d.get_selection_owner(atom)
                return bool(owner) and getattr(owner, "id", owner) != 0
            finally:
                d.close()
        except Exception as exc:
            log.debug("X11 system tray check: %s", exc)
            return False
