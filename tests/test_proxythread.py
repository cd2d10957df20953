"""The proxy on its own loop thread (`desktop.proxythread`): commands posted to
it, immutable snapshots, the status poll, stopping with a drain."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from fakes import FakeBackend
from harness import config_for

from traywire import config, statefile
from traywire.desktop.proxythread import Poller, Proxy
from traywire.desktop.tray import Snapshot, icon_state
from traywire.errors import ConfigError


def backends(**fakes: FakeBackend) -> dict[str, dict[str, Any]]:
    return {
        n: {"kind": "openai", "url": f.url + "/v1", "location": "local", "capacity": 4}
        for n, f in fakes.items()
    }


def models_yaml(**fakes: FakeBackend) -> str:
    lines = ["models:"]
    for n, f in fakes.items():
        lines.append(
            f"  m_{n}: {{backend: {n}, upstream: {f.models[0]}, params_b: 7, tier: local, "
            "capabilities: [chat], context: 8192}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def fake_a() -> Iterator[FakeBackend]:
    with FakeBackend("openai", name="a", models=["ma"]) as f:
        yield f


@pytest.fixture
def fake_b() -> Iterator[FakeBackend]:
    with FakeBackend("openai", name="b", models=["mb"]) as f:
        yield f


@pytest.fixture
def proxies() -> Iterator[list[Proxy]]:
    started: list[Proxy] = []
    yield started
    for p in started:
        p.stop(grace=1)


def start(started: list[Proxy], cfg: config.Config, **kwargs: Any) -> Proxy:
    kwargs.setdefault("resolve_keys", False)
    kwargs.setdefault("probes", False)
    kwargs.setdefault("autostart_enabled", lambda: False)
    p = Proxy(cfg, port=0, **kwargs)
    started.append(p)
    p.start()
    return p


def get(p: Proxy, path: str) -> tuple[int, Any]:
    host, port = p.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def chat(p: Proxy, model: str, timeout: float = 20) -> tuple[int, dict[str, Any]]:
    host, port = p.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        conn.request(
            "POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"}
        )
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def group_config(a: FakeBackend, b: FakeBackend) -> config.Config:
    spec = backends(vllm_a=a, vllm_b=b)
    for s in spec.values():
        s["exclusive_group"] = "vllm"
    return config_for(spec, models_yaml(vllm_a=a, vllm_b=b))


# --------------------------------------------------------------------------- lifecycle


def test_the_proxy_runs_on_its_own_thread_and_stops(
    fake_a: FakeBackend, proxies: list[Proxy]
) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg)
    assert p.running
    assert p.url.startswith("http://127.0.0.1:")
    names = {t.name for t in threading.enumerate()}
    assert "traywire-proxy" in names
    assert get(p, "/health")[0] == 200
    status, body = chat(p, "m_a")
    assert status == 200 and "Hello from a" in body["choices"][0]["message"]["content"]
    p.stop()
    assert not p.running
    assert "traywire-proxy" not in {t.name for t in threading.enumerate()}
    assert p.loop.is_closed()
    with pytest.raises(OSError):
        get(p, "/health")
    p.stop()  # idempotent
    assert p.snapshot() == Snapshot(running=False, url=p.url)
    fut = p.set_preference("local_only")
    with pytest.raises(RuntimeError, match="not running"):
        fut.result(1)


def test_a_taken_port_fails_start_cleanly(fake_a: FakeBackend, proxies: list[Proxy]) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    first = start(proxies, cfg)
    port = int(first.url.rsplit(":", 1)[1])
    second = Proxy(cfg, port=port, resolve_keys=False, probes=False)
    with pytest.raises(OSError):
        second.start()
    assert not second.running
    assert second.loop.is_closed()
    second.stop()  # harmless


def test_a_non_loopback_host_without_token_is_refused(fake_a: FakeBackend) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = Proxy(cfg, host="0.0.0.0", port=0, resolve_keys=False, probes=False)
    with pytest.raises(ValueError, match="token"):
        p.start()
    p.stop()


# --------------------------------------------------------------------------- snapshots


def test_snapshot_is_a_deeply_immutable_copy(fake_a: FakeBackend, proxies: list[Proxy]) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg, autostart_enabled=lambda: True)
    s = p.snapshot()
    assert s.running and s.url == p.url and s.autostart is True
    assert isinstance(s.status, MappingProxyType)
    assert isinstance(s.status["backends"], MappingProxyType)
    assert isinstance(s.status["backends"]["a"], MappingProxyType)
    assert isinstance(s.status["backends"]["a"]["missing_models"], tuple)
    with pytest.raises(TypeError):
        s.status["preference"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        s.status["backends"]["a"]["in_flight"] = 9  # type: ignore[index]
    with pytest.raises(AttributeError):
        s.running = False  # type: ignore[misc]
    assert dict(s.topology.routes) == {"m_a": ("m_a",)}
    # later changes do not reach an old snapshot
    p.set_preference("cloud_only").result(5)
    assert s.status["preference"] == "auto"
    assert p.snapshot().status["preference"] == "cloud_only"
    # the topology is built once per config
    assert p.snapshot().topology is p.snapshot().topology


def test_snapshot_follows_health(fake_a: FakeBackend, proxies: list[Proxy]) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg)

    async def fail() -> None:
        for _ in range(3):
            p.rt.health.failure("a", time.monotonic(), "refused")

    assert icon_state(p.snapshot()) == "healthy"
    p.run(fail())
    s = p.snapshot()
    assert s.status["backends"]["a"]["health"] == "down"
    assert icon_state(s) == "failing"


def test_autostart_errors_read_as_off(fake_a: FakeBackend, proxies: list[Proxy]) -> None:
    def broken() -> bool:
        raise OSError("registry")

    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg, autostart_enabled=broken)
    assert p.snapshot().autostart is False


# --------------------------------------------------------------------------- commands


def test_commands_reach_the_runtime(
    fake_a: FakeBackend, fake_b: FakeBackend, proxies: list[Proxy]
) -> None:
    p = start(proxies, group_config(fake_a, fake_b))
    assert p.snapshot().status["active"] == {"vllm": "vllm_a"}
    p.set_preference("prefer_cloud").result(5)
    assert p.set_active("vllm", "vllm_b").result(5) == "set"
    status = get(p, "/status")[1]
    assert status["preference"] == "prefer_cloud"
    assert status["preference_source"] == "runtime"
    assert status["active"] == {"vllm": "vllm_b"}
    # the router follows: m_vllm_a is now an inactive member
    assert chat(p, "m_vllm_b")[0] == 200
    with pytest.raises(ValueError, match="preference must be one of"):
        p.set_preference("sometimes").result(5)
    with pytest.raises(ValueError, match="not a member"):
        p.set_active("vllm", "vllm_c").result(5)


def test_set_active_runs_a_switch_when_the_group_has_one(
    fake_a: FakeBackend, fake_b: FakeBackend, proxies: list[Proxy], tmp_path: Path
) -> None:
    import sys

    spec = backends(vllm_a=fake_a, vllm_b=fake_b)
    for s in spec.values():
        s["exclusive_group"] = "vllm"
    doc = {
        "exclusive_groups": {
            "vllm": {
                "active": "vllm_a",
                "switch": {
                    "mode": "commands",
                    "start": [sys.executable, "-c", "pass"],
                    "drain_timeout": 1,
                    "ready_timeout": 10,
                },
            }
        }
    }
    cfg = config_for(
        spec, models_yaml(vllm_a=fake_a, vllm_b=fake_b) + yaml.safe_dump(doc, sort_keys=False)
    )
    p = start(proxies, cfg)
    assert p.set_active("vllm", "vllm_b").result(30) == "done"
    s = p.snapshot()
    assert s.status["active"] == {"vllm": "vllm_b"}
    assert s.status["switching"]["vllm"]["phase"] == "done"


def test_reload_config(
    fake_a: FakeBackend, fake_b: FakeBackend, proxies: list[Proxy], tmp_path: Path
) -> None:
    path = tmp_path / "traywire.yaml"

    def write(**fakes: FakeBackend) -> None:
        doc = {"extends": "none", "backends": backends(**fakes)}
        path.write_text(yaml.safe_dump(doc) + models_yaml(**fakes))

    write(a=fake_a)
    cfg = config.load(path, user_file=False)
    p = start(proxies, cfg, config_file=path)
    assert chat(p, "m_b")[0] == 404
    write(a=fake_a, b=fake_b)
    msg = p.reload_config().result(10)
    assert msg == "config reloaded: 2 backends, 2 models, 0 routes"
    assert set(p.snapshot().status["backends"]) == {"a", "b"}
    assert chat(p, "m_b")[0] == 200
    assert set(p.snapshot().topology.routes) == {"m_a", "m_b"}
    # a broken file leaves the running config in place
    path.write_text("extends: none\nbackends: {a: {kind: nope}}\n")
    with pytest.raises(ConfigError):
        p.reload_config().result(10)
    assert set(p.snapshot().status["backends"]) == {"a", "b"}
    assert chat(p, "m_b")[0] == 200


def test_reload_says_when_server_settings_need_a_restart(
    fake_a: FakeBackend, proxies: list[Proxy], tmp_path: Path
) -> None:
    path = tmp_path / "traywire.yaml"
    doc = {"extends": "none", "backends": backends(a=fake_a)}
    path.write_text(yaml.safe_dump(doc) + models_yaml(a=fake_a))
    p = start(proxies, config.load(path, user_file=False), config_file=path)
    doc["server"] = {"port": 1234}
    path.write_text(yaml.safe_dump(doc) + models_yaml(a=fake_a))
    assert p.reload_config().result(10).endswith("restart traywire to apply the server settings")


# --------------------------------------------------------------------------- state file


def test_state_is_saved_and_applied_at_the_next_start(
    fake_a: FakeBackend, fake_b: FakeBackend, proxies: list[Proxy], tmp_path: Path
) -> None:
    path = tmp_path / "state" / "state.json"
    p = start(proxies, group_config(fake_a, fake_b), state_path=path)
    p.snapshot()
    assert not path.exists()  # nothing set at run time yet
    p.set_preference("local_only").result(5)
    p.set_active("vllm", "vllm_b").result(5)
    p.snapshot()  # the poll persists what changed
    assert statefile.load(path) == statefile.State(
        "local_only", MappingProxyType({"vllm": "vllm_b"})
    )
    p.stop()
    again = start(proxies, group_config(fake_a, fake_b), state_path=path)
    status = get(again, "/status")[1]
    assert status["preference"] == "local_only"
    assert status["preference_source"] == "runtime"
    assert status["active"] == {"vllm": "vllm_b"}
    assert again.state_problems == []


def test_stop_saves_the_last_state(
    fake_a: FakeBackend, fake_b: FakeBackend, proxies: list[Proxy], tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    p = start(proxies, group_config(fake_a, fake_b), state_path=path)
    p.set_preference("prefer_local").result(5)
    p.stop()
    assert statefile.load(path).preference == "prefer_local"


def test_a_saved_state_the_config_no_longer_allows_is_skipped(
    fake_a: FakeBackend, fake_b: FakeBackend, proxies: list[Proxy], tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    statefile.save(path, statefile.State("prefer_cloud", MappingProxyType({"gone": "x"})))
    p = start(proxies, group_config(fake_a, fake_b), state_path=path)
    assert p.snapshot().status["preference"] == "prefer_cloud"
    assert len(p.state_problems) == 1 and "gone" in p.state_problems[0]


# --------------------------------------------------------------------------- stopping drains


def test_stop_lets_in_flight_requests_finish(fake_a: FakeBackend, proxies: list[Proxy]) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg)
    fake_a.slow_first_byte(1.0)
    result: dict[str, Any] = {}

    def call() -> None:
        result["reply"] = chat(p, "m_a")

    t = threading.Thread(target=call)
    t.start()
    assert fake_a.wait_for_requests(1, timeout=5)
    t0 = time.monotonic()
    p.stop(grace=10)
    t.join(10)
    assert result["reply"][0] == 200
    assert "Hello from a" in result["reply"][1]["choices"][0]["message"]["content"]
    assert time.monotonic() - t0 < 8


def test_stop_after_the_grace_period_ends_requests_cleanly(
    fake_a: FakeBackend, proxies: list[Proxy]
) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg)
    fake_a.hang()
    result: dict[str, Any] = {}

    def call() -> None:
        try:
            result["reply"] = chat(p, "m_a")
        except (OSError, http.client.HTTPException) as exc:
            result["error"] = exc

    t = threading.Thread(target=call)
    t.start()
    assert fake_a.wait_for_requests(1, timeout=5)
    t0 = time.monotonic()
    p.stop(grace=0.5)
    t.join(10)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 8
    # a clean error reply in the client's dialect: not a hang, not a cut connection
    assert "error" not in result, result
    status, body = result["reply"]
    assert status == 503
    assert body["error"]["code"] == "shutting_down"


def test_stop_in_background_then_calls_back(fake_a: FakeBackend, proxies: list[Proxy]) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg)
    done = threading.Event()
    t = p.stop_in_background(1, then=done.set)
    assert done.wait(15)
    t.join(5)
    assert not p.running


def test_a_second_stop_waits_for_the_first(fake_a: FakeBackend, proxies: list[Proxy]) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg)
    fake_a.slow_first_byte(1.0)
    t = threading.Thread(target=lambda: chat(p, "m_a"))
    t.start()
    assert fake_a.wait_for_requests(1, timeout=5)
    first = p.stop_in_background(10)
    time.sleep(0.1)
    p.stop()  # returns only when the proxy has stopped
    assert p.loop.is_closed()
    first.join(5)
    t.join(5)


# --------------------------------------------------------------------------- the poll


def test_poller_delivers_and_is_kicked_by_health_changes(
    fake_a: FakeBackend, proxies: list[Proxy]
) -> None:
    cfg = config_for(backends(a=fake_a), models_yaml(a=fake_a))
    p = start(proxies, cfg)
    got: list[Snapshot] = []
    seen = threading.Condition()

    def deliver(s: Snapshot) -> None:
        with seen:
            got.append(s)
            seen.notify_all()

    poller = Poller(p.snapshot, deliver, interval=30)
    p.add_listener(poller.kick)
    poller.start()
    try:
        with seen:
            assert seen.wait_for(lambda: len(got) >= 1, 5)
        assert "traywire-status" in {t.name for t in threading.enumerate()}

        async def fail() -> None:
            for _ in range(3):
                p.rt.health.failure("a", time.monotonic(), "refused")

        t0 = time.monotonic()
        p.run(fail())
        with seen:
            assert seen.wait_for(lambda: icon_state(got[-1]) == "failing", 5)
        assert time.monotonic() - t0 < 5  # long before the 30 s interval
        # a finished command kicks it too
        p.set_preference("local_only").result(5)
        with seen:
            assert seen.wait_for(lambda: got[-1].status["preference"] == "local_only", 5)
        # and so does the proxy stopping
        p.stop(grace=1)
        with seen:
            assert seen.wait_for(lambda: not got[-1].running, 5)
    finally:
        poller.stop()
    assert "traywire-status" not in {t.name for t in threading.enumerate()}


def test_poller_survives_a_failing_deliver() -> None:
    calls: list[int] = []

    def deliver(s: Snapshot) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    poller = Poller(lambda: Snapshot(running=False), deliver, interval=0.05).start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    poller.stop()
    assert len(calls) >= 3
