"""The pystray glue (`Tray`): builds a ``pystray.Menu`` from the menu model of
`traywire.tray`, draws the icon with `icon.draw_icon`, applies new snapshots on
the UI thread, and turns menu clicks into calls of one command handler.
``pystray`` is imported only when a `Tray` is created: with no display,
importing it raises (Xlib's DisplayNameError, not ImportError).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .. import threads
from .icon import Badge, IconState, draw_icon
from .menu import Command, Item, menu_model
from .notices import RateLimiter, notices
from .tray import Snapshot, icon_badge, icon_state, tooltip

log = logging.getLogger("traywire")

# --------------------------------------------------------------------------- glue


class View(NamedTuple):
    state: IconState
    title: str
    menu: tuple[Item, ...]
    badge: Badge | None = None


def view(s: Snapshot) -> View:
    return View(icon_state(s), tooltip(s), menu_model(s), icon_badge(s))


class Tray:
    """A pystray icon showing snapshots; menu clicks call ``handler(command)``.

    Threads: `run` blocks the main thread in the platform's UI loop. `post`
    (new snapshot) is called from the status-poll thread only; it computes the
    view there and hands the finished, immutable view to the UI thread.
    `call_on_main` runs a function on the UI thread; `stop` may be called
    from any thread. ``handler`` runs on the UI thread: it must not block.
    """

    def __init__(
        self,
        handler: Callable[[Command], None],
        first: Snapshot,
        *,
        name: str = "traywire",
        icon_size: int = 64,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        notifications: bool = True,
    ) -> None:
        import pystray  # may raise anything without a display: the caller handles it

        self._pystray: Any = pystray
        self._handler = handler
        self._size = icon_size
        self._images: dict[tuple[IconState, Badge | None], Any] = {}
        self._limiter = limiter or RateLimiter()
        self._clock = clock
        self._last: Snapshot = first
        self._shown: View = view(first)
        self._posted: View = self._shown
        self.snapshot = first
        cls = pystray.Icon
        self.backend: str = cls.__module__.rsplit(".", 1)[-1].lstrip("_")
        self.radio = bool(getattr(cls, "HAS_MENU_RADIO", False))
        # False without a notification service: `notify` then only logs
        self.can_notify = notifications and bool(getattr(cls, "HAS_NOTIFICATION", False))
        self.call_on_main = _main_thread_caller(self.backend)
        self._stopping = threading.Event()
        self._failed = threading.Event()
        self.icon: Any = cls(
            name,
            self._image(self._shown.state, self._shown.badge),
            self._shown.title,
            menu=self._menu(self._shown.menu),
        )

    # ----------------------------------------------------------- building

    def _image(self, state: IconState, badge: Badge | None) -> Any:
        img = self._images.get((state, badge))
        if img is None:
            img = self._images[(state, badge)] = draw_icon(state, self._size, badge)
        return img

    def _action(self, cmd: Command) -> Callable[[Any, Any], None]:
        def act(icon: Any, item: Any) -> None:
            try:
                self._handler(cmd)
            except Exception:
                log.exception("tray action %s failed", cmd.name)

        return act

    def _items(self, items: Sequence[Item]) -> list[Any]:
        ps = self._pystray
        out: list[Any] = []
        for it in items:
            if it.separator:
                out.append(ps.Menu.SEPARATOR)
                continue
            if it.submenu is not None:
                out.append(
                    ps.MenuItem(it.text, ps.Menu(*self._items(it.submenu)), enabled=it.enabled)
                )
                continue
            checked = None if it.checked is None else _const(it.checked)
            out.append(
                ps.MenuItem(
                    it.text,
                    self._action(it.command) if it.command is not None else None,
                    checked=checked,
                    radio=it.radio and self.radio,
                    enabled=it.enabled,
                )
            )
        return out

    def _menu(self, items: Sequence[Item]) -> Any:
        return self._pystray.Menu(*self._items(items))

    # ----------------------------------------------------------- running

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Show the icon and run the UI loop until `stop` (main thread only)."""

        def setup(icon: Any) -> None:
            if self._failed.is_set():
                return
            _guard_notifier(icon)
            icon.visible = True
            if on_ready is not None:
                on_ready()

        try:
            self.icon.run(setup)
        except BaseException:
            # pystray starts the setup thread before its loop; if the loop
            # never got ready, that (non-daemon) thread waits forever.
            self._failed.set()
            _release_setup_thread(self.icon)
            raise

    def stop(self) -> None:
        """Stop the UI loop (from any thread); `run` then returns."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.call_on_main(self.icon.stop)

    def post(self, s: Snapshot) -> None:
        """A new snapshot (status-poll thread): update the icon, title and menu
        on the UI thread if they changed, and notify what is news."""
        new_view = view(s)
        now = self._clock()
        shown = [m for n in notices(self._last, s) for m in self._limiter.offer(n, now)]
        shown += self._limiter.flush(now)
        self._last = s
        if new_view == self._posted and not shown:
            return
        self._posted = new_view
        texts = tuple(n.text for n in shown)
        self.call_on_main(lambda: self._apply(s, new_view, texts))

    def _apply(self, s: Snapshot, v: View, texts: tuple[str, ...]) -> None:
        """Runs on the UI thread."""
        if self._stopping.is_set():
            return
        self.snapshot = s
        old, self._shown = self._shown, v
        if (v.state, v.badge) != (old.state, old.badge):
            self.icon.icon = self._image(v.state, v.badge)
        if v.title != old.title:
            self.icon.title = v.title
        if v.menu != old.menu:
            self.icon.menu = self._menu(v.menu)
        if texts:
            self.notify("\n".join(texts))

    def notify(self, text: str) -> None:
        """A desktop notification (UI thread), if the platform has them."""
        if not self.can_notify:
            log.info("notification: %s", text)
            return
        try:
            self.icon.notify(text, "traywire")
        except Exception as exc:  # a notification service that went away
            log.warning("notification failed: %s", exc)

    @property
    def shown(self) -> View:
        """What the UI shows now (read it on the UI thread)."""
        return self._shown

    # ----------------------------------------------------------- clipboard

    def copy(self, text: str) -> bool:
        """Put ``text`` on the clipboard (UI thread). False if no way was found."""
        if self.backend in ("appindicator", "gtk"):
            try:
                gdk = importlib.import_module("gi.repository.Gdk")
                gtk = importlib.import_module("gi.repository.Gtk")
                clip = gtk.Clipboard.get(gdk.SELECTION_CLIPBOARD)
                clip.set_text(text, -1)
                clip.store()
                return True
            except Exception as exc:
                log.warning("GTK clipboard failed: %s", exc)
        return copy_with_tool(text)


def _const(value: bool) -> Callable[[Any], bool]:
    return lambda _item: value


def copy_with_tool(text: str) -> bool:
    """Copy with the platform's clipboard command (pbcopy, clip, wl-copy, xclip, xsel)."""
    if sys.platform == "darwin":
        tools = [["pbcopy"]]
    elif sys.platform == "win32":
        tools = [["clip"]]
    else:
        tools = [["wl-copy"], ["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "-i"]]
    for argv in tools:
        if shutil.which(argv[0]) is None:
            continue
        try:
            threads.run_process(argv, input=text.encode(), check=True, timeout=5)
            return True
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("%s failed: %s", argv[0], exc)
    return False


def _main_thread_caller(backend: str) -> Callable[[Callable[[], object]], None]:
    """How to run a function on the UI thread for this pystray backend."""
    if backend in ("appindicator", "gtk"):
        glib = importlib.import_module("gi.repository.GLib")

        def on_glib(fn: Callable[[], object]) -> None:
            def once() -> bool:
                try:
                    fn()
                except Exception:
                    log.exception("tray update failed")
                return False  # run once

            glib.idle_add(once)

        return on_glib
    if backend == "darwin":
        helper = importlib.import_module("PyObjCTools.AppHelper")
        call_after: Callable[[Callable[[], object]], None] = helper.callAfter
        return call_after

    # win32 and xorg: pystray posts its updates to its own loop.
    def direct(fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:
            log.exception("tray update failed")

    return direct


def _guard_notifier(icon: Any) -> None:
    """pystray's GTK backends close their last notification when the loop ends;
    without a notification service that raises (a D-Bus ServiceUnknown error)
    and the icon's clean-up stops half-way. Make that close best-effort."""
    notifier: Any = getattr(icon, "_notifier", None)  # pystray's notify_dbus.Notifier
    hide = getattr(notifier, "hide", None)
    if notifier is None or hide is None:
        return

    def hide_quietly(*args: Any, **kwargs: Any) -> None:
        try:
            hide(*args, **kwargs)
        except Exception as exc:
            log.debug("closing the last notification: %s", exc)

    notifier.hide = hide_quietly


def _release_setup_thread(icon: Any) -> None:
    q = getattr(icon, "_Icon__queue", None)  # pystray.Icon's private ready-queue
    if q is not None:
        with contextlib.suppress(Exception):
            q.put(False)
