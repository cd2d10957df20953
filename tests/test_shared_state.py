"""Several `traywire serve` processes sharing one view of the backends through a
real Redis (config ``shared_state``): load, circuits, usage, Redis going away
and coming back, an instance dying, the cross-instance switch lock."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
import yaml
from fakeclock import FakeClock
from fakes import FakeBackend
from redis_server import RedisServer, redis_server

from traywire import config
from traywire.desktop.menu import menu_model
from traywire.desktop.tray import Snapshot, freeze
from traywire.errors import ConfigError
from traywire.proxy import shared_view as sv
from traywire.proxy.runtime import Runtime
from traywire.proxy.shared import UNREACHABLE, Shared
from traywire.proxy.switch import SwitchBusy
from traywire.types import BackendState, LiveState

__all__ = ["redis_server"]

CHAT = "/v1/chat/completions"
TRAYWIRE = (sys.executable, "-m", "traywire")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    path: Path,
    redis_url: str | None,
    fakes: dict[str, tuple[FakeBackend, str]],
    route: dict[str, Any],
    *,
    capacity: int = 4,
    saturation: float = 0.8,
    health: dict[str, Any] | None = None,
    shared: dict[str, Any] | None = None,
    groups: dict[str, Any] | None = None,
) -> Path:
    """One OpenAI-kind backend per fake (name -> (fake, location)), one model
    ``m_<name>`` each, the ``chat`` route given."""
    doc: dict[str, Any] = {
        "extends": "none",
        "saturation": saturation,
        "health": health or {"probe_interval": 60, "failure_threshold": 1, "cooldown": 60},
        "log": {"enabled": False},
        "backends": {
            n: {"kind": "openai", "url": f.url + "/v1", "location": loc, "capacity": capacity}
            for n, (f, loc) in fakes.items()
        },
        "models": {
            f"m_{n}": {
                "backend": n,
                "upstream": f.models[0],
                "params_b": 7,
                "tier": "local" if loc == "local" else "cloud_standard",
                "capabilities": ["chat"],
                "context": 8192,
            }
            for n, (f, loc) in fakes.items()
        },
        "routes": {"chat": route},
    }
    if redis_url is not None:
        doc["shared_state"] = {"url": redis_url, "lease": 1.0, **(shared or {})}
    if groups:
        doc["exclusive_groups"] = groups
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Serve:
    """``traywire serve`` as a process of its own."""

    def __init__(self, cfg: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*TRAYWIRE, "serve", "--config", str(cfg), "--port", str(self.port), "--grace", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"traywire serve exited: {self.proc.communicate()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("traywire serve did not start listening")

    def status(self) -> dict[str, Any]:
        r = httpx.get(self.url + "/status", timeout=10)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def chat(self, text: str = "hi", timeout: float = 30) -> httpx.Response:
        return httpx.post(
            self.url + CHAT,
            json={"model": "chat", "messages": [{"role": "user", "content": text}]},
            timeout=timeout,
        )

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture
def serves() -> Iterator[Callable[[Path], Serve]]:
    started: list[Serve] = []

    def start(cfg: Path) -> Serve:
        s = Serve(cfg)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def until(what: str, check: Callable[[], bool], timeout: float = 15) -> None:
    """Poll ``check`` until true (cross-process convergence), or fail saying what."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def in_background(*fns: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run each call on a thread of its own; their answers land in the list."""
    out: list[httpx.Response] = []
    for fn in fns:

        def run(fn: Callable[[], httpx.Response] = fn) -> None:
            with contextlib.suppress(httpx.HTTPError):  # its instance was killed
                out.append(fn())

        threading.Thread(target=run, daemon=True).start()
    return out


@pytest.fixture
def local() -> Iterator[FakeBackend]:
    with FakeBackend("openai", name="local", models=["local-7b"]) as f:
        yield f


@pytest.fixture
def cloud() -> Iterator[FakeBackend]:
    with FakeBackend("openai", name="cloud", models=["cloud-70b"]) as f:
        yield f


# ---------------------------------------------------------------------- config


