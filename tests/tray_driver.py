"""Run the real traywire app (``traywire.cli.main``) with a remote control for tests.

    python tests/tray_driver.py [traywire args...]

Before the tray's UI loop starts, a thread starts reading commands on stdin,
one per line; each answer is one line on stdout starting with ``DRIVER `` and
then JSON:

* ``state`` - what the tray shows now: ``{"state", "badge", "title", "menu", "backend"}``
  (read on the UI thread).
* ``click A/B/C`` - activate the menu item at that path of labels (prefixes)
  through the toolkit: for pystray's GTK backends the ``Gtk.MenuItem`` is
  activated, which runs the very handler pystray connected to it (and so
  traywire's action); elsewhere pystray's ``MenuItem`` is called as the
  backend would. ``{"ok": true}`` or ``{"error": ...}``.

The process exits with the app's exit code.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from traywire import cli
from traywire.desktop import trayicon

_original_run = trayicon.Tray.run


def _on_main(t: trayicon.Tray, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except Exception as exc:  # reported to the test
            box["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            done.set()

    t.call_on_main(run)
    if not done.wait(timeout):
        return {"error": "the UI thread did not answer"}
    return box.get("value", {"error": box.get("error")})


def _labels(items: Any) -> list[Any]:
    return [
        {"text": i.text, "checked": i.checked, "submenu": _labels(i.submenu)}
        if i.submenu is not None
        else {"text": i.text, "checked": i.checked, "enabled": i.enabled}
        for i in items
        if not i.separator
    ]


def _state(t: trayicon.Tray) -> dict[str, Any]:
    shown = t.shown
    return {
        "state": shown.state,
        "badge": shown.badge,
        "title": t.icon.title,
        "menu": _labels(shown.menu),
        "backend": t.backend,
        "visible": bool(t.icon.visible),
    }


def _click_gtk(menu: Any, path: list[str]) -> dict[str, Any]:
    for part_index, part in enumerate(path):
        found = None
        for child in menu.get_children():
            label = child.get_label() if hasattr(child, "get_label") else None
            if label and label.startswith(part):
                found = child
                break
        if found is None:
            return {"error": f"no GTK menu item {part!r} in {path}"}
        if part_index == len(path) - 1:
            found.activate()
            return {"ok": True, "via": "gtk"}
        menu = found.get_submenu()
        if menu is None:
            return {"error": f"{part!r} has no submenu"}
    return {"error": "empty path"}


def _click_pystray(t: trayicon.Tray, path: list[str]) -> dict[str, Any]:
    items = t.icon.menu
    for part_index, part in enumerate(path):
        found = next((i for i in items if str(i.text).startswith(part)), None)
        if found is None:
            return {"error": f"no menu item {part!r}"}
        if part_index == len(path) - 1:
            found(t.icon)
            t.icon.update_menu()
            return {"ok": True, "via": "pystray"}
        items = found.submenu
    return {"error": "empty path"}


def _click(t: trayicon.Tray, path: list[str]) -> dict[str, Any]:
    handle = getattr(t.icon, "_menu_handle", None)
    if t.backend in ("appindicator", "gtk") and handle is not None:
        return dict(_click_gtk(handle, path))
    return _click_pystray(t, path)


def _serve(t: trayicon.Tray) -> None:
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "state":
            answer = _on_main(t, lambda: _state(t))
        elif cmd == "click":
            path = arg.split("/")
            answer = _on_main(t, lambda path=path: _click(t, path))
        else:
            answer = {"error": f"unknown command {cmd!r}"}
        print("DRIVER " + json.dumps(answer), flush=True)


def _run(self: trayicon.Tray, on_ready: Callable[[], None] | None = None) -> None:
    threading.Thread(target=_serve, args=(self,), daemon=True, name="driver").start()
    _original_run(self, on_ready)


trayicon.Tray.run = _run  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(cli.main(sys.argv[1:]))
