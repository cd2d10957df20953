"""``traywire`` with no command: the proxy plus the tray icon.

The proxy runs on its own thread (`proxythread.Proxy`); the tray owns the main
thread. Where no tray can be shown (no display, pystray cannot load, no tray
host) this says so once, in one line with what is missing and how to fix it,
and keeps serving as a plain proxy until Ctrl-C / SIGTERM; ``--no-tray`` does
that on purpose. Without a notification service the tray runs and says so
once; what a notification would say then goes to the log and the menu's first
line (`Controller.notify`). The checks are `probes`'; `traywire doctor` shows
them all. One app per user (`instance`): a second
one prints where the first runs and exits 0. Quit (menu, Ctrl-C, SIGTERM)
stops the proxy cleanly - in-flight requests get the grace period - then the
icon.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config, startup
from . import opener
from .options import add_arguments, app_args
from .probes import (
    Probes,
    SystemProbes,
    TrayProblem,
    diagnose,
    notifications_notice,
    notifications_problem,
)

if TYPE_CHECKING:  # the proxy and tray modules load only when the app runs
    from .menu import Command
    from .proxythread import Proxy
    from .trayicon import Tray

__all__ = ["TrayProblem", "add_arguments", "app_args", "diagnose", "run_app"]

log = logging.getLogger("traywire")

# --------------------------------------------------------------------------- actions


def open_path(target: str, what: str, report: Callable[[str], None]) -> None:
    """Open a file or URL with the desktop's application; ``report`` hears why
    it failed (from any thread)."""
    opener.open_target(target, what, report)


class Controller:
    """Carries out tray commands. `handle` runs on the UI thread and never
    blocks: proxy commands go to the loop, results come back as notifications."""

    def __init__(self, proxy: Proxy, config_file: str | None, grace: float) -> None:
        self.proxy = proxy
        self.config_file = config_file
        self.grace = grace
        self.tray: Tray | None = None
        self.kick: Callable[[], None] = lambda: None
        self._quitting = threading.Event()
        self.stopper: threading.Thread | None = None

    def notify(self, text: str) -> None:
        """From any thread: a desktop notification; without a notification
        service, a log line and the menu's first line (until the next one)."""
        tray = self.tray
        if tray is None:
            print(f"traywire: {text}", file=sys.stderr, flush=True)
            return
        if not getattr(tray, "can_notify", True):
            log.warning("%s", text)
            self.proxy.set_note(text)
            self.kick()
            return
        tray.call_on_main(lambda: tray.notify(text))

    def _report(self, fut: Future[Any], ok: str | None, failed: str) -> None:
        def done(f: Future[Any]) -> None:
            exc = f.exception()
            if exc is not None:
                self.notify(f"{failed}: {exc}")
            elif ok is not None:
                self.notify(ok.format(result=f.result()))

        fut.add_done_callback(done)

    def handle(self, cmd: Command) -> None:
        name, args = cmd
        if name == "copy":
            self.copy(args[0])
        elif name == "set_preference":
            self._report(self.proxy.set_preference(args[0]), None, "Could not change routing")
        elif name == "set_active":
            if self._is_active(args[0], args[1]):
                return  # clicking the checked member must not restart its server
            self._report(
                self.proxy.set_active(args[0], args[1]), None, f"Could not switch {args[0]}"
            )
        elif name == "open_dashboard":
            open_path(self.proxy.url + "/ui", "the dashboard", self.notify)
        elif name == "set_key":
            self.set_key(args[0])
        elif name == "open_config":
            self.open_config()
        elif name == "reload":
            self.reload()
        elif name == "toggle_autostart":
            self.toggle_autostart()
        elif name == "quit":
            self.quit()
        else:
            log.warning("unknown tray command %s", name)

    def _is_active(self, group: str, member: str) -> bool:
        tray = self.tray
        if tray is None:
            return False
        active = tray.snapshot.status.get("active")
        return isinstance(active, Mapping) and active.get(group) == member

    def copy(self, text: str) -> None:
        ok = self.tray.copy(text) if self.tray is not None else False
        if not ok:
            self.notify(f"No clipboard available; the address is {text}")

    def set_key(self, name: str) -> None:
        """The dashboard's key form (the proxy uses a key as soon as it is saved)."""
        open_path(self.proxy.url + "/ui#keys", "the dashboard's key form", self.notify)

    def config_path(self) -> Path:
        return Path(self.config_file) if self.config_file else config.user_config_path()

    def open_config(self) -> None:
        path = self.config_path()
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(config.default_config_text(), encoding="utf-8")
        except OSError as exc:
            self.notify(f"Could not open the config file {path}: {exc}")
            return
        open_path(str(path), "the config file", self.notify)

    def reload(self) -> None:
        fut = self.proxy.reload_config()

        def done(f: Future[str]) -> None:
            exc = f.exception()
            if exc is None:
                self.proxy.set_note("")
                self.notify(f.result())
            else:
                self.proxy.set_note("config not reloaded")
                self.notify(f"Config not reloaded: {exc}")

        fut.add_done_callback(done)

    def toggle_autostart(self) -> None:
        from . import autostart

        try:
            if autostart.is_enabled():
                autostart.disable()
                self.notify("traywire will no longer start at login")
            else:
                where = autostart.enable()
                self.notify(f"traywire will start at login ({where})")
        except (OSError, ValueError) as exc:
            self.notify(f"Start at login: {exc}")
        self.kick()

    def quit(self) -> None:
        """Stop the proxy (draining) on a worker thread, then the tray. Idempotent."""
        if self._quitting.is_set():
            return
        self._quitting.set()
        print("traywire: stopping (finishing in-flight requests)…", file=sys.stderr, flush=True)
        tray = self.tray
        self.stopper = self.proxy.stop_in_background(
            self.grace, then=tray.stop if tray is not None else None
        )

    @property
    def quitting(self) -> bool:
        return self._quitting.is_set()


