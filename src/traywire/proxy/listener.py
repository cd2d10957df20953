"""The listening socket, bounded: how many connections, and for how long a
connection may take to say what it wants.

- At most ``max_connections`` connections at once. Past that, a new
  connection gets ``503`` (JSON, ``Retry-After: 1``) and is closed at once,
  and traywire says so in its log (at most once every `SHED_LOG_EVERY`
  seconds, with the count since the last line), instead of running out of
  file descriptors and failing everyone.
- A connection must complete its request head within the keep-alive timeout
  (aiohttp closes a connection whose request has not arrived by then, counted
  from the connection's start or its last answer): a client sending one byte
  every ten seconds holds nothing for long.
- The listen backlog holds as many connections as may be open at once
  (aiohttp's default, 128, overflowed when a thousand clients connected
  together: the kernel dropped their SYNs and they waited for retries or
  were reset). The OS caps it (``net.core.somaxconn``).
- `raise_open_file_limit` lifts the soft limit on open files to the hard one
  at start (the common desktop soft limit, 1024, is far below what a proxy
  with many streaming clients needs).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ..clock import SYSTEM, Clock

log = logging.getLogger("traywire")

SHED_LOG_EVERY = 10.0  # seconds between "shedding" log lines
_SHED_BODY = (
    b'{"error":{"message":"traywire is at its connection limit; try again shortly",'
    b'"type":"service_unavailable_error","param":null,"code":"too_many_connections"}}'
)
_SHED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_SHED_BODY)).encode()
    + b"\r\n\r\n"
    + _SHED_BODY
)


class OneLineLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger, for requests that are not even HTTP: one
    line with the reason, not a traceback at ERROR."""

    def exception(self, msg: object, *args: object, **kw: Any) -> None:
        exc = kw.pop("exc_info", None)
        reason = ""
        if isinstance(exc, BaseException):
            reason = ": " + " ".join(str(exc).split())[:200]
        self.logger.info(f"{msg}{reason}", *args)


class _Shed(asyncio.Protocol):
    """A connection past the limit: told so, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(_SHED)  # type: ignore[attr-defined]
        transport.close()


class Shedder:
    """Counts connections refused past the limit and says so, rate-limited."""

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self.shed = 0  # since start
        self._unsaid = 0
        self._said_at: float | None = None

    def refuse(self, limit: int) -> asyncio.Protocol:
        self.shed += 1
        self._unsaid += 1
        now = self.clock.monotonic()
        if self._said_at is None or now - self._said_at >= SHED_LOG_EVERY:
            log.warning(
                "at the connection limit (%d): refused %d new connection(s) with 503",
                limit,
                self._unsaid,
            )
            self._said_at, self._unsaid = now, 0
        return _Shed()


class CappedSite(web.TCPSite):
    """`web.TCPSite` that refuses connections past ``max_connections``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        max_connections: int,
        clock: Clock = SYSTEM,
        **kw: Any,
    ) -> None:
        # a backlog for as many connections as are let in at once
        kw.setdefault("backlog", max(128, max_connections))
        super().__init__(runner, host, port, **kw)
        self.max_connections = max_connections
        self.shedder = Shedder(clock)

    async def start(self) -> None:
        # BaseSite.start registers the site; TCPSite.start would then listen
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limit = self.max_connections

        def factory() -> asyncio.Protocol:
            if len(server.connections) >= limit:
                return self.shedder.refuse(limit)
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


def raise_open_file_limit() -> tuple[int, int] | None:
    """Lift the soft open-file limit to the hard one where the OS allows;
    returns the (soft, hard) limits now, or None where there are none."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft, hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return soft, hard  # e.g. macOS refuses more than OPEN_MAX: keep what there is
    return want, hard


def connection_limit(configured: int, soft_nofile: int | None) -> int:
    """The connection cap: as configured, but leaving room in the open-file
    limit for backend connections, the request log and the rest."""
    if soft_nofile is None:
        return configured
    return max(16, min(configured, (soft_nofile - 64) // 2))