def test_config_section(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        "shared_state: {url: 'rediss://gpu-box:6380/2', password: 'env:REDIS_PW', "
        "share_preference: true}\n"
    )
    s = config.load(p).shared_state
    assert (s.url, s.password, s.share_preference) == (
        "rediss://gpu-box:6380/2",
        "env:REDIS_PW",
        True,
    )
    assert config.load(None).shared_state.url is None  # off unless configured
    for text, said in [
        ("shared_state: {url: 'redis://:hunter2@box:6379/0'}", "holds a password"),
        ("shared_state: {url: 'http://box:6379'}", "expected redis://"),
        ("shared_state: {url: 'redis://box:6379/x'}", "a number"),
        ("shared_state: {url: 'redis://box/0', password: hunter2}", "key reference"),
        ("shared_state: {url: 'redis://box/0', sharepref: true}", "share_preference"),
        ("shared_state: {share_preference: true}", "url: missing"),
    ]:
        p.write_text(text + "\n")
        with pytest.raises(ConfigError) as e:
            config.load(p)
        assert "shared_state" in str(e.value) and said in str(e.value), str(e.value)
        assert "hunter2" not in str(e.value)


# ------------------------------------------------------------- two processes


def test_combined_load_overflows(
    tmp_path: Path,
    redis_server: RedisServer,
    serves: Callable[[Path], Serve],
    local: FakeBackend,
    cloud: FakeBackend,
) -> None:
    """Capacity 4 at 50%: two requests in flight saturate the local backend.
    Each instance holds one, so neither alone is saturated; together they are,
    and the next request overflows to the cloud."""
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_server.url,
        {"local": (local, "local"), "cloud": (cloud, "cloud")},
        {"strategy": "direct", "candidates": ["m_local", "m_cloud"]},
        saturation=0.5,
    )
    a, b = serves(cfg), serves(cfg)
    local.hang(paths=[CHAT])
    held = in_background(a.chat, b.chat)
    until("both requests reach the local backend", lambda: local.in_flight == 2)
    until(
        "b sees a's request in flight",
        lambda: b.status()["backends"]["local"].get("in_flight_elsewhere") == 1,
    )
    assert b.status()["backends"]["local"]["in_flight"] == 1  # b alone: 1/4 < 50%
    r = b.chat()
    assert r.status_code == 200
    assert r.headers["X-Traywire-Backend"] == "cloud"
    assert cloud.count(CHAT) == 1
    local.ok()  # the held requests are answered
    until("held requests finish", lambda: len(held) == 2)
    assert all(x.status_code == 200 for x in held)


@pytest.mark.parametrize("fault", ["failures", "rate_limited"])
def test_circuit_opened_by_one_is_skipped_by_the_other(
    tmp_path: Path,
    redis_server: RedisServer,
    serves: Callable[[Path], Serve],
    local: FakeBackend,
    cloud: FakeBackend,
    fault: str,
) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_server.url,
        {"local": (local, "local"), "cloud": (cloud, "cloud")},
        {"strategy": "direct", "candidates": ["m_local", "m_cloud"]},
    )
    a, b = serves(cfg), serves(cfg)
    until("both connected", lambda: b.status()["shared_state"]["state"] == "connected")
    if fault == "failures":
        local.status(500, paths=[CHAT])
    else:
        local.status(429, headers={"Retry-After": "120"}, paths=[CHAT])
    r = a.chat()
    assert r.status_code == 200 and r.headers["X-Traywire-Backend"] == "cloud"
    assert local.count(CHAT) == 1
    until(
        "b opens the circuit a opened", lambda: b.status()["backends"]["local"]["circuit"] == "open"
    )
    st = b.status()["backends"]["local"]
    assert st["open_reason"] == fault
    assert st["retry_in_s"] > 30
    r = b.chat()
    assert r.status_code == 200
    assert r.headers["X-Traywire-Backend"] == "cloud"
    assert r.headers["X-Traywire-Attempts"] == "1"
    assert local.count(CHAT) == 1  # b never tried it


