"""Start traywire at login.

* Linux (and other XDG desktops): a ``.desktop`` file in ``$XDG_CONFIG_HOME/autostart``.
* macOS: a LaunchAgent plist in ``~/Library/LaunchAgents``.
* Windows: a value in ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``.

The generators and path functions are pure (home directory, environment and
platform come in as arguments), so every platform's output is testable anywhere.
``enable``/``disable``/``is_enabled`` do the I/O; ``winreg`` is imported only when
the Windows registry is actually used.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import plistlib
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal, Protocol

__all__ = [
    "APP_NAME",
    "DESKTOP_FILE_NAME",
    "LAUNCH_AGENT_LABEL",
    "WINDOWS_RUN_KEY",
    "WINDOWS_RUN_KEY_DISPLAY",
    "WINDOWS_RUN_MAX_CHARS",
    "WINDOWS_VALUE_NAME",
    "Platform",
    "RunKey",
    "default_command",
    "desktop_entry",
    "desktop_exec",
    "desktop_quote_arg",
    "disable",
    "enable",
    "is_enabled",
    "launch_agent_plist",
    "linux_autostart_path",
    "location",
    "macos_launch_agent_path",
    "macos_log_dir",
    "platform_kind",
    "windows_command_line",
    "windows_quote_arg",
    "windows_run_value",
    "xdg_config_home",
]

APP_NAME = "traywire"
DESKTOP_FILE_NAME = "traywire.desktop"
LAUNCH_AGENT_LABEL = "io.traywire.app"
WINDOWS_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
WINDOWS_RUN_KEY_DISPLAY = "HKCU\\" + WINDOWS_RUN_KEY
WINDOWS_VALUE_NAME = "traywire"
# Microsoft documents that command lines in the Run/RunOnce keys are limited to 260
# characters; a longer one would silently not start.
WINDOWS_RUN_MAX_CHARS = 260

DEFAULT_COMMENT = "Route OpenAI and Ollama API requests across LLM backends"

Platform = Literal["linux", "macos", "windows"]

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def platform_kind(platform: str | None = None) -> Platform:
    """Map a ``sys.platform`` value to the autostart mechanism it uses.

    Anything that is not macOS or Windows is treated as an XDG desktop (Linux, BSDs).
    """
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return "macos"
    if platform in ("win32", "cygwin", "msys"):
        return "windows"
    return "linux"


# Where the .deb puts traywire (packaging/linux) and its launcher.
PACKAGED_PREFIX = "/opt/traywire/"
PACKAGED_LAUNCHER = "/usr/bin/traywire"


def default_command(platform: str | None = None) -> list[str]:
    """The command that starts the tray app with the running interpreter.

    On Windows ``pythonw.exe`` is preferred so that no console window opens; a frozen
    (e.g. PyInstaller) build starts its own executable.
    """
    if getattr(sys, "frozen", False):
        return [sys.executable]
    python = sys.executable
    # the .deb: its launcher runs the bundled Python isolated (no user
    # site-packages, no current directory on the import path)
    if (
        platform_kind(platform) == "linux"
        and python.startswith(PACKAGED_PREFIX)
        and os.path.exists(PACKAGED_LAUNCHER)
    ):
        return [PACKAGED_LAUNCHER]
    if platform_kind(platform) == "windows":
        pythonw = PureWindowsPath(python).with_name("pythonw.exe")
        if os.path.exists(str(pythonw)):
            python = str(pythonw)
    return [python, "-m", APP_NAME]


def _check_command(command: Sequence[str]) -> list[str]:
    if isinstance(command, str):
        raise TypeError("command must be a sequence of arguments, not a string")
    args = list(command)
    if not args or not args[0]:
        raise ValueError("command must name an executable")
    for arg in args:
        if not isinstance(arg, str):
            raise TypeError(f"command arguments must be strings, not {type(arg).__name__}")
        if _CONTROL_RE.search(arg):
            raise ValueError(f"command argument contains a control character: {arg!r}")
    return args


# --------------------------------------------------------------------------- Linux / XDG


def xdg_config_home(home: Path, env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME``, or ``~/.config`` when unset, empty or relative (per the spec)."""
    value = env.get("XDG_CONFIG_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    return home / ".config"


def linux_autostart_path(home: Path, env: Mapping[str, str]) -> Path:
    """Where the per-user XDG autostart entry goes."""
    return xdg_config_home(home, env) / "autostart" / DESKTOP_FILE_NAME


# Characters that force an Exec argument to be quoted (Desktop Entry spec, "The Exec key").
_DESKTOP_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")
# Characters that must be backslash-escaped inside a quoted Exec argument.
_DESKTOP_QUOTE_ESCAPED = frozenset('"`$\\')


def desktop_quote_arg(arg: str) -> str:
    """Quote one Exec argument per the Desktop Entry spec (before string escaping).

    ``%`` is doubled (a literal percent sign; single ``%`` starts a field code).
    """
    arg = arg.replace("%", "%%")
    # Other (Unicode) whitespace is not reserved, but parsers may strip it at the ends
    # of the value, so such arguments are quoted too.
    if arg and not any(c in _DESKTOP_RESERVED or c.isspace() for c in arg):
        return arg
    inner = "".join("\\" + c if c in _DESKTOP_QUOTE_ESCAPED else c for c in arg)
    return f'"{inner}"'


def _desktop_escape_string(value: str) -> str:
    """Escape a value of type string: backslash first, then whitespace escapes."""
    if _CONTROL_RE.search(value.replace("\t", "")):
        raise ValueError(f"value contains a control character: {value!r}")
    value = value.replace("\\", "\\\\").replace("\t", "\\t")
    if value.startswith(" "):
        value = "\\s" + value[1:]
    return value


def desktop_exec(command: Sequence[str]) -> str:
    """The ``Exec=`` value for ``command``, exactly as written in the file.

    Each argument is quoted per the Exec rules, then the whole value gets the general
    string escaping (so a literal backslash inside a quoted argument becomes four).
    """
    args = _check_command(command)
    if "=" in args[0]:
        raise ValueError(
            f"the Desktop Entry spec does not allow '=' in the executable path: {args[0]!r}"
        )
    return _desktop_escape_string(" ".join(desktop_quote_arg(a) for a in args))


def desktop_entry(
    command: Sequence[str],
    *,
    name: str = APP_NAME,
    comment: str = DEFAULT_COMMENT,
    icon: str = APP_NAME,
    enabled: bool = True,
) -> str:
    """The text of an XDG autostart ``.desktop`` file that runs ``command``."""
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        f"Name={_desktop_escape_string(name)}",
        f"Comment={_desktop_escape_string(comment)}",
        f"Exec={desktop_exec(command)}",
        f"Icon={_desktop_escape_string(icon)}",
        "Terminal=false",
        "StartupNotify=false",
        f"X-GNOME-Autostart-enabled={'true' if enabled else 'false'}",
    ]
    return "\n".join(lines) + "\n"


