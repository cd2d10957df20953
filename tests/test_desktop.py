"""``traywire`` (the app): where no tray can be shown it says so once and
serves; ``--no-tray`` does that on purpose; under a real (virtual) desktop
the tray shows the state, its menu drives the proxy, and Quit ends cleanly."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from app_process import App, free_port, write_config
from fakes import FakeBackend
from xsession import need_gi, need_tools, wait, xsession

from traywire.desktop import run as desktop
from traywire.desktop.menu import Command
from traywire.desktop.probes import notifications_notice, notifications_problem
from traywire.desktop.run import Controller, TrayProblem, diagnose

ARTIFACTS = Path(__file__).parent / "artifacts"
DRIVER = str(Path(__file__).parent / "tray_driver.py")


# --------------------------------------------------------------------------- diagnose


class FakeProbes:
    def __init__(
        self,
        backend: str | Exception = "appindicator",
        bus: str | None = None,
        notifications: bool = True,
        sni: bool = False,
        xembed: bool = True,
    ) -> None:
        self.backend = backend
        self.bus = bus
        self.notifications = notifications
        self.sni = sni
        self.xembed = xembed
        self.chosen: list[str] = []

    def load_backend(self) -> str:
        if isinstance(self.backend, Exception):
            raise self.backend
        return self.backend

    def session_bus(self) -> str | None:
        return self.bus

    def has_notifications(self) -> bool:
        return self.notifications

    def has_sni_host(self) -> bool:
        return self.sni

    def has_xembed_tray(self) -> bool:
        return self.xembed

    def use_backend(self, name: str) -> None:
        self.chosen.append(name)


X11 = {"DISPLAY": ":0"}


def test_a_desktop_with_a_tray_is_fine() -> None:
    assert diagnose(FakeProbes(), X11, "linux") is None
    assert diagnose(FakeProbes(sni=True, xembed=False), {"WAYLAND_DISPLAY": "w"}, "linux") is None
    assert diagnose(FakeProbes(backend="gtk"), X11, "linux") is None
    assert diagnose(FakeProbes(backend="xorg", notifications=False), X11, "linux") is None


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_macos_and_windows_need_no_display_variable(platform: str) -> None:
    assert diagnose(FakeProbes(backend=platform.replace("win32", "win32")), {}, platform) is None


def test_no_display() -> None:
    p = diagnose(FakeProbes(), {}, "linux")
    assert p is not None and "DISPLAY and WAYLAND_DISPLAY are not set" in p.what
    assert "traywire serve" in p.fix


def test_pystray_cannot_load() -> None:
    p = diagnose(FakeProbes(backend=ImportError("No module named 'gi'")), X11, "linux")
    assert p is not None
    assert p.what == "pystray cannot load a tray backend (ImportError: No module named 'gi')"
    assert "gir1.2-ayatanaappindicator3-0.1" in p.fix and "pip install PyGObject" in p.fix
    p = diagnose(FakeProbes(backend=RuntimeError("x")), {}, "darwin")
    assert p is not None and "PYSTRAY_BACKEND" in p.fix


def test_dummy_backend() -> None:
    p = diagnose(FakeProbes(backend="dummy"), X11, "linux")
    assert p is not None and p.fix == "unset PYSTRAY_BACKEND"


def test_no_session_bus_or_notifications() -> None:
    p = diagnose(FakeProbes(bus="the given address is empty"), X11, "linux")
    assert p is not None and p.what == "no D-Bus session bus (the given address is empty)"
    # no notification service: the tray still shows; a notice of its own says so
    probes = FakeProbes(notifications=False)
    assert diagnose(probes, X11, "linux") is None
    p = notifications_problem(probes, "linux")
    assert p is not None
    assert "no notification service (org.freedesktop.Notifications" in p.what
    assert "dunst" in p.fix
    line = notifications_notice(p)
    assert "\n" not in line and "the menu's first line" in line
    assert notifications_problem(FakeProbes(), "linux") is None
    assert notifications_problem(FakeProbes(notifications=False), "darwin") is None


def test_an_x11_tray_without_a_statusnotifier_host_gets_the_gtk_backend() -> None:
    """libayatana-appindicator's X11 fallback prints a Gdk-CRITICAL; pystray's GTK
    backend shows the same icon in the same tray without it."""
    probes = FakeProbes(sni=False, xembed=True)
    assert diagnose(probes, X11, "linux") is None
    assert probes.chosen == ["gtk"]
    for kept in (
        FakeProbes(sni=True),  # a StatusNotifier host: AppIndicator proper
        FakeProbes(xembed=False),  # no tray at all: nothing to pick
    ):
        diagnose(kept, X11, "linux")
        assert kept.chosen == []
    chosen = FakeProbes()
    diagnose(chosen, {**X11, "PYSTRAY_BACKEND": "appindicator"}, "linux")
    assert chosen.chosen == []  # the user's choice stands


def test_no_tray_host_and_the_gnome_hint() -> None:
    p = diagnose(FakeProbes(xembed=False), X11, "linux")
    assert p is not None and p.what.startswith("no tray host")
    assert "trayer" in p.fix
    gnome = {**X11, "XDG_CURRENT_DESKTOP": "ubuntu:GNOME"}
    p = diagnose(FakeProbes(xembed=False), gnome, "linux")
    assert p is not None and "AppIndicator extension" in p.fix
    assert "gnome-shell-extension-appindicator" in p.fix
    p = diagnose(FakeProbes(backend="gtk", sni=True, xembed=False), X11, "linux")
    assert p is not None and "no X11 system tray" in p.what


def test_the_message_says_what_how_and_that_it_serves() -> None:
    text = TrayProblem("no tray host", "run trayer").message("http://127.0.0.1:8484")
    assert text == (
        "traywire: no tray icon: no tray host. Fix: run trayer. "
        "Serving at http://127.0.0.1:8484 until Ctrl-C (details: `traywire doctor`)."
    )


# --------------------------------------------------------------------------- controller


class FakeProxy:
    url = "http://127.0.0.1:8484"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: Exception | None = None
        self.notes: list[str] = []

    def _fut(self, name: str, *args: Any) -> Future[Any]:
        self.calls.append((name, args))
        f: Future[Any] = Future()
        if self.fail is not None:
            f.set_exception(self.fail)
        else:
            f.set_result("config reloaded: 1 backends" if name == "reload_config" else None)
        return f

    def set_preference(self, p: str) -> Future[Any]:
        return self._fut("set_preference", p)

    def set_active(self, g: str, m: str) -> Future[Any]:
        return self._fut("set_active", g, m)

    def reload_config(self) -> Future[Any]:
        return self._fut("reload_config")

    def set_note(self, note: str) -> None:
        self.notes.append(note)

    def stop_in_background(self, grace: float, then: Callable[[], None] | None = None) -> Any:
        self.calls.append(("stop_in_background", (grace,)))
        if then:
            then()
        return None


class FakeTray:
    def __init__(self) -> None:
        from traywire.desktop.tray import Snapshot, freeze

        self.snapshot = Snapshot(running=True, status=freeze({"active": {"vllm": "vllm_a"}}))
        self.notes: list[str] = []
        self.copied: list[str] = []
        self.stopped = False

    def call_on_main(self, fn: Callable[[], object]) -> None:
        fn()

    def notify(self, text: str) -> None:
        self.notes.append(text)

    def copy(self, text: str) -> bool:
        self.copied.append(text)
        return True

    def stop(self) -> None:
        self.stopped = True


def controller() -> tuple[Controller, FakeProxy, FakeTray]:
    proxy, tray = FakeProxy(), FakeTray()
    c = Controller(proxy, None, 3.0)  # type: ignore[arg-type]
    c.tray = tray  # type: ignore[assignment]
    return c, proxy, tray


def test_controller_routes_commands_to_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    c, proxy, tray = controller()
    opened: list[str] = []
    monkeypatch.setattr(desktop, "open_path", lambda target, what, report: opened.append(target))
    c.handle(Command("set_preference", ("local_only",)))
    c.handle(Command("set_active", ("vllm", "vllm_b")))
    c.handle(Command("set_active", ("vllm", "vllm_a")))  # already active: nothing to do
    c.handle(Command("copy", ("http://127.0.0.1:8484/v1",)))
    c.handle(Command("open_dashboard"))
    c.handle(Command("reload"))
    c.handle(Command("nonsense"))
    assert proxy.calls == [
        ("set_preference", ("local_only",)),
        ("set_active", ("vllm", "vllm_b")),
        ("reload_config", ()),
    ]
    assert tray.copied == ["http://127.0.0.1:8484/v1"]
    assert opened == ["http://127.0.0.1:8484/ui"]
    assert tray.notes == ["config reloaded: 1 backends"]
    assert proxy.notes == [""]


def test_controller_reports_failures_as_notifications() -> None:
    c, proxy, tray = controller()
    proxy.fail = ValueError("bad member")
    c.handle(Command("set_active", ("vllm", "x")))
    c.handle(Command("reload"))
    assert tray.notes == [
        "Could not switch vllm: bad member",
        "Config not reloaded: bad member",
    ]
    assert proxy.notes == ["config not reloaded"]


def test_controller_quit_stops_the_proxy_then_the_tray_once() -> None:
    c, proxy, tray = controller()
    c.handle(Command("quit"))
    c.handle(Command("quit"))
    assert proxy.calls == [("stop_in_background", (3.0,))]
    assert tray.stopped and c.quitting


def test_controller_open_config_creates_the_user_file(
    monkeypatch: pytest.MonkeyPatch, _isolated_dirs: Path
) -> None:
    c, _proxy, _tray = controller()
    opened: list[str] = []
    monkeypatch.setattr(desktop, "open_path", lambda target, what, report: opened.append(target))
    c.handle(Command("open_config"))
    path = Path(opened[0])
    assert path.name == "traywire.yaml" and path.exists()
    assert "routes:" in path.read_text()


def test_controller_toggles_start_at_login(_isolated_dirs: Path) -> None:
    from traywire.desktop import autostart

    c, _proxy, tray = controller()
    kicked: list[bool] = []
    c.kick = lambda: kicked.append(True)
    c.handle(Command("toggle_autostart"))
    assert autostart.is_enabled()
    c.handle(Command("toggle_autostart"))
    assert not autostart.is_enabled()
    assert tray.notes[0].startswith("traywire will start at login (")
    assert tray.notes[1] == "traywire will no longer start at login"
    assert kicked == [True, True]


def test_controller_set_key_opens_the_dashboard_key_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, _proxy, tray = controller()
    opened: list[str] = []
    monkeypatch.setattr(desktop, "open_path", lambda target, what, report: opened.append(target))
    c.handle(Command("set_key", ("ollama_cloud",)))
    assert opened == ["http://127.0.0.1:8484/ui#keys"]
    assert tray.notes == []


# --------------------------------------------------------------------------- no display


@pytest.fixture
def fake() -> Any:
    with FakeBackend("openai", name="a", models=["ma"]) as f:
        yield f


def test_no_tray_serves_and_says_so_once(tmp_path: Path, fake: FakeBackend) -> None:
    cfg = write_config(tmp_path, {"a": fake})
    app = App(["--no-tray", "--config", str(cfg), "--port", str(free_port())])
    try:
        app.wait_listening()
        assert app.get("/status")["backends"]["a"]["kind"] == "openai"
        app.wait_for("--no-tray")
    finally:
        rc, out, err = app.stop(signal.SIGTERM)
    assert rc == 0, err
    assert out.startswith(f"traywire {app.url} — OpenAI: {app.url}/v1")
    assert err.count(f"traywire: --no-tray: serving at {app.url} without a tray icon") == 1
    assert "no tray icon" not in err
    assert "stopping (finishing in-flight requests)" in err


def test_app_command_takes_the_same_options(tmp_path: Path, fake: FakeBackend) -> None:
    cfg = write_config(tmp_path, {"a": fake})
    app = App(["app", "--no-tray", "--config", str(cfg), "--port", str(free_port())])
    try:
        app.wait_listening()
    finally:
        assert app.stop(signal.SIGINT)[0] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY is an X11 thing")
def test_without_a_display_it_serves_and_says_so_once(tmp_path: Path, fake: FakeBackend) -> None:
    cfg = write_config(tmp_path, {"a": fake})
    app = App(
        ["--config", str(cfg), "--port", str(free_port())],
        env={"DISPLAY": None, "WAYLAND_DISPLAY": None},
    )
    try:
        app.wait_listening()
        app.wait_for("no tray icon")
        # it keeps serving requests
        body = app.post(
            "/v1/chat/completions",
            {"model": "m_a", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert "Hello from a" in body["choices"][0]["message"]["content"]
        time.sleep(1.5)  # several status polls later: still one message
    finally:
        rc, _out, err = app.stop(signal.SIGINT)
    assert rc == 0, err
    assert err.count("no tray icon") == 1
    assert (
        "traywire: no tray icon: no graphical session (DISPLAY and WAYLAND_DISPLAY are not "
        "set)." in err
    )
    assert f"Serving at {app.url} until Ctrl-C" in err
    assert "Traceback" not in err


def test_preference_survives_a_restart_of_the_app(tmp_path: Path, fake: FakeBackend) -> None:
    cfg = write_config(tmp_path, {"a": fake})
    port = free_port()
    app = App(["--no-tray", "--config", str(cfg), "--port", str(port)])
    try:
        app.wait_listening()
        app.post("/admin/preference", {"preference": "prefer_local"})
    finally:
        assert app.stop()[0] == 0
    again = App(["--no-tray", "--config", str(cfg), "--port", str(port)])
    try:
        again.wait_listening()
        status = again.get("/status")
        assert (status["preference"], status["preference_source"]) == ("prefer_local", "runtime")
    finally:
        assert again.stop()[0] == 0


# --------------------------------------------------------------------------- a real tray


class Driven:
    """The app under tests/tray_driver.py: ask what the tray shows, click items."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._seen = 0

    def ask(self, line: str, timeout: float = 15) -> Any:
        self.app.send(line)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answers = [x for x in self.app.out if x.startswith("DRIVER ")]
            if len(answers) > self._seen:
                self._seen += 1
                return json.loads(answers[self._seen - 1][len("DRIVER ") :])
            if self.app.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no answer to {line!r}:\n{self.app.stdout}\n{self.app.stderr}")

    def state(self) -> Any:
        return self.ask("state")

    def wait_state(self, predicate: Callable[[Any], bool], timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.state()
            if predicate(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"tray never got there; last: {last}\n{self.app.stderr}")


# Tile colours of traywire.desktop.icon (R, G, B).
COLOURS = {
    "healthy": (28, 142, 66),
    "degraded": (240, 168, 24),
    "failing": (232, 56, 56),
}


def colour_pixels(png: Path, rgb: tuple[int, int, int]) -> int:
    from PIL import Image

    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return sum(n for n, c in colours if all(abs(a - b) <= 12 for a, b in zip(c, rgb, strict=True)))


def shows(x: Any, name: str, state: str) -> bool:
    """The screen shows the icon in ``state``'s colour (within a few seconds)."""
    path = ARTIFACTS / name
    return wait(lambda: colour_pixels(x.screenshot(path), COLOURS[state]) > 50, 10, step=0.3)


@pytest.mark.parametrize("backend", ["appindicator", "gtk"])
def test_a_real_tray_under_xvfb(tmp_path: Path, backend: str) -> None:
    need_tools("import")
    need_gi()
    with (
        xsession(tmp_path / "x") as x,
        FakeBackend("openai", name="a", models=["ma"]) as a,
        FakeBackend("openai", name="b", models=["mb"]) as b,
    ):
        cfg = write_config(tmp_path, {"a": a, "b": b})
        app = App(
            ["--config", str(cfg), "--port", str(free_port()), "--grace", "3"],
            env={**x.env, "PYSTRAY_BACKEND": backend},
            script=DRIVER,
            stdin=True,
        )
        drv = Driven(app)
        try:
            app.wait_listening()
            s = drv.wait_state(lambda s: s["state"] == "healthy")
            assert s["backend"] == backend and s["visible"]
            assert s["title"] == "traywire — 2/2 backends up · auto"
            assert shows(x, f"tray_xvfb_{backend}_healthy.png", "healthy")

            # a backend goes down: the icon and the tooltip say so, a notification too
            a.refuse()
            s = drv.wait_state(lambda s: s["state"] == "degraded")
            assert s["title"] == "traywire — 1/2 backends up · auto"
            backends = next(i for i in s["menu"] if i["text"] == "Backends")["submenu"]
            assert backends[0]["text"].startswith("a — down")
            assert shows(x, f"tray_xvfb_{backend}_degraded.png", "degraded")
            assert wait(lambda: "a is down" in x.notifications(), 30), x.notifications()

            # the Routing menu's "Local only", clicked through the toolkit
            assert drv.ask("click Routing/Local only") == {"ok": True, "via": "gtk"}
            assert wait(lambda: app.get("/status")["preference"] == "local_only", 30)
            # the icon keeps the health (a is still down: amber) and gets the house badge
            s = drv.wait_state(lambda s: s["badge"] == "local")
            assert s["state"] == "degraded"
            routing = next(i for i in s["menu"] if i["text"] == "Routing")["submenu"]
            assert [i["text"] for i in routing if i["checked"]] == ["Local only"]
            assert shows(x, f"tray_xvfb_{backend}_degraded_local.png", "degraded")

            # Quit: the proxy stops, then the icon; exit 0, no GLib error
            assert drv.ask("click Quit traywire")["ok"] is True
            rc = app.wait_exit(30)
        finally:
            rc, _out, err = app.stop()
        assert rc == 0, err
        assert "stopping (finishing in-flight requests)" in err
        for bad in ("Traceback", "GLib.GError", "GLib-CRITICAL", "GLib-GIO", "no tray icon"):
            assert bad not in err, err


def test_under_xvfb_without_a_tray_host_it_says_so_and_serves(tmp_path: Path) -> None:
    need_gi()
    with (
        xsession(tmp_path / "x", tray=False) as x,
        FakeBackend("openai", name="a", models=["ma"]) as a,
    ):
        cfg = write_config(tmp_path, {"a": a})
        app = App(
            ["--config", str(cfg), "--port", str(free_port())],
            env={**x.env, "PYSTRAY_BACKEND": "appindicator"},
        )
        try:
            app.wait_listening()
            app.wait_for("no tray icon")
            assert app.get("/health")["status"] == "ok"
        finally:
            rc, _out, err = app.stop(signal.SIGTERM)
    assert rc == 0, err
    assert err.count("no tray icon") == 1
    assert "no tray host (no StatusNotifier host, no X11 system tray)" in err


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of each child process of ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(stat.parent.name), fields[0]))
    return out