def test_usage_on_one_moves_usage_based_on_the_other(
    tmp_path: Path,
    redis_server: RedisServer,
    serves: Callable[[Path], Serve],
    local: FakeBackend,
    cloud: FakeBackend,
) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_server.url,
        {"first": (local, "local"), "second": (cloud, "local")},
        {"strategy": "usage_based", "candidates": ["m_first", "m_second"]},
    )
    a, b = serves(cfg), serves(cfg)
    r = a.chat("a long enough prompt to count some tokens")
    assert r.headers["X-Traywire-Backend"] == "first"  # both unused: the first
    until("b counts a's tokens", lambda: b.status()["usage"].get("m_first", 0) > 0)
    r = b.chat()
    assert r.status_code == 200
    assert r.headers["X-Traywire-Backend"] == "second"  # b served nothing itself
    until("a counts b's tokens", lambda: a.status()["usage"].get("m_second", 0) > 0)


def test_redis_down_then_back(
    tmp_path: Path,
    redis_server: RedisServer,
    serves: Callable[[Path], Serve],
    local: FakeBackend,
    cloud: FakeBackend,
) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_server.url,
        {"first": (local, "local"), "second": (cloud, "local")},
        {"strategy": "usage_based", "candidates": ["m_first", "m_second"]},
    )
    a, b = serves(cfg), serves(cfg)
    assert a.chat().status_code == 200
    until("b counts a's tokens", lambda: b.status()["usage"].get("m_first", 0) > 0)

    redis_server.stop()
    for s in (a, b):
        until("unreachable", lambda s=s: s.status()["shared_state"]["state"] == "unreachable")
        st = s.status()["shared_state"]
        assert st["note"] == "shared state: unreachable, routing on local view"
        assert st["instances"] == [st["instance"]]
    # both keep serving, each on its own view (b no longer counts a's tokens)
    assert b.status()["usage"].get("m_first", 0) == 0
    for s in (a, b):
        for _ in range(3):
            r = s.chat()
            assert r.status_code == 200 and r.headers["X-Traywire-Attempts"] == "1"

    redis_server.start()  # empty: nothing was saved
    for s in (a, b):
        until("connected again", lambda s=s: s.status()["shared_state"]["state"] == "connected")
    until("both see each other", lambda: len(b.status()["shared_state"]["instances"]) == 2)
    sa, sb = a.status()["usage"], b.status()["usage"]
    until("one usage view again", lambda: a.status()["usage"] == b.status()["usage"])
    assert sum(a.status()["usage"].values()) >= sum(sa.values()) and sb


def test_killed_instance_leases_expire(
    tmp_path: Path,
    redis_server: RedisServer,
    serves: Callable[[Path], Serve],
    local: FakeBackend,
    cloud: FakeBackend,
) -> None:
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_server.url,
        {"local": (local, "local"), "cloud": (cloud, "cloud")},
        {"strategy": "direct", "candidates": ["m_local", "m_cloud"]},
    )
    a, b = serves(cfg), serves(cfg)
    local.hang(paths=[CHAT])
    in_background(a.chat, a.chat)
    until(
        "b sees a's two requests",
        lambda: b.status()["backends"]["local"].get("in_flight_elsewhere") == 2,
    )
    assert len(b.status()["shared_state"]["instances"]) == 2
    a.proc.kill()  # no clean stop: its lease must run out (1 s here)
    a.proc.wait(timeout=10)
    until(
        "a's lease expires",
        lambda: b.status()["backends"]["local"].get("in_flight_elsewhere") == 0,
    )
    assert len(b.status()["shared_state"]["instances"]) == 1
    local.ok()


# ------------------------------------------------------------------- in-process


