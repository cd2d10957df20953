"""The life cycle of managed vLLM servers as a service and a desktop app, with
fake `vllm serve` processes (tests/fake_vllm.py): the active member is
started at launch (or adopted when it already listens); traywire, the app and
`traywire serve`, remembers the preference and the active member across
restarts (and what was really active when it stopped mid-switch); a reload
(SIGHUP, ``POST /admin/reload``) adds models and drains the servers it
retires; forced kills and server logs are reported."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import ProxyThread
from test_switch import (
    DOLPHIN,
    QWEN,
    Env,
    alive,
    env,
    free_port,
    http,
    lists,
    other,
    plan,
    serve_argv,
    switch_state,
    wait_switched,
    wait_until,
)

from traywire import config, statefile
from traywire.desktop.proxythread import Proxy

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")

__all__ = ["env", "other"]


def launched(e: Env, cfg: config.Config, **kw: Any) -> ProxyThread:
    """A proxy that starts what is active, as traywire does."""
    p = ProxyThread(cfg, launch=True, **kw)
    e.procs.append(p)
    p.start()
    p.rt.switcher.poll_interval = 0.1
    return p


def config_path(e: Env) -> Path:
    return e.tmp / "traywire.yaml"


def edit_config(e: Env, change: Callable[[dict[str, Any]], None]) -> None:
    path = config_path(e)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=1))


def stream_chat(url: str, model: str, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        try:
            out["status"], out["headers"], out["body"] = http(
                "POST", url + "/v1/chat/completions", body, timeout=60
            )
        except Exception as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def streamed_text(raw: str) -> str:
    lines = [ln[5:].strip() for ln in raw.splitlines() if ln.startswith("data:")]
    assert lines[-1] == "[DONE]", lines[-3:]
    events = [json.loads(x) for x in lines[:-1]]
    assert not any("error" in e for e in events), events
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])


# --------------------------------------------------------------------------- launch


def test_launch_starts_the_active_member_behind_the_readiness_gate(env: Env) -> None:
    # the fake listens only 2 s after it starts: not ready when the proxy is
    p = launched(env, env.make_config(env.managed(q=["--slow-start", "2"])))
    st = switch_state(p)
    assert st["kind"] == "start" and st["to"] == "vq" and st["from"] is None
    assert st["phase"] in ("starting", "waiting"), st
    # not ready yet: nothing is routed to it, and the group cannot be changed
    assert p.call(p.rt.status)["active"] == {"vllm": None}
    assert any(s.backend == "vq" for s in plan(p, "qwen").skipped)
    status, _, body = http("POST", p.url + "/admin/active", {"group": "vllm", "member": "vd"})
    assert status == 409, body
    st = wait_switched(p)
    assert st["phase"] == "done" and st["error"] is None, st
    servers = p.call(p.rt.switcher.servers)
    assert list(servers) == ["vq"] and alive(servers["vq"]["pid"])
    assert p.call(p.rt.status)["active"] == {"vllm": "vq"}
    status, headers, reply = http(
        "POST",
        p.url + "/v1/chat/completions",
        {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200 and headers["X-Traywire-Backend"] == "vq", reply
    # the server's log: appended after a line that marks the start
    log = Path(servers["vq"]["log"]).read_text()
    assert log.count("traywire starts vq:") == 1 and "fake vLLM serving" in log


def test_launch_adopts_a_server_already_listening(env: Env) -> None:
    mine = subprocess.Popen(
        serve_argv(QWEN, env.port_q), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: lists(env.port_q, QWEN), what="the user's server")
        p = launched(env, env.make_config(env.managed()))
        st = wait_switched(p)
        assert st["phase"] == "done", st
        assert any("adopted" in n for n in st["notes"]), st["notes"]
        assert p.call(p.rt.switcher.servers) == {}  # none started: no duplicate
        assert p.call(p.rt.status)["active"] == {"vllm": "vq"}
        p.stop()
        assert mine.poll() is None, "traywire stops only what it started"
    finally:
        mine.kill()
        mine.wait()


def test_launch_of_a_server_that_crashes_fails_and_routes_down_the_chain(env: Env) -> None:
    # a port the fake cannot bind: it exits at once
    blocker = __import__("socket").socket()
    blocker.bind(("127.0.0.1", env.port_q))
    blocker.listen()
    try:
        p = launched(env, env.make_config(env.managed()))
        st = wait_switched(p)
    finally:
        blocker.close()
    assert st["phase"] == "failed" and "exited" in st["error"], st
    assert p.call(p.rt.status)["active"] == {"vllm": None}
    assert plan(p, "qwen").plan[0].backend == "other"


def test_launch_of_a_server_never_ready_fails_and_frees_the_gpu(env: Env) -> None:
    p = launched(env, env.make_config(env.managed(q=["--never-ready"], ready_timeout=3)))
    wait_until(lambda: p.call(p.rt.switcher.servers), what="the server to start")
    pid = p.call(p.rt.switcher.servers)["vq"]["pid"]
    st = wait_switched(p)
    assert st["phase"] == "failed" and st["failed_in"] == "waiting", st
    assert st["error"].startswith("vq was not ready within 3 s: last probe: "), st
    assert not alive(pid) and p.call(p.rt.switcher.servers) == {}
    assert p.call(p.rt.status)["active"] == {"vllm": None}
    assert plan(p, "qwen").plan[0].backend == "other"


def test_forced_kill_is_reported_in_status_and_logs_are_appended(env: Env) -> None:
    sw = env.managed(q=["--ignore-sigterm"], stop_timeout=0.3)
    p = launched(env, env.make_config(sw))
    assert wait_switched(p)["phase"] == "done"
    pid = p.call(p.rt.switcher.servers)["vq"]["pid"]
    assert p.run(p.rt.switch("vllm", "vd")).phase == "done"
    assert not alive(pid)
    (kill,) = p.call(p.rt.status)["forced_kills"]
    assert kill["member"] == "vq" and kill["pid"] == pid and "SIGKILL" in kill["why"]
    assert p.run(p.rt.switch("vllm", "vq")).phase == "done"
    log = (p.rt.switcher.log_dir / "vq.log").read_text()
    assert log.count("traywire starts vq:") == 2  # the first run's output is kept


# --------------------------------------------------------------------------- remembered


def app_proxy(e: Env, cfg: config.Config) -> Proxy:
    proxy = Proxy(
        cfg,
        port=0,
        grace=5,
        config_file=str(config_path(e)),
        resolve_keys=False,
        probes=False,
        state_path=e.tmp / "state" / "state.json",
        autostart_enabled=lambda: False,
    )
    proxy.start()
    return proxy


def app_status(proxy: Proxy) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        return proxy.rt.status()

    return proxy.run(read())


def app_wait(proxy: Proxy) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        sw = app_status(proxy)["switching"].get("vllm")
        return sw if sw is not None and sw["phase"] in ("done", "failed") else None

    return wait_until(finished, 30, "the group to settle")  # type: ignore[no-any-return]


def test_app_restart_restores_and_starts_the_chosen_member(env: Env) -> None:
    cfg = env.make_config(env.managed())
    proxy = app_proxy(env, cfg)
    try:
        assert app_wait(proxy)["to"] == "vq"  # the config's, started at launch
        assert proxy.set_active("vllm", "vd").result(30) == "done"
        proxy.set_preference("prefer_cloud").result(5)
    finally:
        proxy.stop()
    assert not lists(env.port_d, DOLPHIN)  # stopped with traywire
    saved = statefile.load(env.tmp / "state" / "state.json")
    assert saved.active == {"vllm": "vd"} and saved.preference == "prefer_cloud"

    again = app_proxy(env, cfg)
    try:
        st = app_wait(again)
        assert st["kind"] == "start" and st["to"] == "vd" and st["phase"] == "done", st
        status = app_status(again)
        assert status["active"] == {"vllm": "vd"} and list(status["managed_servers"]) == ["vd"]
        assert status["preference"] == "prefer_cloud"
        assert status["preference_source"] == "runtime"
    finally:
        again.stop()


def test_quit_mid_switch_keeps_the_member_that_was_really_active(env: Env) -> None:
    proxy = app_proxy(env, env.make_config(env.managed()))
    try:
        app_wait(proxy)
        assert proxy.set_active("vllm", "vd").result(30) == "done"
        # qwen's server now loads for a minute: a switch back to it is under way at quit
        edit_config(
            env,
            lambda d: d["exclusive_groups"]["vllm"]["switch"]["serve"]["vq"].extend(
                ["--slow-start", "60"]
            ),
        )
        proxy.reload_config().result(10)
        proxy.set_active("vllm", "vq")
        wait_until(lambda: app_status(proxy)["switching"]["vllm"]["phase"] == "waiting")
        assert app_status(proxy)["switching"]["vllm"]["to"] == "vq"
    finally:
        proxy.stop()
    assert statefile.load(env.tmp / "state" / "state.json").active == {"vllm": "vd"}


def test_quit_mid_switch_keeps_the_target_if_it_was_ready(env: Env) -> None:
    cfg = env.make_config(env.managed(d=["--slow-start", "0.5"]))
    proxy = app_proxy(env, cfg)
    try:
        app_wait(proxy)
        proxy.rt.switcher.poll_interval = 600  # the switch does not look again by itself
        proxy.set_active("vllm", "vd")
        wait_until(lambda: app_status(proxy)["switching"]["vllm"]["phase"] == "waiting")
        wait_until(lambda: lists(env.port_d, DOLPHIN), what="dolphin to be ready")
    finally:
        proxy.stop()
    assert statefile.load(env.tmp / "state" / "state.json").active == {"vllm": "vd"}


# --------------------------------------------------------------------------- traywire serve


class Serve:
    """`traywire serve` on the Env's config, as a real process."""

    def __init__(self, e: Env) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "traywire", "serve", "--config", str(config_path(e))]
        self.proc = subprocess.Popen(
            [*argv, "--port", str(self.port), "--grace", "10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"traywire serve exited: {self.proc.communicate()}")
            try:
                return http("GET", self.url + "/health", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(up, 30, "traywire serve to listen")

    def status(self) -> dict[str, Any]:
        return http("GET", self.url + "/status")[2]  # type: ignore[no-any-return]

    def settled(self) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            sw = self.status()["switching"].get("vllm")
            return sw if sw is not None and sw["phase"] in ("done", "failed") else None

        return wait_until(done, 30, "the group to settle")  # type: ignore[no-any-return]

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err


def test_serve_restart_restores_the_preference_and_the_active_member(env: Env) -> None:
    env.make_config(env.managed())
    srv = Serve(env)
    try:
        assert srv.settled()["to"] == "vq"
        status, _, body = http("POST", srv.url + "/admin/switch", {"group": "vllm", "member": "vd"})
        assert status == 202, body
        assert srv.settled()["phase"] == "done"
        status, _, body = http("POST", srv.url + "/admin/preference", {"preference": "local_only"})
        assert status == 200 and body["preference_source"] == "runtime", body
    finally:
        srv.stop()
    assert not lists(env.port_d, DOLPHIN)

    srv = Serve(env)
    try:
        st = srv.settled()
        assert st["kind"] == "start" and st["to"] == "vd" and st["phase"] == "done", st
        status = srv.status()
        assert status["active"] == {"vllm": "vd"} and status["preference"] == "local_only"
        assert list(status["managed_servers"]) == ["vd"] and not lists(env.port_q, QWEN)
        # back to the config's preference: remembered too
        code, _, body = http("POST", srv.url + "/admin/preference", {"preference": None})
        assert code == 200 and body["preference_source"] == "config", body
    finally:
        srv.stop()
    xdg = Path(os.environ["XDG_STATE_HOME"])
    saved = statefile.load(xdg / "traywire" / "state.json")
    assert saved.preference is None and saved.active == {"vllm": "vd"}


def test_sighup_reloads_the_config_and_adds_a_model(env: Env) -> None:
    env.make_config(env.managed())
    srv = Serve(env)
    try:
        srv.settled()

        def listed() -> set[str]:
            return {m["id"] for m in http("GET", srv.url + "/v1/models")[2]["data"]}

        assert "extra" not in listed()
        edit_config(
            env,
            lambda d: d["models"].update(
                extra={**d["models"]["fallback"], "capabilities": ["chat"]}
            ),
        )
        srv.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "extra" in listed(), 10, "the new model after SIGHUP")
        assert srv.proc.poll() is None  # SIGHUP no longer kills it
        # a bad config changes nothing, and says why
        config_path(env).write_text("backends: [")
        code, _, body = http("POST", srv.url + "/admin/reload", {})
        assert code == 400 and "traywire.yaml" in body["error"], body
        assert "extra" in listed()
        assert srv.status()["active"] == {"vllm": "vq"}  # the running server is untouched
    finally:
        err = srv.stop()
    assert "config reloaded" in err and "(SIGHUP)" in err


# --------------------------------------------------------------------------- reload retires


def test_a_rename_reload_drains_the_old_member_then_starts_the_new_one(env: Env) -> None:
    sw = env.managed(q=["--chunk-delay", "0.3"])
    cfg = env.make_config(sw)
    p = launched(env, cfg, config_file=str(config_path(env)))
    assert wait_switched(p)["phase"] == "done"
    old_pid = p.call(p.rt.switcher.servers)["vq"]["pid"]

    out: dict[str, Any] = {}
    stream = stream_chat(p.url, "qwen", out)
    wait_until(lambda: p.call(p.rt.status)["backends"]["vq"]["in_flight"] == 1)

    def rename(d: dict[str, Any]) -> None:
        d["backends"]["vq2"] = d["backends"].pop("vq")
        d["models"]["qwen"]["backend"] = "vq2"
        d["exclusive_groups"]["vllm"]["active"] = "vq2"
        serve = d["exclusive_groups"]["vllm"]["switch"]["serve"]
        serve["vq2"] = serve.pop("vq")

    edit_config(env, rename)
    code, _, body = http("POST", p.url + "/admin/reload", {})
    assert code == 200 and body["ok"], body
    st = wait_switched(p, 40)
    stream.join(30)
    # the stream accepted on the old member ran to its end before its server stopped
    assert "error" not in out, out
    assert out["status"] == 200 and streamed_text(out["body"]).startswith(f"Hello from {QWEN}")
    assert st["kind"] == "start" and st["to"] == "vq2" and st["phase"] == "done", st
    assert any(f"stopped vq's server (pid {old_pid})" in n for n in st["notes"]), st["notes"]
    assert not alive(old_pid)
    servers = p.call(p.rt.switcher.servers)
    assert list(servers) == ["vq2"] and servers["vq2"]["pid"] != old_pid
    status = p.call(p.rt.status)
    assert status["active"] == {"vllm": "vq2"} and "vq" not in status["backends"]


def test_admin_reload_while_switching_is_409(env: Env) -> None:
    p = launched(
        env,
        env.make_config(env.managed(q=["--slow-start", "30"])),
        config_file=str(config_path(env)),
    )
    wait_until(lambda: switch_state(p)["phase"] == "waiting")
    code, _, body = http("POST", p.url + "/admin/reload", {})
    assert code == 409 and "is switching" in body["error"], body


# --------------------------------------------------------------------------- the app, as a process


def test_the_app_restores_its_member_and_reloads_on_sighup(env: Env) -> None:
    from app_process import App

    env.make_config(env.managed())
    args = ["--no-tray", "--config", str(config_path(env)), "--port", str(free_port())]

    def settled(app: App) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            sw = app.get("/status")["switching"].get("vllm")
            return sw if sw is not None and sw["phase"] in ("done", "failed") else None

        return wait_until(done, 30, "the group to settle")  # type: ignore[no-any-return]

    app = App(args)
    try:
        app.wait_listening()
        assert settled(app)["to"] == "vq"  # started at launch
        app.post("/admin/switch", {"group": "vllm", "member": "vd"})
        assert settled(app)["phase"] == "done"
        edit_config(env, lambda d: d["models"].update(extra={**d["models"]["fallback"]}))
        app.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: "extra" in {m["id"] for m in app.get("/v1/models")["data"]},
            10,
            "the new model after SIGHUP",
        )
        assert app.get("/status")["active"] == {"vllm": "vd"}  # the reload keeps it
    finally:
        code, _, err = app.stop()
    assert code == 0, err
    assert not lists(env.port_d, DOLPHIN)

    again = App(args)
    try:
        again.wait_listening()
        st = settled(again)
        assert st["kind"] == "start" and st["to"] == "vd" and st["phase"] == "done", st
        assert list(again.get("/status")["managed_servers"]) == ["vd"]
    finally:
        again.stop()


def test_a_reload_that_removes_the_group_stops_its_server(env: Env) -> None:
    p = launched(env, env.make_config(env.managed()), config_file=str(config_path(env)))
    assert wait_switched(p)["phase"] == "done"
    pid = p.call(p.rt.switcher.servers)["vq"]["pid"]

    def remove(d: dict[str, Any]) -> None:
        for name in ("vq", "vd"):
            del d["backends"][name]
        del d["exclusive_groups"]
        d["models"] = {"fallback": d["models"]["fallback"]}
        del d["fallbacks"]

    edit_config(env, remove)
    code, _, body = http("POST", p.url + "/admin/reload", {})
    assert code == 200, body
    wait_until(lambda: not alive(pid), 20, "the removed member's server to stop")
    assert p.call(p.rt.switcher.servers) == {}
    assert not lists(env.port_q, QWEN)


def test_admin_reload_follows_the_admin_rules(env: Env) -> None:
    p = launched(env, env.make_config(None), config_file=str(config_path(env)))
    req = urllib.request.Request(p.url + "/admin/reload", data=b"{}", method="POST")
    req.add_header("Content-Type", "text/plain")
    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(req, timeout=5)
    assert plain.value.code == 415
    for origin in (
        "http://evil.example",
        p.url,
    ):  # a foreign page; the dashboard's without its session
        req = urllib.request.Request(p.url + "/admin/reload", data=b"{}", method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Origin", origin)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 403, origin
    code, _, body = http("POST", p.url + "/admin/reload", {})  # a script, as curl sends it
    assert code == 200 and body["message"].startswith("config reloaded: 3 backends"), body


def test_server_logs_are_rotated_past_their_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from traywire.proxy import commands

    monkeypatch.setattr(commands, "LOG_ROTATE_BYTES", 100)
    log = tmp_path / "servers" / "vq.log"
    argv = (sys.executable, "-c", "print('x' * 200)")

    async def run_once() -> int:
        proc, start = await commands.start_server("vq", argv, log, None, now=0.0)
        await proc.wait()
        return start

    first = asyncio.run(run_once())
    assert log.read_text().count("traywire starts vq:") == 1 and first > 0
    asyncio.run(run_once())  # over 100 bytes: the old log is moved aside first
    old = log.with_name("vq.log.1").read_text()
    assert old.count("traywire starts vq:") == 1 and "x" * 200 in old
    assert log.read_text().count("traywire starts vq:") == 1
