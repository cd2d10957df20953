"""Switching the active vLLM model (exclusive_groups.G.switch), against fake vLLM
servers that run as real processes (tests/fake_vllm.py), in both modes:
`managed` (traywire runs the servers) and `commands` (a control script the test
writes starts and stops them, keeping pidfiles)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend
from harness import ProxyThread

from traywire import config
from traywire.core import routing
from traywire.errors import ConfigError
from traywire.types import RouteRequest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

FAKE = str(Path(__file__).with_name("fake_vllm.py"))
QWEN = "Qwen/Fake-Coder-AWQ"
DOLPHIN = "solidrust/fake-dolphin-AWQ"


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """Is ``pid`` a live process (a zombie waiting for its reaper counts as gone)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def http(
    method: str, url: str, body: Any = None, timeout: float = 15.0
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status, headers = r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, dict(e.headers)
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode()


def lists(port: int, model: str) -> bool:
    try:
        status, _, doc = http("GET", f"http://127.0.0.1:{port}/v1/models", timeout=1)
    except OSError:
        return False
    return status == 200 and any(e.get("id") == model for e in doc.get("data", []))


def chat(p: ProxyThread, model: str) -> tuple[int, dict[str, str], Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return http("POST", p.url + "/v1/chat/completions", body)


def switch_state(p: ProxyThread, group: str = "vllm") -> dict[str, Any]:
    return p.call(p.rt.status)["switching"][group]  # type: ignore[no-any-return]


def wait_switched(p: ProxyThread, timeout: float = 20.0) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        s = switch_state(p)
        return s if s["phase"] in ("done", "failed") else None

    return wait_until(finished, timeout, "the switch to finish")  # type: ignore[no-any-return]


def plan(p: ProxyThread, model: str) -> Any:
    snap = p.call(p.rt.snapshot)
    return routing.decide(RouteRequest(model=model, prompt="hi", last_user="hi"), p.cfg, snap)


def serve_argv(model: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, FAKE, "--model", model, "--port", str(port), *extra]


# --------------------------------------------------------------------------- setup


class Env:
    """Ports, the chain's fake backend, and a config writer for one test."""

    def __init__(self, tmp: Path, other: FakeBackend) -> None:
        self.tmp = tmp
        self.other = other
        self.port_q = free_port()
        self.port_d = free_port()
        self.procs: list[ProxyThread] = []

    def make_config(self, switch: dict[str, Any] | None) -> config.Config:
        group: dict[str, Any] = {"active": "vq"}
        if switch is not None:
            group["switch"] = switch

        def local(url: str, **more: Any) -> dict[str, Any]:
            return {"kind": "openai", "url": url + "/v1", "location": "local", **more}

        def model(backend: str, upstream: str, cap: str) -> dict[str, Any]:
            return {
                "backend": backend,
                "upstream": upstream,
                "params_b": 7,
                "tier": "local",
                "capabilities": [cap],
                "context": 32768,
            }

        doc = {
            "extends": "none",
            "backends": {
                "vq": local(f"http://127.0.0.1:{self.port_q}", exclusive_group="vllm"),
                "vd": local(f"http://127.0.0.1:{self.port_d}", exclusive_group="vllm"),
                "other": local(self.other.url),
            },
            "exclusive_groups": {"vllm": group},
            "models": {
                "qwen": model("vq", QWEN, "code"),
                "dolphin": model("vd", DOLPHIN, "chat"),
                "fallback": model("other", "fake-model", "chat"),
            },
            "fallbacks": {"qwen": ["fallback"], "dolphin": ["fallback"]},
        }
        path = self.tmp / "traywire.yaml"
        path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
        return config.load(path, user_file=False)

    def managed(
        self, q: list[str] | None = None, d: list[str] | None = None, **more: Any
    ) -> dict[str, Any]:
        return {
            "mode": "managed",
            "serve": {
                "vq": serve_argv(QWEN, self.port_q, *(q or [])),
                "vd": serve_argv(DOLPHIN, self.port_d, *(d or [])),
            },
            "stop_timeout": 5,
            "ready_timeout": 20,
            **more,
        }

    def proxy(self, cfg: config.Config) -> ProxyThread:
        p = ProxyThread(cfg).start()
        p.rt.switcher.poll_interval = 0.1
        self.procs.append(p)
        return p


@pytest.fixture
def other() -> Iterator[FakeBackend]:
    with FakeBackend("openai", name="other", models=["fake-model"]) as fake:
        yield fake


@pytest.fixture
def env(tmp_path: Path, other: FakeBackend) -> Iterator[Env]:
    e = Env(tmp_path, other)
    yield e
    for p in e.procs:
        if p.thread.is_alive():
            p.stop()
    for pidfile in tmp_path.glob("*.pid"):  # servers the control script left
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


CTL = '''
"""Starts and stops fake vLLM servers, like a user's vllm-model-switch.sh."""
import json, os, signal, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = json.load(open(os.path.join(HERE, "ctl.json")))


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def stop():
    print("stopping vLLM")
    if CONF.get("fail_stop"):
        print("vllm-ctl: cannot stop vLLM: permission denied", file=sys.stderr)
        sys.exit(3)
    for alias in CONF["members"]:
        pidfile = os.path.join(HERE, alias + ".pid")
        if not os.path.exists(pidfile):
            continue
        pid = int(open(pidfile).read())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.remove(pidfile)


def start(alias):
    print("starting", alias)
    if CONF.get("fail_start"):
        print("vllm-ctl: no CUDA GPUs are available", file=sys.stderr)
        sys.exit(1)
    log = open(os.path.join(HERE, alias + ".log"), "ab")
    proc = subprocess.Popen(
        [sys.executable, CONF["fake"], *CONF["members"][alias]],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with open(os.path.join(HERE, alias + ".pid"), "w") as f:
        f.write(str(proc.pid))


if sys.argv[1] == "stop":
    stop()
else:
    start(sys.argv[2])
'''


def commands_setup(e: Env) -> dict[str, Any]:
    """Write the control script; return the switch section that uses it."""
    (e.tmp / "ctl.py").write_text(CTL)
    ctl_flags(e)
    return {
        "mode": "commands",
        # relative: commands run in the config file's directory
        "stop": [sys.executable, "ctl.py", "stop"],
        "start": [sys.executable, "ctl.py", "start", "{member_alias}"],
        "aliases": {"vq": "qwen", "vd": "dolphin"},
        "command_timeout": 20,
        "ready_timeout": 20,
    }


def ctl_flags(e: Env, **flags: bool) -> None:
    members = {
        "qwen": ["--model", QWEN, "--port", str(e.port_q)],
        "dolphin": ["--model", DOLPHIN, "--port", str(e.port_d)],
    }
    (e.tmp / "ctl.json").write_text(json.dumps({"fake": FAKE, "members": members, **flags}))


def ctl_start_qwen(e: Env) -> int:
    """Start the qwen fake the way the user's script would, before traywire switches."""
    subprocess.run([sys.executable, "ctl.py", "start", "qwen"], cwd=e.tmp, check=True)
    wait_until(lambda: lists(e.port_q, QWEN), what="qwen fake to list its model")
    return int((e.tmp / "qwen.pid").read_text())


# --------------------------------------------------------------------------- managed mode


def test_managed_switch_starts_stops_and_routes(env: Env) -> None:
    p = env.proxy(env.make_config(env.managed()))
    # Nothing runs yet: the first switch starts the configured member.
    first = p.run(p.rt.switch("vllm", "vq"))
    assert first.phase == "done", first
    pid_q = p.call(p.rt.switcher.servers)["vq"]["pid"]
    assert alive(pid_q) and lists(env.port_q, QWEN)

    status, _, body = http("POST", p.url + "/admin/switch", {"group": "vllm", "member": "vd"})
    assert status == 202, body
    assert body["switching"]["vllm"]["to"] == "vd"
    assert body["switching"]["vllm"]["from"] == "vq"
    st = wait_switched(p)
    assert st["phase"] == "done" and st["error"] is None, st

    assert not alive(pid_q), "the old server must be gone"
    assert not lists(env.port_q, QWEN)
    servers = p.call(p.rt.switcher.servers)
    assert list(servers) == ["vd"] and alive(servers["vd"]["pid"])
    assert "fake vLLM serving" in Path(servers["vd"]["log"]).read_text()
    full = p.call(p.rt.status)
    assert full["active"] == {"vllm": "vd"}
    assert full["backends"]["vd"]["models"] == [DOLPHIN]  # health set from the ready probe

    d = plan(p, "dolphin")
    assert d.plan[0].backend == "vd"
    assert any(s.backend == "vq" for s in plan(p, "qwen").skipped)
    status, headers, reply = chat(p, "dolphin")
    assert status == 200, reply
    assert headers["X-Traywire-Backend"] == "vd"
    assert f"Hello from {DOLPHIN}" in reply["choices"][0]["message"]["content"]


def test_drain_lets_inflight_stream_finish_first(env: Env) -> None:
    p = env.proxy(env.make_config(env.managed(q=["--chunk-delay", "0.3"])))
    assert p.run(p.rt.switch("vllm", "vq")).phase == "done"
    pid_q = p.call(p.rt.switcher.servers)["vq"]["pid"]

    got: dict[str, Any] = {}

    def stream() -> None:
        body = {"model": "qwen", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        req = urllib.request.Request(
            p.url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            got["backend"] = r.headers["X-Traywire-Backend"]
            got["text"] = r.read().decode()
        got["pid_alive_at_end"] = alive(pid_q)

    t = threading.Thread(target=stream)
    t.start()

    def in_flight() -> int:
        return int(p.call(p.rt.status)["backends"]["vq"]["in_flight"])

    wait_until(lambda: in_flight() == 1, what="the stream to be in flight")

    status, _, _ = http("POST", p.url + "/admin/switch", {"group": "vllm", "member": "vd"})
    assert status == 202
    assert switch_state(p)["phase"] == "draining"
    # While draining nothing is active: new requests go down the chain.
    assert "(active: none)" in next(s.reason for s in plan(p, "qwen").skipped if s.backend == "vq")
    status, headers, _ = chat(p, "qwen")
    assert status == 200 and headers["X-Traywire-Backend"] == "other"

    t.join(30)
    st = wait_switched(p)
    assert st["phase"] == "done", st
    assert not any("drain timed out" in n for n in st["notes"])
    events = [ln[6:] for ln in got["text"].splitlines() if ln.startswith("data: {")]
    words = [json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events]
    assert "".join(words) == f"Hello from {QWEN} on port {env.port_q}"
    assert got["text"].rstrip().endswith("data: [DONE]")
    assert got["backend"] == "vq" and got["pid_alive_at_end"]
    assert not alive(pid_q)


def test_drain_timeout_stops_anyway(env: Env) -> None:
    sw = env.managed(q=["--chunk-delay", "2"], drain_timeout=0.3)
    p = env.proxy(env.make_config(sw))
    assert p.run(p.rt.switch("vllm", "vq")).phase == "done"

    def stream() -> None:
        body = {"model": "qwen", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        req = urllib.request.Request(
            p.url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
        except OSError:
            pass

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    wait_until(lambda: p.call(p.rt.status)["backends"]["vq"]["in_flight"] == 1)
    st = p.run(p.rt.switch("vllm", "vd"))
    assert st.phase == "done"
    assert any("drain timed out after 0.3 s with 1 request(s) in flight" in n for n in st.notes)
    t.join(30)


def test_never_ready_fails_and_router_uses_chains(env: Env) -> None:
    sw = env.managed(d=["--never-ready"], ready_timeout=1.5)
    p = env.proxy(env.make_config(sw))
    assert p.run(p.rt.switch("vllm", "vq")).phase == "done"
    pid_q = p.call(p.rt.switcher.servers)["vq"]["pid"]

    status, _, _ = http("POST", p.url + "/admin/switch", {"group": "vllm", "member": "vd"})
    assert status == 202
    st = wait_switched(p)
    assert st["phase"] == "failed" and st["failed_in"] == "waiting"
    assert st["error"] == "vd was not ready within 1.5 s: last probe: loading"
    assert "fake vLLM serving" in st["output"]  # the server log's tail
    assert any("no active member" in n for n in st["notes"])
    assert p.call(p.rt.switcher.servers) == {}, "the server that never became ready is stopped"
    assert not alive(pid_q)

    assert p.call(p.rt.status)["active"] == {"vllm": None}
    for name, backend in (("qwen", "vq"), ("dolphin", "vd")):
        d = plan(p, name)
        assert [a.backend for a in d.plan] == ["other"]
        assert [s.backend for s in d.skipped] == [backend]
        assert "is not the active member of exclusive group vllm (active: none)" in (
            d.skipped[0].reason
        )
    status, headers, reply = chat(p, "dolphin")
    assert status == 200 and headers["X-Traywire-Backend"] == "other"
    assert "Hello from other" in reply["choices"][0]["message"]["content"]

    # A later switch recovers, and /admin/active works again.
    assert p.run(p.rt.switch("vllm", "vq")).phase == "done"
    status, _, _ = http("POST", p.url + "/admin/active", {"group": "vllm", "member": "vq"})
    assert status == 200


def test_managed_server_that_exits_fails_at_once(env: Env) -> None:
    crash = [sys.executable, "-c", "import sys; sys.exit('CUDA out of memory (fake)')"]
    sw = env.managed(ready_timeout=60)
    sw["serve"]["vd"] = crash
    p = env.proxy(env.make_config(sw))
    started = time.monotonic()
    st = p.run(p.rt.switch("vllm", "vd"))
    assert time.monotonic() - started < 10
    assert st.phase == "failed" and st.failed_in == "waiting"
    assert st.error == "vd's server exited (exit code 1) before it was ready"
    assert st.output is not None and "CUDA out of memory (fake)" in st.output


def test_missing_program_is_reported(env: Env) -> None:
    sw = env.managed()
    sw["serve"]["vd"] = ["/nonexistent/vllm", "serve"]
    p = env.proxy(env.make_config(sw))
    st = p.run(p.rt.switch("vllm", "vd"))
    assert st.phase == "failed" and st.failed_in == "starting"
    assert "cannot start vd's server /nonexistent/vllm serve: No such file" in (st.error or "")


def test_second_switch_is_refused_with_409(env: Env) -> None:
    p = env.proxy(env.make_config(env.managed(d=["--slow-start", "1.5"])))
    status, _, _ = http("POST", p.url + "/admin/switch", {"group": "vllm", "member": "vd"})
    assert status == 202
    status, _, body = http("POST", p.url + "/admin/switch", {"group": "vllm", "member": "vq"})
    assert status == 409
    assert body["error"].startswith("exclusive group 'vllm' is switching to 'vd'")
    status, _, body = http("POST", p.url + "/admin/active", {"group": "vllm", "member": "vq"})
    assert status == 409 and "is switching" in body["error"]  # Conflict, as /admin/switch
    assert wait_switched(p)["phase"] == "done"
    status, _, _ = http("POST", p.url + "/admin/switch", {"group": "vllm", "member": "vq"})
    assert status == 202
    assert wait_switched(p)["phase"] == "done"


def test_admin_switch_bad_requests(env: Env) -> None:
    p = env.proxy(env.make_config(None))
    url = p.url + "/admin/switch"
    status, _, body = http("POST", url, {"group": "vllm", "member": "vd"})
    assert status == 400 and "has no 'switch' section" in body["error"]
    status, _, body = http("POST", url, {"group": "gpu", "member": "vd"})
    assert status == 400 and "no exclusive group 'gpu'" in body["error"]
    status, _, body = http("POST", url, {"group": "vllm", "member": "other"})
    assert status == 400 and "'other' is not a member of 'vllm'" in body["error"]
    status, _, body = http("POST", url, {"group": "vllm"})
    assert status == 400
    assert p.call(p.rt.status)["switching"] == {}
    # /admin/active stays instant, without process control.
    status, _, body = http("POST", p.url + "/admin/active", {"group": "vllm", "member": "vd"})
    assert status == 200 and p.call(p.rt.status)["active"] == {"vllm": "vd"}


def test_close_kills_managed_servers_and_their_workers(env: Env) -> None:
    workers = env.tmp / "worker.pid"
    p = env.proxy(env.make_config(env.managed(q=["--worker-pidfile", str(workers)])))
    assert p.run(p.rt.switch("vllm", "vq")).phase == "done"
    pid = p.call(p.rt.switcher.servers)["vq"]["pid"]
    worker = int(workers.read_text())
    assert alive(pid) and alive(worker)
    p.stop()
    assert not alive(pid)
    wait_until(lambda: not alive(worker), 5, "the worker to be gone")


def test_close_kills_a_server_that_ignores_sigterm(env: Env) -> None:
    workers = env.tmp / "worker.pid"
    sw = env.managed(q=["--ignore-sigterm", "--worker-pidfile", str(workers)], stop_timeout=0.5)
    p = env.proxy(env.make_config(sw))
    assert p.run(p.rt.switch("vllm", "vq")).phase == "done"
    pid = p.call(p.rt.switcher.servers)["vq"]["pid"]
    worker = int(workers.read_text())
    started = time.monotonic()
    p.stop()
    assert time.monotonic() - started < 5
    assert not alive(pid)
    wait_until(lambda: not alive(worker), 5, "the worker to be gone")


def test_close_during_a_switch_kills_the_starting_server(env: Env) -> None:
    p = env.proxy(env.make_config(env.managed(d=["--slow-start", "30"])))
    status, _, _ = http("POST", p.url + "/admin/switch", {"group": "vllm", "member": "vd"})
    assert status == 202
    wait_until(lambda: switch_state(p)["phase"] == "waiting", what="the waiting phase")
    pid = p.call(p.rt.switcher.servers)["vd"]["pid"]
    assert alive(pid)
    p.stop()
    assert not alive(pid)


# --------------------------------------------------------------------------- commands mode


def test_commands_switch(env: Env) -> None:
    sw = commands_setup(env)
    pid_q = ctl_start_qwen(env)
    p = env.proxy(env.make_config(sw))
    status, _, reply = chat(p, "qwen")
    assert status == 200 and reply["choices"][0]["message"]["content"].startswith("Hello from Qwen")

    st = p.run(p.rt.switch("vllm", "vd"))
    assert st.phase == "done", st
    assert st.previous == "vq" and st.error is None
    assert not alive(pid_q) and not (env.tmp / "qwen.pid").exists()
    pid_d = int((env.tmp / "dolphin.pid").read_text())
    assert alive(pid_d) and lists(env.port_d, DOLPHIN)
    assert p.call(p.rt.status)["switching"]["vllm"]["phase"] == "done"
    assert plan(p, "dolphin").plan[0].backend == "vd"
    status, headers, reply = chat(p, "dolphin")
    assert status == 200 and headers["X-Traywire-Backend"] == "vd"
    assert f"Hello from {DOLPHIN}" in reply["choices"][0]["message"]["content"]

    # And back, over the admin API.
    status, _, _ = http("POST", p.url + "/admin/switch", {"group": "vllm", "member": "vq"})
    assert status == 202
    assert wait_switched(p)["phase"] == "done"
    assert not alive(pid_d)
    assert chat(p, "qwen")[1]["X-Traywire-Backend"] == "vq"


def test_failing_stop_command_is_reported_and_old_member_kept(env: Env) -> None:
    sw = commands_setup(env)
    pid_q = ctl_start_qwen(env)
    ctl_flags(env, fail_stop=True)
    p = env.proxy(env.make_config(sw))
    st = p.run(p.rt.switch("vllm", "vd"))
    assert st.phase == "failed" and st.failed_in == "stopping"
    assert st.error == (
        f"stop command {sys.executable} ctl.py stop failed (exit code 3): "
        "vllm-ctl: cannot stop vLLM: permission denied"
    )
    assert st.output == (
        "stderr:\nvllm-ctl: cannot stop vLLM: permission denied\nstdout:\nstopping vLLM"
    )
    assert alive(pid_q)
    # The old server still answers with its model: it is routed to again.
    assert any("vq still answers" in n for n in st.notes)
    status = p.call(p.rt.status)
    assert status["active"] == {"vllm": "vq"}
    assert status["switching"]["vllm"]["error"] == st.error
    assert chat(p, "qwen")[1]["X-Traywire-Backend"] == "vq"


def test_failing_start_command_is_reported(env: Env) -> None:
    sw = commands_setup(env)
    pid_q = ctl_start_qwen(env)
    ctl_flags(env, fail_start=True)
    p = env.proxy(env.make_config(sw))
    st = p.run(p.rt.switch("vllm", "vd"))
    assert st.phase == "failed" and st.failed_in == "starting"
    assert st.error is not None
    assert st.error.endswith("failed (exit code 1): vllm-ctl: no CUDA GPUs are available")
    assert "start dolphin" in st.error
    assert not alive(pid_q)
    assert p.call(p.rt.status)["active"] == {"vllm": None}
    assert chat(p, "qwen")[1]["X-Traywire-Backend"] == "other"


def test_command_timeout_kills_the_command(env: Env) -> None:
    sw = commands_setup(env)
    sw["start"] = [sys.executable, "-c", "import time; time.sleep(60)", "{member}"]
    sw["command_timeout"] = 0.5
    p = env.proxy(env.make_config(sw))
    started = time.monotonic()
    st = p.run(p.rt.switch("vllm", "vd"))
    assert time.monotonic() - started < 10
    assert st.phase == "failed" and st.failed_in == "starting"
    assert st.error is not None and st.error.endswith("vd did not finish within 0.5 s")


def test_stop_runs_once_per_distinct_command_without_active_member(env: Env) -> None:
    sw = commands_setup(env)
    calls = env.tmp / "calls.txt"
    record = "import sys; open(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + '\\n')"
    sw["stop"] = [sys.executable, "-c", record, str(calls), "stop", "{member}", "{port}"]
    p = env.proxy(env.make_config(sw))
    p.call(p.rt.active.__setitem__, "vllm", "")  # e.g. after a failed switch
    st = p.run(p.rt.switch("vllm", "vd"))
    assert st.phase == "done", st
    assert calls.read_text().splitlines() == [f"stop vq {env.port_q}", f"stop vd {env.port_d}"]


# --------------------------------------------------------------------------- config


def load(text: str) -> config.Config:
    return config.load_texts([("test.yaml", textwrap.dedent(text))])


BASE = """\
extends: none
backends:
  vq: {kind: openai, url: "http://127.0.0.1:8001/v1", location: local, exclusive_group: vllm}
  vd: {kind: openai, url: "http://127.0.0.1:8002/v1", location: local, exclusive_group: vllm}
models:
  qwen: {backend: vq, params_b: 7, tier: local, capabilities: [code], context: 8192}
exclusive_groups:
  vllm:
    active: vq
    switch:
"""  # "switch:" is line 10; its keys start on line 11


def test_config_commands_mode() -> None:
    cfg = load(
        BASE
        + """\
      mode: commands
      stop: [./scripts/vllm-model-switch.sh, stop]
      start: [./scripts/vllm-model-switch.sh, "{member_alias}", "{{literal}}", 8001]
      aliases: {vq: qwen}
      drain_timeout: 5
"""
    )
    sw = cfg.groups["vllm"].switch
    assert sw is not None and sw.mode == "commands"
    assert sw.start == ("./scripts/vllm-model-switch.sh", "{member_alias}", "{{literal}}", "8001")
    assert sw.alias("vq") == "qwen" and sw.alias("vd") == "vd"
    assert (sw.drain_timeout, sw.ready_timeout, sw.command_timeout) == (5, 300, 120)
    assert sw.cwd is None  # not from a file


def test_config_managed_mode_and_cwd(tmp_path: Path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text(
        BASE
        + """\
      mode: managed
      serve:
        vq: [vllm, serve, Qwen/Qwen2.5-Coder-7B-Instruct-AWQ, --port, 8001]
        vd: [vllm, serve, "{not a placeholder}"]
      stop_timeout: 2.5
"""
    )
    sw = config.load(path, user_file=False).groups["vllm"].switch
    assert sw is not None and sw.mode == "managed"
    assert sw.serve["vq"][-1] == "8001" and sw.serve["vd"][-1] == "{not a placeholder}"
    assert sw.stop_timeout == 2.5
    assert sw.cwd == str(tmp_path.resolve())
    path.write_text(path.read_text() + "      cwd: servers\n")
    sw = config.load(path, user_file=False).groups["vllm"].switch
    assert sw is not None and sw.cwd == str(tmp_path.resolve() / "servers")


def test_default_yaml_examples_are_valid() -> None:
    text = config.default_config_text()
    assert config.load(user_file=False).groups["vllm"].switch is None
    blocks = re.findall(r"^    # switch:\n((?:    #   .*\n)+)", text, re.M)
    assert len(blocks) == 2
    modes = set()
    for block in blocks:
        body = "".join(line[6:] + "\n" for line in block.splitlines())
        layer = "exclusive_groups:\n  vllm:\n    switch:\n" + textwrap.indent(body, "    ")
        cfg = config.load_texts([("<built-in default>", text), ("user.yaml", layer)])
        sw = cfg.groups["vllm"].switch
        assert sw is not None
        modes.add(sw.mode)
    assert modes == {"commands", "managed"}


S = "exclusive_groups.vllm.switch"
OK_SERVE = "mode: managed\nserve: {vq: [x], vd: [y]}\n"

# (the switch section, the line and key path of the error, the message's start)
CONFIG_ERRORS = [
    ("mode: docker", f"11 {S}.mode", "'docker' is not one of: commands, managed"),
    ("start: [x]", f"10 {S}", "missing required key 'mode'"),
    ("mode: commands\nstop: [x]", f"10 {S}", "mode commands needs 'start'"),
    (
        "mode: commands\nstart: ./switch.sh qwen",
        f"12 {S}.start",
        "expected a non-empty list: the program, then its arguments (no shell), "
        "got string './switch.sh qwen'",
    ),
    ("mode: commands\nstart: []", f"12 {S}.start", "expected a non-empty list"),
    (
        'mode: commands\nstart: [x, "{model}"]',
        f"12 {S}.start[1]",
        "unknown placeholder in '{model}'; "
        "expected one of: {group}, {member}, {member_alias}, {port}",
    ),
    (
        'mode: commands\nstart: [x, "{member"]',
        f"12 {S}.start[1]",
        "'{member': expected '}' before end of string (write {{ and }} for literal braces)",
    ),
    (
        "mode: commands\nstart:\n  - x\n  - {a: 1}",
        f"14 {S}.start[1]",
        "expected a string, got a mapping",
    ),
    ('mode: commands\nstart: [""]', f"12 {S}.start[0]", "expected a program name"),
    (
        "mode: commands\nstart: [x]\nserve: {vq: [x]}",
        f"13 {S}.serve",
        "only used with mode managed (this group's is commands)",
    ),
    (
        "mode: commands\nstart: [x]\naliases: {vx: q}",
        f"13 {S}.aliases.vx",
        "unknown key; expected one of: vq, vd",
    ),
    (
        "mode: commands\nstart: [x]\naliases: {vq: 7}",
        f"13 {S}.aliases.vq",
        "expected a non-empty string, got int 7",
    ),
    ("mode: managed\nserve: {vq: [x]}", f"12 {S}.serve", "missing required key 'vd'"),
    ("mode: managed", f"10 {S}", "mode managed needs 'serve'"),
    ("mode: managed\nserve: {vq: [x], vd: []}", f"12 {S}.serve.vd", "expected a non-empty list"),
    (
        OK_SERVE + "start: [x]",
        f"13 {S}.start",
        "only used with mode commands (this group's is managed)",
    ),
    (OK_SERVE + "ready_timeout: 0", f"13 {S}.ready_timeout", ""),
    (OK_SERVE + "drain_timeout: soon", f"13 {S}.drain_timeout", ""),
    (OK_SERVE + "timeout: 3", f"13 {S}.timeout", "unknown key"),
    (OK_SERVE + "cwd: 3", f"13 {S}.cwd", "expected a non-empty string"),
    ("[mode, managed]", f"10 {S}", "expected a mapping, got a list"),
]


@pytest.mark.parametrize(("switch", "where", "message"), CONFIG_ERRORS)
def test_config_errors(switch: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(BASE + textwrap.indent(switch + "\n", "      "))
    assert str(err.value).startswith(f"test.yaml:{where}: {message}"), str(err.value)


def test_servers_and_commands_do_not_get_traywires_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command or a vLLM server traywire runs gets its environment, less the
    variables its own keys come from (`env:` references)."""
    import asyncio

    from traywire.config import load_texts
    from traywire.core.schema import SwitchSettings
    from traywire.proxy.commands import child_env, run_command

    monkeypatch.setenv("TW_TEST_CLOUD_KEY", "sk-do-not-pass-0123456789")
    monkeypatch.setenv("TW_TEST_TOKEN", "token-do-not-pass-0123")
    monkeypatch.setenv("HF_HOME", "/somewhere")  # not a key of traywire's: kept
    cfg = load_texts(
        [
            (
                "t.yaml",
                "extends: none\n"
                "server: {token: env:TW_TEST_TOKEN}\n"
                "backends:\n"
                "  c: {kind: openai, url: 'https://x.invalid/v1', location: cloud,"
                " capacity: 1, key: env:TW_TEST_CLOUD_KEY}\n"
                "models:\n"
                "  m: {backend: c, params_b: 1, tier: cloud_entry, capabilities: [chat],"
                " context: 1000}\n",
            )
        ]
    )
    env = child_env(cfg)
    assert "TW_TEST_CLOUD_KEY" not in env and "TW_TEST_TOKEN" not in env
    assert env["HF_HOME"] == "/somewhere"
    out = tmp_path / "env.txt"
    argv = ("sh", "-c", f"env > {out}")
    asyncio.run(run_command("start", argv, SwitchSettings(mode="commands"), env))
    seen = out.read_text()
    assert "sk-do-not-pass" not in seen and "token-do-not-pass" not in seen
    assert "HF_HOME=/somewhere" in seen