async def test_preference_and_switch_lock(tmp_path: Path, redis_server: RedisServer) -> None:
    """share_preference: a preference set on one instance is the other's; a
    switch takes the group's lock, so the other cannot switch meanwhile; the
    other stops routing to the group, the switch waits for its requests still
    in flight, and the other takes the group's new member once it is done."""
    with (
        FakeBackend("openai", name="q", models=["qwen"]) as q,
        FakeBackend("openai", name="d", models=["dolphin"]) as d,
    ):
        cfg_path = write_config(
            tmp_path / "c.yaml",
            redis_server.url,
            {"q": (q, "local"), "d": (d, "local")},
            {"strategy": "direct", "candidates": ["m_q", "m_d"]},
            shared={"share_preference": True},
            groups={
                "vllm": {
                    "active": "q",
                    "switch": {"mode": "commands", "start": ["true"]},
                }
            },
        )
        raw = yaml.safe_load(cfg_path.read_text())
        raw["backends"]["q"]["exclusive_group"] = "vllm"
        raw["backends"]["d"]["exclusive_group"] = "vllm"
        cfg_path.write_text(yaml.safe_dump(raw))
        cfg = config.load(cfg_path)
        one, two = Runtime(cfg, keys={}), Runtime(cfg, keys={})
        await one.start(resolve_keys=False, probes=False)
        await two.start(resolve_keys=False, probes=False)
        try:
            assert one.shared is not None and two.shared is not None

            async def wait(what: str, check: Callable[[], bool]) -> None:
                for _ in range(300):
                    if check():
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(what)

            await wait("connected", lambda: two.status()["shared_state"]["state"] == "connected")
            one.set_preference("local_only")
            await wait("two takes the preference", lambda: two.preference == "local_only")

            two.health.begin("q")  # a request on the old member, on the other instance
            task = one.switcher.begin("vllm", "d")
            await wait(
                "two sees the lock",
                lambda: two.shared is not None and bool(two.shared.busy("vllm")),
            )
            with pytest.raises(SwitchBusy, match=r"switching on instance"):
                two.switcher.begin("vllm", "q")
            # two routes nothing to the group meanwhile (its requests take the chains)
            await wait("two drops the old member", lambda: two.member("vllm") is None)
            # the switch waits for the other instance's request to finish
            await wait(
                "one sees it", lambda: one.shared is not None and one.shared.in_flight(["q"]) == 1
            )
            state = one.switcher.state("vllm")
            assert state is not None and state.phase == "draining"
            two.health.end("q")
            st = await task
            assert st.phase == "done", st
            assert not any("drain timed out" in n for n in st.notes)
            await wait("two takes the new member", lambda: two.member("vllm") == "d")
            await wait(
                "lock released", lambda: two.shared is not None and not two.shared.busy("vllm")
            )
        finally:
            await one.close()
            await two.close()


