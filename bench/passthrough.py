"""A bare aiohttp pass-through proxy: the floor for any aiohttp proxy.

    python bench/passthrough.py --port PORT --upstream http://127.0.0.1:BACKEND

Every request's body goes to the same path on the upstream through one pooled
``aiohttp.ClientSession``; the response streams back chunk by chunk as it
arrives. Nothing else: no parsing, no validation, no routing. Listens on
127.0.0.1 only; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
from aiohttp import web

# hop-by-hop and length headers aiohttp sets itself
_SKIP = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 << 20)  # big-body rounds: up to 10 MB
    holder: dict[str, aiohttp.ClientSession] = {}

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
        holder["s"] = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trust_env=False
        )
        yield
        await holder["s"].close()

    app.cleanup_ctx.append(session_ctx)

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with holder["s"].request(
            request.method, upstream + request.path_qs, data=body, headers=headers
        ) as r:
            out = web.StreamResponse(
                status=r.status,
                headers={k: v for k, v in r.headers.items() if k.lower() not in _SKIP},
            )
            if r.content_length is not None:
                out.content_length = r.content_length  # no chunked framing when not needed
            await out.prepare(request)
            while True:
                chunk = await r.content.readany()
                if not chunk:
                    break
                await out.write(chunk)
            await out.write_eof()
            return out

    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def main(port: int, upstream: str) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"passthrough http://127.0.0.1:{port} -> {upstream}", flush=True)
    await stop.wait()
    await runner.cleanup()


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The same event loop traywire runs on (uvloop where installed), so the
    comparison measures the proxies' own work, not their loops'."""
    if kind == "uvloop":
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    a = ap.parse_args()
    with asyncio.Runner(loop_factory=lambda: new_event_loop(a.loop)) as runner:
        runner.run(main(a.port, a.upstream.rstrip("/")))
