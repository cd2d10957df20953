"""A throw-away desktop for tray tests: Xvfb, a private D-Bus session bus, a
system tray (trayer) and a notification daemon (dunst), each optional.

Every missing tool makes the test skip with the Debian package to install
(CI turns skips into failures). Processes are stopped by their own pid.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

# tool -> Debian package
TOOLS = {
    "Xvfb": "xvfb",
    "dbus-daemon": "dbus",
    "dbus-send": "dbus",
    "trayer": "trayer",
    "dunst": "dunst",
    "dunstctl": "dunst",
    "import": "imagemagick",
}

GI_CHECK = (
    "import gi; gi.require_version('Gtk', '3.0'); "
    "gi.require_version('AyatanaAppIndicator3', '0.1'); "
    "from gi.repository import Gtk, AyatanaAppIndicator3"
)

# A session bus with nothing activatable: only what the test starts is there.
DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def need_tools(*tools: str) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the X11 tray tests run on Linux")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found: apt-get install {TOOLS[tool]}")


def need_gi() -> None:
    r = subprocess.run([sys.executable, "-c", GI_CHECK], capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"PyGObject with GTK 3 and AyatanaAppIndicator3 is not importable in "
            f"{sys.executable} ({last}): apt-get install gir1.2-gtk-3.0 "
            "gir1.2-ayatanaappindicator3-0.1 libgirepository1.0-dev libcairo2-dev pkg-config "
            "gcc, then pip install 'PyGObject<3.51'"
        )


class XSession:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list[IO[bytes]] = []
        self.env: dict[str, str] = {}
        self.display = ""

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "wb")  # noqa: SIM115 (closed in stop)
        self.files.append(out)
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        self.procs.append(p)
        return p

    def start_x(self) -> None:
        # A display number of its own, drawn at random: other test runs on this
        # machine (other checkouts, other /tmp) have Xvfbs too, and X clients
        # try the abstract socket "@/tmp/.X11-unix/X<n>" first, which every
        # /tmp shares; a low number could reach another run's server.
        number = ""
        for _ in range(8):
            r, w = os.pipe()
            xlog = open(self.tmp / "xvfb.log", "ab")  # noqa: SIM115 (closed in stop)
            self.files.append(xlog)
            candidate = str(random.randrange(1000, 30000))
            argv = ["Xvfb", f":{candidate}", "-displayfd", str(w), "-screen", "0", "640x240x24"]
            p = subprocess.Popen(
                [*argv, "-nolisten", "tcp"],
                pass_fds=(w,),
                stdout=subprocess.DEVNULL,
                stderr=xlog,
            )
            os.close(w)
            with os.fdopen(r) as f:
                number = f.readline().strip()
            if number:
                self.procs.append(p)
                break
            p.wait(10)  # that number was taken: try another
        if not number:
            raise RuntimeError(f"Xvfb did not start: {self.log('xvfb.log')[-2000:]}")
        self.display = f":{number}"
        drop = ("WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XDG_CURRENT_DESKTOP")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(DISPLAY=self.display, NO_AT_BRIDGE="1", GDK_BACKEND="x11")
        self.env = env

    def start_bus(self) -> None:
        conf = self.tmp / "bus.conf"
        conf.write_text(DBUS_CONFIG)
        p = subprocess.Popen(
            ["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
        )
        self.procs.append(p)
        assert p.stdout is not None
        address = p.stdout.readline().decode().strip()
        if not address:
            raise RuntimeError("dbus-daemon did not start")
        self.env["DBUS_SESSION_BUS_ADDRESS"] = address

    def has_name(self, name: str) -> bool:
        r = subprocess.run(
            [
                "dbus-send",
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                f"string:{name}",
            ],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=10,
        )
        return "boolean true" in r.stdout

    def start_tray(self) -> None:
        argv = ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel"]
        argv += ["--width", "160", "--heighttype", "pixel", "--height", "40"]
        argv += ["--transparent", "false"]
        # On a loaded machine trayer now and then fails to open a display that
        # is up ("cannot open display") and exits: start it again.
        for _ in range(3):
            trayer = self._spawn(argv, "trayer.log")
            wait(lambda t=trayer: self.has_xembed_tray() or t.poll() is not None, 30)
            if self.has_xembed_tray():
                return
            if trayer.poll() is None:
                break
        raise RuntimeError(f"trayer did not take the tray: {self.log('trayer.log')}")

    def has_xembed_tray(self) -> bool:
        from Xlib import X, display  # python-xlib: a pystray dependency on Linux

        d = display.Display(self.display)
        try:
            atom = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
            owner = d.get_selection_owner(atom)
            return owner not in (X.NONE, None) and getattr(owner, "id", 0) != 0
        finally:
            d.close()

    def start_notifications(self) -> None:
        self._spawn(["dunst"], "dunst.log")
        if not wait(lambda: self.has_name("org.freedesktop.Notifications"), 30):
            raise RuntimeError(f"dunst did not start: {self.log('dunst.log')}")

    def notifications(self) -> str:
        """What dunst was asked to show (closing them moves them to its history)."""
        subprocess.run(["dunstctl", "close-all"], env=self.env, timeout=10, check=False)
        r = subprocess.run(
            ["dunstctl", "history"], capture_output=True, text=True, env=self.env, timeout=10
        )
        return r.stdout

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["import", "-display", self.display, "-window", "root", str(path)],
            check=True,
            timeout=30,
            env=self.env,
        )
        return path

    def log(self, name: str) -> str:
        try:
            return (self.tmp / name).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            if p.stdout is not None:
                p.stdout.close()
        for f in self.files:
            f.close()


def wait(predicate: object, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


@contextmanager
def xsession(tmp: Path, *, tray: bool = True, notifications: bool = True) -> Iterator[XSession]:
    need_tools("Xvfb", "dbus-daemon", "dbus-send")
    if tray:
        need_tools("trayer")
    if notifications:
        need_tools("dunst", "dunstctl")
    s = XSession(tmp)
    try:
        s.start_x()
        s.start_bus()
        if tray:
            s.start_tray()
        if notifications:
            s.start_notifications()
        yield s
    finally:
        s.stop()