async def test_a_cooldown_is_shared_by_its_remaining_time(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Each instance has its own clock (here: fake ones, far apart): a 429's
    cooldown travels as the time it has left, not as a moment, so the other
    instance's circuit opens until its own now + what is left."""
    with FakeBackend("openai", name="c", models=["cm"]) as c:
        cfg = config.load(
            write_config(
                tmp_path / "c.yaml",
                redis_server.url,
                {"c": (c, "cloud")},
                {"strategy": "direct", "candidates": ["m_c"]},
            )
        )
        c1, c2 = FakeClock(1000.0), FakeClock(50_000.0)
        one, two = Runtime(cfg, keys={}, clock=c1), Runtime(cfg, keys={}, clock=c2)
        await one.start(resolve_keys=False, probes=False)
        await two.start(resolve_keys=False, probes=False)
        try:
            one.health.rate_limited("c", c1.monotonic(), retry_after_s=40)
            for _ in range(300):
                if two.health.open_reason("c") == "rate_limited":
                    break
                await asyncio.sleep(0.02)
            left = two.health.retry_in("c", c2.monotonic())
            assert left is not None and 38 < left <= 40  # less what the exchange took
            assert two.snapshot().backends["c"].circuit == "open"
            assert two.health.attempt("c") is None  # skipped without an attempt
            c2.advance(41)
            assert two.snapshot().backends["c"].circuit == "half_open"
        finally:
            await one.close()
            await two.close()


def test_the_others_view_merges_into_the_snapshot() -> None:
    """Their in-flight counts add up, latencies average, usage adds up; a
    malformed entry from another instance is left out."""
    states = [
        b"host-1-aaaa", b'{"f": {"gpu": 3, "cloud": 1}, "l": {"gpu": 200.0}}',
        b"host-2-bbbb", b'{"f": {"gpu": 2, "gone": 9}, "l": {"gpu": 400.0, "x": "y"}}',
        b"host-3-cccc", b"not json",
    ]  # fmt: skip
    usage = [b"host-1-aaaa", b'{"m1": 100}', b"host-4-dddd", b'{"m1": 50, "m2": -3}']
    v = sv.view(states, usage)
    assert v.instances == ("host-1-aaaa", "host-2-bbbb")
    local = LiveState(
        backends=MappingProxyType(
            {"gpu": BackendState(in_flight=1, latency_ms=300.0), "cloud": BackendState()}
        ),
        usage=MappingProxyType({"m1": 10}),
    )
    merged = sv.merge_backends(local.backends, v)
    assert merged["gpu"].in_flight == 6 and merged["gpu"].latency_ms == 300.0
    assert merged["cloud"].in_flight == 1 and "gone" not in merged
    assert sv.merge_usage(local.usage, v) == {"m1": 160}


def test_the_tray_says_when_shared_state_is_unreachable() -> None:
    def menu(shared: dict[str, Any]) -> list[str]:
        s = Snapshot(running=True, url="http://127.0.0.1:8484", status=freeze(
            {"backends": {}, "shared_state": shared}))  # fmt: skip
        return [i.text for i in menu_model(s)]

    down = {"state": "unreachable", "note": UNREACHABLE, "instances": ["me"]}
    assert "shared state: unreachable, routing on local view" in menu(down)
    assert "shared state: 2 instances" in menu({"state": "connected", "instances": ["a", "b"]})


def test_the_snapshot_adds_the_other_instances_to_every_local_change() -> None:
    """Health adds the others' counts where it builds a backend's entry, so
    each snapshot after a request (which rebuilds one entry) still holds them."""
    cfg = config.load(None)
    rt = Runtime(cfg, keys={})
    names = list(cfg.backends)
    view = sv.view(
        [b"other", sv.dumps({"f": {names[0]: 2, names[1]: 1}, "l": {names[0]: 100.0}}).encode()],
        [b"other", b'{"chat": 7}'],
    )
    rt.health.set_elsewhere(view)

    def check() -> None:
        snap = rt.snapshot()
        for n, b in snap.backends.items():
            assert b.in_flight == rt.health.in_flight(n) + view.in_flight.get(n, 0)

    for step in [names[0], names[1], names[0], names[2]]:
        rt.health.begin(step)
        check()
        rt.health.success(step, rt.clock.monotonic(), latency_ms=300.0)
        check()
    assert rt.snapshot().backends[names[0]].in_flight == 2 + 2
    assert rt.snapshot().backends[names[0]].latency_ms == 200.0  # (100 + 300) / 2
    assert rt.snapshot().usage["chat"] == 7
    rt.health.configure(["x", "y", *names[2:]])  # a reload: other backends
    assert set(rt.snapshot().backends) == {"x", "y", *names[2:]}
    check()
    rt.health.set_elsewhere(None)  # alone again (Redis away)
    assert rt.snapshot().backends[names[2]].in_flight == rt.health.in_flight(names[2])
    assert "chat" not in rt.snapshot().usage


async def test_password_from_the_environment_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with a password: the right one (from ``env:``) connects; a
    wrong one is "unreachable" with the server's reason, and the password is
    in no answer."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", password="s3cret-redis-pw")
    try:
        with FakeBackend("openai", name="c", models=["cm"]) as c:
            path = write_config(
                tmp_path / "c.yaml",
                server.url,
                {"c": (c, "local")},
                {"strategy": "direct", "candidates": ["m_c"]},
                shared={"password": "env:TW_TEST_REDIS_PW"},
            )
            cfg = config.load(path)
            for given, want in [("s3cret-redis-pw", "connected"), ("wrong-pw", "unreachable")]:
                monkeypatch.setenv("TW_TEST_REDIS_PW", given)
                rt = Runtime(cfg, keys={})
                await rt.start(resolve_keys=False, probes=False)
                try:
                    for _ in range(200):
                        if rt.status()["shared_state"]["state"] != "connecting":
                            break
                        await asyncio.sleep(0.02)
                    st = rt.status()
                    assert st["shared_state"]["state"] == want, st["shared_state"]
                    assert st["shared_state"]["warning"] is None  # loopback
                    assert given not in repr(st)
                finally:
                    await rt.close()
            assert "invalid" in str(st["shared_state"]["error"]).lower()
    finally:
        server.stop()


