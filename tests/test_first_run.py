"""A person's first run, as the README's first command gives it: the installed
``traywire`` binary on a box with no display and no keyring says one short
line per missing thing (with its fix, the quick ``env:VAR`` path first), and
nothing else; ``traywire doctor`` lists every check with its fix. Also the
pieces behind them: the key notices, the opener that says when it fails."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from app_process import free_port, write_config
from fakes import FakeBackend

from traywire import config, doctor, startup
from traywire.desktop import opener

BIN = Path(sys.executable).parent / "traywire"
NO_DESKTOP = ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "BROWSER")


def run_binary(args: list[str], seconds: float = 4.0) -> tuple[int, str, str]:
    """Start the binary, let it settle, stop it with Ctrl-C; (rc, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in NO_DESKTOP}
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # no keyring
    proc = subprocess.Popen(
        [str(BIN), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def notices(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("traywire: stopping")]


def test_the_binary_with_no_display_and_no_keyring_says_one_line_per_missing_thing() -> None:
    assert BIN.is_file(), f"{BIN}: install traywire (pip install -e .)"
    port = free_port()
    rc, out, err = run_binary(["--port", str(port)])
    assert rc == 0, err
    assert out.startswith(f"traywire http://127.0.0.1:{port} — OpenAI:")
    lines = notices(err)
    # the two missing things of the default config here: the keyring, the tray
    assert len(lines) == 2, err
    keyring, tray = lines
    assert keyring.startswith("traywire: no usable OS keyring, so ollama_cloud has no key.")
    assert keyring.index("env:OLLAMA_CLOUD_API_KEY") < keyring.index("Secret Service")
    assert "export OLLAMA_CLOUD_API_KEY=" in keyring
    assert tray.startswith("traywire: no tray icon: no graphical session")
    assert f"Serving at http://127.0.0.1:{port} until Ctrl-C" in tray
    for line in lines:
        assert len(line) < 300, line
        assert "traywire doctor" in line
    for noise in ("WARNING", "Traceback", "warning:", "gnome-keyring-daemon"):
        assert noise not in err, err


def test_serve_says_the_keyring_notice_once() -> None:
    port = free_port()
    rc, _out, err = run_binary(["serve", "--port", str(port)])
    assert rc == 0, err
    lines = notices(err)
    assert len(lines) == 1 and lines[0].startswith("traywire: no usable OS keyring"), err
    assert "WARNING" not in err


def test_doctor_binary_lists_each_check_with_its_fix() -> None:
    env = {k: v for k, v in os.environ.items() if k not in NO_DESKTOP}
    proc = subprocess.run(
        [str(BIN), "doctor", "--no-backends", "--port", str(free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ok       config: ")
    assert lines[1].startswith("FAILED   keyring: ") and "ollama_cloud" in lines[1]
    assert lines[2].startswith("           fix: ") and "gnome-keyring" in lines[2]
    assert any(
        line.startswith("MISSING  key keyring:ollama_cloud: cannot be read") for line in lines
    )
    assert any(line.startswith("MISSING  tray: no graphical session") for line in lines)
    assert any(line.startswith("ok       port 127.0.0.1:") for line in lines)
    assert lines[-1].endswith("checks need attention")
    assert proc.stderr == ""


# --------------------------------------------------------------------------- doctor, in process


def test_doctor_checks_keys_backends_and_the_port(
    memory_keyring: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        FakeBackend("openai", name="a", models=["ma"]) as a,
        FakeBackend("openai", name="b", models=["mb"]) as b,
    ):
        cfg_path = write_config(tmp_path, {"a": a, "b": b})
        doc = yaml.safe_load(cfg_path.read_text())
        doc["backends"]["a"]["key"] = "keyring:a_key"
        doc["backends"]["b"]["key"] = "env:B_KEY_FOR_TEST"
        cfg_path.write_text(yaml.safe_dump(doc))
        b.refuse()
        monkeypatch.delenv("B_KEY_FOR_TEST", raising=False)
        memory_keyring.set_password("traywire", "a_key", "sk-test-a-123456")
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            findings = doctor.check_all(
                str(cfg_path), port=port, env={"DISPLAY": ""}, platform="linux"
            )
    by = {f.what: f for f in findings}
    assert by["config"].status == "ok"
    assert by["keyring"].status == "ok"
    assert by["key keyring:a_key"].status == "ok"
    key_b = by["key env:B_KEY_FOR_TEST"]
    assert key_b.status == "missing" and key_b.fix == "export B_KEY_FOR_TEST=..."
    assert by["backend a"].status == "ok"
    assert by["backend b"].status == "missing" and "connection refused" in by["backend b"].detail
    assert by["backend b"].fix == "start it, or set backends.b.enabled: false"
    assert by["tray"].status == "missing"
    port_finding = by[f"port 127.0.0.1:{port}"]
    assert port_finding.status == "failed" and "in use" in port_finding.detail
    text = doctor.render(findings)
    assert "sk-test-a-123456" not in text
    assert "MISSING  backend b: " in text and "   fix: start it" in text


def test_doctor_reports_a_broken_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  code:\n    strategy: complexty_based\n")
    out = io.StringIO()
    assert doctor.run(str(bad), out, backends=False) == 1
    text = out.getvalue()
    assert text.startswith("FAILED   config: ") and "complexity_based" in text
    assert "1 of 1 checks need attention" in text


# --------------------------------------------------------------------------- key notices


def test_key_notices_for_unset_keys(memory_keyring: Any, tmp_path: Path) -> None:
    with FakeBackend("openai", name="a", models=["ma"]) as a:
        cfg_path = write_config(tmp_path, {"a": a})
        cfg_path.write_text(
            cfg_path.read_text().replace("capacity: 4", "capacity: 4\n    key: keyring:a_key")
        )
        cfg = config.load(str(cfg_path))
    assert startup.key_notices(cfg) == [
        "traywire: no key for a: it is skipped until one is set. "
        "Fix: traywire keys set a_key (or the dashboard's Keys)."
    ]
    memory_keyring.set_password("traywire", "a_key", "sk-x-123456789")
    assert startup.key_notices(cfg) == []


def test_key_notices_without_a_keyring(fail_keyring: Any) -> None:
    cfg = config.load(None)
    lines = startup.key_notices(cfg, environ={})
    assert len(lines) == 1
    assert lines[0].startswith("traywire: no usable OS keyring, so ollama_cloud has no key.")
    assert "set backends.ollama_cloud.key: env:OLLAMA_CLOUD_API_KEY" in lines[0]


# --------------------------------------------------------------------------- the opener


def test_opener_argv() -> None:
    url = "http://127.0.0.1:8484/ui"
    assert opener.opener_argv(url, {}, "linux") == ["xdg-open", url]
    assert opener.opener_argv(url, {"BROWSER": "firefox --new-tab"}, "linux") == [
        "firefox",
        "--new-tab",
        url,
    ]
    assert opener.opener_argv(url, {"BROWSER": "w3m %s:lynx"}, "linux") == ["w3m", url]
    assert opener.opener_argv("/tmp/x.yaml", {"BROWSER": "firefox"}, "linux") == [
        "xdg-open",
        "/tmp/x.yaml",
    ]
    assert opener.opener_argv(url, {}, "darwin") == ["open", url]


def _open(target: str, env: dict[str, str]) -> tuple[list[str], Any]:
    said: list[str] = []
    proc = opener.open_target(target, "the dashboard", said.append, env=env, platform="linux")
    if proc is not None:
        proc.wait(10)
        deadline = time.monotonic() + 10
        while proc.returncode is not None and not said and time.monotonic() < deadline:
            time.sleep(0.02)
            if proc.poll() == 0:
                break
    return said, proc


def test_an_opener_that_fails_is_reported_and_reaped(tmp_path: Path) -> None:
    url = "http://127.0.0.1:8484/ui"
    env = {"PATH": os.environ.get("PATH", ""), "BROWSER": "false"}
    said, proc = _open(url, env)
    assert said == [f"Could not open the dashboard: false exited with 1. Open {url} yourself."]
    assert proc is not None and proc.returncode == 1  # waited for: no zombie
    said, _ = _open(url, {"PATH": str(tmp_path)})  # no xdg-open at all
    assert said == [
        f"Could not open the dashboard: xdg-open not found (install xdg-utils). Open {url} "
        "yourself."
    ]
    said, proc = _open(url, {"PATH": os.environ.get("PATH", ""), "BROWSER": "true"})
    assert said == [] and proc is not None and proc.returncode == 0


def test_without_notifications_the_controller_logs_and_sets_the_menu_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from test_desktop import controller

    c, proxy, tray = controller()
    tray.can_notify = False  # type: ignore[attr-defined]
    kicked: list[bool] = []
    c.kick = lambda: kicked.append(True)
    with caplog.at_level(logging.WARNING, logger="traywire"):
        c.notify("Could not open the dashboard: false exited with 1.")
    assert tray.notes == []
    assert proxy.notes == ["Could not open the dashboard: false exited with 1."]
    assert "Could not open the dashboard" in caplog.text
    assert kicked == [True]


def test_doctor_tells_a_running_traywire_from_another_program(tmp_path: Path) -> None:
    from traywire import statefile
    from traywire.desktop import instance

    directory = statefile.state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    info = directory / instance.INFO_NAME
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # a file left by a traywire that is gone: another program holds the port
        info.write_text(f'{{"url": "http://127.0.0.1:{port}", "pid": 999999999}}')
        found = doctor.check_port("127.0.0.1", port, doctor._running_url)
        assert found.status == "failed" and "another program" in found.detail
        # this process stands in for a running traywire
        info.write_text(f'{{"url": "http://127.0.0.1:{port}", "pid": {os.getpid()}}}')
        found = doctor.check_port("127.0.0.1", port, doctor._running_url)
        assert found.status == "ok" and "running traywire" in found.detail
