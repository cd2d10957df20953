"""A fresh `traywire serve` process answers the first request to each part
that loads at its first use (issue 17: start-up), with the official clients:
the Anthropic and Responses fronts (their dialect modules), an error in the
Anthropic dialect before anything of it is loaded, `auto`'s classifier on a
prompt that is not ASCII (its weights, its Unicode tokenizer), the metrics
page, the dashboard. Each must be answered as if it had been loaded at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest
from fakes import FakeBackend

REPLY = "Hello from the fake backend"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with FakeBackend("openai", name="fast", models=["m-up"], reply=REPLY) as fake:
        cfg = tmp_path / "traywire.yaml"
        cfg.write_text(
            "extends: none\n"
            f"log:\n  path: {tmp_path / 'requests.sqlite3'}\n"
            "health: {probe_interval: 3600}\n"
            f"backends:\n  fast: {{kind: openai, url: '{fake.url}/v1', location: local}}\n"
            "models:\n"
            "  m: {backend: fast, upstream: m-up, params_b: 1, tier: local,\n"
            "      context: 32000, capabilities: [chat, code, reasoning, analytical, creative]}\n"
            "routes:\n"
            + "".join(
                f"  {c}: {{strategy: direct, candidates: [m]}}\n"
                for c in ("chat", "code", "reasoning", "analytical", "creative")
            )
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv = [sys.executable, "-m", "traywire", "serve", "--config", str(cfg)]
        argv += ["--port", str(port), "--grace", "1"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
            assert proc.returncode == 0, err
            assert "Traceback" not in err, err


def test_first_requests_to_the_parts_loaded_at_first_use(served: str) -> None:
    url = served
    # an error said in the Anthropic dialect, before the front's modules are loaded
    r = httpx.post(f"{url}/v1/messages", content=b"{not json", timeout=20,
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body

    oa = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=20)
    # the Responses front, a stream first
    with oa.responses.stream(model="m", input="hi") as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
    assert text == REPLY
    assert oa.responses.create(model="m", input="hi").output_text == REPLY

    an = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, timeout=20)
    msg = an.messages.create(model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text" and msg.content[0].text == REPLY
    with an.messages.stream(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as st:
        assert st.get_final_text() == REPLY
    n = an.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
    assert n.input_tokens > 0

    # auto: the classifier's weights and its tokenizer for text that is not ASCII
    chat = oa.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Écris une fonction qui trie — 排序"}]
    )
    assert chat.choices[0].message.content == REPLY

    reply = ollama.Client(host=url, timeout=20).chat(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.message.content == REPLY

    metrics = httpx.get(f"{url}/metrics", timeout=20)
    assert metrics.status_code == 200 and "traywire_requests_total" in metrics.text
    ui = httpx.get(f"{url}/ui", timeout=20, follow_redirects=True)
    assert ui.status_code == 200 and "<html" in ui.text.lower()


def test_serve_starts_without_the_parts_it_loads_at_first_use(tmp_path: Path) -> None:
    """What `serve` imports before it listens (the same steps as `serve`, in
    one process): none of the parts above, nor the tray app, nor the keyring
    module when no key is referenced, nor aiohttp's client CA store."""
    code = f"""
import asyncio, ssl, sys
from traywire import cli
from traywire.tlsdefer import import_aiohttp
args = cli._parser().parse_args(["serve", "--config", {str(tmp_path / "c.yaml")!r}])
import_aiohttp()
from traywire import app, config
from traywire.proxy.runtime import Runtime
from traywire.server import Server

async def main():
    s = Server(Runtime(config.load(args.config)), "127.0.0.1", 0, grace=1)
    await s.start()
    await s.stop()
asyncio.run(main())
lazy = [m for m in sys.modules if m.startswith((
    "traywire.proxy.dialects.anthropic", "traywire.proxy.dialects.responses_api",
    "traywire.desktop.run", "traywire.desktop.opener", "traywire.livestate",
    "traywire.secrets", "traywire.proxy.shared", "traywire.observe.dashboard",
    "traywire.observe.exposition", "keyring", "pystray", "PIL", "redis", "difflib",
))]
lazy = [m for m in lazy if m not in ("traywire.proxy.shared_view",
                                     "traywire.observe.dashboard_routes")]
assert not lazy, lazy
import aiohttp.connector as c
assert ssl.SSLContext.cert_store_stats(c._SSL_CONTEXT_VERIFIED)["x509_ca"] == 0
print("ok")
"""
    (tmp_path / "c.yaml").write_text(
        "extends: none\nlog: {enabled: false}\n"
        "backends:\n  b: {kind: openai, url: 'http://127.0.0.1:9/v1', location: local}\n"
        "models:\n"
        "  m: {backend: b, params_b: 1, tier: local, context: 8000, capabilities: [chat]}\n"
    )
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip() == "ok"