def test_a_remote_server_without_a_password_is_warned_about() -> None:
    cfg = config.load(None)
    rt = Runtime(cfg, keys={})
    s = cfg.shared_state

    def warning(url: str, password: str | None = None) -> str | None:
        return Shared(rt, replace(s, url=url), password, instance="me").warning

    assert "has no password" in str(warning("redis://10.0.0.5:6379/0"))
    assert warning("redis://10.0.0.5:6379/0", "pw") is None
    assert warning("redis://127.0.0.1:6379/0") is None
    assert warning("redis://localhost:6379/0") is None


def test_what_other_instances_wrote_is_bounded() -> None:
    """A huge or deeply nested entry is left out, counts are capped, and so is
    the number of instances read."""
    huge = sv.dumps({"f": {"gpu": 1}, "pad": "x" * (sv.MAX_ENTRY + 1)}).encode()
    deep = b"[" * 30_000 + b"]" * 30_000  # within the size bound, too deep to read
    many = []
    for i in range(sv.MAX_INSTANCES + 50):
        many += [f"i{i}".encode(), b'{"f": {"gpu": 1}}']
    v = sv.view([b"big", huge, b"deep", deep, b"n", b'{"f": {"gpu": 99999999999}}'], [])
    assert v.instances == ("n",) and v.in_flight["gpu"] == sv.MAX_COUNT
    assert sv.view(many, []).in_flight["gpu"] == sv.MAX_INSTANCES


def test_check_warns_of_a_remote_server_without_a_password(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("shared_state: {url: 'redis://192.168.1.20:6379/0'}\n")
    r = subprocess.run([*TRAYWIRE, "check", "--config", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "warning: shared_state.url: redis://192.168.1.20:6379/0 is not on this machine" in (
        r.stdout
    )
    p.write_text("shared_state: {url: 'redis://192.168.1.20:6379/0', password: 'env:PW'}\n")
    r = subprocess.run([*TRAYWIRE, "check", "--config", str(p)], capture_output=True, text=True)
    assert "shared_state" not in r.stdout


def test_a_hung_redis_holds_up_no_request(
    tmp_path: Path,
    redis_server: RedisServer,
    serves: Callable[[Path], Serve],
    local: FakeBackend,
    cloud: FakeBackend,
) -> None:
    """Redis stops answering (SIGSTOP) with connections open: requests are
    served meanwhile, the instance says so once its exchange times out, and
    it is connected again when Redis answers again."""
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_server.url,
        {"local": (local, "local"), "cloud": (cloud, "cloud")},
        {"strategy": "direct", "candidates": ["m_local", "m_cloud"]},
    )
    a = serves(cfg)
    until("connected", lambda: a.status()["shared_state"]["state"] == "connected")
    redis_server.pause()
    try:
        for _ in range(5):  # served while an exchange hangs
            r = a.chat()
            assert r.status_code == 200 and r.headers["X-Traywire-Backend"] == "local"
        until("unreachable", lambda: a.status()["shared_state"]["state"] == "unreachable")
        assert a.chat().status_code == 200
    finally:
        redis_server.resume()
    until("connected again", lambda: a.status()["shared_state"]["state"] == "connected")


async def test_a_preference_set_while_redis_is_down_reaches_the_others_once_back(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with FakeBackend("openai", name="c", models=["cm"]) as c:
        cfg = config.load(
            write_config(
                tmp_path / "c.yaml",
                redis_server.url,
                {"c": (c, "local")},
                {"strategy": "direct", "candidates": ["m_c"]},
                shared={"share_preference": True},
            )
        )
        one, two = Runtime(cfg, keys={}), Runtime(cfg, keys={})
        await one.start(resolve_keys=False, probes=False)
        await two.start(resolve_keys=False, probes=False)

        async def wait(what: str, check: Callable[[], bool]) -> None:
            for _ in range(400):
                if check():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(what)

        try:
            await wait("connected", lambda: two.status()["shared_state"]["state"] == "connected")
            redis_server.stop()
            assert one.shared is not None
            await wait("one sees it", lambda: one.shared is not None and one.shared.failures > 0)
            one.set_preference("prefer_cloud")  # said only on one, while Redis is away
            failed = one.shared.failures
            await wait("an exchange fails after it", lambda: one.shared.failures > failed)
            assert two.preference is None
            redis_server.start()
            await wait("two takes it once back", lambda: two.preference == "prefer_cloud")
        finally:
            await one.close()
            await two.close()
