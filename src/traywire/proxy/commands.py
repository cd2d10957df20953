"""The processes the vLLM switch runs: its commands and the servers it manages.

Commands are argv lists (never a shell). Each runs in its own session (its
process group is its pid) with stdin from /dev/null and output to files, so a
server a command leaves running in the background cannot hold up the switch;
one that overruns its timeout is killed with its group. A managed server
appends to its log file (after a line that marks each start; a log past
`LOG_ROTATE_BYTES` is moved aside); stopping it is SIGTERM to its group, SIGKILL after a
grace period. Every failure leaves as `SwitchError`, with the output that
explains it. Processes start only through `traywire.threads`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .. import threads
from ..core.schema import Config, SwitchSettings

__all__ = [
    "LOG_ROTATE_BYTES",
    "Child",
    "SwitchError",
    "exit_text",
    "run_command",
    "signal_group",
    "start_server",
    "tail_file",
    "terminate",
]

log = logging.getLogger("traywire")

# Seconds a timed-out command gets between SIGTERM and SIGKILL.
_KILL_GRACE = 5.0
# How much of a command's output or a server log is kept for the report.
_TAIL_CHARS = 2000
# A managed server's log past this size is moved aside when it starts again.
LOG_ROTATE_BYTES = 16 << 20


class SwitchError(Exception):
    """Why a switch failed, with the output that explains it."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass
class Child:
    """A server traywire started for a member of an exclusive group."""

    member: str
    group: str
    proc: asyncio.subprocess.Process
    log: Path
    stop_timeout: float
    log_start: int = 0  # where this run's output begins in the log


def child_env(cfg: Config) -> dict[str, str]:
    """traywire's environment for the servers and commands it runs, less the
    variables its own keys come from (``env:VAR`` references, the server
    token's too): a vLLM server has no business with a cloud key."""
    refs = [b.key for b in cfg.backends.values() if b.key]
    if cfg.server.token:
        refs.append(cfg.server.token)
    hidden = {r.partition(":")[2] for r in refs if r.startswith("env:")}
    return {k: v for k, v in os.environ.items() if k not in hidden}


async def run_command(
    what: str, argv: tuple[str, ...], sw: SwitchSettings, env: dict[str, str] | None = None
) -> None:
    """Run the ``what`` command (stop or start) to its end; `SwitchError` if it
    cannot run, overruns ``sw.command_timeout`` or exits non-zero."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = await threads.start_process_async(
                argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=sw.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise SwitchError(
                f"{what} command {show(argv)} could not run: {exc.strerror or exc}"
            ) from None
        try:
            async with asyncio.timeout(sw.command_timeout):
                rc = await proc.wait()
        except TimeoutError:
            await terminate(proc, _KILL_GRACE)
            raise SwitchError(
                f"{what} command {show(argv)} did not finish within {sw.command_timeout:g} s",
                _output(out, err),
            ) from None
        except asyncio.CancelledError:
            await terminate(proc, _KILL_GRACE)
            raise
        if rc != 0:
            output = _output(out, err)
            lines = [ln for ln in (_tail(err) or _tail(out)).splitlines() if ln.strip()]
            why = f": {lines[-1].strip()}" if lines else ""
            raise SwitchError(f"{what} command {show(argv)} failed ({exit_text(rc)}){why}", output)


async def start_server(
    member: str,
    argv: tuple[str, ...],
    log_path: Path,
    cwd: str | None,
    env: dict[str, str] | None = None,
    *,
    now: float = 0.0,
) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``member``'s server (``argv``) in its own session, its output
    appended to ``log_path`` after a line that marks the start (``now``: the
    wall-clock time it names). A log past `LOG_ROTATE_BYTES` is moved to
    ``<name>.1`` first (one old log is kept). Returns the process and the
    offset in the log where this run's output begins."""
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        _rotate(log_path)
        with log_path.open("ab") as out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            out.write(f"===== {stamp} traywire starts {member}: {show(argv)}\n".encode())
            out.flush()
            start = out.tell()
            proc = await threads.start_process_async(
                argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
            return proc, start
    except OSError as exc:
        raise SwitchError(
            f"cannot start {member}'s server {show(argv)}: {exc.strerror or exc}"
        ) from None


def _rotate(path: Path) -> None:
    try:
        if path.stat().st_size > LOG_ROTATE_BYTES:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def signal_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Signal a process started with start_new_session (its group is its pid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if sys.platform == "win32":
            if proc.returncode is None:
                proc.send_signal(sig)
        else:
            os.killpg(proc.pid, sig)


async def terminate(proc: asyncio.subprocess.Process, grace: float) -> bool:
    """SIGTERM the process group, SIGKILL it after ``grace`` s; wait for the exit.

    Whatever is left of the group once the leader is gone (workers it did not
    take down) is killed too, so nothing outlives it. Returns whether the
    leader had to be killed (it outlived SIGTERM by ``grace`` s).
    """
    forced = False
    if proc.returncode is None:
        signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            forced = True
            log.warning("pid %s ignored SIGTERM for %g s: killing it", proc.pid, grace)
    signal_group(proc, signal.SIGKILL)
    await proc.wait()
    return forced


def show(argv: tuple[str, ...]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def exit_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


def _tail(f: IO[bytes]) -> str:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - _TAIL_CHARS))
    return f.read().decode("utf-8", "replace")


def _output(out: IO[bytes], err: IO[bytes]) -> str:
    parts = [(name, _tail(f).strip()) for name, f in (("stderr", err), ("stdout", out))]
    return "\n".join(f"{name}:\n{text}" for name, text in parts if text)


def tail_file(path: Path, start: int = 0) -> str:
    """The end of ``path`` from offset ``start`` on (a server log: this run's)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(start, size - _TAIL_CHARS))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""
