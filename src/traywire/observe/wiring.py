"""How the request log joins an app: opened when the app starts, closed (what
is queued written first) when it stops, and handed explicitly to whoever
reads it.

`setup` makes the app's `RequestLogHandle` (``app[REQUEST_LOG]``); the
server passes that same handle to the metrics, the dashboard and ``/status``.
When the app starts, the log the config's ``log:`` section asks for is opened
(off the loop), usage of the last window is fed to ``usage_based`` routing
(`seed_usage`), the log's observer joins the runtime's, and a supervisor
checks the writer every `CHECK_INTERVAL_S` (`RequestLog.check`). When the app
shuts down, after in-flight requests are done, the log is closed, waiting up
to `CLOSE_TIMEOUT_S` for what is queued. A log that cannot be opened is
reported (a warning, and ``/status``) and the proxy runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .. import threads
from ..config import LogSettings
from . import logfile
from .logqueries import LogQueries
from .reqlog import RequestLog

if TYPE_CHECKING:
    from ..proxy.health import Health
    from ..proxy.runtime import Runtime

__all__ = ["REQUEST_LOG", "RequestLogHandle", "seed_usage", "setup"]

log = logging.getLogger("traywire")

# Rows waiting for the writer, at most (about 1 KiB each).
QUEUE_SIZE: Final = 10000
# How often the proxy's loop checks on the writer.
CHECK_INTERVAL_S: Final = 5.0
# How long shutdown waits for the queued rows to be written.
CLOSE_TIMEOUT_S: Final = 10.0


class RequestLogHandle:
    """One app's request log: ``writer`` (it queues records) and ``queries``
    (the dashboard reads through it) while the log is open; both None before
    the app starts, after it stops, when the config turns the log off, or when
    it could not be opened (``problem`` says why)."""

    def __init__(self, settings: LogSettings) -> None:
        self.settings = settings
        self.writer: RequestLog | None = None
        self.queries: LogQueries | None = None
        self.problem: str | None = None

    def status(self) -> dict[str, Any]:
        """``/status``' ``request_log``: whether it is on, and its counters."""
        if self.writer is None:
            return {
                "enabled": self.settings.enabled,
                "open": False,
                "path": str(logfile.path_for(self.settings)) if self.settings.enabled else None,
                "problem": self.problem,
            }
        return {"enabled": True, "open": True, **self.writer.counters()._asdict()}


REQUEST_LOG: web.AppKey[RequestLogHandle] = web.AppKey("request_log", RequestLogHandle)


def seed_usage(
    health: Health, queries: LogQueries, now_wall: float, now_mono: float, window_s: float
) -> int:
    """Feed the last ``window_s`` seconds of token usage from the log into
    ``health`` (so ``usage_based`` routing survives a restart). Each bucket is
    counted at the monotonic time matching when its requests finished, so it
    leaves the window when it would have had traywire kept running. Returns the
    number of tokens seeded. Call it on the thread that owns ``health``.
    """
    total = 0
    # oldest first, as Health.add_usage expects
    for b in queries.usage_buckets(now_wall - window_s, health.usage_bucket_s):
        health.add_usage(b.model, now_mono - max(0.0, now_wall - b.t), b.tokens)
        total += b.tokens
    return total


def _open(settings: LogSettings) -> tuple[RequestLog, LogQueries]:
    writer = RequestLog.from_settings(settings, queue_size=QUEUE_SIZE)
    try:
        return writer, LogQueries(writer.path)
    except BaseException:
        writer.close()
        raise


async def _supervise(writer: RequestLog) -> None:
    while True:
        await asyncio.sleep(CHECK_INTERVAL_S)
        writer.check()


def setup(app: web.Application, rt: Runtime) -> RequestLogHandle:
    """The app's request log handle (see the module docstring)."""
    handle = RequestLogHandle(rt.cfg.log)
    app[REQUEST_LOG] = handle

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings = handle.settings
        if not settings.enabled:
            yield
            return
        try:
            writer, queries = await threads.run_blocking(_open, settings)
        except (OSError, sqlite3.Error) as exc:
            where = logfile.path_for(settings)
            handle.problem = f"cannot open {where}: {exc}"
            log.warning("request log disabled: %s", handle.problem)
            yield
            return
        try:
            # Before the listener opens: no request waits for this read.
            seed_usage(
                rt.health, queries, time.time(), time.monotonic(), rt.cfg.health.usage_window
            )
        except sqlite3.Error as exc:
            log.warning("request log: cannot read past usage: %s", exc)
        handle.writer, handle.queries = writer, queries
        rt.observers.append(writer.observe)
        supervisor = asyncio.create_task(_supervise(writer), name="traywire-request-log-check")
        try:
            yield
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            if writer.observe in rt.observers:
                rt.observers.remove(writer.observe)
            handle.writer = handle.queries = None
            await threads.run_blocking(writer.close, CLOSE_TIMEOUT_S)
            queries.close()

    app.cleanup_ctx.append(lifecycle)
    return handle
