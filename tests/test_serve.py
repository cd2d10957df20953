"""`traywire serve` as a user runs it: a real process on the default
configuration's chains, official clients, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from fakes import FakeBackend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


class Serve:
    def __init__(self, config: Path, env: dict[str, str] | None = None, grace: float = 3) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "traywire",
                "serve",
                "--config",
                str(config),
                "--port",
                str(self.port),
                "--grace",
                str(grace),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"traywire serve exited: {self.proc.communicate()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("traywire serve did not start listening")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@pytest.fixture
def cloud() -> Iterator[FakeBackend]:
    with FakeBackend(
        "ollama",
        name="cloud",
        models=[
            "deepseek-v3.1:671b",
            "kimi-k2:1t",
            "gpt-oss:120b",
            "gpt-oss:20b",
            "qwen3-coder:480b",
            "glm-4.6",
        ],
    ) as f:
        yield f


@pytest.fixture
def local() -> Iterator[FakeBackend]:
    with FakeBackend(
        "ollama", name="local", models=["llama3.1:latest", "qwen2.5-coder:7b", "mythomax-l2-13b"]
    ) as f:
        yield f


@pytest.fixture
def vllm() -> Iterator[FakeBackend]:
    with FakeBackend("openai", name="vllm", models=["Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"]) as f:
        yield f


def overlay(tmp_path: Path, cloud: str, local: str, vllm: str) -> Path:
    """The built-in default, with backend URLs pointed at the test's servers."""
    p = tmp_path / "overlay.yaml"
    p.write_text(
        "health: {probe_interval: 60, cooldown: 60}\n"
        "backends:\n"
        f"  ollama: {{url: '{local}'}}\n"
        f"  ollama_cloud: {{url: '{cloud}', key: 'env:TW_TEST_CLOUD_KEY'}}\n"
        f"  vllm_qwen: {{url: '{vllm}/v1'}}\n"
        f"  vllm_dolphin: {{url: '{dead_url()}/v1'}}\n"
        f"  llama_cpp_native: {{url: '{dead_url()}/v1'}}\n"
        f"  llama_cpp_python: {{url: '{dead_url()}/v1'}}\n"
    )
    return p


def test_default_chains_answer_with_the_first_backend_dead(
    tmp_path: Path, cloud: FakeBackend, local: FakeBackend, vllm: FakeBackend
) -> None:
    # Ollama's cloud is down: deepseek's chain (kimi, gpt-oss:120b) is all
    # cloud, so the answer comes from local llama3.1, the chain's last resort.
    cloud.refuse()
    srv = Serve(
        overlay(tmp_path, cloud.url, local.url, vllm.url),
        env={"TW_TEST_CLOUD_KEY": "sk-test-cloud"},
    )
    try:
        oc = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        raw = oc.chat.completions.with_raw_response.create(
            model="deepseek-v3.1:671b-cloud", messages=[{"role": "user", "content": "Why?"}]
        )
        reply = raw.parse()
        assert raw.headers["x-traywire-backend"] == "ollama"
        assert raw.headers["x-traywire-model"] == "llama3.1:latest"
        assert raw.headers["x-traywire-attempts"] == "4"
        assert "Hello from local" in (reply.choices[0].message.content or "")
        assert reply.model == "deepseek-v3.1:671b-cloud"
        assert local.last_request is not None
        assert local.last_request.json["model"] == "llama3.1:latest"

        # the Ollama client, streaming, on the code route: complex code wants
        # qwen3-coder in the cloud (down; its circuit is open by now), then
        # gpt-oss:120b (cloud), then the local vLLM qwen
        oc_ = ollama.Client(host=srv.url)
        prompt = "Refactor this Python module: " + "def f(x): return x\n" * 40
        chunks = list(
            oc_.chat(model="code", messages=[{"role": "user", "content": prompt}], stream=True)
        )
        text = "".join(c.message.content or "" for c in chunks)
        assert "Hello from vllm" in text
        assert chunks[-1].done
        assert vllm.last_request is not None
        assert vllm.last_request.json["model"] == "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"

        # cloud comes back: the key goes to it, and only to it
        cloud.revive()
        r = ollama.Client(host=srv.url).chat(
            model="glm-4.6:cloud", messages=[{"role": "user", "content": "hi"}]
        )
        assert r.message.content
    finally:
        code, out, err = srv.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert "sk-test-cloud" not in out + err
    for fake in (local, vllm):
        for req in fake.requests:
            assert "sk-test-cloud" not in str(req.headers)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly_and_let_a_stream_finish(
    tmp_path: Path, sig: int, cloud: FakeBackend, local: FakeBackend, vllm: FakeBackend
) -> None:
    local.chunk_delay = 0.15  # a slow stream: about 1.5 s in all
    srv = Serve(overlay(tmp_path, cloud.url, local.url, vllm.url))
    import threading

    got: list[str] = []
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            for c in ollama.Client(host=srv.url).chat(
                model="llama3.1:latest",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            ):
                got.append(c.message.content or "")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=stream)
    t.start()
    local.wait_for_requests(1, timeout=10)
    time.sleep(0.2)
    code, _out, err = srv.stop(sig)
    t.join(10)
    assert code == 0, err
    assert "Traceback" not in err
    assert not errors, errors
    assert "Hello from local" in "".join(got)  # finished within the grace period