# --------------------------------------------------------------------------- running


def run_app(args: argparse.Namespace, probes: Probes | None = None) -> int:
    """``traywire`` / ``traywire app``. Returns the exit code."""
    from .. import app, statefile
    from . import instance
    from .proxythread import Proxy

    logging.basicConfig(
        level=str(getattr(args, "log_level", "info")).upper(),
        format="%(asctime)s %(levelname)s %(message)s",
    )
    cfg = config.load(args.config)
    host = args.host or cfg.server.host
    port = cfg.server.port if args.port is None else args.port
    token = app.resolve_token(cfg)
    directory = statefile.state_dir()
    lock = instance.acquire(directory)
    if lock is None:
        url = instance.running_url(directory)
        if url:
            print(f"traywire is already running at {url}", flush=True)
        else:
            print("traywire is already running (it has not said where yet)", flush=True)
        return 0
    # Signals are taken before anything listens: a Ctrl-C or SIGTERM that
    # comes as soon as the port answers stops traywire cleanly too.
    stop = _Stop()
    _install_signals(stop)
    try:
        proxy = Proxy(
            cfg,
            host=host,
            port=port,
            token=token,
            grace=args.grace,
            config_file=args.config,
            state_path=statefile.default_path(),
        )
        try:
            proxy.start()
        except OSError as exc:
            print(
                f"traywire: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr
            )
            return 1
        except ValueError as exc:
            print(f"traywire: {exc}", file=sys.stderr)
            return 2
        lock.publish(proxy.url)
        proxy.reload_on_sighup()
        print(app.banner(proxy.url), flush=True)
        for notice in startup.key_notices(cfg):
            print(notice, file=sys.stderr, flush=True)
        proxy.keyring_problem = _keyring_problem()
        if args.no_tray:
            print(
                f"traywire: --no-tray: serving at {proxy.url} without a tray icon until Ctrl-C.",
                file=sys.stderr,
                flush=True,
            )
            return _headless(proxy, args.grace, stop)
        probes = probes or SystemProbes(os.environ)
        problem = diagnose(probes, os.environ, sys.platform)
        if problem is not None:
            print(problem.message(proxy.url), file=sys.stderr, flush=True)
            return _headless(proxy, args.grace, stop)
        silent = notifications_problem(probes, sys.platform)
        if silent is not None:
            print(notifications_notice(silent), file=sys.stderr, flush=True)
        args.notifications = silent is None
        return _with_tray(proxy, args, stop)
    finally:
        lock.release()


def _keyring_problem() -> str:
    from .. import secrets

    problem = secrets.keyring_problem()
    return "" if problem is None else problem.reason or str(problem)


class _Stop:
    """What SIGINT/SIGTERM do: set ``event`` (the headless wait), or call
    ``action`` once the tray has put its quit there."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.action: Callable[[], None] | None = None

    def __call__(self) -> None:
        self.event.set()
        if self.action is not None:
            self.action()


def _install_signals(handler: Callable[[], None]) -> None:
    """SIGINT/SIGTERM call ``handler`` (main thread only)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread / not supported
            signal.signal(sig, lambda *_: handler())


def _headless(proxy: Proxy, grace: float, stop: _Stop) -> int:
    from .proxythread import Poller

    stop.action = None
    # The poll keeps the state file up to date (changes made through /admin).
    poller = Poller(proxy.snapshot, lambda _s: None, interval=2.0).start()
    try:
        while not stop.event.wait(0.5):
            pass
        print("traywire: stopping (finishing in-flight requests)…", file=sys.stderr, flush=True)
    finally:
        poller.stop()
        proxy.stop(grace)
    return 0


def _with_tray(proxy: Proxy, args: argparse.Namespace, stop: _Stop) -> int:
    from .proxythread import Poller
    from .trayicon import Tray

    controller = Controller(proxy, args.config, args.grace)
    try:
        tray = Tray(
            controller.handle,
            proxy.snapshot(),
            notifications=getattr(args, "notifications", True),
        )
    except Exception as exc:
        problem = TrayProblem(
            f"the tray icon could not be created ({type(exc).__name__}: {exc})",
            "check the desktop's tray support",
        )
        print(problem.message(proxy.url), file=sys.stderr, flush=True)
        return _headless(proxy, args.grace, stop)
    controller.tray = tray
    poller = Poller(proxy.snapshot, tray.post)
    controller.kick = poller.kick
    proxy.add_listener(poller.kick)
    stop.action = controller.quit
    if stop.event.is_set():  # a signal came while starting
        controller.quit()

    def on_ready() -> None:  # pystray's setup thread
        poller.start()
        # pystray's GTK loop resets SIGINT to the default (die at once): take it back.
        tray.call_on_main(lambda: _install_signals(stop))

    try:
        tray.run(on_ready)
    except Exception as exc:
        poller.stop()
        if not controller.quitting:
            problem = TrayProblem(
                f"the tray stopped with an error ({type(exc).__name__}: {exc})",
                "check the desktop's tray and notification services",
            )
            print(problem.message(proxy.url), file=sys.stderr, flush=True)
            return _headless(proxy, args.grace, stop)
        log.warning("the tray ended with an error: %s", exc)
    poller.stop()
    if controller.stopper is not None:
        controller.stopper.join()
    proxy.stop(args.grace)
    return 0
