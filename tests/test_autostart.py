"""Tests for traywire.desktop.autostart: generated entries parsed back, and enable/disable."""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from traywire.desktop import autostart
from traywire.desktop.autostart import (
    LAUNCH_AGENT_LABEL,
    WINDOWS_RUN_KEY,
    WINDOWS_RUN_KEY_DISPLAY,
    default_command,
    desktop_entry,
    desktop_exec,
    disable,
    enable,
    is_enabled,
    launch_agent_plist,
    linux_autostart_path,
    location,
    macos_launch_agent_path,
    macos_log_dir,
    platform_kind,
    windows_command_line,
    windows_run_value,
    xdg_config_home,
)

SPACEY = "/home/Jane Doe/My Apps/trayw ire/.venv/bin/python3"
AWKWARD_ARGS = [
    "-m",
    "traywire",
    "--config",
    "/home/Jane Doe/.config/traywire/config (1).yaml",
    "100%",
    'say "hi"',
    "it's",
    "back\\slash",
    "$HOME`x`",
    "a;b|c&d>e<f~g*h?i#j",
    "",
]

# Arbitrary text without control characters (autostart commands may not contain any).
ARG_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")),
    max_size=30,
)


# --------------------------------------------------------------------------- helpers


def parse_desktop_file(text: str) -> dict[str, str]:
    """Read the [Desktop Entry] group with configparser and undo the string escapes."""
    parser = configparser.RawConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return {k: unescape_desktop_string(v) for k, v in parser["Desktop Entry"].items()}


