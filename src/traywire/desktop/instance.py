"""One traywire app per user.

The first instance holds an exclusive lock on ``instance.lock`` in the
platformdirs state dir (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on
Windows; the OS drops it when the process dies, so a crash leaves no stale
lock) and writes its URL to ``instance.json`` beside it once it listens. A
second instance finds the lock taken, reads the URL and says where the first
one runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import IO

__all__ = ["InstanceLock", "acquire", "running_url"]

LOCK_NAME = "instance.lock"
INFO_NAME = "instance.json"


class InstanceLock:
    """The held lock. `publish` the URL once listening; `release` at exit."""

    def __init__(self, directory: Path, handle: IO[bytes]) -> None:
        self.directory = directory
        self._handle: IO[bytes] | None = handle

    @property
    def info_path(self) -> Path:
        return self.directory / INFO_NAME

    def publish(self, url: str) -> None:
        data = json.dumps({"url": url, "pid": os.getpid()}).encode()
        tmp = self.info_path.with_name(f".{INFO_NAME}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.info_path)

    def release(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            self.info_path.unlink()
        _unlock(self._handle)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(directory: Path) -> InstanceLock | None:
    """Take the per-user lock, or None if another instance holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK_NAME, "a+b")  # noqa: SIM115 (held until release)
    if not _try_lock(handle):
        handle.close()
        return None
    # Whatever a crashed predecessor left is stale now.
    with contextlib.suppress(OSError):
        (directory / INFO_NAME).unlink()
    return InstanceLock(directory, handle)


def running_url(directory: Path, wait: float = 10.0) -> str | None:
    """The URL the running instance published (waiting up to ``wait`` seconds
    for one that is still starting); None if it never says."""
    deadline = time.monotonic() + wait
    while True:
        try:
            info = json.loads((directory / INFO_NAME).read_text(encoding="utf-8"))
            url = info.get("url") if isinstance(info, dict) else None
            if isinstance(url, str) and url:
                return url
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


if sys.platform == "win32":
    import msvcrt

    def _try_lock(handle: IO[bytes]) -> bool:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        with contextlib.suppress(OSError):
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(handle: IO[bytes]) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