def test_serve_refuses_a_non_loopback_listener_without_a_token(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "traywire", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "needs a token" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "traywire", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr


def wait_for_chat(fake: FakeBackend, timeout: float = 10) -> None:
    """Until ``fake`` has received a chat request (probes do not count)."""
    deadline = time.monotonic() + timeout
    while not any(r.path == "/api/chat" for r in fake.requests):
        assert time.monotonic() < deadline, "no chat request reached the backend"
        time.sleep(0.02)


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_a_stream_longer_than_the_grace_period_ends_with_an_error_not_a_cut(
    tmp_path: Path, dialect: str, cloud: FakeBackend, local: FakeBackend, vllm: FakeBackend
) -> None:
    local.chunk_delay = 0.5  # about 5 s in all, the grace period is 1 s
    srv = Serve(overlay(tmp_path, cloud.url, local.url, vllm.url), grace=1)
    import threading

    lines: list[bytes] = []
    errors: list[BaseException] = []
    path = "/v1/chat/completions" if dialect == "openai" else "/api/chat"

    def stream() -> None:
        try:
            with httpx.stream(
                "POST",
                srv.url + path,
                json={
                    "model": "llama3.1:latest",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": True,
                },
                timeout=20,
            ) as r:
                lines.extend(line.encode() for line in r.iter_lines() if line)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=stream)
    t.start()
    wait_for_chat(local)
    time.sleep(0.3)
    started = time.monotonic()
    code, _out, err = srv.stop(signal.SIGTERM)
    t.join(10)
    assert time.monotonic() - started < 8  # the grace period, not the whole stream
    assert code == 0, err
    assert "Traceback" not in err
    assert not errors, errors  # a complete HTTP response, not a cut connection
    if dialect == "openai":
        assert lines[-1] == b"data: [DONE]"
        last = json.loads(lines[-2].removeprefix(b"data: "))
        assert "shutting down" in last["error"]["message"]
    else:
        last = json.loads(lines[-1])
        assert "shutting down" in last["error"]
    assert len(lines) >= 3  # some content came through before the end


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_unanswered_after_the_grace_period_gets_a_503(
    tmp_path: Path, stream: bool, cloud: FakeBackend, local: FakeBackend, vllm: FakeBackend
) -> None:
    local.hang(paths=["/api/chat"])  # the backend never answers
    srv = Serve(overlay(tmp_path, cloud.url, local.url, vllm.url), grace=1)
    import threading

    got: list[httpx.Response] = []

    def ask() -> None:
        got.append(
            httpx.post(
                srv.url + "/v1/chat/completions",
                json={
                    "model": "llama3.1:latest",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": stream,
                },
                timeout=20,
            )
        )

    t = threading.Thread(target=ask)
    t.start()
    wait_for_chat(local)
    code, _out, err = srv.stop(signal.SIGTERM)
    t.join(10)
    assert code == 0, err
    assert "Traceback" not in err
    (r,) = got
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "shutting_down"
    assert "shutting down" in r.json()["error"]["message"]
