"""Shared state on the dashboard, in a real headless Chromium: it says how
shared state stands, and says it when Redis goes away and comes back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proxy_fixtures import fakes, make_config, model, openai_backend, proxies
from redis_server import RedisServer, redis_server

__all__ = ["fakes", "proxies", "redis_server"]

CHROMIUM = "/usr/bin/chromium"

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - the skip below says what is missing
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(
        sync_playwright is None,
        reason="the Python package playwright is not installed (pip install playwright)",
    ),
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None,
        reason=f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)",
    ),
]


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    assert sync_playwright is not None
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        context.set_default_timeout(20000)
        try:
            yield context.new_page()
        finally:
            context.close()


def text_becomes(page: Page, fragment: str) -> None:
    page.wait_for_function(
        "(f) => (document.querySelector('#shared-state').textContent || '').includes(f)",
        arg=fragment,
    )


def test_the_dashboard_says_how_shared_state_stands(
    page: Page, fakes: Any, proxies: Any, redis_server: RedisServer
) -> None:
    f = fakes("openai", name="b", models=["M"])
    cfg = make_config(
        {"b": openai_backend(f, capacity=2)},
        {"m": model("b", "M")},
        shared_state={"url": redis_server.url, "lease": 1.0},
    )
    p = proxies(cfg)
    page.goto(p.url + "/ui")
    text_becomes(page, "1 instance")
    assert redis_server.url.rsplit("/", 1)[0] in (page.text_content("#shared-state") or "")
    redis_server.stop()
    text_becomes(page, "shared state: unreachable, routing on local view")
    assert "notice" in (page.get_attribute("#shared-state", "class") or "")
    redis_server.start()
    text_becomes(page, "1 instance")
