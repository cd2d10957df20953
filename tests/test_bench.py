"""The benchmark scripts still run and report what the README quotes.

Smoke runs only: they check that each script starts its servers, measures
every figure and writes its report. They assert nothing about speed (the
figures on a shared machine are the benchmarks' business, read as ratios).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_proxy_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "proxy.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_proxy.py"), "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for row in ("added latency p50", "req/s at 32 clients", "proxy CPU per request", "targets:"):
        assert row in r.stdout, row
    report = json.loads(out.read_text())
    verdicts = report["verdicts"]
    assert verdicts["added_latency_ratio_p50"]["value"] > 0
    assert verdicts["throughput_ratio"]["value"] > 0
    # chunks went through as they came (the backend pauses 50 ms between them):
    # a proxy that buffered the stream would show gaps of ~0 and a late first event
    # (not the verdict itself: one scheduling hiccup on a busy machine flips it)
    for name in ("passthrough", "traywire"):
        c = report["chunks"][name]
        assert 35 <= c["gap_p50_ms"] <= 65, c
        assert c["first_event_ms"] < 0.5 * c["expected_span_ms"], c
    for name in ("passthrough", "traywire"):
        assert report["memory_kib"][name]["VmHWM"] > 0
    # issue 17's measurements are there too, for both proxies
    for name in ("passthrough", "traywire"):
        assert report["stream_cpu"][name]["cpu_us_per_event"] > 0
        assert report["big_bodies"]["10MiB"][name]["p50_ms"] > 0
        assert (
            report["many_streams"][name]["completed"] + report["many_streams"][name]["failed"]
            == report["many_streams"][name]["streams"]
        )
        assert report["startup"][name]["ready_s"] > 0
        assert report["startup"][name]["idle_tree_rss_mib"] > 0
    for row in ("streamed event", "10MiB request", "streams at once", "start-up"):
        assert row in r.stdout, row


def test_transport_benchmark_compares_both_clients() -> None:
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_transport.py"), "--n", "200", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {line.split("  ")[0]: line.split() for line in r.stdout.splitlines()}
    for row in ("client CPU (µs)", "round trip (µs)"):
        aiohttp_us, transport_us, ratio = (float(x) for x in rows[row][-3:])
        assert aiohttp_us > 0 and transport_us > 0
        assert abs(ratio - transport_us / aiohttp_us) < 0.02


def _needs_redis() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server package (apt-get install redis-server)")


SHARED_QUICK = ("--quick", "--shared-state", "--output")


def test_proxy_benchmark_compares_shared_state_on_and_off(tmp_path: Path) -> None:
    _needs_redis()
    out = tmp_path / "proxy.json"
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_proxy.py"), *SHARED_QUICK, str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "shared state on vs off, interleaved" in r.stdout
    report = json.loads(out.read_text())
    assert report["latency"]["shared_added_ratio_per_round"]["median"] > 0
    assert report["shared_interleaved"]["added_p50_ratio"] > 0
    assert report["throughput"]["shared"]["requests"] > 0
    # the measured instance did share: connected, and saw the other one
    assert report["shared_state"]["state"] == "connected"
    assert len(report["shared_state"]["instances"]) == 2


def test_shared_state_benchmark_measures_staleness() -> None:
    _needs_redis()
    r = subprocess.run(
        [sys.executable, str(BENCH / "bench_shared.py"), "--trials", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "staleness over 5 trials" in r.stdout
    assert "one exchange:" in r.stdout
