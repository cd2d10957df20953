"""The one place where traywire starts threads and child processes.

Every thread, child process and blocking call handed to a worker thread goes
through here, so one file says what runs concurrently and how it starts
(`tests/test_thread_rule.py` fails on any other module that starts one):

* `start_thread`: a named thread, started at once (the proxy's loop thread,
  the tray's status poller, the request log's writer, a Quit that drains
  requests without freezing the tray);
* `run_blocking`: a blocking call (keyring, config file, SQLite reads) on
  asyncio's default executor, awaited from the event loop;
* `start_process` / `run_process`: a child process from plain code (the
  clipboard tools);
* `start_watched_process`: a child process a thread waits for, so it is
  reaped (never left a zombie) and its exit status reported (opening a file or
  URL with the desktop's application);
* `start_process_async`: a child process owned by the event loop (the vLLM
  servers and switch commands of an exclusive group);
* `open_with_system`: Windows' "open with the associated application".

Standard library only: this module knows nothing of what the threads do.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "open_with_system",
    "run_blocking",
    "run_process",
    "start_process",
    "start_process_async",
    "start_thread",
    "start_watched_process",
]

P = ParamSpec("P")
T = TypeVar("T")


def start_thread(
    target: Callable[[], object], name: str, *, daemon: bool = True
) -> threading.Thread:
    """Start ``target()`` on a new thread called ``name`` and return the thread.

    ``daemon``: the interpreter may exit while it runs (the default); a
    non-daemon thread is waited for at exit.
    """
    thread = threading.Thread(target=target, name=name, daemon=daemon)
    thread.start()
    return thread


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on a worker thread, awaited (``asyncio.to_thread``)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def start_process(argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` (``subprocess.Popen``'s keywords) and return it, running."""
    return subprocess.Popen(list(argv), **popen_kw)


def start_watched_process(
    argv: Sequence[str], on_exit: Callable[[int], None], **popen_kw: Any
) -> subprocess.Popen[bytes]:
    """Start ``argv`` and a daemon thread that waits for it to end (reaping
    it) and then calls ``on_exit(returncode)`` on that thread."""
    proc = subprocess.Popen(list(argv), **popen_kw)

    def reap() -> None:
        on_exit(proc.wait())

    start_thread(reap, f"reap {os.path.basename(argv[0])}")
    return proc


def run_process(argv: Sequence[str], **run_kw: Any) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to its end (``subprocess.run``'s keywords; give a timeout)."""
    return subprocess.run(list(argv), **run_kw)


async def start_process_async(argv: Sequence[str], **kw: Any) -> asyncio.subprocess.Process:
    """Start ``argv`` as a child of the running event loop
    (``asyncio.create_subprocess_exec``'s keywords)."""
    return await asyncio.create_subprocess_exec(*argv, **kw)


def open_with_system(target: str) -> None:
    """Windows: open ``target`` with its associated application (``os.startfile``)."""
    os.startfile(target)  # type: ignore[attr-defined]
