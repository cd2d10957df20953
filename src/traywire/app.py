"""Running traywire: the headless proxy (`traywire serve`).

The proxy's event loop runs here. Signals:

* SIGINT, SIGTERM stop it without cutting (`server.Server.stop`): no new
  connections, a new request on a kept-alive one gets 503, the requests
  accepted before get the grace period to finish, then the rest are ended
  with an error in their dialect.
* SIGHUP reloads the config file(s) (``systemctl reload traywire``); a bad
  config is logged and changes nothing. On Windows: ``POST /admin/reload``.

The preference and the active vLLM members are kept across restarts in the
state file (`traywire.statefile`), as the tray app keeps them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from . import config, startup, statefile, threads
from .errors import ConfigError
from .proxy.runtime import Runtime
from .proxy.switch import SwitchBusy
from .server import Server, settle_heap_soon

log = logging.getLogger("traywire")


def resolve_token(cfg: config.Config) -> str | None:
    if cfg.server.token is None:
        return None
    from . import secrets

    value = secrets.resolve(cfg.server.token)
    if not value:
        raise SystemExit(f"traywire: server.token {cfg.server.token} is not set")
    return value


def banner(url: str) -> str:
    """The line that says where traywire listens."""
    return f"traywire {url} — OpenAI: {url}/v1  Ollama: {url}  status: {url}/status"


async def run_server(
    cfg: config.Config,
    host: str,
    port: int,
    grace: float,
    stop: asyncio.Event,
    config_file: str | None = None,
    state_path: Path | None = None,
    on_runtime: Callable[[Runtime], None] | None = None,
) -> int:
    rt = Runtime(cfg)
    if on_runtime is not None:
        on_runtime(rt)
    keeper = statefile.Keeper(state_path or statefile.default_path())
    keeper.start(rt)  # before it listens: the remembered preference and members
    server = Server(rt, host, port, token=resolve_token(cfg), grace=grace, config_file=config_file)
    try:
        await server.start()
    except OSError as exc:
        print(f"traywire: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        await server.rt.close()
        return 1
    settle_heap_soon()
    print(banner(server.url), flush=True)
    for notice in await threads.run_blocking(startup.key_notices, cfg):
        print(notice, file=sys.stderr, flush=True)
    await stop.wait()
    print("traywire: stopping (finishing in-flight requests)…", file=sys.stderr, flush=True)
    await server.stop()
    await keeper.finish()
    return 0


async def reload(rt: Runtime) -> None:
    """SIGHUP: read the config again; what went wrong is logged, not raised."""
    try:
        await rt.reload_config("SIGHUP")
    except (ConfigError, SwitchBusy) as exc:
        log.error("config not reloaded (SIGHUP): %s", exc)
    except Exception:
        log.exception("config not reloaded (SIGHUP)")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The proxy's event loop: uvloop where it is installed (Linux, macOS; it
    roughly halves the loop's own cost per request), asyncio's otherwise.
    TRAYWIRE_LOOP=asyncio forces asyncio's."""
    if os.environ.get("TRAYWIRE_LOOP", "") != "asyncio":
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


def run_loop(coro: Coroutine[Any, Any, int]) -> int:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    cfg = config.load(args.config)
    host = args.host or cfg.server.host
    port = cfg.server.port if args.port is None else args.port
    try:
        return run_loop(_main(cfg, host, port, args.grace, args.config))
    except ValueError as exc:
        print(f"traywire: {exc}", file=sys.stderr)
        return 2


async def _main(
    cfg: config.Config, host: str, port: int, grace: float, config_file: str | None = None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    runtimes: list[Runtime] = []
    reloads: set[asyncio.Task[None]] = set()
    if hasattr(signal, "SIGHUP"):  # not on Windows

        def hup() -> None:
            if runtimes:
                task = loop.create_task(reload(runtimes[0]))
                reloads.add(task)
                task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, hup)
    return await run_server(cfg, host, port, grace, stop, config_file, on_runtime=runtimes.append)
