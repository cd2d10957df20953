"""A minimal, fast fake OpenAI backend for bench/bench_proxy.py (not instrumented).

    python bench/fast_backend.py --port PORT [--chunks 20]

aiohttp's low-level server (no router, no middlewares):

- ``POST /v1/chat/completions``: a small fixed JSON, or with ``"stream": true``
  ``--chunks`` SSE events then ``data: [DONE]``. A model named ``delay-<ms>``
  sleeps that many milliseconds between stream events (the first one goes out
  at once); any other model streams without a pause.
- ``GET /v1/models``, ``GET /health``.

Listens on 127.0.0.1 only. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal

from aiohttp import web

MODEL = "bench"

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! This is a benchmark reply."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    },
    separators=(",", ":"),
).encode()

_MODELS = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "b"}]}
).encode()


def _event(i: int, last: bool) -> bytes:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "delta": {"content": f"tok{i} "} if not last else {},
                "finish_reason": "stop" if last else None,
            }
        ],
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


_JSON = {"Content-Type": "application/json"}
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"]*)"')
_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def make_handler(chunks: int) -> web.Server:
    events = [_event(i, i == chunks - 1) for i in range(chunks)]
    done = b"data: [DONE]\n\n"

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if request.method == "POST" and path == "/v1/chat/completions":
            raw = await request.content.read()  # no 1 MiB cap: big-body rounds
            # read without decoding the body: a big one (the big-body rounds)
            # would stall this server, and every target with it
            if not _STREAM.search(raw):
                return web.Response(body=_COMPLETION, headers=_JSON)
            found = _MODEL.search(raw)
            model = found.group(1).decode() if found else ""
            delay = float(model[6:]) / 1000 if model.startswith("delay-") else 0.0
            resp = web.StreamResponse(headers=_SSE)
            await resp.prepare(request)
            for i, ev in enumerate(events):
                if i and delay:
                    await asyncio.sleep(delay)
                await resp.write(ev)
            await resp.write(done)
            await resp.write_eof()
            return resp
        if path == "/v1/models":
            return web.Response(body=_MODELS, headers=_JSON)
        if path == "/health":
            return web.Response(text="ok")
        return web.Response(status=404, text="not found")

    return web.Server(handle, access_log=None)


async def main(port: int, chunks: int) -> None:
    server = make_handler(chunks)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(server, "127.0.0.1", port, reuse_address=True, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fast_backend http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    srv.close()
    await server.shutdown(1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--chunks", type=int, default=20)
    a = ap.parse_args()
    asyncio.run(main(a.port, a.chunks))