def test_under_xvfb_without_notifications_the_tray_runs_and_failures_show_in_the_menu(
    tmp_path: Path,
) -> None:
    """No notification service: one notice at start, the tray shows anyway, and a
    menu action that fails (a browser that cannot start) says so in a log line
    and the menu's first line; the failed opener is reaped, not left a zombie."""
    need_gi()
    with (
        xsession(tmp_path / "x", notifications=False) as x,
        FakeBackend("openai", name="a", models=["ma"]) as a,
    ):
        cfg = write_config(tmp_path, {"a": a})
        app = App(
            ["--config", str(cfg), "--port", str(free_port())],
            env={**x.env, "BROWSER": "false"},
            script=DRIVER,
            stdin=True,
        )
        drv = Driven(app)
        try:
            app.wait_listening()
            s = drv.wait_state(lambda s: s["visible"] and s["state"] == "healthy")
            assert s["backend"] == "gtk"  # picked: an X11 tray, no StatusNotifier host
            assert drv.ask("click Open dashboard")["ok"] is True
            want = f"Could not open the dashboard: false exited with 1. Open {app.url}/ui yourself."
            drv.wait_state(lambda s: want in s["menu"][0]["text"] or want in s["title"])
            app.wait_for(want)
            assert wait(lambda: not [c for c in children(app.proc.pid) if c[1] == "Z"], 10)
        finally:
            rc, _out, err = app.stop(signal.SIGTERM)
    assert rc == 0, err
    assert err.count("no desktop notifications") == 1
    assert "traywire: no desktop notifications: no notification service" in err
    assert "no tray icon" not in err
    assert err.count(want) == 1
    assert "Traceback" not in err and "GLib.GError" not in err
    # a plain X11 tray, no StatusNotifier host: traywire picks pystray's GTK
    # backend, and libayatana-appindicator's Gdk-CRITICAL never shows
    assert "Gdk-CRITICAL" not in err


