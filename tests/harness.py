"""Run the real proxy in a background thread with its own event loop, so tests
can use the synchronous `openai` and `ollama` clients against it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from traywire import config
from traywire.clock import SYSTEM, Clock
from traywire.proxy.runtime import Runtime
from traywire.server import Server

T = TypeVar("T")


def config_for(backends: Mapping[str, Mapping[str, Any]], extra: str = "") -> config.Config:
    """A config with `extends: none` from a YAML snippet: backends given as dicts."""
    import yaml

    doc = {"extends": "none", "backends": dict(backends)}
    text = yaml.safe_dump(doc, sort_keys=False) + extra
    return config.load_texts([("test.yaml", text)])


class ProxyThread:
    def __init__(
        self,
        cfg: config.Config,
        *,
        keys: Mapping[str, str | None] | None = None,
        probes: bool = False,
        token: str | None = None,
        host: str = "127.0.0.1",
        grace: float = 5.0,
        clock: Clock = SYSTEM,
        launch: bool = False,
        **server_kw: Any,
    ) -> None:
        """``launch``: start the active managed vLLM servers as traywire does
        (off by default, so switch tests start from nothing running)."""
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.rt = Runtime(cfg, keys=keys or {}, clock=clock)
        self.server = Server(self.rt, host, 0, token=token, grace=grace, **server_kw)
        self.probes = probes
        self.launch = launch

    def start(self) -> ProxyThread:
        self.thread.start()
        self.run(self.server.start(probes=self.probes, resolve_keys=False, launch=self.launch))
        return self

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call(self, fn: Any, *args: Any) -> Any:
        async def _do() -> Any:
            return fn(*args)

        return self.run(_do())

    def stop(self) -> None:
        try:
            self.run(self.server.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