def _desktop_entry_enabled(text: str) -> bool:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
        section = parser["Desktop Entry"]
    except (configparser.Error, KeyError):
        return True  # present but unreadable: a desktop may still try to run it
    hidden = section.get("Hidden", "false").strip().lower() == "true"
    disabled = section.get("X-GNOME-Autostart-enabled", "true").strip().lower() == "false"
    return not (hidden or disabled)


# --------------------------------------------------------------------------- macOS


def macos_launch_agent_path(home: Path) -> Path:
    """Where the per-user LaunchAgent plist goes."""
    return home / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_LABEL}.plist"


def macos_log_dir(home: Path) -> Path:
    """Where launchd writes the app's stdout/stderr."""
    return home / "Library" / "Logs" / APP_NAME


def launch_agent_plist(command: Sequence[str], *, log_dir: Path | str) -> bytes:
    """The LaunchAgent plist (XML) that starts ``command`` at login."""
    args = _check_command(command)
    log_dir = Path(log_dir)
    agent: dict[str, object] = {
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": args,
        "RunAtLoad": True,
        "KeepAlive": False,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
        "StandardOutPath": str(log_dir / f"{APP_NAME}.out.log"),
        "StandardErrorPath": str(log_dir / f"{APP_NAME}.err.log"),
    }
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=True)


def _launch_agent_enabled(data: bytes) -> bool:
    try:
        agent = plistlib.loads(data)
    except Exception:
        return True  # present but unreadable: launchd may still load it
    return not (isinstance(agent, dict) and agent.get("Disabled") is True)


# --------------------------------------------------------------------------- Windows


def windows_quote_arg(arg: str) -> str:
    """Quote one argument so the Microsoft C runtime / CommandLineToArgvW parse it back.

    Backslashes are literal except before a double quote; 2n backslashes followed by a
    quote mean n backslashes and a delimiter, 2n+1 mean n backslashes and a literal
    quote.
    """
    if arg and not any(c in ' \t\n\v"' for c in arg):
        return arg
    out = ['"']
    backslashes = 0
    for c in arg:
        if c == "\\":
            backslashes += 1
            continue
        if c == '"':
            out.append("\\" * (2 * backslashes + 1) + '"')
        else:
            out.append("\\" * backslashes + c)
        backslashes = 0
    out.append("\\" * (2 * backslashes) + '"')
    return "".join(out)


def windows_command_line(command: Sequence[str]) -> str:
    """Join ``command`` into one Windows command line.

    The program name is parsed by simpler rules (it ends at the next quote, with no
    escapes), so it is always quoted and may not contain a double quote.
    """
    args = _check_command(command)
    program = args[0]
    if '"' in program:
        raise ValueError(f"a Windows program path cannot contain a double quote: {program!r}")
    return " ".join([f'"{program}"', *(windows_quote_arg(a) for a in args[1:])])


