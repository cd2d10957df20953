"""A stand-in for `vllm serve`, run as a real process by the switch tests.

    python tests/fake_vllm.py --model ORG/NAME --port 8001 [options]

Serves the OpenAI API on 127.0.0.1: ``GET /v1/models`` lists the model,
``POST /v1/chat/completions`` answers "Hello from <model>" (streamed as SSE
when asked, one word per chunk, ``--chunk-delay`` seconds apart), ``GET
/health`` answers 200. Options:

``--slow-start S``    sleep S seconds before listening (a model load).
``--never-ready``     listen, but answer 503 "model is loading" to everything.
``--ignore-sigterm``  keep running on SIGTERM (only SIGKILL stops it).
``--worker-pidfile F`` start a sleeping child in the same process group (like
                      vLLM's engine workers) and write its pid to F.
``--pidfile F``       write this process's pid to F once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from aiohttp import web


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--slow-start", type=float, default=0.0)
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--chunk-delay", type=float, default=0.0)
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--worker-pidfile")
    p.add_argument("--pidfile")
    return p.parse_args(argv)


def _app(args: argparse.Namespace) -> web.Application:
    reply = f"Hello from {args.model} on port {args.port}"

    def loading() -> web.Response:
        body = {"error": {"message": "model is loading", "type": "ServiceUnavailable"}}
        return web.json_response(body, status=503)

    async def models(request: web.Request) -> web.Response:
        if args.never_ready:
            return loading()
        entry = {"id": args.model, "object": "model", "created": 0, "owned_by": "vllm"}
        return web.json_response({"object": "list", "data": [entry]})

    async def health(request: web.Request) -> web.Response:
        return loading() if args.never_ready else web.Response(text="")

    async def chat(request: web.Request) -> web.StreamResponse:
        if args.never_ready:
            return loading()
        body: dict[str, Any] = await request.json()
        if body.get("model") != args.model:
            msg = f"The model `{body.get('model')}` does not exist."
            return web.json_response({"error": {"message": msg, "code": 404}}, status=404)
        created = int(time.time())
        base = {"id": "chatcmpl-fake", "created": created, "model": args.model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
            return web.json_response(
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        for i, word in enumerate(reply.split(" ")):
            await asyncio.sleep(args.chunk_delay)
            await send({"content": word if i == 0 else " " + word})
        await send({}, "stop")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def _serve(args: argparse.Namespace) -> None:
    if args.slow_start > 0:
        await asyncio.sleep(args.slow_start)
    runner = web.AppRunner(_app(args), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(str(os.getpid()))
    print(f"fake vLLM serving {args.model} on {args.host}:{args.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if not args.ignore_sigterm:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    print("fake vLLM shutting down", flush=True)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = None
    if args.worker_pidfile:
        code = "import time\nwhile True: time.sleep(60)"
        worker = subprocess.Popen([sys.executable, "-c", code])
        with open(args.worker_pidfile, "w") as f:
            f.write(str(worker.pid))
    print(f"fake vLLM loading {args.model}", flush=True)
    asyncio.run(_serve(args))
    if worker is not None:
        worker.terminate()


if __name__ == "__main__":
    main()
