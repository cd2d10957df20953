"""The packaging recipes, checked without building them: the icons against the
drawing they come from, the desktop entry, the macOS plist, the PyInstaller
specs (run against a stand-in for PyInstaller's spec namespace), the Inno Setup
script, the GitHub workflow, the container recipe, the systemd units
(`systemd-analyze verify`) and the shell scripts (shellcheck).

The .deb itself is built, installed and removed by test_deb.py."""

from __future__ import annotations

import importlib.util
import os
import plistlib
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import yaml

from traywire import config
from traywire.desktop import autostart

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not found: apt-get install {package}")
    return path


def load_script(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- icons


@pytest.fixture(scope="module")
def make_icons() -> ModuleType:
    return load_script(ROOT / "scripts" / "make-icons.py", "make_icons")


def test_icons_are_what_the_script_draws(make_icons: ModuleType) -> None:
    problems = make_icons.check(ROOT / "assets")
    assert not problems, "\n".join([*problems, "run: .venv/bin/python scripts/make-icons.py"])


def test_icons_cover_every_os(make_icons: ModuleType) -> None:
    # Linux: the hicolor sizes the .deb installs; Windows: 16-256 incl. the
    # 256 px Explorer tile; macOS: up to 512@2x.
    for size in make_icons.LINUX_SIZES:
        assert (ROOT / "assets" / make_icons.png_name(size)).is_file()
    ico = make_icons.ico_images((ROOT / "assets" / "traywire.ico").read_bytes())
    assert {16, 24, 32, 48, 256} <= set(ico)
    icns = make_icons.icns_images((ROOT / "assets" / "traywire.icns").read_bytes())
    assert {32, 64, 128, 256, 512, 1024} <= set(icns)
    assert all(im.mode == "RGBA" and im.getextrema()[3][0] == 0 for im in ico.values())


def test_the_icon_check_notices_a_stale_file(make_icons: ModuleType, tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    shutil.copytree(ROOT / "assets", assets)
    from PIL import Image

    Image.new("RGBA", (48, 48), (255, 0, 255, 255)).save(assets / make_icons.png_name(48))
    (assets / "traywire.icns").unlink()
    problems = make_icons.check(assets)
    assert any("traywire-48.png" in p and "differs" in p for p in problems), problems
    assert any("traywire.icns: missing" in p for p in problems), problems
    assert len(problems) == 2


# --------------------------------------------------------------------------- Linux


def test_desktop_entry_is_valid() -> None:
    tool = need("desktop-file-validate", "desktop-file-utils")
    path = PACKAGING / "linux" / "traywire.desktop"
    r = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    entry = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    assert entry["Type"] == "Application"
    assert entry["Exec"] == "traywire"  # /usr/bin/traywire, on the PATH
    assert entry["Icon"] == "traywire"  # the hicolor icons the .deb installs
    assert entry["Terminal"] == "false"


def test_control_template_and_maintainer_scripts() -> None:
    control = (PACKAGING / "linux" / "control.in").read_text()
    for placeholder in ("@VERSION@", "@ARCH@", "@INSTALLED_SIZE@", "@PYTHON@"):
        assert placeholder in control
    assert re.search(r"^Depends: @PYTHON@", control, re.M)
    assert re.search(r"^Recommends: .*python3-gi", control, re.M)
    for name in ("postinst", "prerm", "postrm"):
        path = PACKAGING / "linux" / name
        assert os.access(path, os.X_OK), f"{path} is not executable"
        text = path.read_text()
        assert text.startswith("#!/bin/sh\n") and "set -e" in text
        code = "\n".join(line.split("#", 1)[0] for line in text.splitlines()[1:])
        # Users' files are never touched, and installing needs no network.
        for word in ("/home", "HOME", "~", ".config", ".local", "/root", "/etc"):
            assert word not in code, f"{name} mentions {word}"
        for word in ("pip", "curl", "wget", "apt-get", "http"):
            assert not re.search(rf"\b{word}\b", code), f"{name} runs {word}"
        r = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    tool = need("shellcheck", "shellcheck")
    scripts = [
        ROOT / "scripts" / "build-deb.sh",
        PACKAGING / "linux" / "traywire",
        PACKAGING / "linux" / "postinst",
        PACKAGING / "linux" / "prerm",
        PACKAGING / "linux" / "postrm",
        PACKAGING / "macos" / "make-dmg.sh",
    ]
    r = subprocess.run([tool, *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values, from a systemd unit file."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, value = line.split("=", 1)
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


UNITS = {
    "user": (PACKAGING / "systemd" / "user" / "traywire.service", "default.target"),
    "system": (PACKAGING / "systemd" / "system" / "traywire.service", "multi-user.target"),
}


@pytest.mark.parametrize("mode", sorted(UNITS))
def test_systemd_unit_runs_traywire_serve(mode: str) -> None:
    path, target = UNITS[mode]
    s = unit_settings(path)
    assert s["Service.ExecStart"] == ["/usr/bin/traywire serve"]
    assert s["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # systemctl reload
    assert s["Install.WantedBy"] == [target]
    assert s["Service.Restart"] == ["on-failure"]
    assert s["Service.Type"] == ["exec"]
    if mode == "system":
        assert s["Service.DynamicUser"] == ["yes"]
        env = " ".join(s["Service.Environment"])
        # platformdirs puts config, state and the request log where systemd made them
        for var in ("XDG_CONFIG_HOME=%E", "XDG_STATE_HOME=%S", "XDG_DATA_HOME=%S"):
            assert var in env
        assert s["Service.ConfigurationDirectory"] == ["traywire"]
        assert s["Service.StateDirectory"] == ["traywire"]


def verify_unit(unit: Path, mode: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze [--user] verify``. It needs no running systemd, but a user
    manager needs XDG_RUNTIME_DIR. Warnings do not change its exit code: callers
    check that it printed nothing."""
    tool = need("systemd-analyze", "systemd")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    args = [tool, *(["--user"] if mode == "user" else []), "verify", str(unit)]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("mode", sorted(UNITS))
def test_systemd_unit_passes_systemd_analyze_verify(mode: str, tmp_path: Path) -> None:
    # verify also checks that ExecStart's program exists: outside the installed
    # package, point it at this checkout's traywire (test_deb.py verifies the
    # installed units as they are).
    path, _target = UNITS[mode]
    here = Path(sys.executable).parent / "traywire"
    assert here.is_file(), here
    unit = tmp_path / "traywire.service"
    unit.write_text(path.read_text().replace("/usr/bin/traywire", str(here)))
    r = verify_unit(unit, mode, tmp_path)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_systemd_analyze_verify_does_report_mistakes(tmp_path: Path) -> None:
    """The check above would notice: a bad key is reported (on stderr, exit code 0)."""
    unit = tmp_path / "traywire.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nRestart=sometimes\nBogus=1\n")
    r = verify_unit(unit, "user", tmp_path)
    assert "Bogus" in r.stderr and "sometimes" in r.stderr, r.stdout + r.stderr


# --------------------------------------------------------------------------- macOS


def test_macos_plist_makes_a_menu_bar_app() -> None:
    with open(PACKAGING / "macos" / "Info.plist", "rb") as f:
        info = plistlib.load(f)
    assert info["LSUIElement"] is True  # menu-bar item, no Dock icon
    assert info["CFBundlePackageType"] == "APPL"
    assert info["CFBundleIdentifier"] == autostart.LAUNCH_AGENT_LABEL
    assert info["CFBundleName"] == "traywire"
    assert info["NSHighResolutionCapable"] is True
    # the version comes from pyproject.toml, through the spec
    assert "CFBundleShortVersionString" not in info and "CFBundleVersion" not in info


# --------------------------------------------------------------------------- PyInstaller specs

# Keyword arguments PyInstaller 6 accepts (its spec file documentation).
_KWARGS = {
    "Analysis": {
        "pathex", "binaries", "datas", "hiddenimports", "hookspath", "hooksconfig",
        "runtime_hooks", "excludes", "win_no_prefer_redirects", "win_private_assemblies",
        "noarchive", "module_collection_mode", "optimize",
    },
    "PYZ": {"name"},
    "EXE": {
        "name", "console", "debug", "bootloader_ignore_signals", "strip", "upx",
        "upx_exclude", "runtime_tmpdir", "disable_windowed_traceback", "argv_emulation",
        "target_arch", "codesign_identity", "entitlements_file", "icon", "version",
        "uac_admin", "uac_uiaccess", "manifest", "embed_manifest", "resources",
        "exclude_binaries", "contents_directory", "hide_console", "append_pkg",
    },
    "COLLECT": {"name", "strip", "upx", "upx_exclude"},
    "BUNDLE": {"name", "icon", "bundle_identifier", "version", "info_plist"},
}  # fmt: skip


class SpecRun:
    """Runs a .spec file with stand-ins for the names PyInstaller gives it,
    recording every build target it declares."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.collected: list[str] = []
        self.metadata: list[str] = []

    def _target(self, kind: str) -> Any:
        def make(*args: Any, **kwargs: Any) -> SimpleNamespace:
            unknown = set(kwargs) - _KWARGS[kind]
            assert not unknown, f"{kind}() has no parameter(s) {sorted(unknown)}"
            self.calls.append((kind, args, kwargs))
            return SimpleNamespace(
                kind=kind, args=args, kwargs=kwargs, pure=[], scripts=[], binaries=[], datas=[]
            )

        return make

    def hooks_module(self) -> ModuleType:
        hooks = ModuleType("PyInstaller.utils.hooks")

        def collect_data_files(package: str) -> list[tuple[str, str]]:
            self.collected.append(package)
            return [(f"<data of {package}>", package)]

        def copy_metadata(package: str) -> list[tuple[str, str]]:
            self.metadata.append(package)
            return [(f"<metadata of {package}>", ".")]

        def collect_submodules(package: str) -> list[str]:
            return [f"{package}.<all>"]

        hooks.collect_data_files = collect_data_files  # type: ignore[attr-defined]
        hooks.copy_metadata = copy_metadata  # type: ignore[attr-defined]
        hooks.collect_submodules = collect_submodules  # type: ignore[attr-defined]
        return hooks

    def run(self, spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("PyInstaller", "PyInstaller.utils"):
            monkeypatch.setitem(sys.modules, name, ModuleType(name))
        monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", self.hooks_module())
        namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__file__": str(spec),
            "SPECPATH": str(spec.parent),
            **{kind: self._target(kind) for kind in _KWARGS},
        }
        exec(compile(spec.read_text(), str(spec), "exec"), namespace)

    def of(self, kind: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(a, k) for c, a, k in self.calls if c == kind]


def _pystray_has(module: str) -> bool:
    # Found without importing pystray (which picks a display backend on import).
    spec = importlib.util.find_spec("pystray")
    assert spec is not None and spec.submodule_search_locations
    name = module.rsplit(".", 1)[1]
    return any((Path(p) / f"{name}.py").is_file() for p in spec.submodule_search_locations)


@pytest.fixture
def spec_run() -> Iterator[SpecRun]:
    yield SpecRun()


def _check_analysis(run: SpecRun, backend: str) -> None:
    [(args, kwargs)] = run.of("Analysis")
    [scripts] = args
    assert [Path(s) for s in scripts] == [PACKAGING / "pyinstaller" / "traywire_entry.py"]
    entry = (PACKAGING / "pyinstaller" / "traywire_entry.py").read_text()
    assert "from traywire.cli import main" in entry
    assert run.collected == ["traywire"]  # default.yaml and the dashboard files
    assert run.metadata == ["keyring"]  # keyring finds its backends by entry points
    assert backend in kwargs["hiddenimports"] and _pystray_has(backend)
    assert "keyring.backends.<all>" in kwargs["hiddenimports"]


def test_macos_spec_builds_a_menu_bar_app(
    spec_run: SpecRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_run.run(PACKAGING / "macos" / "traywire.spec", monkeypatch)
    _check_analysis(spec_run, "pystray._darwin")
    [(_, exe)] = spec_run.of("EXE")
    assert exe["name"] == "traywire" and exe["console"] is False
    assert Path(exe["icon"]) == ROOT / "assets" / "traywire.icns"
    [(_, coll)] = spec_run.of("COLLECT")
    assert coll["name"] == "traywire"
    [(bundle_args, bundle)] = spec_run.of("BUNDLE")
    assert bundle_args[0].kind == "COLLECT"
    assert bundle["name"] == "traywire.app"
    assert Path(bundle["icon"]).is_file()
    info = bundle["info_plist"]
    assert info["LSUIElement"] is True
    assert info["CFBundleShortVersionString"] == VERSION == bundle["version"]
    assert bundle["bundle_identifier"] == info["CFBundleIdentifier"]


def test_windows_spec_builds_a_tray_exe_and_a_console_exe(
    spec_run: SpecRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_run.run(PACKAGING / "windows" / "traywire.spec", monkeypatch)
    _check_analysis(spec_run, "pystray._win32")
    exes = {k["name"]: k for _a, k in spec_run.of("EXE")}
    assert exes["traywire"]["console"] is False  # no console window for the tray app
    assert exes["traywire-cli"]["console"] is True
    for exe in exes.values():
        assert Path(exe["icon"]) == ROOT / "assets" / "traywire.ico"
    [(coll_args, coll)] = spec_run.of("COLLECT")
    assert coll["name"] == "traywire"  # dist\traywire\, what the installer packs
    assert {a.kwargs["name"] for a in coll_args if getattr(a, "kind", "") == "EXE"} == set(exes)


# --------------------------------------------------------------------------- Inno Setup


def inno_sections(path: Path) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if re.fullmatch(r"\[\w+\]", line):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        assert current, f"{path}: {line!r} outside a section"
        sections[current].append(line)
    return sections


def inno_entry(line: str) -> dict[str, str]:
    """``Name: "x"; Flags: a b`` -> {"Name": "x", "Flags": "a b"} (Inno's quoting:
    a doubled quote inside a quoted value is one quote)."""
    entry: dict[str, str] = {}
    for m in re.finditer(r'(\w+):\s*("(?:[^"]|"")*"|[^;]*)\s*(?:;|$)', line):
        value = m.group(2).strip()
        if value.startswith('"'):
            value = value[1:-1].replace('""', '"')
        entry[m.group(1)] = value
    return entry


def test_inno_setup_script() -> None:
    iss = PACKAGING / "windows" / "traywire.iss"
    s = inno_sections(iss)
    setup = dict(line.split("=", 1) for line in s["Setup"])
    assert re.fullmatch(r"\{\{[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}\}", setup["AppId"])
    assert setup["PrivilegesRequired"] == "lowest"  # per user: HKCU Run, no admin
    assert setup["DefaultDirName"] == r"{autopf}\traywire"
    assert setup["AppVersion"] == "{#AppVersion}"
    icon = iss.parent.joinpath(*setup["SetupIconFile"].split("\\")).resolve()
    assert icon == ROOT / "assets" / "traywire.ico"
    assert iss.parent.joinpath(*setup["OutputDir"].split("\\")).resolve() == ROOT / "dist"

    [files] = [inno_entry(line) for line in s["Files"]]
    assert files["Source"] == r"..\..\dist\traywire\*"  # the spec's COLLECT(name="traywire")
    assert "recursesubdirs" in files["Flags"]

    icons = [inno_entry(line) for line in s["Icons"]]
    assert {"Name": r"{group}\traywire", "Filename": r"{app}\traywire.exe"}.items() <= (
        icons[0].items()
    )

    tasks = {inno_entry(line)["Name"]: inno_entry(line) for line in s["Tasks"]}
    assert "unchecked" not in tasks["startatlogin"].get("Flags", "")  # on unless unticked
    [run_key] = [inno_entry(line) for line in s["Registry"]]
    assert run_key["Root"] == "HKCU"
    assert run_key["Subkey"] == autostart.WINDOWS_RUN_KEY
    # the very value traywire's own "Start at login" reads and writes
    assert run_key["ValueName"] == autostart.WINDOWS_VALUE_NAME
    assert run_key["ValueData"] == autostart.windows_command_line([r"{app}\traywire.exe"])
    assert run_key["Tasks"] == "startatlogin"
    assert "uninsdeletevalue" in run_key["Flags"].split()

    # uninstalling never deletes the user's config, state or request log
    assert "UninstallDelete" not in s
    code = "\n".join(line for lines in s.values() for line in lines).lower()
    assert "{localappdata}" not in code and "{userappdata}" not in code


# --------------------------------------------------------------------------- workflow


def _workflow() -> dict[Any, Any]:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / "packages.yml").read_text())
    assert isinstance(data, dict)
    return data


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_builds_each_package_on_its_own_os() -> None:
    wf = _workflow()
    on: dict[str, Any] = wf["on"] if "on" in wf else wf[True]  # YAML 1.1: a bare `on` is true
    assert on["push"]["tags"] == ["v*"] and "workflow_dispatch" in on
    jobs = wf["jobs"]
    deb = jobs["deb"]
    assert {i["image"] for i in deb["strategy"]["matrix"]["include"]} >= {"debian:12"}
    assert deb["container"] == "${{ matrix.image }}"
    assert "bash scripts/build-deb.sh" in _runs(deb)
    assert "apt-get install -y ./dist/traywire_*.deb" in _runs(deb)
    assert jobs["macos"]["runs-on"].startswith("macos")
    assert "pyinstaller --noconfirm --clean packaging/macos/traywire.spec" in _runs(jobs["macos"])
    assert "bash packaging/macos/make-dmg.sh" in _runs(jobs["macos"])
    assert jobs["windows"]["runs-on"].startswith("windows")
    win = _runs(jobs["windows"])
    assert "pyinstaller --noconfirm --clean packaging/windows/traywire.spec" in win
    assert "packaging\\windows\\traywire.iss" in win
    assert "docker build -f packaging/docker/Dockerfile" in _runs(jobs["container"])
    release = jobs["release"]
    assert set(release["needs"]) == {"deb", "macos", "windows", "container"}
    assert release["permissions"] == {"contents": "write"}
    assert wf["permissions"] == {"contents": "read"}


def test_workflow_names_only_files_that_exist() -> None:
    text = (ROOT / ".github" / "workflows" / "packages.yml").read_text()
    paths = set(re.findall(r"(?:scripts|packaging|assets)[/\\][\w./\\-]+\w", text))
    assert paths
    for p in paths:
        assert (ROOT / p.replace("\\", "/")).exists(), p


def test_install_doc_gives_each_build_command() -> None:
    doc = (ROOT / "docs" / "INSTALL.md").read_text()
    wf = (ROOT / ".github" / "workflows" / "packages.yml").read_text()
    for command in (
        "bash scripts/build-deb.sh",
        "pyinstaller --noconfirm --clean packaging/macos/traywire.spec",
        "bash packaging/macos/make-dmg.sh",
        "pyinstaller --noconfirm --clean packaging/windows/traywire.spec",
        "packaging\\windows\\traywire.iss",
        "docker build -f packaging/docker/Dockerfile -t traywire",
        "systemctl --user enable --now traywire",
    ):
        assert command in doc, command
        if "systemctl" not in command:
            assert command in wf, command


# --------------------------------------------------------------------------- container


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_traywire_serve() -> None:
    import json

    dockerfile = PACKAGING / "docker" / "Dockerfile"
    steps = dockerfile_instructions(dockerfile)
    kinds = [k for k, _ in steps]
    assert kinds.count("FROM") == 2  # build stage, runtime stage
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["traywire"]
    cmd = json.loads(dict(steps)["CMD"])
    assert cmd[0] == "serve"
    users = [arg for k, arg in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")

    # Everything it copies from the context exists and the .dockerignore lets it in.
    allowed = [
        line[1:]
        for line in (PACKAGING / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for kind, arg in steps:
        if kind != "COPY" or arg.startswith("--from"):
            continue
        *sources, _dest = arg.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert any(source == a or source.startswith(a + "/") for a in allowed), source

    # The config layer it serves with: valid, on 0.0.0.0 with a token, on the exposed port.
    layer = cmd[cmd.index("--config") + 1]
    copied = {a.split()[-1]: a.split()[0] for k, a in steps if k == "COPY" and "--from" not in a}
    cfg = config.load(ROOT / copied[layer], user_file=False)
    assert cfg.server.host == "0.0.0.0"
    assert cfg.server.token == "env:TRAYWIRE_TOKEN"
    assert dict(steps)["EXPOSE"] == str(cfg.server.port)
    assert "TRAYWIRE_TOKEN" in dict(steps)["HEALTHCHECK"]


# --------------------------------------------------------------------------- the build


def test_building_prints_no_deprecation_warning(tmp_path: Path) -> None:
    """A verbose wheel build (what `pip install .` runs) says nothing deprecated:
    the license is an SPDX expression, not setuptools' deprecated TOML table."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    bad = [line for line in text.splitlines() if re.search(r"deprecat", line, re.IGNORECASE)]
    assert bad == [], "\n".join(bad)
    wheel = next(tmp_path.glob("traywire-*.whl"))
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in meta
