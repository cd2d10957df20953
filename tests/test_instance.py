"""One traywire app per user: the lock, the published URL, and a real second
process that says where the first one runs and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_process import App, free_port, write_config
from fakes import FakeBackend

from traywire.desktop import instance


def test_second_lock_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = instance.acquire(tmp_path)
    assert first is not None
    assert instance.acquire(tmp_path) is None
    first.release()
    again = instance.acquire(tmp_path)
    assert again is not None
    again.release()
    again.release()  # idempotent


def test_publish_and_read_the_url(tmp_path: Path) -> None:
    with instance.acquire(tmp_path) as lock:  # type: ignore[union-attr]
        assert instance.running_url(tmp_path, wait=0) is None
        lock.publish("http://127.0.0.1:8484")
        assert instance.running_url(tmp_path, wait=0) == "http://127.0.0.1:8484"
    # released: the URL is gone with it
    assert instance.running_url(tmp_path, wait=0) is None


def test_a_stale_url_is_removed_by_the_next_owner(tmp_path: Path) -> None:
    (tmp_path / instance.INFO_NAME).write_text('{"url": "http://127.0.0.1:1"}')
    lock = instance.acquire(tmp_path)
    assert lock is not None
    assert instance.running_url(tmp_path, wait=0) is None
    lock.release()


def test_running_url_waits_for_a_starting_instance(tmp_path: Path) -> None:
    import threading

    lock = instance.acquire(tmp_path)
    assert lock is not None
    timer = threading.Timer(0.3, lock.publish, args=("http://127.0.0.1:9999",))
    timer.start()
    t0 = time.monotonic()
    assert instance.running_url(tmp_path, wait=5) == "http://127.0.0.1:9999"
    assert 0.2 < time.monotonic() - t0 < 4
    timer.join()
    lock.release()


def test_the_lock_is_held_against_other_processes_and_dies_with_them(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from traywire.desktop import instance; "
        "lock = instance.acquire(Path(sys.argv[1])); lock.publish('http://x'); "
        "print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert instance.acquire(tmp_path) is None
        assert instance.running_url(tmp_path, wait=0) == "http://x"
    finally:
        proc.kill()  # no clean-up: the OS must drop the lock
        proc.wait(10)
    lock = instance.acquire(tmp_path)
    assert lock is not None
    lock.release()


# --------------------------------------------------------------------------- real processes


def test_a_second_traywire_says_where_the_first_runs_and_exits_0(tmp_path: Path) -> None:
    with FakeBackend("openai", name="a", models=["m1"]) as fake:
        cfg = write_config(tmp_path, {"a": fake})
        first = App(["--no-tray", "--config", str(cfg), "--port", str(free_port())])
        try:
            first.wait_listening()
            second = subprocess.run(
                [sys.executable, "-m", "traywire", "--config", str(cfg), "--port", "0"],
                capture_output=True,
                text=True,
                timeout=30,
                env=first.env,
            )
            assert second.returncode == 0, second.stderr
            assert second.stdout == f"traywire is already running at {first.url}\n"
            # the first one is untouched
            first.get("/health")
        finally:
            rc, _out, err = first.stop(signal.SIGTERM)
        assert rc == 0, err
        # the lock went with it: a new one starts
        third = App(["--no-tray", "--config", str(cfg), "--port", str(free_port())])
        try:
            third.wait_listening()
        finally:
            assert third.stop(signal.SIGINT)[0] == 0


def test_serve_is_not_single_instance(tmp_path: Path) -> None:
    with FakeBackend("openai", name="a", models=["m1"]) as fake:
        cfg = write_config(tmp_path, {"a": fake})
        app = App(["--no-tray", "--config", str(cfg), "--port", str(free_port())])
        serve = App(["serve", "--config", str(cfg), "--port", str(free_port())])
        try:
            app.wait_listening()
            serve.wait_listening()
        finally:
            assert app.stop()[0] == 0
            assert serve.stop()[0] == 0


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_instance_files_live_in_the_state_dir(tmp_path: Path) -> None:
    with FakeBackend("openai", name="a", models=["m1"]) as fake:
        cfg = write_config(tmp_path, {"a": fake})
        app = App(["--no-tray", "--config", str(cfg), "--port", str(free_port())])
        try:
            app.wait_listening()
            state_dir = Path(os.environ["XDG_STATE_HOME"]) / "traywire"
            assert (state_dir / instance.LOCK_NAME).exists()
            assert instance.running_url(state_dir, wait=5) == app.url
        finally:
            assert app.stop()[0] == 0
        assert not (state_dir / instance.INFO_NAME).exists()
