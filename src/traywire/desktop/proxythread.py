"""The proxy on a thread of its own, for the tray app.

* The proxy (`Server` + `Runtime`) runs on an asyncio event loop in its own
  thread, ``traywire-proxy``. Everything in the Runtime belongs to that loop.
* Other threads talk to it only through `Proxy`'s methods, which post
  coroutines to the loop (``asyncio.run_coroutine_threadsafe``) and return
  ``concurrent.futures.Future``\\ s, and through immutable snapshots
  (`Proxy.snapshot`, a `tray.Snapshot` of deeply frozen data).
* `Poller` (thread ``traywire-status``) takes a snapshot about once a second,
  and at once when a backend's health changes or a command finished, and
  hands it to a ``deliver`` callback (the tray's `post`, which moves what it
  must show to the UI thread).
* `Proxy.stop_in_background` stops the proxy from a short-lived thread so a
  Quit clicked in the tray does not freeze the UI while requests drain.

The threads start through `traywire.threads`, like every other. The tray
itself owns the main thread (macOS requires it); see `desktop.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from .. import config, statefile, threads
from ..proxy.runtime import Runtime
from ..server import Server, settle_heap_soon
from . import autostart
from .tray import Snapshot, Topology, freeze, not_running, topology

__all__ = ["Poller", "Proxy"]

log = logging.getLogger("traywire")

T = TypeVar("T")


class Proxy:
    """The proxy on its own event-loop thread. All public methods are thread-safe."""

    def __init__(
        self,
        cfg: config.Config,
        *,
        host: str | None = None,
        port: int | None = None,
        token: str | None = None,
        grace: float = 10.0,
        config_file: str | Path | None = None,
        keys: Mapping[str, str | None] | None = None,
        resolve_keys: bool = True,
        probes: bool = True,
        state_path: Path | None = None,
        autostart_enabled: Callable[[], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.host = host or cfg.server.host
        self.port = cfg.server.port if port is None else port
        self.token = token
        self.grace = grace
        self.config_file = config_file
        self._keys = dict(keys or {})
        self._resolve_keys = resolve_keys
        self._probes = probes
        self.state_path = state_path
        self._autostart = autostart_enabled or autostart.is_enabled
        from ..app import new_event_loop

        self.loop = new_event_loop()
        self._thread: threading.Thread | None = None  # the loop's, once started
        self._server: Server | None = None
        self._lock = threading.Lock()
        self._saved: statefile.State | None = None
        self._topology: tuple[config.Config, Topology] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._stopped = threading.Event()
        self._finished = threading.Event()
        self._note = ""
        # Why the OS keyring cannot take keys ("" when it can): the menu's key item.
        self.keyring_problem = ""
        self.url = ""
        # Problems applying the saved state (e.g. a group since removed).
        self.state_problems: list[str] = []

    # ----------------------------------------------------------------- lifecycle

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self, timeout: float = 60.0) -> str:
        """Start the loop thread, apply the saved state, listen. Returns the URL.

        Raises what `Server.start` raises (OSError: the port is taken), after
        cleaning up.
        """
        saved = statefile.load(self.state_path) if self.state_path else statefile.State()
        self._saved = saved
        self._thread = threads.start_thread(self._run_loop, "traywire-proxy")
        try:
            self.run(self._start(saved), timeout)
        except BaseException:
            self._stopped.set()
            self._halt_loop()
            self._finished.set()
            raise
        assert self._server is not None
        self.url = self._server.url
        return self.url

    async def _start(self, saved: statefile.State) -> None:
        rt = Runtime(self.cfg, keys=self._keys)
        self.state_problems = statefile.apply(rt, saved)
        for p in self.state_problems:
            log.warning("saved state not applied: %s", p)
        server = Server(
            rt,
            self.host,
            self.port,
            token=self.token,
            grace=self.grace,
            config_file=self.config_file,
        )
        try:
            await server.start(probes=self._probes, resolve_keys=self._resolve_keys)
            settle_heap_soon()
        except BaseException:
            await rt.close()
            raise
        rt.health.add_listener(lambda *_: self._changed())
        self._server = server

    @property
    def running(self) -> bool:
        return self._server is not None and not self._stopped.is_set()

    @property
    def rt(self) -> Runtime:
        """The Runtime. Touch it only on the proxy's loop (see `run`)."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return self._server.rt

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coro`` on the proxy's loop and wait for its result."""
        return self.submit(coro).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the proxy's loop; its result comes in the Future."""
        if self._stopped.is_set() or not self._loop_alive():
            coro.close()
            fut: Future[T] = Future()
            fut.set_exception(RuntimeError("the proxy is not running"))
            return fut
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, grace: float | None = None) -> None:
        """Stop listening, let in-flight requests finish for up to ``grace``
        seconds (default: the one given at construction), then close. Idempotent."""
        with self._lock:
            first = not self._stopped.is_set()
            self._stopped.set()
        if not first:  # another thread is stopping it: wait for that
            self._finished.wait((self.grace if grace is None else grace) + 60)
            return
        try:
            if self._server is not None and self._loop_alive():
                server = self._server
                wait = self.grace if grace is None else grace
                asyncio.run_coroutine_threadsafe(server.stop(grace=wait), self.loop).result(
                    wait + 30
                )
                # after the stop: a switch it ended keeps the member really active
                self._persist(self._capture_now())
        except Exception:
            log.exception("stopping the proxy failed")
        finally:
            self._halt_loop()
            self._finished.set()
            self._changed()

    def stop_in_background(
        self, grace: float | None = None, then: Callable[[], None] | None = None
    ) -> threading.Thread:
        """`stop` on a new thread, then call ``then`` (e.g. stop the tray)."""

        def run() -> None:
            try:
                self.stop(grace)
            finally:
                if then is not None:
                    then()

        return threads.start_thread(run, "traywire-stop", daemon=False)

    def _loop_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _halt_loop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self._loop_alive() and not self.loop.is_closed():
            self.loop.close()

    # ----------------------------------------------------------------- listeners

    def add_listener(self, fn: Callable[[], None]) -> None:
        """``fn()`` (which must be quick and thread-safe, e.g. `Poller.kick`) is
        called when health changes, a command finishes or the proxy stops."""
        self._listeners.append(fn)

    def _changed(self) -> None:
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:
                log.exception("change listener failed")

    def _notify_when_done(self, fut: Future[T]) -> Future[T]:
        fut.add_done_callback(lambda _f: self._changed())
        return fut

    # ----------------------------------------------------------------- snapshots

    async def _read(self) -> tuple[dict[str, Any], config.Config, statefile.State]:
        rt = self.rt
        return rt.status(), rt.cfg, statefile.capture(rt)

    def snapshot(self, timeout: float = 5.0) -> Snapshot:
        """An immutable picture of the proxy now (from any thread but the loop's)."""
        autostart_on = self._autostart_on()
        if not self.running:
            return not_running(self.url, self._note, autostart_on)
        try:
            status, cfg, state = self.run(self._read(), timeout)
        except Exception as exc:
            if not self.running:
                return not_running(self.url, self._note, autostart_on)
            log.warning("status snapshot failed: %s", exc)
            return not_running(self.url, f"status unavailable: {exc}", autostart_on)
        self._persist(state)
        return Snapshot(
            running=True,
            url=self.url,
            status=freeze(status),
            topology=self._topology_of(cfg),
            autostart=autostart_on,
            note=self._note,
            keyring=self.keyring_problem,
        )

    def _topology_of(self, cfg: config.Config) -> Topology:
        cached = self._topology
        if cached is None or cached[0] is not cfg:
            cached = self._topology = (cfg, topology(cfg))
        return cached[1]

    def _autostart_on(self) -> bool:
        try:
            return bool(self._autostart())
        except Exception as exc:
            log.debug("autostart check failed: %s", exc)
            return False

    def _capture_now(self) -> statefile.State | None:
        async def capture() -> statefile.State:
            return statefile.capture(self.rt)

        try:
            return asyncio.run_coroutine_threadsafe(capture(), self.loop).result(5)
        except Exception:
            return None

    def _persist(self, state: statefile.State | None) -> None:
        if state is None or self.state_path is None:
            return
        with self._lock:
            if state == self._saved:
                return
            try:
                statefile.save(self.state_path, state)
            except OSError as exc:
                log.warning("cannot save the state file %s: %s", self.state_path, exc)
                return
            self._saved = state

    # ----------------------------------------------------------------- commands

    def set_preference(self, preference: str) -> Future[None]:
        async def do() -> None:
            self.rt.set_preference(preference)

        return self._notify_when_done(self.submit(do()))

    def set_active(self, group: str, member: str) -> Future[str]:
        """Make ``member`` the active member of ``group``: a full switch (stop
        one server, start the other) when the group has a ``switch`` section
        and the Runtime can switch, else just routing. The Future's result is
        the switch's final phase ("done" / "failed") or "set"."""

        async def do() -> str:
            rt = self.rt
            grp = rt.cfg.groups.get(group)
            switch = getattr(rt, "switch", None)
            if grp is not None and getattr(grp, "switch", None) is not None and switch:
                result = switch(group, member)
                if inspect.isawaitable(result):
                    result = await result
                return str(getattr(result, "phase", "done"))
            rt.set_active(group, member)
            return "set"

        return self._notify_when_done(self.submit(do()))

    def reload_config(self, source: str = "from the tray") -> Future[str]:
        """Read the config again and apply it. The Future's result says what
        happened; a bad config leaves the running one in place (ConfigError),
        as does a running switch (SwitchBusy)."""

        async def do() -> str:
            message, _ = await self.rt.reload_config(source, resolve_keys=self._resolve_keys)
            self.cfg = self.rt.cfg
            return message

        return self._notify_when_done(self.submit(do()))

    def reload_on_sighup(self) -> None:
        """SIGHUP reloads the config, as `traywire serve` does (POSIX; call on
        the main thread). The outcome is logged and shown in the tray's status."""
        if not hasattr(signal, "SIGHUP"):
            return  # Windows: the tray's menu and POST /admin/reload

        def done(f: Future[str]) -> None:
            exc = f.exception()
            if exc is not None:
                log.warning("config not reloaded (SIGHUP): %s", exc)
            self.set_note("" if exc is None else "config not reloaded")

        def handle(*_: object) -> None:
            self.reload_config("SIGHUP").add_done_callback(done)

        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(signal.SIGHUP, handle)

    def set_note(self, note: str) -> None:
        """A line the tray shows in its status (e.g. the last reload error)."""
        self._note = note
        self._changed()


class Poller:
    """Hands snapshots to ``deliver`` about every ``interval`` seconds, and at
    once after `kick` (thread-safe). ``deliver`` runs on the poll thread."""

    def __init__(
        self,
        source: Callable[[], Snapshot],
        deliver: Callable[[Snapshot], None],
        interval: float = 1.0,
    ) -> None:
        self.source = source
        self.deliver = deliver
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Poller:
        if self._thread is None:
            self._thread = threads.start_thread(self._loop, "traywire-status")
        return self

    def kick(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                snap = self.source()
                if self._stop.is_set():
                    break
                self.deliver(snap)
            except Exception:
                log.exception("status poll failed")
            self._wake.wait(self.interval)
