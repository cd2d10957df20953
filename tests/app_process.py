"""The traywire app as a real process, for the app-level tests (instance, no
display, the tray under Xvfb)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from fakes import FakeBackend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    tmp_path: Path,
    fakes: Mapping[str, FakeBackend],
    *,
    routes: Mapping[str, Any] | None = None,
    health: Mapping[str, Any] | None = None,
    name: str = "traywire.yaml",
) -> Path:
    """A config (``extends: none``) with one OpenAI-kind local backend per fake,
    one model per backend (``m_<backend>`` for the fake's first model) and a
    ``chat`` route over all of them."""
    backends = {
        n: {"kind": "openai", "url": f.url + "/v1", "location": "local", "capacity": 4}
        for n, f in fakes.items()
    }
    models = {
        f"m_{n}": {
            "backend": n,
            "upstream": f.models[0],
            "params_b": 7,
            "tier": "local",
            "capabilities": ["chat"],
            "context": 8192,
        }
        for n, f in fakes.items()
    }
    doc: dict[str, Any] = {
        "extends": "none",
        "health": dict(
            # probes time out at 0.8 x the interval: 1 s keeps a loaded CI machine
            # from failing healthy backends
            health or {"probe_interval": 1.0, "failure_threshold": 1, "cooldown": 1}
        ),
        "backends": backends,
        "models": models,
        "routes": dict(
            routes or {"chat": {"strategy": "direct", "candidates": [f"m_{n}" for n in fakes]}}
        ),
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class App:
    """``python -m traywire ARGS`` (or another script) with stdout/stderr collected."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str | None] | None = None,
        script: str | None = None,
        stdin: bool = False,
    ) -> None:
        merged = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        self.env = merged
        self.port = _port_of(args)
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, script] if script else [sys.executable, "-m", "traywire"]
        self.proc = subprocess.Popen(
            [*cmd, *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=merged,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"traywire exited with {self.proc.returncode}:\n{self.stdout}\n{self.stderr}"
                )
            try:
                self.get("/health", timeout=0.5)
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"traywire did not listen on {self.url}:\n{self.stderr}")

    def get(self, path: str, timeout: float = 5) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, body: Any, timeout: float = 5) -> Any:
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def wait_for(self, text: str, timeout: float = 15, stream: str = "stderr") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in (self.stderr if stream == "stderr" else self.stdout):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in {stream}:\n{self.stdout}\n{self.stderr}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_exit(self, timeout: float = 30) -> int:
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.wait_exit(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):  # a pipe whose reader is gone
                    stream.close()
        return rc, self.stdout, self.stderr


def _port_of(args: Sequence[str]) -> int:
    args = list(args)
    if "--port" in args:
        return int(args[args.index("--port") + 1])
    return 0