def test_under_xvfb_a_failing_editor_is_a_notification(tmp_path: Path) -> None:
    """Open config file with an opener that fails: a desktop notification says so."""
    need_gi()
    with (
        xsession(tmp_path / "x") as x,
        FakeBackend("openai", name="a", models=["ma"]) as a,
    ):
        cfg = write_config(tmp_path, {"a": a})
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        opener = bin_dir / "xdg-open"
        opener.write_text("#!/bin/sh\nexit 3\n")
        opener.chmod(0o755)
        app = App(
            ["--config", str(cfg), "--port", str(free_port())],
            env={**x.env, "PATH": f"{bin_dir}:{x.env.get('PATH', '')}"},
            script=DRIVER,
            stdin=True,
        )
        drv = Driven(app)
        try:
            app.wait_listening()
            drv.wait_state(lambda s: s["visible"])
            assert drv.ask("click Open config file")["ok"] is True
            assert wait(
                lambda: (
                    "Could not open the config file: xdg-open exited with 3: no "
                    "application found for it" in x.notifications()
                ),
                30,
            ), x.notifications()
            assert wait(lambda: not [c for c in children(app.proc.pid) if c[1] == "Z"], 10)
        finally:
            rc, _out, err = app.stop(signal.SIGTERM)
    assert rc == 0, err
    assert "no desktop notifications" not in err
    assert "Gdk-CRITICAL" not in err