def windows_run_value(command: Sequence[str]) -> tuple[str, str]:
    """The (value name, value data) pair for the ``HKCU\\...\\Run`` key."""
    return WINDOWS_VALUE_NAME, windows_command_line(command)


class RunKey(Protocol):
    """The few operations on the Run key that ``enable``/``disable`` need."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> bool: ...


class _WinRegRunKey:
    """``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run`` through ``winreg``."""

    def get(self, name: str) -> str | None:
        if sys.platform != "win32":
            raise OSError("the Windows registry is only available on Windows")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY) as key:
                value, _kind = winreg.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        return str(value)

    def set(self, name: str, value: str) -> None:
        if sys.platform != "win32":
            raise OSError("the Windows registry is only available on Windows")
        import winreg

        with winreg.CreateKeyEx(
            winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, winreg.KEY_SET_VALUE
        ) as key:
            winreg.SetValueEx(key, name, 0, winreg.REG_SZ, value)

    def delete(self, name: str) -> bool:
        if sys.platform != "win32":
            raise OSError("the Windows registry is only available on Windows")
        import winreg

        try:
            with winreg.OpenKey(
                winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, winreg.KEY_SET_VALUE
            ) as key:
                winreg.DeleteValue(key, name)
        except FileNotFoundError:
            return False
        return True


# --------------------------------------------------------------------------- enable / disable


def location(
    platform: str | None = None,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Where the start-at-login entry lives on ``platform`` (for status messages)."""
    kind = platform_kind(platform)
    if kind == "windows":
        return f"{WINDOWS_RUN_KEY_DISPLAY} (value {WINDOWS_VALUE_NAME!r})"
    home = Path.home() if home is None else home
    if kind == "macos":
        return str(macos_launch_agent_path(home))
    return str(linux_autostart_path(home, os.environ if env is None else env))


def _is_absolute(path: str, kind: Platform) -> bool:
    if kind == "windows":
        return PureWindowsPath(path).is_absolute()
    return PurePosixPath(path).is_absolute()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def enable(
    command: Sequence[str] | None = None,
    *,
    platform: str | None = None,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    run_key: RunKey | None = None,
) -> str:
    """Make ``command`` (default: :func:`default_command`) start at login.

    Overwrites an existing entry. Returns :func:`location`. The executable must be an
    absolute path: the login session's ``PATH`` is not the shell's.
    """
    kind = platform_kind(platform)
    args = _check_command(default_command(platform) if command is None else command)
    if not _is_absolute(args[0], kind):
        raise ValueError(f"the executable must be an absolute path, not {args[0]!r}")
    home = Path.home() if home is None else home
    environ = os.environ if env is None else env
    if kind == "windows":
        name, value = windows_run_value(args)
        if len(value) > WINDOWS_RUN_MAX_CHARS:
            raise ValueError(
                f"the command line is {len(value)} characters; Windows runs at most "
                f"{WINDOWS_RUN_MAX_CHARS} from the Run key (install traywire to a "
                "shorter path)"
            )
        (_WinRegRunKey() if run_key is None else run_key).set(name, value)
    elif kind == "macos":
        log_dir = macos_log_dir(home)
        log_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(macos_launch_agent_path(home), launch_agent_plist(args, log_dir=log_dir))
    else:
        _write_atomically(linux_autostart_path(home, environ), desktop_entry(args).encode("utf-8"))
    return location(platform, home, environ)


def disable(
    *,
    platform: str | None = None,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    run_key: RunKey | None = None,
) -> bool:
    """Remove the start-at-login entry; True if there was one."""
    kind = platform_kind(platform)
    if kind == "windows":
        return (_WinRegRunKey() if run_key is None else run_key).delete(WINDOWS_VALUE_NAME)
    home = Path.home() if home is None else home
    if kind == "macos":
        return _remove(macos_launch_agent_path(home))
    return _remove(linux_autostart_path(home, os.environ if env is None else env))


def is_enabled(
    *,
    platform: str | None = None,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    run_key: RunKey | None = None,
) -> bool:
    """Whether a start-at-login entry exists (and is not marked disabled/hidden)."""
    kind = platform_kind(platform)
    if kind == "windows":
        run = _WinRegRunKey() if run_key is None else run_key
        return bool(run.get(WINDOWS_VALUE_NAME))
    home = Path.home() if home is None else home
    try:
        if kind == "macos":
            return _launch_agent_enabled(macos_launch_agent_path(home).read_bytes())
        path = linux_autostart_path(home, os.environ if env is None else env)
        return _desktop_entry_enabled(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return False
