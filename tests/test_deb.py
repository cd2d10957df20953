"""The .deb end to end, as root on this machine: build it (scripts/build-deb.sh,
cached under build/deb-cache/ by a hash of what goes into it), install it
with `dpkg -i` in a network namespace with no network, run `traywire
--version`, `check`, `keys` and `serve` (against a fake backend) as a user
whose home is a temporary directory, upgrade it with a second build of a
higher version, remove and purge it: the user's config, state, request log and
keys stay byte for byte, and nothing of the package stays in /opt. Another test
shows the installed app's tray icon under Xvfb.

Marked `deb` (needs root and dpkg): deselect with `pytest -m 'not deb'`. Each
test purges the package again, also when it fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend
from xsession import GI_CHECK, need_tools, wait, xsession

pytestmark = pytest.mark.deb

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "deb-cache"
ARTIFACTS = ROOT / "tests" / "artifacts"
PKG = "traywire"
OPT = Path("/opt/traywire")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEY_NAME = "tw_deb_test_key"
KEY_VALUE = "sk-deb-test-4kQ9zR2mW7"


# --------------------------------------------------------------------------- helpers


def run(
    args: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [str(a) for a in args],
        env=dict(env) if env is not None else None,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and r.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {r.returncode}\n"
            f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        )
    return r


def package_state() -> tuple[str, str] | None:
    """(dpkg status, version) of the traywire package, or None if dpkg has no trace of it."""
    r = run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", PKG], check=False)
    if r.returncode != 0 or not r.stdout.strip() or r.stdout.startswith("not-installed"):
        return None
    status, _, version = r.stdout.strip().partition(" ")
    return status, version


def purge() -> None:
    if package_state() is not None:
        run(["dpkg", "--purge", PKG], check=False, timeout=120)


def requirements() -> None:
    if not sys.platform.startswith("linux") or shutil.which("dpkg-deb") is None:
        pytest.skip("the .deb tests need Debian or Ubuntu (dpkg-deb)")
    if os.geteuid() != 0:
        pytest.skip("the .deb tests install a package: run them as root (CI does)")
    if run(["/usr/bin/python3", "-c", "import ensurepip, venv"], check=False).returncode:
        pytest.skip("the .deb is built with the system Python's venv: apt-get install python3-venv")
    state = package_state()
    if state is not None and not (CACHE / "installed-by-test").exists():
        pytest.skip(
            f"traywire {state[1]} is installed on this machine ({state[0]}); the .deb "
            "tests would replace and remove it: dpkg --purge traywire first"
        )


_NO_NETWORK: list[str] | None = None


def no_network() -> list[str]:
    """A command prefix that runs its command without any network (a new, empty
    network namespace), if this machine allows one; else nothing."""
    global _NO_NETWORK
    if _NO_NETWORK is None:
        ok = run(["unshare", "--net", "true"], check=False).returncode == 0
        _NO_NETWORK = ["unshare", "--net"] if ok else []
    return _NO_NETWORK


def install(deb: Path) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "installed-by-test").touch()  # a crashed run's leftover is ours to purge
    run([*no_network(), "dpkg", "--install", str(deb)], timeout=300)


@pytest.fixture
def clean_package() -> Iterator[None]:
    """Purges the package after the test, whatever happened."""
    requirements()
    purge()
    try:
        yield
    finally:
        purge()
        (CACHE / "installed-by-test").unlink(missing_ok=True)


# --------------------------------------------------------------------------- the build


def source_key() -> str:
    """A hash of everything the .deb is made from, and of the Python it runs on."""
    h = hashlib.sha256()
    files = [ROOT / p for p in ("pyproject.toml", "README.md", "docs/INSTALL.md")]
    files.append(ROOT / "scripts" / "build-deb.sh")
    for tree in ("src", "packaging/linux", "packaging/systemd", "assets/png"):
        files += [
            p
            for p in (ROOT / tree).rglob("*")
            if p.is_file()
            and "__pycache__" not in p.parts
            and not any(part.endswith(".egg-info") for part in p.parts)
            and p.suffix != ".pyc"
        ]
    for path in sorted(files):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0")
        h.update(b"x" if os.access(path, os.X_OK) else b"-")
        h.update(path.read_bytes() + b"\0")
    h.update(run(["/usr/bin/python3", "-VV"]).stdout.encode())
    h.update(run(["dpkg", "--print-architecture"]).stdout.encode())
    return h.hexdigest()[:16]


def repack(deb: Path, out: Path, revision: str) -> Path:
    """The same package with Debian revision ``revision``: a newer version to upgrade to."""
    work = out.parent / "repack"
    shutil.rmtree(work, ignore_errors=True)
    run(["dpkg-deb", "--raw-extract", deb, work])
    control = work / "DEBIAN" / "control"
    text, n = re.subn(r"^(Version: .*)-1$", rf"\1-{revision}", control.read_text(), flags=re.M)
    assert n == 1, text
    control.write_text(text)
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", work, out])
    shutil.rmtree(work)
    return out


@pytest.fixture(scope="module")
def debs() -> tuple[Path, Path]:
    """(the .deb, the same at a higher version), built once per source hash."""
    requirements()
    key = source_key()
    here = CACHE / key
    first, second = here / "v1.deb", here / "v2.deb"
    if not (first.is_file() and second.is_file()):
        CACHE.mkdir(parents=True, exist_ok=True)
        for old in CACHE.iterdir():  # one build is kept
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        building = CACHE / f"{key}.tmp"
        started = time.monotonic()
        r = run(
            ["bash", ROOT / "scripts" / "build-deb.sh", "--fast", "--out", building], timeout=900
        )
        built = Path(r.stdout.strip().splitlines()[-1])
        print(f"built {built.name} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        assert built.name == f"traywire_{VERSION}-1_{arch()}.deb", built
        built.rename(building / "v1.deb")
        repack(building / "v1.deb", building / "v2.deb", "2")
        building.rename(here)
    return first, second


def arch() -> str:
    return run(["dpkg", "--print-architecture"]).stdout.strip()


# --------------------------------------------------------------------------- a user


class Home:
    """A user's home in a temporary directory, and the environment to run as them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / ".config"
        self.state = root / ".local" / "state"
        self.data = root / ".local" / "share"
        self.cache = root / ".cache"
        self.runtime = root.parent / f"{root.name}-run"
        for d in (self.config, self.state, self.data, self.cache):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(mode=0o700, exist_ok=True)

    @property
    def config_file(self) -> Path:
        return self.config / "traywire" / "traywire.yaml"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": SYSTEM_PATH,
            "HOME": str(self.root),
            "XDG_CONFIG_HOME": str(self.config),
            "XDG_STATE_HOME": str(self.state),
            "XDG_DATA_HOME": str(self.data),
            "XDG_CACHE_HOME": str(self.cache),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "LANG": "C.UTF-8",
            # no keyring unless a test starts a throw-away one
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        env.update(extra)
        return env

    def snapshot(self) -> dict[str, str]:
        """Every file in the home: relative path -> sha256."""
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.is_symlink()
        }

    def settled_snapshot(self, timeout: float = 10) -> dict[str, str]:
        """A snapshot once nothing changes any more (a keyring daemon may still be
        writing as its session ends)."""
        last = self.snapshot()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.snapshot()
            if now == last:
                return now
            last = now
        return last

    def traywire(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(["traywire", *args], env=self.env(), stdin=stdin, timeout=120)


def write_user_config(home: Home, fake: FakeBackend, *, with_key: bool) -> Path:
    """The user's own config file (where `traywire init` would put it), starting
    from nothing (`extends: none`): the fake as a local backend, and optionally a
    cloud backend whose key is in the keyring."""
    lines = [
        "extends: none",
        "health: {probe_interval: 60, cooldown: 5}",
        "backends:",
        f"  box: {{kind: openai, url: '{fake.url}/v1', location: local}}",
    ]
    if with_key:
        lines.append(
            "  cloud: {kind: openai, url: 'http://127.0.0.1:9/v1', location: cloud, "
            f"key: 'keyring:{KEY_NAME}'}}"
        )
    lines += [
        "models:",
        f"  small: {{backend: box, upstream: {fake.models[0]}, params_b: 1, tier: local,"
        " capabilities: [chat], context: 8192}",
        "routes:",
        "  chat: {strategy: direct, candidates: [small]}",
    ]
    path = home.config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


# The daemon creates (or unlocks) the login keyring in $XDG_DATA_HOME/keyrings with
# the password on its stdin, serves the Secret Service on the bus dbus-run-session
# made, and ends with that bus.
KEYRING_SESSION = (
    'printf %s "$TW_KEYRING_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets'
    ' >/dev/null && exec "$@"'
)


def in_keyring_session(
    home: Home, args: Sequence[str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    for tool, package in (("dbus-run-session", "dbus"), ("gnome-keyring-daemon", "gnome-keyring")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found: apt-get install {package}")
    env = home.env(TW_KEYRING_PASSWORD="deb-test-keyring")
    del env["PYTHON_KEYRING_BACKEND"]
    return run(
        ["dbus-run-session", "--", "sh", "-c", KEYRING_SESSION, "sh", *args],
        env=env,
        stdin=stdin,
        timeout=120,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """An installed-traywire process with its output in files."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = logs / "stdout.txt", logs / "stderr.txt"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 (closed in stop)
        self._err = open(self.err_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            list(args),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
        )

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_listening(self, port: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.stderr}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            time.sleep(0.1)
        raise AssertionError(f"not listening on {port} after {timeout} s: {self.stderr}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
        self._err.close()
        return self.proc.returncode


def chat(port: int, model: str) -> dict[str, Any]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def serve_once(home: Home, fake: FakeBackend, logs: Path) -> None:
    """`traywire serve` (the user's config) answers a chat request from the fake."""
    port = free_port()
    before = fake.count("/v1/chat/completions")
    p = Process(["traywire", "serve", "--port", str(port), "--grace", "3"], home.env(), logs)
    try:
        p.wait_listening(port)
        reply = chat(port, "chat")
        assert "Hello from deb-fake" in reply["choices"][0]["message"]["content"], reply
        assert fake.count("/v1/chat/completions") == before + 1
    finally:
        rc = p.stop()
    assert rc == 0, p.stderr
    assert "stopping (finishing in-flight requests)" in p.stderr
    assert "Traceback" not in p.stderr, p.stderr


def files_under(root: Path) -> set[str]:
    """Every path under ``root`` (symlinks listed, not followed)."""
    found: set[str] = set()
    for top, dirs, files in os.walk(root):
        found.add(top)
        found.update(os.path.join(top, n) for n in (*dirs, *files))
    return found


def package_files() -> set[str]:
    return set(run(["dpkg-query", "-L", PKG]).stdout.split("\n")) - {""}


# --------------------------------------------------------------------------- tests


def test_package_contents(debs: tuple[Path, Path]) -> None:
    deb, _ = debs
    fields = dict(
        re.findall(r"^(\S+): (.*)$", run(["dpkg-deb", "--field", deb]).stdout, flags=re.M)
    )
    pyver = run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    assert fields["Package"] == PKG
    assert fields["Version"] == f"{VERSION}-1"
    assert fields["Architecture"] == arch()
    assert f"python{pyver.stdout.strip()}" in fields["Depends"].split(", ")
    assert "python3-gi" in fields["Recommends"]

    listing = run(["dpkg-deb", "--contents", deb]).stdout.splitlines()
    paths = {line.split(None, 5)[5].split(" -> ")[0].removeprefix(".") for line in listing}
    for required in (
        "/usr/bin/traywire",
        "/usr/share/applications/traywire.desktop",
        "/usr/share/icons/hicolor/48x48/apps/traywire.png",
        "/usr/share/icons/hicolor/512x512/apps/traywire.png",
        "/usr/lib/systemd/user/traywire.service",
        "/usr/lib/systemd/system/traywire.service",
        "/usr/share/doc/traywire/copyright",
        "/opt/traywire/venv/bin/python3",
        "/opt/traywire/venv/pyvenv.cfg",
    ):
        assert required in paths, required
    site = f"/opt/traywire/venv/lib/python{pyver.stdout.strip()}/site-packages"
    assert f"{site}/traywire/cli.py" in paths
    assert (
        f"{site}/traywire/__pycache__/cli.cpython-{pyver.stdout.strip().replace('.', '')}.pyc"
        in paths
    )
    # Only the package's own places: never /etc (no conffiles), /var or a home.
    own = (
        "/opt/traywire/",
        "/usr/bin/traywire",
        "/usr/share/applications/traywire.desktop",
        "/usr/share/icons/hicolor/",
        "/usr/share/doc/traywire/",
        "/usr/lib/systemd/user/traywire.service",
        "/usr/lib/systemd/system/traywire.service",
    )
    for p in paths:
        # a path of the package's, or a directory on the way to one
        assert any(p.startswith(o) or (p.endswith("/") and o.startswith(p)) for o in own), p
        if p.startswith("/usr/share/icons/") and not p.endswith("/"):
            assert p.endswith("/apps/traywire.png"), p
    control = run(["dpkg-deb", "--info", deb]).stdout
    assert "conffiles" not in control
    for script in ("postinst", "prerm", "postrm"):
        assert script in control
    # no pip in the installed environment: nothing can be installed into /opt by hand
    assert not any("/site-packages/pip/" in p for p in paths)


def test_install_run_upgrade_remove_purge(
    debs: tuple[Path, Path], clean_package: None, tmp_path: Path
) -> None:
    v1, v2 = debs
    home = Home(tmp_path / "home")
    logs = ARTIFACTS / "deb"

    with FakeBackend("openai", name="deb-fake", models=["deb-model"]) as fake:
        write_user_config(home, fake, with_key=True)

        # ---- install (no network), and the package is what dpkg thinks it is
        install(v1)
        assert package_state() == ("installed", f"{VERSION}-1")
        assert run(["dpkg", "--verify", PKG]).stdout == ""
        assert shutil.which("traywire", path=SYSTEM_PATH) == "/usr/bin/traywire"
        r = home.traywire("--version")
        assert r.stdout.strip() == f"traywire {VERSION}"

        # the tray's toolkit: Debian's PyGObject, seen from the package's Python
        gi = run([OPT / "venv" / "bin" / "python3", "-I", "-c", GI_CHECK], check=False)
        assert gi.returncode == 0, (
            "the installed traywire cannot import PyGObject/GTK/AppIndicator "
            f"(apt-get install python3-gi gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1): "
            f"{gi.stderr}"
        )

        # the installed systemd units, as installed
        for unit, mode in (
            ("/usr/lib/systemd/user/traywire.service", "--user"),
            ("/usr/lib/systemd/system/traywire.service", ""),
        ):
            tool = shutil.which("systemd-analyze")
            if tool is None:
                pytest.skip("systemd-analyze not found: apt-get install systemd")
            r = run(
                [tool, *([mode] if mode else []), "verify", unit],
                env=home.env(SYSTEMD_LOG_COLOR="0"),
                check=False,
            )
            assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), (
                unit + "\n" + r.stdout + r.stderr
            )

        # ---- the user's first steps: check the config, store a key, serve
        r = home.traywire("check")
        assert "config OK: 2 backends, 1 models" in r.stdout, r.stdout
        assert str(home.config_file) in r.stdout
        r = in_keyring_session(home, ["traywire", "keys", "set", KEY_NAME], stdin=KEY_VALUE + "\n")
        assert f"stored key {KEY_NAME!r}" in r.stdout, r.stdout + r.stderr
        r = in_keyring_session(home, ["traywire", "keys", "list"])
        assert re.search(rf"keyring:{KEY_NAME}\s+set\s", r.stdout), r.stdout + r.stderr
        serve_once(home, fake, logs / "serve-v1")

        before = home.settled_snapshot()
        assert "/".join((".config", "traywire", "traywire.yaml")) in before
        assert any(p.startswith(".local/share/keyrings/") for p in before), before
        assert any(p.startswith(".local/share/traywire/") for p in before), before

        # Run as root, the way an autostart entry or the console script would
        # (without -B): the shipped byte code is used, nothing new appears in /opt.
        run([OPT / "venv" / "bin" / "python3", "-m", "traywire", "--version"])
        run([OPT / "venv" / "bin" / "traywire", "--version"])
        assert files_under(OPT) - package_files() == set()

        # ---- upgrade to a newer version: the user's files are untouched
        install(v2)
        assert package_state() == ("installed", f"{VERSION}-2")
        assert run(["dpkg", "--verify", PKG]).stdout == ""
        assert home.traywire("--version").stdout.strip() == f"traywire {VERSION}"
        assert home.snapshot() == before
        r = in_keyring_session(home, ["traywire", "keys", "list"])
        assert re.search(rf"keyring:{KEY_NAME}\s+set\s", r.stdout), r.stdout + r.stderr
        serve_once(home, fake, logs / "serve-v2")
        before = home.settled_snapshot()

        # ---- remove, then purge: the program goes, the user's files stay
        run(["dpkg", "--remove", PKG])
        assert package_state() in (None, ("config-files", f"{VERSION}-2"))
        assert not Path("/usr/bin/traywire").exists()
        assert not OPT.exists(), sorted(files_under(OPT))
        assert home.snapshot() == before

        run(["dpkg", "--purge", PKG], check=package_state() is not None)
        assert package_state() is None
        assert not OPT.exists(), sorted(files_under(OPT))
        for gone in (
            "/usr/lib/systemd/user/traywire.service",
            "/usr/lib/systemd/system/traywire.service",
            "/usr/share/applications/traywire.desktop",
            "/usr/share/doc/traywire",
        ):
            assert not Path(gone).exists(), gone
        assert not Path("/etc/traywire").exists()
        assert home.snapshot() == before


COLOURS = {"healthy": (28, 142, 66)}  # traywire.desktop.icon's tile colour


def colour_pixels(png: Path, rgb: tuple[int, int, int]) -> int:
    from PIL import Image

    with Image.open(png) as im:
        colours: list[tuple[int, tuple[int, int, int]]] = (
            im.convert("RGB").getcolors(maxcolors=1 << 24) or []  # type: ignore[assignment]
        )
    return sum(n for n, c in colours if all(abs(a - b) <= 12 for a, b in zip(c, rgb, strict=True)))


def test_installed_app_shows_its_tray_icon(
    debs: tuple[Path, Path], clean_package: None, tmp_path: Path
) -> None:
    """The desktop entry's command, under a throw-away X desktop with a tray."""
    need_tools("import")
    v1, _ = debs
    install(v1)
    home = Home(tmp_path / "home")
    gi = run([OPT / "venv" / "bin" / "python3", "-I", "-c", GI_CHECK], check=False)
    assert gi.returncode == 0, gi.stderr
    with (
        FakeBackend("openai", name="deb-fake", models=["deb-model"]) as fake,
        xsession(tmp_path / "x") as x,
    ):
        write_user_config(home, fake, with_key=False)
        env = {**x.env, **home.env()}
        env.pop("PYSTRAY_BACKEND", None)
        port = free_port()
        app = Process(
            ["traywire", "--port", str(port), "--grace", "3"], env, ARTIFACTS / "deb" / "tray"
        )
        shot = ARTIFACTS / "deb_tray_healthy.png"
        try:
            app.wait_listening(port)
            shown = wait(
                lambda: colour_pixels(x.screenshot(shot), COLOURS["healthy"]) > 50, 20, step=0.5
            )
            assert shown, f"no green tray icon on the screen (see {shot}): {app.stderr}"
            assert chat(port, "chat")["choices"][0]["message"]["content"].startswith(
                "Hello from deb-fake"
            )
        finally:
            rc = app.stop()
        assert rc == 0, app.stderr
        for bad in ("no tray icon", "Traceback", "GLib-CRITICAL"):
            assert bad not in app.stderr, app.stderr