def test_under_xvfb_sigterm_quits_the_tray_cleanly(tmp_path: Path) -> None:
    need_gi()
    with (
        xsession(tmp_path / "x") as x,
        FakeBackend("openai", name="a", models=["ma"]) as a,
    ):
        cfg = write_config(tmp_path, {"a": a})
        app = App(
            ["--config", str(cfg), "--port", str(free_port())],
            env={**x.env, "PYSTRAY_BACKEND": "appindicator"},
            script=DRIVER,
            stdin=True,
        )
        drv = Driven(app)
        try:
            app.wait_listening()
            drv.wait_state(lambda s: s["visible"])
            a.slow_first_byte(1.0, paths=["/v1/chat/completions"])
            import threading

            reply: dict[str, Any] = {}

            def call() -> None:
                try:
                    reply["body"] = app.post(
                        "/v1/chat/completions",
                        {"model": "m_a", "messages": [{"role": "user", "content": "hi"}]},
                        timeout=20,
                    )
                except Exception as exc:
                    reply["error"] = exc

            t = threading.Thread(target=call)
            t.start()
            # (probes count as requests too: wait for the chat request itself)
            assert wait(lambda: a.count("/v1/chat/completions") == 1, 30)
            for sig in (signal.SIGINT, signal.SIGTERM):
                app.proc.send_signal(sig)  # both: the second one must not hurt
            rc = app.wait_exit(30)
            t.join(20)
        finally:
            rc, _out, err = app.stop()
        assert rc == 0, err
        assert "body" in reply, (reply, err)
        assert "Hello from a" in reply["body"]["choices"][0]["message"]["content"]
        assert "Traceback" not in err
