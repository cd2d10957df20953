"""Importing aiohttp without loading its client's CA certificates at start.

aiohttp builds two TLS contexts for its *client* when it is imported
(``aiohttp.connector``): each loads the system's CA bundle, ~25 ms and ~1 MiB
apiece, before anything else can run. traywire serves with aiohttp but never
uses its client (backends are reached through `proxy.transport`, which makes
its own context when an https backend needs one), so `import_aiohttp` - called
by the commands that run the proxy, before anything imports aiohttp - defers
that loading: while aiohttp is imported, loading the default CA certificates
(`ssl.SSLContext.load_default_certs`, ``set_default_verify_paths``) is
recorded instead of done, and each context so made loads them at its first
use (its first TLS connection: ``wrap_bio``/``wrap_socket``; or a look at its
store), under a lock, exactly as it would have at import. Nothing else
changes: the contexts are ssl's own, with the same settings; the patch is
undone before `import_aiohttp` returns. If aiohttp is already imported, or
makes its contexts some other way one day, this does nothing.
"""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["import_aiohttp"]

# What a context does with its CA certificates: these load them first.
_USES = ("wrap_socket", "wrap_bio", "get_ca_certs", "cert_store_stats")
_DEFERRED = ("load_default_certs", "set_default_verify_paths")


def _defer(ctx: ssl.SSLContext, load: Callable[[], object]) -> None:
    """Make ``ctx`` run ``load`` once, before its first use."""
    lock = threading.Lock()
    cls = type(ctx)

    def ready() -> None:
        with lock:
            if _USES[0] in ctx.__dict__:  # not loaded yet
                for name in _USES:  # the class's methods again, from now on
                    ctx.__dict__.pop(name, None)
                load()

    def wrapper(name: str) -> Callable[..., Any]:
        method = getattr(cls, name)

        def use(*args: Any, **kwargs: Any) -> Any:
            ready()
            return method(ctx, *args, **kwargs)

        return use

    for name in _USES:
        ctx.__dict__[name] = wrapper(name)


def import_aiohttp() -> None:
    """Import aiohttp, its client's default CA certificates loaded at their
    first use rather than now (see the module's doc)."""
    if "aiohttp" in sys.modules:
        return
    cls = ssl.SSLContext
    saved = {name: cls.__dict__.get(name) for name in _DEFERRED}
    real = {name: getattr(cls, name) for name in _DEFERRED}
    pending: list[tuple[ssl.SSLContext, str, tuple[Any, ...]]] = []

    def recorder(name: str) -> Callable[..., None]:
        def record(self: ssl.SSLContext, *args: Any) -> None:
            pending.append((self, name, args))

        return record

    for name in _DEFERRED:
        setattr(cls, name, recorder(name))
    try:
        import aiohttp  # noqa: F401
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(cls, name)
            else:
                setattr(cls, name, value)
    loads: dict[int, list[tuple[str, tuple[Any, ...]]]] = {}
    contexts: dict[int, ssl.SSLContext] = {}
    for ctx, name, args in pending:
        contexts[id(ctx)] = ctx
        loads.setdefault(id(ctx), []).append((name, args))
    for key, ctx in contexts.items():

        def load(ctx: ssl.SSLContext = ctx, calls: list[Any] = loads[key]) -> None:
            for name, args in calls:
                real[name](ctx, *args)

        _defer(ctx, load)
