"""Opening a file or URL with the desktop's application, saying when it fails.

`open_target` starts the opener (``xdg-open`` on Linux and the BSDs,
``$BROWSER`` for a URL where it is set, ``open`` on macOS, the associated
application on Windows) and reports a failure through ``report``: an opener
that is not installed, cannot start, or exits with an error within
``WATCH_S`` seconds (``xdg-open`` exits 3 when no application is found, 4
when the application failed). The opener is always waited for
(`threads.start_watched_process`), so it never lingers as a zombie. A
browser started in the foreground that runs longer than ``WATCH_S`` counts as
opened.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

from .. import threads

__all__ = ["WATCH_S", "open_target", "opener_argv"]

WATCH_S = 30.0

_XDG_EXIT = {
    1: "bad command line",
    2: "the file does not exist",
    3: "no application found for it",
    4: "the application failed",
}


def opener_argv(target: str, env: Mapping[str, str], platform: str) -> list[str]:
    """The command that opens ``target`` (not Windows: that is `os.startfile`)."""
    if platform == "darwin":
        return ["open", target]
    browser = env.get("BROWSER", "").split(os.pathsep)[0].strip()
    if browser and target.startswith(("http://", "https://")):
        words = shlex.split(browser)
        if any("%s" in w for w in words):
            return [w.replace("%s", target) for w in words]
        return [*words, target]
    return ["xdg-open", target]


def open_target(
    target: str,
    what: str,
    report: Callable[[str], None],
    *,
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> subprocess.Popen[bytes] | None:
    """Open ``target``; on failure call ``report("Could not open <what>: why ...")``
    (now, or from the thread that waits for the opener). Returns the opener's
    process (None on Windows or when it could not start)."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        try:
            threads.open_with_system(target)
        except OSError as exc:
            report(f"Could not open {what}: {exc}. Open {target} yourself.")
        return None
    argv = opener_argv(target, env, platform)
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        hint = " (install xdg-utils)" if argv[0] == "xdg-open" else ""
        report(f"Could not open {what}: {argv[0]} not found{hint}. Open {target} yourself.")
        return None
    started = clock()

    def exited(code: int) -> None:
        if code != 0 and clock() - started <= WATCH_S:
            why = _XDG_EXIT.get(code, "") if argv[0] == "xdg-open" else ""
            detail = f"{argv[0]} exited with {code}" + (f": {why}" if why else "")
            report(f"Could not open {what}: {detail}. Open {target} yourself.")

    try:
        return threads.start_watched_process(
            argv,
            exited,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(env),
        )
    except OSError as exc:
        report(f"Could not open {what}: {argv[0]}: {exc.strerror or exc}. Open {target} yourself.")
        return None