def unescape_desktop_string(value: str) -> str:
    escapes = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            nxt = value[i + 1]
            assert nxt in escapes, f"unknown escape \\{nxt}"
            out.append(escapes[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_desktop_exec(value: str) -> list[str]:
    """Split an (already string-unescaped) Exec value per the Desktop Entry spec."""
    args: list[str] = []
    current: list[str] = []
    in_arg = False
    i = 0
    while i < len(value):
        c = value[i]
        if c == " ":
            if in_arg:
                args.append("".join(current))
                current, in_arg = [], False
            i += 1
        elif c == '"':
            in_arg = True
            i += 1
            while value[i] != '"':
                if value[i] == "\\":
                    assert value[i + 1] in '"`$\\', "bad escape inside quotes"
                    i += 1
                current.append(value[i])
                i += 1
            i += 1
        else:
            assert c not in "\t\n\"'\\><~|&;$*?#()`", f"reserved {c!r} outside quotes"
            in_arg = True
            current.append(c)
            i += 1
    if in_arg:
        args.append("".join(current))
    # Field codes: our entries only ever contain %% (a literal percent sign).
    result = []
    for arg in args:
        assert "%" not in arg.replace("%%", ""), f"stray field code in {arg!r}"
        result.append(arg.replace("%%", "%"))
    return result


def split_windows_command_line(line: str) -> list[str]:
    """Split a command line the way CommandLineToArgvW / the MS C runtime do."""
    i = 0
    # The program name: up to the closing quote if quoted (no escapes), else whitespace.
    if line.startswith('"'):
        end = line.index('"', 1)
        program = line[1:end]
        i = end + 1
    else:
        while i < len(line) and line[i] not in " \t":
            i += 1
        program = line[:i]
    args = [program]
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return args
        current: list[str] = []
        in_quotes = False
        while i < n and (in_quotes or line[i] not in " \t"):
            if line[i] == "\\":
                start = i
                while i < n and line[i] == "\\":
                    i += 1
                count = i - start
                if i < n and line[i] == '"':
                    current.append("\\" * (count // 2))
                    if count % 2:
                        current.append('"')
                        i += 1
                else:
                    current.append("\\" * count)
            elif line[i] == '"':
                if in_quotes and i + 1 < n and line[i + 1] == '"':
                    current.append('"')  # "" inside quotes: a literal quote
                    i += 2
                else:
                    in_quotes = not in_quotes
                    i += 1
            else:
                current.append(line[i])
                i += 1
        args.append("".join(current))


class FakeRunKey:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> bool:
        return self.values.pop(name, None) is not None


# --------------------------------------------------------------------------- platforms & paths


@pytest.mark.parametrize(
    ("platform", "kind"),
    [
        ("linux", "linux"),
        ("freebsd14", "linux"),
        ("darwin", "macos"),
        ("win32", "windows"),
        ("cygwin", "windows"),
    ],
)
def test_platform_kind(platform: str, kind: str) -> None:
    assert platform_kind(platform) == kind


def test_xdg_config_home(tmp_path: Path) -> None:
    assert xdg_config_home(tmp_path, {}) == tmp_path / ".config"
    assert xdg_config_home(tmp_path, {"XDG_CONFIG_HOME": ""}) == tmp_path / ".config"
    # Relative paths are invalid per the base directory spec and are ignored.
    assert xdg_config_home(tmp_path, {"XDG_CONFIG_HOME": "rel/conf"}) == tmp_path / ".config"
    assert xdg_config_home(tmp_path, {"XDG_CONFIG_HOME": "/x/conf"}) == Path("/x/conf")


def test_paths() -> None:
    home = Path("/home/jane")
    assert linux_autostart_path(home, {}) == home / ".config/autostart/traywire.desktop"
    assert linux_autostart_path(home, {"XDG_CONFIG_HOME": "/cfg"}) == Path(
        "/cfg/autostart/traywire.desktop"
    )
    assert macos_launch_agent_path(Path("/Users/jane")) == Path(
        "/Users/jane/Library/LaunchAgents/io.traywire.app.plist"
    )
    assert macos_log_dir(Path("/Users/jane")) == Path("/Users/jane/Library/Logs/traywire")
    assert WINDOWS_RUN_KEY == r"Software\Microsoft\Windows\CurrentVersion\Run"
    assert WINDOWS_RUN_KEY_DISPLAY == r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run"


def test_location(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert location("linux", tmp_path, env) == str(tmp_path / "cfg/autostart/traywire.desktop")
    assert location("darwin", tmp_path) == str(macos_launch_agent_path(tmp_path))
    assert location("win32") == (
        r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run (value 'traywire')"
    )


def test_default_command_of_the_deb_is_its_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/opt/traywire/venv/bin/python3")
    monkeypatch.setattr(
        "traywire.desktop.autostart.os.path.exists", lambda p: p == "/usr/bin/traywire"
    )
    assert default_command("linux") == ["/usr/bin/traywire"]


def test_default_command(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_command("linux") == [sys.executable, "-m", "traywire"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert default_command("linux") == [sys.executable]


# --------------------------------------------------------------------------- Linux .desktop


def test_desktop_entry_fields() -> None:
    text = desktop_entry([SPACEY, "-m", "traywire"])
    assert text.startswith("[Desktop Entry]\n")
    fields = parse_desktop_file(text)
    assert fields["Type"] == "Application"
    assert fields["Name"] == "traywire"
    assert fields["Comment"]
    assert fields["Icon"] == "traywire"
    assert fields["Terminal"] == "false"
    assert fields["X-GNOME-Autostart-enabled"] == "true"
    assert split_desktop_exec(fields["Exec"]) == [SPACEY, "-m", "traywire"]


def test_desktop_exec_quotes_paths_with_spaces() -> None:
    assert desktop_exec(["/usr/bin/python3", "-m", "traywire"]) == "/usr/bin/python3 -m traywire"
    assert desktop_exec(["/opt/My App/bin/traywire"]) == '"/opt/My App/bin/traywire"'


def test_desktop_exec_backslash_takes_four() -> None:
    # Exec quoting doubles the backslash, then string escaping doubles it again.
    assert desktop_exec(["/bin/x", "a\\b"]) == '/bin/x "a\\\\\\\\b"'


def test_desktop_awkward_arguments_round_trip() -> None:
    command = [SPACEY, *AWKWARD_ARGS]
    fields = parse_desktop_file(desktop_entry(command))
    assert split_desktop_exec(fields["Exec"]) == command


def test_desktop_entry_custom_fields() -> None:
    fields = parse_desktop_file(
        desktop_entry(
            ["/bin/x"],
            name="Tray Wire",
            comment=" leading space and \\ backslash",
            icon="/opt/traywire/icon.png",
            enabled=False,
        )
    )
    assert fields["Name"] == "Tray Wire"
    assert fields["Comment"] == " leading space and \\ backslash"
    assert fields["Icon"] == "/opt/traywire/icon.png"
    assert fields["X-GNOME-Autostart-enabled"] == "false"


@pytest.mark.parametrize(
    "command",
    [
        [],
        [""],
        ["/bin/x", "line\nbreak"],
        ["/bin/x", "nul\x00"],
        ["/bin/x", "tab\there"],
        ["/opt/a=b/python"],  # '=' is not allowed in the executable path
    ],
)
def test_desktop_exec_rejects(command: list[str]) -> None:
    with pytest.raises(ValueError):
        desktop_exec(command)


def test_command_must_be_a_sequence_of_strings() -> None:
    with pytest.raises(TypeError):
        desktop_exec("/usr/bin/traywire")
    with pytest.raises(TypeError):
        windows_command_line(["/bin/x", 3])  # type: ignore[list-item]


@given(
    program=ARG_TEXT.filter(lambda s: s and "=" not in s),
    args=st.lists(ARG_TEXT, max_size=5),
)
def test_desktop_exec_round_trips(program: str, args: list[str]) -> None:
    command = [program, *args]
    fields = parse_desktop_file(desktop_entry(command))
    assert split_desktop_exec(fields["Exec"]) == command


def test_desktop_file_validate(tmp_path: Path) -> None:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip(
            "desktop-file-validate not found: install the Debian package "
            "`desktop-file-utils` to validate the generated .desktop file"
        )
    for command in (
        ["/usr/bin/python3", "-m", "traywire"],
        [SPACEY, *AWKWARD_ARGS],
    ):
        path = tmp_path / "traywire.desktop"
        path.write_text(desktop_entry(command), encoding="utf-8")
        proc = subprocess.run(
            [tool, str(path)], capture_output=True, text=True, timeout=30, check=False
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output
        assert "error" not in output.lower(), output


# --------------------------------------------------------------------------- macOS plist


def test_launch_agent_plist() -> None:
    command = ["/Users/Jane Doe/.venv/bin/python3", "-m", "traywire", 'it\'s "q" & <x>']
    data = launch_agent_plist(command, log_dir=Path("/Users/Jane Doe/Library/Logs/traywire"))
    assert data.startswith(b"<?xml")
    agent = plistlib.loads(data)
    assert agent["Label"] == LAUNCH_AGENT_LABEL == "io.traywire.app"
    assert agent["ProgramArguments"] == command
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] is False
    assert agent["ProcessType"] == "Interactive"
    assert agent["StandardOutPath"] == "/Users/Jane Doe/Library/Logs/traywire/traywire.out.log"
    assert agent["StandardErrorPath"] == "/Users/Jane Doe/Library/Logs/traywire/traywire.err.log"


@given(st.lists(ARG_TEXT, min_size=1, max_size=5).filter(lambda a: bool(a[0])))
def test_launch_agent_plist_round_trips(command: list[str]) -> None:
    agent = plistlib.loads(launch_agent_plist(command, log_dir="/tmp/logs"))
    assert agent["ProgramArguments"] == command


# --------------------------------------------------------------------------- Windows Run value


def test_windows_run_value() -> None:
    name, value = windows_run_value([r"C:\Program Files\Python312\pythonw.exe", "-m", "traywire"])
    assert name == "traywire"
    assert value == r'"C:\Program Files\Python312\pythonw.exe" -m traywire'


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("plain", "plain"),
        ("", '""'),
        ("two words", '"two words"'),
        (r"C:\dir\\", r"C:\dir\\"),  # no quoting needed: backslashes stay literal
        ("C:\\My Dir\\", '"C:\\My Dir\\\\"'),  # trailing backslash doubled before the quote
        ('say "hi"', '"say \\"hi\\""'),
        ('a\\"b', '"a\\\\\\"b"'),
    ],
)
def test_windows_quote_arg(arg: str, quoted: str) -> None:
    assert autostart.windows_quote_arg(arg) == quoted
    assert split_windows_command_line(f'"C:\\p.exe" {quoted}') == ["C:\\p.exe", arg]


def test_windows_awkward_arguments_round_trip() -> None:
    command = [r"C:\Users\Jane Doe\AppData\Local\traywire\pythonw.exe", *AWKWARD_ARGS]
    assert split_windows_command_line(windows_command_line(command)) == command


def test_windows_program_cannot_contain_a_quote() -> None:
    with pytest.raises(ValueError, match="double quote"):
        windows_command_line(['C:\\a"b.exe'])


@given(
    program=ARG_TEXT.filter(lambda s: s and '"' not in s),
    args=st.lists(ARG_TEXT, max_size=5),
)
def test_windows_command_line_round_trips(program: str, args: list[str]) -> None:
    command = [program, *args]
    assert split_windows_command_line(windows_command_line(command)) == command


# --------------------------------------------------------------------------- enable / disable


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_linux_enable_disable(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    home = tmp_path / "home"
    command = [SPACEY, "-m", "traywire"]
    path = tmp_path / "config" / "autostart" / "traywire.desktop"

    assert is_enabled(platform="linux", home=home, env=env) is False
    where = enable(command, platform="linux", home=home, env=env)
    assert where == str(path)
    assert is_enabled(platform="linux", home=home, env=env) is True
    fields = parse_desktop_file(path.read_text(encoding="utf-8"))
    assert split_desktop_exec(fields["Exec"]) == command
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert _no_temp_files(path.parent)

    # Enabling again replaces the entry.
    enable(["/usr/bin/traywire"], platform="linux", home=home, env=env)
    fields = parse_desktop_file(path.read_text(encoding="utf-8"))
    assert split_desktop_exec(fields["Exec"]) == ["/usr/bin/traywire"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["traywire.desktop"]

    assert disable(platform="linux", home=home, env=env) is True
    assert not path.exists()
    assert is_enabled(platform="linux", home=home, env=env) is False
    assert disable(platform="linux", home=home, env=env) is False


def test_linux_uses_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    enable(["/usr/bin/traywire"], platform="linux", home=tmp_path / "home")
    assert (tmp_path / "xdg" / "autostart" / "traywire.desktop").is_file()
    assert is_enabled(platform="linux", home=tmp_path / "home") is True
    assert disable(platform="linux", home=tmp_path / "home") is True


@pytest.mark.parametrize("marker", ["Hidden=true", "X-GNOME-Autostart-enabled=false"])
def test_linux_entry_marked_off_is_not_enabled(tmp_path: Path, marker: str) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    path = linux_autostart_path(tmp_path, env)
    path.parent.mkdir(parents=True)
    path.write_text(
        "[Desktop Entry]\nType=Application\nName=traywire\nExec=/bin/x\n" + marker + "\n"
    )
    assert is_enabled(platform="linux", home=tmp_path, env=env) is False


def test_enable_requires_an_absolute_executable(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(ValueError, match="absolute"):
        enable(["traywire"], platform="linux", home=tmp_path, env=env)
    with pytest.raises(ValueError, match="absolute"):
        enable(["pythonw.exe"], platform="win32", run_key=FakeRunKey())
    assert not (tmp_path / "autostart").exists()


def test_enable_default_command(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    enable(platform="linux", home=tmp_path, env=env)
    fields = parse_desktop_file(linux_autostart_path(tmp_path, env).read_text())
    assert split_desktop_exec(fields["Exec"]) == default_command("linux")


def test_macos_enable_disable(tmp_path: Path) -> None:
    command = ["/Applications/Tray Wire.app/Contents/MacOS/traywire"]
    where = enable(command, platform="darwin", home=tmp_path)
    path = tmp_path / "Library" / "LaunchAgents" / "io.traywire.app.plist"
    assert where == str(path)
    agent = plistlib.loads(path.read_bytes())
    assert agent["ProgramArguments"] == command
    assert (tmp_path / "Library" / "Logs" / "traywire").is_dir()
    assert agent["StandardErrorPath"].startswith(str(tmp_path / "Library/Logs/traywire"))
    assert is_enabled(platform="darwin", home=tmp_path) is True

    agent["Disabled"] = True
    path.write_bytes(plistlib.dumps(agent))
    assert is_enabled(platform="darwin", home=tmp_path) is False

    assert disable(platform="darwin", home=tmp_path) is True
    assert is_enabled(platform="darwin", home=tmp_path) is False
    assert disable(platform="darwin", home=tmp_path) is False


def test_windows_enable_disable_with_fake_registry() -> None:
    run_key = FakeRunKey()
    command = [r"C:\Program Files\Python312\pythonw.exe", "-m", "traywire"]
    assert is_enabled(platform="win32", run_key=run_key) is False
    where = enable(command, platform="win32", run_key=run_key)
    assert where == location("win32")
    assert run_key.values == {"traywire": r'"C:\Program Files\Python312\pythonw.exe" -m traywire'}
    assert is_enabled(platform="win32", run_key=run_key) is True
    assert disable(platform="win32", run_key=run_key) is True
    assert is_enabled(platform="win32", run_key=run_key) is False
    assert disable(platform="win32", run_key=run_key) is False


def test_windows_command_line_length_limit() -> None:
    long_dir = "C:\\" + "d" * 250
    with pytest.raises(ValueError, match="260"):
        enable(
            [long_dir + "\\pythonw.exe", "-m", "traywire"], platform="win32", run_key=FakeRunKey()
        )


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows guard")
def test_windows_registry_is_not_touched_elsewhere() -> None:
    with pytest.raises(OSError, match="only available on Windows"):
        is_enabled(platform="win32")
    assert "winreg" not in sys.modules or os.name == "nt"


def test_gio_launch_passes_the_exact_arguments(tmp_path: Path) -> None:
    """GLib's own launcher (what GNOME autostart uses) parses our Exec line back."""
    gio = shutil.which("gio")
    if gio is None:
        pytest.skip("gio not found: install the Debian package `libglib2.0-bin`")
    script_dir = tmp_path / "My Dir"
    script_dir.mkdir()
    script = script_dir / "dump.py"
    script.write_text(
        "import json, os, sys\n"
        "with open(os.environ['TRAYWIRE_DUMP'], 'w', encoding='utf-8') as f:\n"
        "    json.dump(sys.argv[1:], f)\n"
    )
    args = [*AWKWARD_ARGS, "\u00fcn\u00ef c\u00f6d\u00e9", "x\u00a0y"]
    entry = tmp_path / "traywire.desktop"
    entry.write_text(desktop_entry([sys.executable, str(script), *args]), encoding="utf-8")
    out = tmp_path / "argv.json"
    env = {**os.environ, "TRAYWIRE_DUMP": str(out)}
    subprocess.run([gio, "launch", str(entry)], env=env, timeout=30, check=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            assert json.loads(out.read_text(encoding="utf-8")) == args
            return
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
    pytest.fail("the launched program never wrote its arguments")
